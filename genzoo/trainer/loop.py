"""One model-agnostic training loop for every genzoo model.

Each step draws one global batch from uint8 data held in memory, then steps each of the model's
phases (one Adam per phase) on the loss the model returns; the trainer knows nothing of VAEs or
GANs. Under torchrun every rank draws the same global batch and trains on its 1/world share, so
N processes compute the same update as one process with the same global batch. What runs beside
the steps (grids, validation, coverage, the end-of-run likelihood) is a monitor (monitors.py).
"""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from .. import checkpoint as ckpt
from ..config import TrainConfig
from ..errors import GenzooError
from ..hardware import machine
from ..images import shift_images
from .distributed import StopFlag, any_rank, mean_over_ranks, setup_distributed, shutdown
from .monitors import Monitor, make_monitors
from .state import RunState, open_run, run_config, save_checkpoint, start_run
from .steps import ema_update, optimiser_step


def train(run_dir: str | Path, model_name: str, data_name: str, model_cfg, cfg: TrainConfig, *,
          resume: bool = False, progress: bool = True, device: str | None = None) -> dict:
    """Train ``model_name`` on ``data_name`` into ``run_dir``; returns a summary dict.

    The run folder must already be chosen by the caller (``genzoo.trainer.runs`` refuses to overwrite one);
    with ``resume`` the model, EMA, optimisers, RNG and data order continue from trainer_state.pt. ``device``:
    None trains on the GPU where one is visible, else on the CPU; or "cpu", "cuda", "cuda:N".
    """
    run_dir = Path(run_dir)
    dd = setup_distributed(device)
    s, together = None, True
    try:
        cfg = run_config(cfg, dd)
        s = start_run(run_dir, model_name, data_name, model_cfg, cfg, dd, resume, progress)
        if s.complete:
            return s.summary
        open_run(s, model_cfg, resume)
        monitors = make_monitors(s)
        with StopFlag() as stop:
            run_loop(s, monitors, stop)
        return finish(s, monitors)
    except BaseException as e:
        together = isinstance(e, GenzooError)   # raised on every rank at once (a non-finite loss): leave together
        raise
    finally:   # the one teardown, however the run ends
        if s is not None:
            if s.log is not None:
                s.log.close()
            s.net = None     # drop the DDP wrapper before the process group
        shutdown(dd, together)


def run_loop(s: RunState, monitors: list[Monitor], stop: StopFlag) -> None:
    """Train from ``s.step`` to the last step, or until a signal, the time budget or early stopping."""
    cfg, model = s.cfg, s.model
    s.t_start = s.t_log = time.perf_counter()
    s.step_log = s.step
    model.train()
    while s.step < cfg.steps and not s.timed_out:
        # Draw the batch.
        batch = draw_batch(s)

        # Step each phase (a phase that repeats, a WGAN critic, draws a fresh batch for each repeat).
        lr_factor = cfg.lr_factor(s.step)     # a function of the step alone, so resume needs no state
        for phase in model.phases:
            opt = s.optimizers[phase]
            for group in opt.param_groups:
                group["lr"] = cfg.lr * model.phase_lr_scale(phase) * lr_factor
            for r in range(model.phase_repeats(phase)):
                if r > 0:
                    batch = draw_batch(s)
                out, norm = optimiser_step(s.net, model, opt, batch, phase, s.autocast, cfg.grad_clip_norm)
            accumulate(s, phase, {**out, "grad_norm": norm})     # the last repeat's values
        s.n_acc += 1

        # Update EMA.
        if s.ema is not None:
            ema_update(s.ema, model, min(cfg.ema_decay, (1 + s.step) / (10 + s.step)))
        s.step += 1
        s.log.bar.update(1)

        # Decide, on every rank together, whether to stop after this step.
        out_of_time = 0 < cfg.max_train_minutes and s.wall_s >= 60 * cfg.max_train_minutes
        signalled, out_of_time = any_rank(s.dd, stop.signal is not None, out_of_time)
        s.interrupted = signalled
        s.timed_out = out_of_time and s.step < cfg.steps
        stop_now = signalled or s.timed_out
        do_ckpt = s.is_last or stop_now or (cfg.ckpt_every_steps > 0 and s.step % cfg.ckpt_every_steps == 0)

        # Log.
        if s.step % cfg.log_every_steps == 0 or s.is_last or stop_now or do_ckpt:
            log_losses(s, lr_factor)

        # Monitor: grids, validation, coverage (their time is part of train_wall_s and counted apart).
        t_monitor = time.perf_counter()
        for monitor in monitors:
            if monitor.due(s):
                monitor.on_step(s)
        s.monitor_wall_s += time.perf_counter() - t_monitor

        # Checkpoint.
        if do_ckpt or s.early_stop:
            save_checkpoint(s)
        if stop_now or s.early_stop:
            break
    s.interrupted = s.interrupted or stop.signal is not None   # a signal during the last step's monitors too


