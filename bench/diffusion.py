"""Benchmark: the diffusion family on a data set. Trains `ddpm` and `ddpm-cfg` with their default configs, then

- ddpm: FID/KID/precision-recall/density-coverage/classifier score (`genzoo eval`, n generated vs the 10,000 test
  images, EMA weights, seed 0) for DDPM-1000 (ancestral, all T steps) and DDIM at 10, 25, 50, 100 steps; the
  quality-vs-steps curve (bench/results/ddpm-DATA-steps.png); the variational bound in bits/dim on the first
  --bpd-images test images (seed-0 dequantization, a bound: T network passes per image); sampling images/s of a
  --speed-n batch per sampler;
- ddpm-cfg: the same scores plus per-class FID (intra_fid, the mean over classes) and CAS at each guidance scale w
  (eps = (1 + w) eps(x, y) - w eps(x, null)), DDIM with --cond-steps steps.

Writes bench/results/ddpm-DATA.json (+ -steps.png, .png grid) and ddpm-cfg-DATA.json (+ .png grid). DDPM-1000
costs 1000 network passes an image, so its n is separate (--n-ddpm); CAS draws --cas-n images per scale.

    python bench/diffusion.py --data mnist [--steps N] [--n 10000] [--n-ddpm 2000] [--guidance 0,2]

On a GPU, ``--device cuda`` samples and scores there too (training always takes the GPU when there is one), and
``--train-minutes M`` sizes the run to the time: a --probe-steps run measures this machine's steps/s, the run
proper then gets that rate x M minutes of steps (so its cosine lr decay completes), and max_train_minutes caps it.
The device is named in the result.
"""
from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import time
from pathlib import Path

import torch

from genzoo.checkpoint import device_name, resolve_device

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, genzoo_cmd, has_feature_network, run, write_result  # noqa: E402

PROBE_SAFETY = 1.25     # max_train_minutes = this x --train-minutes: a cap should the probe's rate not hold


def probe_steps(preset: str, data: str, sets: list[str], tag: str, probe: int, minutes: float) -> tuple[int, dict]:
    """Steps that fill ``minutes`` of training at the rate of a ``probe``-step run of the same configuration (its
    wall time includes the warm-up, so the rate errs low). Returns (steps, the probe's record)."""
    quiet = ["sample_every_steps=0", "ckpt_every_steps=0", "final_eval=false"]
    run_dir, _ = train(preset, data, probe, sets + quiet, f"{tag}-probe")
    summary = json.loads((run_dir / "summary.json").read_text())
    rate = summary["step"] / summary["train_wall_s"]
    steps = max(probe, int(rate * 60 * minutes))
    print(f"probe: {summary['step']} steps in {summary['train_wall_s']:.1f} s -> {steps} steps for {minutes:g} min",
          flush=True)
    return steps, {"probe_steps": summary["step"], "probe_wall_s": round(summary["train_wall_s"], 1),
                   "train_minutes": minutes, "chosen_steps": steps}


def train(preset: str, data: str, steps: int | None, sets: list[str], tag: str,
          reuse: bool = False) -> tuple[Path, list[str]]:
    """Train the run folder afresh, or with ``reuse`` score the finished run already there (the command it
    records is the one that trained it)."""
    run_dir = Path("runs") / f"bench-{preset}-{data}{tag}"
    cmd = genzoo_cmd() + ["train", preset, "--data", data, "--out", str(run_dir), "--overwrite", "--no-progress"]
    if steps:
        cmd += ["--steps", str(steps)]
    for s in sets:
        cmd += ["--set", s]
    summary = run_dir / "summary.json"
    if reuse and summary.exists() and json.loads(summary.read_text()).get("status") in ("finished", "time_limit"):
        print(f"reusing the finished run {run_dir}", flush=True)
    else:
        run(cmd)
    return run_dir, cmd


def evaluate(run_dir: Path, metrics: str, n: int, options: dict, name: str, device: str = "cpu",
             batch_size: int = 500) -> tuple[dict, list[str]]:
    """`genzoo eval` with sampling options; returns its record and the command."""
    out = run_dir / f"eval-bench-{name}.json"
    cmd = genzoo_cmd() + ["eval", str(run_dir), "--metrics", metrics, "--n", str(n), "--seed", "0",
                          "--out", str(out), "--no-progress"]
    if device != "cpu" or batch_size != 500:
        cmd += ["--device", device, "--batch-size", str(batch_size)]
    for k, v in options.items():
        cmd += ["--opt", f"{k}={v}"]
    run(cmd)
    return json.loads(out.read_text()), cmd


