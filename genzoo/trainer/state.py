"""A run's state and how it is set up: ``RunState`` holds everything the loop and the monitors change as
training goes (the step, the weights, the optimisers, the data order, the best validation so far, the
losses since the last log line); ``start_run`` builds it for a new run or from a checkpoint;
``save_checkpoint`` writes it; ``RunLog`` is where its numbers go (metrics.jsonl, TensorBoard, the
progress bar)."""
from __future__ import annotations

import copy
import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from .. import checkpoint as ckpt
from ..config import TrainConfig
from ..data import balanced_subset, load_split, record_in_run
from ..errors import GenzooError
from ..hardware import resolve_bf16
from ..models import build_model
from .distributed import Dist, all_gather_rng
from .steps import BatchSampler, make_autocast, probe_steps_per_s
from .validation import ValidationSet, make_validation, split_validation


@dataclasses.dataclass
class Best:
    """The best validation value so far, its step, and the validations since it (kept in trainer_state.pt)."""
    value: float | None = None
    step: int | None = None
    bad_evals: int = 0
    evaluations: int = 0


class RunLog:
    """metrics.jsonl, TensorBoard and the progress bar; on other ranks than the main one only a silent bar."""

    def __init__(self, s: RunState, resume: bool):
        self.main = s.dd.main
        self.bar = tqdm(total=s.cfg.steps, initial=s.step, disable=not (s.progress and self.main),
                        desc=s.model_name, unit="step", dynamic_ncols=True, mininterval=1.0)
        self.file = self.writer = None
        if self.main:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(str(s.run_dir / "tensorboard"), purge_step=s.step if resume else None)
            if resume:   # drop log lines past the checkpoint, so the file reads as one run
                _truncate_metrics(s.run_dir / "metrics.jsonl", s.step)
            self.file = open(s.run_dir / "metrics.jsonl", "a")

    def write(self, row: dict, scalars=None) -> None:
        """One line of metrics.jsonl; ``scalars`` (default: every key but step) also go to TensorBoard."""
        if not self.main:
            return
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()
        for k in scalars if scalars is not None else [k for k in row if k != "step"]:
            self.writer.add_scalar(k, row[k], row["step"])

    def scalar(self, key: str, value: float, step: int) -> None:
        if self.main:
            self.writer.add_scalar(key, value, step)

    def flush(self) -> None:
        if self.file is not None:
            self.file.flush()

    def close(self) -> None:
        self.bar.close()
        for f in (self.file, self.writer):
            if f is not None:
                f.close()
        self.file = self.writer = None


@dataclasses.dataclass
class RunState:
    """Everything a run changes as it trains, in one object that the loop, the monitors and the checkpoint
    read and write. Images stay uint8 in memory; a batch is converted when drawn."""
    run_dir: Path
    model_name: str
    data_name: str
    cfg: TrainConfig                     # as it runs: bf16 resolved, steps fitted by fit_steps
    dd: Dist
    progress: bool
    images: torch.Tensor                 # uint8 (N, C, H, W): the training images (validation split removed)
    labels: torch.Tensor                 # int64 (N,)
    model: torch.nn.Module
    ema: torch.nn.Module | None          # the sampling weights when ema_decay > 0
    optimizers: dict                     # phase -> Adam
    sampler: BatchSampler
    val_indices: torch.Tensor | None     # the held-out split (indices into the train split), validation on
    val_set: ValidationSet | None
    net: torch.nn.Module | None = None   # the model, or its DDP wrapper
    autocast: object = None
    log: RunLog | None = None
    step: int = 0
    wall_before: float = 0.0             # training seconds of the run before this process started (a resume)
    monitor_wall_s: float = 0.0          # of train_wall_s: sample grids, coverage checks, validation
    t_start: float = 0.0                 # perf_counter when this process's loop began
    best: Best = dataclasses.field(default_factory=Best)
    sums: dict = dataclasses.field(default_factory=dict)   # key -> summed loss tensors since the last log line
    n_acc: int = 0                       # steps in those sums
    t_log: float = 0.0                   # perf_counter and step of the last log line (throughput)
    step_log: int = 0
    warm_step: int | None = None         # throughput counts after the first interval, which holds warm-up
    t_warm: float = 0.0
    last_saved: int | None = None        # step of the last checkpoint written by this run
    timed_out: bool = False              # max_train_minutes ended the run
    early_stop: bool = False             # validation ended the run
    interrupted: bool = False            # SIGINT or SIGTERM ended the run
    complete: bool = False               # resumed at its end, and summary.json already says so
    summary: dict = dataclasses.field(default_factory=dict)

    @property
    def sampling_net(self) -> torch.nn.Module:
        return self.ema if self.ema is not None else self.model

    @property
    def is_last(self) -> bool:
        return self.step == self.cfg.steps

    @property
    def images_per_step(self) -> int:
        return max(self.model.phase_repeats(ph) for ph in self.model.phases) * self.cfg.batch_size

    @property
    def wall_s(self) -> float:
        """Training seconds of the whole run so far, every resumed part of it."""
        return self.wall_before + time.perf_counter() - self.t_start


