"""Generative data augmentation: does a class-conditional model trained on n real labelled images make genzoo's
fixed classifier recipe better on those same n? (docs/metrics.md, "Augmentation gain".)

The run must be class-conditional and trained on exactly n real images: the seeded class-balanced subset of its
``train_subset`` option (``genzoo train ... --set train_subset=N``, genzoo.data.balanced_subset), or the whole
train split when it has none. The experiment takes the same n images again, and for each seed s:
  real      the recipe (genzoo/classifier.py, RecipeConfig(seed=s)) trained on the n real images;
  real+gen  the recipe trained on the n real images plus round(gen_ratio * n) generated ones, class-balanced labels,
            drawn from the model with seed s. The default gen_ratio 1 adds as many generated images as real ones,
            so half of every batch is generated on average: generated images weigh as much as real ones, and the
            share stays the same for every n;
both scored top-1 on the real test set, mean +- std (sample std, n - 1) over the seeds. CAS (genzoo/evaluate.py
``cas``: the recipe on ``cas_n`` class-balanced generated images alone) is reported once, with the first seed.
The real images are the same for every seed (the subset is drawn with seed 0); the seeds vary the classifier's
initialisation and batches and the generated images.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import torch

from .. import __version__
from ..checkpoint import device_name, load, read_config, resolve_device
from ..classifier import RecipeConfig, accuracy, load_frozen, train_classifier
from ..data import balanced_subset, load_split
from ..errors import GenzooError
from ..evaluate import cas
from ..hardware import machine
from ..hub import locate
from ..models.base import check_sample_options
from ..sampling import balanced_labels, sample_batches

MAX_SEEDS = 10
MAX_GEN_RATIO = 100.0


def run_train_size(config: dict, train_split_size: int) -> int:
    """How many real train images a run was trained on, from its config.json (``train_subset``, 0 = all)."""
    return int(config["train"].get("train_subset", 0) or train_split_size)


def _mean_std(values: list[float]) -> dict:
    out = {"acc": values, "mean": sum(values) / len(values)}
    if len(values) > 1:
        out["std"] = math.sqrt(sum((v - out["mean"]) ** 2 for v in values) / (len(values) - 1))
    return out


def _check_request(seeds, gen_ratio: float, cas_n: int) -> list[int]:
    seeds = [int(s) for s in seeds]
    if not 1 <= len(seeds) <= MAX_SEEDS or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise GenzooError(f"seeds must be 1 to {MAX_SEEDS} distinct non-negative integers, got {seeds}.")
    if not 0 < gen_ratio <= MAX_GEN_RATIO:
        raise GenzooError(f"gen_ratio must be in (0, {MAX_GEN_RATIO:g}], got {gen_ratio}.")
    if not (cas_n == 0 or 10 <= cas_n <= 1_000_000):
        raise GenzooError(f"cas_n must be 0 (no CAS) or between 10 and 1000000, got {cas_n}.")
    return seeds


def _generated(model, n: int, seed: int, batch_size: int, progress: bool, sample_options: dict):
    """n seeded samples with class-balanced labels: (8-bit images (n, C, H, W) uint8, labels (n,))."""
    labels = balanced_labels(n, model.config.num_classes)
    chunks = []
    try:
        sample_batches(model, n, seed, batch_size, labels, progress,
                       lambda x, _: chunks.append((x.clamp(0, 1) * 255).round().to(torch.uint8)), sample_options)
    except ValueError as e:      # a combination of sampling options the model refuses
        raise GenzooError(str(e)) from None
    return torch.cat(chunks), labels


def _accuracies(model, real_x, real_y, test, n_gen: int, seeds: list[int], base, batch_size: int,
                progress: bool, sample_options: dict) -> tuple[list[float], list[float]]:
    """Per seed, the test accuracy of the recipe on the real images and on the real plus n_gen generated ones."""
    num_classes = model.config.num_classes
    acc_real, acc_aug = [], []
    for s in seeds:
        rec = dataclasses.replace(base, seed=s)
        clf = train_classifier(real_x, real_y, num_classes, rec, progress=progress, desc=f"real, seed {s}")
        acc_real.append(accuracy(clf, test.images, test.labels))
        gen_x, gen_y = _generated(model, n_gen, s, batch_size, progress, sample_options)
        clf = train_classifier(torch.cat([real_x, gen_x]), torch.cat([real_y, gen_y]), num_classes, rec,
                               progress=progress, desc=f"real+gen, seed {s}")
        acc_aug.append(accuracy(clf, test.images, test.labels))
    return acc_real, acc_aug


def _cas(model, dataset: str, seed: int, cas_n: int, base, batch_size: int, progress: bool,
         sample_options: dict) -> tuple[dict, dict]:
    """(CAS metrics, refusals): CAS with the first seed, or why there is none."""
    if cas_n == 0:
        return {}, {"cas": "not asked for (cas_n 0)"}
    try:
        _, record = load_frozen(dataset)
    except GenzooError as e:
        return {}, {"cas": f"cas_real is the accuracy of genzoo's frozen classifier: {e}"}
    return cas(model, dataset, record, seed, batch_size, progress, n=cas_n, recipe=base,
               sample_options=sample_options), {}


def augmentation_gain(run_dir: str | Path, n_real: int, *, seeds=(0, 1, 2), gen_ratio: float = 1.0,
                      recipe=None, cas_n: int = 60_000, sample_options: dict | None = None, ema: bool = True,
                      batch_size: int = 500, progress: bool = True, device: str = "cpu") -> dict:
    """Run the augmentation-gain experiment on one run folder and return its report (see the module docstring).

    ``recipe`` is the classifier's RecipeConfig without its seed (the default recipe when None); ``cas_n`` 0 skips
    CAS; ``sample_options`` are the model's declared sampling options (e.g. a diffusion sampler's steps), checked
    against its declaration. ``device`` is where the model samples ("cpu", "cuda" or "cuda:N"); the classifiers
    always train on the CPU, so the recipe is the same everywhere, but a seed draws other images on a GPU, so the
    report names the device.
    """
    run_dir = locate(run_dir)             # a run folder, a zoo model or hf://, its manifest checked
    seeds = _check_request(seeds, gen_ratio, cas_n)
    device = resolve_device(device)
    config = read_config(run_dir)
    name, dataset = config["model_name"], config["data"]
    model = load(run_dir, ema=ema, device=device)
    if not model.capabilities.conditional:
        raise GenzooError(f"augment needs a class-conditional model to draw labelled images; {name} in {run_dir} "
                          "is unconditional.")
    sample_options = check_sample_options(model, sample_options)
    train, test = load_split(dataset, "train"), load_split(dataset, "test")
    trained_on = run_train_size(config, len(train))
    if n_real != trained_on:
        raise GenzooError(f"{run_dir} was trained on {trained_on} real images, not {n_real}: train the model on the "
                          f"same n with the training key train_subset={n_real}, e.g. `genzoo train {name} --data "
                          f"{dataset} --set train_subset={n_real}`.")
    idx = balanced_subset(train.labels, n_real, train.num_classes)
    n_gen = max(1, round(gen_ratio * n_real))
    base = dataclasses.replace(recipe or RecipeConfig(), seed=0)

    t0 = time.perf_counter()
    acc_real, acc_aug = _accuracies(model, train.images[idx], train.labels[idx], test, n_gen, seeds, base,
                                    batch_size, progress, sample_options)
    real, aug = _mean_std(acc_real), _mean_std(acc_aug)
    metrics = {"acc_real_mean": real["mean"], "acc_real_gen_mean": aug["mean"],
               "aug_gain": aug["mean"] - real["mean"]}
    if "std" in real:
        metrics["acc_real_std"], metrics["acc_real_gen_std"] = real["std"], aug["std"]
    cas_metrics, refused = _cas(model, dataset, seeds[0], cas_n, base, batch_size, progress, sample_options)
    metrics.update(cas_metrics)
    return {
        "model": name, "dataset": dataset, "run": str(run_dir), "genzoo_version": __version__,
        "checkpoint": "ema" if ema and (Path(run_dir) / "ema.safetensors").exists() else "raw",
        "n_real": n_real, "n_generated": n_gen, "gen_ratio": gen_ratio,
        "real_images": ("the whole train split" if n_real == len(train) else
                        f"class-balanced subset of the train split, seed 0 (train_subset={n_real})"),
        "generated_labels": "class-balanced", "seeds": seeds, "recipe": dataclasses.asdict(base) | {"seed": seeds},
        "test_split": f"{dataset} test ({len(test.images)} images)", "cas_n": cas_n,
        **({"sample_options": sample_options} if sample_options else {}),
        "real": real, "real_gen": aug, "metrics": metrics, "refused": refused,
        "machine": machine(), "device": device_name(model.device), "wall_s": round(time.perf_counter() - t0, 1),
    }


def write_report(result: dict, out_dir: str | Path) -> tuple[Path, Path]:
    """Write OUT/augment-n{n_real}.json and redraw OUT/augment.png from every report in OUT of the same model and
    data set (accuracy against n, real vs real+gen). Returns (json path, png path)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"augment-n{result['n_real']}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    reports = []
    for p in sorted(out_dir.glob("augment-n*.json")):
        try:
            r = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(r, dict) and (r.get("model"), r.get("dataset")) == (result["model"], result["dataset"]):
            reports.append(r)
    return path, plot_gain(reports, out_dir / "augment.png")


def plot_gain(reports: list[dict], path: str | Path) -> Path:
    """Test accuracy against the number of real images (log axis), real vs real+gen, mean +- std error bars."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reports = sorted(reports, key=lambda r: r["n_real"])
    ns = [r["n_real"] for r in reports]
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for key, label in (("real", "real"), ("real_gen", "real + generated")):
        means = [100 * r[key]["mean"] for r in reports]
        stds = [100 * r[key].get("std", 0.0) for r in reports]
        ax.errorbar(ns, means, yerr=stds, marker="o", capsize=3, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("real labelled images n")
    ax.set_ylabel("test top-1 accuracy (%)")
    if reports:
        r = reports[-1]
        ax.set_title(f"{r['model']} on {r['dataset']}: generated/real = {r['gen_ratio']:g}, "
                     f"mean +- std over {len(r['seeds'])} seeds", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
