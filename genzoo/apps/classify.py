"""A generative (Bayes) classifier over any class-conditional model with a likelihood.

    p(y|x) = p(x|y) p(y) / sum_y' p(x|y') p(y'),   prediction argmax_y log p(x|y) + log p(y)

log p(x|y) comes from the model's declared likelihood (``capabilities.likelihood``, read by
genzoo.likelihood.estimator_of), never from its class name:
  - exact (conditional flows and autoregressive models): ``log_prob(x, labels)`` is exact;
  - the IWAE bound with its cost knob k (a conditional VAE): k importance samples (Burda et al. 2016), the same
    noise for every class (common random numbers) so that the differences between classes carry no extra
    sampling noise;
  - the variational bound with its cost knob steps (conditional diffusion): estimated from ``steps`` of the T
    timesteps (stratified; the same steps and noise for every class), since the full bound costs T network
    passes per image and class;
  - the ODE likelihood with its cost knob steps (conditional flow matching): the probability-flow ODE solved with
    ``steps`` Heun steps and Hutchinson's divergence estimate (the same probe for every class);
  - a bound whose cost cannot be chosen is refused with the reason, as is a model without a likelihood or
    without classes.
The prior p(y) is uniform unless class frequencies are given (``class_frequencies``: those of the train split).

Wherever a model is taken, a list of models trained on the same data may stand for their equal-weight mixture,
p(x|y) = (1/M) sum_m p_m(x|y), scored as log (1/M) sum_m exp(log p_m(x|y)). With bounds (IWAE, diffusion) this is
the log of the mean of the members' unbiased estimates of p_m(x|y), so still a lower bound in expectation.
The members must estimate log p(x|y) the same way and score the same inputs.

Inputs are scored as genzoo's evaluation scores the test set (genzoo/likelihood.py): images are read as 8-bit
levels k = round(255 x), then a binarized model gets one Bernoulli draw with p = k/255 and any other model the
uniform dequantization (k + u) / 256, both from a generator seeded with ``seed`` (0: the evaluation's draws).
With ``draws`` = M the log-likelihood is averaged over M such draws (seeds seed to seed + M - 1): for a binarized
model an estimate of E_b[log p(b|y)] over the binarizations b of the grey image. One binarization throws away the
grey levels at random; on MNIST the average over a few classifies better (BENCHMARKS.md). With ``binarize`` =
"threshold" a binarized model scores instead the deterministic image k >= 128 (grey level at least 1/2): additive
noise well below 1/2, which a Bernoulli draw turns into stray foreground pixels all over the background, then
rarely crosses the threshold.
"""
from __future__ import annotations

import math
import time

import torch
from tqdm import tqdm

from ..errors import GenzooError
from ..likelihood import binarize_fixed, dequantize_fixed, estimator_of, full_fp32, is_binarized
from ..likelihood import describe as describe_estimator
from ..models.base import require
from . import BINARIZE, DEFAULT_BOUND_STEPS

MAX_DRAWS = 1000


def members(model) -> list:
    """The models behind ``model``: itself, or the members of a mixture given as a list or tuple, checked to
    take images of one shape and class count and to score the same inputs (binarized or dequantized)."""
    found = list(model) if isinstance(model, (list, tuple)) else [model]
    if not found:
        raise GenzooError("a mixture needs at least one model.")
    first = found[0]
    for m in found[1:]:
        for attr in ("channels", "image_size", "num_classes"):
            if getattr(m.config, attr) != getattr(first.config, attr):
                raise GenzooError(f"the mixture's models differ in {attr} ({getattr(first.config, attr)} and "
                                  f"{getattr(m.config, attr)}): mix models trained on the same data.")
        if is_binarized(m) != is_binarized(first):
            raise GenzooError("the mixture's models score different inputs (binarized and dequantized images): mix "
                              "models with the same likelihood.")
    return found


def likelihood_estimator(model, k: int = 100, steps: int = DEFAULT_BOUND_STEPS) -> tuple[str, dict]:
    """("exact", {}), ("iwae", {"k": k}), ("vlb", {"steps": steps}) or ("ode", {"steps": steps}): how ``log_prob``
    gives log p(x|y) for this model (or every member of a mixture), from its declaration; a GenzooError with the
    reason when it cannot (unconditional, no likelihood, a bound whose cost cannot be chosen, a cost out of range,
    or mixture members that estimate it differently)."""
    if isinstance(model, (list, tuple)):
        found = [likelihood_estimator(m, k, steps) for m in members(model)]
        if any(f[0] != found[0][0] for f in found):
            kinds = ", ".join(f[0] for f in found)
            raise GenzooError(f"the mixture's models estimate log p(x|y) differently ({kinds}): mix models of one "
                              "kind.")
        return found[0]
    require(model, "conditional", "a Bayes classifier over log p(x|y)")
    return estimator_of(model, k=k, steps=steps, purpose="a Bayes classifier")