def run_config(cfg: TrainConfig, dd: Dist) -> TrainConfig:
    """``cfg`` as this process runs it: threads set, the batch checked against the ranks, bf16 resolved."""
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    if cfg.batch_size % dd.world:
        raise GenzooError(f"batch_size {cfg.batch_size} does not split evenly over {dd.world} processes.")
    bf16, why = resolve_bf16(cfg.bf16, dd.device)
    if dd.main:
        tqdm.write(f"bf16 autocast: {'on' if bf16 else 'off'} ({why})", file=sys.stderr)
    return dataclasses.replace(cfg, bf16=bf16)     # config.json records what ran: true or false, never auto


def start_run(run_dir: Path, model_name: str, data_name: str, model_cfg, cfg: TrainConfig, dd: Dist,
              resume: bool, progress: bool) -> RunState:
    """The run's state at its first step: a new run (its steps fitted where asked) or one restored from its
    checkpoint. Nothing is written to ``run_dir`` before the model, the data and the validation metric are
    known to work."""
    images, labels = _train_images(data_name, cfg)
    saved = ckpt.load_trainer_state(run_dir) if resume else None
    val_state = saved.get("validation") if saved is not None else None
    if resume and (val_state is not None) != (cfg.val_every_steps > 0):
        raise GenzooError(f"{run_dir} was trained with validation {'on' if val_state else 'off'}; switching "
                          "it on or off changes the training images, so a run cannot be resumed that way.")
    val_idx = None
    if cfg.val_every_steps > 0:       # carve the held-out split; its images never enter a training batch
        train_idx, val_idx = split_validation(len(images), cfg.val_size)
        if val_state is not None and not torch.equal(val_state["indices"], val_idx):
            raise GenzooError(f"{run_dir}: the validation split saved in trainer_state.pt is not the one of "
                              f"{data_name} now (the data set changed?); it cannot be resumed.")
        val_images, val_labels = images[val_idx], labels[val_idx]
        images, labels = images[train_idx], labels[train_idx]
    if dd.device.type == "cuda":
        images, labels = images.to(dd.device), labels.to(dd.device)

    torch.manual_seed(cfg.seed)                       # same init on every rank
    model = build_model(model_name, model_cfg).to(dd.device)
    ema = copy.deepcopy(model).eval().requires_grad_(False) if cfg.ema_decay > 0 else None
    optimizers = {ph: torch.optim.Adam(model.phase_parameters(ph), lr=cfg.lr * model.phase_lr_scale(ph),
                                       betas=cfg.adam_betas, weight_decay=cfg.weight_decay)
                  for ph in model.phases}
    sampler = BatchSampler(len(images), cfg.batch_size, cfg.seed)
    # the validation metric (before anything is written: a model may have no metric here)
    val_set = make_validation(model, data_name, val_images, val_labels, cfg, dd.device) \
        if val_idx is not None else None
    torch.manual_seed(cfg.seed * 7919 + 1 + dd.rank)   # model noise: its own stream per rank
    s = RunState(run_dir=run_dir, model_name=model_name, data_name=data_name, cfg=cfg, dd=dd, progress=progress,
                 images=images, labels=labels, model=model, ema=ema, optimizers=optimizers, sampler=sampler,
                 val_indices=val_idx, val_set=val_set, autocast=make_autocast(cfg.bf16, dd.device),
                 summary={"run_dir": str(run_dir), "status": "running"})
    if resume:
        _restore(s, saved)
    elif cfg.fit_steps:     # a new run: fit its steps to its time budget before config.json records them
        _fit_steps(s)
    return s


