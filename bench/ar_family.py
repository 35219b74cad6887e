"""Benchmark: every autoregressive preset with its default config on a data set: train, then `genzoo eval` with
the exact likelihood (dyn-binarized MNIST: NLL in nats on the seed-0 binarized test set; 8-bit data such as
Fashion-MNIST: bits/dim on the seed-0 dequantized test set) and FID/KID/precision-recall/classifier score on
10,000 samples (EMA weights, seed 0), plus the wall time of drawing 64 images in this process. Writes
bench/results/PRESET-DATASET.json and the sample grid PRESET-DATASET.png.

    python bench/ar_family.py --data mnist [--presets pixelcnn,gated-pixelcnn,...] [--steps N]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, genzoo_cmd, run, write_result  # noqa: E402

import genzoo  # noqa: E402

PRESETS = ("pixelcnn", "gated-pixelcnn", "pixelrnn", "pixel-transformer")


def sample_seconds(run_dir: Path, n: int = 64, repeats: int = 2) -> float:
    """Best-of-``repeats`` wall seconds of model.sample(n) with a seeded generator (EMA weights)."""
    model = genzoo.load(run_dir)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        model.sample(n, generator=torch.Generator().manual_seed(0))
        best = min(best, time.perf_counter() - t0)
    return round(best, 2)


def bench_one(preset: str, data: str, steps: int | None) -> None:
    name = f"{preset}-{data}"
    run_dir = Path("runs") / f"bench-{name}"
    train = genzoo_cmd() + ["train", preset, "--data", data, "--out", str(run_dir), "--overwrite", "--no-progress"]
    if steps:
        train += ["--steps", str(steps)]
    run(train)
    summary = json.loads((run_dir / "summary.json").read_text())
    config = json.loads((run_dir / "config.json").read_text())
    ev_path = run_dir / "eval-bench.json"
    ev_cmd = genzoo_cmd() + ["eval", str(run_dir), "--metrics", "fid,kid,pr,score,nll", "--n", "10000",
                             "--seed", "0", "--out", str(ev_path), "--no-progress"]
    run(ev_cmd)
    ev = json.loads(ev_path.read_text())
    RESULTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(run_dir / "samples.png", RESULTS / f"{name}.png")
    write_result(name, {
        "model": preset, "dataset": data, "variant": "default",
        "command": f"python bench/ar_family.py --data {data} --presets {preset}" + (f" --steps {steps}" if steps else ""),
        "train_command": " ".join(["genzoo"] + train[3:]), "eval_command": " ".join(["genzoo"] + ev_cmd[3:]),
        "run": str(run_dir), "checkpoint": ev["checkpoint"], "seed": config["train"]["seed"],
        "config": config["model"], "train_config": config["train"],
        "train_steps": summary["step"], "train_wall_s": summary["train_wall_s"],
        "train_img_per_s": summary.get("train_img_per_s"),
        "final_eval": {k: summary[k] for k in ("nll_nats", "bpd", "test_split") if k in summary},
        "sample_64_wall_s": sample_seconds(run_dir), "sample_threads": torch.get_num_threads(),
        "n_generated": ev["n_generated"], "n_real": 10000, "eval_wall_s": ev["wall_s"],
        "feature_network": ev["feature_network"], "refused": ev["refused"],
        "sample_grid": f"bench/results/{name}.png", "metrics": ev["metrics"]})


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", default="mnist")
    p.add_argument("--presets", default=",".join(PRESETS))
    p.add_argument("--steps", type=int, help="default: each preset's own default")
    args = p.parse_args()
    for preset in args.presets.split(","):
        if preset not in PRESETS:
            raise SystemExit(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
        bench_one(preset, args.data, args.steps)


if __name__ == "__main__":
    main()
