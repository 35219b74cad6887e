"""Flow matching as presets of one model: the registry's flow-matching and flow-matching-cfg differ only in the
options below.

- Path (the optimal-transport path of Lipman et al. 2023, "Flow Matching for Generative Modeling", with
  sigma_min = 0; the straight path of rectified flow, Liu et al. 2023, "Flow Straight and Fast"): noise
  y_0 ~ N(0, I) at t = 0, data y_1 = 2x - 1 at t = 1, y_t = (1 - t) y_0 + t y_1, whose velocity is y_1 - y_0.
- Loss (Lipman et al.'s conditional flow matching): E_{t, y_0, y_1} ||v_theta(y_t, t) - (y_1 - y_0)||^2 with
  t ~ U(0, 1), reported as the mean over pixels. Its minimiser is the marginal velocity
  v(y, t) = E[y_1 - y_0 | y_t = y], whose flow dy/dt = v(y, t) carries N(0, I) at t = 0 onto the data
  distribution at t = 1. The images are
  dequantized uniformly in training, x = (k + u) / 256, as genzoo's flows are, so that the model is a density of
  dequantized images, the data log_prob scores (docs/metrics.md).
- Samplers: the ODE solved from t = 0 to 1 on a uniform grid of any number of steps, by Euler's method or by
  Heun's (the explicit trapezoid rule: an Euler predictor, then the mean of the slopes at both ends; second
  order, two network passes a step, as in Karras et al. 2022's Algorithm 1).
- Likelihood (instantaneous change of variables, Chen et al. 2018, Theorem 1): along a solution of the ODE,
  d log p_t(y(t)) / dt = -div v(y(t), t), so log p_1(y_1) = log N(y(0); 0, I) - int_0^1 div v(y(t), t) dt, the
  ODE solved backwards from the data point with Heun's method on a grid dense near t = 1. The divergence is
  Hutchinson's (1989) unbiased estimate eps^T (dv/dy) eps with a Rademacher probe eps drawn once per solve
  (FFJORD, Grathwohl et al. 2019), from one vector-Jacobian product per evaluation, or the exact trace (D
  products, for tiny inputs and checks).
- Classifier-free guidance (Ho & Salimans 2022), as in diffusion.py: the label is replaced by a null class with
  probability p_uncond in training; the guided velocity is v = (1 + w) v(y, t, c) - w v(y, t, null).
The network is diffusion.py's U-Net, its timestep input 1000 t, so that the sinusoidal embedding spans the
range of DDPM's step indices.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .base import Capabilities, GenerativeModel, Likelihood, Option
from .diffusion import GuidedLabels, UNet, guided

SOLVERS = ("euler", "heun")
MAX_STEPS = 1000           # the most solver steps sample() and log_prob() take
TIME_SCALE = 1000.0        # the U-Net sees 1000 t, the range of DDPM's step indices
LOG_2PI = math.log(2 * math.pi)


@dataclass
class FlowMatchingConfig:
    channels: int = 1          # set from the data set
    image_size: int = 28       # set from the data set; divisible by 4 (two 2x downsamplings)
    num_classes: int = 0       # set from the data set; used when conditional
    width: int = 32            # base channels of the U-Net; 2 x width at H/2 and H/4
    res_blocks: int = 1        # residual blocks per resolution on the way down (one more on the way up)
    attention: bool = True     # self-attention at the lowest resolution and in the middle
    dropout: float = 0.0       # in each residual block
    conditional: bool = False  # class-conditional v_theta(y, t, c) with classifier-free guidance
    p_uncond: float = 0.1      # conditional: probability that a training label is replaced by the null class
    guidance: float = 1.0      # conditional: the guidance scale w that sample() uses unless told otherwise
    sample_steps: int = 25     # solver steps of sample() unless told otherwise (Heun: 2 passes a step)
    likelihood_steps: int = 64  # Heun steps of log_prob()'s ODE unless told otherwise (2 passes and products a step)

    def __post_init__(self):
        if self.image_size % 4:
            raise ValueError(f"image_size must be divisible by 4, got {self.image_size}")
        if self.width < 1 or self.res_blocks < 1:
            raise ValueError(f"width and res_blocks must be positive, got {self.width} and {self.res_blocks}")
        if not 0 <= self.p_uncond < 1:
            raise ValueError(f"p_uncond must be in [0, 1), got {self.p_uncond}")
        if self.guidance < 0:
            raise ValueError(f"guidance must be >= 0, got {self.guidance}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        for key in ("sample_steps", "likelihood_steps"):
            if not 1 <= getattr(self, key) <= MAX_STEPS:
                raise ValueError(f"{key} must be in [1, {MAX_STEPS}], got {getattr(self, key)}")


def _check_steps(steps, default: int) -> int:
    if steps is None:
        return default
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
        raise ValueError(f"steps must be an integer in [1, {MAX_STEPS}], got {steps!r}")
    return steps


class FlowMatching(GuidedLabels, GenerativeModel):
    """Conditional flow matching on the straight path, Euler and Heun samplers, guidance and the ODE likelihood."""

    Config = FlowMatchingConfig
    what = "flow-matching model"
    # Diffusion's recipe (docs/diffusion.md): lr 1e-3 with warm-up and cosine decay, gradient clipping at norm 1, an
    # EMA of the weights; the mode-coverage check (1000 samples, Heun-25: DDIM-50's 50 passes) once, at the end
    train_defaults = {"lr": 1e-3, "lr_warmup_steps": 100, "lr_decay": "cosine", "batch_size": 128, "steps": 2000,
                      "ema_decay": 0.9995, "grad_clip_norm": 1.0, "coverage_every_steps": 2000}

    def __init__(self, config: FlowMatchingConfig):
        super().__init__(config)
        if config.conditional and config.num_classes < 2:
            raise ValueError("a conditional flow-matching model needs a labelled data set (num_classes >= 2)")
        self.net = UNet(config)

    @property
    def capabilities(self) -> Capabilities:
        cfg = self.config
        options = (Option("sampler", str, "heun", choices=SOLVERS, help="ODE solver: euler (1 pass a step) or heun "
                                                                        "(2 passes a step, second order)"),
                   Option("steps", int, None, low=1, high=MAX_STEPS,
                          help=f"solver steps on a uniform grid of t; None: the config's {cfg.sample_steps}"))
        if cfg.conditional:
            options += (Option("guidance", float, None, low=0, help="classifier-free guidance scale w; None: the "
                                                                    f"config's {cfg.guidance:g}"),)
        # log_prob: the probability-flow ODE with `steps` Heun steps and Hutchinson's divergence estimate
        return Capabilities(Likelihood("estimate", "ode", knob="steps", knob_default=cfg.likelihood_steps,
                                       knob_max=MAX_STEPS, stochastic=True),
                            conditional=cfg.conditional, null_label=cfg.conditional, sample_options=options)

    def velocity(self, y: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """v_theta(y, t[, c]): y (B, C, H, W) on the [-1, 1] scale, t (B,) in [0, 1] (0: noise, 1: data), labels
        (B,) with null_label allowed. Returns (B, C, H, W) in the dtype of y."""
        return self.net(y, t * TIME_SCALE, labels).to(y.dtype)

    def _state_dtype(self) -> torch.dtype:
        # the ODE's state follows the weights: float32, or float64 for a model made .double() for an exact check
        return next(self.parameters()).dtype

    # -- training

    def loss(self, batch: dict, phase: str = "model") -> dict:
        k = (batch["x"] * 255).round()                                                # 8-bit levels of k / 255
        y1 = (k + torch.rand_like(k)) / 128 - 1                                       # 2 (k + u) / 256 - 1
        b = y1.shape[0]
        t = torch.rand(b, device=y1.device)
        y0 = torch.randn_like(y1)
        tt = t.view(-1, 1, 1, 1)
        labels = None
        if self.config.conditional:   # label dropout: the null class trains the unconditional model
            drop = torch.rand(b, device=y1.device) < self.config.p_uncond
            labels = torch.where(drop, torch.full_like(batch["y"], self.null_label), batch["y"])
        v = self.velocity((1 - tt) * y0 + tt * y1, t, labels)
        return {"loss": (v.float() - (y1 - y0).float()).square().mean()}

    # -- likelihood

    def log_prob(self, x: torch.Tensor, labels: torch.Tensor | None = None,
                 generator: torch.Generator | None = None, steps: int | None = None,
                 exact: bool = False) -> torch.Tensor:
        """log p(x[|y]) per image in nats, (B,) float64, a density over [0, 1]^D (score dequantized images;
        bits/dim as docs/metrics.md says): the probability-flow ODE solved from the image at t = 1 back to t = 0
        with ``steps`` Heun steps (default config.likelihood_steps) on the grid t_j = 1 - (j / steps)^2, whose
        steps shrink towards the data, where the field varies fastest; log N(y(0); 0, I) minus the integral of the
        divergence along the path, plus D ln 2 for y = 2x - 1. The divergence is Hutchinson's estimate with one
        Rademacher probe per image drawn from ``generator`` (unbiased for the solved ODE: 2 network passes and
        vector-Jacobian products a step), or with ``exact`` its trace (D products per pass: tiny images only).
        Works under torch.no_grad (it turns gradients on for the products); the weights get no gradient."""
        steps = _check_steps(steps, self.config.likelihood_steps)
        labels = self._labels(labels, len(x))
        y1 = (2 * x - 1).to(self._state_dtype())
        probe = None if exact else \
            torch.randint(0, 2, y1.shape, generator=generator, device=y1.device).to(y1.dtype) * 2 - 1

        def field(state, t):     # d(y, a)/dt = (v, div v): a(0) = -int_0^1 div v dt when a(1) = 0
            tt = torch.full((len(x),), t, dtype=y1.dtype, device=y1.device)
            return divergence(lambda y: self.velocity(y, tt, labels), state[0], probe)

        ts = [1 - (j / steps) ** 2 for j in range(steps + 1)]                       # 1 .. 0, dense near the data
        zero = torch.zeros(len(x), dtype=torch.float64, device=y1.device)
        y0, a = solve(field, (y1, zero), ts, "heun")
        D = x[0].numel()
        log_normal = -0.5 * (y0.double().square().flatten(1).sum(1) + D * LOG_2PI)
        return log_normal + a + D * math.log(2)

    # -- sampling

    @torch.no_grad()
    def sample(self, n: int, labels=None, generator: torch.Generator | None = None, sampler: str = "heun",
               steps: int | None = None, guidance: float | None = None) -> torch.Tensor:
        """n images in [0, 1], (n, C, H, W) float32: y_0 ~ N(0, I) drawn from ``generator``, carried to t = 1 by
        the ODE with ``sampler`` "euler" or "heun" over ``steps`` uniform steps (default config.sample_steps).
        ``guidance`` is the classifier-free guidance scale w >= 0 of a conditional model (default:
        config.guidance; 0 = the plain conditional model). Conditional models cycle through the classes when no
        labels are given."""
        cfg = self.config
        if sampler not in SOLVERS:
            raise ValueError(f"sampler must be one of {', '.join(SOLVERS)}, got {sampler!r}")
        steps = _check_steps(steps, cfg.sample_steps)
        if guidance is not None and (not isinstance(guidance, (int, float)) or isinstance(guidance, bool)
                                     or not math.isfinite(guidance) or guidance < 0):
            raise ValueError(f"guidance must be a number >= 0, got {guidance!r}")
        if not cfg.conditional and guidance not in (None, 0):
            raise ValueError("guidance needs a class-conditional model (e.g. flow-matching-cfg); this one is "
                             "unconditional")
        if cfg.conditional and labels is None:
            labels = torch.arange(n, device=self.device) % cfg.num_classes
        labels = self._labels(labels, n)
        w = float(cfg.guidance if guidance is None else guidance) if cfg.conditional else 0.0
        y0 = torch.randn((n, cfg.channels, cfg.image_size, cfg.image_size), generator=generator, device=self.device)
        y0 = y0.to(self._state_dtype())

        def field(state, t):
            return (guided_velocity(self, state[0], torch.full((n,), t, dtype=y0.dtype, device=y0.device), labels, w),)

        (y1,) = solve(field, (y0,), [j / steps for j in range(steps + 1)], sampler)
        return ((y1 + 1) / 2).clamp(0, 1).float()


# -- pure functions: the guided field, the divergence and the solver


def guided_velocity(model, y: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None,
                    guidance: float = 0.0) -> torch.Tensor:
    """Classifier-free guidance on the velocity: (1 + w) v(y, t, c) - w v(y, t, null); w = 0 (or no labels) is the
    model's own field. The two fields share one batched network pass."""
    return guided(model.velocity, model.null_label, y, t, labels, guidance)


