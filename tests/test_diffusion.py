"""The diffusion family: the forward process against its closed form, the samplers (determinism, DDIM inversion,
the distribution they draw for a known data distribution), the variational bound against a float64 brute-force
computation and against the entropy of Gaussian data, classifier-free guidance, and a short CLI run on digits."""
import dataclasses
import json
import math

import pytest
import torch

from genzoo import load, metrics
from genzoo.cli import main
from genzoo.data import load_split
from genzoo.likelihood import bits_per_dim, dequantize_fixed
from genzoo.models import build_model, default_config
from genzoo.models.diffusion import (SCHEDULES, Diffusion, ddim_invert, ddim_sample, ddpm_sample, guided_eps,
                                     make_betas, stratified_steps)
from helpers import tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")   # tiny models: see conftest.py


class GaussianEps(Diffusion):
    """A diffusion model whose eps_theta is the exact E[eps | x_t] for data x_0 ~ N(mu, diag(s^2)) on the [-1, 1]
    scale: with v_t = abar_t s^2 + 1 - abar_t, eps*(x_t, t) = sqrt(1 - abar_t) (x_t - sqrt(abar_t) mu) / v_t.
    Everything else (bound, samplers) is the library's."""

    def __init__(self, config, mu, s):
        super().__init__(config)
        self.register_buffer("mu", torch.as_tensor(mu, dtype=torch.float64), persistent=False)
        self.register_buffer("s", torch.as_tensor(s, dtype=torch.float64), persistent=False)

    def predict_eps(self, x_t, t, labels=None):
        ab = self.alphas_cumprod[t].view(-1, 1, 1, 1)
        v = ab * self.s ** 2 + 1 - ab
        return ((1 - ab).sqrt() * (x_t.double() - ab.sqrt() * self.mu) / v).to(x_t.dtype)


def _tiny(name="ddpm", size=8, seed=0, **over):
    """A tiny model with weights drawn at random (the zero-initialised output layers would make eps = 0)."""
    torch.manual_seed(seed)
    model = build_model(name, dataclasses.replace(tiny_config(name, 1, size), **over)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.1)
    return model


def _simpson(y, x):
    # Simpson's rule over the last axis of y on the evenly spaced grid x (odd number of points), float64
    h = (x[..., 1] - x[..., 0])
    return h / 3 * (y[..., 0] + y[..., -1] + 4 * y[..., 1:-1:2].sum(-1) + 2 * y[..., 2:-1:2].sum(-1))


def _normal_log_pdf(x, mean, var):
    return -(x - mean) ** 2 / (2 * var) - 0.5 * torch.log(2 * math.pi * var)


def _normal_pdf(x, mean, var):
    return _normal_log_pdf(x, mean, var).exp()


def _kl_quadrature(mq, vq, mp, vp, points=4001):
    """KL(N(mq, vq) || N(mp, vp)) elementwise by numerical integration of q log(q / p) over mq +- 12 sd(q)."""
    mq, vq, mp, vp = torch.broadcast_tensors(*(torch.as_tensor(a, dtype=torch.float64) for a in (mq, vq, mp, vp)))
    u = torch.linspace(-12, 12, points, dtype=torch.float64)
    x = mq[..., None] + vq.sqrt()[..., None] * u
    log_q, log_p = _normal_log_pdf(x, mq[..., None], vq[..., None]), _normal_log_pdf(x, mp[..., None], vp[..., None])
    return _simpson(log_q.exp() * (log_q - log_p), x)


# -- the forward process

