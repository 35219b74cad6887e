"""The GAN family as presets of one model: the registry's gan, dcgan, wgan-gp, cgan, acgan,
infogan and sagan differ only in the options below.

Losses, on discriminator logits l (-log sigmoid(l) = softplus(-l)):
- "ns" / "minimax" (Goodfellow et al. 2014): D maximises E log D(x) + E log(1 - D(G(z))) (eq. 1);
  G minimises -log D(G(z)) (the non-saturating form of section 3) or log(1 - D(G(z))).
- "wgan-gp" (Gulrajani et al. 2017, Algorithm 1): the critic minimises
  E D(G(z)) - E D(x) + lambda E (||grad D(x^)||_2 - 1)^2, x^ = eps x + (1 - eps) G(z) with one
  eps ~ U[0, 1] per sample; G minimises -E D(G(z)); n_critic = 5, Adam(1e-4, 0, 0.9), no batch norm
  in the critic (layer norm instead, the paper's suggestion).
- "hinge" (Lim & Ye 2017; SAGAN eq. 4): D minimises E relu(1 - D(x)) + E relu(1 + D(G(z))); G -E D(G(z)).
Architectures: "mlp" is the original MLP GAN (ReLU generator; maxout discriminator with dropout);
"conv" is DCGAN (Radford et al. 2016): transposed convs with batch norm and ReLU, strided convs
with LeakyReLU(0.2). "attention" adds SAGAN's self-attention (Zhang et al. 2019, eqs. 1-3) at H/2
in both nets; "spectral_norm" wraps their weights (Miyato et al. 2018).
Conditioning: "projection" (cGAN, Miyato & Koyama 2018, eq. 3): D(x, y) = psi(h) + embed(y) . h,
with h = phi(x); "acgan" (Odena et al. 2017): D also predicts the class, L_C (eq. 3) is added to
both players' losses. In both, G receives y as a learned embedding concatenated to z.
InfoGAN (Chen et al. 2016, eq. 6): G also takes a categorical code and continuous codes ~ U(-1, 1);
a head Q on D's features predicts them, and lambda * L_I (cross-entropy, Gaussian NLL) is added
to both players' losses.
From Salimans et al. 2016: feature matching (sec. 3.1) as G's loss, one-sided label smoothing
(sec. 3.4), and minibatch discrimination (sec. 3.2) in its minibatch-stddev form (Karras et al.
2018). Sampling can apply the truncation trick (Brock et al. 2019): entries of z beyond the
threshold are redrawn.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from ..nn import SelfAttention2d
from .base import Capabilities, GenerativeModel, Likelihood, Option

LOSSES = ("ns", "minimax", "wgan-gp", "hinge")
ARCHS = ("conv", "mlp")
D_NORMS = ("batch", "layer", "none")
SPECTRAL = ("none", "d", "both")
CONDITIONING = ("none", "projection", "acgan")
EMBED_DIM = 32           # G's class embedding, concatenated to z


@dataclass
class GANConfig:
    channels: int = 1           # set from the data set
    image_size: int = 28        # set from the data set; divisible by 4 for "conv"
    num_classes: int = 0        # set from the data set; used when conditioning != "none"
    arch: str = "conv"          # one of ARCHS
    latent_dim: int = 100       # noise z ~ N(0, I); InfoGAN codes come on top of it
    width: int = 64             # conv: D's first-layer channels and G's last hidden layer
    mlp_hidden: int = 1200      # mlp: G's hidden units; D has 240 maxout units of 5 pieces
    loss: str = "ns"            # one of LOSSES
    gp_weight: float = 10.0     # lambda of the WGAN-GP gradient penalty
    n_critic: int = 1           # discriminator steps (each on a fresh batch) per generator step
    d_lr_scale: float = 1.0     # D's learning rate = lr * d_lr_scale (two time-scale update; SAGAN: 4)
    d_norm: str = "batch"       # conv D's normalisation after its second layer: one of D_NORMS
    spectral_norm: str = "none"  # spectral normalisation of D's ("d") or both nets' ("both") weights
    attention: bool = False     # self-attention blocks at H/2 in G and D (conv only)
    conditioning: str = "none"  # one of CONDITIONING
    ac_weight: float = 1.0      # weight of the auxiliary-classifier loss (acgan)
    info_cat: int = 0           # InfoGAN: size of the categorical code; 0 = none
    info_cont: int = 0          # InfoGAN: number of continuous codes ~ U(-1, 1)
    info_weight: float = 1.0    # InfoGAN: lambda of the mutual-information term
    feature_matching: bool = False   # G matches the mean of D's features on real data (Salimans 3.1)
    label_smoothing: float = 0.0     # one-sided: D's target for real images is 1 - this ("ns"/"minimax")
    minibatch_stddev: bool = False   # D sees the batch's feature stddev as one extra channel

    def __post_init__(self):
        for key, allowed in (("loss", LOSSES), ("arch", ARCHS), ("d_norm", D_NORMS),
                             ("spectral_norm", SPECTRAL), ("conditioning", CONDITIONING)):
            if getattr(self, key) not in allowed:
                raise ValueError(f"{key} must be one of {', '.join(allowed)}, got {getattr(self, key)!r}")
        if self.arch == "conv" and self.image_size % 4:
            raise ValueError(f"image_size must be divisible by 4, got {self.image_size}")
        if self.arch == "mlp" and (self.attention or self.minibatch_stddev):
            raise ValueError("attention and minibatch_stddev need arch=conv")
        if self.loss == "wgan-gp" and self.d_norm == "batch":
            raise ValueError("wgan-gp penalises each sample's gradient, which batch norm couples across "
                             "the batch; use d_norm=layer or none")
        if not 0 <= self.label_smoothing < 0.5:
            raise ValueError(f"label_smoothing must be in [0, 0.5), got {self.label_smoothing}")
        if self.n_critic < 1:
            raise ValueError(f"n_critic must be at least 1, got {self.n_critic}")

    @property
    def code_dim(self) -> int:
        return self.info_cat + self.info_cont


def dcgan_init(module: nn.Module) -> None:
    # weights N(0, 0.02), batch-norm scales N(1, 0.02): section 4 of the DCGAN paper
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm2d, nn.BatchNorm1d)):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def add_spectral_norm(module: nn.Module) -> None:
    """Wrap every conv and linear weight inside ``module`` in spectral normalisation (one power step per call)."""
    for m in list(module.modules()):
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            spectral_norm(m)


class Maxout(nn.Module):
    """Maxout units (Goodfellow et al. 2013): the max over ``pieces`` linear functions, (B, d_in) -> (B, d_out)."""

    def __init__(self, d_in: int, d_out: int, pieces: int = 5):
        super().__init__()
        self.pieces = pieces
        self.linear = nn.Linear(d_in, d_out * pieces)

    def forward(self, x):
        return self.linear(x).unflatten(1, (-1, self.pieces)).amax(-1)


class MinibatchStddev(nn.Module):
    """Appends the batch's mean feature stddev as one constant channel: (B, C, H, W) -> (B, C + 1, H, W)."""

    def forward(self, x):
        s = x.float().std(0, unbiased=False).mean().to(x.dtype)
        return torch.cat([x, s.expand(x.shape[0], 1, *x.shape[2:])], 1)


