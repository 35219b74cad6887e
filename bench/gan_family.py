"""Benchmark: every GAN preset with its default config on a data set: train, then score with
`genzoo eval` (FID/KID/precision-recall/density-coverage/classifier score on 10,000 samples vs the
10,000 test images, EMA generator, seed 0; per-class FID and CAS for the conditional presets).
Writes bench/results/PRESET-DATASET.json and the sample grid PRESET-DATASET.png (InfoGAN also its
code traversals).

    python bench/gan_family.py --data mnist [--presets gan,dcgan,...] [--steps N]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, genzoo_cmd, run, write_result  # noqa: E402

PRESETS = ("gan", "dcgan", "wgan-gp", "cgan", "acgan", "infogan", "sagan")
CONDITIONAL = ("cgan", "acgan")


def bench_one(preset: str, data: str, steps: int | None) -> None:
    name = f"{preset}-{data}"
    run_dir = Path("runs") / f"bench-{name}"
    train = genzoo_cmd() + ["train", preset, "--data", data, "--out", str(run_dir), "--overwrite", "--no-progress"]
    if steps:
        train += ["--steps", str(steps)]
    run(train)
    summary = json.loads((run_dir / "summary.json").read_text())
    config = json.loads((run_dir / "config.json").read_text())
    metrics = "fid,kid,pr,score" + (",cas" if preset in CONDITIONAL else "")
    ev_path = run_dir / "eval-bench.json"
    ev_cmd = genzoo_cmd() + ["eval", str(run_dir), "--metrics", metrics, "--n", "10000", "--seed", "0",
                             "--out", str(ev_path), "--no-progress"]
    run(ev_cmd)
    ev = json.loads(ev_path.read_text())
    RESULTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(run_dir / "samples.png", RESULTS / f"{name}.png")
    extra = {}
    if preset == "infogan":
        for code in ("cat", "c0", "c1"):
            png = RESULTS / f"{name}-traverse-{code}.png"
            run(genzoo_cmd() + ["sample", str(run_dir), "--traverse", code, "--out", str(png)])
            extra[f"traverse_{code}"] = str(png.relative_to(RESULTS.parent.parent))
    coverage = [json.loads(line) for line in (run_dir / "coverage.jsonl").read_text().splitlines()] \
        if (run_dir / "coverage.jsonl").exists() else []
    write_result(name, {
        "model": preset, "dataset": data, "variant": "default",
        "command": f"python bench/gan_family.py --data {data} --presets {preset}"
                   + (f" --steps {steps}" if steps else ""),
        "train_command": " ".join(["genzoo"] + train[3:]), "eval_command": " ".join(["genzoo"] + ev_cmd[3:]),
        "run": str(run_dir), "checkpoint": ev["checkpoint"], "seed": config["train"]["seed"],
        "config": config["model"], "train_config": config["train"],
        "train_steps": summary["step"], "train_wall_s": summary["train_wall_s"],
        "train_img_per_s": summary.get("train_img_per_s"),
        "n_generated": ev["n_generated"], "n_real": 10000, "feature_eval_wall_s": ev["wall_s"],
        "feature_network": ev["feature_network"], "refused": ev["refused"],
        "final_coverage": coverage[-1] if coverage else None,
        "sample_grid": f"bench/results/{name}.png", **extra, "metrics": ev["metrics"]})


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
