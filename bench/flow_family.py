"""Benchmark: every flow preset with its default config on a data set: train, then score with
`genzoo eval` (exact test bits/dim on the seed-0 dequantized test set, and FID/KID/precision-recall/
density-coverage/classifier score on 10,000 samples at temperature 1 vs the 10,000 test images; EMA
weights, seed 0). Writes bench/results/PRESET-DATASET.json and the sample grid PRESET-DATASET.png.

    python bench/flow_family.py --data mnist [--presets realnvp,glow] [--steps N]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, genzoo_cmd, run, write_result  # noqa: E402

PRESETS = ("realnvp", "glow")


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
    ev_cmd = genzoo_cmd() + ["eval", str(run_dir), "--metrics", "fid,kid,pr,score,nll", "--n", "10000", "--seed", "0",
                             "--out", str(ev_path), "--no-progress"]
    run(ev_cmd)
    ev = json.loads(ev_path.read_text())
    RESULTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(run_dir / "samples.png", RESULTS / f"{name}.png")
    write_result(name, {
        "model": preset, "dataset": data, "variant": "default",
        "command": f"python bench/flow_family.py --data {data} --presets {preset}"
                   + (f" --steps {steps}" if steps else ""),
        "train_command": " ".join(["genzoo"] + train[3:]), "eval_command": " ".join(["genzoo"] + ev_cmd[3:]),
        "run": str(run_dir), "checkpoint": ev["checkpoint"], "seed": config["train"]["seed"],
        "config": config["model"], "train_config": config["train"],
        "train_steps": summary["step"], "train_wall_s": summary["train_wall_s"],
        "train_img_per_s": summary.get("train_img_per_s"),
        "final_eval_bpd": summary.get("bpd"),        # the trainer's own end-of-run test bits/dim (same definition)
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
