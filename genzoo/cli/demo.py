"""The command that serves the page to try models and judge real from fake: demo."""
from __future__ import annotations


def cmd_demo(args) -> int:
    from ..demo.app import serve
    serve(args.models, host=args.host, port=args.port, judgements=args.judgements, device=args.device,
          ema=args.ema, seed=args.seed)
    return 0
