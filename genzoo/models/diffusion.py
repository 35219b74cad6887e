"""Denoising diffusion as presets of one model: the registry's ddpm and ddpm-cfg differ only in the options below.

- Forward process (Ho et al. 2020, eqs. 2 and 4): q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I), so
      q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I),   abar_t = prod_{s <= t} (1 - beta_s),
  with the linear schedule beta_t from 1e-4 to 0.02 over T = 1000 steps (sec. 4; for other T scaled by 1000 / T
  as Nichol & Dhariwal 2021 do) or the cosine schedule abar_t = f(t) / f(0), f(t) = cos^2((t/T + s) / (1 + s) pi/2),
  s = 0.008, beta_t clipped at 0.999 (Nichol & Dhariwal 2021, eq. 17).
- Loss: L_simple = E_{t, x_0, eps} ||eps - eps_theta(sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, t)||^2 (Ho et al.,
  eq. 14), t uniform, reported as the mean over pixels. Images live in [-1, 1] as x_0 = 2 k / 255 - 1.
- Reverse process p(x_{t-1} | x_t) = N(mu_theta(x_t, t), sigma_t^2 I) with sigma_t^2 = beta_t and
  mu_theta = (x_t - beta_t / sqrt(1 - abar_t) eps_theta) / sqrt(alpha_t) (eq. 11).
- Variational bound (eq. 5): L = L_T + sum_{t=2}^T L_{t-1} + L_0 with L_T = KL(q(x_T | x_0) || N(0, I)),
  L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t)) where q(x_{t-1} | x_t, x_0) = N(mu~_t, beta~_t I) (eqs. 6-7),
  each from one draw x_t ~ q(x_t | x_0), and L_0 = -log p(x_0 | x_1), the discretised Gaussian decoder (eq. 13).
  It bounds -log P(k) of the 8-bit levels k; log_prob adds D ln 256 to bound a density over [0, 1]^D (docs/metrics.md).
- Samplers (pure functions below): ancestral DDPM (Ho et al., Algorithm 2) and DDIM (Song et al. 2021, eq. 12)
  with any number of steps and eta, plus the eta = 0 inversion x_0 -> x_T (Song et al., sec. 5.4).
- Classifier-free guidance (Ho & Salimans 2022, Algorithm 1 and eq. 6): in training the label is replaced by a
  null class with probability p_uncond; at sampling eps = (1 + w) eps(x, y) - w eps(x, null), so w = 0 is the
  conditional model and w > 0 trades diversity for label fidelity.
The U-Net follows Ho et al. (appendix B): residual blocks with GroupNorm, a sinusoidal timestep embedding,
self-attention at the lowest resolution and in the middle, widths (1, 2, 2) x width at sizes H, H/2, H/4. The
embedding (plus the class embedding) sets a per-channel scale and shift after a block's second GroupNorm
(Dhariwal & Nichol 2021's adaptive group norm) rather than being added before it, where the group means
remove it when groups hold one channel.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..nn import EmbResBlock, SelfAttention2d, group_norm, timestep_embedding
from .base import Capabilities, GenerativeModel, Likelihood, Option

SCHEDULES = ("linear", "cosine")
SAMPLERS = ("ddim", "ddpm")
DEFAULT_DDIM_STEPS = 50


@dataclass
class DiffusionConfig:
    channels: int = 1          # set from the data set
    image_size: int = 28       # set from the data set; divisible by 4 (two 2x downsamplings)
    num_classes: int = 0       # set from the data set; used when conditional
    width: int = 32            # base channels of the U-Net; 2 x width at H/2 and H/4
    res_blocks: int = 1        # residual blocks per resolution on the way down (one more on the way up)
    attention: bool = True     # self-attention at the lowest resolution and in the middle
    dropout: float = 0.0       # in each residual block (Ho et al. use 0.1 on CIFAR-10)
    timesteps: int = 1000      # T
    schedule: str = "linear"   # one of SCHEDULES
    conditional: bool = False  # class-conditional eps_theta(x_t, t, y) with classifier-free guidance
    p_uncond: float = 0.1      # conditional: probability that a training label is replaced by the null class
    guidance: float = 1.0      # conditional: the guidance scale w that sample() uses unless told otherwise

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.image_size % 4:
            raise ValueError(f"image_size must be divisible by 4, got {self.image_size}")
        if self.timesteps < 2:
            raise ValueError(f"timesteps must be at least 2, got {self.timesteps}")
        if self.width < 1 or self.res_blocks < 1:
            raise ValueError(f"width and res_blocks must be positive, got {self.width} and {self.res_blocks}")
        if not 0 <= self.p_uncond < 1:
            raise ValueError(f"p_uncond must be in [0, 1), got {self.p_uncond}")
        if self.guidance < 0:
            raise ValueError(f"guidance must be >= 0, got {self.guidance}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


def make_betas(schedule: str, timesteps: int) -> torch.Tensor:
    """beta_1 .. beta_T (float64, (T,)) of the linear (Ho et al. 2020) or cosine (Nichol & Dhariwal 2021) schedule."""
    if schedule == "linear":
        scale = 1000 / timesteps
        betas = torch.linspace(1e-4 * scale, 0.02 * scale, timesteps, dtype=torch.float64)
    elif schedule == "cosine":
        s = 0.008
        f = torch.cos((torch.arange(timesteps + 1, dtype=torch.float64) / timesteps + s) / (1 + s) * math.pi / 2) ** 2
        betas = 1 - f[1:] / f[:-1]
    else:
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    return betas.clamp(max=0.999)


class _Attention(nn.Module):
    """Pre-norm self-attention: x + gamma o(GroupNorm(x)), with genzoo.nn.SelfAttention2d's o and gamma."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = group_norm(channels)
        self.attn = SelfAttention2d(channels)

    def forward(self, x):
        h = self.norm(x)
        return x + (self.attn(h) - h)          # SelfAttention2d returns h + gamma o(h)


