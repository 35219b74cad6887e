"""The autoregressive family as presets of one model: the registry's pixelcnn, gated-pixelcnn, pixelrnn and
pixel-transformer differ only in ``arch`` and size (networks in genzoo/models/autoregressive_nets.py).

An image is a sequence of D = C H W values in raster order over pixels and R -> G -> B within a pixel
(van den Oord et al. 2016, "Pixel Recurrent Neural Networks", eq. 1-2):
    p(x) = prod_i p(x_i | x_1 .. x_{i-1}),  log p(x) = sum_i log p(x_i | x_<i)      (nats per image)
Each conditional is a Bernoulli (binarized data: MNIST, digits, dynamically binarized in training) or a
256-way softmax over 8-bit levels k (Fashion-MNIST; the PixelRNN paper's discrete output, sec. 5.3).
Training minimises -log p(x) of the batch in one pass of the masked network (teacher forcing).

- log_prob(x): binarized data, the exact log P(x). 8-bit data: x in [0, 1] is read as level
  k = floor(256 x) (k / 255 training images and dequantized (k + u) / 256 test images both give k), and
  log_prob is the density over [0, 1]^D that spreads P(k) uniformly over its bin: log P(k) + D ln 256,
  so bits/dim = (NLL / D + ln 256) / ln 2 (docs/metrics.md) is -log2 P(k) / D.
- sample(n): ancestral sampling, one value at a time in the order above; the networks cache what earlier
  positions computed, so an image costs about C forward passes (a KV cache for the transformer).
- complete(x, known): the same sampler with the known values held fixed (inpainting).
- Class-conditional (``conditional``): a learned class embedding added to every layer's pre-activations,
  the conditioning bias V^T h of van den Oord et al. 2016, "Conditional Image Generation with PixelCNN
  Decoders", eq. 4, with h the one-hot label.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .autoregressive_nets import NETS, PAD
from .base import Capabilities, GenerativeModel, Likelihood

ARCHS = tuple(NETS)


@dataclass
class AutoregressiveConfig:
    channels: int = 1          # set from the data set
    image_size: int = 28       # set from the data set
    num_classes: int = 0       # set from the data set; used when conditional
    binarize: bool = True      # set from the data set: Bernoulli outputs on dynamically binarized images;
                               # false: a 256-way softmax per value on 8-bit images
    arch: str = "pixelcnn"     # one of ARCHS
    width: int = 64            # feature channels (rounded up to a multiple of `channels` for the colour
                               # groups): the residual stream (pixelcnn), each stack (gated), the LSTM state
                               # (rowlstm), the model dimension (transformer)
    res_blocks: int = 8        # residual blocks (pixelcnn), gated layers, Row LSTM layers, transformer blocks
    heads: int = 4             # transformer: attention heads; width must divide by it
    conditional: bool = False  # p(x | y): a class embedding in every layer

    def __post_init__(self):
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {', '.join(ARCHS)}, got {self.arch!r}")
        if self.width < 1 or self.res_blocks < 1:
            raise ValueError(f"width and res_blocks must be at least 1, got {self.width}, {self.res_blocks}")
        if self.arch == "transformer" and self.width % self.heads:
            raise ValueError(f"width ({self.width}) must be divisible by heads ({self.heads})")

    @property
    def likelihood(self) -> str:
        return "bernoulli" if self.binarize else "categorical"


class Autoregressive(GenerativeModel):
    """An autoregressive image model p(x) = prod_i p(x_i | x_<i): PixelCNN, Gated PixelCNN, Row LSTM or transformer."""

    Config = AutoregressiveConfig
    train_defaults = {"lr": 1e-3, "batch_size": 64}

    def __init__(self, config: AutoregressiveConfig):
        super().__init__(config)
        if config.conditional and config.num_classes < 2:
            raise ValueError("a conditional model needs a labelled data set (num_classes >= 2)")
        self.levels = 2 if config.likelihood == "bernoulli" else 256       # values a channel takes
        self.k_out = 1 if config.likelihood == "bernoulli" else 256        # logits per value
        self.net = NETS[config.arch](config, self.k_out)

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(Likelihood("exact", "exact"), conditional=self.conditional, completion="autoregressive")

    @property
    def conditional(self) -> bool:
        return self.config.conditional

    def _labels(self, labels, n: int):
        if not self.config.conditional:
            return None
        if labels is None:
            raise ValueError("this model is class-conditional: pass labels (B,) in [0, num_classes)")
        if len(labels) != n:
            raise ValueError(f"got {len(labels)} labels for {n} images")
        return labels.to(self.device).long()

    # -- likelihood

    def _target(self, x: torch.Tensor) -> torch.Tensor:
        # the value each position predicts: binary x (thresholded at 1/2), or the level k = floor(256 x) in
        # [0, 255]; on training images k / 255 this is round(255 x) = k, on dequantized (k + u) / 256 it is k
        if self.levels == 2:
            return (x > 0.5).to(x.dtype)
        return (x * 256).floor().clamp(0, 255)

    def _input(self, k: torch.Tensor) -> torch.Tensor:
        return k * (2 / (self.levels - 1)) - 1                                # levels -> [-1, 1]

    def logits(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of p(x_i | x_<i) at every position, (B, C, K, H, W), from images x in [0, 1] (read as their
        levels, see log_prob); K = 1 (Bernoulli) or 256. One pass of the masked network."""
        out = self.net(self._input(self._target(x)), self._labels(labels, len(x)))
        return out.unflatten(1, (self.config.channels, self.k_out))

    def _log_p(self, logits: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        # sum_i log p(k_i | k_<i) per image, (B,), nats, at least fp32; logits (B, C, K, H, W), levels k (B, C, H, W)
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
        if self.k_out == 1:
            return -F.binary_cross_entropy_with_logits(logits[:, :, 0], k.to(logits.dtype), reduction="none").flatten(1).sum(1)
        return logits.log_softmax(2).gather(2, k.long().unsqueeze(2)).flatten(1).sum(1)

    def _density_offset(self, x) -> float:
        # P(k) spread uniformly over its bin of width 1/256 in each of the D dimensions: + D ln 256
        return 0.0 if self.levels == 2 else x[0].numel() * math.log(256)

    @torch.no_grad()
    def value_log_probs(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """log p(x_i | x_<i) of every value, (B, C, H, W) nats, x read as its levels as in log_prob (binary:
        x > 1/2); their sum is log_prob less the D ln 256 of 8-bit models. genzoo.apps.restore weights
        completions by the known values' terms."""
        logits = self.logits(x, labels).float()                               # (B, C, K, H, W)
        k = self._target(x)
        if self.k_out == 1:
            return -F.binary_cross_entropy_with_logits(logits[:, :, 0], k.float(), reduction="none")
        return logits.log_softmax(2).gather(2, k.long().unsqueeze(2))[:, :, 0]

    @torch.no_grad()
    def log_prob(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Exact log p(x[|y]) per image in nats, (B,), in one pass.

        Binarized models: x must be binary (the data set binarized once); the log-probability of x.
        8-bit models: x in [0, 1] is read as level k = floor(256 x), and the result is the density over
        [0, 1]^D that spreads P(k) uniformly over its bin, log P(k) + D ln 256 (docs/metrics.md's bits/dim)."""
        if self.levels == 2 and not torch.all((x == 0) | (x == 1)):
            raise ValueError("log_prob of a binarized model needs binary images; binarize the data first")
        return self._log_p(self.logits(x, labels), self._target(x)) + self._density_offset(x)

    # -- training

    def loss(self, batch: dict, phase: str = "model") -> dict:
        x = batch["x"]
        if self.levels == 2:
            x = torch.bernoulli(x)            # dynamic binarization: a fresh draw with p = intensity
        nll = -self._log_p(self.logits(x, batch["y"] if self.config.conditional else None), self._target(x))
        out = {"loss": nll.mean()}            # nats per image
        if self.levels > 2:                   # = bits/dim of the density over [0, 1]^D
            out["bits_per_dim"] = nll.mean().detach() / (x[0].numel() * math.log(2))
        return out

    # -- sampling

    @torch.no_grad()
    def _raster(self, k: torch.Tensor, known: torch.Tensor, labels, generator) -> torch.Tensor:
        # levels k (B, C, H, W) with the entries not ``known`` drawn in raster order, R -> G -> B in a pixel;
        # a random draw is made at every position, known or not, so the stream does not depend on the mask
        b, c, h, w = k.shape
        xp = k.new_zeros(b, c, PAD + h, w + 2 * PAD)                      # the network input, padded
        inp = xp[:, :, PAD:, PAD:PAD + w]                                  # a view: writes land in xp
        inp.copy_(self._input(k))
        cache = self.net.start(xp)
        for i in range(h):
            for j in range(w):
                for ch in range(c):
                    logits = self.net.step(xp, cache, i, j, ch, labels).float().view(b, c, self.k_out)[:, ch]
                    if self.k_out == 1:
                        draw = torch.bernoulli(torch.sigmoid(logits[:, 0]), generator=generator)
                    else:
                        draw = torch.multinomial(logits.softmax(-1), 1, generator=generator)[:, 0].float()
                    value = torch.where(known[:, ch, i, j], k[:, ch, i, j], draw.to(k.dtype))
                    k[:, ch, i, j] = value
                    inp[:, ch, i, j] = self._input(value)
        return k

    def _dtype(self):
        return next(self.parameters()).dtype

    @torch.no_grad()
    def sample(self, n: int, labels: torch.Tensor | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """n images in [0, 1] (binary, or k / 255), drawn one value at a time; conditional models cycle through
        the classes when no labels are given."""
        c, s = self.config.channels, self.config.image_size
        if self.config.conditional and labels is None:
            labels = torch.arange(n, device=self.device) % self.config.num_classes
        k = torch.zeros(n, c, s, s, device=self.device, dtype=self._dtype())
        known = torch.zeros(k.shape, dtype=torch.bool, device=self.device)
        return (self._raster(k, known, self._labels(labels, n), generator) / (self.levels - 1)).float()

    @torch.no_grad()
    def complete(self, x: torch.Tensor, known: torch.Tensor, labels: torch.Tensor | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Fill in the unknown values of images x (B, C, H, W) in [0, 1]; ``known`` is a bool mask (B, C, H, W)
        or (B, 1, H, W). Returns (B, C, H, W) in [0, 1] with every known value exactly as in x.

        The unknown values are drawn in raster order (R -> G -> B within a pixel), each from
        p(x_i | everything before it): the known values and the values already drawn. The model reads
        known values as their levels (binary: x > 1/2; 8-bit: k = floor(256 x)). A known value that
        comes after an unknown one in this order cannot inform it (the model sees only the past): it is
        kept, and conditions only what comes after it. So this is an exact draw from p(unknown | known)
        when the known values precede the unknown ones (e.g. the top rows known), and otherwise a draw
        that ignores the later known values."""
        if x.ndim != 4 or known.ndim != 4 or known.shape[1] not in (1, x.shape[1]):
            raise ValueError(f"complete needs x (B, C, H, W) and known (B, C, H, W) or (B, 1, H, W); "
                             f"got {tuple(x.shape)} and {tuple(known.shape)}")
        x = x.to(self.device)
        known = known.to(self.device, torch.bool).expand_as(x)
        k = self._target(x.to(self._dtype()))
        out = self._raster(k, known, self._labels(labels, len(x)), generator) / (self.levels - 1)
        return torch.where(known, x, out.to(x.dtype))