def sampling_speed(model, n: int, options: dict) -> float:
    """Images per second of one seeded batch of n (after a one-image warm-up)."""
    labels = torch.arange(n) % model.config.num_classes if model.conditional else None
    warm = {**options, "steps": 2} if options.get("sampler") == "ddim" else options
    if labels is not None:
        labels = labels.to(model.device)
    gen = torch.Generator(model.device)
    model.sample(1, labels=None if labels is None else labels[:1], generator=gen.manual_seed(0), **warm).cpu()
    t0 = time.perf_counter()
    model.sample(n, labels=labels, generator=gen.manual_seed(0), **options).cpu()   # .cpu() waits for a GPU
    return n / (time.perf_counter() - t0)


def test_bound(model, data: str, n: int, batch_size: int) -> tuple[float, int, float]:
    """The variational bound in bits/dim on the first n test images (seed-0 dequantization; a conditional model
    scores log p(x | y) with each image's own label): (bits/dim, images, wall seconds)."""
    from genzoo.data import load_split
    from genzoo.likelihood import score_split
    test = load_split(data, "test")
    images = test.images[:n]
    labels = test.labels[:n] if model.capabilities.conditional else None
    t0 = time.perf_counter()
    bpd = score_split(model, images, labels, estimator="vlb", batch_size=batch_size, seed=0, progress=False)["bpd"]
    wall = time.perf_counter() - t0
    print(f"bound: {bpd:.4f} bits/dim on {len(images)} test images ({wall:.0f} s)", flush=True)
    return bpd, len(images), wall


def settings(ddim_steps: list[int], timesteps: int) -> list[tuple[str, dict]]:
    return [(f"ddim-{s}", {"sampler": "ddim", "steps": s}) for s in ddim_steps] + \
        [(f"ddpm-{timesteps}", {"sampler": "ddpm"})]


def plot_steps(rows: list[dict], png: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    ddim = [r for r in rows if r["sampler"] == "ddim"]
    ddpm = [r for r in rows if r["sampler"] == "ddpm"]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, key, label in ((axes[0], "fid", "FID (classifier features)"), (axes[1], "classifier_score",
                                                                             "classifier score")):
        ax.plot([r["steps"] for r in ddim], [r["metrics"][key] for r in ddim], "o-", label="DDIM (eta = 0)")
        for r in ddpm:
            ax.plot([r["steps"]], [r["metrics"][key]], "s", color="C3", label=f"DDPM ancestral, n = {r['n']}")
        ax.set_xscale("log")
        ticks = sorted(r["steps"] for r in rows)
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("network evaluations per image")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)


def bench_ddpm(args, sets: list[str]) -> None:
    import genzoo
    name = f"ddpm-{args.data}{args.tag}"
    steps, sets, probe = sized_run("ddpm", args, sets)
    run_dir, train_cmd = train("ddpm", args.data, steps, sets, args.tag, args.reuse)
    summary = json.loads((run_dir / "summary.json").read_text())
    config = json.loads((run_dir / "config.json").read_text())
    model = genzoo.load(run_dir, device=args.device)
    scored = has_feature_network(args.data)
    rows = []
    for label, options in settings(args.ddim_steps, model.config.timesteps):
        n = args.n_ddpm if options["sampler"] == "ddpm" else args.n
        row = {"setting": label, "sampler": options["sampler"], "steps": options.get("steps", model.config.timesteps),
               "sample_img_per_s": round(sampling_speed(model, args.speed_n, options), 3), "speed_batch": args.speed_n}
        if scored:
            ev, cmd = evaluate(run_dir, "fid,kid,pr,score", n, options, label, args.device, args.eval_batch)
            row.update({"n": n, "eval_command": " ".join(["genzoo"] + cmd[3:]), "eval_wall_s": ev["wall_s"],
                        "metrics": ev["metrics"]})
        rows.append(row)
        print(f"{label}: {row.get('metrics', row['sample_img_per_s'])}", flush=True)
    png = RESULTS / f"{name}-steps.png"
    if scored:
        plot_steps(rows, png, f"ddpm on {args.data}: FID of {args.n} samples per DDIM point vs the test set, "
                              f"{args.n_ddpm} for DDPM-{model.config.timesteps}")

    bpd, bpd_n, bpd_wall = test_bound(model, args.data, args.bpd_images, args.bpd_batch)

    RESULTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(run_dir / "samples.png", RESULTS / f"{name}.png")
    main_row = next((r for r in rows if r["setting"] == "ddim-50"), rows[0]) if rows else {}
    write_result(name, {
        **({"note": args.note} if args.note else {}), **({"driver": args.driver} if args.driver else {}),
        "model": "ddpm", "dataset": args.data, "variant": args.tag.lstrip("-") or "default",
        "command": shlex.join(["python", "bench/diffusion.py"] + sys.argv[1:]),
        "train_command": " ".join(["genzoo"] + train_cmd[3:]), "run": str(run_dir), "checkpoint": "ema",
        "seed": config["train"]["seed"], "config": config["model"], "train_config": config["train"],
        "train_steps": summary["step"], "train_wall_s": summary["train_wall_s"],
        "train_img_per_s": summary.get("train_img_per_s"), "train_status": summary["status"],
        **({"probe": probe} if probe else {}), "eval_device": device_name(model.device),
        "headline_sampler": main_row.get("setting"), "n_generated": main_row.get("n", 0), "n_real": 10000,
        **({} if scored else {"refused": {"fid,kid,pr,score": f"genzoo has no frozen classifier for {args.data}: "
                                                              "the sample grid, timings and the bound only"}}),
        "bpd_note": f"variational bound (Ho et al. 2020, eq. 5) on the first {bpd_n} test images, dequantized "
                    f"once with seed 0; one x_t draw per step (seed 1); {bpd_wall:.0f} s"
                    + ("; float32 without TF32" if model.device.type == "cuda" else ""),
        "bpd_images": bpd_n, "bpd_wall_s": round(bpd_wall, 1),
        "sampler_sweep": rows, **({"steps_plot": f"bench/results/{png.name}"} if scored else {}),
        "sample_grid": f"bench/results/{name}.png", "metrics": {**main_row.get("metrics", {}), "bpd": round(bpd, 4)}})


