"""Runs: everything between "train this model on this data" and the training loop, shared by
``genzoo train`` and ``genzoo.train(...)``.

  resolve_config   the model's preset with the data set's fields, then YAML files, then overrides;
                   or, resuming, the config a run recorded with the few keys that may change
  data_name        a data set as a run records it (a registered name, folder:PATH, memory:HASH)
  choose_run_dir, resume_point, check_run_dir, clear_for_restart
                   which folder a run goes to, and what resume and overwrite do with one
  plan_run         all of the above in order: a RunPlan the loop can start from
  train_model      ``genzoo.train(model, data, out, ...)``: plan, train, return the run folder

An experiment file (YAML) may name the model and the data set at its top level (``model_name:``,
``data:``) beside its config keys (flat, or under ``model:`` / ``train:``); ``config.config_yaml``
writes one and a run's config.json is one. Errors name parameters as Python spells them
(``resume=True``); the command line reads them in its flags.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import sys
from pathlib import Path

from ..config import TrainConfig, apply_overrides, read_experiment
from ..errors import GenzooError

# the keys a resume may change: how long the run trains, how often it logs and checks itself, its threads
RESUME_MAY_CHANGE = ("steps", "log_every_steps", "sample_every_steps", "ckpt_every_steps", "coverage_every_steps",
                     "threads", "val_every_steps", "early_stop_patience", "max_train_minutes")


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def _note(message: str) -> None:
    if _rank() == 0:
        print(message, file=sys.stderr)


# ---------------------------------------------------------------------------------------------
# configs

def resolve_config(model: str, data: str, *, config_files=(), overrides: dict | None = None,
                   resume_from: str | Path | None = None):
    """(model config, TrainConfig) of ``model`` on the data set ``data`` (a name as ``data_name`` returns it).

    A new run starts from the model's preset with the data set's channels, image size, classes and
    binarization, then applies each YAML file in ``config_files`` in turn, then ``overrides`` (config key ->
    value; a key in both configs is written model.KEY or train.KEY). ``resume_from`` (a run folder) starts from
    the config that run recorded instead, and only the RESUME_MAY_CHANGE keys may differ from it. Unknown keys,
    ill-typed values and a model the data cannot feed raise GenzooError naming the key."""
    from ..models import model_entry
    model_entry(model)                    # an unknown name fails first, listing the valid ones
    keys = {}
    for path in config_files:
        named_model, named_data, file_keys = read_experiment(path)
        _agree(path, "model_name", named_model, "model", model, named_model == model)
        _agree(path, "data", named_data, "data", data, named_data in (None, data) or data_name(named_data) == data)
        keys.update(file_keys)
    keys.update(overrides or {})
    if resume_from is not None:
        return _resumed_config(model, data, Path(resume_from), keys)
    return _new_config(model, data, keys)


def _agree(path, file_key: str, in_file: str | None, param: str, given: str | None, same: bool) -> None:
    if in_file is not None and given is not None and not same:
        raise GenzooError(f"Config file {path} names {file_key}: {in_file}, but {param} is {given!r}; name it in "
                          f"one place, or make the two agree.")


def _new_config(model: str, data: str, keys: dict):
    from ..data import dataset_info, load_split
    from ..models import default_config, default_train_overrides
    images = load_split(data, "train")
    c, h, w = images.images.shape[1:]
    if h != w:
        raise GenzooError(f"{data} has {h}x{w} images; genzoo models take square images.")
    model_cfg = default_config(model)
    data_fields = {"channels": c, "image_size": h, "num_classes": images.num_classes}
    if "binarize" in {f.name for f in dataclasses.fields(model_cfg)}:
        data_fields["binarize"] = dataset_info(data).binarized
    try:
        model_cfg = dataclasses.replace(model_cfg, **data_fields)
    except ValueError as e:
        raise GenzooError(f"{model} cannot take {data} images: {e}.") from None
    train_cfg = dataclasses.replace(TrainConfig(), **default_train_overrides(model))
    model_cfg, train_cfg = apply_overrides(model_cfg, train_cfg, keys)
    if images.num_classes < 2:     # unlabelled data: a class-conditional model has nothing to condition on
        _refuse_conditional(model, model_cfg, data, images.num_classes)
    return model_cfg, train_cfg


def _resumed_config(model: str, data: str, run_dir: Path, keys: dict):
    from ..checkpoint import config_from_dict, read_config
    from ..models import model_entry
    saved = read_config(run_dir)
    if saved["model_name"] != model or saved["data"] != data:
        raise GenzooError(f"{run_dir} holds {saved['model_name']} on {saved['data']}, not {model} on {data}.")
    cls, _, _ = model_entry(model)
    model_cfg = config_from_dict(cls.Config, saved["model"])
    train_cfg = config_from_dict(TrainConfig, saved["train"])
    new_model, new_train = apply_overrides(model_cfg, train_cfg, keys)
    old = {**dataclasses.asdict(model_cfg), **dataclasses.asdict(train_cfg)}
    new = {**dataclasses.asdict(new_model), **dataclasses.asdict(new_train)}
    changed = [k for k in new if new[k] != old[k] and k not in RESUME_MAY_CHANGE]
    if changed:
        raise GenzooError(f"resume=True continues the saved config; only steps, threads, early_stop_patience, "
                          f"max_train_minutes and the *_every_steps keys may change, not {', '.join(changed)}.")
    return new_model, new_train


def _refuse_conditional(model_name: str, model_cfg, data: str, num_classes: int) -> None:
    import torch
    from ..models import build_model
    why = "has no class labels" if num_classes == 0 else "has a single class"
    fix = ("put the images in one subfolder per class, or choose an unconditional model (`genzoo models`)"
           if data.startswith("folder") else "choose an unconditional model (`genzoo models`)")
    try:
        with torch.random.fork_rng(devices=[]):      # building draws init weights: keep the caller's RNG
            conditional = build_model(model_name, model_cfg).capabilities.conditional
    except ValueError as e:
        raise GenzooError(f"{model_name} cannot train on {data}, which {why}: {e}; {fix}.") from None
    if conditional:
        raise GenzooError(f"{model_name} is class-conditional, but {data} {why}: {fix}.")


def data_name(data, image_size: int | None = None, channels: int | None = None) -> str:
    """``data`` as a run records it: a registered name; folder:PATH made absolute, ``image_size`` and
    ``channels`` folded in (they convert folder images only); an in-memory set's memory:HASH. Tensors, a pair
    (images, labels) or a torch Dataset are registered as an in-memory set (genzoo/data/memory.py)."""
    from ..data import DATASETS, check_name, dataset_info, folder_name, is_memory_name, name_for, parse_folder_name
    if not isinstance(data, str):
        return name_for(data, "data")
    if is_memory_name(data):
        return data
    if data not in DATASETS and parse_folder_name(data) is None:
        raise GenzooError(f"Unknown data set {data!r}. Data sets: {', '.join(DATASETS)}, or folder:PATH "
                          "for a folder of images.")
    if parse_folder_name(data) is not None:
        return folder_name(data, image_size, channels)
    if image_size is not None or channels is not None:
        c, s, _ = dataset_info(check_name(data)).shape
        if (image_size or s, channels or c) != (s, c):
            raise GenzooError(f"image_size and channels convert a folder:PATH data set; {data} is "
                              f"{c}x{s}x{s} and is used as it is.")
    return data


def names_from_files(config_files, model: str | None, data) -> tuple[str, object]:
    """(model, data): the ones given, else the ones the experiment files name (the last file that names one)."""
    for path in config_files:
        named_model, named_data, _ = read_experiment(path)
        model = model if model is not None else named_model
        data = data if data is not None else named_data
    if model is None or data is None:
        missing = " and ".join(n for n, v in (("model", model), ("data", data)) if v is None)
        raise GenzooError(f"Name the {missing} to train: as arguments, or in a config file (model_name: NAME, "
                          "data: NAME).")
    return model, data


# ---------------------------------------------------------------------------------------------
# run folders

def choose_run_dir(model: str, data: str, out: str | Path | None = None, resume: bool = False) -> Path:
    """``out``, else runs/MODEL-DATA (numbered -2, -3, ... when it exists, except to resume it)."""
    if out is not None:
        return Path(out)
    from ..data import short_name
    base = Path("runs") / f"{model}-{short_name(data)}"
    if resume:
        return base
    run_dir, i = base, 2
    while run_dir.exists():
        run_dir = base.with_name(f"{base.name}-{i}")
        i += 1
    return run_dir


def resume_point(run_dir: Path) -> str:
    """What resuming finds in ``run_dir``: "checkpoint"; "config" (a run stopped before its first checkpoint:
    config.json alone is worth keeping); or "nothing" (no folder, an empty one, or only the temporary file of a
    config.json whose writing was stopped)."""
    from ..checkpoint import CONFIG, STATE
    if (run_dir / STATE).exists():
        return "checkpoint"
    if (run_dir / CONFIG).exists():
        return "config"
    if run_dir.exists() and any(not p.name.startswith(f".{CONFIG}.") for p in run_dir.iterdir()):
        raise GenzooError(f"Cannot resume: {run_dir} is not a run folder (no {CONFIG}) and is not empty.")
    return "nothing"


def clear_for_restart(run_dir: Path) -> None:
    """Empty a run folder that holds no checkpoint yet, keeping its config.json (and the images of an in-memory
    data set): the logs, grids and temporary files of the stopped attempt would otherwise mix with the new one's."""
    from ..checkpoint import CONFIG
    from ..data import DATA_FILE
    for p in run_dir.iterdir() if run_dir.exists() else ():
        if p.name not in (CONFIG, DATA_FILE):
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()


