"""The training config and the one way configs are changed: YAML files and `--set key=value`.

Keys are the field names of the model's config or of TrainConfig; a key present in both can be
qualified as `model.KEY` or `train.KEY`. Unknown keys and ill-typed values fail at once, naming
the key and the valid keys.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from pathlib import Path

import yaml

from .errors import GenzooError


@dataclass
class TrainConfig:
    steps: int = 6000                  # optimiser steps; each of the model's phases steps once per step
    batch_size: int = 128              # global batch, split evenly across data-parallel ranks
    lr: float = 1e-3                   # Adam learning rate, every phase
    adam_betas: tuple[float, float] = (0.9, 0.999)   # Adam's (beta1, beta2), every phase
    lr_warmup_steps: int = 0           # linear warm-up of the learning rate from 0 over this many steps
    lr_decay: str = "none"             # "none", or "cosine": decay to 0 at the last step (after the warm-up)
    weight_decay: float = 0.0          # Adam's L2 term
    grad_clip_norm: float = 0.0        # clip each phase's gradient norm to this; 0 = off
    ema_decay: float = 0.999           # EMA of the weights used for sampling; 0 = no EMA
    bf16: bool | str = "auto"          # bfloat16 autocast for the forward pass (losses stay fp32): true, false,
                                       # or "auto" = true only where the device computes bf16 natively (a CUDA
                                       # device with bf16, a CPU with avx512_bf16 or amx_bf16: 1.1-2.4x faster
                                       # steps; without them bf16 is 1.2-2.6x slower than fp32); the run
                                       # records the resolved true/false (genzoo.hardware.resolve_bf16)
    seed: int = 0                      # seeds data order, model init and noise
    log_every_steps: int = 50          # metrics.jsonl, TensorBoard and the progress bar
    sample_every_steps: int = 1000     # sample grid into samples/; 0 = only at the end
    ckpt_every_steps: int = 1000       # checkpoint into the run folder; 0 = only at the end
    sample_grid_n: int = 64            # images in each sample grid (conditional models: one row per class)
    coverage_every_steps: int = 1000   # class histogram of 1000 samples under the frozen classifier
                                       # (coverage.jsonl, a warning on collapse); 0 = off
    threads: int = 0                   # torch intra-op threads; 0 = torch's default
    final_eval: bool = True            # test-set likelihood bound at the end, where the model has one
    val_every_steps: int = 0           # validation metric on a split held out of the train split, every this
                                       # many steps (val/* in metrics.jsonl, the best weights in best/); 0 = off,
                                       # and then the whole train split trains
    val_size: int = 0                  # images in that split (fixed seed 0, the same for every run seed);
                                       # 0 = min(5000, 10% of the train split): 5000 for MNIST, 149 for digits
    val_fid_samples: int = 2000        # generated images of the validation FID (models without a likelihood)
    early_stop_patience: int = 0       # stop after this many validations in a row without a new best; 0 = never
    train_subset: int = 0              # > 0: train on a class-balanced subset of this many train images, drawn
                                       # with seed 0 whatever the run's seed (data.balanced_subset), the
                                       # validation split then carved from it; genzoo augment reads it; 0 = all
    shift_augment: int = 0             # > 0: translate each training image by a random whole number of pixels
                                       # in [-n, n] along each axis (edge pixels repeated), drawn afresh every
                                       # step from the data-order generator; 0 = the images as they are
    max_train_minutes: float = 0.0     # > 0: stop (checkpointed, status "time_limit") at the first step whose
                                       # training wall time, every part of a resumed run together, reaches this;
                                       # the lr schedule still follows `steps`; 0 = no limit
    fit_steps: bool = False            # with max_train_minutes: before the first step, time this run's step on
                                       # this machine (on throwaway copies) and lower `steps` to what the budget
                                       # holds, so the lr schedule ends with the run (if the probe guessed too
                                       # fast, max_train_minutes still stops it); config.json records the
                                       # fitted steps, which a resume keeps

    def __post_init__(self):
        for name in ("steps", "batch_size", "log_every_steps"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.lr_decay not in ("none", "cosine"):
            raise ValueError(f"lr_decay must be none or cosine, got {self.lr_decay!r}")
        if self.lr_warmup_steps < 0:
            raise ValueError(f"lr_warmup_steps must be >= 0, got {self.lr_warmup_steps}")
        for name in ("val_every_steps", "val_size", "early_stop_patience", "train_subset", "max_train_minutes",
                     "shift_augment"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.bf16 not in (True, False, "auto") or not isinstance(self.bf16, (bool, str)):
            raise ValueError(f"bf16 must be true, false or auto, got {self.bf16!r}")
        if self.val_fid_samples < 2:
            raise ValueError(f"val_fid_samples must be at least 2, got {self.val_fid_samples}")
        if self.fit_steps and not self.max_train_minutes:
            raise ValueError("fit_steps fits the steps to max_train_minutes: set max_train_minutes too")
        if self.early_stop_patience and not self.val_every_steps:
            raise ValueError("early_stop_patience counts validations: set val_every_steps too")

    def lr_factor(self, step: int) -> float:
        """The learning rate at optimiser step ``step`` (0-based) as a fraction of ``lr``."""
        if step < self.lr_warmup_steps:
            return (step + 1) / self.lr_warmup_steps
        if self.lr_decay == "cosine":
            span = max(1, self.steps - self.lr_warmup_steps)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - self.lr_warmup_steps) / span)))
        return 1.0


def _coerce(value, tp, key: str):
    """Check ``value`` (already YAML-parsed) against the field type ``tp``; return it converted."""
    origin = typing.get_origin(tp)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):   # YAML 1.1 reads 2e-3 (no dot) as a string
            try:
                out = float(value)
            except ValueError:
                pass
            else:
                if math.isfinite(out):
                    return out
    elif tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    elif origin is tuple:
        args = typing.get_args(tp)
        if isinstance(value, (list, tuple)) and len(value) == len(args):
            return tuple(_coerce(v, a, key) for v, a in zip(value, args))
    else:
        return value
    name = getattr(tp, "__name__", str(tp))
    raise GenzooError(f"Bad value for {key!r}: {value!r} is not a {name}.")


def _fields(cfg) -> dict[str, type]:
    hints = typing.get_type_hints(type(cfg))
    return {f.name: hints[f.name] for f in dataclasses.fields(cfg)}


def apply_overrides(model_cfg, train_cfg: TrainConfig, overrides: dict):
    """Return new (model_cfg, train_cfg) with ``overrides`` (key -> parsed value) applied."""
    mf, tf = _fields(model_cfg), _fields(train_cfg)
    m_changes, t_changes = {}, {}
    for key, value in overrides.items():
        scope, _, name = key.rpartition(".")
        if scope not in ("", "model", "train"):
            raise GenzooError(f"Unknown config key {key!r}: the only prefixes are 'model.' and 'train.'.")
        in_m = name in mf and scope in ("", "model")
        in_t = name in tf and scope in ("", "train")
        if in_m and in_t:
            raise GenzooError(f"Config key {name!r} is both a model and a training key; "
                              f"write model.{name} or train.{name}.")
        if not (in_m or in_t):
            raise GenzooError(
                f"Unknown config key {key!r}. Model keys: {', '.join(mf)}. "
                f"Training keys: {', '.join(tf)}.")
        if in_m:
            m_changes[name] = _coerce(value, mf[name], key)
        else:
            t_changes[name] = _coerce(value, tf[name], key)
    try:
        return dataclasses.replace(model_cfg, **m_changes), dataclasses.replace(train_cfg, **t_changes)
    except ValueError as e:
        raise GenzooError(f"Bad config value: {e}.") from None


def parse_set(pairs: list[str]) -> dict:
    """['a=1', 'b=[0.5, 0.9]'] -> {'a': 1, 'b': [0.5, 0.9]}, values parsed as YAML."""
    out = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise GenzooError(f"pairs: each override is key=value, got {pair!r}.")
        try:
            out[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            raise GenzooError(f"pairs: cannot parse the value of {key.strip()}, {raw!r}, as YAML.") from None
    return out


def read_yaml(path: str | Path) -> dict:
    """A YAML config file: either flat keys or sections `model:` / `train:`, flattened to dotted keys."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise GenzooError(f"Config file {path} does not exist.") from None
    except yaml.YAMLError as e:
        raise GenzooError(f"Config file {path} is not valid YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise GenzooError(f"Config file {path} must hold a mapping of keys to values.")
    out = {}
    for key, value in data.items():
        if key in ("model", "train") and isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


# ---------------------------------------------------------------------------------------------
# experiment files: a model, a data set and their config keys in one YAML file

EXPERIMENT_KEYS = ("model_name", "data")   # top-level keys that name what to train rather than set a config key


def read_experiment(path: str | Path) -> tuple[str | None, str | None, dict]:
    """(model name, data set, config keys) of a YAML file. ``model_name:`` and ``data:`` at the top level name
    the model and the data set (either may be missing); every other key is read as ``read_yaml`` reads it. A
    run's config.json has this layout, so it is an experiment file too (its genzoo_version is ignored)."""
    keys = read_yaml(path)
    keys.pop("genzoo_version", None)
    named = []
    for key in EXPERIMENT_KEYS:
        value = keys.pop(key, None)
        if value is not None and not isinstance(value, str):
            raise GenzooError(f"Config file {path}: {key} must be a name, got {value!r}.")
        named.append(value)
    if "model" in keys:    # `model:` is the section of model keys; a model is named with model_name:
        raise GenzooError(f"Config file {path}: `model:` holds the model's config keys as a section; name the "
                          f"model with `model_name: {keys['model']}`.")
    return named[0], named[1], keys


def field_comments(cls) -> dict[str, list[str]]:
    """The comment lines beside each field of dataclass ``cls`` in its source: the inline ``# ...`` of the field's
    line and the comment-only lines that continue it, e.g. {"steps": ["optimiser steps; ..."]}."""
    import inspect
    import io
    import tokenize
    fields = {f.name for f in dataclasses.fields(cls)}
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):      # a class defined where its source cannot be read
        return {}
    out: dict[str, list[str]] = {}
    current, line_start = None, True
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.NAME and line_start:
            current = tok.string if tok.string in fields and tok.start[1] > 0 else None
        if tok.type == tokenize.COMMENT and current is not None:
            out.setdefault(current, []).append(tok.string.lstrip("#").strip())
        if tok.type not in (tokenize.NL, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT):
            line_start = tok.type == tokenize.NEWLINE
    return out


