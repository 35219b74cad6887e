"""Out-of-distribution detection with a likelihood model: is an image from the data set the model learnt?

Every score is "higher = more in-distribution", and a score is judged by its AUROC between in-distribution test
images (positives) and out-of-distribution ones (negatives).

  log_likelihood  log p(x) itself (for a class-conditional model log sum_y p(x|y) p(y), uniform prior). Known to
                  fail: a Fashion-MNIST model gives MNIST digits higher likelihood than its own test images
                  (Nalisnick et al. 2019, "Do deep generative models know what they don't know?").
  complexity      the input-complexity correction of Serra et al. 2020 ("Input complexity and out-of-distribution
                  detection with likelihood-based generative models", eq. 2): log2 P(x) + L(x), where L(x) is the
                  length in bits of x compressed by a generic lossless compressor (PNG). It is minus their S(x):
                  the log-likelihood ratio of the model against a universal code, 2^-L(x). Chosen as the main fix
                  because the failure above comes from simple (smooth, mostly-black) images getting high likelihood
                  under every model, which the compressor's length measures and cancels, and because it needs no
                  second model: Ren et al. 2019's likelihood ratio needs a background model trained on perturbed
                  inputs for every run.
  typicality      the typicality test of Nalisnick et al. 2019 ("Detecting out-of-distribution inputs to deep
                  generative models using typicality") at batch size 1: -|log p(x) - mean log p(train)|, the
                  distance from the typical set's log-likelihood, which flags inputs that are too likely as well
                  as too unlikely. The mean is over a seeded sample of training images.

Likelihoods come from the model's declared likelihood (genzoo.likelihood.estimator_of, shared with the Bayes
classifier): exact (flows, autoregressive models), the IWAE bound with k (VAEs), a diffusion model's variational
bound estimated from ``steps`` of its T timesteps (stratified, see Diffusion.log_prob), or a flow-matching model's
ODE likelihood from ``steps`` Heun steps (Hutchinson's divergence, see FlowMatching.log_prob); a bound with no
chosen cost is refused with the reason. Both data sets are scored the same
way for one model (genzoo/likelihood.py): a binarized model sees seed-0 binarized images, any other the seed-0
dequantized ones; the compressor sees exactly those (bilevel PNG for binary images, 8-bit PNG otherwise).
"""
from __future__ import annotations

import io
import math
import time

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from ..errors import GenzooError
from ..likelihood import describe, estimator_of, full_fp32, is_binarized
from . import DEFAULT_BOUND_STEPS
from .classify import class_log_likelihoods, log_prior, model_inputs

SCORES = ("log_likelihood", "complexity", "typicality")
MAX_N = 100_000


def auroc(scores_in, scores_out) -> float:
    """Area under the ROC curve of the rule "in-distribution when score > t": the probability that a random
    in-distribution score exceeds a random out-of-distribution one, ties counted half (Mann-Whitney U / n_in
    n_out, from ranks in float64; tied values share their mean rank)."""
    a = torch.as_tensor(scores_in, dtype=torch.float64).flatten()
    b = torch.as_tensor(scores_out, dtype=torch.float64).flatten()
    if len(a) == 0 or len(b) == 0:
        raise GenzooError("AUROC needs at least one score on each side.")
    both = torch.cat([a, b])
    if not torch.isfinite(both).all():
        raise GenzooError("AUROC needs finite scores.")
    values, inverse, counts = torch.unique(both, sorted=True, return_inverse=True, return_counts=True)
    first = torch.cumsum(counts, 0) - counts                        # 0-based rank of each value's first copy
    mean_rank = (first + (counts + 1) / 2).double()                  # 1-based mean rank of a tie group
    rank_sum = mean_rank[inverse[:len(a)]].sum()
    u = rank_sum - len(a) * (len(a) + 1) / 2
    return (u / (len(a) * len(b))).item()


