"""Benchmark registered presets on a data set: train each with its default config (plus any --set), score it with
`genzoo eval` on every metric that applies (FID/KID/precision-recall/density-coverage/classifier score on --n
samples vs the 10,000 test images, EMA weights, seed 0; the likelihood where the model has one: ELBO and the IWAE
bound with k = --iwae-k for VAEs, the exact NLL for flows and autoregressive models, nats on dyn-binarized MNIST
and bits/dim on 8-bit data; per-class FID and CAS for class-conditional models), time drawing 64 images, and draw
the figures a reader wants to see: the sample grid, reconstructions (input row over output row), a latent
interpolation strip and code traversals where the model has them.

Writes bench/results/PRESET-DATA[-VARIANT].json and .png, and docs/figures/PRESET-DATA[-VARIANT]-*.png.

    python bench/family.py gans --data mnist                     # a family: gans, vaes, flows, autoregressive
    python bench/family.py vae-mlp,iwae --data mnist --iwae-k 5000
    python bench/family.py vae --data mnist --steps 60000 --set lr_decay=cosine --variant long
    python bench/family.py vae --data mnist ... --iwae-k 5000 --score-only      # rescore that run folder, no training
    python bench/family.py vae --data mnist --iwae-k 5000 --device cuda --variant gpu   # on a GPU (bench/gpu_vae.sh)

Training takes the GPU wherever there is one (genzoo train); --device says where `genzoo eval` samples and scores.
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
from common import RESULTS, genzoo_cmd, has_feature_network, run, write_result  # noqa: E402

import genzoo  # noqa: E402
from genzoo.data import load_split  # noqa: E402
from genzoo.apps.edit import interpolate  # noqa: E402
from genzoo.checkpoint import resolve_device  # noqa: E402
from genzoo.errors import GenzooError  # noqa: E402
from genzoo.images import save_grid  # noqa: E402
from genzoo.models import MODELS  # noqa: E402

FAMILIES = {
    "gans": ("gan", "dcgan", "wgan-gp", "cgan", "acgan", "infogan", "sagan"),
    "vaes": ("vae-mlp", "vae", "beta-vae", "cvae", "iwae", "vaegan"),
    "flows": ("realnvp", "glow"),
    "autoregressive": ("pixelcnn", "gated-pixelcnn", "pixelrnn", "pixel-transformer"),
}
FIGURES = Path(__file__).resolve().parent.parent / "docs" / "figures"


def sample_seconds(model, n: int = 64) -> float:
    """Wall seconds of one seeded model.sample(n) after a one-image warm-up."""
    model.sample(1, generator=torch.Generator().manual_seed(1))
    t0 = time.perf_counter()
    model.sample(n, generator=torch.Generator().manual_seed(0))
    return round(time.perf_counter() - t0, 2)


@torch.no_grad()
def figures(model, data: str, name: str) -> dict:
    """Reconstructions, an interpolation strip and up to three code traversals, as the model allows."""
    FIGURES.mkdir(parents=True, exist_ok=True)
    out = {}
    test = load_split(data, "test")
    # one test image of each class (the first of each), in class order
    first = [int((test.labels == c).nonzero()[0]) for c in range(test.num_classes)] if test.num_classes else \
        list(range(10))
    x, y = test.images[first].float() / 255, test.labels[first]
    caps = model.capabilities
    labels = y if caps.conditional else None
    if caps.reconstruct:
        rec = model.reconstruct(x, labels) if labels is not None else model.reconstruct(x)
        out["reconstructions"] = save_grid(torch.cat([x, rec.float().cpu()]), FIGURES / f"{name}-recon.png",
                                           nrow=len(x), scale=3)
    if caps.latents:
        if caps.encode:       # from a test 0 to a test 1
            strip = interpolate(model, 10, images=x[:2], labels=labels[:1] if labels is not None else None)
            strip = torch.cat([x[:1], strip, x[1:2]])
        else:
            strip = interpolate(model, 10, seeds=(0, 1), labels=torch.tensor([0]) if caps.conditional else None)
        out["interpolation"] = save_grid(strip, FIGURES / f"{name}-interp.png", nrow=len(strip), scale=3)
    codes = list(caps.traversable_codes)
    if codes:
        if caps.encode and codes[0].startswith("z"):
            # the three most used latent dimensions: largest variance of the posterior mean over test images
            mu = model.encode_latents(test.images[:2000].float() / 255,
                                      test.labels[:2000] if caps.conditional else None)
            codes = [f"z{i}" for i in mu.var(0).argsort(descending=True)[:3].tolist()]
        for code in codes[:3]:
            grid = model.traverse(code, n_rows=10, n_cols=10, generator=torch.Generator().manual_seed(0))
            out[f"traverse_{code}"] = save_grid(grid, FIGURES / f"{name}-traverse-{code}.png", nrow=10)
    return {k: str(Path(v).relative_to(FIGURES.parent.parent)) for k, v in out.items()}


def bench_one(preset: str, data: str, steps: int | None, sets: list[str], variant: str, iwae_k: int,
              n: int, argv: list[str], metrics: str | None = None, resume: bool = False,
              score_only: bool = False, device: str = "cpu", eval_batch: int = 500) -> None:
    name = f"{preset}-{data}" + (f"-{variant}" if variant != "default" else "")
    run_dir = Path("runs") / f"bench-{name}"
    # --resume continues an interrupted run folder of the same name (its training time counts every part of the run)
    # (with --score-only the record names the command that trains the folder from scratch)
    again = ["--resume"] if resume and not score_only and (run_dir / "trainer_state.pt").exists() else ["--overwrite"]
    train = genzoo_cmd() + ["train", preset, "--data", data, "--out", str(run_dir), *again, "--no-progress"]
    if steps:
        train += ["--steps", str(steps)]
    for s in sets:
        train += ["--set", s]
    if score_only:   # the run folder was trained by this command before: score and draw it as it is
        if not (run_dir / "summary.json").exists():
            raise SystemExit(f"--score-only needs a trained {run_dir}; train it first (drop --score-only)")
    else:
        run(train)
    summary = json.loads((run_dir / "summary.json").read_text())
    config = json.loads((run_dir / "config.json").read_text())
    model = genzoo.load(run_dir)
    if metrics is None:   # every metric that applies: the feature ones need a frozen classifier for the data set
        metrics = "fid,kid,pr,score" if has_feature_network(data) else ""
        caps = model.capabilities
        metrics = ",".join(m for m in (metrics, "nll" if caps.likelihood.kind != "none" else "",
                                       "cas" if caps.conditional and metrics else "") if m)
    figs = figures(model, data, name)   # drawn before the (long) evaluation, so an interrupted one still leaves them
    ev_path = run_dir / "eval-bench.json"
    ev_cmd = genzoo_cmd() + ["eval", str(run_dir), "--metrics", metrics, "--n", str(n), "--seed", "0",
                             "--iwae-k", str(iwae_k), "--out", str(ev_path), "--no-progress"]
    if device != "cpu" or eval_batch != 500:
        ev_cmd += ["--device", device, "--batch-size", str(eval_batch)]
    if metrics:
        run(ev_cmd)
        ev = json.loads(ev_path.read_text())
    else:   # nothing to score (a GAN on data without a feature network): the grid and timings only
        ev_cmd, ev = ["", "", ""], {"checkpoint": "ema", "n_generated": 0, "wall_s": 0, "feature_network": None,
                                    "refused": {"all": f"no metric applies to {preset} on {data}"}, "metrics": {}}
    RESULTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(run_dir / "samples.png", RESULTS / f"{name}.png")
    coverage = [json.loads(line) for line in (run_dir / "coverage.jsonl").read_text().splitlines()] \
        if (run_dir / "coverage.jsonl").exists() else []
    write_result(name, {
        "model": preset, "dataset": data, "variant": variant,
        "command": "python bench/family.py " + " ".join(a for a in argv if a != "--score-only"),
        **({"scored_by": "python bench/family.py " + " ".join(argv)} if score_only else {}),
        "train_command": " ".join(["genzoo"] + train[3:]),
        "eval_command": " ".join(["genzoo"] + ev_cmd[3:]) if metrics else None,
        "run": str(run_dir), **({"eval_device": ev["device"]} if "device" in ev else {}),
        "checkpoint": ev["checkpoint"], "seed": config["train"]["seed"],
        "config": config["model"], "train_config": config["train"],
        "train_steps": summary["step"], "train_wall_s": summary["train_wall_s"],
        "train_img_per_s": summary.get("train_img_per_s"),
        "final_eval": {k: summary[k] for k in ("elbo_nats", "elbo_bpd", "nll_nats", "bpd") if k in summary},
        "sample_64_wall_s": sample_seconds(model),
        "n_generated": ev["n_generated"], "n_real": 10000, "eval_wall_s": ev["wall_s"],
        "feature_network": ev["feature_network"], "refused": ev["refused"],
        "final_coverage": coverage[-1] if coverage else None,
        "sample_grid": f"bench/results/{name}.png", "figures": figs,
        "metrics": ev["metrics"]})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("presets", help="a family (" + ", ".join(FAMILIES) + ") or comma-separated preset names")
    p.add_argument("--data", default="mnist")
    p.add_argument("--steps", type=int, help="training steps (default: each preset's own)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)")
    p.add_argument("--variant", default="default", help="result-file suffix for a non-default config")
    p.add_argument("--iwae-k", type=int, default=1000, help="importance samples of a VAE's NLL bound")
    p.add_argument("--n", type=int, default=10_000, help="generated images for the sample-quality metrics")
    p.add_argument("--metrics", help="genzoo eval --metrics (default: every metric that applies)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run folder instead of retraining")
    p.add_argument("--score-only", action="store_true",
                   help="score and draw the run folder this command trained before, without training")
    p.add_argument("--device", default="cpu", help="where genzoo eval samples and scores: cpu (default), cuda")
    p.add_argument("--eval-batch", type=int, default=500, help="genzoo eval --batch-size (sampling)")
    argv = sys.argv[1:]
    args = p.parse_args(argv)
    try:
        resolve_device(args.device)      # a missing GPU fails here, before any training
    except GenzooError as e:
        raise SystemExit(str(e)) from None
    presets = FAMILIES.get(args.presets, tuple(args.presets.split(",")))
    unknown = [pr for pr in presets if pr not in MODELS]
    if unknown:
        raise SystemExit(f"unknown preset(s) {', '.join(unknown)}; families: {', '.join(FAMILIES)}")
    for preset in presets:   # each result records the command that reruns it alone
        one = [preset if a == args.presets else a for a in argv]
        bench_one(preset, args.data, args.steps, args.set, args.variant, args.iwae_k, args.n, one, args.metrics,
                  args.resume, args.score_only, args.device, args.eval_batch)


if __name__ == "__main__":
    main()
