"""The normalizing-flow family as presets of one model: the registry's realnvp and glow differ only in
the options below. Both are multi-scale flows f: x -> (eps_1, ..., eps_L), eps ~ N(0, I), trained on
the exact log-likelihood by the change of variables (Dinh et al. 2017, eq. 3):
    log p(x) = sum_i log N(eps_i; 0, I) + sum_layers log|det d h_l / d h_{l-1}|.

Layers (each returns its log-determinant; tests/test_flow.py checks every one against float64 autograd):
- preprocessing of x in [0, 1]: "logit" (Real NVP, sec. 4.1) y = logit(a + (1 - 2a) x), a = 0.05,
  log|det| = sum log((1 - 2a) / (p (1 - p))), p = a + (1 - 2a) x; "shift" (Glow) y = x - 1/2, log|det| = 0.
- squeeze (Dinh et al. 2017, sec. 3.6): (C, H, W) -> (4C, H/2, W/2), each 2x2 block into channels.
- actnorm (Kingma & Dhariwal 2018, Table 1): y = (x + b) * exp(log_s) per channel, log|det| = H W sum log_s;
  b, log_s set from the first training batch so that y has zero mean and unit variance per channel.
- invertible 1x1 convolution (Glow, Table 1 and eq. 10): y = W x per pixel, log|det| = H W log|det W|;
  "conv" learns W itself, "conv_lu" learns W = P L (U + diag(sign(s) exp(log_s))), log|det| = H W sum log_s.
- affine coupling (Dinh et al. 2017, eqs. 7-9): with a binary mask b (a checkerboard over pixels or one
  half of the channels) y = b x + (1 - b) (x exp(log_s(b x)) + t(b x)), log|det| = sum (1 - b) log_s, where
  log_s is bounded: log sigmoid(h + 2) (Glow's code) or scale * tanh(h) (Real NVP's code).
- multi-scale factor-out (Dinh et al. 2017, sec. 3.6): half of the channels leave as z_i after each level;
  eps_i = (z_i - mu_i) / sigma_i with (mu_i, log sigma_i) zero (Real NVP) or a zero-initialised conv of the
  kept half (Glow's learned split prior); log|det| = -sum log sigma_i. A class-conditional model
  (conditional=True) adds a learned per-class (mu, log sigma) for every element of every z_i, so that
  log p(x|y) is exact too (a generative Bayes classifier).

Architecture. Glow (Kingma & Dhariwal 2018, Fig. 2): n_levels times [squeeze, steps_per_level x
(actnorm, 1x1 conv, coupling of the second channel half on the first), split], no split after the last.
Real NVP (Dinh et al. 2017, sec. 4.1): n_levels times [steps_per_level alternating checkerboard couplings,
squeeze, steps_per_level alternating channel couplings, split], then steps_per_level + 1 checkerboard
couplings; the paper has 3 per group and 4 at the end (steps_per_level = 3).
Where this Real NVP differs from the paper: an actnorm before every coupling stands in for its batch
normalisation of the coupling outputs (at test time both are a per-channel affine map; actnorm needs no batch
statistics), the s/t networks are plain residual conv nets without batch or weight normalisation, and the
logit is the symmetric logit(a + (1 - 2a) x) instead of the paper's logit(a + (1 - a) x). Where this Glow
differs: no actnorm inside the coupling network, no exp(3 logs) rescaling of its zero-initialised last
conv, y = x exp(log_s) + t rather than (x + t) s, no learned top prior (N(0, I), or the class prior), no
learning-rate warm-up.

Data and units. Training batches hold k/255; the loss dequantizes them, x = (k + u)/256 with u ~ U[0, 1)
(docs/metrics.md), and is the mean bits/dim (nll/D + ln 256)/ln 2. log_prob(x) is a density over x in [0, 1]^D
in nats, the preprocessing Jacobian included, so that genzoo's bits/dim formula applies. The flow's density
lives on the preprocessing's whole domain (R^D for "shift", the box (-a/(1-2a), (1-a)/(1-2a))^D for
"logit"), where it integrates to 1; the mass it leaves outside [0, 1]^D only makes the bits/dim an upper
bound on the code length of the 8-bit data, as in both papers.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..nn import ResBlock
from .base import Capabilities, GenerativeModel, Likelihood, Option

LOG_2PI = math.log(2 * math.pi)
MASKS = ("glow", "realnvp")
PERMUTATIONS = ("conv_lu", "conv", "none")
PREPROCESS = ("shift", "logit")
SCALES = ("sigmoid", "tanh")


@dataclass
class FlowConfig:
    channels: int = 1            # set from the data set
    image_size: int = 28         # set from the data set; divisible by 2 ** n_levels
    num_classes: int = 0         # set from the data set; used when conditional
    n_levels: int = 2            # squeezes (scales); 28 -> 14 -> 7 at the default
    steps_per_level: int = 8     # glow: flow steps per level; realnvp: couplings per mask group
    width: int = 128             # hidden channels of each coupling network
    res_blocks: int = 0          # residual blocks in each coupling network (0: Glow's conv3x3-conv1x1-conv3x3)
    masks: str = "glow"          # one of MASKS: "glow" channel halves; "realnvp" checkerboard + channel masks
    permutation: str = "conv_lu"  # one of PERMUTATIONS before each coupling; "none": masks alternate instead
    actnorm: bool = True         # an actnorm before each coupling (data-dependent init)
    preprocess: str = "shift"    # one of PREPROCESS
    logit_alpha: float = 0.05    # "logit": the squeeze a of [0, 1] into [a, 1 - a] before the logit
    scale: str = "sigmoid"       # one of SCALES: the coupling's bounded log-scale
    split_prior: bool = True     # each factored-out z_i has a prior learned from the kept half (Glow)
    conditional: bool = False    # per-class learned mean / log-std of every z_i: log p(x|y), sample given y

    def __post_init__(self):
        for name, value, options in (("masks", self.masks, MASKS), ("permutation", self.permutation, PERMUTATIONS),
                                     ("preprocess", self.preprocess, PREPROCESS), ("scale", self.scale, SCALES)):
            if value not in options:
                raise ValueError(f"{name} must be one of {', '.join(options)}, got {value!r}")
        if self.n_levels < 1 or self.steps_per_level < 1 or self.width < 1 or self.res_blocks < 0:
            raise ValueError("n_levels, steps_per_level and width must be positive and res_blocks >= 0, got "
                             f"{self.n_levels}, {self.steps_per_level}, {self.width}, {self.res_blocks}")
        if self.image_size % 2 ** self.n_levels:
            raise ValueError(f"image_size must be divisible by 2 ** n_levels = {2 ** self.n_levels} "
                             f"(n_levels squeezes), got {self.image_size}")
        if not 0 < self.logit_alpha < 0.5:
            raise ValueError(f"logit_alpha must be in (0, 0.5), got {self.logit_alpha}")


# -- layers: forward(x) -> (y, log|det| (B,)), inverse(y) -> x; shapes (B, C, H, W)

class Preprocess(nn.Module):
    """[0, 1] pixels to the flow's input: logit(a + (1 - 2a) x) or x - 1/2."""

    def __init__(self, kind: str, alpha: float):
        super().__init__()
        self.kind, self.alpha = kind, alpha

    def forward(self, x):
        if self.kind == "shift":
            return x - 0.5, x.new_zeros(len(x))
        p = self.alpha + (1 - 2 * self.alpha) * x
        y = torch.log(p) - torch.log1p(-p)
        logdet = (math.log(1 - 2 * self.alpha) - torch.log(p) - torch.log1p(-p)).flatten(1).sum(1)
        return y, logdet

    def inverse(self, y):
        if self.kind == "shift":
            return y + 0.5
        return (torch.sigmoid(y) - self.alpha) / (1 - 2 * self.alpha)


