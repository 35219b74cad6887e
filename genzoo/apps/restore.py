"""Restoration over the model contract: inpainting, denoising and 2x super-resolution with any model that can, the
method chosen by what the model declares (``capabilities.completion`` and ``.latents``), never by its class.

Conventions
- Images enter and leave in [0, 1], (N, C, H, W) at the model's size. A mask is a bool tensor with True = known,
  (N or 1, 1 or C, H, W); as a PNG file, white (grey level >= 128) = known and black = unknown, at the model's size.
- Mask presets (``mask_preset``): "center" the centre half-square unknown; "half" the bottom half unknown (so the
  known pixels come first in raster order); "random50" each pixel unknown with probability 1/2, from a generator.
- Tasks: "inpaint": x is the image, its unknown pixels are ignored, and the output copies every known pixel exactly.
  "denoise": x = clean + noise_std * n, n ~ N(0, I) on the [0, 1] scale (x may leave [0, 1]). "superres": x is the
  low-resolution image (N, C, H/2, W/2) whose pixels are the means of 2x2 blocks (``degrade`` makes all three).

Methods
- Diffusion (completion "diffusion": ``predict_eps``, ``q_sample``, ``alphas_cumprod``), on the [-1, 1] scale,
  over ``steps`` of the T steps (``ddim_timesteps``) with the ancestral step q(x_s | x_t, x0_hat) (DDIM with
  eta = 1):
  inpaint: RePaint (Lugmayr et al. 2022, Algorithm 1): before each reverse step the known region of x_t is replaced
    by a fresh draw of q(x_t | x_0 known); after every ``jump`` steps the chain is noised back up ``jump`` steps,
    ``resample`` times in all, so the unknown region has time to agree with the known one.
  denoise: an exact SDEdit start (Meng et al. 2022). On the model's scale the noise std is s = 2 noise_std, and
    sqrt(abar_t) y = sqrt(abar_t) x_0 + sqrt(abar_t) s n is a draw of q(x_t | x_0) when sqrt((1 - abar_t) / abar_t)
    = s. We take the least noisy t* with sqrt((1 - abar) / abar) >= s, top the noise up to exactly 1 - abar_t* with
    independent noise, and run the reverse process from t* to 0: a draw from the model's p(x_0 | y).
  superres: the reverse process from x_T with each x0_hat projected onto the images consistent with the low-res
    input, x0_hat + up(y - pool(x0_hat)) (the range-null-space projection of DDNM, Wang et al. 2023: for the 2x2
    average pool A, nearest upsampling is its pseudo-inverse, so A of the projection equals y exactly). It keeps
    the model's detail in A's null space and needs no noisy copy of y (RePaint's replacement would need the
    forward process in the low-frequency space, which is not a diagonal Gaussian there).
- Autoregressive (completion "autoregressive": ``complete``, ``value_log_probs``), inpaint only: ``complete`` draws
  the unknown values in raster order given everything before them. When every known value precedes every unknown one
  (the "half" preset) that is an exact draw from p(unknown | known) and restore returns it as it is. Otherwise a
  known value after an unknown one cannot inform it, and restore corrects for that by importance resampling (with
  ``value_log_probs``): ``particles`` completions are drawn, each weighted by w = p(x) / q(unknown) = prod over the
  known values of p(x_i | x_<i) (the proposal q is the product of the unknown values' conditionals, so this ratio is
  exact), and one is drawn per image in proportion to w. With many particles that tends to p(unknown | known); with
  few it lies between the raster draw and it (the weights of a large hole are uneven).
- Latent models (``latents``: ``prior_latents``, ``decode``; with ``encode``, ``encode_latents``: VAEs, flows,
  GANs): MAP latent fit, argmin_z ||m * (A decode(z) - y)||^2 / (2 fit_std^2) + ||z||^2 / 2 (every latent coordinate
  taken as N(0, 1)), by Adam from ``restarts`` starts per image (the encoder's latent of a first guess where the
  model has one, then seeded prior draws), keeping the start with the lowest objective. m is the known mask
  (inpaint; the output then keeps the known pixels and takes the rest from decode(z)), A the identity (denoise,
  fit_std = noise_std: the noise's own likelihood) or the 2x2 average pool (superres, then projected as above).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..errors import GenzooError

TASKS = ("inpaint", "denoise", "superres")
PRESETS = ("center", "half", "random50")
MAX_NOISE_STD = 2.0          # on the [0, 1] scale; beyond it the image carries almost nothing
MAX_MASK_PIXELS = 4096 * 4096

# method options and their defaults, per capability and task (small enough for a CPU: RePaint costs about
# steps x resample network passes, the latent fit restarts x iters decoder passes and backward passes)
OPTIONS = {
    ("diffusion", "inpaint"): {"steps": 50, "resample": 5, "jump": 5},
    ("diffusion", "denoise"): {"steps": 50},
    ("diffusion", "superres"): {"steps": 50},
    ("autoregressive", "inpaint"): {"particles": 8},
    ("latent", "inpaint"): {"restarts": 4, "iters": 200, "lr": 0.05, "fit_std": 0.1},
    ("latent", "denoise"): {"restarts": 4, "iters": 200, "lr": 0.05},
    ("latent", "superres"): {"restarts": 4, "iters": 200, "lr": 0.05, "fit_std": 0.1},
}
LIMITS = {"steps": (1, 100_000), "resample": (1, 100), "jump": (1, 10_000), "particles": (1, 256),
          "restarts": (1, 64), "iters": (1, 100_000), "lr": (1e-6, 10.0), "fit_std": (1e-4, 10.0)}
METHODS = {("diffusion", "inpaint"): "repaint", ("diffusion", "denoise"): "sdedit-start",
           ("diffusion", "superres"): "ddnm-projection", ("autoregressive", "inpaint"): "raster-completion+sir",
           ("latent", "inpaint"): "latent-map", ("latent", "denoise"): "latent-map",
           ("latent", "superres"): "latent-map"}


# -- what a model can do

def capability(model) -> str | None:
    """The restoration capability a model declares: "diffusion", "autoregressive" (its completion of given
    pixels), "latent" (a latent space) or None."""
    caps = model.capabilities
    if caps.completion:
        return caps.completion
    return "latent" if caps.latents else None


def capabilities(model) -> dict[str, str]:
    """{task: method} for the tasks this model can do."""
    kind = capability(model)
    return {task: METHODS[(kind, task)] for task in TASKS if (kind, task) in METHODS}


def _check_options(kind: str, task: str, options: dict, timesteps: int | None) -> dict:
    allowed = OPTIONS[(kind, task)]
    unknown = set(options) - set(allowed)
    if unknown:
        raise GenzooError(f"{METHODS[(kind, task)]} ({task}) takes the options {', '.join(allowed)}; got "
                          f"{', '.join(sorted(unknown))}.")
    out = {**allowed, **options}
    for key, value in out.items():
        lo, hi = LIMITS[key]
        if key == "steps" and timesteps is not None:
            hi = timesteps
        kind_ok = isinstance(value, int) if isinstance(allowed[key], int) else isinstance(value, (int, float))
        if isinstance(value, bool) or not kind_ok or not lo <= value <= hi:
            raise GenzooError(f"{key} must be {'an integer' if isinstance(allowed[key], int) else 'a number'} "
                              f"in [{lo:g}, {hi:g}], got {value!r}.")
    return out


def _labels(model, labels, n: int):
    caps = model.capabilities
    if not caps.conditional:
        if labels is not None:
            raise GenzooError("this model is unconditional: pass no labels.")
        return None
    if labels is None:
        if not caps.null_label:      # classifier-free guidance's "no class"
            raise GenzooError("this model is class-conditional: give the class of each image (labels).")
        return torch.full((n,), model.null_label, dtype=torch.long, device=model.device)
    labels = torch.as_tensor(labels).long().view(-1).to(model.device)
    k = model.config.num_classes
    if len(labels) == 1:
        labels = labels.expand(n)
    if len(labels) != n or labels.min() < 0 or labels.max() >= k:
        raise GenzooError(f"labels must be {n} integers in [0, {k - 1}], got {labels.tolist()[:10]}.")
    return labels


# -- masks and degradations

def mask_preset(name: str, n: int, size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """The known mask of a preset, (n, 1, size, size) bool, True = known: "center" (the centre half-square
    unknown), "half" (the bottom half unknown), "random50" (each pixel unknown with p = 1/2, from ``generator``)."""
    if name not in PRESETS:
        raise GenzooError(f"unknown mask preset {name!r}; presets: {', '.join(PRESETS)}.")
    if not 1 <= n <= 1_000_000 or not 2 <= size <= 4096:
        raise GenzooError(f"mask_preset needs 1 <= n and 2 <= size <= 4096, got n={n}, size={size}.")
    known = torch.ones(n, 1, size, size, dtype=torch.bool)
    if name == "center":
        a = size // 4
        known[:, :, a:a + size // 2, a:a + size // 2] = False
    elif name == "half":
        known[:, :, size // 2:] = False
    else:
        known = torch.rand(n, 1, size, size, generator=generator) >= 0.5
    return known


def load_mask(path, size: int) -> torch.Tensor:
    """A mask PNG (or any image) as (1, 1, size, size) bool: white (grey level >= 128) = known, black = unknown.
    It must be exactly size x size: a mask is never resized."""
    from pathlib import Path

    from PIL import Image
    path = Path(path)
    if not path.is_file():
        raise GenzooError(f"mask {path} does not exist or is not a file.")
    try:
        with Image.open(path) as img:
            if img.width * img.height > MAX_MASK_PIXELS:
                raise GenzooError(f"mask {path} is {img.width}x{img.height}: larger than genzoo reads.")
            if img.size != (size, size):
                raise GenzooError(f"mask {path} is {img.width}x{img.height}; this model needs a {size}x{size} "
                                  "mask (white = known, black = unknown).")
            arr = np.asarray(img.convert("L"), dtype=np.uint8)
    except (OSError, Image.DecompressionBombError) as e:
        raise GenzooError(f"mask {path} is not a readable image ({e}).") from None
    return torch.from_numpy(arr >= 128).view(1, 1, size, size)


def pool2(x: torch.Tensor) -> torch.Tensor:
    """The super-resolution degradation: means of 2x2 blocks, (N, C, H, W) -> (N, C, H/2, W/2)."""
    return F.avg_pool2d(x, 2)


def up2(x: torch.Tensor) -> torch.Tensor:
    """Nearest 2x upsampling, the pseudo-inverse of pool2 (pool2(up2(y)) = y)."""
    return x.repeat_interleave(2, -2).repeat_interleave(2, -1)


def degrade(x: torch.Tensor, task: str, *, noise_std: float | None = None,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """What restore() takes for ``task`` from clean images x (N, C, H, W) in [0, 1]: x itself for inpaint (the mask
    says what is known), x + noise_std n with n ~ N(0, I) from ``generator`` for denoise (not clipped), the 2x2
    means for superres."""
    if task == "inpaint":
        return x
    if task == "denoise":
        _check_noise_std(noise_std)
        return x + noise_std * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    if task == "superres":
        return pool2(x)
    raise GenzooError(f"unknown task {task!r}; tasks: {', '.join(TASKS)}.")


def _check_noise_std(noise_std):
    if isinstance(noise_std, bool) or not isinstance(noise_std, (int, float)) or not 0 < noise_std <= MAX_NOISE_STD:
        raise GenzooError(f"denoise needs the noise std of the image on the [0, 1] scale, a number in "
                          f"(0, {MAX_NOISE_STD:g}] (noise_std); got {noise_std!r}.")


# -- the one entry point

def restore(model, x: torch.Tensor, mask: torch.Tensor | str | None = None, task: str = "inpaint", *,
            noise_std: float | None = None, labels: torch.Tensor | None = None,
            generator: torch.Generator | None = None, progress: bool = False, **options) -> torch.Tensor:
    """Restore images with whatever the model offers (module docstring): (N, C, H, W) in [0, 1].

    x: inpaint: images (N, C, H, W) in [0, 1]; denoise: noisy images, clean + noise_std * N(0, I) (may leave
    [0, 1]); superres: low-resolution images (N, C, H/2, W/2). ``mask`` (inpaint only): bool, True = known,
    (N or 1, 1 or C, H, W), or a preset name (drawn from ``generator``). ``labels`` (N,) for class-conditional
    models (a diffusion model with a null class uses it when none are given). ``generator`` seeds every draw:
    same seed, same output. ``options`` are the method's (OPTIONS), checked.
    """
    kind = capability(model)
    name = type(model).__name__
    if task not in TASKS:
        raise GenzooError(f"unknown task {task!r}; tasks: {', '.join(TASKS)}.")
    if kind is None:
        raise GenzooError(f"{name} cannot restore images: it declares no completion of given pixels (diffusion or "
                          "autoregressive) and no latent space.")
    if (kind, task) not in METHODS:
        raise GenzooError(f"{name} cannot {task}; with {kind} capabilities it can "
                          f"{', '.join(capabilities(model))}.")
    c, size = model.config.channels, model.config.image_size
    want = (c, size // 2, size // 2) if task == "superres" else (c, size, size)
    if task == "superres" and size % 2:
        raise GenzooError(f"superres doubles the size: this model's {size}x{size} images are not even.")
    if not torch.is_tensor(x) or x.dim() != 4 or tuple(x.shape[1:]) != want or not 1 <= len(x) <= 100_000:
        raise GenzooError(f"{task} takes images (N, {', '.join(map(str, want))}) with 1 <= N <= 100000; got "
                          f"{tuple(x.shape) if torch.is_tensor(x) else type(x).__name__}.")
    x = x.to(model.device).float()
    if not torch.isfinite(x).all() or (task != "denoise" and (x.min() < 0 or x.max() > 1)):
        raise GenzooError("images must be finite floats in [0, 1] (a noisy image for denoise may leave it).")
    if task == "denoise":
        _check_noise_std(noise_std)
        if x.abs().max() > 1 + 10 * noise_std:
            raise GenzooError(f"these images are not [0, 1] images plus noise of std {noise_std:g}.")
    elif noise_std is not None:
        raise GenzooError(f"noise_std is the denoise task's; {task} takes none.")
    if task == "inpaint":
        known = _known_mask(mask, len(x), c, size, generator).to(model.device)
    elif mask is not None:
        raise GenzooError(f"a mask says which pixels an inpainting knows; {task} takes none.")
    timesteps = len(model.alphas_cumprod) if kind == "diffusion" else None
    opts = _check_options(kind, task, options, timesteps)
    labels = _labels(model, labels, len(x))
    with torch.no_grad():
        if kind == "diffusion":
            out = _diffusion(model, x, known if task == "inpaint" else None, task, noise_std, labels, generator,
                             progress, **opts)
        elif kind == "autoregressive":
            out = complete_importance(model, x, known, labels, generator, opts["particles"])
        else:
            out = _latent(model, x, known if task == "inpaint" else None, task, noise_std, labels, generator,
                          progress, **opts)
    out = out.float().clamp(0, 1)
    if task == "inpaint":             # exactly the given pixels, whatever a method did to them
        out = torch.where(known.expand_as(x), x, out)
    return out


def _known_mask(mask, n: int, c: int, size: int, generator) -> torch.Tensor:
    if mask is None:
        raise GenzooError("inpaint needs a mask (white = known) or a preset: " + ", ".join(PRESETS) + ".")
    if isinstance(mask, str):
        return mask_preset(mask, n, size, generator)
    mask = torch.as_tensor(mask)
    if mask.dim() != 4 or mask.shape[0] not in (1, n) or mask.shape[1] not in (1, c) \
            or tuple(mask.shape[2:]) != (size, size):
        raise GenzooError(f"the mask must be (N or 1, 1 or {c}, {size}, {size}) to match the images; got "
                          f"{tuple(mask.shape)}.")
    return mask.bool().expand(n, c, size, size)


# -- diffusion

def _ancestral_step(x, eps, a: float, a_prev: float, generator, project=None):
    # x_t -> x_s (abar a -> a_prev) by q(x_s | x_t, x0_hat) (Ho et al. eqs. 6-7 with the respaced beta = 1 - a / a_prev,
    # the DDIM eta = 1 step); x0_hat clipped to [-1, 1] as the library's samplers do, then projected where asked
    x0 = ((x - math.sqrt(1 - a) * eps) / math.sqrt(a)).clamp(-1, 1)
    if project is not None:
        x0 = project(x0)
    if a_prev >= 1.0:
        return x0
    beta = 1 - a / a_prev
    mean = (math.sqrt(a_prev) * beta / (1 - a)) * x0 + (math.sqrt(1 - beta) * (1 - a_prev) / (1 - a)) * x
    std = math.sqrt(beta * (1 - a_prev) / (1 - a))
    return mean + std * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def repaint_schedule(steps: int, resample: int, jump: int) -> list[int]:
    """The levels RePaint visits (Lugmayr et al. 2022, their get_schedule_jump): from steps - 1 down to -1 (x_0),
    and at levels 0, jump, 2 jump, ... below steps - jump, back up ``jump`` levels, resample - 1 times each."""
    jumps = {k: resample - 1 for k in range(0, steps - jump, jump)}
    k, path = steps, []
    while k >= 1:
        k -= 1
        path.append(k)
        if jumps.get(k, 0) > 0:
            jumps[k] -= 1
            for _ in range(jump):
                k += 1
                path.append(k)
    return path + [-1]


def _diffusion(model, y, known, task, noise_std, labels, generator, progress, steps, resample=1, jump=1):
    from ..models.diffusion import ddim_timesteps
    ab = model.alphas_cumprod.tolist()
    T = len(ab)

    shape = (len(y), y.shape[1], 2 * y.shape[2], 2 * y.shape[3]) if task == "superres" else y.shape

    def randn():
        return torch.randn(shape, generator=generator, device=y.device)

    def eps_at(x, t):
        return model.predict_eps(x, torch.full((len(x),), t, device=x.device, dtype=torch.long), labels).float()

    y = y * 2 - 1                                                        # the model's [-1, 1] scale
    if task == "inpaint":
        asc = ddim_timesteps(T, steps)[::-1]                             # level k -> step asc[k]; level -1 is x_0
        abar = (lambda k: 1.0 if k < 0 else ab[asc[k]])
        path = repaint_schedule(steps, resample, jump)
        x = randn()
        for k, k_next in tqdm(list(zip(path[:-1], path[1:])), desc="repaint", disable=not progress, leave=False):
            if k_next < k:   # a reverse step, the known region first replaced by a draw of q(x_t | x_0)
                a = abar(k)
                x = torch.where(known, math.sqrt(a) * y + math.sqrt(1 - a) * randn(), x)
                x = _ancestral_step(x, eps_at(x, asc[k]), a, abar(k_next), generator)
            else:            # back up one level: q(x_{k+1} | x_k) = N(sqrt(r) x_k, (1 - r) I), r = abar' / abar
                r = abar(k_next) / abar(k)
                x = math.sqrt(r) * x + math.sqrt(1 - r) * randn()
        return (x + 1) / 2
    if task == "denoise":
        s2 = (2 * noise_std) ** 2                                        # noise variance on the [-1, 1] scale
        t_star = next((t for t in range(T) if (1 - ab[t]) / ab[t] >= s2), T - 1)
        a = ab[t_star]
        # sqrt(a) y has noise variance a s2 <= 1 - a: top it up to exactly q(x_t* | x_0)
        x = math.sqrt(a) * y + math.sqrt(max(1 - a - a * s2, 0.0)) * randn()
        ts, project = ddim_timesteps(t_star + 1, min(steps, t_star + 1)), None
    else:
        x, ts = randn(), ddim_timesteps(T, steps)
        project = (lambda x0: x0 + up2(y - pool2(x0)))                  # pool2 of the result is y exactly
    for j, t in enumerate(tqdm(ts, desc=task, disable=not progress, leave=False)):
        x = _ancestral_step(x, eps_at(x, t), ab[t], ab[ts[j + 1]] if j + 1 < len(ts) else 1.0, generator, project)
    return (x + 1) / 2


# -- autoregressive

def known_first(known: torch.Tensor) -> bool:
    """Whether in every image all known values precede all unknown ones in raster order (R -> G -> B within a
    pixel), so that raster completion is exact. known (B, C, H, W) bool."""
    order = known.permute(0, 2, 3, 1).flatten(1).int()                  # (B, H W C), raster order
    return bool((order[:, 1:] <= order[:, :-1]).all())


@torch.no_grad()
def complete_importance(model, x: torch.Tensor, known: torch.Tensor, labels=None,
                        generator: torch.Generator | None = None, particles: int = 8) -> torch.Tensor:
    """Autoregressive inpainting: ``model.complete`` when the known values come first in raster order (an exact draw
    from p(unknown | known)); otherwise sampling-importance-resampling over ``particles`` completions per image,
    weighted by prod over the known values of p(x_i | x_<i) = p(x) / q(unknown) (module docstring)."""
    if model.capabilities.completion != "autoregressive":
        raise GenzooError(f"{type(model).__name__} has no autoregressive completion (complete, value_log_probs).")
    known = known.expand_as(x)
    if known_first(known) or particles == 1:
        return model.complete(x, known, labels, generator)
    b = len(x)
    rep = (lambda t: None if t is None else t.repeat(particles, *[1] * (t.dim() - 1)))     # particle-major
    draws = model.complete(rep(x), rep(known), rep(labels), generator)                      # (P B, C, H, W)
    log_w = (model.value_log_probs(draws, rep(labels)).double() * rep(known)).flatten(1).sum(1).view(particles, b)
    pick = torch.multinomial(log_w.T.softmax(1).float(), 1, generator=generator)[:, 0]     # (B,)
    return draws.view(particles, b, *x.shape[1:])[pick, torch.arange(b, device=x.device)]


# -- latent models

def fit_latents(model, target: torch.Tensor, weight: torch.Tensor | None = None, *, labels=None, operator=None,
                fit_std: float = 0.1, restarts: int = 4, iters: int = 200, lr: float = 0.05,
                generator: torch.Generator | None = None, start: torch.Tensor | None = None,
                progress: bool = False) -> tuple[torch.Tensor, dict]:
    """MAP latents of images seen through a degradation: per image the z that minimises
        sum(weight * (operator(decode(z)) - target)^2) / (2 fit_std^2) + ||z||^2 / 2,
    by Adam (``iters`` steps at ``lr``) from ``restarts`` starts: ``start`` (N, ...) first when given (an encoder's
    guess, scaled back to the prior's typical radius sqrt(D) where it lies beyond it: a flow's exact latent of a
    degraded image sits far out in the tails, where its inverse is unstable; an image whose guess still decodes to a
    non-finite objective starts from a prior draw instead), then prior draws from ``generator``. Per image the
    iterate with the lowest finite objective of every start and step is returned, so a fit that diverges (a flow's
    inverse overflows far from its typical set) keeps its best point before the divergence; an image whose gradient
    is non-finite takes no Adam step but moves halfway towards the prior's mode 0, where the decoder is stable, until
    its gradient is finite again.

    target (N, C, h, w); weight broadcastable to it (1 = fit, 0 = ignore; default all 1); operator maps decoded
    images (N, C, H, W) in [0, 1] to the target's shape (default the identity). Returns (z (N, ...), info) with
    per-image "error" (the weighted mean squared error of the fit) and "start_error" (that of the winning start
    before any step), and "objective" (N,)."""
    n = len(target)
    op = operator or (lambda v: v)
    weight = torch.ones_like(target) if weight is None else weight.to(target).expand_as(target)
    count = weight.flatten(1).sum(1).clamp_min(1)

    def terms(z):   # (weighted mean squared error, objective), each (N,)
        err = ((op(model.decode(z, labels)) - target).square() * weight).flatten(1).sum(1)
        return err / count, err / (2 * fit_std ** 2) + z.flatten(1).square().sum(1) / 2

    frozen = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)

    def keep(best, new):   # per image, the lower objective (a non-finite one never wins)
        if best is None:
            return new
        better = new["objective"] < best["objective"]
        return {k: torch.where(better.view(-1, *[1] * (v.dim() - 1)), v, best[k]) for k, v in new.items()}

    best, bar = None, tqdm(total=restarts * iters, desc="latent fit", disable=not progress, leave=False)
    try:   # one start at a time: a flow's backward pass holds every layer's activations of the whole batch
        for r in range(restarts):
            z = (start if r == 0 and start is not None else model.prior_latents(n, generator=generator))
            z = z.detach().clone().to(target.device)
            with torch.no_grad():
                if r == 0 and start is not None:       # onto the typical set of N(0, I) where it lies outside
                    norm = z.flatten(1).norm(dim=1).clamp_min(1e-12)
                    z *= (math.sqrt(z[0].numel()) / norm).clamp(max=1).view(-1, *[1] * (z.dim() - 1))
                start_err, start_obj = terms(z)
                bad = ~start_obj.isfinite()
                if r == 0 and start is not None and bad.any():
                    z[bad] = model.prior_latents(n, generator=generator).to(z)[bad]
                    start_err, _ = terms(z)
            z.requires_grad_(True)
            opt = torch.optim.Adam([z], lr=lr)
            with torch.enable_grad():
                for i in range(iters + 1):
                    opt.zero_grad(set_to_none=True)
                    err, obj = terms(z)
                    best = keep(best, {"z": z.detach().clone(), "error": err.detach(), "start_error": start_err,
                                       "objective": obj.detach().nan_to_num(math.inf)})
                    if i == iters:             # the last iterate is scored, not stepped
                        break
                    obj.sum().backward()       # a sum: each image's gradient is its own
                    finite = z.grad.flatten(1).isfinite().all(1).view(-1, *[1] * (z.dim() - 1))
                    z.grad = torch.where(finite, z.grad, torch.zeros_like(z.grad))
                    opt.step()
                    with torch.no_grad():      # an image whose decoder overflowed moves halfway to the prior's mode
                        z.mul_(torch.where(finite, 1.0, 0.5))
                    bar.update()
    finally:
        bar.close()
        for p, req in zip(model.parameters(), frozen):
            p.requires_grad_(req)
    return best.pop("z"), best


def _latent(model, y, known, task, noise_std, labels, generator, progress, restarts, iters, lr, fit_std=None):
    if task == "inpaint":
        weight, operator = known.to(y.dtype), None
        # the encoder's first guess: the unknown pixels set to the mean of the known ones
        mean_known = (y * known).flatten(1).sum(1) / known.flatten(1).sum(1).clamp_min(1)      # (N,)
        guess = torch.where(known, y, mean_known.view(-1, 1, 1, 1))
    elif task == "denoise":
        weight, operator, fit_std, guess = None, None, noise_std, y.clamp(0, 1)
    else:
        weight, operator, guess = None, pool2, up2(y)
    start = model.encode_latents(guess, labels) if model.capabilities.encode else None
    z, _ = fit_latents(model, y, weight, labels=labels, operator=operator, fit_std=fit_std, restarts=restarts,
                       iters=iters, lr=lr, generator=generator, start=start, progress=progress)
    out = model.decode(z, labels).float()
    if task == "superres":
        out = out + up2(y - pool2(out))                                      # consistent with the input exactly
    return out


# -- scoring

SSIM_WINDOW = 7                 # a uniform 7 x 7 window (scikit-image's default), K1 = 0.01, K2 = 0.03, range 1


def psnr(x: torch.Tensor, y: torch.Tensor, region: torch.Tensor | None = None) -> torch.Tensor:
    """PSNR in dB of images x against y (N, C, H, W) in [0, 1] over ``region`` (bool, broadcastable; default all
    pixels): 10 log10(1 / MSE), the MSE over the region's values of all channels, floored at 1e-10 (100 dB).
    (N,) float64."""
    d = (x.double() - y.double()).square()
    r = torch.ones_like(d, dtype=torch.bool) if region is None else region.expand_as(d)
    mse = (d * r).flatten(1).sum(1) / r.flatten(1).sum(1).clamp_min(1)
    return -10 * torch.log10(mse.clamp_min(1e-10))


def ssim_map(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The SSIM map of Wang et al. 2004 (eq. 13) with a uniform 7 x 7 window, K1 = 0.01, K2 = 0.03, data range 1,
    at every pixel whose window lies inside the image: (N, C, H - 6, W - 6) float64, entry [i, j] for the window
    centred on pixel (i + 3, j + 3). Means and (biased) variances over each window."""
    x, y = x.double(), y.double()
    c = x.shape[1]
    w = torch.full((c, 1, SSIM_WINDOW, SSIM_WINDOW), 1 / SSIM_WINDOW ** 2, dtype=torch.float64, device=x.device)
    mean = (lambda v: F.conv2d(v, w, groups=c))
    mx, my = mean(x), mean(y)
    vx, vy, cxy = mean(x * x) - mx * mx, mean(y * y) - my * my, mean(x * y) - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    return (2 * mx * my + c1) * (2 * cxy + c2) / ((mx * mx + my * my + c1) * (vx + vy + c2))