def divergence(fn, y: torch.Tensor, probe: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(fn(y), its divergence): fn maps (B, ...) to (B, ...) image by image; the divergence (B,) float64 is
    sum_i d fn(y)_i / d y_i, Hutchinson's probe^T (d fn / dy) probe from one vector-Jacobian product when
    ``probe`` (the shape of y) is given, else the exact trace from one product per dimension. Both outputs are
    detached; gradients are on inside, whatever the caller's mode."""
    with torch.enable_grad():
        y = y.detach().requires_grad_(True)
        v = fn(y)
        if probe is not None:
            (vjp,) = torch.autograd.grad(v, y, probe)                             # probe^T dv/dy, (B, ...)
            div = (vjp * probe).flatten(1).sum(1)
        else:
            flat = v.flatten(1)                                                   # (B, D)
            div = torch.zeros(len(y), dtype=y.dtype, device=y.device)
            for i in range(flat.shape[1]):
                (row,) = torch.autograd.grad(flat[:, i].sum(), y, retain_graph=True)
                div = div + row.flatten(1)[:, i]
    return v.detach(), div.detach().double()


def solve(field, state: tuple, ts: list[float], method: str = "heun") -> tuple:
    """Integrate d state / dt = field(state, t) over the grid ``ts`` (increasing or decreasing) by Euler's method
    or Heun's (state + h/2 (k_a + k_b), k_b the slope at the Euler prediction). ``state`` is a tuple of tensors
    and ``field`` returns slopes of the same shapes."""
    if method not in SOLVERS:
        raise ValueError(f"method must be one of {', '.join(SOLVERS)}, got {method!r}")
    for t_a, t_b in zip(ts[:-1], ts[1:]):
        h = t_b - t_a
        k_a = field(state, t_a)
        predicted = tuple(s + h * k for s, k in zip(state, k_a))
        if method == "euler":
            state = predicted
        else:
            k_b = field(predicted, t_b)
            state = tuple(s + h / 2 * (ka + kb) for s, ka, kb in zip(state, k_a, k_b))
    return state