def check_run_dir(run_dir: Path, overwrite: bool) -> None:
    """A new run's folder must be missing or empty; ``overwrite`` deletes a previous run there (never a folder
    that is not a run)."""
    from ..checkpoint import CONFIG
    if not (run_dir.exists() and any(run_dir.iterdir())):
        return
    if not overwrite:
        raise GenzooError(f"The run folder {run_dir} already exists. Pass resume=True to continue it, "
                          "overwrite=True to replace it, or out=... with another folder.")
    if not (run_dir / CONFIG).exists():
        raise GenzooError(f"Refusing to replace {run_dir} (overwrite=True): it is not empty and is not a genzoo run "
                          f"folder (no {CONFIG}).")
    shutil.rmtree(run_dir)


@dataclasses.dataclass
class RunPlan:
    """A run ready to train: its folder, names and resolved configs, and whether it resumes a checkpoint."""
    run_dir: Path
    model_name: str
    data_name: str
    model_cfg: object
    train_cfg: TrainConfig
    resume: bool


def plan_run(model: str | None, data, *, out=None, config_files=(), overrides: dict | None = None,
             resume: bool = False, overwrite: bool = False, image_size: int | None = None,
             channels: int | None = None) -> RunPlan:
    """Resolve the names, the folder and the configs of a run, as ``genzoo train`` does, and prepare the folder:
    ``overwrite`` deletes a previous run there; ``resume`` continues the checkpoint there, starts a run that has
    none at step 0 (with its recorded config if it has one), and refuses a folder that is not a run. Only the
    main process (RANK 0) changes the folder."""
    from ..models import model_entry
    model, data = names_from_files(config_files, model, data)
    model_entry(model)     # fail fast on an unknown name
    data = data_name(data, image_size, channels)
    if resume and overwrite:
        raise GenzooError("resume=True and overwrite=True contradict each other; pass one.")
    run_dir = choose_run_dir(model, data, out, resume)
    point = resume_point(run_dir) if resume else None
    if _rank() == 0 and not resume:
        check_run_dir(run_dir, overwrite)
    model_cfg, train_cfg = resolve_config(model, data, config_files=config_files, overrides=overrides,
                                          resume_from=run_dir if point in ("checkpoint", "config") else None)
    if point == "nothing":           # a job script that always resumes, on its first start
        _note(f"resume: {run_dir} holds no run yet; starting a new one at step 0")
    elif point == "config":
        _note(f"resume: {run_dir} was stopped before its first checkpoint; starting it again at step 0 with its "
              "recorded config")
    if point in ("nothing", "config") and _rank() == 0:
        clear_for_restart(run_dir)
    return RunPlan(run_dir, model, data, model_cfg, train_cfg, resume=point == "checkpoint")


