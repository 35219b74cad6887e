"""Benchmark restoration across families: the first --n test images of --data, degraded the same way for every run
(the mask presets for inpainting, Gaussian noise of --noise-std for denoising, 2x2 means for 2x super-resolution,
all drawn from --seed), restored by each run with the method its capabilities give (genzoo.apps.restore), and
scored against the clean images: PSNR and SSIM (7 x 7 uniform window) on the unknown pixels (inpainting) or all
pixels, and the FID of the restored images against the test split in the data set's frozen-classifier features,
beside fid_truth, the FID of the same n clean images (the floor at this n).

Class-conditional runs are given the true test labels (diffusion with a null class could go without; recorded per
row). Writes bench/results/restore-DATA[-VARIANT].json and docs/figures/restore-DATA[-VARIANT].png (per task and
preset: the input as the model sees it, each run's restoration, the truth).

    python bench/restore.py runs/ddpm-mnist runs/pixelcnn-mnist runs/vae-mnist runs/glow-mnist runs/dcgan-mnist \\
        --data mnist --n 200 --presets center,half,random50
    python bench/restore.py runs/ddpm-mnist --data mnist --opt steps=100 --opt resample=10 --variant repaint-100
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402

import genzoo  # noqa: E402
from genzoo import metrics  # noqa: E402
from genzoo.apps.restore import OPTIONS, PRESETS, TASKS, capabilities, capability, evaluate  # noqa: E402
from genzoo.checkpoint import read_config  # noqa: E402
from genzoo.data import load_split  # noqa: E402
from genzoo.errors import GenzooError  # noqa: E402
from genzoo.images import make_grid  # noqa: E402

FIGURES = Path(__file__).resolve().parent.parent / "docs" / "figures"


def parse_options(pairs: list[str]) -> dict:
    import yaml
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--opt takes KEY=VALUE, got {pair!r}")
        out[key.strip()] = yaml.safe_load(value)
    known = {k for opts in OPTIONS.values() for k in opts}
    unknown = set(out) - known
    if unknown:
        raise SystemExit(f"unknown method options {sorted(unknown)}; every method's options: {sorted(known)}")
    return out


def figure(blocks: list[dict], path: Path, n_show: int) -> Path:
    """One panel per (task, preset): rows = the input as seen, each run's restoration, the truth."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    # height ratios follow the rows, so every panel draws its digits at one scale and the labels keep their room
    heights = [len(b["rows"]) + 0.8 for b in blocks]
    fig, axes = plt.subplots(len(blocks), 1, figsize=(1.4 + 0.55 * n_show, 0.55 * sum(heights)), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    for ax, block in zip(axes[:, 0], blocks):
        images = torch.cat([x[:n_show] for _, x in block["rows"]])
        grid = make_grid(images, nrow=n_show, pad=2)
        ax.imshow(grid[..., 0] if grid.shape[-1] == 1 else grid, cmap="gray", vmin=0, vmax=255)
        h = images.shape[-2] + 2
        ax.set_yticks([2 + h * i + h / 2 - 1 for i in range(len(block["rows"]))])
        ax.set_yticklabels([name for name, _ in block["rows"]], fontsize=8)
        ax.set_xticks([])
        ax.set_title(block["title"], fontsize=9)
        ax.set_anchor("W")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="run folders trained on --data")
    p.add_argument("--data", required=True)
    p.add_argument("--n", type=int, default=200, help="test images (the first n; default 200)")
    p.add_argument("--presets", default=",".join(PRESETS), help="inpainting masks (default all)")
    p.add_argument("--tasks", default=",".join(TASKS), help="tasks (default all; each run does those it can)")
    p.add_argument("--noise-std", type=float, default=0.2, help="denoising noise std on the [0, 1] scale")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE", help="a method option, given to "
                   "every method that takes it (e.g. steps=100 for diffusion, iters=500 for latent fits)")
    p.add_argument("--no-ema", action="store_true")
    p.add_argument("--figure-images", type=int, default=8, help="images per row of the figure")
    p.add_argument("--variant", help="suffix of the result and figure names")
    args = p.parse_args()
    presets = [s for s in args.presets.split(",") if s]
    tasks = [t for t in args.tasks.split(",") if t]
    if set(presets) - set(PRESETS) or set(tasks) - set(TASKS):
        raise SystemExit(f"presets are {PRESETS}, tasks {TASKS}; got {presets}, {tasks}")
    if not 1 <= args.n <= 10_000:
        raise SystemExit(f"--n must be between 1 and 10000, got {args.n}")
    options = parse_options(args.opt)
    torch.manual_seed(args.seed)

    test = load_split(args.data, "test")
    truth, labels = test.images[:args.n].float() / 255, test.labels[:args.n]
    try:
        fid_truth = metrics.fid(truth, dataset=args.data)
    except GenzooError as e:       # no frozen classifier for this data set: no FID at all
        print(f"no FID: {e}")
        fid_truth = None
    rows, blocks = [], {}
    for run in args.runs:
        config = read_config(run)
        if config["data"] != args.data:
            raise SystemExit(f"{run} was trained on {config['data']}, not {args.data}")
        model = genzoo.load(run, ema=not args.no_ema)
        kind, can = capability(model), capabilities(model)
        name = Path(run).name
        if not can:
            print(f"{name}: {config['model_name']} cannot restore images; skipped")
            continue
        for task in [t for t in tasks if t in can]:
            opts = {k: v for k, v in options.items() if k in OPTIONS[(kind, task)]}
            for preset in (presets if task == "inpaint" else [None]):
                t0 = time.perf_counter()
                print(f"{name}: {task} {preset or ''} by {can[task]} {opts or ''}", flush=True)
                res = evaluate(model, truth, labels if model.conditional else None, task=task, preset=preset,
                               noise_std=args.noise_std, seed=args.seed, batch_size=args.batch_size,
                               dataset=args.data if fid_truth is not None else None, options=opts)
                wall = time.perf_counter() - t0
                scores = {k: round(res[k], 4) for k in ("psnr", "ssim", "fid") if k in res}
                print(f"  {scores}  ({wall:.0f} s)", flush=True)
                rows.append({"run": str(run), "model": config["model_name"], "capability": kind,
                             "method": can[task], "task": task, "preset": preset,
                             "options": {**OPTIONS[(kind, task)], **opts},
                             "labels": "true test labels" if model.conditional else None,
                             "metrics": scores, "wall_s": round(wall, 1)})
                key = (task, preset)
                block = blocks.setdefault(key, {"title": f"{task}" + (f", mask {preset}" if preset else "")
                                                + (f", noise std {args.noise_std}" if task == "denoise" else ""),
                                                "rows": [("input", res["observed"])]})
                block["rows"].append((f"{config['model_name']}", res["restored"]))
    for block in blocks.values():
        block["rows"].append(("truth", truth))
    suffix = f"-{args.variant}" if args.variant else ""
    fig = figure(list(blocks.values()), FIGURES / f"restore-{args.data}{suffix}.png", args.figure_images) \
        if blocks else None
    result = {"dataset": args.data, "split": "test", "variant": args.variant or "default",
              "command": "python bench/restore.py " + " ".join(sys.argv[1:]),
              "n": args.n, "images": f"the first {args.n} test images", "seed": args.seed,
              "noise_std": args.noise_std, "checkpoint": "raw" if args.no_ema else "ema",
              "metric_notes": "psnr/ssim: mean over images, on the unknown pixels (inpaint) or all pixels; ssim with "
                              "a 7x7 uniform window over window centres in that region; fid: restored images vs "
                              "the test split in the frozen classifier's features",
              "fid_truth": None if fid_truth is None else round(fid_truth, 4), "rows": rows,
              "figure": str(fig.relative_to(FIGURES.parent.parent)) if fig else None}
    write_result(f"restore-{args.data}{suffix}", result)


if __name__ == "__main__":
    main()
