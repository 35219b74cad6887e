"""Train, score and export the models of genzoo's zoo (genzoo/zoo/NAME), each by its recorded recipe.

    python bench/zoo.py cgan-mnist                 # train (capped at --minutes), eval, time sampling, export
    python bench/zoo.py cvae-mnist --device cuda   # train on a GPU; eval and sampling times stay on the CPU

For each model: `genzoo train` with the recipe below and max_train_minutes as a cap, `genzoo eval` at
n = 10,000 into RUN/eval.json, the time of loading it and sampling 16 images on the CPU (one call, seed 0,
after one warm-up) into RUN/eval-speed.json, then `genzoo export RUN genzoo/zoo/NAME`, whose card
gathers all of it; bench/results/zoo-NAME.json records the commands, the machine and the wall times,
and docs/images/zoo-NAME.png is its grid of 64 samples (classes in turn) for README.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import genzoo_cmd, write_result  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
EVAL = ["--metrics", "fid,kid,pr,score,cas", "--n", "10000", "--seed", "0"]
EVAL_LIKELIHOOD = ["--metrics", "fid,kid,pr,score,nll,cas", "--n", "10000", "--seed", "0", "--iwae-k", "1000"]
# name -> (what it is for, `genzoo train` arguments, `genzoo eval` arguments); the recipes are those of the
# BENCHMARKS.md rows each model is judged against
ZOO = {
    "cgan-mnist": ("class-conditional GAN: fast sampling by class",
                   ["cgan", "--data", "mnist"], EVAL),
    "cvae-mnist": ("conditional VAE, one small MLP VAE per class: encode/decode, interpolation, a fast Bayes "
                   "classifier",
                   ["cvae", "--data", "mnist", "--steps", "6000", "--set", "label_in=separate", "--set", "arch=mlp",
                    "--set", "latent_dim=16", "--set", "batch_size=1280", "--set", "lr_decay=cosine"],
                   EVAL_LIKELIHOOD),
    "cgan-fashion-mnist": ("class-conditional GAN: fast sampling by class",
                           ["cgan", "--data", "fashion-mnist"], EVAL),
    "cvae-fashion-mnist": ("conditional VAE, one small MLP VAE per class: encode/decode, interpolation, a fast "
                           "Bayes classifier",
                           ["cvae", "--data", "fashion-mnist", "--steps", "3000", "--set", "label_in=separate",
                            "--set", "arch=mlp", "--set", "latent_dim=16", "--set", "batch_size=1280",
                            "--set", "lr_decay=cosine"], EVAL_LIKELIHOOD),
}


def run(cmd: list[str]) -> float:
    print("+", " ".join(cmd), flush=True)
    t = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    return time.perf_counter() - t


def sampling_time(run_dir: Path) -> dict:
    """Seconds to load the model and draw 16 images on the CPU (after one warm-up draw), seed 0."""
    import torch

    import genzoo
    from genzoo.hardware import machine
    from genzoo.sampling import balanced_labels, sample
    t = time.perf_counter()
    model = genzoo.load(run_dir)
    load_s = time.perf_counter() - t
    labels = balanced_labels(16, model.config.num_classes) if model.capabilities.conditional else None
    sample(model, 16, seed=1, labels=labels)
    t = time.perf_counter()
    sample(model, 16, seed=0, labels=labels)
    return {"metrics": {"load_s": round(load_s, 3), "sample16_s": round(time.perf_counter() - t, 3)},
            "n_generated": 16, "seed": 0, "machine": machine(), "threads": torch.get_num_threads()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="+", choices=sorted(ZOO))
    p.add_argument("--minutes", type=float, default=60, help="training time cap (max_train_minutes), default 60")
    p.add_argument("--device", default=None, help="where to train (default: a GPU where one is visible)")
    args = p.parse_args()
    from genzoo.hardware import machine
    for name in args.names:
        purpose, train_args, eval_args = ZOO[name]
        run_dir = ROOT / "runs" / f"zoo-{name}"
        train = genzoo_cmd() + ["train", *train_args, "--out", str(run_dir), "--overwrite", "--no-progress",
                                "--set", f"max_train_minutes={args.minutes:g}"]
        if args.device:
            train += ["--device", args.device]
        train_s = run(train)
        evaluate = genzoo_cmd() + ["eval", str(run_dir), *eval_args, "--out", str(run_dir / "eval.json"),
                                   "--no-progress"]
        eval_s = run(evaluate)
        speed = sampling_time(run_dir)
        (run_dir / "eval-speed.json").write_text(json.dumps(speed, indent=2) + "\n")
        export = genzoo_cmd() + ["export", str(run_dir), str(ROOT / "genzoo" / "zoo" / name), "--name", name,
                                 "--use", purpose, "--overwrite"]
        run(export)
        grid = ROOT / "docs" / "images" / f"zoo-{name}.png"
        grid.parent.mkdir(parents=True, exist_ok=True)
        run(genzoo_cmd() + ["sample", name, "-n", "64", "--out", str(grid)])
        card = json.loads((ROOT / "genzoo" / "zoo" / name / "card.json").read_text())
        write_result(f"zoo-{name}", {
            "model": name, "purpose": purpose, "machine": machine(), "command": "python " + " ".join(sys.argv),
            "train_command": " ".join(train), "eval_command": " ".join(evaluate), "train_wall_s": round(train_s, 1),
            "eval_wall_s": round(eval_s, 1), "sampling": speed["metrics"], "metrics": card["headline"],
            "end_of_training": card["end_of_training"], "steps": card["training"]["steps"],
            "status": card["training"]["status"], "weights_bytes": card["weights_bytes"],
            "grid": str(grid.relative_to(ROOT))})


if __name__ == "__main__":
    main()
