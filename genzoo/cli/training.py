"""The commands that set up, train and share: models, zoo, data, train, config, export."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ..errors import GenzooError
from .common import _rank


def cmd_models(args) -> int:
    from ..models import MODELS
    width = max(len(n) for n in MODELS)
    for name, (_, _, desc) in sorted(MODELS.items()):
        print(f"{name:<{width}}  {desc}")
    return 0


def cmd_data(args) -> int:
    from ..data import DATASETS, data_root, load_split, prepare
    if args.action == "list":
        width = max(len(n) for n in [*DATASETS, "folder:PATH"])
        for name, desc in DATASETS.items():
            print(f"{name:<{width}}  {desc}")
        print(f"{'folder:PATH':<{width}}  any folder of PNG/JPEG/WebP images (one subfolder per class, or none), "
              "center-cropped and resized to 32x32 RGB (--image-size, --channels); 10% held out as the test split")
        return 0
    if args.trust_archive and len(args.names) != 1:
        raise GenzooError("--trust-archive names the archive of one data set: "
                          "genzoo data prepare cifar10 --trust-archive PATH.")
    for name in args.names:
        folder = prepare(name, source=args.source, trust_archive=args.trust_archive)
        train, test = load_split(name, "train"), load_split(name, "test")
        print(f"{train.name}: {len(train.images)} train + {len(test.images)} test images of shape "
              f"{tuple(train.images.shape[1:])}, {train.num_classes or 'no'} classes, in {folder}")
    if not args.names:
        print(f"data folder: {data_root()}")
    return 0


# phrases of the library's run-planning errors in the command line's words (main() turns the other parameters,
# resume=True and overwrite=True, into flags)
_TRAIN_WORDS = {"out=...": "--out", ", but model is": ", but MODEL is", ", but data is": ", but --data is",
                "Name the model": "Name the MODEL", "as arguments": "on the command line"}


def _train_overrides(args) -> dict:
    """--set pairs, then --steps and --seed (which win over a --set of the same key)."""
    from ..config import parse_set
    overrides = parse_set(args.set or [])
    if args.steps is not None:
        overrides["train.steps"] = args.steps
    if args.seed is not None:
        overrides["train.seed"] = args.seed
    return overrides


def _data_name(args) -> str:
    """--data as the run records it (genzoo.trainer.runs.data_name)."""
    from ..trainer.runs import data_name
    return data_name(args.data, args.image_size, args.channels)


def _resolve_configs(args, run_dir: Path):
    """The configs ``genzoo train`` resolves for ``args`` (genzoo.trainer.runs.resolve_config)."""
    from ..trainer.runs import resolve_config
    return resolve_config(args.model, args.data, config_files=[args.config] if args.config else [],
                          overrides=_train_overrides(args), resume_from=run_dir if args.resume else None)


def cmd_train(args) -> int:
    from ..trainer import runs
    try:
        plan = runs.plan_run(args.model, args.data, out=args.out, config_files=[args.config] if args.config else [],
                             overrides=_train_overrides(args), resume=args.resume, overwrite=args.overwrite,
                             image_size=args.image_size, channels=args.channels)
    except GenzooError as e:
        message = str(e)
        for words, flag in _TRAIN_WORDS.items():
            message = message.replace(words, flag)
        raise GenzooError(message) from None
    summary = runs.run(plan, progress=not args.no_progress, device=args.device)
    if _rank() == 0:
        _print_summary(summary, plan.run_dir)
    return 0


def _print_summary(summary: dict, run_dir: Path) -> None:
    if summary["status"] == "interrupted":
        print(f"interrupted at step {summary['step']}; checkpoint saved. Continue with: "
              f"genzoo train ... --out {run_dir} --resume")
    print(f"run folder:   {run_dir}")
    print(f"checkpoint:   {run_dir / 'model.safetensors'} (+ ema.safetensors, trainer_state.pt)")
    print(f"samples:      {summary.get('samples')}")
    print(f"curves:       {summary.get('curves')}")
    print(f"metrics:      {run_dir / 'metrics.jsonl'}, {run_dir / 'summary.json'}")
    val = summary.get("validation")
    if val and val["best_step"] is not None:
        stopped = f"; stopped early at step {summary['step']}" if summary["status"] == "early_stopped" else ""
        print(f"best:         {val['best_dir']} ({val['metric']} {val['best_value']:.4g} at step "
              f"{val['best_step']}{stopped})")
    shown = {k: v for k, v in summary.items()
             if k in ("step", "train_wall_s", "monitor_wall_s", "train_img_per_s", "elbo_nats", "elbo_bpd",
                      "nll_nats", "bpd")}
    print("summary:      " + json.dumps(shown))


def cmd_config(args) -> int:
    """The config a run would train with, as an experiment file (YAML, each key commented) for --config."""
    from ..config import config_yaml
    from ..trainer.runs import data_name, names_from_files, resolve_config
    files = [args.config] if args.config else []
    model, data = names_from_files(files, args.model, args.data)
    data = data_name(data, args.image_size, args.channels)
    model_cfg, train_cfg = resolve_config(model, data, config_files=files, overrides=_train_overrides(args))
    text = config_yaml(model, data, model_cfg, train_cfg)
    if args.out is None:
        sys.stdout.write(text)
        return 0
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"wrote {out}; train it with: genzoo train --config {out}", file=sys.stderr)
    return 0


def cmd_zoo(args) -> int:
    from ..hub import ZOO_DIR, zoo_names
    names = zoo_names()
    if not names:
        print(f"no zoo models are installed (genzoo looks in {ZOO_DIR})")
        return 0
    rows = [("name", "family", "data", "can", "size", "headline metrics (genzoo eval; docs/metrics.md)")]
    for name in names:
        card = json.loads((ZOO_DIR / name / "card.json").read_text())
        head = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in card["headline"].items())
        n = next((e["n_generated"] for e in card["evaluations"] if "fid" in e.get("metrics", {})), None)
        mb = sum(p.stat().st_size for p in (ZOO_DIR / name).iterdir()) / 1e6
        rows.append((name, card["family"], card["data"], "; ".join(card["capabilities"]), f"{mb:.1f} MB",
                     (head + (f" (n = {n})" if n is not None else "")) if head else "not scored yet"))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        print("  ".join(f"{c:<{w}}" for c, w in zip(r, widths)) + "  " + r[5])
    return 0


def cmd_export(args) -> int:
    from ..export import export
    if (args.dir is None) == (args.out is None):
        raise GenzooError("give the model folder to write once: genzoo export RUN DIR (or --out DIR).")
    out = export(args.run, args.dir or args.out, name=args.name, overwrite=args.overwrite, use=args.use,
                 dtype=args.dtype)
    print(f"wrote {out}: config.json, ema.safetensors, card.md, card.json and manifest.json (the sha256 of each); "
          f"genzoo.load({str(out)!r}) loads it, and so does hf://OWNER/NAME once it is a Hub repository")
    return 0