@pytest.mark.parametrize("schedule", SCHEDULES)
def test_forward_process_matches_its_closed_form_by_monte_carlo(schedule):
    T = 1000
    # the schedules as the papers define them, computed here: Ho et al. sec. 4; Nichol & Dhariwal eq. 17
    if schedule == "linear":
        betas = torch.linspace(1e-4, 0.02, T, dtype=torch.float64)
    else:
        f = torch.cos((torch.arange(T + 1, dtype=torch.float64) / T + 0.008) / 1.008 * math.pi / 2) ** 2
        betas = torch.clamp(1 - f[1:] / f[:-1], max=0.999)
    model = build_model("ddpm", dataclasses.replace(tiny_config("ddpm", 1, 4), schedule=schedule))
    assert torch.allclose(model.betas, betas, rtol=1e-12, atol=0)
    abar = torch.cumprod(1 - betas, 0)
    g = torch.Generator().manual_seed(0)
    n = 4000
    x0 = torch.linspace(-1, 1, 16, dtype=torch.float64).view(1, 1, 4, 4)
    # (a) the closed form as sampled by q_sample; (b) the Markov chain of eq. 2 stepped one t at a time
    chain, ts = x0.expand(n, 1, 4, 4).clone(), (0, 9, 99, 499, 999)
    draws = {}
    for t in range(T):
        chain = (1 - betas[t]).sqrt() * chain + betas[t].sqrt() * torch.randn(chain.shape, generator=g,
                                                                              dtype=torch.float64)
        if t in ts:
            draws[t] = chain
    for t in ts:
        q = model.q_sample(x0.expand(n, 1, 4, 4), torch.full((n,), t),
                           torch.randn(n, 1, 4, 4, generator=g, dtype=torch.float64))
        mean, var = abar[t].sqrt() * x0[0], 1 - abar[t]
        for x in (q, draws[t]):
            # z-scores from the Monte Carlo standard errors: sd / sqrt(n) for the mean, var sqrt(2 / (n - 1)) for
            # the sample variance of Gaussian draws
            z_mean = (x.mean(0) - mean) / (var / n).sqrt()
            z_var = (x.var(0) - var) / (var * math.sqrt(2 / (n - 1)))
            assert z_mean.abs().max() < 5 and z_var.abs().max() < 5, (schedule, t, z_mean.abs().max(),
                                                                      z_var.abs().max())