def describe(estimator_name: str, kw: dict) -> str:
    """The estimator of log p(x|y) in words, as results state it (docs/metrics.md)."""
    return describe_estimator(estimator_name, kw, "log p(x|y)")


def _check_binarize(model, binarize: str) -> None:
    if binarize not in BINARIZE:
        raise GenzooError(f"binarize must be one of {', '.join(BINARIZE)}, got {binarize!r}.")
    if binarize == "threshold" and not is_binarized(members(model)[0]):
        raise GenzooError("binarize=threshold is for models of binarized images; this model scores dequantized "
                          "8-bit images.")


def levels(x: torch.Tensor) -> torch.Tensor:
    """Images (N, C, H, W), uint8 or float in [0, 1], as 8-bit levels k = round(255 x) (uint8)."""
    if x.dtype == torch.uint8:
        return x
    if x.min() < 0 or x.max() > 1:
        raise GenzooError("images must be in [0, 1].")
    return (x.float() * 255).round().to(torch.uint8)


def threshold(k: torch.Tensor) -> torch.Tensor:
    """8-bit levels (uint8) -> float {0, 1}: 1 where the grey level is at least 1/2 (k >= 128)."""
    return (k >= 128).float()


def model_inputs(model, x: torch.Tensor, seed: int = 0, binarize: str = "sample") -> torch.Tensor:
    """What ``log_prob`` scores for images ``x`` (N, C, H, W), uint8 or float in [0, 1]: the 8-bit levels,
    binarized (binarized models: one Bernoulli draw, or with ``binarize`` = "threshold" k >= 128) or dequantized
    (all others), the draws from a generator seeded with ``seed``."""
    _check_binarize(model, binarize)
    k = levels(x)
    if binarize == "threshold":
        return threshold(k)
    return binarize_fixed(k, seed) if is_binarized(members(model)[0]) else dequantize_fixed(k, seed)


def draws_text(model, draws: int) -> str:
    """How the estimate was averaged over input draws, in words (empty for one draw): a suffix to ``describe``."""
    if draws == 1:
        return ""
    return f", averaged over {draws} {'binarizations' if is_binarized(model) else 'dequantizations'} of each image"


def inputs_text(model, seed: int = 0, draws: int = 1, binarize: str = "sample") -> str:
    """The inputs the classifier scores, in words, as results state them."""
    if binarize == "threshold":
        return "binarized by threshold (1 where the 8-bit level is at least 128)"
    kind = "binarized" if is_binarized(model) else "dequantized"
    if draws == 1:
        return f"{kind} (seed {seed})"
    return f"{kind} {draws} times (seeds {seed} to {seed + draws - 1}), log p(x|y) averaged over the draws"


def _check_shape(model, x: torch.Tensor) -> None:
    c = members(model)[0].config
    want = (c.channels, c.image_size, c.image_size)
    if x.ndim != 4 or tuple(x.shape[1:]) != want:
        raise GenzooError(f"the model takes images of shape (N, {want[0]}, {want[1]}, {want[2]}), got "
                          f"{tuple(x.shape)}.")