def sized_run(preset: str, args, sets: list[str]) -> tuple[int | None, list[str], dict | None]:
    """(steps, sets, probe record): with --train-minutes (and no --reuse), the steps a probe says fill that time,
    and max_train_minutes as the cap; else --steps as given."""
    if not args.train_minutes or args.reuse:
        return args.steps, sets, None
    steps, probe = probe_steps(preset, args.data, sets, args.tag, args.probe_steps, args.train_minutes)
    return steps, sets + [f"max_train_minutes={PROBE_SAFETY * args.train_minutes:g}"], probe


def bench_cfg(args, sets: list[str]) -> None:
    import genzoo
    from genzoo.classifier import RecipeConfig, load_frozen
    from genzoo.evaluate import cas

    name = f"ddpm-cfg-{args.data}{args.tag}"
    steps, sets, probe = sized_run("ddpm-cfg", args, sets)
    run_dir, train_cmd = train("ddpm-cfg", args.data, steps, sets, args.tag, args.reuse)
    summary = json.loads((run_dir / "summary.json").read_text())
    config = json.loads((run_dir / "config.json").read_text())
    model = genzoo.load(run_dir, device=args.device)
    _, record = load_frozen(args.data)
    recipe = RecipeConfig(steps=args.cas_recipe_steps)
    rows = []
    for w in args.guidance:
        options = {"sampler": "ddim", "steps": args.cond_steps, "guidance": w}
        ev, cmd = evaluate(run_dir, "fid,kid,pr,score", args.n, options, f"w{w:g}", args.device, args.eval_batch)
        t0 = time.perf_counter()
        c = cas(model, args.data, record, seed=0, batch_size=args.eval_batch, progress=False, n=args.cas_n, recipe=recipe,
                sample_options=options)
        rows.append({"guidance": w, "options": options, "n": args.n, "eval_command": " ".join(["genzoo"] + cmd[3:]),
                     "eval_wall_s": ev["wall_s"], "cas_n": args.cas_n, "cas_recipe_steps": args.cas_recipe_steps,
                     "cas_wall_s": round(time.perf_counter() - t0, 1),
                     "sample_img_per_s": round(sampling_speed(model, args.speed_n, options), 3),
                     "metrics": {**ev["metrics"], **c}})
        print(f"w = {w:g}: {rows[-1]['metrics']}", flush=True)
    bound = {}
    if args.bpd_images:     # the bound on log p(x | y) with each test image's own label
        bpd, bpd_n, bpd_wall = test_bound(model, args.data, args.bpd_images, args.bpd_batch)
        bound = {"bpd": round(bpd, 4)}
        bound_note = (f"variational bound on log p(x | y) (Ho et al. 2020, eq. 5, each image with its own label) on "
                      f"the first {bpd_n} test images, dequantized once with seed 0; {bpd_wall:.0f} s"
                      + ("; float32 without TF32" if model.device.type == "cuda" else ""))
    RESULTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(run_dir / "samples.png", RESULTS / f"{name}.png")
    write_result(name, {
        **({"bpd_note": bound_note, "bpd_images": bpd_n, "bpd_wall_s": round(bpd_wall, 1)} if bound else {}),
        **({"note": args.note} if args.note else {}), **({"driver": args.driver} if args.driver else {}),
        "model": "ddpm-cfg", "dataset": args.data, "variant": args.tag.lstrip("-") or "default",
        "command": shlex.join(["python", "bench/diffusion.py"] + sys.argv[1:]),
        "train_command": " ".join(["genzoo"] + train_cmd[3:]), "run": str(run_dir), "checkpoint": "ema",
        "seed": config["train"]["seed"], "config": config["model"], "train_config": config["train"],
        "train_steps": summary["step"], "train_wall_s": summary["train_wall_s"],
        "train_img_per_s": summary.get("train_img_per_s"), "train_status": summary["status"],
        **({"probe": probe} if probe else {}), "eval_device": device_name(model.device),
        "n_generated": args.n, "n_real": 10000,
        "guidance_convention": "eps = (1 + w) eps(x, y) - w eps(x, null); w = 0 is the conditional model",
        "cas_note": f"CAS: genzoo's classifier recipe ({args.cas_recipe_steps} steps) trained on {args.cas_n} "
                    "class-balanced samples, top-1 on the real test set; intra_fid: mean over classes of the "
                    "per-class FID",
        "guidance_sweep": rows, "sample_grid": f"bench/results/{name}.png",
        "metrics": {**(rows[0]["metrics"] if rows else {}), **bound}})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="mnist")
    p.add_argument("--presets", default="ddpm,ddpm-cfg")
    p.add_argument("--steps", type=int, help="training steps (default: the preset's own)")
    p.add_argument("--n", type=int, default=10_000, help="generated images per DDIM / guidance setting")
    p.add_argument("--n-ddpm", type=int, default=2000, help="generated images for DDPM-1000 (1000 passes each)")
    p.add_argument("--ddim-steps", default="10,25,50,100")
    p.add_argument("--speed-n", type=int, default=64, help="batch timed for sampling images/s")
    p.add_argument("--bpd-images", type=int, default=1000, help="test images for the bound (T passes each)")
    p.add_argument("--bpd-batch", type=int, default=250)
    p.add_argument("--guidance", default="0,2", help="guidance scales w for ddpm-cfg")
    p.add_argument("--cond-steps", type=int, default=50, help="DDIM steps for the ddpm-cfg evaluation")
    p.add_argument("--cas-n", type=int, default=60_000, help="samples CAS trains on (docs/metrics.md: 60,000)")
    p.add_argument("--cas-recipe-steps", type=int, default=4000, help="steps of the CAS classifier (recipe: 4000)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra config keys for both trainings (smoke tests: width=8 ...)")
    p.add_argument("--reuse", action="store_true",
                   help="score a finished run folder of the same name instead of training it again")
    p.add_argument("--tag", default="", help="suffix of run folders and result names, e.g. -smoke")
    p.add_argument("--device", default="cpu", help="where the trained model samples and scores (cpu, cuda)")
    p.add_argument("--eval-batch", type=int, default=500, help="images per sampling batch of the evaluation")
    p.add_argument("--train-minutes", type=float, help="size ddpm's run to this many minutes by a probe run "
                   "(instead of --steps)")
    p.add_argument("--probe-steps", type=int, default=200, help="steps of the probe run of --train-minutes")
    p.add_argument("--note", help="a sentence kept in the result, e.g. what else shared the machine")
    p.add_argument("--driver", help="the command that ran this one (e.g. bench/gpu_diffusion.sh), kept in the result")
    args = p.parse_args()
    if args.train_minutes and args.steps:
        p.error("--train-minutes sizes the run: pass it or --steps, not both")
    resolve_device(args.device)
    args.ddim_steps = [int(s) for s in args.ddim_steps.split(",") if s]
    args.guidance = [float(w) for w in args.guidance.split(",") if w]
    if args.tag and not args.tag.startswith("-"):
        args.tag = "-" + args.tag
    for preset in args.presets.split(","):
        if preset == "ddpm":
            bench_ddpm(args, args.set)
        elif preset == "ddpm-cfg":
            bench_cfg(args, args.set)
        else:
            raise SystemExit(f"unknown preset {preset!r}; choose from ddpm, ddpm-cfg")


if __name__ == "__main__":
    main()