@torch.no_grad()
@full_fp32()
def log_likelihoods(model, xp: torch.Tensor, *, k: int = 100, steps: int = DEFAULT_BOUND_STEPS, seed: int = 0,
                    batch_size: int = 100, progress: bool = False) -> torch.Tensor:
    """log p(x) in nats, (N,) float64, of inputs ``xp`` already prepared by ``classify.model_inputs``; a
    class-conditional model gives log sum_y p(x|y) p(y) with a uniform prior. ``k``: a VAE's IWAE k; ``steps``:
    the timesteps of a diffusion model's bound estimate, or a flow-matching model's ODE steps."""
    estimator, cost = estimator_of(model, k=k, steps=steps, purpose="OOD scoring")
    if not 1 <= batch_size <= 100_000:
        raise GenzooError(f"batch_size must be between 1 and 100000, got {batch_size}.")
    if model.capabilities.conditional:
        ll = class_log_likelihoods(model, xp, prepared=True, k=k, steps=steps, seed=seed, batch_size=batch_size,
                                   progress=progress)
        return (ll + log_prior(ll.shape[1])).logsumexp(1)
    stochastic = model.capabilities.likelihood.stochastic
    out = []
    for start in tqdm(range(0, len(xp), batch_size), desc=f"log p(x), {estimator}", disable=not progress,
                      leave=False):
        kw = dict(cost)
        if stochastic:
            kw["generator"] = torch.Generator(model.device).manual_seed(seed * 1_000_003 + 1 + start)
        out.append(model.log_prob(xp[start:start + batch_size].to(model.device), **kw).double().cpu())
    return torch.cat(out)


def png_bits(levels: torch.Tensor) -> torch.Tensor:
    """Length in bits of each image (N, C, H, W) uint8 as a PNG (zlib level 9); C = 1 or 3. Images whose only
    values are 0 and 255 are written as bilevel PNGs (one bit a pixel), as a binarized input is."""
    if levels.dtype != torch.uint8 or levels.ndim != 4 or levels.shape[1] not in (1, 3):
        raise GenzooError("png_bits takes uint8 images (N, 1 or 3, H, W).")
    arr = levels.permute(0, 2, 3, 1).numpy()
    out = []
    for a in arr:
        img = Image.fromarray(np.ascontiguousarray(a[..., 0] if a.shape[-1] == 1 else a))
        if a.shape[-1] == 1 and np.isin(a, (0, 255)).all():
            img = img.convert("1")
        buf = io.BytesIO()
        img.save(buf, format="PNG", compress_level=9)
        out.append(8 * len(buf.getvalue()))
    return torch.tensor(out, dtype=torch.float64)


def discrete_log2_prob(model, log_px: torch.Tensor, dims: int) -> torch.Tensor:
    """log2 of the probability of the discrete input, bits: a binarized model's log p(x) as it is, a density over
    [0, 1]^D of 8-bit data minus its D log 256 (log P(k) = log p(x) - D ln 256)."""
    offset = 0.0 if is_binarized(model) else dims * math.log(256)
    return (log_px - offset) / math.log(2)


def input_levels(model, xp: torch.Tensor) -> torch.Tensor:
    """The discrete object the model scores, as uint8 (N, C, H, W): 0/255 for binary inputs, k = floor(256 x)."""
    if is_binarized(model):
        return (xp * 255).round().to(torch.uint8)
    return (xp * 256).floor().clamp(0, 255).to(torch.uint8)


def ood_scores(model, xp: torch.Tensor, *, train_mean_log_px: float | None = None, k: int = 100,
               steps: int = DEFAULT_BOUND_STEPS, seed: int = 0, batch_size: int = 100,
               progress: bool = False) -> dict[str, torch.Tensor]:
    """Every score of inputs ``xp`` (prepared by ``classify.model_inputs``), each (N,) float64, higher = more
    in-distribution: log_likelihood (nats), complexity (bits), and typicality (nats) when the training mean of
    log p(x) is given."""
    log_px = log_likelihoods(model, xp, k=k, steps=steps, seed=seed, batch_size=batch_size, progress=progress)
    dims = xp[0].numel()
    out = {"log_likelihood": log_px,
           "complexity": discrete_log2_prob(model, log_px, dims) + png_bits(input_levels(model, xp))}
    if train_mean_log_px is not None:
        out["typicality"] = -(log_px - train_mean_log_px).abs()
    return out