@torch.no_grad()
@full_fp32()
def class_log_likelihoods(model, x: torch.Tensor, *, k: int = 100, steps: int = DEFAULT_BOUND_STEPS, seed: int = 0,
                          draws: int = 1, batch_size: int = 100, prepared: bool = False,
                          binarize: str = "sample", progress: bool = False) -> torch.Tensor:
    """log p(x|y) for every image and every class, (N, C) float64 nats.

    ``x`` (N, C, H, W): images (uint8, or float in [0, 1]) scored as ``model_inputs`` prepares them, or with
    ``prepared`` the exact inputs of ``log_prob`` (already binarized or dequantized). ``k`` is the IWAE k of a
    latent-variable model; ``seed`` seeds the binarization/dequantization and the importance samples: those of
    the batch starting at image i come from a generator seeded with seed * 1000003 + 1 + i, the same for every
    class (common random numbers). ``steps``: the timesteps of a diffusion model's bound estimate, or a
    flow-matching model's ODE steps. A list of models gives their equal-weight mixture's log p(x|y), each member
    scoring the same inputs with the same seeds.

    ``draws`` > 1 averages the estimate over that many draws of the inputs, with seeds seed, seed + 1, ...
    (binarizations or dequantizations of ``x``, each with its own importance samples or timesteps). For a
    binarized model this estimates E_b[log p(b|y)] over the binarizations b ~ Bernoulli(x) of an image, the
    negative cross-entropy from the image's own Bernoulli distribution to p(.|y); for a dequantized one, the
    dequantization bound E_u[log p((k + u)/256 | y)] on the 8-bit levels k. One draw of an exact likelihood is
    an unbiased estimate of it (of a bound, through the bound), and M draws have 1/M of its variance.
    ``binarize`` = "threshold" scores a binarized model on the deterministic k >= 128 instead (one draw only).
    """
    estimator, kw = likelihood_estimator(model, k, steps)
    _check_shape(model, x)
    _check_binarize(model, binarize)
    if binarize == "threshold" and draws > 1:
        raise GenzooError("thresholded inputs are not drawn: draws must be 1 with binarize=threshold.")
    if not 1 <= batch_size <= 100_000:
        raise GenzooError(f"batch_size must be between 1 and 100000, got {batch_size}.")
    if isinstance(draws, bool) or not isinstance(draws, int) or not 1 <= draws <= MAX_DRAWS:
        raise GenzooError(f"draws must be an integer between 1 and {MAX_DRAWS}, got {draws!r}.")
    if draws > 1:
        if prepared:
            raise GenzooError("draws > 1 draws the inputs again: pass the images, not prepared inputs.")
        return torch.stack([class_log_likelihoods(model, x, k=k, steps=steps, seed=seed + d, batch_size=batch_size,
                                                  progress=progress) for d in range(draws)]).mean(0)
    xp = x.float() if prepared else model_inputs(model, x, seed, binarize)
    if isinstance(model, (list, tuple)):
        each = torch.stack([class_log_likelihoods(m, xp, k=k, steps=steps, seed=seed, batch_size=batch_size,
                                                  prepared=True, progress=progress) for m in members(model)])
        return each.logsumexp(0) - math.log(len(each))                    # log (1/M) sum_m p_m(x|y)
    stochastic = model.capabilities.likelihood.stochastic
    num_classes = model.config.num_classes
    out = torch.empty(len(xp), num_classes, dtype=torch.float64)
    for start in tqdm(range(0, len(xp), batch_size), desc=f"log p(x|y), {estimator}", disable=not progress,
                      leave=False):
        xb = xp[start:start + batch_size].to(model.device)
        for c in range(num_classes):
            extra = dict(kw)
            if stochastic:           # the same draws for every class of this batch (common random numbers)
                extra["generator"] = torch.Generator(model.device).manual_seed(seed * 1_000_003 + 1 + start)
            labels = torch.full((len(xb),), c, dtype=torch.long, device=model.device)
            out[start:start + len(xb), c] = model.log_prob(xb, labels=labels, **extra).double().cpu()
    return out


def log_prior(num_classes: int, class_frequencies: torch.Tensor | None = None) -> torch.Tensor:
    """log p(y), (C,) float64: uniform, or proportional to ``class_frequencies`` (counts or shares, (C,))."""
    if class_frequencies is None:
        return torch.full((num_classes,), -math.log(num_classes), dtype=torch.float64)
    f = torch.as_tensor(class_frequencies, dtype=torch.float64)
    if f.shape != (num_classes,) or (f < 0).any() or f.sum() <= 0:
        raise GenzooError(f"class frequencies must be {num_classes} non-negative numbers with a positive sum.")
    return (f / f.sum()).log()


