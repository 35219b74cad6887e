"""One model-agnostic training loop for every genzoo model.

Each step draws one global batch from uint8 data held in memory, then steps each of the model's
phases (one Adam per phase) on the loss the model returns; the trainer knows nothing of VAEs or
GANs. Under torchrun every rank draws the same global batch and trains on its 1/world share, so
N processes compute the same update as one process with the same global batch.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from . import checkpoint as ckpt
from .config import TrainConfig
from .data import balanced_subset, load_split
from .errors import GenzooError
from .hardware import resolve_bf16
from .images import save_grid, shift_images
from .models import build_model
from .plots import plot_curves


class BatchSampler:
    """Indices of a shuffled epoch at a time from a seeded generator; its state resumes exactly."""

    def __init__(self, n: int, batch_size: int, seed: int):
        if batch_size > n:
            raise GenzooError(f"batch_size {batch_size} is larger than the data set ({n} images).")
        self.n, self.batch_size = n, batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self.perm = torch.randperm(n, generator=self.generator)
        self.cursor = 0

    def offsets(self, max_shift: int) -> torch.Tensor:
        """Whole-pixel translations (batch_size, 2) in [-max_shift, max_shift] for the batch just drawn."""
        return torch.randint(-max_shift, max_shift + 1, (self.batch_size, 2), generator=self.generator)

    def next(self) -> torch.Tensor:
        if self.cursor + self.batch_size > self.n:   # drop the ragged end of the epoch
            self.perm = torch.randperm(self.n, generator=self.generator)
            self.cursor = 0
        idx = self.perm[self.cursor:self.cursor + self.batch_size]
        self.cursor += self.batch_size
        return idx

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "perm": self.perm, "cursor": self.cursor}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.perm, self.cursor = state["perm"], int(state["cursor"])


@dataclasses.dataclass
class Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed() -> Dist:
    """Join the torchrun process group when WORLD_SIZE > 1 (gloo on CPU, NCCL on GPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world == 1:
        return Dist(device=device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(rank=dist.get_rank(), world=dist.get_world_size(), device=device)


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    ema_p = [p for p in ema.parameters()]
    torch._foreach_lerp_(ema_p, [p.detach() for p in model.parameters()], 1 - decay)
    for b_ema, b in zip(ema.buffers(), model.buffers()):
        b_ema.copy_(b)


def optimiser_step(net, model, opt, batch: dict, phase: str, autocast, grad_clip_norm: float):
    """One optimiser step of ``phase`` on ``batch``: (the model's loss dict, the gradient norm before clipping)."""
    opt.zero_grad(set_to_none=True)
    with autocast:
        out = net(batch, phase=phase)
    out["loss"].backward()
    norm = torch.nn.utils.clip_grad_norm_(         # inf = measure only
        model.phase_parameters(phase), grad_clip_norm if grad_clip_norm > 0 else math.inf)
    opt.step()
    return out, norm


PROBE_SECONDS = 10.0  # how long fit_steps times the step


def make_autocast(bf16: bool, device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def probe_steps_per_s(model, ema, cfg: TrainConfig, images: torch.Tensor, labels: torch.Tensor, device,
                      seconds: float) -> float:
    """Training steps per second of this run on this machine: every phase with its repeats, then the EMA update,
    timed on copies of the model and fresh optimisers, on random batches, with the RNG forked, so the run itself
    starts exactly as it would without the probe. Ten warm-up steps, then at least five for ``seconds``."""
    model, ema = copy.deepcopy(model).train(), copy.deepcopy(ema) if ema is not None else None
    opts = {ph: torch.optim.Adam(model.phase_parameters(ph), lr=cfg.lr * model.phase_lr_scale(ph),
                                 betas=cfg.adam_betas) for ph in model.phases}
    g = torch.Generator().manual_seed(0)
    autocast = make_autocast(cfg.bf16, device)

    def step() -> None:
        for ph in model.phases:
            for _ in range(model.phase_repeats(ph)):
                idx = torch.randint(len(images), (cfg.batch_size,), generator=g)
                batch = {"x": images[idx].float().div_(255).to(device), "y": labels[idx].to(device)}
                optimiser_step(model, model, opts[ph], batch, ph, autocast, cfg.grad_clip_norm)
        if ema is not None:
            ema_update(ema, model, cfg.ema_decay)

    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        for _ in range(10):
            step()
        n, t0 = 0, time.perf_counter()
        while n < 5 or time.perf_counter() - t0 < seconds:
            step()
            n += 1
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return n / (time.perf_counter() - t0)


class _StopFlag:
    """SIGINT/SIGTERM set a flag the loop checks, so the run saves a checkpoint and exits cleanly."""

    def __init__(self):
        self.signal = None
        self._old = {}

    def __enter__(self):
        if hasattr(signal, "SIGTERM") and _in_main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signal is not None:          # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.signal = signum

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _in_main_thread() -> bool:
    import threading
    return threading.current_thread() is threading.main_thread()


def _fmt(v: float) -> str:
    return f"{v:.4g}"


VAL_SPLIT_SEED = 0       # the validation split is the same for every run seed, so runs compare on it
VAL_METRIC_SEED = 0      # binarization / dequantization / latent noise / sampling of every validation
VAL_MAX_IMAGES = 5000    # the default split: min(5000, 10% of the train split)


def split_validation(n: int, val_size: int = 0, seed: int = VAL_SPLIT_SEED) -> tuple[torch.Tensor, torch.Tensor]:
    """(train indices, validation indices), both sorted int64, of a seeded split of n training images;
    ``val_size`` 0 = min(5000, n // 10) (5000 of MNIST's 60,000, 149 of digits' 1497)."""
    size = val_size or min(VAL_MAX_IMAGES, n // 10)
    if not 1 <= size < n:
        raise GenzooError(f"val_size {size} leaves no images to train on or validate with ({n} train images).")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[size:].sort().values, perm[:size].sort().values


@dataclasses.dataclass
class ValidationSet:
    """The held-out images of a run and how they are scored; ``key`` names the metric in metrics.jsonl."""
    images: torch.Tensor            # uint8 (n, C, H, W), on the CPU
    labels: torch.Tensor            # int64 (n,)
    kind: str                       # "elbo", "exact", "loss" (the model's own training loss) or "fid"
    key: str                        # e.g. "val/elbo_nats", "val/nll_nats", "val/bpd", "val/loss", "val/fid"
    description: str                # one line for the log and summary.json
    fid_samples: int = 0            # generated images of the FID
    classifier: torch.nn.Module | None = None     # frozen classifier (fid)
    real_features: torch.Tensor | None = None     # (n, D) classifier features of the images (fid)


def make_validation(model, data_name: str, images: torch.Tensor, labels: torch.Tensor, cfg: TrainConfig,
                    device) -> ValidationSet:
    """Choose the validation metric from what the model can do: its ELBO, its exact NLL, its own training loss
    (a likelihood model whose bound is expensive, e.g. diffusion), or a fast FID in the frozen classifier's
    feature space (models without a likelihood)."""
    from .likelihood import is_binarized
    n = len(images)
    common = {"images": images.cpu(), "labels": labels.cpu()}
    unit = "nats" if is_binarized(model) else "bpd"
    likelihood = model.capabilities.likelihood
    if likelihood.elbo:
        return ValidationSet(**common, kind="elbo", key=f"val/elbo_{unit}",
                             description=f"negative ELBO in {'nats per image' if unit == 'nats' else 'bits/dim'} "
                                         f"on {n} held-out train images (seed {VAL_METRIC_SEED})")
    if likelihood.kind == "exact":
        return ValidationSet(**common, kind="exact", key="val/nll_nats" if unit == "nats" else "val/bpd",
                             description=f"exact NLL in {'nats per image' if unit == 'nats' else 'bits/dim'} on "
                                         f"{n} held-out train images")
    if likelihood.kind != "none" and len(model.phases) == 1:
        return ValidationSet(**common, kind="loss", key="val/loss",
                             description=f"the model's own training loss (not a likelihood bound) on {n} held-out "
                                         f"train images, noise seed {VAL_METRIC_SEED}")
    from .classifier import load_frozen, predict
    try:
        with torch.random.fork_rng(devices=[]):      # building the network draws init weights
            classifier = load_frozen(data_name)[0]
    except GenzooError as e:
        raise GenzooError(f"val_every_steps needs a validation metric: {type(model).__name__} has no likelihood, "
                          f"and the FID it would use needs a frozen classifier: {e}") from None
    c = classifier.config
    if (c.channels, c.image_size) != (model.config.channels, model.config.image_size):
        raise GenzooError(f"val_every_steps: the frozen {data_name} classifier takes {c.channels}x{c.image_size}"
                          f"x{c.image_size} images, the model makes {model.config.channels}x"
                          f"{model.config.image_size}x{model.config.image_size}.")
    classifier = classifier.to(device)
    return ValidationSet(**common, kind="fid", key="val/fid", fid_samples=cfg.val_fid_samples,
                         classifier=classifier, real_features=predict(classifier, images.to(device))[0].cpu(),
                         description=f"FID of {cfg.val_fid_samples} samples (seed {VAL_METRIC_SEED}) vs {n} "
                                     f"held-out train images, frozen-classifier features")


@torch.no_grad()
def validation_metric(model, val: ValidationSet) -> float:
    """The validation metric of ``model`` (in eval mode) on ``val``; lower is better. Draws its noise from
    fixed seeds, inside a forked RNG, so it never changes the training run's random stream."""
    from .likelihood import bits_per_dim, is_binarized, mean_bound
    dev = model.device
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(VAL_METRIC_SEED)
        labels = val.labels if model.conditional else None
        dims = val.images[0].numel()
        if val.kind in ("elbo", "exact"):
            nll = -mean_bound(model, val.images, val.kind, seed=VAL_METRIC_SEED, progress=False, labels=labels)
            return nll if is_binarized(model) else bits_per_dim(nll, dims)
        if val.kind == "loss":
            total = 0.0
            for start in range(0, len(val.images), 500):
                x = val.images[start:start + 500].to(dev).float().div_(255)      # (b, C, H, W) in [0, 1]
                y = val.labels[start:start + 500].to(dev)
                total += model.loss({"x": x, "y": y}, model.phases[0])["loss"].double().item() * len(x)
            return total / len(val.images)
        from .classifier import predict
        from .metrics import fid
        g = torch.Generator(dev).manual_seed(VAL_METRIC_SEED)
        feats = []
        for start in range(0, val.fid_samples, 500):
            m = min(500, val.fid_samples - start)
            kw = {"labels": torch.arange(start, start + m, device=dev) % model.config.num_classes} \
                if model.conditional else {}
            feats.append(predict(val.classifier, model.sample(m, generator=g, **kw))[0].cpu())
        return fid(torch.cat(feats), val.real_features)


def train(run_dir: str | Path, model_name: str, data_name: str, model_cfg, cfg: TrainConfig, *,
          resume: bool = False, progress: bool = True) -> dict:
    """Train ``model_name`` on ``data_name`` into ``run_dir``; returns a summary dict.

    The run folder must already be chosen by the caller (the CLI refuses to overwrite one);
    with ``resume`` the model, EMA, optimisers, RNG and data order continue from trainer_state.pt.
    """
    run_dir = Path(run_dir)
    dd = setup_distributed()
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    if cfg.batch_size % dd.world:
        raise GenzooError(f"batch_size {cfg.batch_size} does not split evenly over {dd.world} processes.")
    bf16, why = resolve_bf16(cfg.bf16, dd.device)
    cfg = dataclasses.replace(cfg, bf16=bf16)          # config.json records what ran: true or false, never auto
    if dd.main:
        tqdm.write(f"bf16 autocast: {'on' if bf16 else 'off'} ({why})", file=sys.stderr)

    data = load_split(data_name, "train")
    images, labels = data.images, data.labels         # uint8 (N, C, H, W), int64 (N,), stay on CPU
    if cfg.train_subset:               # the seeded class-balanced subset: the only images this run sees
        idx = balanced_subset(labels, cfg.train_subset, data.num_classes)
        images, labels = images[idx], labels[idx]
    val_idx = val_state = None
    if resume:
        state = ckpt.load_trainer_state(run_dir)
        val_state = state.get("validation")
        if (val_state is not None) != (cfg.val_every_steps > 0):
            raise GenzooError(f"{run_dir} was trained with validation {'on' if val_state else 'off'}; switching "
                              "it on or off changes the training images, so a run cannot be resumed that way.")
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
    repeats = {ph: model.phase_repeats(ph) for ph in model.phases}
    images_per_step = max(repeats.values()) * cfg.batch_size
    sampler = BatchSampler(len(images), cfg.batch_size, cfg.seed)
    # the validation metric and split (before anything is written: a model may have no metric here)
    val_set = make_validation(model, data_name, val_images, val_labels, cfg, dd.device) \
        if val_idx is not None else None
    torch.manual_seed(cfg.seed * 7919 + 1 + dd.rank)   # model noise: its own stream per rank
    step, wall_before = 0, 0.0   # wall_before: training seconds of the run before this resume
    done = False                 # resumed at its last step or past its max_train_minutes: only the run's end is left
    # seconds of train_wall_s spent on monitoring between steps (sample grids, coverage checks, validation)
    monitor = {"wall_s": 0.0}
    if resume:
        wall_before = float(state.get("train_wall_s", 0.0))
        monitor["wall_s"] = float(state.get("monitor_wall_s", 0.0))
        step = int(state["step"])
        if dd.main:
            ckpt.remove_temporaries(run_dir)
        if "weights" in state:     # the whole checkpoint; the safetensors files may be one behind after a kill
            model.load_state_dict(state["weights"]["model"])
            if ema is not None:
                ema.load_state_dict(state["weights"]["ema"])
            if dd.main and ckpt.sync_weights(run_dir, model, ema, step):
                tqdm.write(f"rewrote the weights of step {step} from trainer_state.pt (the run was stopped while "
                           "writing them)", file=sys.stderr)
        else:                      # written before trainer_state.pt held the weights
            ckpt.check_weights_step(run_dir, step, ema is not None)
            model.load_state_dict(ckpt.load_weights(run_dir / ckpt.MODEL))
            if ema is not None:
                ema.load_state_dict(ckpt.load_weights(run_dir / ckpt.EMA))
        for ph, opt in optimizers.items():
            opt.load_state_dict(state["optimizers"][ph])
        sampler.load_state_dict(state["sampler"])
        if state.get("world", 1) != dd.world:
            raise GenzooError(f"{run_dir} was trained with {state.get('world', 1)} processes; resume it "
                              f"with the same number (got {dd.world}).")
        rng = state["rng"][dd.rank]
        torch.set_rng_state(rng["cpu"])
        if "cuda" in rng and dd.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], dd.device)
        done = step >= cfg.steps or 0 < cfg.max_train_minutes * 60 <= wall_before
        if done and (run_dir / "summary.json").exists():
            summary = json.loads((run_dir / "summary.json").read_text())
            if summary.get("step") == step:
                if dd.main:
                    tqdm.write(f"{run_dir} is complete: step {step} of {cfg.steps} ({summary.get('status')}). "
                               "Raise --steps or max_train_minutes to train further.", file=sys.stderr)
                _shutdown(dd)
                return {**summary, "already_complete": True}
    elif cfg.fit_steps:     # a new run: fit its steps to its time budget before config.json records them
        rate = probe_steps_per_s(model, ema, cfg, images, labels, dd.device, PROBE_SECONDS)
        # the whole budget: a probe that guessed too fast is stopped by max_train_minutes a little before its end
        fitted = torch.tensor([min(cfg.steps, max(1, int(rate * 60 * cfg.max_train_minutes)))])
        if dd.world > 1:    # every rank must plan the same steps: the slowest one's
            fitted = fitted.to(dd.device)
            dist.all_reduce(fitted, op=dist.ReduceOp.MIN)
        if dd.main:
            tqdm.write(f"fit_steps: {rate:.2f} steps/s on this machine; {int(fitted)} of {cfg.steps} steps fit "
                       f"max_train_minutes = {cfg.max_train_minutes:g}", file=sys.stderr)
        cfg = dataclasses.replace(cfg, steps=int(fitted))
    if not resume and dd.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        ckpt.write_config(run_dir, {"model_name": model_name, "data": data_name,
                                    "model": dataclasses.asdict(model_cfg), "train": dataclasses.asdict(cfg)})

    # validation: the best value so far, its step, and the validations since it
    best = {"value": None, "step": None, "bad_evals": 0, "evaluations": 0}
    if val_state is not None:
        best = {k: val_state[k] for k in best}
        if dd.main:
            ckpt.recover_best(run_dir)
            saved = ckpt.read_best(run_dir)
            if saved is not None and saved.get("step") != best["step"]:   # written after the checkpoint we
                shutil.rmtree(run_dir / ckpt.BEST)                        # resume from; the replay redoes it
    if val_set is not None and dd.main and not resume:
        tqdm.write(f"validation every {cfg.val_every_steps} steps: {val_set.key} = {val_set.description}",
                   file=sys.stderr)

    net = model
    if dd.world > 1:
        # GAN phases leave the other network's parameters out of the graph
        net = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=len(model.phases) > 1)

    writer = None
    if dd.main:
        from torch.utils.tensorboard import SummaryWriter
        writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=step if resume else None)
        if resume:   # drop log lines past the checkpoint, so the file reads as one run
            _truncate_metrics(run_dir / "metrics.jsonl", step)
    metrics_file = open(run_dir / "metrics.jsonl", "a") if dd.main else None

    def all_gather_rng() -> list[dict]:
        mine = {"cpu": torch.get_rng_state()}
        if dd.device.type == "cuda":
            mine["cuda"] = torch.cuda.get_rng_state(dd.device)
        if dd.world == 1:
            return [mine]
        out = [None] * dd.world
        dist.all_gather_object(out, mine)
        return out

    def save(at_step: int) -> None:
        rngs = all_gather_rng()
        if not dd.main:
            return
        ckpt.save_checkpoint(run_dir, model, ema, {
            "step": at_step, "world": dd.world, "sampler": sampler.state_dict(), "rng": rngs,
            "optimizers": {ph: opt.state_dict() for ph, opt in optimizers.items()},
            "train_wall_s": wall_before + time.perf_counter() - t_start, "monitor_wall_s": monitor["wall_s"],
            **({"validation": {"indices": val_idx, **best}} if val_idx is not None else {})})

    sample_gen_seed = cfg.seed + 12345
    coverage = CoverageCheck(data_name, model, dd.device) if dd.main and cfg.coverage_every_steps > 0 else None

    def sample_grid(at_step: int) -> Path | None:
        if not dd.main:
            return None
        net_s = ema if ema is not None else model
        was_training = net_s.training
        net_s.eval()
        g = torch.Generator(dd.device).manual_seed(sample_gen_seed)
        nrow = None
        if model.conditional:     # one row per class
            nrow = max(1, cfg.sample_grid_n // model.config.num_classes)
            labels = torch.arange(model.config.num_classes, device=dd.device).repeat_interleave(nrow)
            x = net_s.sample(len(labels), labels=labels, generator=g)
        else:
            x = net_s.sample(cfg.sample_grid_n, generator=g)
        net_s.train(was_training)
        path = save_grid(x, run_dir / "samples" / f"step_{at_step:07d}.png", nrow=nrow)
        save_grid(x, run_dir / "samples.png", nrow=nrow)
        return path

    def check_coverage(at_step: int) -> None:
        net_s = ema if ema is not None else model
        was_training = net_s.training
        net_s.eval()
        report = coverage(net_s, seed=sample_gen_seed)
        net_s.train(was_training)
        if report is None:
            return
        with open(run_dir / "coverage.jsonl", "a") as f:
            f.write(json.dumps({"step": at_step, **report}) + "\n")
        writer.add_scalar("coverage/classes", report["classes_present"], at_step)
        writer.add_scalar("coverage/entropy", report["normalised_entropy"], at_step)
        if "label_accuracy" in report:
            writer.add_scalar("coverage/label_accuracy", report["label_accuracy"], at_step)
        if report["classes_present"] < report["num_classes"]:
            tqdm.write(f"warning: step {at_step}: mode coverage: the frozen {data_name} classifier finds only "
                       f"{report['classes_present']} of {report['num_classes']} classes in {report['n']} samples "
                       f"(class shares {report['histogram']}); the generator may be collapsing.", file=sys.stderr)

    def validate(at_step: int) -> bool:
        """Score the sampling weights on the held-out split, keep best/, and say whether to stop early."""
        stop_early = False
        if dd.main:
            net_s = ema if ema is not None else model
            was_training = net_s.training
            net_s.eval()
            value = float(validation_metric(net_s, val_set))
            net_s.train(was_training)
            best["evaluations"] += 1
            if math.isfinite(value) and (best["value"] is None or value < best["value"]):
                best.update(value=value, step=at_step, bad_evals=0)
                ckpt.save_best(run_dir, model, ema, at_step, {"step": at_step, "metric": val_set.key,
                                                              "value": value, "description": val_set.description})
            else:
                best["bad_evals"] += 1
            row = {"step": at_step, val_set.key: value, "val/best": best["value"]}
            metrics_file.write(json.dumps(row) + "\n")
            metrics_file.flush()
            writer.add_scalar(val_set.key, value, at_step)
            stop_early = 0 < cfg.early_stop_patience <= best["bad_evals"]
            if stop_early:
                tqdm.write(f"early stop at step {at_step}: {val_set.key} has not improved on {best['value']:.4g} "
                           f"(step {best['step']}) in {best['bad_evals']} validations", file=sys.stderr)
        if dd.world > 1:     # every rank leaves the loop together
            flag = torch.tensor([float(stop_early)], device=dd.device)
            dist.all_reduce(flag)
            stop_early = flag.item() > 0
        return stop_early

    autocast = make_autocast(cfg.bf16, dd.device)
    multi = len(model.phases) > 1
    sums: dict[str, torch.Tensor] = {}
    n_acc = 0
    t_log, step_log = time.perf_counter(), step
    t_start, warm_step, t_warm = time.perf_counter(), None, None
    last_saved = step if resume else None
    summary = {"run_dir": str(run_dir), "status": "running"}
    bar = tqdm(total=cfg.steps, initial=step, disable=not (progress and dd.main), desc=f"{model_name}",
               unit="step", dynamic_ncols=True, mininterval=1.0)

    def accumulated_finite() -> bool:
        if not sums:
            return True
        ok = torch.isfinite(torch.stack(list(sums.values()))).all()
        return bool(ok)

    early = False                # set when validation stops the run early
    timed_out = done and step < cfg.steps      # set when max_train_minutes ends the run
    with _StopFlag() as stop:
        model.train()
        def next_batch() -> dict:
            idx = sampler.next()
            # drawn for the global batch from the data-order generator: every rank agrees, resume is exact
            offsets = sampler.offsets(cfg.shift_augment) if cfg.shift_augment else None
            if dd.world > 1:
                idx = idx[dd.rank::dd.world]
                offsets = offsets[dd.rank::dd.world] if offsets is not None else None
            x = images[idx].float().div_(255).to(dd.device, non_blocking=True)    # (b, C, H, W) in [0, 1]
            if offsets is not None:
                x = shift_images(x, offsets)
            return {"x": x, "y": labels[idx].to(dd.device)}

        while step < cfg.steps and not timed_out:
            batch = next_batch()
            lr_factor = cfg.lr_factor(step)
            for phase in model.phases:
                opt = optimizers[phase]
                for group in opt.param_groups:      # a function of the step alone, so resume needs no state
                    group["lr"] = cfg.lr * model.phase_lr_scale(phase) * lr_factor
                for r in range(repeats[phase]):
                    if r > 0:              # each extra critic step sees fresh data
                        batch = next_batch()
                    out, norm = optimiser_step(net, model, opt, batch, phase, autocast, cfg.grad_clip_norm)
                out["grad_norm"] = norm
                for k, v in out.items():   # the last repeat's values
                    key = f"{phase}/{k}" if multi else k
                    v = v.detach().float()
                    sums[key] = sums[key] + v if key in sums else v
            n_acc += 1
            if ema is not None:
                ema_update(ema, model, min(cfg.ema_decay, (1 + step) / (10 + step)))
            step += 1
            bar.update(1)

            stop_now = stop.signal is not None
            out_of_time = (cfg.max_train_minutes > 0
                           and wall_before + time.perf_counter() - t_start >= 60 * cfg.max_train_minutes)
            if dd.world > 1:     # every rank must leave the loop at the same step
                flag = torch.tensor([float(stop_now), float(out_of_time)], device=dd.device)
                dist.all_reduce(flag)
                stop_now, out_of_time = (v > 0 for v in flag.tolist())     # one sync for both
            timed_out = out_of_time and step < cfg.steps
            stop_now = stop_now or timed_out
            is_last = step == cfg.steps
            do_ckpt = is_last or stop_now or (cfg.ckpt_every_steps > 0 and step % cfg.ckpt_every_steps == 0)

            if step % cfg.log_every_steps == 0 or is_last or stop_now or do_ckpt:
                keys = sorted(sums)
                vec = torch.stack([sums[k] for k in keys]) / n_acc
                if dd.world > 1:
                    dist.all_reduce(vec)
                    vec /= dd.world
                values = dict(zip(keys, vec.tolist()))
                if not all(math.isfinite(v) for v in values.values()):
                    bad = [k for k, v in values.items() if not math.isfinite(v)]
                    kept = f"the last good checkpoint (step {last_saved}) is kept in {run_dir}" \
                        if last_saved is not None else "no checkpoint had been written yet"
                    bar.close()
                    net = None
                    _shutdown(dd)
                    raise GenzooError(
                        f"Training stopped: {', '.join(bad)} became non-finite between steps "
                        f"{step - n_acc + 1} and {step}; {kept}. Try a lower lr, grad_clip_norm, or bf16=false.")
                now = time.perf_counter()
                img_s = (step - step_log) * images_per_step / max(now - t_log, 1e-9)
                if warm_step is None:       # the first interval holds warm-up; throughput counts after it
                    warm_step, t_warm = step, now
                t_log, step_log = now, step
                sums, n_acc = {}, 0
                if dd.main:
                    row = {"step": step, **values, "img_per_s": img_s}
                    if cfg.lr_warmup_steps or cfg.lr_decay != "none":
                        row["lr"] = cfg.lr * lr_factor
                    metrics_file.write(json.dumps(row) + "\n")
                    metrics_file.flush()
                    for k, v in row.items():
                        if k != "step":
                            writer.add_scalar(k, v, step)
                    bar.set_postfix({k.split("/")[0][:4] + "/" + k.split("/")[-1] if "/" in k else k: _fmt(v)
                                     for k, v in values.items() if k.endswith("loss")} | {"img/s": f"{img_s:.0f}"},
                                    refresh=False)
            t_monitor = time.perf_counter()
            early = val_idx is not None and step % cfg.val_every_steps == 0 and validate(step)
            if cfg.sample_every_steps > 0 and step % cfg.sample_every_steps == 0 and not is_last:
                sample_grid(step)
            if coverage is not None and (step % cfg.coverage_every_steps == 0 or is_last):
                check_coverage(step)
            monitor["wall_s"] += time.perf_counter() - t_monitor
            if do_ckpt or early:
                save(step)
                last_saved = step
            if stop_now or early:
                break
    bar.close()

    wall = time.perf_counter() - t_start
    summary["step"] = step
    summary["train_wall_s"] = round(wall_before + wall, 2)   # every part of a resumed run
    summary["monitor_wall_s"] = round(monitor["wall_s"], 2)  # of which: sample grids, coverage, validation
    if warm_step is not None and step > warm_step:
        summary["train_img_per_s"] = round((step - warm_step) * images_per_step / (time.perf_counter() - t_warm), 1)
    if stop.signal is not None:
        summary["status"] = "interrupted"
    elif timed_out:
        summary["status"] = "time_limit"
        tqdm.write(f"stopped at step {step} of {cfg.steps}: max_train_minutes = {cfg.max_train_minutes:g} reached",
                   file=sys.stderr)
    elif early:
        summary["status"] = "early_stopped"
    else:
        summary["status"] = "finished"
    if val_set is not None and dd.main:
        summary["validation"] = {"metric": val_set.key, "description": val_set.description,
                                 "val_images": len(val_set.images), "evaluations": best["evaluations"],
                                 "best_step": best["step"], "best_value": best["value"],
                                 "best_dir": str(run_dir / ckpt.BEST) if best["step"] is not None else None}
    if dd.main:
        summary["samples"] = str(sample_grid(step))
        metrics_file.close()
        writer.close()
        curves = plot_curves(run_dir / "metrics.jsonl", run_dir / "curves.png")
        summary["curves"] = str(curves) if curves else None
        if cfg.final_eval and model.capabilities.likelihood.kind != "none" and summary["status"] != "interrupted":
            summary.update(final_eval(ema if ema is not None else model, data_name, progress))
        ckpt.atomic_write(run_dir / "summary.json",
                          lambda p: Path(p).write_text(json.dumps(summary, indent=2) + "\n"))
    net = None
    _shutdown(dd)
    return summary


class CoverageCheck:
    """Mode coverage: the class histogram of a generated batch under the data set's frozen classifier.

    A class counts as present when it gets at least a quarter of its fair share (n / 4C) of the
    samples; fewer present classes than the data set has means the generator is dropping modes.
    Inactive (returns None) where genzoo ships no classifier for the data set or the shapes differ.
    """

    def __init__(self, data_name: str, model, device, n: int = 1000):
        from .classifier import load_frozen
        self.n = n
        try:
            with torch.random.fork_rng(devices=[]):    # building the network draws init weights: keep the
                self.classifier = load_frozen(data_name)[0].to(device)   # training RNG stream untouched
        except GenzooError:
            self.classifier = None
            return
        c = self.classifier.config
        if (c.channels, c.image_size) != (model.config.channels, model.config.image_size):
            self.classifier = None

    @torch.no_grad()
    def __call__(self, model, seed: int) -> dict | None:
        if self.classifier is None:
            return None
        k = self.classifier.config.num_classes
        g = torch.Generator(model.device).manual_seed(seed)
        preds, asked = [], []
        for start in range(0, self.n, 250):
            m = min(250, self.n - start)
            if model.conditional:     # balanced labels; the histogram then also shows whether they are obeyed
                lab = torch.arange(start, start + m, device=model.device) % model.config.num_classes
                x = model.sample(m, labels=lab, generator=g)
                asked.append(lab.cpu())
            else:
                x = model.sample(m, generator=g)
            preds.append(self.classifier(x.float()).argmax(1).cpu())
        preds = torch.cat(preds)
        share = torch.bincount(preds, minlength=k).double() / len(preds)
        entropy = -(share * share.clamp_min(1e-12).log()).sum() / math.log(k)
        out = {"n": self.n, "num_classes": k, "classes_present": int((share >= 0.25 / k).sum()),
               "normalised_entropy": round(entropy.item(), 4), "histogram": [round(v, 3) for v in share.tolist()]}
        if asked:   # how often the classifier agrees with the label the sample was drawn for
            out["label_accuracy"] = round((preds == torch.cat(asked)).double().mean().item(), 4)
        return out


def final_eval(model, data_name: str, progress: bool) -> dict:
    """Test-set likelihood (bound) of the trained model, in nats per image or bits/dim (docs/metrics.md): the ELBO
    of latent-variable models, the exact log-likelihood of models that declare one."""
    from .likelihood import bits_per_dim, is_binarized, mean_bound

    test = load_split(data_name, "test")
    was_training = model.training
    model.eval()
    out = {"test_split": f"{data_name} test ({len(test.images)} images)"}
    likelihood = model.capabilities.likelihood
    if likelihood.elbo:   # reported as docs/metrics.md says: -ELBO, an upper bound on the NLL
        labels = test.labels if model.conditional else None
        elbo = mean_bound(model, test.images, "elbo", progress=progress, labels=labels)
        if is_binarized(model):
            out["elbo_nats"] = round(-elbo, 3)
        else:
            out["elbo_bpd"] = round(bits_per_dim(-elbo, test.images[0].numel()), 4)
    elif likelihood.kind == "exact":   # flows, autoregressive models: one pass per image
        labels = test.labels if model.conditional else None
        nll = -mean_bound(model, test.images, "exact", progress=progress, labels=labels)
        if is_binarized(model):
            out["nll_nats"] = round(nll, 3)
        else:
            out["bpd"] = round(bits_per_dim(nll, test.images[0].numel()), 4)
    model.train(was_training)
    return out


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


def _shutdown(dd: Dist) -> None:
    """Leave the process group together (barrier first); the caller has dropped the DDP wrapper."""
    if dd.world > 1 and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