def test_bad_config_values_are_refused():
    for bad in ({"schedule": "quadratic"}, {"image_size": 30}, {"timesteps": 1}, {"p_uncond": 1.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            dataclasses.replace(default_config("ddpm"), **bad)
    with pytest.raises(ValueError, match="schedule"):
        make_betas("quadratic", 10)


# -- samplers

def test_ddim_with_eta_zero_is_deterministic_and_ignores_the_generator():
    model = _tiny()
    x_T = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    a = ddim_sample(model, x_T, steps=10, eta=0.0, generator=torch.Generator().manual_seed(1))
    b = ddim_sample(model, x_T, steps=10, eta=0.0, generator=torch.Generator().manual_seed(2))
    c = ddim_sample(model, x_T, steps=10, eta=0.0)
    assert torch.equal(a, b) and torch.equal(a, c)
    # with eta > 0 the generator's noise enters, so the check above could fail
    d = ddim_sample(model, x_T, steps=10, eta=1.0, generator=torch.Generator().manual_seed(1))
    e = ddim_sample(model, x_T, steps=10, eta=1.0, generator=torch.Generator().manual_seed(2))
    assert not torch.equal(d, e) and not torch.equal(a, d)
    # sample(): the seed fixes x_T, hence the images, for both samplers
    small = _tiny(timesteps=20)
    for kw in ({"sampler": "ddim", "steps": 7}, {"sampler": "ddpm"}, {"sampler": "ddim", "eta": 0.5}):
        s1, s2, s3 = (small.sample(3, generator=torch.Generator().manual_seed(k), **kw) for k in (5, 5, 6))
        assert torch.equal(s1, s2) and not torch.equal(s1, s3), kw


def _digits_gaussian(schedule="linear"):
    # a Gaussian fitted to the digits training images, per pixel on the [-1, 1] scale (sd floored at 0.05)
    images = load_split("digits", "train").images.double() / 127.5 - 1
    mu, s = images.mean(0), images.std(0).clamp(min=0.05)
    cfg = dataclasses.replace(tiny_config("ddpm", 1, 8), schedule=schedule)
    return GaussianEps(cfg, mu, s).eval(), images


def test_ddim_inversion_of_a_training_image_reconstructs_it():
    """Uses the analytically exact eps of a Gaussian fitted to the digits training set (GaussianEps), run through
    the library's ddim_invert and ddim_sample. For Gaussian data the probability-flow ODE that DDIM discretises
    has a closed-form map x_0 -> x_T = sqrt(abar_T) mu + sqrt(v_T) (x_0 - mu) / s, which the inversion must
    approach at first order in 1 / steps."""
    model, images = _digits_gaussian()
    x0 = images[:8].float()                                   # eight training digits, levels 2k/255 - 1
    ab = model.alphas_cumprod[-1]
    exact_T = ab.sqrt() * model.mu + (ab * model.s ** 2 + 1 - ab).sqrt() * (x0.double() - model.mu) / model.s
    err = {}
    for steps in (50, 100):
        x_T = ddim_invert(model, x0, steps)
        rec = ddim_sample(model, x_T, steps, clip_x0=False)
        err[steps] = ((x_T.double() - exact_T).square().mean().sqrt().item(),
                      (rec - x0).square().mean().sqrt().item())
    for i in (0, 1):    # first order: doubling the steps about halves both errors
        assert 0.35 < err[100][i] / err[50][i] < 0.65, err
    assert err[100][0] < 0.15 * exact_T.std().item(), err      # x_T is the ODE's image of x_0 ...
    assert err[100][1] < 4 / 127.5, err                       # ... and comes back within 4 grey levels (rms)
    # the fixed-point inversion makes sampling undo it: within one grey level everywhere at 50 steps
    x_T = ddim_invert(model, x0, 50, fixed_point_iters=3)
    rec = ddim_sample(model, x_T, 50, clip_x0=False)
    assert (rec - x0).abs().max() < 1 / 127.5, (rec - x0).abs().max()
    assert (x_T - x0).square().mean().sqrt() > 0.5             # and x_T is noise, not the image


def test_samplers_draw_the_data_distribution_when_eps_is_exact():
    # Gaussian data N(mu, s^2) per pixel with the exact eps: ancestral DDPM over T = 1000 steps and DDIM over
    # all 1000 steps must reproduce mu and s^2 up to Monte Carlo error (5 standard errors) plus 3% for the
    # samplers' own approximations (DDPM's fixed variance beta_t, DDIM's first-order steps)
    cfg = dataclasses.replace(tiny_config("ddpm", 1, 4))
    mu = torch.linspace(-0.6, 0.6, 16, dtype=torch.float64).view(1, 4, 4)
    s = torch.linspace(0.1, 0.5, 16, dtype=torch.float64).view(1, 4, 4)
    model = GaussianEps(cfg, mu, s).eval()
    n = 3000
    g = torch.Generator().manual_seed(0)
    x_T = torch.randn(n, 1, 4, 4, generator=g)
    for name, x in (("ddpm", ddpm_sample(model, x_T, generator=g, clip_x0=False)),
                    ("ddim-1000", ddim_sample(model, x_T, steps=1000, clip_x0=False))):
        x = x.double()
        z_mean = (x.mean(0) - mu) / (s / math.sqrt(n))
        rel_var = x.var(0) / s ** 2 - 1
        assert z_mean.abs().max() < 5, (name, z_mean.abs().max())
        assert rel_var.abs().max() < 5 * math.sqrt(2 / (n - 1)) + 0.03, (name, rel_var.abs().max())
    # and 10 DDIM steps are visibly worse than 1000: the comparison above has power
    x10 = ddim_sample(model, x_T, steps=10, clip_x0=False).double()
    assert (x10.var(0) / s ** 2 - 1).abs().max() > 0.1


def test_bad_sampling_options_are_refused_with_a_message():
    model, cfg_model = _tiny(), _tiny("ddpm-cfg")
    for kw, msg in (({"sampler": "euler"}, "sampler must be"), ({"steps": 0}, "steps must be"),
                    ({"steps": 1001}, "steps must be"), ({"steps": 2.5}, "steps must be"),
                    ({"eta": 1.5}, "eta must be"), ({"sampler": "ddpm", "steps": 50}, "all T"),
                    ({"sampler": "ddpm", "eta": 1.0}, "eta is a DDIM option"), ({"guidance": 2.0}, "conditional"),
                    ({"labels": torch.zeros(2, dtype=torch.long)}, "unconditional")):
        with pytest.raises(ValueError, match=msg):
            model.sample(2, **kw)
    with pytest.raises(ValueError, match="guidance must be"):
        cfg_model.sample(2, guidance=-1.0)
    with pytest.raises(ValueError, match="labels"):
        cfg_model.sample(2, labels=torch.tensor([0, 10]))
    with pytest.raises(ValueError, match="class-conditional"):
        cfg_model.log_prob(torch.rand(2, 1, 8, 8))


# -- the variational bound

@pytest.mark.parametrize("schedule", SCHEDULES)
@torch.no_grad()
def test_bound_terms_equal_a_float64_brute_force_computation_at_T4(schedule):
    model = _tiny(size=4, timesteps=4, schedule=schedule)
    T, b = 4, 3
    g = torch.Generator().manual_seed(0)
    k = torch.randint(0, 256, (b, 1, 4, 4), generator=g).double()
    k[0, 0, 0, :2] = torch.tensor([0.0, 255.0])                    # the two tail bins
    x = (k + torch.rand(k.shape, generator=g, dtype=torch.float64)) / 256       # dequantized, floors back to k
    noise = torch.randn(T, b, 1, 4, 4, generator=g, dtype=torch.float64)
    terms = model.bound_terms(x.float(), noise=noise)

    betas = model.betas
    abar = torch.cumprod(1 - betas, 0)
    x0 = 2 * k / 255 - 1

    def x_t_and_mean_p(i):
        x_t = abar[i].sqrt() * x0 + (1 - abar[i]).sqrt() * noise[i]
        eps = model.predict_eps(x_t.float(), torch.full((b,), i)).double()
        return x_t, (x_t - betas[i] / (1 - abar[i]).sqrt() * eps) / (1 - betas[i]).sqrt()   # Ho et al. eq. 11

    prior = _kl_quadrature(abar[-1].sqrt() * x0, 1 - abar[-1], 0.0, 1.0).flatten(1).sum(1)
    assert torch.allclose(terms["prior"], prior, rtol=1e-7, atol=1e-9)
    for i in range(1, T):
        x_t, mean_p = x_t_and_mean_p(i)
        # q(x_{t-1} | x_t, x_0) by Bayes' rule: prior N(sqrt(abar_{t-1}) x_0, 1 - abar_{t-1}) times the
        # likelihood N(x_t; sqrt(alpha_t) x_{t-1}, beta_t), product of Gaussians in precision form
        prec = 1 / (1 - abar[i - 1]) + (1 - betas[i]) / betas[i]
        mean_q = (abar[i - 1].sqrt() * x0 / (1 - abar[i - 1]) + (1 - betas[i]).sqrt() * x_t / betas[i]) / prec
        kl = _kl_quadrature(mean_q, 1 / prec, mean_p, betas[i]).flatten(1).sum(1)
        assert torch.allclose(terms["kl"][:, i - 1], kl, rtol=1e-7, atol=1e-9), (i, terms["kl"][:, i - 1], kl)
    # L_0: the N(mu_theta(x_1, 1), beta_1) density integrated over each level's bin (tails for 0 and 255)
    _, mean = x_t_and_mean_p(0)
    sd = betas[0].sqrt()
    lo = torch.where(k == 0, mean - 40 * sd, x0 - 1 / 255)
    hi = torch.where(k == 255, mean + 40 * sd, x0 + 1 / 255)
    u = torch.linspace(0, 1, 20001, dtype=torch.float64)
    grid = lo[..., None] + (hi - lo)[..., None] * u
    prob = _simpson(_normal_pdf(grid, mean[..., None], betas[0]), grid)
    assert torch.allclose(terms["decoder"], -prob.log().flatten(1).sum(1), rtol=1e-7, atol=1e-9)
    # log_prob is minus their sum plus D ln 256 (the same draws from the same generator seed)
    lp = model.log_prob(x.float(), generator=torch.Generator().manual_seed(0))
    drawn = model.bound_terms(x.float(), generator=torch.Generator().manual_seed(0))
    total = -(drawn["prior"] + drawn["kl"].sum(1) + drawn["decoder"]) + 16 * math.log(256)
    assert lp.shape == (b,) and torch.allclose(lp, total, rtol=1e-12)


def test_stratified_steps_draw_each_index_with_probability_one_over_its_weight():
    n, k, draws = 10, 3, 20000
    g = torch.Generator().manual_seed(0)
    counts, weight_of = torch.zeros(n), {}
    for _ in range(draws):
        picks, weights = stratified_steps(n, k, g)
        assert len(picks) == k and sum(weights) == n and picks == sorted(picks)
        for i, w in zip(picks, weights):
            counts[i] += 1
            weight_of[i] = w
    assert sorted(weight_of) == list(range(n))                   # every index can be drawn, with one weight
    w = torch.tensor([weight_of[i] for i in range(n)], dtype=torch.float64)
    p = 1 / w                                                     # the stratum's uniform draw
    se = (p * (1 - p) / draws).sqrt()
    assert ((counts / draws - p).abs() < 5 * se).all(), (counts / draws, p)
    assert stratified_steps(n, n, g) == (list(range(n)), [1] * n)
    with pytest.raises(ValueError, match="k must be"):
        stratified_steps(n, n + 1, g)


@torch.no_grad()
def test_bound_from_K_steps_averages_to_the_full_bound():
    """With the x_t draws fixed, the K-step estimate averaged over every choice of one step per stratum is the
    full sum of the KL terms exactly; through log_prob (steps and noise both drawn) its mean over seeds is the
    full bound's within sampling error."""
    T, K, b = 7, 2, 3
    model = _tiny(size=4, timesteps=T)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(b, 1, 4, 4, generator=g)
    noise = torch.randn(T, b, 1, 4, 4, generator=g, dtype=torch.float64)
    full = model.bound_terms(x, noise=noise)["kl"]                                   # (b, T - 1)
    part = model.bound_terms(x, noise=noise, steps=[2, 5])["kl"]
    assert torch.allclose(part, full[:, [1, 4]], rtol=1e-12)                        # column j is L_{steps[j]}
    strata = [range(0, 3), range(3, 6)]                                              # 6 terms, K = 2
    combos = [(i, j) for i in strata[0] for j in strata[1]]
    mean = sum(3 * full[:, i] + 3 * full[:, j] for i, j in combos) / len(combos)
    assert torch.allclose(mean, full.sum(1), rtol=1e-12)
    # the same steps and noise for the same seed; steps >= T - 1 is the full bound
    lp = lambda seed, steps=None: model.log_prob(x, generator=torch.Generator().manual_seed(seed), steps=steps)  # noqa: E731
    assert torch.equal(lp(5, K), lp(5, K))
    assert torch.equal(lp(5, T - 1), lp(5)) and torch.equal(lp(5, T), lp(5))
    est = torch.stack([lp(s, K) for s in range(400)])
    ref = torch.stack([lp(10_000 + s) for s in range(400)])
    se = (est.var(0) / 400 + ref.var(0) / 400).sqrt()
    assert ((est.mean(0) - ref.mean(0)).abs() < 4 * se).all(), (est.mean(0), ref.mean(0), se)
    assert (est.std(0) > ref.std(0)).all()                        # fewer terms: the variance it trades for cost
    for bad in (0, T + 1, 2.5, True):
        with pytest.raises(ValueError, match="steps must be"):
            model.log_prob(x, steps=bad)


def test_bound_with_exact_eps_is_above_and_close_to_the_true_nll_of_gaussian_data():
    """8-bit data from a Gaussian N(0.1, 0.3^2) on the [-1, 1] scale, rounded to the 256 levels (the edge levels
    take the tails); the model's eps is the exact one for that Gaussian (T = 1000, linear schedule). The bound is
    an upper bound on the model's NLL, which is at least the data's entropy, so E[bound + log P(k)] >= 0; with
    exact reverse means the gap comes only from the fixed reverse variance beta_t and the decoder's Gaussian
    bin, each O(1 / T): it must stay below 0.01 nats per dimension (measured: 0.004 and -0.003 for two noise
    seeds, each with a standard error of 0.004)."""
    D, n, mu, s = 64, 1000, 0.1, 0.3
    model = GaussianEps(tiny_config("ddpm", 1, 8), mu, s).eval()
    g = torch.Generator().manual_seed(0)
    k = ((mu + s * torch.randn(n, 1, 8, 8, generator=g, dtype=torch.float64) + 1) * 127.5).round().clamp(0, 255)
    c = k / 127.5 - 1
    inf = torch.tensor(math.inf, dtype=torch.float64)
    upper = torch.where(k == 255, inf, (c + 1 / 255 - mu) / s)
    lower = torch.where(k == 0, -inf, (c - 1 / 255 - mu) / s)
    nll = -(torch.special.ndtr(upper) - torch.special.ndtr(lower)).log().flatten(1).sum(1)     # -log P(k), nats
    x = ((k + torch.rand(k.shape, generator=g, dtype=torch.float64)) / 256).float()            # dequantized
    bound = -(model.log_prob(x, generator=torch.Generator().manual_seed(1)) - D * math.log(256))
    gap = (bound - nll) / D                                                                    # nats per dim
    se = gap.std().item() / math.sqrt(n)
    assert gap.mean().item() > -4 * se, (gap.mean().item(), se)
    assert gap.mean().item() < 0.01 + 4 * se, (gap.mean().item(), se)


# -- classifier-free guidance

def test_guidance_zero_is_the_conditional_prediction_and_w_mixes_in_the_null_label():
    model = _tiny("ddpm-cfg")
    with torch.no_grad():
        model.net.label_emb.weight.normal_(0, 1)       # class embeddings as far apart as a trained model's
    g = torch.Generator().manual_seed(0)
    x, t, y = torch.randn(6, 1, 8, 8, generator=g), torch.randint(0, 1000, (6,), generator=g), torch.arange(6)
    cond = model.predict_eps(x, t, y)
    uncond = model.predict_eps(x, t, torch.full((6,), model.null_label))
    assert not torch.allclose(cond, uncond, atol=1e-3)                 # the null class is a different input
    assert torch.equal(guided_eps(model, x, t, y, 0.0), cond)
    assert torch.allclose(guided_eps(model, x, t, y, 2.0), 3 * cond - 2 * uncond, atol=1e-4)   # (1 + w), -w
    assert torch.allclose(guided_eps(model, x, t, y, 1e-4), cond, atol=1e-3)                    # continuous at 0
    # sample() passes the scale through: w = 0 and the config's w = 1 draw different images from one seed
    a, b = (model.sample(4, labels=torch.arange(4), generator=torch.Generator().manual_seed(0), steps=5,
                         guidance=w) for w in (0.0, None))
    c = ddim_sample(model, torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0)), 5,
                    labels=torch.arange(4), guidance=1.0)
    assert not torch.equal(a, b) and torch.equal(b, ((c + 1) / 2).clamp(0, 1))