def posterior(model=None, x: torch.Tensor | None = None, *, log_likelihoods: torch.Tensor | None = None,
              class_frequencies: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
    """p(y|x) by Bayes' rule, (N, C) float64, rows summing to 1.

    From ``model`` and images ``x`` (``kwargs`` go to ``class_log_likelihoods``), or from given
    ``log_likelihoods`` (N, C). The prior is uniform unless ``class_frequencies`` (C,) are given.
    """
    if log_likelihoods is None:
        if model is None or x is None:
            raise GenzooError("posterior needs a model and images, or log_likelihoods.")
        log_likelihoods = class_log_likelihoods(model, x, **kwargs)
    ll = log_likelihoods.double()
    joint = ll + log_prior(ll.shape[1], class_frequencies)
    return (joint - joint.logsumexp(1, keepdim=True)).exp()


def add_noise(images: torch.Tensor, std: float, seed: int = 0) -> torch.Tensor:
    """uint8 images (N, C, H, W) plus N(0, std^2) noise in [0, 1] units, clipped to [0, 1] and read back as 8-bit
    levels (uint8), from a generator seeded with ``seed``; std 0 returns the images."""
    if not 0 <= std <= 10:
        raise GenzooError(f"a noise std must be between 0 and 10, got {std}.")
    if std == 0:
        return images
    g = torch.Generator().manual_seed(seed)
    x = images.float() / 255 + std * torch.randn(images.shape, generator=g)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def bayes_accuracy(model, dataset: str, *, n: int | None = None, noise_stds=(0.0,), k: int = 100,
                   steps: int = DEFAULT_BOUND_STEPS, seed: int = 0, draws: int = 1, prior: str = "uniform",
                   batch_size: int = 100, binarize: str = "sample", discriminative=None, progress: bool = True) -> dict:
    """Accuracy of the Bayes classifier on the first ``n`` test images of ``dataset`` (all when None), clean and
    under additive Gaussian noise of each std in ``noise_stds`` (clipped to [0, 1], seed ``seed``), beside the
    ``discriminative`` classifier (genzoo's shipped frozen classifier for the data set when None and one ships).

    ``prior`` is "uniform" or "train" (the class frequencies of the train split). ``model`` may be a list of
    models: their equal-weight mixture. ``draws``: input draws averaged per image (``class_log_likelihoods``).
    ``binarize`` = "threshold": the Bayes classifier scores the thresholded images, and the discriminative
    classifier is also measured on those images (``discriminative_thresholded_acc``), to tell the threshold's
    part from the model's. Returns a record with ``bayes_acc`` and ``discriminative_acc`` per std, the
    estimator, the prior and the counts.
    """
    from ..classifier import load_frozen, predict
    from ..data import load_split
    estimator, kw = likelihood_estimator(model, k, steps)
    found = members(model)
    first, m = found[0], len(found)
    if prior not in ("uniform", "train"):
        raise GenzooError(f"prior must be uniform or train, got {prior!r}.")
    test = load_split(dataset, "test")
    if test.num_classes != first.config.num_classes:
        raise GenzooError(f"{dataset} has {test.num_classes} classes, the model {first.config.num_classes}.")
    _check_shape(model, test.images[:1])
    _check_binarize(model, binarize)
    total = len(test.images)
    n = total if n is None else n
    if not 1 <= n <= total:
        raise GenzooError(f"n must be between 1 and {total} (the {dataset} test split), got {n}.")
    freqs = None
    if prior == "train":
        freqs = torch.bincount(load_split(dataset, "train").labels, minlength=test.num_classes)
    disc_record = None
    if discriminative is None:
        try:
            discriminative, rec = load_frozen(dataset)
            disc_record = {"name": f"genzoo classifier-{dataset}", "test_accuracy": rec["test_accuracy"]}
        except GenzooError:
            discriminative = None
    stds = sorted({0.0, *(float(s) for s in noise_stds)})
    labels = test.labels[:n]
    rows = []
    t0 = time.perf_counter()
    for std in stds:
        # noise on the whole split, then the first n: a subset sees the same images and draws as the whole set
        # (binarize_fixed and dequantize_fixed draw image by image in order; tests/test_classify.py checks)
        noisy = add_noise(test.images, std, seed + 1)
        post = posterior(log_likelihoods=class_log_likelihoods(model, noisy[:n], k=k, steps=steps, seed=seed,
                                                               draws=draws, batch_size=batch_size,
                                                               binarize=binarize, progress=progress),
                         class_frequencies=freqs)
        row = {"noise_std": std, "bayes_acc": (post.argmax(1) == labels).double().mean().item(),
               "bayes_mean_true_class_prob": post[torch.arange(n), labels].mean().item()}
        if discriminative is not None:
            def disc_acc(images):
                return (predict(discriminative, images)[1].argmax(1) == labels).double().mean().item()
            row["discriminative_acc"] = disc_acc(noisy[:n])
            if binarize == "threshold":
                row["discriminative_thresholded_acc"] = disc_acc((threshold(noisy[:n]) * 255).to(torch.uint8))
        rows.append(row)
    return {"dataset": dataset, "split": "test", "n": n,
            "estimator": describe(estimator, kw) + (f", of the equal-weight mixture of {m} models" if m > 1 else "")
            + draws_text(first, draws),
            **({"mixture_of": m} if m > 1 else {}),
            **({"iwae_k": kw["k"]} if "k" in kw else {}), **({"bound_steps": kw["steps"]} if "steps" in kw else {}),
            "prior": "uniform" if freqs is None else "train-split class frequencies",
            "inputs": inputs_text(first, seed, draws, binarize), **({"draws": draws} if draws > 1 else {}),
            **({"binarize": binarize} if binarize != "sample" else {}),
            "noise": f"additive N(0, std^2) in [0, 1] units, clipped to [0, 1], 8-bit, seed {seed + 1}",
            "discriminative": disc_record, "by_noise": rows, "wall_s": round(time.perf_counter() - t0, 1),
            "bayes_acc": rows[0]["bayes_acc"],
            **({"discriminative_acc": rows[0]["discriminative_acc"]} if "discriminative_acc" in rows[0] else {})}
