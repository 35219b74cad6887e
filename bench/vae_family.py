"""Benchmark: every VAE preset with its default config on a data set: train, then `genzoo eval` with the
likelihood (dyn-binarized MNIST: negative ELBO and the IWAE bound with k importance samples on the full
test set; 8-bit data: bits/dim) and FID/KID/precision-recall/classifier score on 10,000 samples (EMA
weights, seed 0); CAS and per-class FID for cvae. Writes bench/results/PRESET-DATASET.json and the
sample grid PRESET-DATASET.png.

    python bench/vae_family.py --data mnist [--presets vae-mlp,vae,...] [--steps N] [--iwae-k 5000]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, genzoo_cmd, run, write_result  # noqa: E402

PRESETS = ("vae-mlp", "vae", "beta-vae", "cvae", "iwae", "vaegan")


def bench_one(preset: str, data: str, steps: int | None, iwae_k: int) -> None:
    name = f"{preset}-{data}"
    run_dir = Path("runs") / f"bench-{name}"
    train = genzoo_cmd() + ["train", preset, "--data", data, "--out", str(run_dir), "--overwrite", "--no-progress"]
    if steps:
        train += ["--steps", str(steps)]
    run(train)
    summary = json.loads((run_dir / "summary.json").read_text())
    config = json.loads((run_dir / "config.json").read_text())
    metrics = "fid,kid,pr,score" + (",nll" if preset != "vaegan" else "") + (",cas" if preset == "cvae" else "")
    ev_path = run_dir / "eval-bench.json"
    ev_cmd = genzoo_cmd() + ["eval", str(run_dir), "--metrics", metrics, "--n", "10000", "--seed", "0",
                             "--iwae-k", str(iwae_k), "--out", str(ev_path), "--no-progress"]
    run(ev_cmd)
    ev = json.loads(ev_path.read_text())
    RESULTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(run_dir / "samples.png", RESULTS / f"{name}.png")
    write_result(name, {
        "model": preset, "dataset": data, "variant": "default",
        "command": f"python bench/vae_family.py --data {data} --presets {preset} --iwae-k {iwae_k}"
                   + (f" --steps {steps}" if steps else ""),
        "train_command": " ".join(["genzoo"] + train[3:]), "eval_command": " ".join(["genzoo"] + ev_cmd[3:]),
        "run": str(run_dir), "checkpoint": ev["checkpoint"], "seed": config["train"]["seed"],
        "config": config["model"], "train_config": config["train"],
        "train_steps": summary["step"], "train_wall_s": summary["train_wall_s"],
        "train_img_per_s": summary.get("train_img_per_s"),
        "n_generated": ev["n_generated"], "n_real": 10000, "eval_wall_s": ev["wall_s"],
        "feature_network": ev["feature_network"], "refused": ev["refused"],
        "sample_grid": f"bench/results/{name}.png", "metrics": ev["metrics"]})


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", default="mnist")
    p.add_argument("--presets", default=",".join(PRESETS))
    p.add_argument("--steps", type=int, help="default: each preset's own default")
    p.add_argument("--iwae-k", type=int, default=5000, help="importance samples of the NLL bound (default 5000)")
    args = p.parse_args()
    for preset in args.presets.split(","):
        if preset not in PRESETS:
            raise SystemExit(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
        bench_one(preset, args.data, args.steps, args.iwae_k)


if __name__ == "__main__":
    main()
