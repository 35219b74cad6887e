"""One training step and what it is made of: the seeded data order (``BatchSampler``), one optimiser
step of a phase (``optimiser_step``), the EMA update, the bf16 autocast, and ``probe_steps_per_s``, which
times a step on throwaway copies for ``fit_steps``."""
from __future__ import annotations

import contextlib
import copy
import math
import time

import torch

from ..config import TrainConfig
from ..errors import GenzooError

PROBE_SECONDS = 10.0  # how long fit_steps times the step


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


def make_autocast(bf16: bool, device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def probe_steps_per_s(model, ema, cfg: TrainConfig, images: torch.Tensor, labels: torch.Tensor, device,
                      seconds: float | None = None) -> float:
    """Training steps per second of this run on this machine: every phase with its repeats, then the EMA update,
    timed on copies of the model and fresh optimisers, on random batches, with the RNG forked, so the run itself
    starts exactly as it would without the probe. Ten warm-up steps, then at least five for ``seconds``."""
    seconds = PROBE_SECONDS if seconds is None else seconds      # read at call time: a test shortens it
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