def ssim(x: torch.Tensor, y: torch.Tensor, region: torch.Tensor | None = None) -> torch.Tensor:
    """Mean SSIM (ssim_map) per image over the window centres inside ``region`` (bool (N or 1, 1, H, W); default
    every centre), channels averaged: (N,) float64; NaN for an image whose region holds no window centre."""
    m = ssim_map(x, y).mean(1)                                               # (N, H - 6, W - 6)
    h = SSIM_WINDOW // 2
    if region is None:
        return m.flatten(1).mean(1)
    r = region.expand(len(x), 1, *x.shape[2:])[:, 0, h:-h, h:-h].to(m)       # the centres, (N, H - 6, W - 6)
    return (m * r).flatten(1).sum(1) / r.flatten(1).sum(1)


def observed_view(y: torch.Tensor, task: str, known: torch.Tensor | None = None) -> torch.Tensor:
    """How a degraded input looks at full size, for figures: unknown pixels grey, noise clipped, low-res upsampled."""
    if task == "inpaint":
        return torch.where(known.expand_as(y), y, torch.full_like(y, 0.5))
    return y.clamp(0, 1) if task == "denoise" else up2(y)


@torch.no_grad()
def evaluate(model, images: torch.Tensor, labels: torch.Tensor | None = None, *, task: str = "inpaint",
             preset: str | None = None, noise_std: float = 0.2, seed: int = 0, batch_size: int = 100,
             dataset: str | None = None, progress: bool = True, options: dict | None = None) -> dict:
    """Restore clean test images after a fixed degradation and score the result against them.

    The degradation (the ``preset`` mask for inpaint, the noise for denoise) is drawn from a generator seeded with
    ``seed``, so every model gets the same inputs; the restoration from another seeded with ``seed``. Returns
    {"psnr", "ssim"} (means over images, on the unknown pixels for inpaint and all pixels otherwise), "fid" of the
    restored images against the real test split in ``dataset``'s frozen-classifier features (when given), and the
    tensors "restored", "observed" (as observed_view shows it), "region"."""
    n, c, size = len(images), model.config.channels, model.config.image_size
    if not 1 <= n <= 100_000 or not 1 <= batch_size <= 10_000:
        raise GenzooError(f"evaluate takes 1 to 100000 images in batches of 1 to 10000; got {n}, {batch_size}.")
    g_obs = torch.Generator().manual_seed(seed)
    g = torch.Generator(device=model.device).manual_seed(seed)
    if task == "inpaint":
        known = mask_preset(preset, n, size, g_obs).expand(n, c, size, size)
    else:
        if preset is not None:
            raise GenzooError(f"mask presets are for inpaint, not {task}.")
        known = torch.zeros(n, c, size, size, dtype=torch.bool)
    x = images.float()
    y = degrade(x, task, noise_std=noise_std if task == "denoise" else None, generator=g_obs)
    out = []
    for i in tqdm(range(0, n, batch_size), desc=f"{task} {preset or ''}".strip(), disable=not progress):
        sl = slice(i, i + batch_size)
        lab = labels[sl] if labels is not None else None
        out.append(restore(model, y[sl], known[sl] if task == "inpaint" else None, task,
                           noise_std=noise_std if task == "denoise" else None, labels=lab, generator=g,
                           progress=progress, **(options or {})).cpu())
    restored, region = torch.cat(out), ~known[:, :1]
    result = {"psnr": float(psnr(restored, x, region).mean()), "ssim": float(ssim(restored, x, region).nanmean()),
              "restored": restored, "observed": observed_view(y, task, known), "region": region}
    if dataset is not None:
        from .. import metrics
        result["fid"] = metrics.fid(restored, dataset=dataset)
    return result
