"""A checkpoint is a folder: config.json + model.safetensors (+ ema.safetensors), and
trainer_state.pt (optimisers, RNG, step) beside them for resume. Every file is written to a
temporary name and renamed, so a crash never leaves a half-written file under the real name.
Nothing is unpickled: weights are safetensors, the trainer state is read with weights_only=True.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import typing
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from . import __version__
from .errors import GenzooError
from .hub import locate, zoo_names

CONFIG, MODEL, EMA, STATE = "config.json", "model.safetensors", "ema.safetensors", "trainer_state.pt"
BEST, BEST_RECORD = "best", "best.json"    # RUN/best/: the weights with the best validation metric


def atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)`` then rename tmp_path to ``path`` (same folder, so the rename is atomic)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_config(run_dir: Path, config: dict) -> None:
    config = {"genzoo_version": __version__, **config}
    atomic_write(Path(run_dir) / CONFIG, lambda p: Path(p).write_text(json.dumps(config, indent=2) + "\n"))


def read_config(run_dir: str | Path) -> dict:
    """The config.json of a run folder, a zoo model (by name) or an exported model (hf://owner/name[@revision]),
    whose manifest is checked first (genzoo.hub.locate)."""
    ref, run_dir = run_dir, locate(run_dir)
    path = Path(run_dir) / CONFIG
    if not Path(run_dir).is_dir():
        zoo = ", ".join(zoo_names())
        raise GenzooError(f"{ref} is neither a run folder (no such directory) nor a zoo model"
                          + (f" ({zoo})." if zoo else "."))
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise GenzooError(f"{run_dir} is not a run folder: it has no {CONFIG}.") from None
    except json.JSONDecodeError as e:
        raise GenzooError(f"{path} is corrupt or truncated ({e}); the run cannot be loaded.") from None
    for key in ("model_name", "model", "train", "data"):
        if key not in config:
            raise GenzooError(f"{path} lacks the key {key!r}; it was not written by genzoo train.")
    from .data import remember_run    # a run on in-memory images keeps them beside its config (data/memory.py)
    remember_run(config["data"], run_dir)
    return config


def _state_dict(model: torch.nn.Module) -> dict:
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}


def save_weights(run_dir: Path, model: torch.nn.Module, ema: torch.nn.Module | None, step: int) -> None:
    meta = {"step": str(step), "genzoo_version": __version__}
    atomic_write(Path(run_dir) / MODEL, lambda p: save_file(_state_dict(model), p, metadata=meta))
    if ema is not None:
        atomic_write(Path(run_dir) / EMA, lambda p: save_file(_state_dict(ema), p, metadata=meta))


def save_best(run_dir: Path, model: torch.nn.Module, ema: torch.nn.Module | None, step: int, record: dict) -> Path:
    """Write RUN/best/ (a copy of config.json, the weights, best.json with ``record``) as a whole: it is built
    in a temporary folder and swapped in, so RUN/best is always one complete checkpoint."""
    run_dir = Path(run_dir)
    best, old = run_dir / BEST, run_dir / f".{BEST}-old"
    recover_best(run_dir)
    tmp = Path(tempfile.mkdtemp(dir=run_dir, prefix=f".{BEST}-new-"))
    try:
        shutil.copyfile(run_dir / CONFIG, tmp / CONFIG)
        save_weights(tmp, model, ema, step)
        (tmp / BEST_RECORD).write_text(json.dumps(record, indent=2) + "\n")
        if best.exists():
            os.replace(best, old)
        os.replace(tmp, best)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return best


def recover_best(run_dir: Path) -> None:
    """Put back RUN/best from .best-old when a crash fell between save_best's two renames."""
    best, old = Path(run_dir) / BEST, Path(run_dir) / f".{BEST}-old"
    if old.exists():
        if best.exists():
            shutil.rmtree(old)
        else:
            os.replace(old, best)


def read_best(run_dir: Path) -> dict | None:
    """RUN/best/best.json (step, metric, value), or None when the run has no best/."""
    path = Path(run_dir) / BEST / BEST_RECORD
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as e:
        raise GenzooError(f"{path} is corrupt ({e}).") from None


def save_trainer_state(run_dir: Path, state: dict) -> None:
    atomic_write(Path(run_dir) / STATE, lambda p: torch.save(state, p))


def save_checkpoint(run_dir: Path, model: torch.nn.Module, ema: torch.nn.Module | None, state: dict) -> None:
    """trainer_state.pt with a copy of the weights in it, then the safetensors files. The state file is the
    checkpoint a resume reads, written in one rename; a kill before the safetensors files follow it leaves them
    a checkpoint behind, and ``sync_weights`` rewrites them on resume."""
    weights = {"model": _state_dict(model), **({"ema": _state_dict(ema)} if ema is not None else {})}
    save_trainer_state(run_dir, {**state, "weights": weights})
    save_weights(run_dir, model, ema, state["step"])


def remove_temporaries(run_dir: Path) -> None:
    """Delete what a killed write left behind: the temporary files of atomic_write and a half-built best/."""
    for p in Path(run_dir).glob(".*.tmp"):
        p.unlink(missing_ok=True)
    for p in Path(run_dir).glob(f".{BEST}-new-*"):
        shutil.rmtree(p, ignore_errors=True)


def _weights_step(path: Path) -> int | None:
    """The step a safetensors file was saved at; None if it is missing, unreadable or has no step."""
    try:
        with safe_open(str(path), "pt") as f:
            return int((f.metadata() or {}).get("step", -1))
    except (SafetensorError, OSError, ValueError):
        return None


def sync_weights(run_dir: Path, model: torch.nn.Module, ema: torch.nn.Module | None, step: int) -> bool:
    """Rewrite the safetensors files from ``model`` and ``ema`` where they are not from ``step``; True if any was."""
    names = (MODEL, EMA) if ema is not None else (MODEL,)
    if all(_weights_step(Path(run_dir) / name) == step for name in names):
        return False
    save_weights(run_dir, model, ema, step)
    return True


def load_weights(path: Path) -> dict:
    try:
        return load_file(path)
    except FileNotFoundError:
        raise GenzooError(f"{path} is missing; the run folder holds no weights yet.") from None
    except (SafetensorError, OSError, ValueError) as e:
        raise GenzooError(f"{path} is corrupt or truncated ({e}). Resume from an earlier copy "
                          "or retrain.") from None


def check_weights_step(run_dir: Path, step: int, ema: bool) -> None:
    """The weights must be from the trainer state's step (a crash between the writes could mix them)."""
    for name in (MODEL, EMA) if ema else (MODEL,):
        path = Path(run_dir) / name
        try:
            with safe_open(str(path), "pt") as f:
                saved = int((f.metadata() or {}).get("step", -1))
        except (SafetensorError, OSError, ValueError) as e:
            raise GenzooError(f"{path} is corrupt or truncated ({e}).") from None
        if saved != step:
            raise GenzooError(f"{path} is from step {saved} but trainer_state.pt from step {step}; the "
                              "checkpoint was interrupted while being written and cannot be resumed exactly.")


def load_trainer_state(run_dir: Path) -> dict:
    path = Path(run_dir) / STATE
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise GenzooError(f"{path} is missing, so this run cannot be resumed.") from None
    except Exception as e:  # torch raises several types for a damaged zip archive
        raise GenzooError(f"{path} is corrupt or truncated ({type(e).__name__}); the run cannot be "
                          "resumed from it.") from None


def config_from_dict(cls, values: dict):
    """Rebuild a config dataclass from JSON values (lists back to tuples)."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in values:
            v = values[f.name]
            kwargs[f.name] = tuple(v) if typing.get_origin(hints[f.name]) is tuple else v
    unknown = set(values) - set(kwargs)
    if unknown:
        raise GenzooError(f"config.json has keys this genzoo does not know: {', '.join(sorted(unknown))}.")
    return cls(**kwargs)


def resolve_device(device: str | torch.device) -> torch.device:
    """``device`` ("cpu", "cuda" or "cuda:N") as a torch.device, or GenzooError when this machine lacks it."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise GenzooError(f"unknown device {device!r}; use cpu, cuda or cuda:N.") from None
    if dev.type not in ("cpu", "cuda"):
        raise GenzooError(f"the device {device!r} is not supported; use cpu, cuda or cuda:N.")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise GenzooError(f"the device {device!r} was asked for, but this PyTorch sees no CUDA GPU.")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise GenzooError(f"the device {device!r} was asked for, but this machine has {torch.cuda.device_count()} "
                              "CUDA GPU(s).")
    return dev


def device_name(device: str | torch.device) -> str:
    """A device in words for result records: "cpu", or "cuda:0 (NVIDIA H200)"."""
    dev = torch.device(device)
    if dev.type != "cuda":
        return dev.type
    index = torch.cuda.current_device() if dev.index is None else dev.index
    return f"cuda:{index} ({torch.cuda.get_device_name(index)})"


def load(run_dir: str | Path, ema: bool = True, device: str | torch.device = "cpu"):
    """Load a trained model from a run folder, a zoo model by name or hf://owner/name[@revision] (genzoo.hub), EMA
    weights by default, in eval mode, on ``device``."""
    from .models import build_model, model_entry

    device = resolve_device(device)
    run_dir = locate(run_dir)
    config = read_config(run_dir)
    if not ema and not (run_dir / MODEL).exists() and (run_dir / EMA).exists():
        raise GenzooError(f"{run_dir} holds only its EMA weights (an exported model); load it with ema=True.")
    cls, _, _ = model_entry(config["model_name"])
    model = build_model(config["model_name"], config_from_dict(cls.Config, config["model"]))
    path = run_dir / EMA if ema and (run_dir / EMA).exists() else run_dir / MODEL
    try:
        model.load_state_dict(load_weights(path))
    except RuntimeError as e:
        raise GenzooError(f"{path} does not match the model in config.json: {e}") from None
    return model.to(device).eval()
