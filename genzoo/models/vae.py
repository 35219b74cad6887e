"""The VAE family as presets of one model: the registry's vae-mlp, vae, beta-vae, cvae, iwae and
vaegan differ only in the options below.

- ELBO (Kingma & Welling 2014, eq. 10, Gaussian KL in closed form, appendix B):
      loss = E_q(z|x)[-log p(x|z)] + beta KL(q(z|x) || N(0, I))   (nats per image)
  beta = 1 is the VAE; beta > 1 the beta-VAE (Higgins et al. 2017, eq. 4).
- IWAE (Burda et al. 2016, eq. 8): with iwae_k = k > 1 the training loss is the negative k-sample bound
      -E[log (1/k) sum_i p(x, z_i) / q(z_i|x)],  z_i ~ q(z|x);
  log_prob(x) is that bound with a chosen k (it equals the ELBO in expectation at k = 1).
- Conditional VAE (Sohn et al. 2015): q(z|x, y) and p(x|z, y) see the one-hot label; the prior stays N(0, I).
  With label_in = "prior" the label enters through the prior alone: p(y) p(z|y) p(x|z) with q(z|x) and a learned
  Gaussian p(z|y) = N(m_y, diag(s_y^2)) per class (a Gaussian-mixture prior; the "GBY" graph of Li et al. 2019,
  "Are generative classifiers more robust to adversarial attacks?"). Its public latent is the standardized
  u = (z - m_y) / s_y, N(0, I) under p(z|y), so encode / decode / prior_latents keep the contract of the other
  presets; KL and importance weights are unchanged by that affine map.
  With label_in = "separate" each class has its own encoder and decoder, p(x|y) = p_y(x): ten VAEs in one model
  file, each trained on its class's images (the per-class VAEs of Schott et al. 2019's analysis-by-synthesis
  classifier). A Bayes classifier then compares whole models, not one decoder's use of a label.
- VAE-GAN (Larsen et al. 2016, eqs. 6-9 and Algorithm 1): the pixel likelihood is replaced by a Gaussian
  one in the feature space of a discriminator's hidden layer, Dis_l; three losses, three phases:
      encoder:        beta KL + L_llike,   L_llike = 1/2 ||Dis_l(x) - Dis_l(Dec(z))||^2,  z ~ q(z|x)
      decoder:        gamma L_llike - L_GAN (non-saturating, on reconstructions and prior samples)
      discriminator:  L_GAN, real x against Dec(z ~ q) and Dec(z ~ p)
  A VAE-GAN has no pixel likelihood, so it has no log_prob.
- Autoregressive decoder (PixelVAE, Gulrajani et al. 2017): with pixel_context = K > 0 on binarized one-channel
  images, p(x|z) = prod_i p(x_i | x_<i, z) in raster order. A K x K convolution masked to the pixels before i
  (mask "A" of van den Oord et al. 2016) reads the image; its output and the decoder's features at i meet in a
  per-pixel network that gives pixel i's Bernoulli logit. Scoring is one parallel pass; drawing is pixel by pixel.
  The latent keeps the global shape, the masked context the local detail a factorized decoder cannot express.
  With label_in = "separate" the classes' decoders share this one head.
Decoders p(x|z): "bernoulli" on binarized images; for 8-bit images "logistic", the discretised
logistic of Salimans et al. 2017 (eq. 2, one component; edge bins take the tails), or "categorical",
a 256-way softmax per pixel. "auto" is bernoulli where the data set's likelihood is reported on
binarized images (config.binarize, set from the data set) and logistic otherwise.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..nn import ResBlock, conv_down, conv_up
from .base import Capabilities, GenerativeModel, Likelihood, Option

LOG_2PI = math.log(2 * math.pi)
ARCHS = ("conv", "mlp")
DECODERS = ("auto", "bernoulli", "logistic", "categorical")
LABEL_IN = ("nets", "prior", "separate")
MAX_IWAE_K = 100_000     # importance samples per image a scorer may ask log_prob for


@dataclass
class VAEConfig:
    channels: int = 1          # set from the data set
    image_size: int = 28       # set from the data set; divisible by 4 for "conv"
    num_classes: int = 0       # set from the data set; used when conditional
    binarize: bool = True      # set from the data set: dynamic binarization, likelihood on binarized images
    arch: str = "conv"         # one of ARCHS
    latent_dim: int = 32
    width: int = 64            # conv: channels after the first downsampling, doubled after the second
    res_blocks: int = 0        # conv: residual blocks at each resolution, encoder and decoder
    mlp_hidden: int = 500      # mlp: units of each of the two hidden layers, encoder and decoder
    decoder: str = "auto"      # one of DECODERS
    beta: float = 1.0          # weight of the KL term (beta-VAE)
    iwae_k: int = 1            # importance samples in the training bound; 1 = the ELBO
    conditional: bool = False  # q(z|x, y), p(x|z, y) (cvae)
    label_in: str = "nets"     # conditional: "nets" (encoder and decoder see y), "prior" (learned p(z|y) alone)
                               # or "separate" (one VAE per class)
    adversarial: bool = False  # VAE-GAN: likelihood in a discriminator's feature space
    gamma: float = 1.0         # VAE-GAN: weight of L_llike against L_GAN in the decoder's loss
    pixel_context: int = 0     # > 0: autoregressive decoder, the masked convolution's kernel size (odd); 0: factorized
    pixel_width: int = 32      # autoregressive decoder: channels of the masked convolution and per-pixel network

    def __post_init__(self):
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {', '.join(ARCHS)}, got {self.arch!r}")
        if self.decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {', '.join(DECODERS)}, got {self.decoder!r}")
        if (self.arch == "conv" or self.adversarial) and self.image_size % 4:
            raise ValueError(f"image_size must be divisible by 4, got {self.image_size}")
        if self.iwae_k < 1:
            raise ValueError(f"iwae_k must be at least 1, got {self.iwae_k}")
        if self.beta <= 0:
            raise ValueError(f"beta must be positive, got {self.beta}")
        if self.binarize and self.decoder in ("logistic", "categorical"):
            raise ValueError(f"decoder={self.decoder} models 8-bit values; with binarized data use bernoulli "
                             "(or set binarize=false)")
        if self.adversarial and self.iwae_k > 1:
            raise ValueError("the VAE-GAN has no pixel likelihood to importance-weight; use iwae_k=1")
        if self.label_in not in LABEL_IN:
            raise ValueError(f"label_in must be one of {', '.join(LABEL_IN)}, got {self.label_in!r}")
        if self.pixel_context:
            if self.pixel_context < 3 or self.pixel_context % 2 == 0:
                raise ValueError(f"pixel_context must be 0 or an odd kernel size >= 3, got {self.pixel_context}")
            if self.likelihood != "bernoulli" or self.adversarial or self.channels != 1:
                raise ValueError("pixel_context (an autoregressive decoder) needs binarized one-channel images and "
                                 "a Bernoulli likelihood, without the VAE-GAN")
            if self.pixel_width < 1:
                raise ValueError(f"pixel_width must be at least 1, got {self.pixel_width}")
        if self.label_in != "nets" and (not self.conditional or self.adversarial):
            raise ValueError(f"label_in={self.label_in} needs a conditional VAE trained on its likelihood "
                             "(conditional=true, adversarial=false)")

    @property
    def class_prior(self) -> bool:
        """The label enters through a learned p(z|y) alone (label_in = "prior")."""
        return self.conditional and self.label_in == "prior"

    @property
    def separate(self) -> bool:
        """One VAE per class, the label choosing it (label_in = "separate")."""
        return self.conditional and self.label_in == "separate"

    @property
    def likelihood(self) -> str:
        if self.decoder != "auto":
            return self.decoder
        return "bernoulli" if self.binarize and not self.adversarial else "logistic"


class VAE(GenerativeModel):
    """A VAE with options for architecture, decoder, beta, IWAE training, conditioning and VAE-GAN."""

    Config = VAEConfig
    train_defaults = {"lr": 1e-3, "batch_size": 128, "steps": 15000}

    def __init__(self, config: VAEConfig):
        super().__init__(config)
        if config.conditional and config.num_classes < 2:
            raise ValueError("a conditional VAE needs a labelled data set (num_classes >= 2)")
        c, size, w, L = config.channels, config.image_size, config.width, config.latent_dim
        self.y_dim = config.num_classes if config.conditional and config.label_in == "nets" else 0
        # decoder output channels per image channel: one Bernoulli logit, a logistic (mean, log-scale),
        # or 256 logits; the VAE-GAN decodes to an image (one logit per pixel, sigmoid)
        self.out_per_channel = {"bernoulli": 1, "logistic": 2, "categorical": 256}[config.likelihood] \
            if not config.adversarial else 1
        if config.pixel_context:   # the decoder hands PIXEL_FEATURES features per pixel to the autoregressive head
            self.out_per_channel = PIXEL_FEATURES
        if config.separate:        # one VAE per class, each its own encoder, head and decoder
            nets = [self._nets() for _ in range(config.num_classes)]
            self.encoder, self.enc_head, self.decoder_in, self.decoder = (
                nn.ModuleList(part) for part in zip(*nets))
        else:
            self.encoder, self.enc_head, self.decoder_in, self.decoder = self._nets()
        self.pixel = PixelContext(PIXEL_FEATURES, config.pixel_context, config.pixel_width) \
            if config.pixel_context else None
        if config.class_prior:     # p(z|y) = N(loc_y, diag(exp(2 log_scale_y))); spread centres break symmetry
            self.prior_loc = nn.Parameter(torch.randn(config.num_classes, L))
            self.prior_log_scale = nn.Parameter(torch.zeros(config.num_classes, L))
        if config.adversarial:
            s = size // 4
            self.discriminator = nn.ModuleDict({
                "features": nn.Sequential(conv_down(c, w, act=nn.LeakyReLU(0.2)),
                                          conv_down(w, 2 * w, norm=True, act=nn.LeakyReLU(0.2)), nn.Flatten()),
                "out": nn.Linear(2 * w * s * s, 1)})

    def _nets(self) -> tuple[nn.Module, nn.Module, nn.Module, nn.Module]:
        """(encoder, enc_head, decoder_in, decoder) of one VAE."""
        config = self.config
        c, size, w, L = config.channels, config.image_size, config.width, config.latent_dim
        out_c = c * self.out_per_channel
        if config.arch == "mlp":
            h = config.mlp_hidden
            encoder = nn.Sequential(nn.Flatten(), nn.Linear(c * size * size, h), nn.Tanh(),
                                    nn.Linear(h, h), nn.Tanh())                               # (B, h)
            feat = h
            decoder_in = nn.Linear(L + self.y_dim, h)
            decoder = nn.Sequential(nn.Tanh(), nn.Linear(h, h), nn.Tanh(), nn.Linear(h, out_c * size * size),
                                    nn.Unflatten(1, (out_c, size, size)))
        else:
            s = size // 4
            rb = config.res_blocks
            encoder = nn.Sequential(
                conv_down(c, w), *[ResBlock(w) for _ in range(rb)],                            # (B, w, H/2, W/2)
                conv_down(w, 2 * w), *[ResBlock(2 * w) for _ in range(rb)],                    # (B, 2w, H/4, W/4)
                nn.SiLU(), nn.Flatten())                                                       # (B, 2w s s)
            feat = 2 * w * s * s
            decoder_in = nn.Linear(L + self.y_dim, 2 * w * s * s)
            decoder = nn.Sequential(
                nn.Unflatten(1, (2 * w, s, s)), *[ResBlock(2 * w) for _ in range(rb)],
                conv_up(2 * w, w), *[ResBlock(w) for _ in range(rb)],
                nn.SiLU(), nn.ConvTranspose2d(w, out_c, 4, stride=2, padding=1))              # (B, out_c, H, W)
        return encoder, nn.Linear(feat + self.y_dim, 2 * L), decoder_in, decoder                # head: (mu, logvar)

    # -- capabilities

    @property
    def phases(self) -> tuple[str, ...]:
        return ("discriminator", "encoder", "decoder") if self.config.adversarial else ("model",)

    @property
    def conditional(self) -> bool:
        return self.config.conditional

    @property
    def capabilities(self) -> Capabilities:
        if self.config.adversarial:
            likelihood = Likelihood(reason="a VAE-GAN's reconstruction term lives in its discriminator's feature "
                                           "space, not in pixels")
        else:   # log_prob is the IWAE bound (Burda et al. 2016), tight as k grows; elbo is its k = 1 case
            likelihood = Likelihood("bound", "iwae", knob="k", knob_default=1000, knob_max=MAX_IWAE_K,
                                    stochastic=True, elbo=True)
        options = (Option("binary", bool, False, help="binary draws x ~ p(x|z), pixel by pixel, instead of the "
                                                      "decoder's means"),) if self.pixel is not None else ()
        return Capabilities(likelihood, conditional=self.config.conditional, latents=True, encode=True,
                            reconstruct=True, traversable_codes=self.traversable_codes, sample_options=options)

    def phase_parameters(self, phase: str):
        if phase == "model":
            return list(self.parameters())
        if phase == "encoder":
            return [*self.encoder.parameters(), *self.enc_head.parameters()]
        if phase == "decoder":
            return [*self.decoder_in.parameters(), *self.decoder.parameters()]
        return list(self.discriminator.parameters())

    @staticmethod
    def _labels(labels: torch.Tensor | None, device) -> torch.Tensor:
        if labels is None:
            raise ValueError("this VAE is class-conditional: pass labels (B,) in [0, num_classes)")
        return labels.to(device).long()

    def _onehot(self, labels: torch.Tensor | None, n: int, device) -> torch.Tensor | None:
        if not self.config.conditional:
            return None
        return F.one_hot(self._labels(labels, device), self.config.num_classes).float()

    def _class_prior(self, labels: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        # (loc, log_scale) of p(z|y) for each label, each (B, latent)
        labels = self._labels(labels, self.prior_loc.device)
        return self.prior_loc[labels], self.prior_log_scale[labels]

    def _per_class(self, fn, inputs: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        # label_in = "separate": fn(c, rows) on the rows of each class c present, put back in order
        labels, k = self._labels(labels, inputs.device), self.config.num_classes
        if len(labels) != len(inputs) or (len(labels) and not 0 <= labels.min() <= labels.max() < k):
            raise ValueError(f"pass one label per image in [0, {k}), got {labels.tolist()[:10]}")
        out = None
        for c in labels.unique().tolist() or [0]:          # [0]: an empty batch keeps its shape
            rows = (labels == c).nonzero()[:, 0]
            part = fn(c, inputs[rows])
            if out is None:
                out = part.new_empty((len(inputs), *part.shape[1:]))
            out[rows] = part
        return out

    def encode(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior q(z|x[, y]) = N(mu, diag(exp(logvar))); x in [0, 1]. Returns (mu, logvar), each (B, latent).
        With label_in = "prior": q(z|x) expressed in the standardized latent (z - m_y) / s_y of class y."""
        if self.config.separate:
            out = self._per_class(lambda c, v: self.enc_head[c](self.encoder[c](v)), x * 2 - 1, labels)
            mu, logvar = out.chunk(2, dim=1)
            return mu, logvar.clamp(-12, 8)
        h = self.encoder(x * 2 - 1)
        if self.config.class_prior:
            mu, logvar = self.enc_head(h).chunk(2, dim=1)
            loc, log_scale = self._class_prior(labels)
            return (mu - loc) * torch.exp(-log_scale), logvar.clamp(-12, 8) - 2 * log_scale
        y = self._onehot(labels, len(x), x.device)
        if y is not None:
            h = torch.cat([h, y.to(h.dtype)], 1)
        mu, logvar = self.enc_head(h).chunk(2, dim=1)
        return mu, logvar.clamp(-12, 8)

    def decoder_params(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The decoder's raw output for latents (B, latent): (B, C * out_per_channel, H, W)."""
        if self.config.separate:
            return self._per_class(lambda c, v: self.decoder[c](self.decoder_in[c](v)), z, labels)
        if self.config.class_prior:
            loc, log_scale = self._class_prior(labels)
            return self.decoder(self.decoder_in(loc + log_scale.exp() * z))
        y = self._onehot(labels, len(z), z.device)
        if y is not None:
            z = torch.cat([z, y.to(z.dtype)], 1)
        return self.decoder(self.decoder_in(z))

    def decoder_logits(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Bernoulli logits (B, C, H, W) of a factorized Bernoulli decoder."""
        if self.pixel is not None:
            raise ValueError("an autoregressive decoder's logits depend on the image too: use log_px_z")
        return self.decoder_params(z, labels)

    def decode(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The decoder's mean image in [0, 1], (B, C, H, W). With the autoregressive decoder, which has no
        closed-form mean: each pixel's probability given z and the probabilities before it, in raster order
        (a deterministic picture of p(x|z), differentiable in z)."""
        p = self.decoder_params(z, labels).float()
        if self.pixel is not None:
            return self.pixel.draw(p, mean_field=True)
        kind = "image" if self.config.adversarial else self.config.likelihood
        if kind in ("bernoulli", "image"):
            return torch.sigmoid(p)
        c = self.config.channels
        if kind == "logistic":
            return ((p[:, :c] + 1) / 2).clamp(0, 1)                  # the logistic's mean, back to [0, 1]
        probs = p.unflatten(1, (c, 256)).softmax(2)                   # (B, C, 256, H, W)
        return (probs * torch.arange(256, device=p.device).view(1, 1, 256, 1, 1)).sum(2) / 255

    def prior_latents(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """z ~ N(0, I), (n, latent_dim)."""
        return torch.randn(n, self.config.latent_dim, generator=generator, device=self.device)

    @torch.no_grad()
    def encode_latents(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The posterior mean of each image, (B, latent_dim)."""
        return self.encode(x, labels)[0].float()

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Decoder mean at the posterior mean: (B, C, H, W) in [0, 1]."""
        return self.decode(self.encode(x, labels)[0], labels)

    # -- likelihood

    def _target(self, x: torch.Tensor) -> torch.Tensor:
        # what p(x|z) scores: binary x for bernoulli, integer levels k = floor(256 x) in [0, 255] otherwise
        # (training batches are k / 255 and dequantized test images (k + u) / 256: both floor back to k)
        if self.config.likelihood == "bernoulli":
            return x
        return (x * 256).floor().clamp(0, 255)

    def log_px_z(self, params: torch.Tensor, target: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """log p(x|z) per image in nats, (B,), from decoder output (B, ...) and target (B, C, H, W). An
        autoregressive decoder reads the target through its masked convolution (``context``: that reading,
        ``self.pixel.context(x)``, when it is shared by several z of each image x; see PixelContext.logits)."""
        params, kind, c = params.float(), self.config.likelihood, self.config.channels
        if self.pixel is not None:
            params = self.pixel.logits(params, self.pixel.context(target) if context is None else context)
        if kind == "bernoulli":
            return -F.binary_cross_entropy_with_logits(params, target, reduction="none").flatten(1).sum(1)
        if kind == "categorical":
            logp = params.unflatten(1, (c, 256)).log_softmax(2)                          # (B, C, 256, H, W)
            return logp.gather(2, target.long().unsqueeze(2)).flatten(1).sum(1)
        return discretized_logistic_log_prob(target, params[:, :c], params[:, c:]).flatten(1).sum(1)

    def _kl(self, mu, logvar):
        return 0.5 * (mu.square() + logvar.exp() - 1 - logvar).sum(1)

    def _log_weights(self, x, labels, k: int, chunk: int, generator=None) -> torch.Tensor:
        # log p(x, z_i) - log q(z_i|x) for k draws z_i ~ q(z|x): (k, B), nats
        b = x.shape[0]
        target = self._target(x)
        mu, logvar = self.encode(x, labels)
        mu, logvar = mu.float(), logvar.float()
        std = (0.5 * logvar).exp()
        context = None
        if self.pixel is not None:   # the masked reading of x is shared by every z; the per-pixel net bounds the chunk
            context = self.pixel.context(target)
            chunk = max(1, min(chunk, PIXEL_CHUNK_ELEMENTS // max(1, context[0].numel() * b)))
        out = []
        for start in range(0, k, chunk):
            kc = min(chunk, k - start)
            eps = torch.randn((kc, *mu.shape), generator=generator, device=mu.device)   # (kc, B, latent)
            z = mu + std * eps
            lab = labels.repeat(kc) if labels is not None else None
            params = self.decoder_params(z.flatten(0, 1), lab)                          # (kc*B, ...)
            tgt = target.unsqueeze(0).expand(kc, *target.shape).flatten(0, 1)
            log_pz = -0.5 * (z.square() + LOG_2PI).sum(-1)                              # (kc, B)
            log_qz = -0.5 * (eps.square() + LOG_2PI + logvar).sum(-1)
            out.append(self.log_px_z(params, tgt, context).view(kc, b) + log_pz - log_qz)
        return torch.cat(out, 0)

    def _terms(self, x: torch.Tensor, labels=None, generator: torch.Generator | None = None):
        # per-image reconstruction NLL and KL, each (B,), in nats, fp32
        mu, logvar = self.encode(x, labels)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        z = mu + eps * (0.5 * logvar).exp()
        rec = -self.log_px_z(self.decoder_params(z, labels), self._target(x))
        return rec, self._kl(mu.float(), logvar.float())

    def _check_likelihood(self):
        if self.config.adversarial:
            raise ValueError("a VAE-GAN has no pixel likelihood (its reconstruction term lives in the "
                             "discriminator's feature space)")

    @torch.no_grad()
    def elbo(self, x: torch.Tensor, labels: torch.Tensor | None = None,
             generator: torch.Generator | None = None) -> torch.Tensor:
        """Single-sample ELBO per image in nats (analytic KL, beta = 1), (B,). For 8-bit decoders, like
        log_prob, a bound on the density over [0, 1]^D: log P(k) + D log 256."""
        self._check_likelihood()
        rec, kl = self._terms(x, labels, generator)
        return -(rec + kl) + self._density_offset(x)

    @torch.no_grad()
    def log_prob(self, x: torch.Tensor, labels: torch.Tensor | None = None, k: int = 1000, chunk: int | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """IWAE lower bound on log p(x[|y]) with k importance samples, per image in nats, (B,).

        Bernoulli: x must be binary (the data set binarized once). 8-bit decoders: x in [0, 1] is read as
        level floor(256 x), and the bound is on the density over [0, 1]^D that spreads P(k) uniformly over
        its bin: log P(k) + D log 256 (docs/metrics.md's convention for bits/dim). ``chunk`` z per image are decoded at
        once (default: about CHUNK_ROWS decoder rows in all; it bounds memory and does not change the estimator).
        """
        self._check_likelihood()
        if self.config.likelihood == "bernoulli" and not torch.all((x == 0) | (x == 1)):
            raise ValueError("log_prob of a Bernoulli VAE needs binary images; binarize the data first")
        if chunk is None:   # small decoder batches stay in cache: about 30% faster than 250 z per image at once
            chunk = max(1, CHUNK_ROWS // max(1, len(x)))
        log_w = self._log_weights(x, labels, k, chunk, generator)
        return torch.logsumexp(log_w, 0) - math.log(k) + self._density_offset(x)

    def _density_offset(self, x) -> float:
        # P(k) spread uniformly over its bin of width 1/256 in each of the D dimensions: + D log 256
        return 0.0 if self.config.likelihood == "bernoulli" else x[0].numel() * math.log(256)

    # -- training

    def loss(self, batch: dict, phase: str = "model") -> dict:
        cfg = self.config
        x, labels = batch["x"], (batch["y"] if cfg.conditional else None)
        if cfg.adversarial:
            return self._vaegan_loss(x, labels, phase)
        if cfg.binarize and cfg.likelihood == "bernoulli":
            x = torch.bernoulli(x)
        if cfg.iwae_k > 1:
            log_w = self._log_weights(x, labels, cfg.iwae_k, cfg.iwae_k)
            bound = torch.logsumexp(log_w, 0) - math.log(cfg.iwae_k)
            return {"loss": -bound.mean(), "iwae_bound": bound.mean().detach()}
        rec, kl = self._terms(x, labels)
        loss = (rec + cfg.beta * kl).mean()
        return {"loss": loss, "rec": rec.mean().detach(), "kl": kl.mean().detach()}

    def _dis(self, x):
        f = self.discriminator["features"](x * 2 - 1)
        return self.discriminator["out"](f).float().squeeze(1), f.float()

    def _vaegan_loss(self, x, labels, phase: str) -> dict:
        mu, logvar = self.encode(x, labels)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        z_p = torch.randn_like(mu)
        lab_p = torch.randint(self.config.num_classes, labels.shape, device=x.device) if labels is not None else None
        if phase == "discriminator":
            with torch.no_grad():
                x_rec, x_p = self.decode(z, labels), self.decode(z_p, lab_p)
            real_l, _ = self._dis(x)
            rec_l, _ = self._dis(x_rec)
            p_l, _ = self._dis(x_p)
            loss = F.softplus(-real_l).mean() + F.softplus(rec_l).mean() + F.softplus(p_l).mean()
            return {"loss": loss, "d_real": torch.sigmoid(real_l).mean().detach(),
                    "d_fake": torch.sigmoid(p_l).mean().detach()}
        x_rec = self.decode(z, labels)
        _, f_real = self._dis(x)
        rec_l, f_rec = self._dis(x_rec)
        llike = 0.5 * (f_real.detach() - f_rec).square().sum(1)                      # (B,), Dis_l Gaussian
        if phase == "encoder":
            kl = self._kl(mu.float(), logvar.float())
            return {"loss": (self.config.beta * kl + llike).mean(), "kl": kl.mean().detach(),
                    "llike": llike.mean().detach()}
        if phase == "decoder":
            p_l, _ = self._dis(self.decode(z_p, lab_p))
            gan = F.softplus(-rec_l).mean() + F.softplus(-p_l).mean()               # non-saturating -L_GAN
            return {"loss": self.config.gamma * llike.mean() + gan, "gan": gan.detach()}
        raise ValueError(f"unknown phase {phase!r}; this model has {self.phases}")

    # -- sampling

    @torch.no_grad()
    def sample(self, n: int, labels=None, generator: torch.Generator | None = None,
               binary: bool = False) -> torch.Tensor:
        """Decoder means of z ~ N(0, I) (``decode``); conditional models cycle through the classes when no labels
        are given. ``binary`` (autoregressive decoder only): binary draws x ~ p(x|z) instead, pixel by pixel."""
        z = self.prior_latents(n, generator)
        if self.config.conditional and labels is None:
            labels = torch.arange(n, device=self.device) % self.config.num_classes
        if not isinstance(binary, bool):
            raise ValueError(f"binary must be true or false, got {binary!r}")
        if binary:
            if self.pixel is None:
                raise ValueError("binary draws are for the autoregressive decoder (pixel_context > 0); a factorized "
                                 "decoder's draws are torch.bernoulli(sample(n))")
            return self.pixel.draw(self.decoder_params(z, labels).float(), generator=generator)
        return self.decode(z, labels).float()

    @property
    def traversable_codes(self) -> tuple[str, ...]:
        return tuple(f"z{i}" for i in range(self.config.latent_dim))

    @torch.no_grad()
    def traverse(self, code: str, n_rows: int = 10, n_cols: int = 10, generator: torch.Generator | None = None,
                 span: float = 3.0) -> torch.Tensor:
        """Latent traversal, (n_rows * n_cols, C, H, W) row-major: each row one prior draw of z, with
        coordinate I of "zI" swept over [-span, span] along the row (conditional models: row r has class r)."""
        if code not in self.traversable_codes:
            raise ValueError(f"unknown code {code!r}; this model has z0 .. z{self.config.latent_dim - 1}")
        z = torch.randn(n_rows, self.config.latent_dim, generator=generator, device=self.device)
        z = z.repeat_interleave(n_cols, 0)
        z[:, int(code[1:])] = torch.linspace(-span, span, n_cols, device=z.device).repeat(n_rows)
        labels = None
        if self.config.conditional:
            labels = (torch.arange(n_rows, device=z.device) % self.config.num_classes).repeat_interleave(n_cols)
        return self.decode(z, labels).float()


CHUNK_ROWS = 2048                  # decoder rows per pass when scoring many z per image
PIXEL_FEATURES = 8                 # features per pixel from the decoder to the autoregressive head
PIXEL_CHUNK_ELEMENTS = 1 << 26     # per-pixel activations held at once when scoring many z per image


class PixelContext(nn.Module):
    """The autoregressive head of a PixelVAE decoder for one-channel binary images: logit_i = out(from_z(h_i) +
    a_i), where h_i are the decoder's features at pixel i and a_i a K x K convolution of the image masked to the
    pixels before i in raster order (the rows above within K // 2, and the pixels to the left on i's row)."""

    def __init__(self, features: int, kernel: int, width: int):
        super().__init__()
        self.kernel = kernel
        self.masked = nn.Conv2d(1, width, kernel, padding=kernel // 2)
        mask = torch.zeros(1, 1, kernel, kernel)
        mask[..., :kernel // 2, :] = 1
        mask[..., kernel // 2, :kernel // 2] = 1          # mask "A": pixel i itself is not seen
        self.register_buffer("mask", mask, persistent=False)
        self.from_z = nn.Linear(features, width)
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(width, width), nn.SiLU(), nn.Linear(width, 1))

    def context(self, x: torch.Tensor) -> torch.Tensor:
        """The masked reading a of binary images x (B, 1, H, W): (B, H, W, width), channels last."""
        a = F.conv2d(x.float(), self.masked.weight * self.mask, self.masked.bias, padding=self.kernel // 2)
        return a.permute(0, 2, 3, 1)

    def logits(self, h: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """Bernoulli logits (B, 1, H, W) from decoder features h (B, F, H, W) and the reading a (B', H, W, width)
        of B' images, B a multiple of B': row r of h goes with image r mod B' (several z of each image, z-major)."""
        u = self.from_z(h.permute(0, 2, 3, 1))                                  # (B, H, W, width)
        u = (u.unflatten(0, (-1, len(a))) + a).flatten(0, 1)                   # a broadcast, never copied per z
        return self.out(u).permute(0, 3, 1, 2)

    def draw(self, h: torch.Tensor, generator: torch.Generator | None = None,
             mean_field: bool = False) -> torch.Tensor:
        """Images (B, 1, H, W) pixel by pixel in raster order from decoder features h (B, F, H, W): binary draws,
        or with ``mean_field`` each pixel's probability given the probabilities before it (deterministic)."""
        b, _, height, width = h.shape
        r = self.kernel // 2
        weight = (self.masked.weight * self.mask)[:, :, :r + 1].flatten(1)      # the rows up to i's: (width, ...)
        base = self.from_z(h.permute(0, 2, 3, 1))                                # (B, H, W, width)
        canvas = h.new_zeros(b, 1, height + r, width + 2 * r)                    # image at [r:, r:-r]
        for i in range(height):
            for j in range(width):
                window = canvas[:, :, i:i + r + 1, j:j + 2 * r + 1].flatten(1).clone()
                logit = self.out(base[:, i, j] + F.linear(window, weight, self.masked.bias))     # (B, 1)
                p = torch.sigmoid(logit)
                value = p if mean_field else torch.bernoulli(p, generator=generator)
                canvas[:, :, r + i, r + j] = value
        return canvas[:, :, r:, r:r + width]


def discretized_logistic_log_prob(k: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """log P(k) of 8-bit levels k in {0..255} (float tensor) under a logistic(mean, exp(log_scale)) on [-1, 1]
    discretised into 256 bins of width 2/255 (Salimans et al. 2017, eq. 2); bins 0 and 255 take the tails.
    Elementwise, nats."""
    x = k / 127.5 - 1                                      # bin centres in [-1, 1]
    log_scale = log_scale.clamp(min=-7.0)
    inv_s = torch.exp(-log_scale)
    plus, minus = inv_s * (x - mean + 1 / 255), inv_s * (x - mean - 1 / 255)
    log_cdf_plus = F.logsigmoid(plus)                      # log sigma(plus), for k = 0
    log_one_minus_cdf_minus = -F.softplus(minus)           # log(1 - sigma(minus)), for k = 255
    # log(sigma(plus) - sigma(minus)) without cancellation in either tail: left of the mean as
    # log sigma(plus) + log(1 - sigma(minus) / sigma(plus)), right of it through the survival function
    # sigma(-minus) - sigma(-plus); log(-expm1(d)) stays accurate as d -> 0 (a bin much narrower than the scale)
    left = log_cdf_plus + torch.log(-torch.expm1((F.logsigmoid(minus) - log_cdf_plus).clamp(max=-1e-30)))
    right = log_one_minus_cdf_minus + torch.log(
        -torch.expm1((F.logsigmoid(-plus) - log_one_minus_cdf_minus).clamp(max=-1e-30)))
    log_mid = torch.where(x > mean, right, left)
    return torch.where(k <= 0, log_cdf_plus, torch.where(k >= 255, log_one_minus_cdf_minus, log_mid))