def test_training_replaces_the_label_by_the_null_class_with_probability_p_uncond():
    p = 0.2
    model = _tiny("ddpm-cfg", p_uncond=p)
    seen = []
    model.net.label_emb.register_forward_pre_hook(lambda mod, args: seen.append(args[0].clone()))
    g = torch.Generator().manual_seed(0)
    given = []
    torch.manual_seed(0)
    with torch.no_grad():
        for _ in range(25):
            y = torch.randint(0, 10, (128,), generator=g)
            given.append(y)
            model.loss({"x": torch.rand(128, 1, 8, 8, generator=g), "y": y})
    used, given = torch.cat(seen), torch.cat(given)
    null = used == model.null_label
    n = len(used)
    assert abs(null.double().mean().item() - p) < 4 * math.sqrt(p * (1 - p) / n), null.double().mean()
    assert torch.equal(used[~null], given[~null])                       # the others are the true labels
    assert default_config("ddpm-cfg").conditional and 0.1 <= default_config("ddpm-cfg").p_uncond <= 0.2
    assert not default_config("ddpm").conditional


# -- a real run through the CLI

def test_short_cli_run_on_digits_beats_its_initialisation_and_scores_in_bits_per_dim(tmp_path, capsys):
    run = tmp_path / "ddpm"
    assert main(["train", "ddpm", "--data", "digits", "--steps", "300", "--out", str(run), "--no-progress",
                 "--set", "width=16", "--set", "batch_size=64", "--set", "lr=0.002",
                 "--set", "sample_every_steps=0", "--set", "ckpt_every_steps=0", "--set", "coverage_every_steps=0"
                 ]) == 0
    trained = load(run)
    torch.manual_seed(0)
    init = build_model("ddpm", trained.config).eval()
    # FID in the frozen digits classifier's feature space, 300 samples (DDIM-20) vs the 300 test images;
    # measured when written: 20 trained, 79 at init (train subset vs test: 2.6)
    fids = {name: metrics.fid(m.sample(300, generator=torch.Generator().manual_seed(0), steps=20),
                              dataset="digits") for name, m in (("trained", trained), ("init", init))}
    assert fids["trained"] < 0.5 * fids["init"], fids
    # sampling options through the CLI, and a bad one as an error line
    assert main(["sample", str(run), "-n", "8", "--out", str(tmp_path / "s.png"), "--opt", "sampler=ddim",
                 "--opt", "steps=5", "--opt", "eta=0.5"]) == 0
    assert main(["sample", str(run), "-n", "8", "--out", str(tmp_path / "s.png"), "--opt", "steps=0"]) == 2
    assert "steps must be an integer" in capsys.readouterr().err
    # genzoo eval --metrics nll reports bits/dim (a T = 10 run, so that the bound's T passes per image are cheap)
    short = tmp_path / "ddpm-t10"
    assert main(["train", "ddpm", "--data", "digits", "--steps", "2", "--out", str(short), "--no-progress",
                 "--set", "width=8", "--set", "timesteps=10", "--set", "sample_every_steps=0",
                 "--set", "coverage_every_steps=0"]) == 0
    assert main(["eval", str(short), "--metrics", "nll", "--no-progress", "--out", str(tmp_path / "e.json")]) == 0
    m = json.loads((tmp_path / "e.json").read_text())["metrics"]
    # the same number from log_prob on the seed-0 dequantized test set (bound noise from seed 1), by docs/metrics.md
    x = dequantize_fixed(load_split("digits", "test").images, seed=0)
    lp = load(short).log_prob(x, generator=torch.Generator().manual_seed(1))
    assert set(m) == {"bpd"} and m["bpd"] == pytest.approx(bits_per_dim(-lp.mean().item(), 64), rel=1e-5), m
