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
    python bench/restore.py RUN ... --n 10000 --device cuda --batch-size 1000 --jobs 6 --variant gpu   # (gpu_restore.sh)

--jobs J restores J runs side by side, each in its own process (RUNS/restore-parts-DATA[-VARIANT]/RUN.log), and
merges their rows and figure; a run whose part is already there from the same command is not restored again, and
one that fails or runs past --part-timeout is left out and named in the result (failed_runs).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import has_feature_network, repo_path, write_result  # noqa: E402

import genzoo  # noqa: E402
from genzoo import metrics  # noqa: E402
from genzoo.apps.restore import OPTIONS, PRESETS, TASKS, capabilities, capability, evaluate  # noqa: E402
from genzoo.checkpoint import device_name, read_config, resolve_device  # noqa: E402
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


def restore_run(run: str, args, options: dict, truth: torch.Tensor, labels: torch.Tensor, scored: bool):
    """One run's rows, and per (task, preset) its figure entry {"title", "name", "observed", "restored"} (the first
    --figure-images images); ([], {}) for a run that cannot restore."""
    config = read_config(run)
    if config["data"] != args.data:
        raise SystemExit(f"{run} was trained on {config['data']}, not {args.data}")
    model = genzoo.load(run, ema=not args.no_ema, device=args.device)
    kind, can = capability(model), capabilities(model)
    name = Path(run).name
    if not can:
        print(f"{name}: {config['model_name']} cannot restore images; skipped")
        return [], {}
    rows, figs, k = [], {}, args.figure_images
    for task in [t for t in args.tasks.split(",") if t in can]:
        opts = {key: v for key, v in options.items() if key in OPTIONS[(kind, task)]}
        for preset in ([s for s in args.presets.split(",") if s] if task == "inpaint" else [None]):
            t0 = time.perf_counter()
            print(f"{name}: {task} {preset or ''} by {can[task]} {opts or ''}", flush=True)
            res = evaluate(model, truth, labels if model.conditional else None, task=task, preset=preset,
                           noise_std=args.noise_std, seed=args.seed, batch_size=args.batch_size,
                           dataset=args.data if scored else None, options=opts, progress=not args.no_progress)
            wall = time.perf_counter() - t0
            scores = {key: round(res[key], 4) for key in ("psnr", "ssim", "fid") if key in res}
            print(f"  {scores}  ({wall:.0f} s)", flush=True)
            rows.append({"run": str(run), "model": config["model_name"], "capability": kind,
                         "method": can[task], "task": task, "preset": preset,
                         "options": {**OPTIONS[(kind, task)], **opts},
                         "labels": "true test labels" if model.conditional else None,
                         "metrics": scores, "wall_s": round(wall, 1)})
            figs[(task, preset)] = {"title": f"{task}" + (f", mask {preset}" if preset else "")
                                    + (f", noise std {args.noise_std}" if task == "denoise" else ""),
                                    "name": config["model_name"], "observed": res["observed"][:k].float(),
                                    "restored": res["restored"][:k].float()}
    return rows, figs


def ext(path: Path, suffix: str) -> Path:
    return path.parent / f"{path.name}.{suffix}"      # a run's name may hold dots: never with_suffix


def save_part(path: Path, command: list[str], rows: list[dict], figs: dict) -> None:
    """A run's rows (JSON) and figure images (npz, float32) for the parent --jobs process to merge."""
    keys = list(figs)
    np.savez(ext(path, "npz"), **{f"{i}-{part}": figs[key][part].numpy()
                                           for i, key in enumerate(keys) for part in ("observed", "restored")})
    ext(path, "json").write_text(json.dumps({
        "command": command, "rows": rows,
        "figures": [{"task": t, "preset": p, "title": figs[(t, p)]["title"], "name": figs[(t, p)]["name"]}
                    for t, p in keys]}, indent=1))


def load_part(path: Path) -> tuple[list[dict], dict]:
    part = json.loads(ext(path, "json").read_text())
    with np.load(ext(path, "npz")) as z:
        figs = {(f["task"], f["preset"]): {**f, **{k: torch.from_numpy(z[f"{i}-{k}"]) for k in ("observed",
                                                                                              "restored")}}
                for i, f in enumerate(part["figures"])}
    return part["rows"], figs


