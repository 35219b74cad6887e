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
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import genzoo_cmd, write_result  # noqa: E402

from genzoo.cli.common import _parse_options  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
EVAL = ["--metrics", "fid,kid,pr,score,cas", "--n", "10000", "--seed", "0"]
EVAL_LIKELIHOOD = ["--metrics", "fid,kid,pr,score,nll,cas", "--n", "10000", "--seed", "0", "--iwae-k", "1000"]
# a diffusion model's sampler makes 2 x 25 network passes an image (DDIM-25 with guidance 2) and its bound 1,000
# passes a test image: on one core n = 2,000 images, a CAS set of 1,000 and the bound on 100 test images take
# about 40 minutes together
EVAL_DIFFUSION = ["--metrics", "fid,kid,pr,score,nll,cas", "--n", "2000", "--seed", "0", "--opt", "steps=25",
                  "--opt", "guidance=2", "--cas-n", "1000", "--nll-n", "100"]
EVAL_EXACT = ["--metrics", "fid,kid,pr,score,nll,cas", "--n", "10000", "--seed", "0"]
# PixelCNN draws about 17 images/s on one core: n = 10,000 and a CAS set of 10,000 (the flow's CAS set too)
EVAL_EXACT_CAS10K = EVAL_EXACT + ["--cas-n", "10000"]
# `genzoo classify --test` arguments: the Bayes classifier's test images and its bound's cost (a diffusion
# model's bound at 50 steps makes 10 x 50 network passes an image)
CLASSIFY_VAE = ["--iwae-k", "20"]
CLASSIFY_EXACT = ["-n", "5000"]
CLASSIFY_DIFFUSION = ["-n", "200", "--bound-steps", "50"]
CVAE = ["cvae", "--set", "label_in=separate", "--set", "arch=mlp", "--set", "latent_dim=16", "--set", "mlp_hidden=300",
        "--set", "batch_size=1280", "--set", "lr_decay=cosine"]


@dataclass
class Recipe:
    purpose: str                      # what the model is for, on its card
    train: list[str]                  # `genzoo train` arguments
    eval: list[str]                   # `genzoo eval` arguments
    classify: list[str] | None = None  # `genzoo classify --test` arguments, where the model has a likelihood
    dtype: str = "float32"            # how the weights are stored (`genzoo export --dtype`)


# The recipes are those of the BENCHMARKS.md rows each model is judged against, except where the card says
# otherwise: the conditional VAEs use 300-unit MLPs (the row's 500 would take 52 MB each) stored in float16.
ZOO = {
    "cgan-mnist": Recipe("class-conditional GAN: fast sampling by class", ["cgan", "--data", "mnist"], EVAL),
    "cvae-mnist": Recipe("conditional VAE, one small MLP VAE per class: encode/decode, interpolation, a fast "
                         "Bayes classifier", CVAE + ["--data", "mnist", "--steps", "6000"], EVAL_LIKELIHOOD,
                         CLASSIFY_VAE, "float16"),
    "cgan-fashion-mnist": Recipe("class-conditional GAN: fast sampling by class",
                                 ["cgan", "--data", "fashion-mnist"], EVAL),
    "cvae-fashion-mnist": Recipe("conditional VAE, one small MLP VAE per class: encode/decode, interpolation, a "
                                 "fast Bayes classifier", CVAE + ["--data", "fashion-mnist", "--steps", "3000"],
                                 EVAL_LIKELIHOOD, CLASSIFY_VAE, "float16"),
    "ddpm-cfg-mnist": Recipe("class-conditional diffusion with classifier-free guidance: sampling by class, "
                             "restoration, a Bayes classifier",
                             ["ddpm-cfg", "--data", "mnist", "--steps", "4000", "--set", "fit_steps=true",
                              "--set", "coverage_every_steps=0"], EVAL_DIFFUSION, CLASSIFY_DIFFUSION),
    "realnvp-mnist": Recipe("class-conditional RealNVP flow: exact likelihood, out-of-distribution checks, a "
                            "Bayes classifier",
                            ["realnvp", "--data", "mnist", "--set", "conditional=true", "--steps", "5000"],
                            EVAL_EXACT_CAS10K, CLASSIFY_EXACT),
    "pixelcnn-mnist": Recipe("class-conditional PixelCNN: exact likelihood, completion of a partly seen image, a "
                             "Bayes classifier",
                             ["pixelcnn", "--data", "mnist", "--set", "conditional=true", "--steps", "5000"],
                             EVAL_EXACT_CAS10K, CLASSIFY_EXACT),
}


def run(cmd: list[str], threads: int = 0) -> float:
    print("+", " ".join(cmd), flush=True)
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    t = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, env=env)
    return time.perf_counter() - t