def draw_batch(s: RunState) -> dict:
    """The next batch of this rank: {"x": (b, C, H, W) float in [0, 1] on the device, "y": (b,) int64}."""
    idx = s.sampler.next()
    # drawn for the global batch from the data-order generator: every rank agrees, resume is exact
    offsets = s.sampler.offsets(s.cfg.shift_augment) if s.cfg.shift_augment else None
    if s.dd.world > 1:
        idx = idx[s.dd.rank::s.dd.world]
        offsets = offsets[s.dd.rank::s.dd.world] if offsets is not None else None
    x = s.images[idx].float().div_(255).to(s.dd.device, non_blocking=True)    # (b, C, H, W) in [0, 1]
    if offsets is not None:
        x = shift_images(x, offsets)
    return {"x": x, "y": s.labels[idx].to(s.dd.device)}


def accumulate(s: RunState, phase: str, out: dict) -> None:
    """Add a phase's loss dict to the sums of this log interval (keys "phase/key" when there are phases)."""
    multi = len(s.model.phases) > 1
    for k, v in out.items():
        key = f"{phase}/{k}" if multi else k
        v = v.detach().float()
        s.sums[key] = s.sums[key] + v if key in s.sums else v


def log_losses(s: RunState, lr_factor: float) -> None:
    """The mean of each logged value since the last line, over all ranks, to metrics.jsonl, TensorBoard and
    the progress bar; a non-finite value stops the run (the last good checkpoint stays)."""
    keys = sorted(s.sums)
    values = dict(zip(keys, mean_over_ranks(s.dd, torch.stack([s.sums[k] for k in keys]) / s.n_acc).tolist()))
    bad = [k for k, v in values.items() if not math.isfinite(v)]
    if bad:
        kept = f"the last good checkpoint (step {s.last_saved}) is kept in {s.run_dir}" \
            if s.last_saved is not None else "no checkpoint had been written yet"
        raise GenzooError(f"Training stopped: {', '.join(bad)} became non-finite between steps "
                          f"{s.step - s.n_acc + 1} and {s.step}; {kept}. Try a lower lr, grad_clip_norm, or "
                          "bf16=false.")
    now = time.perf_counter()
    img_s = (s.step - s.step_log) * s.images_per_step / max(now - s.t_log, 1e-9)
    if s.warm_step is None:       # the first interval holds warm-up; throughput counts after it
        s.warm_step, s.t_warm = s.step, now
    s.t_log, s.step_log = now, s.step
    s.sums, s.n_acc = {}, 0
    row = {"step": s.step, **values, "img_per_s": img_s}
    if s.cfg.lr_warmup_steps or s.cfg.lr_decay != "none":
        row["lr"] = s.cfg.lr * lr_factor
    s.log.write(row)
    s.log.bar.set_postfix({_short(k): f"{v:.4g}" for k, v in values.items() if k.endswith("loss")}
                          | {"img/s": f"{img_s:.0f}"}, refresh=False)


def _short(key: str) -> str:
    """A progress-bar label: "discriminator/loss" -> "disc/loss"."""
    return key.split("/")[0][:4] + "/" + key.split("/")[-1] if "/" in key else key


def finish(s: RunState, monitors: list[Monitor]) -> dict:
    """The run's summary: its status and times, then what each monitor adds at the end (the last grid, the
    best validation, the curves, the test likelihood); summary.json on the main process."""
    s.log.bar.close()
    summary = s.summary
    summary["step"] = s.step
    summary["train_wall_s"] = round(s.wall_s, 2)               # every part of a resumed run
    summary["monitor_wall_s"] = round(s.monitor_wall_s, 2)     # of which: sample grids, coverage, validation
    summary["machine"] = machine() if s.dd.device.type == "cpu" else \
        f"{ckpt.device_name(s.dd.device)} x {s.dd.world}, {machine()}"                  # where this part ran
    if s.warm_step is not None and s.step > s.warm_step:
        summary["train_img_per_s"] = round((s.step - s.warm_step) * s.images_per_step
                                           / (time.perf_counter() - s.t_warm), 1)
    if s.interrupted:
        summary["status"] = "interrupted"
    elif s.timed_out:
        summary["status"] = "time_limit"
        tqdm.write(f"stopped at step {s.step} of {s.cfg.steps}: max_train_minutes = {s.cfg.max_train_minutes:g} "
                   "reached", file=sys.stderr)
    else:
        summary["status"] = "early_stopped" if s.early_stop else "finished"
    for monitor in monitors:
        monitor.on_end(s)
    if s.dd.main:
        ckpt.atomic_write(s.run_dir / "summary.json",
                          lambda p: Path(p).write_text(json.dumps(summary, indent=2) + "\n"))
    return summary