def run_parts(args, part_dir: Path) -> tuple[list, list[str], list[str]]:
    """Each run restored by its own process, --jobs at a time (one GPU serves them all): [(rows, figs)] of the runs
    that finished (a part already on disk from the same command is reused), their commands, and the runs that
    failed or ran past --part-timeout."""
    part_dir.mkdir(parents=True, exist_ok=True)
    shared = ["--data", args.data, "--n", str(args.n), "--presets", args.presets, "--tasks", args.tasks,
              "--noise-std", str(args.noise_std), "--seed", str(args.seed), "--batch-size", str(args.batch_size),
              "--device", args.device, "--figure-images", str(args.figure_images), "--no-progress"] \
        + [a for o in args.opt for a in ("--opt", o)] + (["--no-ema"] if args.no_ema else [])

    def one(run: str):
        part = part_dir / Path(run).name
        cmd = ["python", "bench/restore.py", run, *shared]
        if ext(part, "npz").exists() and json.loads(ext(part, "json").read_text())["command"] == cmd:
            print(f"{Path(run).name}: reusing {part}.json", flush=True)
            return cmd, load_part(part)
        with open(ext(part, "log"), "w") as log:
            try:
                code = subprocess.run([sys.executable, __file__, run, *shared, "--part", str(part)], stdout=log,
                                      stderr=subprocess.STDOUT, timeout=args.part_timeout or None).returncode
            except subprocess.TimeoutExpired:
                code = "timeout"
        if code != 0:
            print(f"{Path(run).name}: failed ({code}); see {part}.log", flush=True)
            return cmd, None
        print(f"{Path(run).name}: done", flush=True)
        return cmd, load_part(part)
    with ThreadPoolExecutor(args.jobs) as pool:
        done = list(pool.map(one, args.runs))
    parts = [p for _, p in done if p is not None]
    commands = [" ".join(cmd) for cmd, p in done if p is not None]
    failed = [run for run, (_, p) in zip(args.runs, done) if p is None]
    return parts, commands, failed


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
    p.add_argument("--device", default="cpu", help="where the models restore: cpu (default), cuda, cuda:N (the "
                   "frozen classifier of the FID stays on the CPU)")
    p.add_argument("--jobs", type=int, default=1, help="runs restored side by side, each by its own process "
                   "(default 1: one after another in this process)")
    p.add_argument("--part-timeout", type=float, default=0, help="with --jobs: seconds after which a run's process "
                   "is stopped; the result is made from the runs that finished (default 0: no limit)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--results", help="folder of the result and its figure (default bench/results, docs/figures)")
    p.add_argument("--parts", help="with --jobs: the runs' parts (default runs/restore-parts-DATA[-VARIANT])")
    p.add_argument("--part", help=argparse.SUPPRESS)      # with --jobs: one run's process writes its part here
    args = p.parse_args()
    presets = [s for s in args.presets.split(",") if s]
    tasks = [t for t in args.tasks.split(",") if t]
    if set(presets) - set(PRESETS) or set(tasks) - set(TASKS):
        raise SystemExit(f"presets are {PRESETS}, tasks {TASKS}; got {presets}, {tasks}")
    if not 1 <= args.n <= 10_000:
        raise SystemExit(f"--n must be between 1 and 10000, got {args.n}")
    if args.jobs < 1:
        raise SystemExit(f"--jobs must be at least 1, got {args.jobs}")
    try:
        resolve_device(args.device)
    except GenzooError as e:
        raise SystemExit(str(e)) from None
    options = parse_options(args.opt)
    torch.manual_seed(args.seed)

    test = load_split(args.data, "test")
    truth, labels = test.images[:args.n].float() / 255, test.labels[:args.n]
    scored = has_feature_network(args.data)
    if args.part:
        rows, figs = restore_run(args.runs[0], args, options, truth, labels, scored)
        save_part(Path(args.part), ["python", "bench/restore.py", *sys.argv[1:sys.argv.index("--part")]], rows, figs)
        return
    fid_truth = metrics.fid(truth, dataset=args.data) if scored else None
    if not scored:
        print(f"no FID: genzoo has no frozen classifier for {args.data}")
    suffix = f"-{args.variant}" if args.variant else ""
    figures_dir = Path(args.results) if args.results else FIGURES
    if args.results:
        common.RESULTS = Path(args.results)
    commands, failed = [], []
    if args.jobs > 1:
        parts, commands, failed = run_parts(args, Path(args.parts or f"runs/restore-parts-{args.data}{suffix}"))
    else:
        parts = [restore_run(run, args, options, truth, labels, scored) for run in args.runs]
    rows, blocks = [], {}
    for run_rows, figs in parts:
        rows += run_rows
        for key, fig in figs.items():
            block = blocks.setdefault(key, {"title": fig["title"], "rows": [("input", fig["observed"])]})
            block["rows"].append((fig["name"], fig["restored"]))
    for block in blocks.values():
        block["rows"].append(("truth", truth[:args.figure_images]))
    fig = figure(list(blocks.values()), figures_dir / f"restore-{args.data}{suffix}.png", args.figure_images) \
        if blocks else None
    result = {"dataset": args.data, "split": "test", "variant": args.variant or "default",
              "command": "python bench/restore.py " + " ".join(sys.argv[1:]),
              **({"jobs": args.jobs, "part_commands": commands,
                  "note": f"{args.jobs} runs restored side by side, so each wall time is its share"}
                 if args.jobs > 1 else {}),
              **({"failed_runs": failed} if failed else {}),
              "eval_device": device_name(args.device),
              "n": args.n, "images": f"the first {args.n} test images" if args.n < 10_000 else "the full test set",
              "seed": args.seed, "noise_std": args.noise_std, "checkpoint": "raw" if args.no_ema else "ema",
              "metric_notes": "psnr/ssim: mean over images, on the unknown pixels (inpaint) or all pixels; ssim with "
                              "a 7x7 uniform window over window centres in that region; fid: restored images vs "
                              "the test split in the frozen classifier's features",
              "fid_truth": None if fid_truth is None else round(fid_truth, 4), "rows": rows,
              "figure": repo_path(fig) if fig else None}
    write_result(f"restore-{args.data}{suffix}", result)


if __name__ == "__main__":
    main()