class Generator(nn.Module):
    def __init__(self, cfg: GANConfig):
        super().__init__()
        c, w, size = cfg.channels, cfg.width, cfg.image_size
        conditional = cfg.conditioning != "none"
        self.embed = nn.Embedding(cfg.num_classes, EMBED_DIM) if conditional else None
        d_in = cfg.latent_dim + cfg.code_dim + (EMBED_DIM if conditional else 0)
        if cfg.arch == "mlp":
            h = cfg.mlp_hidden
            self.net = nn.Sequential(
                nn.Linear(d_in, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(),
                nn.Linear(h, c * size * size), nn.Tanh(), nn.Unflatten(1, (c, size, size)))
        else:
            s = size // 4
            self.net = nn.Sequential(
                nn.Linear(d_in, 2 * w * s * s, bias=False), nn.BatchNorm1d(2 * w * s * s), nn.ReLU(),
                nn.Unflatten(1, (2 * w, s, s)),                                          # (B, 2w, H/4, W/4)
                nn.ConvTranspose2d(2 * w, w, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(),
                *([SelfAttention2d(w)] if cfg.attention else []),                         # (B, w, H/2, W/2)
                nn.ConvTranspose2d(w, c, 4, stride=2, padding=1), nn.Tanh())             # (B, C, H, W)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Images in [-1, 1] from noise and codes (B, latent_dim + code_dim) and labels (B,)."""
        if self.embed is not None:
            z = torch.cat([z, self.embed(y).to(z.dtype)], 1)
        return self.net(z)


class Discriminator(nn.Module):
    """Features h = phi(x) and the logit D(x, y); heads for acgan and InfoGAN read h."""

    def __init__(self, cfg: GANConfig):
        super().__init__()
        c, w, size = cfg.channels, cfg.width, cfg.image_size
        if cfg.arch == "mlp":
            self.body = nn.Sequential(
                nn.Flatten(), Maxout(c * size * size, 240), nn.Dropout(0.5), Maxout(240, 240), nn.Dropout(0.5))
            self.feature_dim = 240
        else:
            s = size // 4
            norm = {"batch": lambda: nn.BatchNorm2d(2 * w), "layer": lambda: nn.GroupNorm(1, 2 * w),
                    "none": nn.Identity}[cfg.d_norm]
            extra = 1 if cfg.minibatch_stddev else 0
            self.body = nn.Sequential(
                nn.Conv2d(c, w, 4, stride=2, padding=1), nn.LeakyReLU(0.2),              # (B, w, H/2, W/2)
                *([SelfAttention2d(w)] if cfg.attention else []),
                nn.Conv2d(w, 2 * w, 4, stride=2, padding=1, bias=cfg.d_norm == "none"),  # (B, 2w, H/4, W/4)
                norm(), nn.LeakyReLU(0.2),
                *([MinibatchStddev()] if cfg.minibatch_stddev else []),
                nn.Flatten())                                                            # (B, (2w + extra) s s)
            self.feature_dim = (2 * w + extra) * s * s
        self.out = nn.Linear(self.feature_dim, 1)
        self.project = (nn.Embedding(cfg.num_classes, self.feature_dim)
                        if cfg.conditioning == "projection" else None)
        self.classify = nn.Linear(self.feature_dim, cfg.num_classes) if cfg.conditioning == "acgan" else None
        # InfoGAN's Q: logits of the categorical code, mean and log-std of each continuous code
        self.q = (nn.Sequential(nn.Linear(self.feature_dim, 128), nn.LeakyReLU(0.2),
                                nn.Linear(128, cfg.info_cat + 2 * cfg.info_cont)) if cfg.code_dim else None)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)                                 # (B, feature_dim)
        logit = self.out(h).squeeze(1)                   # (B,)
        if self.project is not None:
            logit = logit + (self.project(y).to(h.dtype) * h).sum(1)
        return logit.float(), h


class GAN(GenerativeModel):
    """One GAN with options for architecture, loss, conditioning and normalisation (see the module docstring)."""

    Config = GANConfig
    phases = ("discriminator", "generator")
    train_defaults = {"lr": 2e-4, "adam_betas": (0.5, 0.999), "batch_size": 64, "steps": 10000}

    def __init__(self, config: GANConfig):
        super().__init__(config)
        if config.conditioning != "none" and config.num_classes < 2:
            raise ValueError(f"conditioning={config.conditioning} needs a labelled data set (num_classes >= 2)")
        self.generator = Generator(config)
        self.discriminator = Discriminator(config)
        self.apply(dcgan_init)
        if self.discriminator.project is not None:   # start the projection term small beside psi(h)
            nn.init.normal_(self.discriminator.project.weight, 0.0, 0.02)
        if config.spectral_norm in ("d", "both"):
            add_spectral_norm(self.discriminator)
        if config.spectral_norm == "both":
            add_spectral_norm(self.generator)

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(Likelihood(reason="a GAN has none to report"), conditional=self.conditional,
                            latents=True, traversable_codes=self.traversable_codes,
                            sample_options=(Option("truncation", float, None, low=0, high=10, low_open=True,
                                                   help="the truncation trick (Brock et al. 2019): redraw latent "
                                                        "entries beyond +-t; None samples the full prior"),))

    @property
    def conditional(self) -> bool:
        return self.config.conditioning != "none"

    def phase_parameters(self, phase: str):
        return list(getattr(self, phase).parameters())

    def phase_repeats(self, phase: str) -> int:
        return self.config.n_critic if phase == "discriminator" else 1

    def phase_lr_scale(self, phase: str) -> float:
        return self.config.d_lr_scale if phase == "discriminator" else 1.0

    # -- latents

    def draw_latents(self, n: int, generator: torch.Generator | None = None, truncation: float | None = None,
                     device=None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Noise and InfoGAN codes (n, latent_dim + code_dim), and the categorical code's values (n,) or None.

        With ``truncation`` t, entries of z with |z| > t are redrawn until none is left (Brock et al. 2019).
        """
        cfg, device = self.config, device or self.device
        z = torch.randn(n, cfg.latent_dim, generator=generator, device=device)
        if truncation is not None:
            if truncation <= 0:
                raise ValueError(f"truncation must be positive, got {truncation}")
            for _ in range(1000):
                out = z.abs() > truncation
                if not out.any():
                    break
                z = torch.where(out, torch.randn(z.shape, generator=generator, device=device), z)
            z = z.clamp(-truncation, truncation)     # only reached for absurdly small t
        parts, cat = [z], None
        if cfg.info_cat:
            cat = torch.randint(cfg.info_cat, (n,), generator=generator, device=device)
            parts.append(F.one_hot(cat, cfg.info_cat).float())
        if cfg.info_cont:
            parts.append(torch.rand(n, cfg.info_cont, generator=generator, device=device) * 2 - 1)
        return torch.cat(parts, 1), cat

    def prior_latents(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Noise and InfoGAN codes (n, latent_dim + code_dim) from the prior."""
        return self.draw_latents(n, generator)[0]

    def decode(self, latents: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Images in [0, 1] from latents (B, latent_dim + code_dim); differentiable in the latents (latent fitting
        in genzoo.apps.restore backpropagates through it; callers that need no gradient use torch.no_grad)."""
        return ((self.generate(latents, labels).float() + 1) / 2).clamp(0, 1)

    def generate(self, latents: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Images in [-1, 1] from latents (B, latent_dim + code_dim) and, when conditional, labels (B,)."""
        return self.generator(latents, labels if self.conditional else None)

    # -- losses

    def _info_loss(self, h: torch.Tensor, latents: torch.Tensor, cat: torch.Tensor | None) -> torch.Tensor:
        # L_I of InfoGAN: cross-entropy of the categorical code, Gaussian NLL of the continuous ones (nats)
        cfg = self.config
        q = self.discriminator.q(h).float()
        loss = torch.zeros((), device=h.device)
        if cfg.info_cat:
            loss = loss + F.cross_entropy(q[:, :cfg.info_cat], cat)
        if cfg.info_cont:
            c = latents[:, cfg.latent_dim + cfg.info_cat:]
            mean, log_std = q[:, cfg.info_cat::2], q[:, cfg.info_cat + 1::2].clamp(-5, 5)
            loss = loss + (log_std + 0.5 * ((c - mean) / log_std.exp()) ** 2).sum(1).mean()
        return cfg.info_weight * loss

    def _gradient_penalty(self, real: torch.Tensor, fake: torch.Tensor, y) -> torch.Tensor:
        # x^ on the segment from fake to real with one eps per sample (Algorithm 1, line 6), in float32
        dtype = torch.promote_types(real.dtype, torch.float32)
        eps = torch.rand(real.shape[0], 1, 1, 1, device=real.device).to(dtype)
        with torch.autocast(real.device.type, enabled=False):
            x_hat = (eps * real.to(dtype) + (1 - eps) * fake.to(dtype)).requires_grad_(True)
            out, _ = self.discriminator(x_hat, y)
            (grad,) = torch.autograd.grad(out.sum(), x_hat, create_graph=True)
        return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()

    def loss(self, batch: dict, phase: str = "discriminator") -> dict:
        cfg = self.config
        x = batch["x"] * 2 - 1
        b = x.shape[0]
        y_real = batch["y"] if self.conditional else None
        y_fake = torch.randint(cfg.num_classes, (b,), device=x.device) if self.conditional else None
        latents, cat = self.draw_latents(b, device=x.device)
        if phase == "discriminator":
            with torch.no_grad():
                fake = self.generate(latents, y_fake)
            # real and fake go through D separately, so each batch-norm batch is pure (as in the DCGAN code)
            real_l, real_h = self.discriminator(x, y_real)
            fake_l, fake_h = self.discriminator(fake, y_fake)
            if cfg.loss in ("ns", "minimax"):
                s = cfg.label_smoothing
                loss = ((1 - s) * F.softplus(-real_l) + s * F.softplus(real_l)).mean() + F.softplus(fake_l).mean()
            elif cfg.loss == "hinge":
                loss = F.relu(1 - real_l).mean() + F.relu(1 + fake_l).mean()
            else:
                loss = fake_l.mean() - real_l.mean() + cfg.gp_weight * self._gradient_penalty(x, fake, y_fake)
            out = {}
            if cfg.conditioning == "acgan":
                ac = F.cross_entropy(self.discriminator.classify(real_h).float(), y_real) + \
                    F.cross_entropy(self.discriminator.classify(fake_h).float(), y_fake)
                loss = loss + cfg.ac_weight * ac
                out["ac_loss"] = ac.detach()
            if cfg.code_dim:
                info = self._info_loss(fake_h, latents, cat)
                loss = loss + info
                out["info_loss"] = info.detach()
            # D(x) and D(G(z)): probabilities for the logistic losses, raw critic values otherwise
            squash = torch.sigmoid if cfg.loss in ("ns", "minimax") else (lambda t: t)
            return {"loss": loss, "d_real": squash(real_l).mean().detach(),
                    "d_fake": squash(fake_l).mean().detach(), **out}
        if phase == "generator":
            fake_l, fake_h = self.discriminator(self.generate(latents, y_fake), y_fake)
            if cfg.feature_matching:
                with torch.no_grad():
                    _, real_h = self.discriminator(x, y_real)
                loss = (real_h.float().mean(0) - fake_h.float().mean(0)).pow(2).sum()
            elif cfg.loss == "ns":
                loss = F.softplus(-fake_l).mean()
            elif cfg.loss == "minimax":
                loss = -F.softplus(fake_l).mean()
            else:
                loss = -fake_l.mean()
            if cfg.conditioning == "acgan":
                loss = loss + cfg.ac_weight * F.cross_entropy(self.discriminator.classify(fake_h).float(), y_fake)
            if cfg.code_dim:
                loss = loss + self._info_loss(fake_h, latents, cat)
            return {"loss": loss}
        raise ValueError(f"unknown phase {phase!r}; this model has {self.phases}")

    # -- sampling

    @torch.no_grad()
    def sample(self, n: int, labels: torch.Tensor | None = None, generator: torch.Generator | None = None,
               truncation: float | None = None) -> torch.Tensor:
        """n images in [0, 1]; conditional models cycle through the classes when no labels are given."""
        latents, _ = self.draw_latents(n, generator, truncation)
        if self.conditional and labels is None:
            labels = torch.arange(n, device=self.device) % self.config.num_classes
        return ((self.generate(latents, labels).float() + 1) / 2).clamp(0, 1)

    @property
    def traversable_codes(self) -> tuple[str, ...]:
        return (("cat",) if self.config.info_cat else ()) + tuple(f"c{i}" for i in range(self.config.info_cont))

    @torch.no_grad()
    def traverse(self, code: str, n_rows: int = 10, n_cols: int = 10, generator: torch.Generator | None = None,
                 span: float = 2.0) -> torch.Tensor:
        """InfoGAN code traversal, (n_rows * n_cols, C, H, W) row-major: each row keeps one draw of z and the
        other codes; along a row, "cat" takes each category in turn (n_cols = info_cat), "cI" sweeps
        continuous code I over [-span, span] (beyond the training range U(-1, 1), as the paper's figures do),
        with row r's categorical code set to r mod info_cat."""
        cfg = self.config
        if code not in self.traversable_codes:
            raise ValueError(f"unknown code {code!r}; this model has {', '.join(self.traversable_codes) or 'none'}")
        latents, _ = self.draw_latents(n_rows, generator)
        if code == "cat":
            n_cols = cfg.info_cat
        grid = latents.repeat_interleave(n_cols, 0)                 # (rows * cols, latent_dim + code_dim)
        col = torch.arange(n_rows * n_cols, device=grid.device) % n_cols
        cat_slice = slice(cfg.latent_dim, cfg.latent_dim + cfg.info_cat)
        if code == "cat":
            grid[:, cat_slice] = F.one_hot(col, cfg.info_cat).float()
        else:
            if cfg.info_cat:
                row = torch.arange(n_rows * n_cols, device=grid.device) // n_cols
                grid[:, cat_slice] = F.one_hot(row % cfg.info_cat, cfg.info_cat).float()
            i = cfg.latent_dim + cfg.info_cat + int(code[1:])
            grid[:, i] = torch.linspace(-span, span, n_cols, device=grid.device)[col]
        return ((self.generate(grid).float() + 1) / 2).clamp(0, 1)
