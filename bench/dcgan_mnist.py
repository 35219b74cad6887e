"""Benchmark: the `dcgan` default config on MNIST: wall time, images/s and the sample grid
(committed as bench/results/dcgan-mnist.png). Sample-quality numbers arrive with `genzoo eval`.

    python bench/dcgan_mnist.py [--steps N] [--run runs/bench-dcgan-mnist]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, genzoo_cmd, run, write_result  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=None, help="default: the model's own default")
    p.add_argument("--run", default="runs/bench-dcgan-mnist")
    args = p.parse_args()
    cmd = genzoo_cmd() + ["train", "dcgan", "--data", "mnist", "--out", args.run, "--overwrite", "--no-progress"]
    if args.steps:
        cmd += ["--steps", str(args.steps)]
    run(cmd)
    summary = json.loads((Path(args.run) / "summary.json").read_text())
    config = json.loads((Path(args.run) / "config.json").read_text())
    RESULTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(Path(args.run) / "samples.png", RESULTS / "dcgan-mnist.png")
    write_result("dcgan-mnist", {
        "model": "dcgan", "dataset": "mnist", "variant": "default",
        "command": "python bench/dcgan_mnist.py " + " ".join(sys.argv[1:]),
        "train_command": " ".join(["genzoo"] + cmd[3:]), "checkpoint": "ema", "seed": config["train"]["seed"],
        "batch_size": config["train"]["batch_size"], "bf16": config["train"]["bf16"],
        "train_steps": summary["step"], "train_wall_s": summary["train_wall_s"],
        "train_img_per_s": summary.get("train_img_per_s"),
        "sample_grid": "bench/results/dcgan-mnist.png", "metrics": {}})


if __name__ == "__main__":
    main()
