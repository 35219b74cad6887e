"""The genzoo command line: ``genzoo COMMAND ...`` (``python -m genzoo``).

  __init__.py     the command table, the parser, and ``main``, which turns a library error into the
                  command line's words (a parameter it names becomes the flag that sets it)
  arguments.py    the flags: the shared ones built once with one meaning each, then each command's own
  training.py     models, data, train, config
  generation.py   sample, interpolate, restore, edit
  scoring.py      eval, report, classify, augment, ood
  demo.py         demo
  common.py       what the commands share: loading a run, labels, sampling options, writing results

Each command parses its flags and calls the library; nothing else imports this package.
"""
from __future__ import annotations

import argparse
import re
import sys
import textwrap

from ..errors import GenzooError
from .arguments import (EVAL_HELP, _augment_args, _classify_args, _config_args, _data_args, _demo_args, _edit_args,
                        _eval_args, _export_args, _interpolate_args, _ood_args, _report_args, _restore_args,
                        _sample_args, _train_args)
from .demo import cmd_demo
from .generation import cmd_edit, cmd_interpolate, cmd_restore, cmd_sample
from .scoring import cmd_augment, cmd_classify, cmd_eval, cmd_ood, cmd_report
from .training import cmd_config, cmd_data, cmd_export, cmd_models, cmd_train, cmd_zoo


COMMANDS = (   # name, handler, its arguments, help, more add_parser keywords
    ("models", cmd_models, None, "list the registered models", {}),
    ("zoo", cmd_zoo, None, "list the trained models that come with genzoo: load any by name", {}),
    ("data", cmd_data, _data_args, "prepare or list data sets", {}),
    ("train", cmd_train, _train_args, "train a model into a run folder", {}),
    ("config", cmd_config, _config_args, "print the config a run would train with, as YAML with each key's "
     "comment: edit it and pass it to train --config", {}),
    ("sample", cmd_sample, _sample_args, "draw samples from a trained run", {}),
    ("interpolate", cmd_interpolate, _interpolate_args, "walk the latent space between two images or two seeds: a "
     "strip PNG and a GIF", {}),
    ("restore", cmd_restore, _restore_args, "inpaint, denoise or 2x super-resolve an image with any model that can "
     "(diffusion, autoregressive, VAE, flow, GAN)", {}),
    ("edit", cmd_edit, _edit_args, "redraw an image as another class, keeping its style (models with an encoder)",
     {}),
    ("eval", cmd_eval, _eval_args, "score a run: FID/KID/precision-recall, classifier score, likelihood, CAS, "
     "Inception FID", {"formatter_class": argparse.RawDescriptionHelpFormatter, "description": EVAL_HELP}),
    ("report", cmd_report, _report_args, "one self-contained HTML page of a run: samples, reconstructions, curves, "
     "eval metrics, memorisation check, feature map", {}),
    ("classify", cmd_classify, _classify_args, "a class-conditional model with a likelihood as a Bayes "
     "classifier: p(y|x) of images, or test accuracy beside the discriminative classifier", {}),
    ("augment", cmd_augment, _augment_args, "augmentation gain: the fixed classifier recipe on n real images vs n "
     "real + generated, from a conditional model trained on the same n", {}),
    ("export", cmd_export, _export_args, "write a run as a model folder to share (the zoo's format: EMA weights, "
     "config, card, sha256 manifest)", {}),
    ("ood", cmd_ood, _ood_args, "out-of-distribution AUROC of a likelihood model: raw log p(x), the "
     "input-complexity correction, the typicality test", {}),
    ("demo", cmd_demo, _demo_args, "a local web page to try each model with what it declares it can do (sample, "
     "restore, interpolate, classify) and to judge real from fake by eye", {}),
)


def _flag_names(parser) -> dict[str, str]:
    """Library parameter name -> the flag that sets it: each option's dest, plus the command's own renames."""
    names = {a.dest: next(o for o in a.option_strings if o.startswith("--"))
             for a in parser._actions if any(o.startswith("--") for o in a.option_strings) and a.dest != "help"}
    return {**names, **(parser.get_default("params") or {})}


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__
    p = argparse.ArgumentParser(prog="genzoo", description="Train, sample and evaluate deep generative "
                                "models of images.")
    p.add_argument("--version", action="version", version=f"genzoo {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    for name, handler, add_arguments, help, more in COMMANDS:
        s = sub.add_parser(name, help=help, **more)
        if add_arguments is not None:
            add_arguments(s)
        s.set_defaults(func=handler)
        s.set_defaults(flags=_flag_names(s))
    return p


def _in_flags(message: str, flags: dict[str, str]) -> str:
    """A library error in the command line's words: a parameter it names (at the start of a clause, or anywhere
    when it is snake_case) becomes the flag that sets it."""
    for param, flag in flags.items():
        message = re.sub(rf"(?<![\w.-]){re.escape(param)}=True\b", flag, message)     # resume=True -> --resume
        message = re.sub(rf"(?<![\w.-]){re.escape(param)}=(?=\S)", f"{flag} ", message)  # out=... -> --out ...
        before = r"(?<![\w.-])" if "_" in param else r"(?:^|(?<=; )|(?<=: )|(?<=\. ))"
        message = re.sub(before + re.escape(param) + r"(?=[\s,;:)])", flag, message)
    # a parameter listed after a flag: "--image-size and channels" -> "--image-size and --channels"
    message = re.sub(r"(--[\w-]+(?:,| and| or) )(\w+)(?=[\s,;:)])",
                     lambda m: m.group(1) + flags.get(m.group(2), m.group(2)), message)
    return re.sub(r"(--[\w-]+) \(\1\)", r"\1", message)     # "noise_std (--noise-std)" -> "--noise-std"


def _check_device(args) -> None:
    from ..checkpoint import resolve_device
    if getattr(args, "device", None) is not None:
        try:
            resolve_device(args.device)
        except GenzooError as e:
            raise GenzooError(f"--device: {e}") from None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        _check_device(args)
        if getattr(args, "batch_size", None) is not None and args.batch_size < 1:
            raise GenzooError(f"--batch-size must be a positive integer, got {args.batch_size}.")
        return args.func(args)
    except GenzooError as e:
        msg = textwrap.fill(_in_flags(str(e), args.flags), width=100, subsequent_indent="  ",
                            break_on_hyphens=False, break_long_words=False)
        print(f"genzoo: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