class Squeeze(nn.Module):
    """(B, C, H, W) -> (B, 4C, H/2, W/2): channel c*4 + 2i + j holds pixel (2h + i, 2w + j) of channel c."""

    def forward(self, x):
        b, c, h, w = x.shape
        y = x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(b, 4 * c, h // 2, w // 2)
        return y, x.new_zeros(b)

    def inverse(self, y):
        b, c, h, w = y.shape
        return y.view(b, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3).reshape(b, c // 4, 2 * h, 2 * w)


class ActNorm(nn.Module):
    """Per-channel affine y = (x + bias) * exp(log_scale), initialised from the first batch it sees in
    training mode; the ``initialized`` buffer travels with checkpoints and EMA copies."""

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.log_scale = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.register_buffer("initialized", torch.tensor(False))

    @torch.no_grad()
    def _initialize(self, x):
        x = x.float()
        stats = torch.stack([x.mean((0, 2, 3)), x.square().mean((0, 2, 3))])     # (2, C)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(stats)      # every rank starts from the same statistics
            stats /= torch.distributed.get_world_size()
        mean, sq = stats
        std = (sq - mean.square()).clamp_min(0).sqrt().clamp_min(1e-3)       # 1e-3: about the dequantization noise
        self.bias.copy_(-mean.view_as(self.bias))
        self.log_scale.copy_(-std.log().view_as(self.log_scale))
        self.initialized.fill_(True)

    def forward(self, x):
        if self.training and not self.initialized:
            self._initialize(x)
        y = (x + self.bias) * self.log_scale.exp()
        return y, (x.shape[2] * x.shape[3] * self.log_scale.sum()).expand(len(x)).to(x.dtype)

    def inverse(self, y):
        return y * torch.exp(-self.log_scale) - self.bias


class InvConv1x1(nn.Module):
    """y = W x at every pixel; W starts as a random rotation. ``lu``: W = P L (U + diag(sign_s exp(log_s)))."""

    def __init__(self, channels: int, lu: bool):
        super().__init__()
        self.lu = lu
        w = torch.linalg.qr(torch.randn(channels, channels))[0]
        if not lu:
            self.weight = nn.Parameter(w)
            return
        p, lower, upper = torch.linalg.lu(w)
        s = upper.diagonal()
        self.register_buffer("perm", p)
        self.register_buffer("sign_s", s.sign())
        self.lower = nn.Parameter(lower.tril(-1))
        self.upper = nn.Parameter(upper.triu(1))
        self.log_s = nn.Parameter(s.abs().log())

    def weight_and_logdet(self) -> tuple[torch.Tensor, torch.Tensor]:
        """W (C, C) and log|det W|."""
        if not self.lu:
            return self.weight, torch.linalg.slogdet(self.weight)[1]
        eye = torch.eye(len(self.log_s), dtype=self.log_s.dtype, device=self.log_s.device)
        w = self.perm @ (self.lower.tril(-1) + eye) @ (self.upper.triu(1) + torch.diag(self.sign_s * self.log_s.exp()))
        return w, self.log_s.sum()

    def forward(self, x):
        with torch.autocast(x.device.type, enabled=False):   # the flow's main stream stays in full precision
            w, logdet = self.weight_and_logdet()
            y = torch.einsum("ij,bjhw->bihw", w.to(x.dtype), x)
        return y, (x.shape[2] * x.shape[3] * logdet).expand(len(x)).to(x.dtype)

    def inverse(self, y):
        with torch.autocast(y.device.type, enabled=False):
            w = self.weight_and_logdet()[0]
            w_inv = torch.linalg.inv(w.double()).to(y.dtype)
            return torch.einsum("ij,bjhw->bihw", w_inv, y)


def coupling_net(c_in: int, c_out: int, width: int, res_blocks: int) -> nn.Sequential:
    """s/t network: conv3x3 -> [res blocks] -> conv1x1 -> zero-initialised conv3x3, so a new coupling is
    (nearly) the identity. (B, c_in, H, W) -> (B, c_out, H, W)."""
    last = nn.Conv2d(width, c_out, 3, padding=1)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return nn.Sequential(nn.Conv2d(c_in, width, 3, padding=1), *[ResBlock(width) for _ in range(res_blocks)],
                         nn.ReLU(), nn.Conv2d(width, width, 1), nn.ReLU(), last)


class Coupling(nn.Module):
    """Affine coupling with a checkerboard mask (pixels with (i + j) % 2 == parity condition the rest) or a
    channel mask (parity 0: the second half of the channels is transformed given the first; 1: vice versa)."""

    def __init__(self, channels: int, size: int, kind: str, parity: int, width: int, res_blocks: int, scale: str):
        super().__init__()
        self.kind, self.parity, self.scale = kind, parity, scale
        if kind == "checkerboard":
            ij = torch.arange(size)
            mask = ((ij.view(-1, 1) + ij.view(1, -1)) % 2 == parity).float()
            self.register_buffer("mask", mask.view(1, 1, size, size), persistent=False)   # 1 = conditions
            c_in = c_out = channels
        else:
            half = channels // 2
            c_in, c_out = (half, channels - half) if parity == 0 else (channels - half, half)
            self.half = half
        self.net = coupling_net(c_in, 2 * c_out, width, res_blocks)
        if scale == "tanh":
            self.tanh_scale = nn.Parameter(torch.ones(1, c_out, 1, 1))

    def _log_s_t(self, cond, dtype):
        log_s, t = self.net(cond).to(dtype).chunk(2, 1)
        if self.scale == "sigmoid":
            return F.logsigmoid(log_s + 2), t
        return self.tanh_scale * torch.tanh(log_s), t

    def _halves(self, x):
        a, b = x[:, :self.half], x[:, self.half:]
        return (a, b) if self.parity == 0 else (b, a)      # (conditioning, transformed)

    def _join(self, cond, moved):
        return torch.cat([cond, moved] if self.parity == 0 else [moved, cond], 1)

    def forward(self, x):
        if self.kind == "checkerboard":
            m = self.mask.to(x.dtype)
            log_s, t = self._log_s_t(x * m, x.dtype)
            y = m * x + (1 - m) * (x * log_s.exp() + t)
            return y, ((1 - m) * log_s).flatten(1).sum(1)
        cond, moved = self._halves(x)
        log_s, t = self._log_s_t(cond, x.dtype)
        return self._join(cond, moved * log_s.exp() + t), log_s.flatten(1).sum(1)

    def inverse(self, y):
        if self.kind == "checkerboard":
            m = self.mask.to(y.dtype)
            log_s, t = self._log_s_t(y * m, y.dtype)
            return m * y + (1 - m) * ((y - t) * torch.exp(-log_s))
        cond, moved = self._halves(y)
        log_s, t = self._log_s_t(cond, y.dtype)
        return self._join(cond, (moved - t) * torch.exp(-log_s))


class Prior(nn.Module):
    """N(z; mu, sigma^2) elementwise for one factored-out z (c, s, s): (mu, log sigma) are zero, plus a
    zero-initialised conv of the kept half h (c_h > 0), plus a learned per-class table (num_classes > 0)."""

    def __init__(self, c: int, size: int, c_h: int, num_classes: int):
        super().__init__()
        self.net = None
        if c_h > 0:
            self.net = nn.Conv2d(c_h, 2 * c, 3, padding=1)
            nn.init.zeros_(self.net.weight)
            nn.init.zeros_(self.net.bias)
        self.per_class = nn.Parameter(torch.zeros(num_classes, 2 * c, size, size)) if num_classes else None

    def mean_log_std(self, z_shape, h, labels, dtype, device):
        out = torch.zeros((z_shape[0], 2 * z_shape[1], *z_shape[2:]), dtype=dtype, device=device)
        if self.net is not None:
            out = out + self.net(h).to(dtype)
        if self.per_class is not None:
            out = out + self.per_class[labels].to(dtype)
        return out.chunk(2, 1)

    def standardize(self, z, h, labels):
        """eps = (z - mu) / sigma and its log|det| = -sum log sigma, (B,)."""
        mu, log_std = self.mean_log_std(z.shape, h, labels, z.dtype, z.device)
        return (z - mu) * torch.exp(-log_std), -log_std.flatten(1).sum(1)

    def unstandardize(self, eps, h, labels, temperature: float = 1.0):
        mu, log_std = self.mean_log_std(eps.shape, h, labels, eps.dtype, eps.device)
        return mu + temperature * log_std.exp() * eps


class Split(nn.Module):
    """Factor-out: the first ``keep`` channels go on, the rest leave as z with their own Prior."""

    def __init__(self, channels: int, size: int, learned: bool, num_classes: int):
        super().__init__()
        self.keep = channels // 2
        self.prior = Prior(channels - self.keep, size, self.keep if learned else 0, num_classes)


class Flow(GenerativeModel):
    """A multi-scale normalizing flow (Real NVP, Glow) with an exact log-likelihood and temperature sampling."""

    Config = FlowConfig
    train_defaults = {"lr": 1e-3, "batch_size": 64, "steps": 6000}

    def __init__(self, config: FlowConfig):
        super().__init__(config)
        cfg = config
        if cfg.conditional and cfg.num_classes < 2:
            raise ValueError("a conditional flow needs a labelled data set (num_classes >= 2)")
        n_cls = cfg.num_classes if cfg.conditional else 0
        self.preprocess = Preprocess(cfg.preprocess, cfg.logit_alpha)
        layers, c, s = [], cfg.channels, cfg.image_size
        self.noise_shapes = []                   # (C, H, W) of each eps, in the order forward_flow returns them

        def step(kind, parity):
            if cfg.actnorm:
                layers.append(ActNorm(c))
            if cfg.permutation != "none" and c > 1:
                layers.append(InvConv1x1(c, lu=cfg.permutation == "conv_lu"))
            layers.append(Coupling(c, s, kind, parity, cfg.width, cfg.res_blocks, cfg.scale))

        # with a learned permutation Glow always transforms the second half; without one the halves alternate
        alternate = cfg.masks == "realnvp" or cfg.permutation == "none"
        for level in range(cfg.n_levels):
            if cfg.masks == "realnvp":
                for i in range(cfg.steps_per_level):
                    step("checkerboard", i % 2)
            layers.append(Squeeze())
            c, s = 4 * c, s // 2
            for i in range(cfg.steps_per_level):
                step("channel", i % 2 if alternate else 0)
            if level < cfg.n_levels - 1 or cfg.masks == "realnvp":
                split = Split(c, s, cfg.split_prior, n_cls)
                layers.append(split)
                self.noise_shapes.append((c - split.keep, s, s))
                c = split.keep
        if cfg.masks == "realnvp":
            for i in range(cfg.steps_per_level + 1):
                step("checkerboard", i % 2)
        self.flow = nn.ModuleList(layers)
        self.top = Prior(c, s, 0, n_cls)
        self.noise_shapes.append((c, s, s))

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(Likelihood("exact", "exact"), conditional=self.conditional, latents=True, encode=True,
                            sample_options=(Option("temperature", float, 1.0, low=0,
                                                   help="every prior's std times this (Glow, sec. 5): below 1 "
                                                        "trades diversity for cleaner samples"),))

    @property
    def conditional(self) -> bool:
        return self.config.conditional

    def _labels(self, labels, device):
        if not self.config.conditional:
            return None
        if labels is None:
            raise ValueError("this flow is class-conditional: pass labels (B,) in [0, num_classes)")
        return labels.to(device).long()

    # -- the bijection

    def forward_flow(self, x: torch.Tensor, labels: torch.Tensor | None = None):
        """x (B, C, H, W) in [0, 1] -> (list of standard-normal eps_i (B, C_i, H_i, W_i), log|det dEps/dx| (B,))."""
        labels = self._labels(labels, x.device)
        h, logdet = self.preprocess(x)
        eps = []
        for layer in self.flow:
            if isinstance(layer, Split):
                h, z = h[:, :layer.keep], h[:, layer.keep:]
                e, ld = layer.prior.standardize(z, h, labels)
                eps.append(e)
            else:
                h, ld = layer(h)
            logdet = logdet + ld
        e, ld = self.top.standardize(h, None, labels)
        return eps + [e], logdet + ld

    def inverse_flow(self, eps: list[torch.Tensor], labels: torch.Tensor | None = None,
                     temperature: float = 1.0) -> torch.Tensor:
        """The inverse of forward_flow (no clamping): eps_i with each prior's std scaled by ``temperature``."""
        labels = self._labels(labels, eps[0].device)
        eps = list(eps)
        h = self.top.unstandardize(eps.pop(), None, labels, temperature)
        for layer in reversed(self.flow):
            if isinstance(layer, Split):
                h = torch.cat([h, layer.prior.unstandardize(eps.pop(), h, labels, temperature)], 1)
            else:
                h = layer.inverse(h)
        return self.preprocess.inverse(h)

    # -- likelihood and training

    def log_prob(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Exact log-density of x (B, C, H, W) over [0, 1]^D (log p(x|y) when conditional), nats, (B,).
        Score dequantized data, (k + u) / 256; bits/dim = (-log_prob / D + ln 256) / ln 2."""
        eps, logdet = self.forward_flow(x, labels)
        log_n = sum(-0.5 * (e.square() + LOG_2PI).flatten(1).sum(1) for e in eps)
        return log_n + logdet

    def loss(self, batch: dict, phase: str = "model") -> dict:
        x = batch["x"]
        k = (x * 255).round()                                  # 8-bit levels of the k/255 batch
        x = (k + torch.rand_like(k)) / 256                     # uniform dequantization into [0, 1)
        nll = -self.log_prob(x, batch["y"] if self.config.conditional else None)     # (B,) nats
        bpd = (nll / x[0].numel() + math.log(256)) / math.log(2)
        return {"loss": bpd.mean(), "nll": nll.mean().detach()}

    # -- sampling

    @torch.no_grad()
    def sample(self, n: int, labels=None, generator: torch.Generator | None = None,
               temperature: float = 1.0) -> torch.Tensor:
        """n images in [0, 1] from eps ~ N(0, I) with every prior's std times ``temperature`` (Glow, sec. 5:
        below 1 trades diversity for cleaner samples); conditional models cycle through the classes when
        no labels are given."""
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) \
                or not math.isfinite(temperature) or temperature < 0:
            raise ValueError(f"temperature must be a finite number >= 0 (1 samples the model's density, "
                             f"below 1 shrinks the prior's spread), got {temperature!r}")
        if self.config.conditional and labels is None:
            labels = torch.arange(n, device=self.device) % self.config.num_classes
        eps = [torch.randn((n, *shape), generator=generator, device=self.device) for shape in self.noise_shapes]
        x = self.inverse_flow(eps, labels, float(temperature)).float()
        overflowed = int((~torch.isfinite(x.flatten(1))).any(1).sum())
        if overflowed:   # an affine inverse divides by its scale: tail draws through near-zero scales blow up
            warnings.warn(f"{overflowed} of {n} samples overflowed in the inverse flow (non-finite values, drawn as "
                          f"mid-grey); an undertrained flow does this at temperature {temperature:g}: train longer "
                          "or sample at a lower temperature (e.g. 0.7)", RuntimeWarning, stacklevel=2)
        return torch.nan_to_num(x, nan=0.5).clamp(0, 1)

    # -- the latent space (genzoo.apps.edit): every eps_i flattened and concatenated, (B, D), N(0, I) under the model

    def prior_latents(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """eps ~ N(0, I), (n, D)."""
        return torch.randn(n, self.config.channels * self.config.image_size ** 2, generator=generator,
                           device=self.device)

    @torch.no_grad()
    def encode_latents(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The flow's exact latent of each image x (B, C, H, W) in [0, 1]: (B, D)."""
        return torch.cat([e.flatten(1) for e in self.forward_flow(x, labels)[0]], 1).float()

    def decode(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Images in [0, 1] from latents (B, D), the inverse of encode_latents; differentiable in z (latent fitting
        in genzoo.apps.restore backpropagates through it)."""
        sizes = [c * h * w for c, h, w in self.noise_shapes]
        eps = [part.view(-1, *shape) for part, shape in zip(z.split(sizes, 1), self.noise_shapes)]
        return torch.nan_to_num(self.inverse_flow(eps, labels).float(), nan=0.5).clamp(0, 1)
