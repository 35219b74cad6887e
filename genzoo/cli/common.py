"""Helpers the commands share: loading a run, parsing labels and sampling options, writing results."""
from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import GenzooError


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def _parse_labels(text: str | None, n: int, model, flag: str = "--labels"):
    import torch
    if text is None:
        return None
    if not model.capabilities.conditional:
        raise GenzooError(f"{flag} needs a class-conditional model; this one is unconditional.")
    num_classes = model.config.num_classes      # a conditional model's labels are in [0, num_classes)
    try:
        values = [int(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise GenzooError(f"{flag} takes integers separated by commas, got {text!r}.") from None
    if not values or any(not 0 <= v < num_classes for v in values):
        raise GenzooError(f"{flag} must be integers in [0, {num_classes - 1}], got {text!r}.")
    return torch.tensor(values * (n // len(values) + 1))[:n]


def _parse_options(pairs: list[str] | None) -> dict:
    """--opt KEY=VALUE pairs (values read as YAML) -> keyword arguments of the model's sample()."""
    import yaml
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise GenzooError(f"--opt takes KEY=VALUE, got {pair!r}.")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise GenzooError(f"--opt {key.strip()}: cannot read the value {value!r}.") from None
    return out


def _sample_options(model, pairs: list[str] | None) -> dict:
    """--opt KEY=VALUE pairs checked against the model's declared sampling options."""
    from ..models.base import check_sample_options
    try:
        return check_sample_options(model, _parse_options(pairs))
    except GenzooError as e:
        raise GenzooError(f"--opt: {e}") from None


def _load(args, run=None):
    """The run's model (args.run, or ``run``) with the weights and on the device the flags ask for."""
    from .. import load
    return load(args.run if run is None else run, ema=args.ema, device=args.device)


def _write_png(x, path: str) -> Path:
    """One image (1, C, H, W) in [0, 1] as a PNG at its own size."""
    from PIL import Image
    from ..images import to_uint8
    arr = to_uint8(x)[0]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr).save(path)
    return path


def _check_png_outputs(*paths) -> None:
    for p in paths:
        if p is not None and not p.lower().endswith(".png"):
            raise GenzooError(f"{p}: --out and --compare are .png files.")


def _home(run) -> Path:
    """Where a command writes results by default: the run folder, or for a zoo or hf:// model (whose folder is
    genzoo's or a download cache) the folder NAME-results in the current directory."""
    from ..hub import is_reference
    if not is_reference(run):
        return Path(run)
    return Path(str(run).removeprefix("hf://").replace("/", "--").replace("@", "--") + "-results")


def _run_record(args, model_name: str) -> dict:
    from .. import __version__
    from ..checkpoint import device_name
    from ..hardware import machine
    from ..hub import locate
    return {"model": model_name, "run": str(args.run), "genzoo_version": __version__,
            "checkpoint": "ema" if args.ema and (locate(args.run) / "ema.safetensors").exists() else "raw",
            "device": device_name(args.device), "command": "genzoo " + " ".join(args.argv), "machine": machine()}


def _write_json(result: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


def _scoring_model(args, config: dict):
    """RUN's model laid out for scoring, or with --mix the list of RUN's and the mixed runs' (one data set)."""
    from ..checkpoint import read_config
    from ..likelihood import scoring_layout
    model = scoring_layout(_load(args))
    if not args.mix:
        return model
    for run in args.mix:
        data = read_config(run)["data"]
        if data != config["data"]:
            raise GenzooError(f"{run} was trained on {data}, {args.run} on {config['data']}: mix runs of one "
                              "data set.")
    return [model, *(scoring_layout(_load(args, run)) for run in args.mix)]