class _Block(nn.Module):
    """An EmbResBlock, then self-attention where asked."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float, attention: bool):
        super().__init__()
        self.res = EmbResBlock(c_in, c_out, emb_dim, dropout)
        self.attn = _Attention(c_out) if attention else nn.Identity()

    def forward(self, x, emb):
        return self.attn(self.res(x, emb))


class UNet(nn.Module):
    """eps_theta(x_t, t[, y]): (B, C, H, W) on the [-1, 1] scale, step indices t (B,) in [0, T), labels (B,) in
    [0, num_classes] (num_classes is the null class) -> predicted noise (B, C, H, W)."""

    def __init__(self, cfg: DiffusionConfig):
        super().__init__()
        w, rb = cfg.width, cfg.res_blocks
        widths = (w, 2 * w, 2 * w)             # at H, H/2, H/4
        emb = 4 * w
        self.width = w
        self.time_mlp = nn.Sequential(nn.Linear(w, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.label_emb = nn.Embedding(cfg.num_classes + 1, emb) if cfg.conditional else None
        self.conv_in = nn.Conv2d(cfg.channels, w, 3, padding=1)
        last = len(widths) - 1
        self.down, skips, c = nn.ModuleList(), [w], w
        for level, c_out in enumerate(widths):
            for _ in range(rb):
                self.down.append(_Block(c, c_out, emb, cfg.dropout, cfg.attention and level == last))
                c = c_out
                skips.append(c)
            if level != last:
                self.down.append(nn.Conv2d(c, c, 3, stride=2, padding=1))           # H -> H/2
                skips.append(c)
        self.mid = nn.ModuleList([_Block(c, c, emb, cfg.dropout, cfg.attention),
                                  _Block(c, c, emb, cfg.dropout, False)])
        self.up = nn.ModuleList()
        for level in reversed(range(len(widths))):
            for _ in range(rb + 1):
                self.up.append(_Block(c + skips.pop(), widths[level], emb, cfg.dropout,
                                      cfg.attention and level == last))
                c = widths[level]
            if level != 0:
                self.up.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                             nn.Conv2d(c, c, 3, padding=1)))        # H/2 -> H
        self.out = nn.Sequential(group_norm(c), nn.SiLU(), nn.Conv2d(c, cfg.channels, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, x, t, labels=None):
        emb = self.time_mlp(timestep_embedding(t, self.width))                      # (B, 4w)
        if self.label_emb is not None:
            emb = emb + self.label_emb(labels)
        hs = [self.conv_in(x)]
        for m in self.down:
            hs.append(m(hs[-1], emb) if isinstance(m, _Block) else m(hs[-1]))
        h = hs[-1]
        for m in self.mid:
            h = m(h, emb)
        for m in self.up:
            h = m(torch.cat([h, hs.pop()], 1), emb) if isinstance(m, _Block) else m(h)
        return self.out(h)


class GuidedLabels:
    """The labels of a model trained with classifier-free guidance (config.conditional, config.num_classes): the
    null class num_classes stands for "no class". ``what`` names the model in errors."""

    what = "model"

    @property
    def conditional(self) -> bool:
        return self.config.conditional

    @property
    def null_label(self) -> int:
        """The label that stands for "no class" (classifier-free guidance's unconditional model)."""
        return self.config.num_classes

    def _labels(self, labels, n: int, allow_null: bool = False):
        if not self.config.conditional:
            if labels is not None:
                raise ValueError(f"this {self.what} is unconditional: pass no labels")
            return None
        if labels is None:
            raise ValueError(f"this {self.what} is class-conditional: pass labels (B,) in [0, num_classes)")
        labels = torch.as_tensor(labels, device=self.device).long()
        top = self.config.num_classes + (1 if allow_null else 0)
        if labels.shape != (n,) or labels.min() < 0 or labels.max() >= top:
            raise ValueError(f"labels must be ({n},) integers in [0, {top}), got shape {tuple(labels.shape)} "
                             f"with values {labels.min().item()} .. {labels.max().item()}")
        return labels


def guided(predict, null_label: int, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None,
           guidance: float) -> torch.Tensor:
    """Classifier-free guidance (Ho & Salimans 2022, eq. 6) on any prediction ``predict(x, t, labels)``:
    (1 + w) p(x, y) - w p(x, null); w = 0 (or no labels) is the prediction itself. The two predictions share one
    batched network pass."""
    if labels is None or guidance == 0:
        return predict(x, t, labels)
    null = torch.full_like(labels, null_label)
    cond, uncond = predict(torch.cat([x, x]), torch.cat([t, t]), torch.cat([labels, null])).chunk(2)
    return (1 + guidance) * cond - guidance * uncond


class Diffusion(GuidedLabels, GenerativeModel):
    """A DDPM with linear or cosine schedule, DDPM/DDIM samplers, classifier-free guidance and its variational bound."""

    Config = DiffusionConfig
    what = "diffusion model"
    # sized for an hour on a 2-core CPU (docs/diffusion.md): 2000 steps of 128 at lr 1e-3 with warm-up and cosine
    # decay; Ho et al. clip gradients at norm 1 and keep an EMA of the weights (0.9999 over 800k steps). The
    # mode-coverage check draws 1000 DDIM-50 samples (about 6 CPU-minutes at the default size): once, at the end
    train_defaults = {"lr": 1e-3, "lr_warmup_steps": 100, "lr_decay": "cosine", "batch_size": 128, "steps": 2000,
                      "ema_decay": 0.9995, "grad_clip_norm": 1.0, "coverage_every_steps": 2000}

    def __init__(self, config: DiffusionConfig):
        super().__init__(config)
        if config.conditional and config.num_classes < 2:
            raise ValueError("a conditional diffusion model needs a labelled data set (num_classes >= 2)")
        self.net = UNet(config)
        betas = make_betas(config.schedule, config.timesteps)
        # derived from the config, so not saved with the weights; float64 for the bound's sums over T terms
        self.register_buffer("betas", betas, persistent=False)                        # (T,)
        self.register_buffer("alphas_cumprod", torch.cumprod(1 - betas, 0), persistent=False)   # abar_t, (T,)

    @property
    def capabilities(self) -> Capabilities:
        cfg = self.config
        options = (Option("sampler", str, "ddim", choices=SAMPLERS, help="ddim (Song et al. 2021) or ddpm "
                                                                          "(ancestral, all T steps)"),
                   Option("steps", int, None, low=1, high=cfg.timesteps,
                          help=f"DDIM steps; None: {min(DEFAULT_DDIM_STEPS, cfg.timesteps)}"),
                   Option("eta", float, 0.0, low=0, high=1, help="DDIM noise: 0 deterministic, 1 DDPM-like"))
        if cfg.conditional:
            options += (Option("guidance", float, None, low=0, help="classifier-free guidance scale w; None: the "
                                                                    f"config's {cfg.guidance:g}"),)
        # log_prob: the variational bound (eq. 5) on `steps` stratified timesteps, one draw of x_t each
        return Capabilities(Likelihood("bound", "vlb", knob="steps", knob_default=None, knob_max=cfg.timesteps,
                                       stochastic=True),
                            conditional=cfg.conditional, null_label=cfg.conditional, completion="diffusion",
                            sample_options=options)

    def predict_eps(self, x_t: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """eps_theta(x_t, t[, y]): x_t (B, C, H, W) on the [-1, 1] scale, t (B,) step indices in [0, T) (index t is
        step t + 1 of the paper), labels (B,) with null_label allowed. Returns (B, C, H, W) float32."""
        labels = self._labels(labels, len(x_t), allow_null=True)
        return self.net(x_t, t, labels).float()

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """A draw of q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I) (Ho et al., eq. 4) from standard normal
        ``noise``; x0 (B, ...) on the [-1, 1] scale, t (B,) step indices."""
        ab = self.alphas_cumprod[t].to(x0.dtype).view(-1, *[1] * (x0.dim() - 1))
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    # -- training

    def loss(self, batch: dict, phase: str = "model") -> dict:
        x0 = batch["x"] * 2 - 1                                                       # (B, C, H, W) in [-1, 1]
        b = x0.shape[0]
        t = torch.randint(self.config.timesteps, (b,), device=x0.device)
        noise = torch.randn_like(x0)
        labels = None
        if self.config.conditional:   # label dropout: the null class trains the unconditional model
            drop = torch.rand(b, device=x0.device) < self.config.p_uncond
            labels = torch.where(drop, torch.full_like(batch["y"], self.null_label), batch["y"])
        eps = self.predict_eps(self.q_sample(x0, t, noise), t, labels)
        return {"loss": (eps - noise.float()).square().mean()}

    # -- likelihood

    @torch.no_grad()
    def bound_terms(self, x: torch.Tensor, labels: torch.Tensor | None = None,
                    generator: torch.Generator | None = None, noise: torch.Tensor | None = None,
                    steps: list[int] | None = None) -> dict:
        """The terms of the variational bound (Ho et al. 2020, eq. 5) per image, in nats, float64:
        "prior" L_T (B,), "kl" L_{t-1} for t = 2..T (B, T-1), "decoder" L_0 (B,).

        x in [0, 1] is read as the levels k = floor(256 x) (training images k / 255 and dequantized images
        (k + u) / 256 both floor back to k). Each L_{t-1} uses one draw x_t ~ q(x_t | x_0); ``noise``
        (T, B, C, H, W) gives those standard normal draws (index t - 1), else they come from ``generator``.
        ``steps`` (indices i = t - 1 in [1, T), increasing) computes only those KL terms: "kl" is then
        (B, len(steps)), column j holding L_{steps[j]}.
        """
        labels = self._labels(labels, len(x))
        k = (x.double() * 256).floor().clamp(0, 255)
        x0 = k / 127.5 - 1                                                            # bin centres in [-1, 1]
        betas, ab = self.betas.tolist(), self.alphas_cumprod.tolist()
        T = len(betas)

        def x_t_and_mean_p(i):    # a draw x_t ~ q(x_t | x_0) and mu_theta(x_t, t) (eq. 11), t = i + 1
            z = noise[i].to(x0) if noise is not None else \
                torch.randn(x0.shape, generator=generator, device=x0.device, dtype=torch.float64)
            x_t = math.sqrt(ab[i]) * x0 + math.sqrt(1 - ab[i]) * z
            t = torch.full((len(x0),), i, device=x0.device, dtype=torch.long)
            eps = self.predict_eps(x_t.float(), t, labels).double()
            return x_t, (x_t - betas[i] / math.sqrt(1 - ab[i]) * eps) / math.sqrt(1 - betas[i])

        prior = 0.5 * (ab[-1] * x0.square() + (1 - ab[-1]) - 1 - math.log(1 - ab[-1])).flatten(1).sum(1)
        _, mean = x_t_and_mean_p(0)
        decoder = -discretized_gaussian_log_prob(k, mean, math.sqrt(betas[0])).flatten(1).sum(1)
        kls = []
        for i in (range(1, T) if steps is None else steps):
            x_t, mean_p = x_t_and_mean_p(i)
            var_q = betas[i] * (1 - ab[i - 1]) / (1 - ab[i])                          # beta~_t (eq. 7)
            mean_q = (math.sqrt(ab[i - 1]) * betas[i] / (1 - ab[i])) * x0 \
                + (math.sqrt(1 - betas[i]) * (1 - ab[i - 1]) / (1 - ab[i])) * x_t     # mu~_t (eq. 7)
            kl = 0.5 * (math.log(betas[i] / var_q) + (var_q + (mean_q - mean_p).square()) / betas[i] - 1)
            kls.append(kl.flatten(1).sum(1))
        return {"prior": prior, "kl": torch.stack(kls, 1), "decoder": decoder}

    @torch.no_grad()
    def log_prob(self, x: torch.Tensor, labels: torch.Tensor | None = None,
                 generator: torch.Generator | None = None, steps: int | None = None) -> torch.Tensor:
        """A lower bound on log p(x[|y]) per image in nats, (B,) float64: minus the variational bound L
        (bound_terms) on -log P(k) of the 8-bit levels k = floor(256 x), plus D ln 256, so that it bounds a
        density over [0, 1]^D (docs/metrics.md's bits/dim). A stochastic bound, not the likelihood: one draw of x_t
        per step, and it costs T network passes per image.

        ``steps`` K < T - 1 trades variance for cost: the T - 1 KL terms are estimated from K of them, one drawn
        uniformly (from ``generator``) in each of K contiguous strata of the steps and weighted by its stratum's
        size (stratified sampling; ``stratified_steps``), the prior and decoder terms exactly: K + 1 passes, and
        in expectation over the drawn steps the same bound. The same generator seed gives the same steps and
        noise for every label, so differences between classes carry little of that variance."""
        T = self.config.timesteps
        if steps is not None and (not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= T):
            raise ValueError(f"steps must be an integer in [1, {T}] (T), got {steps!r}")
        D = x[0].numel()
        if steps is None or steps >= T - 1:
            terms = self.bound_terms(x, labels, generator)
            return -(terms["prior"] + terms["kl"].sum(1) + terms["decoder"]) + D * math.log(256)
        picks, weights = stratified_steps(T - 1, steps, generator, x.device)
        terms = self.bound_terms(x, labels, generator, steps=[1 + i for i in picks])
        kl = terms["kl"] @ torch.tensor(weights, dtype=torch.float64, device=terms["kl"].device)
        return -(terms["prior"] + kl + terms["decoder"]) + D * math.log(256)

    # -- sampling

    @torch.no_grad()
    def sample(self, n: int, labels=None, generator: torch.Generator | None = None, sampler: str = "ddim",
               steps: int | None = None, eta: float = 0.0, guidance: float | None = None) -> torch.Tensor:
        """n images in [0, 1], (n, C, H, W) float32, from x_T ~ N(0, I) drawn from ``generator``.

        sampler "ddim" (Song et al. 2021) takes ``steps`` in [1, T] (default 50, or T if smaller) and ``eta`` in [0, 1] (0: the
        deterministic sampler, 1: DDPM-like noise); "ddpm" is ancestral sampling over all T steps (Ho et al.
        2020, Algorithm 2). ``guidance`` is the classifier-free guidance scale w >= 0 of a conditional model
        (default: config.guidance; 0 = the plain conditional model). Conditional models cycle through the
        classes when no labels are given.
        """
        cfg = self.config
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
        if steps is not None and (not isinstance(steps, int) or isinstance(steps, bool)
                                  or not 1 <= steps <= cfg.timesteps):
            raise ValueError(f"steps must be an integer in [1, {cfg.timesteps}] (T), got {steps!r}")
        if sampler == "ddpm" and steps not in (None, cfg.timesteps):
            raise ValueError(f"the ddpm sampler takes all T = {cfg.timesteps} steps; for fewer use sampler=ddim "
                             "(eta=1 for a stochastic sampler)")
        if not isinstance(eta, (int, float)) or isinstance(eta, bool) or not 0 <= eta <= 1:
            raise ValueError(f"eta must be a number in [0, 1], got {eta!r}")
        if sampler == "ddpm" and eta != 0:
            raise ValueError("eta is a DDIM option; the ddpm sampler has its fixed variance beta_t")
        if guidance is not None and (not isinstance(guidance, (int, float)) or isinstance(guidance, bool)
                                     or guidance < 0):
            raise ValueError(f"guidance must be a number >= 0, got {guidance!r}")
        if not cfg.conditional and guidance not in (None, 0):
            raise ValueError("guidance needs a class-conditional model (e.g. ddpm-cfg); this one is unconditional")
        if cfg.conditional and labels is None:
            labels = torch.arange(n, device=self.device) % cfg.num_classes
        labels = self._labels(labels, n)
        w = float(cfg.guidance if guidance is None else guidance) if cfg.conditional else 0.0
        x_T = torch.randn((n, cfg.channels, cfg.image_size, cfg.image_size), generator=generator, device=self.device)
        if sampler == "ddim":
            steps = steps or min(DEFAULT_DDIM_STEPS, cfg.timesteps)
            x = ddim_sample(self, x_T, steps, eta, labels, w, generator)
        else:
            x = ddpm_sample(self, x_T, labels, w, generator)
        return ((x + 1) / 2).clamp(0, 1).float()


def discretized_gaussian_log_prob(k: torch.Tensor, mean: torch.Tensor, std: float) -> torch.Tensor:
    """log P(k) of 8-bit levels k in {0..255} (float tensor) under N(mean, std^2) on [-1, 1] discretised into 256
    bins of width 2/255 centred at 2k/255 - 1 (Ho et al. 2020, eq. 13); bins 0 and 255 take the tails.
    Elementwise, nats, in the dtype of ``mean`` (use float64)."""
    x = k / 127.5 - 1
    inf = torch.tensor(math.inf, dtype=mean.dtype, device=mean.device)
    upper = torch.where(k >= 255, inf, (x + 1 / 255 - mean) / std)
    lower = torch.where(k <= 0, -inf, (x - 1 / 255 - mean) / std)
    log_ndtr = torch.special.log_ndtr
    # log(Phi(u) - Phi(l)) without cancellation: left of the mean as log Phi(u) + log(1 - Phi(l) / Phi(u)),
    # right of it through the upper tails, Phi(-l) - Phi(-u)
    left = log_ndtr(upper) + torch.log(-torch.expm1(log_ndtr(lower) - log_ndtr(upper)))
    right = log_ndtr(-lower) + torch.log(-torch.expm1(log_ndtr(-upper) - log_ndtr(-lower)))
    return torch.where(x > mean, right, left)


# -- samplers: pure functions of a model with ``alphas_cumprod`` (T,), ``betas`` (T,), ``null_label`` and
#    ``predict_eps(x_t, t, labels)``, working on the [-1, 1] scale


def guided_eps(model, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None,
               guidance: float = 0.0) -> torch.Tensor:
    """Classifier-free guidance (Ho & Salimans 2022, eq. 6): (1 + w) eps(x, y) - w eps(x, null); w = 0 (or no
    labels) is the model's own prediction. The two predictions share one batched network pass."""
    return guided(model.predict_eps, model.null_label, x, t, labels, guidance)


def stratified_steps(n: int, k: int, generator: torch.Generator | None = None,
                     device=None) -> tuple[list[int], list[int]]:
    """k of the indices 0..n-1, one uniform draw in each of k contiguous strata (stratum j: [floor(j n / k),
    floor((j + 1) n / k))), with each stratum's size as its weight: sum_j w_j f(i_j) is an unbiased estimate of
    sum_i f(i) (every index is drawn with probability 1 / its stratum's size). 1 <= k <= n."""
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, {n}], got {k}")
    edges = [j * n // k for j in range(k + 1)]
    u = torch.rand(k, generator=generator, dtype=torch.float64, device=device).tolist()
    sizes = [edges[j + 1] - edges[j] for j in range(k)]
    return [edges[j] + min(int(u[j] * sizes[j]), sizes[j] - 1) for j in range(k)], sizes


def ddim_timesteps(timesteps: int, steps: int) -> list[int]:
    """The step indices DDIM visits, in decreasing order: ``steps`` of the T, evenly spaced from T - 1 down to 0,
    both ends included (the last jump to x_0 starts from the least noisy step; steps = 1 is one jump from T - 1)."""
    if steps == 1:
        return [timesteps - 1]
    return [int(round((timesteps - 1) * (1 - j / (steps - 1)))) for j in range(steps)]


def _fill(x, i):
    return torch.full((len(x),), i, device=x.device, dtype=torch.long)


def _x0_eps(x, eps, a_t: float, clip_x0: bool):
    # the predicted x_0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t); clipped to [-1, 1] with eps made consistent
    x0 = (x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
    if clip_x0:
        x0 = x0.clamp(-1, 1)
        eps = (x - math.sqrt(a_t) * x0) / math.sqrt(1 - a_t)
    return x0, eps


@torch.no_grad()
def ddim_sample(model, x_T: torch.Tensor, steps: int = DEFAULT_DDIM_STEPS, eta: float = 0.0,
                labels: torch.Tensor | None = None, guidance: float = 0.0,
                generator: torch.Generator | None = None, clip_x0: bool = True) -> torch.Tensor:
    """DDIM (Song et al. 2021, eq. 12) from x_T (B, C, H, W) over ``steps`` of the T steps (ddim_timesteps):
        x_prev = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev - sigma^2) eps + sigma z,
        sigma = eta sqrt((1 - abar_prev) / (1 - abar_t)) sqrt(1 - abar_t / abar_prev).
    eta = 0 is deterministic given x_T (``generator`` is then unused); returns x_0 on the [-1, 1] scale."""
    ab = model.alphas_cumprod.tolist()
    ts = ddim_timesteps(len(ab), steps)
    x = x_T
    for j, t in enumerate(ts):
        a_t, a_prev = ab[t], (ab[ts[j + 1]] if j + 1 < len(ts) else 1.0)
        x0, eps = _x0_eps(x, guided_eps(model, x, _fill(x, t), labels, guidance), a_t, clip_x0)
        sigma = eta * math.sqrt((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev))
        x = math.sqrt(a_prev) * x0 + math.sqrt(max(1 - a_prev - sigma ** 2, 0.0)) * eps
        if sigma > 0:
            x = x + sigma * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return x


@torch.no_grad()
def ddim_invert(model, x_0: torch.Tensor, steps: int = DEFAULT_DDIM_STEPS, labels: torch.Tensor | None = None,
                guidance: float = 0.0, fixed_point_iters: int = 0) -> torch.Tensor:
    """The deterministic DDIM encoder x_0 -> x_T over the steps ddim_sample visits (Song et al. 2021, sec. 5.4):
    eq. 12 with eta = 0 run forward in time, eps taken at the current point. Each step is first order, so
    ddim_sample(model, ddim_invert(model, x_0)) is x_0 up to O(1 / steps). With ``fixed_point_iters`` = k > 0
    each step instead solves for the x_t whose own eps(x_t, t) carries it back to the current point, by k
    fixed-point iterations (as in Pan et al. 2023's accelerated iterative inversion): ddim_sample then undoes
    it up to the iteration error, at k more network passes per step."""
    ab = model.alphas_cumprod.tolist()
    ts = ddim_timesteps(len(ab), steps)[::-1]                                       # increasing
    x, a_prev = x_0, 1.0
    for j, t in enumerate(ts):
        def step(eps):   # eq. 12 from (x, a_prev) to abar_t with this eps
            return math.sqrt(ab[t]) * (x - math.sqrt(1 - a_prev) * eps) / math.sqrt(a_prev) + math.sqrt(1 - ab[t]) * eps
        x_next = step(guided_eps(model, x, _fill(x, ts[max(j - 1, 0)]), labels, guidance))
        for _ in range(fixed_point_iters):
            x_next = step(guided_eps(model, x_next, _fill(x, t), labels, guidance))
        x, a_prev = x_next, ab[t]
    return x


@torch.no_grad()
def ddpm_sample(model, x_T: torch.Tensor, labels: torch.Tensor | None = None, guidance: float = 0.0,
                generator: torch.Generator | None = None, clip_x0: bool = True) -> torch.Tensor:
    """Ancestral sampling over all T steps (Ho et al. 2020, Algorithm 2, sigma_t^2 = beta_t), the mean written as
    the posterior mean mu~_t(x0_hat, x_t) of eq. 7 so that x0_hat can be clipped; the last step adds no noise.
    Returns x_0 on the [-1, 1] scale."""
    betas, ab = model.betas.tolist(), model.alphas_cumprod.tolist()
    x = x_T
    for t in reversed(range(len(betas))):
        a_t, a_prev = ab[t], (ab[t - 1] if t > 0 else 1.0)
        x0, _ = _x0_eps(x, guided_eps(model, x, _fill(x, t), labels, guidance), a_t, clip_x0)
        x = (math.sqrt(a_prev) * betas[t] / (1 - a_t)) * x0 + (math.sqrt(1 - betas[t]) * (1 - a_prev) / (1 - a_t)) * x
        if t > 0:
            x = x + math.sqrt(betas[t]) * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return x