def ood_eval(model, in_dataset: str, out_dataset: str, *, n: int = 2000, k: int = 100,
             steps: int = DEFAULT_BOUND_STEPS, seed: int = 0, batch_size: int = 100, progress: bool = True) -> dict:
    """AUROC of every score between the first ``n`` test images of ``in_dataset`` (the model's training data) and
    of ``out_dataset``, with the mean log-likelihood of each set; the typicality reference is the mean log p(x)
    of n training images drawn with ``seed``. Returns the record that `genzoo ood` writes."""
    from ..data import load_split
    estimator, cost = estimator_of(model, k=k, steps=steps, purpose="OOD scoring")
    if not 2 <= n <= MAX_N:
        raise GenzooError(f"n must be between 2 and {MAX_N}, got {n}.")
    c = model.config
    shape = (c.channels, c.image_size, c.image_size)
    sets = {}
    for role, name in (("in", in_dataset), ("out", out_dataset)):
        data = load_split(name, "test")
        if data.shape != shape:
            raise GenzooError(f"{name} images are {'x'.join(map(str, data.shape))}, the model takes "
                              f"{'x'.join(map(str, shape))}: OOD scores need one shape for both sets.")
        sets[role] = data.images[:n]
    train = load_split(in_dataset, "train").images
    ref = train[torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:n]]
    t0 = time.perf_counter()
    common = {"k": k, "steps": steps, "seed": seed, "batch_size": batch_size, "progress": progress}
    train_ll = log_likelihoods(model, model_inputs(model, ref, seed), **common)
    scores = {role: ood_scores(model, model_inputs(model, images, seed), train_mean_log_px=train_ll.mean().item(),
                               **common) for role, images in sets.items()}
    metrics = {"ood_auroc": auroc(scores["in"]["log_likelihood"], scores["out"]["log_likelihood"]),
               "ood_auroc_complexity": auroc(scores["in"]["complexity"], scores["out"]["complexity"]),
               "ood_auroc_typicality": auroc(scores["in"]["typicality"], scores["out"]["typicality"])}
    dims = int(np.prod(shape))
    for role in ("in", "out"):
        ll = scores[role]["log_likelihood"]
        metrics[f"mean_log_px_{role}_nats"] = ll.mean().item()
        if not is_binarized(model):
            metrics[f"bpd_{role}"] = ((-ll.mean().item() / dims + math.log(256)) / math.log(2))
        metrics[f"mean_png_bits_{role}"] = (scores[role]["complexity"]
                                             - discrete_log2_prob(model, ll, dims)).mean().item()
    metrics["mean_log_px_train_nats"] = train_ll.mean().item()
    estimator_text = describe(estimator, cost)
    if model.capabilities.conditional:
        estimator_text += ", summed over classes with a uniform prior"
    return {"in_dataset": in_dataset, "out_dataset": out_dataset, "split": "test", "n_in": len(sets["in"]),
            "n_out": len(sets["out"]), "n_train_reference": len(ref), "estimator": estimator_text,
            **({"iwae_k": cost["k"]} if "k" in cost else {}),
            **({"bound_steps": cost["steps"]} if "steps" in cost else {}),
            "inputs": "binarized (seed 0)" if is_binarized(model) else "dequantized (seed 0)",
            "scores": {"ood_auroc": "log p(x)", "ood_auroc_complexity": "log2 P(x) + PNG bits (Serra et al. 2020)",
                       "ood_auroc_typicality": "-|log p(x) - mean train log p(x)| (Nalisnick et al. 2019, M = 1)"},
            "seed": seed, "wall_s": round(time.perf_counter() - t0, 1), "metrics": metrics}
