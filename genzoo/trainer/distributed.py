"""Data-parallel training under torchrun: joining the process group, the decisions every rank must make
together (stop here, stop early), the RNG states a checkpoint gathers, and leaving the group."""
from __future__ import annotations

import dataclasses
import os
import signal
import threading

import torch
import torch.distributed as dist

from ..checkpoint import resolve_device


@dataclasses.dataclass
class Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str | None = None) -> Dist:
    """Join the torchrun process group when WORLD_SIZE > 1 (gloo on CPU, NCCL on GPU). ``device``: None takes the
    GPU where one is visible, else the CPU; "cpu" keeps to the CPU; "cuda" or "cuda:N" needs a GPU (under torchrun
    each rank takes the GPU of its LOCAL_RANK, so N is for a single process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    wanted = None if device is None else resolve_device(device)
    if wanted is None and torch.cuda.is_available() or wanted is not None and wanted.type == "cuda":
        index = wanted.index if wanted is not None and wanted.index is not None and world == 1 else local
        device = torch.device("cuda", index)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world == 1:
        return Dist(device=device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(rank=dist.get_rank(), world=dist.get_world_size(), device=device)


def any_rank(dd: Dist, *flags: bool) -> list[bool]:
    """Each flag true on any rank, so every rank takes the same branch (one all-reduce for them all)."""
    if dd.world == 1:
        return list(flags)
    vec = torch.tensor([float(f) for f in flags], device=dd.device)
    dist.all_reduce(vec)
    return [v > 0 for v in vec.tolist()]


def mean_over_ranks(dd: Dist, vec: torch.Tensor) -> torch.Tensor:
    if dd.world > 1:
        dist.all_reduce(vec)
        vec /= dd.world
    return vec


def all_gather_rng(dd: Dist) -> list[dict]:
    """Every rank's RNG states (CPU, and CUDA on a GPU), indexed by rank, for the checkpoint."""
    mine = {"cpu": torch.get_rng_state()}
    if dd.device.type == "cuda":
        mine["cuda"] = torch.cuda.get_rng_state(dd.device)
    if dd.world == 1:
        return [mine]
    out = [None] * dd.world
    dist.all_gather_object(out, mine)
    return out


def shutdown(dd: Dist, together: bool = True) -> None:
    """Leave the process group; ``together``: every rank is here (a barrier first). The caller has dropped the
    DDP wrapper."""
    if dd.world > 1 and dist.is_initialized():
        if together:
            dist.barrier()
        dist.destroy_process_group()


class StopFlag:
    """SIGINT/SIGTERM set a flag the loop checks, so the run saves a checkpoint and exits cleanly."""

    def __init__(self):
        self.signal = None
        self._old = {}

    def __enter__(self):
        if hasattr(signal, "SIGTERM") and threading.current_thread() is threading.main_thread():
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
