"""Benchmark: images/s of one training step of each registered model at batch 128, fp32 and bf16,
and the step's achieved FLOP/s as a fraction of a 2048x2048 float32 matmul's FLOP/s measured in
the same run on the same threads (docs/metrics.md, "Speed"). The result names the CPU, its bf16
flags and what `bf16: auto` resolves to on it, since bf16 is faster than fp32 only where the CPU
computes it natively.

    python bench/throughput.py [--batch-size 128] [--steps 20]
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402

from genzoo.hardware import cpu_info, describe_cpu, resolve_bf16  # noqa: E402
from genzoo.models import MODELS, build_model, default_config  # noqa: E402


def matmul_flops(n: int = 2048, reps: int = 20) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n ** 3 * reps / (time.perf_counter() - t)


def step_fn(model, opts, batch, bf16: bool):
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    def step():
        for phase in model.phases:
            opts[phase].zero_grad(set_to_none=True)
            with autocast:
                out = model(batch, phase=phase)
            out["loss"].backward()
            opts[phase].step()
    return step


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=20)
    args = p.parse_args()
    torch.manual_seed(0)
    auto, why = resolve_bf16("auto", "cpu")
    print(f"CPU: {describe_cpu()}; bf16: auto resolves to {auto} ({why})")
    peak = matmul_flops()
    print(f"2048x2048 fp32 matmul: {peak / 1e9:.1f} GFLOP/s")
    rows = {}
    for name in sorted(MODELS):
        cfg = dataclasses.replace(default_config(name), channels=1, image_size=28, num_classes=10)
        model = build_model(name, cfg)
        opts = {ph: torch.optim.Adam(model.phase_parameters(ph), lr=1e-4) for ph in model.phases}
        batch = {"x": torch.rand(args.batch_size, 1, 28, 28), "y": torch.randint(0, 10, (args.batch_size,))}
        try:
            with FlopCounterMode(display=False) as counter:
                step_fn(model, opts, batch, False)()
            flops = counter.get_total_flops()
        except RuntimeError as e:    # wgan-gp: FlopCounterMode cannot follow the penalty's autograd.grad
            print(f"{name}: no FLOP count ({str(e).splitlines()[0][:80]})", flush=True)
            flops = None
        for bf16 in (False, True):
            step = step_fn(model, opts, batch, bf16)
            for _ in range(5):                       # warm-up
                step()
            t = time.perf_counter()
            for _ in range(args.steps):
                step()
            dt = (time.perf_counter() - t) / args.steps
            key = f"{name}-{'bf16' if bf16 else 'fp32'}"
            rows[key] = {"img_per_s": round(args.batch_size / dt, 1)}
            if flops is not None:
                rows[key].update(step_gflop=round(flops / 1e9, 3), achieved_gflop_per_s=round(flops / dt / 1e9, 2),
                                 fraction_of_fp32_matmul=round(flops / dt / peak, 4))
            print(key, rows[key], flush=True)
    write_result("throughput", {
        "model": "all", "dataset": "random 1x28x28 batches", "variant": f"batch {args.batch_size}",
        "command": "python bench/throughput.py " + " ".join(sys.argv[1:]),
        "cpu": cpu_info(), "bf16_auto": auto,
        "matmul_2048_fp32_gflop_per_s": round(peak / 1e9, 2), "steps_timed": args.steps, "metrics": rows})


if __name__ == "__main__":
    main()
