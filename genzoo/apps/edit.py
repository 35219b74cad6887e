"""Editing in a model's latent space: interpolation between two images or two seeds, and class-attribute edits.

A model declares a latent space (``capabilities.latents``) when it has
  prior_latents(n, generator=None) -> z        draws from its prior (Gaussian parts are what slerp expects)
  decode(z, labels=None) -> images in [0, 1]   the image of a latent, differentiable in z (latent fitting)
and an encoder (``capabilities.encode``), to start from images rather than seeds, when it has
  encode_latents(x, labels=None) -> z          a deterministic latent of each image (a VAE's posterior mean).
Applications read that declaration; they never look at the model's class or its methods.

Class edits (``class_edit``) turn an image of class A into one of class B that keeps the rest of it ("same style,
other digit"): a class-conditional model encodes with label A and decodes with label B (its latent holds what the
label does not, Sohn et al. 2015); a model whose latent ignores labels moves the image's latent along the attribute
vector mean(z | B) - mean(z | A) of encoded labelled images (White 2016, "Sampling Generative Networks").
"""
from __future__ import annotations

import torch

from ..errors import GenzooError
from ..models.base import require


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


@torch.no_grad()
def interpolate(model, steps: int = 8, *, images: torch.Tensor | None = None, seeds: tuple[int, int] | None = None,
                labels: torch.Tensor | None = None, method: str = "slerp") -> torch.Tensor:
    """Images along a path in latent space between two endpoints, (steps, C, H, W) in [0, 1].

    The endpoints are the latents of two ``images`` (2, C, H, W) in [0, 1] (needs ``encode_latents``) or prior
    draws from two ``seeds``. ``method`` is "slerp" (for Gaussian latents) or "lerp". ``labels`` (2,) or (1,)
    give the classes of a conditional model: the path keeps the first one.
    """
    require(model, "latents", "interpolation")
    caps = model.capabilities
    if (images is None) == (seeds is None):
        raise GenzooError("interpolate takes two images or two seeds, not both and not neither.")
    if method not in ("slerp", "lerp"):
        raise GenzooError(f"method must be slerp or lerp, got {method!r}.")
    if not 2 <= steps <= 256:
        raise GenzooError(f"steps must be between 2 and 256, got {steps}.")
    if caps.conditional:
        if labels is None:
            raise GenzooError("this model is class-conditional: give the class of the path (labels).")
        labels = labels.to(model.device).long().view(-1)[:1]
    else:
        labels = None
    if images is not None:
        if not caps.encode:
            raise GenzooError(f"{type(model).__name__} cannot map images to latents (it declares no encoder); "
                              "interpolate between two seeds instead.")
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


def _require_encoder(model) -> None:
    caps = model.capabilities
    if not (caps.latents and caps.encode):
        raise GenzooError(f"{type(model).__name__} cannot edit an image's class: it has no encoder to map the image "
                          "to a latent (encode_latents); a VAE or a flow has one.")


@torch.no_grad()
def attribute_vector(model, images: torch.Tensor, labels: torch.Tensor, from_label: int, to_label: int,
                     batch_size: int = 500) -> torch.Tensor:
    """mean(z | to_label) - mean(z | from_label) over the latents encode_latents gives labelled images (N, C, H, W)
    in [0, 1] with labels (N,): the direction that turns class A into class B, (1, *latent shape)."""
    labels = torch.as_tensor(labels).long().view(-1)
    if len(images) != len(labels):
        raise GenzooError(f"{len(images)} images but {len(labels)} labels.")
    means = []
    for c in (from_label, to_label):
        idx = (labels == c).nonzero()[:, 0]
        if len(idx) == 0:
            raise GenzooError(f"no image of class {c} to compute the attribute vector from.")
        z = torch.cat([model.encode_latents(images[idx[i:i + batch_size]].to(model.device).float()).double()
                       for i in range(0, len(idx), batch_size)])
        means.append(z.mean(0, keepdim=True))
    return (means[1] - means[0]).float()


@torch.no_grad()
def class_edit(model, x: torch.Tensor, from_label: int, to_label: int, *, images: torch.Tensor | None = None,
               labels: torch.Tensor | None = None, strength: float = 1.0) -> torch.Tensor:
    """Images x (N, C, H, W) in [0, 1] of class ``from_label`` redrawn as class ``to_label``, (N, C, H, W) in [0, 1].

    A class-conditional model with an encoder: decode(encode_latents(x, from_label), to_label). A model whose
    latent does not take labels: decode(encode_latents(x) + strength * attribute_vector(images, labels, ...)),
    which needs labelled reference ``images`` and ``labels`` holding both classes (e.g. the test split)."""
    _require_encoder(model)
    conditional = model.capabilities.conditional
    if not conditional and (images is None or labels is None):
        raise GenzooError(f"{type(model).__name__} is unconditional: its class edit adds an attribute vector, which "
                          "needs labelled reference images (images=, labels=).")
    num_classes = model.config.num_classes if conditional else int(torch.as_tensor(labels).max()) + 1
    for name, v in (("from", from_label), ("to", to_label)):
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < num_classes:
            raise GenzooError(f"the {name} label must be an integer in [0, {num_classes - 1}], got {v!r}.")
    c, size = model.config.channels, model.config.image_size
    if x.dim() != 4 or tuple(x.shape[1:]) != (c, size, size) or not 1 <= len(x) <= 10_000:
        raise GenzooError(f"class_edit takes 1 to 10000 images (N, {c}, {size}, {size}); got {tuple(x.shape)}.")
    x = x.to(model.device).float()
    if conditional:
        n = len(x)
        z = model.encode_latents(x, torch.full((n,), from_label, dtype=torch.long, device=model.device))
        return model.decode(z, torch.full((n,), to_label, dtype=torch.long, device=model.device)).float().clamp(0, 1)
    z = model.encode_latents(x)
    v = attribute_vector(model, images, labels, from_label, to_label)
    return model.decode(z + strength * v.to(z), None).float().clamp(0, 1)
