"""Benchmark: class-conditional runs as Bayes classifiers, argmax_y log p(x|y) + log p(y) with a uniform prior, on
the test set beside genzoo's shipped discriminative classifier, clean and under additive Gaussian noise (clipped to
[0, 1]). Runs `genzoo classify RUN --test` and writes bench/results/classify-<run name>.json with `bayes_acc`.

    python bench/classify.py runs/bench-cvae-mnist runs/bench-glow-cond-mnist --data mnist --n 10000 \
        --noise 0,0.1,0.2,0.3
With --mixture the runs make one row: their equal-weight mixture p(x|y) = (1/M) sum_m p_m(x|y), written to
bench/results/classify-mixture-<run names joined by +>.json. With --draws M each test image is binarized (or
dequantized) M times and log p(x|y) averaged over the draws; the name gains -drawsM. With --binarize threshold a
binarized model scores the test images thresholded at grey level 1/2, and the discriminative classifier is also
measured on them; the name gains -threshold.
A run the Bayes classifier refuses (unconditional, no likelihood) is reported and skipped. Conditional diffusion
runs are scored with their bound estimated from --bound-steps timesteps (K + 1 network passes per image and class).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import genzoo_cmd, write_result  # noqa: E402

from genzoo.apps import BINARIZE, DEFAULT_BOUND_STEPS  # noqa: E402
from genzoo.config import TrainConfig  # noqa: E402
from genzoo.models import default_config  # noqa: E402

# training options that change the fitted model (named in the record when they differ from the defaults)
FIT_OPTIONS = ("lr", "adam_betas", "lr_warmup_steps", "lr_decay", "weight_decay", "grad_clip_norm", "ema_decay",
               "seed", "train_subset", "shift_augment", "val_every_steps", "early_stop_patience", "max_train_minutes")


def trained_record(run: str | Path) -> dict:
    """How the run was trained, from its folder: steps, batch, training time, and the model and training options
    that differ from the preset's and the trainer's defaults."""
    config = json.loads((Path(run) / "config.json").read_text())
    summary = json.loads((Path(run) / "summary.json").read_text())
    preset = dataclasses.asdict(default_config(config["model_name"]))
    options = {k: v for k, v in config["model"].items()      # what --set changed (data-set fields aside)
               if k not in ("channels", "image_size", "num_classes", "binarize") and preset.get(k) != v}
    defaults = json.loads(json.dumps(dataclasses.asdict(TrainConfig())))          # tuples as JSON lists
    train_options = {k: v for k, v in config["train"].items() if k in FIT_OPTIONS and defaults.get(k) != v}
    return {"model_config": config["model"], "options": options, "train_options": train_options,
            "steps": summary.get("step"), "batch_size": config["train"]["batch_size"],
            "train_wall_s": summary.get("train_wall_s")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="run folders of class-conditional models with a likelihood")
    p.add_argument("--data", required=True, help="the data set every run was trained on (checked)")
    p.add_argument("--n", type=int, default=10_000, help="test images (the first n; default 10000)")
    p.add_argument("--noise", default="0,0.1,0.2,0.3", help="noise stds, comma-separated")
    p.add_argument("--iwae-k", type=int, default=100, help="importance samples of a VAE's bound (default 100)")
    p.add_argument("--bound-steps", type=int, default=DEFAULT_BOUND_STEPS,
                   help=f"timesteps of a diffusion model's bound estimate (default {DEFAULT_BOUND_STEPS})")
    p.add_argument("--draws", type=int, default=1,
                   help="binarizations (or dequantizations) of each test image, log p(x|y) averaged (default 1)")
    p.add_argument("--binarize", default="sample", choices=BINARIZE,
                   help="a binarized model's inputs: a Bernoulli draw (default) or the threshold at 1/2")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--mixture", action="store_true",
                   help="one row for the equal-weight mixture of all the runs (genzoo classify --mix)")
    args = p.parse_args()
    stds = [s.strip() for s in args.noise.split(",") if s.strip()]
    failed = []
    for run in args.runs:
        config = json.loads((Path(run) / "config.json").read_text())
        if config["data"] != args.data:
            sys.exit(f"{run} was trained on {config['data']}, not {args.data}")
    groups = [args.runs] if args.mixture else [[run] for run in args.runs]
    for group in groups:
        run, mix = group[0], group[1:]
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "classify.json"
            cmd = genzoo_cmd() + ["classify", str(run), *(["--mix", *mix] if mix else []),
                                  "--test", "--n", str(args.n), "--noise-std", *stds,
                                  "--iwae-k", str(args.iwae_k), "--bound-steps", str(args.bound_steps),
                                  "--draws", str(args.draws), "--binarize", args.binarize,
                                  "--batch-size", str(args.batch_size),
                                  "--out", str(out)]
            print("+", " ".join(cmd), flush=True)
            if subprocess.run(cmd).returncode != 0:
                failed.append(run)
                continue
            res = json.loads(out.read_text())
        name = "mixture-" + "+".join(Path(r).name for r in group) if mix else Path(run).name
        name += f"-draws{args.draws}" if args.draws > 1 else ""
        name += f"-{args.binarize}" if args.binarize != "sample" else ""
        metrics = {"bayes_acc": res["bayes_acc"]}
        if "discriminative_acc" in res:
            metrics["discriminative_acc"] = res["discriminative_acc"]
        for key in ("iwae_k", "bound_steps", "draws"):
            if key in res:
                metrics[key] = res[key]
        cost = f"--bound-steps {args.bound_steps}" if "bound_steps" in res else f"--iwae-k {args.iwae_k}"
        write_result(f"classify-{name}", {
            "model": res["model"], "dataset": args.data, "variant": "bayes-classifier", "run": str(run),
            **({"mixture_runs": [str(r) for r in group]} if mix else {}),
            "command": f"python bench/classify.py {' '.join(map(str, group))} --data {args.data} --n {args.n} "
                       f"--noise {args.noise} {cost}" + (f" --draws {args.draws}" if args.draws > 1 else "")
                       + (f" --binarize {args.binarize}" if args.binarize != "sample" else "")
                       + (" --mixture" if mix else ""),
            "checkpoint": res["checkpoint"], "split": "test", "n_test": res["n"], "estimator": res["estimator"],
            "prior": res["prior"], "inputs": res["inputs"], "noise": res["noise"],
            **({"binarize": res["binarize"]} if "binarize" in res else {}),
            "discriminative": res["discriminative"], "by_noise": res["by_noise"], "wall_s": res["wall_s"],
            "trained": trained_record(run) if not mix else [trained_record(r) for r in group],
            "metrics": metrics})
    if failed:
        sys.exit(f"refused or failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