def run(plan: RunPlan, progress: bool = True, device: str | None = None) -> dict:
    """Train the planned run on ``device`` (None: a GPU where one is visible); its summary (summary.json's
    contents)."""
    from .loop import train
    _note(f"training {plan.model_name} on {plan.data_name} -> {plan.run_dir}")
    return train(plan.run_dir, plan.model_name, plan.data_name, plan.model_cfg, plan.train_cfg,
                 resume=plan.resume, progress=progress, device=device)


def train_model(model: str | None = None, data=None, out: str | Path | None = None, *, config=None,
                resume: bool = False, overwrite: bool = False, progress: bool = True, device: str | None = None,
                **overrides) -> Path:
    """Train ``model`` on ``data`` into the run folder ``out`` and return that folder; ``genzoo.train``.

    model      a name from ``genzoo models``
    data       a name from ``genzoo data list``, folder:PATH (folder[size=S,channels=C]:PATH), or images in
               memory: a tensor (N, C, H, W) of uint8 or floats in [0, 1], a pair (images, labels (N,)), or a
               torch Dataset yielding images (C, H, W) in [0, 1] or (image, label) pairs. In-memory images are
               written into the run folder (data.npz) so that eval, sample and resume find them; 10% of them
               (seeded) are held out as the test split
    out        the run folder; None: runs/MODEL-DATA, numbered if it exists
    config     a YAML experiment file, or a list of them, applied in turn; one may name model and data
    resume     continue the run in ``out`` from its checkpoint (or start it if it has none)
    overwrite  replace a previous run in ``out``
    device     where it trains: "cpu", "cuda", "cuda:N"; None: a GPU where one is visible, else the CPU
    **overrides  config keys, applied last: steps=300, lr=2e-3, latent_dim=16, **{"model.width": 8}

    The configs resolve exactly as ``genzoo train`` resolves them (``resolve_config``), so the same keys on the
    same data give the same run, bit for bit.
    """
    files = [] if config is None else [config] if isinstance(config, (str, Path)) else list(config)
    plan = plan_run(model, data, out=out, config_files=files, overrides=overrides, resume=resume,
                    overwrite=overwrite)
    run(plan, progress=progress, device=device)
    return plan.run_dir