def _train_images(data_name: str, cfg: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (N, C, H, W) and int64 (N,) of the train split, or of its seeded class-balanced subset."""
    data = load_split(data_name, "train")
    images, labels = data.images, data.labels         # stay on the CPU (a GPU run moves them once)
    if cfg.train_subset:               # the seeded class-balanced subset: the only images this run sees
        idx = balanced_subset(labels, cfg.train_subset, data.num_classes)
        images, labels = images[idx], labels[idx]
    return images, labels


def _restore(s: RunState, state: dict) -> None:
    """Continue from trainer_state.pt: weights, EMA, optimisers, data order, RNG, step, wall time, best."""
    run_dir, dd, cfg = s.run_dir, s.dd, s.cfg
    s.wall_before = float(state.get("train_wall_s", 0.0))
    s.monitor_wall_s = float(state.get("monitor_wall_s", 0.0))
    s.step = s.last_saved = int(state["step"])
    if dd.main:
        ckpt.remove_temporaries(run_dir)
    if "weights" in state:     # the whole checkpoint; the safetensors files may be one behind after a kill
        s.model.load_state_dict(state["weights"]["model"])
        if s.ema is not None:
            s.ema.load_state_dict(state["weights"]["ema"])
        if dd.main and ckpt.sync_weights(run_dir, s.model, s.ema, s.step):
            tqdm.write(f"rewrote the weights of step {s.step} from trainer_state.pt (the run was stopped while "
                       "writing them)", file=sys.stderr)
    else:                      # written before trainer_state.pt held the weights
        ckpt.check_weights_step(run_dir, s.step, s.ema is not None)
        s.model.load_state_dict(ckpt.load_weights(run_dir / ckpt.MODEL))
        if s.ema is not None:
            s.ema.load_state_dict(ckpt.load_weights(run_dir / ckpt.EMA))
    for ph, opt in s.optimizers.items():
        opt.load_state_dict(state["optimizers"][ph])
    s.sampler.load_state_dict(state["sampler"])
    if state.get("world", 1) != dd.world:
        raise GenzooError(f"{run_dir} was trained with {state.get('world', 1)} processes; resume it "
                          f"with the same number (got {dd.world}).")
    rng = state["rng"][dd.rank]
    torch.set_rng_state(rng["cpu"])
    if "cuda" in rng and dd.device.type == "cuda":
        torch.cuda.set_rng_state(rng["cuda"], dd.device)
    if "validation" in state:
        s.best = Best(**{k: state["validation"][k] for k in ("value", "step", "bad_evals", "evaluations")})
    # resumed at its last step or past its max_train_minutes: only the run's end is left
    done = s.step >= cfg.steps or 0 < cfg.max_train_minutes * 60 <= s.wall_before
    s.timed_out = done and s.step < cfg.steps
    if done and (run_dir / "summary.json").exists():
        summary = json.loads((run_dir / "summary.json").read_text())
        if summary.get("step") == s.step:
            if dd.main:
                tqdm.write(f"{run_dir} is complete: step {s.step} of {cfg.steps} ({summary.get('status')}). "
                           "Raise steps or max_train_minutes to train further.", file=sys.stderr)
            s.complete, s.summary = True, {**summary, "already_complete": True}


def _fit_steps(s: RunState) -> None:
    """Lower ``steps`` to what max_train_minutes holds at this machine's measured step rate."""
    cfg, dd = s.cfg, s.dd
    rate = probe_steps_per_s(s.model, s.ema, cfg, s.images, s.labels, dd.device)
    # the whole budget: a probe that guessed too fast is stopped by max_train_minutes a little before its end
    fitted = torch.tensor([min(cfg.steps, max(1, int(rate * 60 * cfg.max_train_minutes)))])
    if dd.world > 1:    # every rank must plan the same steps: the slowest one's
        fitted = fitted.to(dd.device)
        torch.distributed.all_reduce(fitted, op=torch.distributed.ReduceOp.MIN)
    if dd.main:
        tqdm.write(f"fit_steps: {rate:.2f} steps/s on this machine; {int(fitted)} of {cfg.steps} steps fit "
                   f"max_train_minutes = {cfg.max_train_minutes:g}", file=sys.stderr)
    s.cfg = dataclasses.replace(cfg, steps=int(fitted))


def open_run(s: RunState, model_cfg, resume: bool) -> None:
    """Write what a new run records (config.json, the data an in-memory set needs), put best/ in step with the
    checkpoint, and open the log; wrap the model for data-parallel training."""
    run_dir, dd, cfg = s.run_dir, s.dd, s.cfg
    if not resume and dd.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        ckpt.write_config(run_dir, {"model_name": s.model_name, "data": s.data_name,
                                    "model": dataclasses.asdict(model_cfg), "train": dataclasses.asdict(cfg)})
        record_in_run(s.data_name, run_dir)
    if resume and s.val_indices is not None and dd.main:
        ckpt.recover_best(run_dir)
        saved = ckpt.read_best(run_dir)
        if saved is not None and saved.get("step") != s.best.step:   # written after the checkpoint we resume
            shutil.rmtree(run_dir / ckpt.BEST)                        # from; the replay redoes it
    if s.val_set is not None and dd.main and not resume:
        tqdm.write(f"validation every {cfg.val_every_steps} steps: {s.val_set.key} = {s.val_set.description}",
                   file=sys.stderr)
    s.net = s.model
    if dd.world > 1:
        # GAN phases leave the other network's parameters out of the graph
        s.net = torch.nn.parallel.DistributedDataParallel(s.model, find_unused_parameters=len(s.model.phases) > 1)
    s.log = RunLog(s, resume)


def save_checkpoint(s: RunState) -> None:
    """trainer_state.pt and the weights of this step (every rank sends its RNG state; the main one writes)."""
    rngs = all_gather_rng(s.dd)
    if s.dd.main:
        validation = {"validation": {"indices": s.val_indices, **dataclasses.asdict(s.best)}} \
            if s.val_indices is not None else {}
        ckpt.save_checkpoint(s.run_dir, s.model, s.ema, {
            "step": s.step, "world": s.dd.world, "sampler": s.sampler.state_dict(), "rng": rngs,
            "optimizers": {ph: opt.state_dict() for ph, opt in s.optimizers.items()},
            "train_wall_s": s.wall_s, "monitor_wall_s": s.monitor_wall_s, **validation})
    s.last_saved = s.step


def _truncate_metrics(path: Path, step: int) -> None:
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:      # the half-written last line of a killed run
            continue
        if row["step"] <= step:
            keep.append(line)
    ckpt.atomic_write(path, lambda p: Path(p).write_text("".join(line + "\n" for line in keep)))