def _yaml_value(value) -> str:
    if isinstance(value, tuple):
        value = list(value)
    return yaml.safe_dump({"v": value}, default_flow_style=True, width=math.inf).strip()[len("{v: "):-1]


def config_yaml(model_name: str, data: str, model_cfg, train_cfg: TrainConfig) -> str:
    """A resolved (model config, training config) as an experiment file for ``genzoo train --config``: the
    model and the data set by name, then every key under ``model:`` and ``train:`` with the comment its
    dataclass field carries. Reading it back gives the same configs."""
    lines = [f"# genzoo experiment: {model_name} on {data}. Train it with `genzoo train --config FILE`;",
             "# every key may also be set with --set KEY=VALUE (docs/training.md).",
             f"model_name: {_yaml_value(model_name)}", f"data: {_yaml_value(data)}"]
    for section, cfg in (("model", model_cfg), ("train", train_cfg)):
        comments = field_comments(type(cfg))
        rows = [(f"  {f.name}: {_yaml_value(getattr(cfg, f.name))}", comments.get(f.name, []))
                for f in dataclasses.fields(cfg)]
        width = max(len(text) for text, _ in rows) + 2
        lines.append(f"{section}:")
        for text, notes in rows:
            lines.append(f"{text:<{width}}# {notes[0]}" if notes else text)
            lines.extend(f"{'':<{width}}# {note}" for note in notes[1:])
    return "\n".join(lines) + "\n"
