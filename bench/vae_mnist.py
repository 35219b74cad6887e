"""Benchmark: the `vae` default config on dyn-binarized MNIST, trained for ~30 CPU minutes.

Reports the negative test ELBO and the IWAE bound (k importance samples) on the full 10,000-image
test set, binarized once with seed 0 (docs/metrics.md), from the EMA weights.

    python bench/vae_mnist.py [--steps 42000] [--k 1000] [--run runs/bench-vae-mnist]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, genzoo_cmd, run, write_result  # noqa: E402

import genzoo  # noqa: E402
from genzoo.data import load_split  # noqa: E402
from genzoo.likelihood import score_split  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=42000)
    p.add_argument("--k", type=int, default=1000)
    p.add_argument("--run", default="runs/bench-vae-mnist")
    p.add_argument("--skip-train", action="store_true", help="evaluate an existing run")
    args = p.parse_args()

    train_cmd = genzoo_cmd() + ["train", "vae", "--data", "mnist", "--steps", str(args.steps),
                                "--out", args.run, "--overwrite", "--no-progress"]
    if not args.skip_train:
        run(train_cmd)
    summary = json.loads((Path(args.run) / "summary.json").read_text())

    model = genzoo.load(args.run)           # EMA weights
    test = load_split("mnist", "test")
    t0 = time.perf_counter()
    elbo = score_split(model, test.images, estimator="elbo", seed=0)["elbo_nats"]
    iwae = score_split(model, test.images, estimator="iwae", k=args.k, batch_size=20, seed=0)["nll_nats"]
    eval_s = time.perf_counter() - t0

    RESULTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(Path(args.run) / "samples.png", RESULTS / "vae-mnist.png")
    write_result("vae-mnist", {
        "model": "vae", "dataset": "dyn-binarized mnist (test set binarized once, seed 0)",
        "variant": "default",
        "command": "python bench/vae_mnist.py " + " ".join(sys.argv[1:]),
        "train_command": " ".join(["genzoo"] + train_cmd[3:]),
        "checkpoint": "ema", "seed": 0, "n_test": len(test.images),
        "train_steps": summary["step"], "train_wall_s": summary["train_wall_s"],
        "train_img_per_s": summary.get("train_img_per_s"), "eval_wall_s": round(eval_s, 1),
        "sample_grid": "bench/results/vae-mnist.png",
        "metrics": {"elbo_nats": round(elbo, 2), "nll_nats": round(iwae, 2), "iwae_k": args.k},
    })


if __name__ == "__main__":
    main()
