"""Editing in a model's latent space: interpolation between two images or two seeds.

A model offers the latent capability when it has
  prior_latents(n, generator=None) -> z        draws from its prior (Gaussian parts are what slerp expects)
  decode(z, labels=None) -> images in [0, 1]   the image of a latent
and, to start from images rather than seeds,
  encode_latents(x, labels=None) -> z          a deterministic latent of each image (a VAE's posterior mean).
Applications ask for these methods; they never look at the model's class.
"""
from __future__ import annotations

import torch

from ..errors import GenzooError


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation of each row of a and b (N, D) at fractions t (T,) -> (T, N, D).

    Follows the great circle between the two directions while the norm moves linearly, so every point
    keeps the norm typical of a high-dimensional Gaussian draw (a linear mix shrinks it towards 0)."""
    a, b = a.flatten(1).double(), b.flatten(1).double()
    na, nb = a.norm(dim=1, keepdim=True), b.norm(dim=1, keepdim=True)
    ua, ub = a / na.clamp_min(1e-12), b / nb.clamp_min(1e-12)
    omega = torch.arccos((ua * ub).sum(1, keepdim=True).clamp(-1, 1))       # (N, 1) angle between them
    t = t.double().view(-1, 1, 1)
    so = torch.sin(omega)
    # sin-weights, with the linear limit where the directions (nearly) coincide
    wa = torch.where(so > 1e-6, torch.sin((1 - t) * omega) / so, 1 - t)
    wb = torch.where(so > 1e-6, torch.sin(t * omega) / so, t)
    direction = wa * ua + wb * ub
    direction = direction / direction.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return direction * ((1 - t) * na + t * nb)


def has_latents(model) -> bool:
    return all(callable(getattr(model, m, None)) for m in ("prior_latents", "decode"))


@torch.no_grad()
def interpolate(model, steps: int = 8, *, images: torch.Tensor | None = None, seeds: tuple[int, int] | None = None,
                labels: torch.Tensor | None = None, method: str = "slerp") -> torch.Tensor:
    """Images along a path in latent space between two endpoints, (steps, C, H, W) in [0, 1].

    The endpoints are the latents of two ``images`` (2, C, H, W) in [0, 1] (needs ``encode_latents``) or prior
    draws from two ``seeds``. ``method`` is "slerp" (for Gaussian latents) or "lerp". ``labels`` (2,) or (1,)
    give the classes of a conditional model: the path keeps the first one.
    """
    if not has_latents(model):
        raise GenzooError(f"{type(model).__name__} has no latent space to interpolate in "
                          "(it needs prior_latents and decode).")
    if (images is None) == (seeds is None):
        raise GenzooError("interpolate takes two images or two seeds, not both and not neither.")
    if method not in ("slerp", "lerp"):
        raise GenzooError(f"method must be slerp or lerp, got {method!r}.")
    if not 2 <= steps <= 256:
        raise GenzooError(f"steps must be between 2 and 256, got {steps}.")
    if getattr(model, "conditional", False):
        if labels is None:
            raise GenzooError("this model is class-conditional: give the class of the path (labels).")
        labels = labels.to(model.device).long().view(-1)[:1]
    else:
        labels = None
    if images is not None:
        if not callable(getattr(model, "encode_latents", None)):
            raise GenzooError(f"{type(model).__name__} cannot map images to latents; interpolate between two "
                              "seeds instead.")
        if images.shape[0] != 2:
            raise GenzooError(f"interpolate takes exactly two images, got {images.shape[0]}.")
        lab = labels.expand(2) if labels is not None else None
        z = model.encode_latents(images.to(model.device), lab)
    else:
        z = torch.cat([model.prior_latents(1, generator=torch.Generator(device=model.device).manual_seed(int(s)))
                       for s in seeds])
    t = torch.linspace(0, 1, steps)
    if method == "slerp":
        path = slerp(z[:1], z[1:], t)[:, 0]
    else:
        a, b = z[:1].flatten(1).double(), z[1:].flatten(1).double()
        path = (1 - t.double().view(-1, 1)) * a + t.double().view(-1, 1) * b
    path = path.to(z.dtype).view(steps, *z.shape[1:])
    lab = labels.expand(steps) if labels is not None else None
    return model.decode(path.to(model.device), lab).float().clamp(0, 1)