def sampling_time(run_dir: Path, options: dict) -> dict:
    """Seconds to load the model and draw 16 images on the CPU (after one warm-up draw), seed 0, with the sampling
    options it was scored with."""
    import torch

    import genzoo
    from genzoo.hardware import machine
    from genzoo.models.base import check_sample_options
    from genzoo.sampling import balanced_labels, sample
    t = time.perf_counter()
    model = genzoo.load(run_dir)
    load_s = time.perf_counter() - t
    options = check_sample_options(model, options)
    labels = balanced_labels(16, model.config.num_classes) if model.capabilities.conditional else None
    sample(model, 16, seed=1, labels=labels, options=options)
    t = time.perf_counter()
    sample(model, 16, seed=0, labels=labels, options=options)
    return {"metrics": {"load_s": round(load_s, 3), "sample16_s": round(time.perf_counter() - t, 3)},
            "n_generated": 16, "seed": 0, **({"sample_options": options} if options else {}), "machine": machine(),
            "threads": torch.get_num_threads()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="+", choices=sorted(ZOO))
    p.add_argument("--minutes", type=float, default=60, help="training time cap (max_train_minutes), default 60")
    p.add_argument("--device", default=None, help="where to train (default: a GPU where one is visible)")
    p.add_argument("--threads", type=int, default=0, help="torch threads of training and scoring (0: torch's "
                   "default); 1 lets two models train side by side on a 2-core machine")
    p.add_argument("--stage", choices=("all", "train", "score", "finish"), default="all",
                   help="train only, score and export a run already trained by `--stage train`, or both; finish: "
                        "the steps after an interrupted score (timing, export, grid, result), keeping its eval and "
                        "classify results")
    args = p.parse_args()
    for name in args.names:
        recipe = ZOO[name]
        run_dir = ROOT / "runs" / f"zoo-{name}"
        train = genzoo_cmd() + ["train", *recipe.train, "--out", str(run_dir), "--overwrite", "--no-progress",
                                "--set", f"max_train_minutes={args.minutes:g}"]
        if args.threads:
            train += ["--set", f"threads={args.threads}"]
        if args.device:
            train += ["--device", args.device]
        if args.stage in ("all", "train"):
            train_s = run(train)
            (run_dir / "zoo-train.json").write_text(json.dumps({"command": train, "wall_s": train_s}) + "\n")
        if args.stage != "train":
            score(name, recipe, run_dir, args.threads, finish=args.stage == "finish")


def score(name: str, recipe: Recipe, run_dir: Path, threads: int, finish: bool = False) -> None:
    """Export the trained run into genzoo/zoo/NAME, score that folder (the weights as stored), time its
    sampling, classify with it where it has a likelihood, then export again with the results on its card."""
    import torch

    from genzoo.hardware import machine
    trained = json.loads((run_dir / "zoo-train.json").read_text())
    train, train_s = trained["command"], trained["wall_s"]
    if threads:
        torch.set_num_threads(threads)
    folder = ROOT / "genzoo" / "zoo" / name
    export = genzoo_cmd() + ["export", str(run_dir), str(folder), "--name", name, "--use", recipe.purpose,
                             "--dtype", recipe.dtype, "--overwrite"]
    evaluate = genzoo_cmd() + ["eval", str(folder), *recipe.eval, "--out", str(run_dir / "eval.json"),
                               "--no-progress"]
    classify = None if recipe.classify is None else genzoo_cmd() + [
        "classify", str(folder), "--test", *recipe.classify, "--out", str(run_dir / "classify.json"), "--no-progress"]
    if finish:        # the export is the one scored: the same run and dtype write the same weights again
        eval_s = json.loads((run_dir / "eval.json").read_text())["wall_s"]
        classify_s = classify and json.loads((run_dir / "classify.json").read_text())["wall_s"]
    else:
        for stale in [*run_dir.glob("eval*.json"), *run_dir.glob("classify*.json")]:
            stale.unlink()
        run(export)
        eval_s = run(evaluate, threads)
        classify_s = classify and run(classify, threads)
    opts = sample_options(recipe.eval)
    speed = sampling_time(folder, _parse_options(opts[1::2]))     # read as `genzoo sample --opt` reads them
    (run_dir / "eval-speed.json").write_text(json.dumps(speed, indent=2) + "\n")
    run(export)
    grid = ROOT / "docs" / "images" / f"zoo-{name}.png"
    grid.parent.mkdir(parents=True, exist_ok=True)
    run(genzoo_cmd() + ["sample", name, "-n", "64", "--out", str(grid), *opts])
    card = json.loads((folder / "card.json").read_text())
    scored = json.loads((run_dir / "eval.json").read_text())
    counts = {"n_generated": scored["n_generated"],
              **({"nll_images": scored["metrics"]["nll_images"]} if "nll_images" in scored["metrics"] else {}),
              **({"classified": json.loads((run_dir / "classify.json").read_text())["n"]} if classify else {})}
    write_result(f"zoo-{name}", {
        "model": name, "model_name": card["model_name"], "data": card["data"], **counts, "purpose": recipe.purpose,
        "machine": machine(), "command": "python " + " ".join(sys.argv), "train_command": " ".join(train),
        **{f"train_{k}": v for k, v in trained.items() if k not in ("command", "wall_s")},   # a resume, a note
        "eval_command": " ".join(evaluate),
        **({"classify_command": " ".join(classify), "classify_wall_s": round(classify_s, 1)} if classify else {}),
        "train_wall_s": round(train_s, 1), "eval_wall_s": round(eval_s, 1), "sampling": speed["metrics"],
        "metrics": card["headline"], "end_of_training": card["end_of_training"], "steps": card["training"]["steps"],
        "status": card["training"]["status"], "weights_bytes": card["weights_bytes"],
        "weights_dtype": card["weights_dtype"], "grid": str(grid.relative_to(ROOT))})


def sample_options(eval_args: list[str]) -> list[str]:
    """The --opt pairs of the eval arguments: the grid is drawn as the model was scored."""
    return [a for i, a in enumerate(eval_args) if a == "--opt" or (i and eval_args[i - 1] == "--opt")]


if __name__ == "__main__":
    main()
