"""Flow matching (genzoo/models/flow_matching.py): the divergence against the full Jacobian, the ODE likelihood and
both samplers against a Gaussian whose straight-path flow is known in closed form, and the presets through the
trainer, the sampler's options, genzoo eval, the Bayes classifier and the OOD scores."""
import dataclasses
import json
import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from helpers import tiny_args, tiny_config  # noqa: E402

from genzoo import load  # noqa: E402
from genzoo.apps.ood import ood_eval  # noqa: E402
from genzoo.cli import main  # noqa: E402
from genzoo.data import load_split  # noqa: E402
from genzoo.likelihood import bits_per_dim, dequantize_fixed  # noqa: E402
from genzoo.models.flow_matching import FlowMatching, divergence, guided_velocity  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")   # tiny models: see conftest.py


def _random_field(seed: int = 0) -> FlowMatching:
    """A float64 flow-matching model on 1x4x4 images whose zero-initialised layers (the output conv, each residual
    block's last conv, the attention gains) are drawn at random, so that its field and Jacobian are not trivial."""
    torch.manual_seed(seed)
    model = FlowMatching(tiny_config("flow-matching", 1, 4)).double().eval()
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.normal_(0, 0.3)
    return model


# -- the divergence


def test_exact_divergence_is_the_jacobian_trace_and_hutchinson_is_unbiased_for_it():
    model = _random_field()
    y = torch.randn(1, 1, 4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)

    def field(z):
        return model.velocity(z, torch.full((len(z),), 0.3, dtype=torch.float64))

    jac = torch.autograd.functional.jacobian(lambda z: field(z.view(1, 1, 4, 4)).flatten(), y.flatten())   # (16, 16)
    off_diagonal = jac - torch.diag(jac.diagonal())
    assert off_diagonal.abs().max() > 0.01 * jac.abs().max()      # a probe's estimate varies: not a diagonal map
    v, exact = divergence(field, y)
    assert torch.allclose(v, field(y)) and exact.shape == (1,)
    assert exact.item() == pytest.approx(jac.trace().item(), rel=1e-12, abs=1e-12)
    # each probe's estimate is eps^T J eps, and their mean is the trace within sampling error
    n = 4000
    probes = torch.randint(0, 2, (n, 1, 4, 4), generator=torch.Generator().manual_seed(2)).double() * 2 - 1
    _, est = divergence(field, y.expand(n, -1, -1, -1), probes)
    flat = probes.flatten(1)
    assert torch.allclose(est, ((flat @ jac.T) * flat).sum(1), rtol=1e-10, atol=1e-12)
    se = est.std().item() / math.sqrt(n)
    assert se > 0 and abs(est.mean().item() - exact.item()) < 4 * se, (est.mean().item(), exact.item(), se)


def test_log_prob_runs_under_no_grad_and_leaves_the_weights_without_gradients():
    model = _random_field()
    x = torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad():
        lp = model.log_prob(x, generator=torch.Generator().manual_seed(0), steps=3)
        again = model.log_prob(x, generator=torch.Generator().manual_seed(0), steps=3)
        exact = model.log_prob(x, steps=3, exact=True)
    assert lp.dtype == torch.float64 and lp.shape == (2,) and torch.isfinite(lp).all() and torch.equal(lp, again)
    assert torch.isfinite(exact).all() and not torch.equal(lp, exact)
    assert all(p.grad is None for p in model.parameters())


# -- a Gaussian: the straight path's marginal field in closed form

class GaussianField(FlowMatching):
    """Data N(mu, s^2 I) on the [-1, 1] scale and noise N(0, I): y_t is N(t mu, sigma_t^2 I) with
    sigma_t^2 = (1 - t)^2 + t^2 s^2, the marginal velocity is mu + ((t s^2 - (1 - t)) / sigma_t^2)(y - t mu), and
    its flow maps y_0 to t mu + sigma_t y_0, so N(0, I) at t = 0 onto N(mu, s^2 I) at t = 1."""

    def __init__(self, config, mu: torch.Tensor, s: float):
        super().__init__(config)
        self.register_buffer("mu", mu)
        self.s = s
        self.shift = 0.0     # added to the field: a field off the marginal velocity by a constant

    def velocity(self, y, t, labels=None):
        t = t.view(-1, 1, 1, 1).to(y.dtype)
        s2 = self.s ** 2
        return self.mu + (t * s2 - (1 - t)) / ((1 - t) ** 2 + t ** 2 * s2) * (y - t * self.mu) + self.shift


S = 0.15     # mu within +-0.3 and s = 0.15 keep the images inside [-1, 1]: sample()'s clamp does not bite


@pytest.fixture(scope="module")
def gaussian():
    mu = (torch.rand(1, 1, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64) - 0.5) * 0.6
    return GaussianField(tiny_config("flow-matching", 1, 4), mu, S).double().eval()


def test_the_loss_at_the_marginal_velocity_is_its_closed_form_minimum(gaussian):
    # E ||u - v(y_t, t)||^2 per pixel with u = y_1 - y_0 is E_t Var(u | y_t) = E_t s^2 / sigma_t^2 = s pi / 2 at the
    # marginal field, and a field off it by a constant d pays d^2 more (the cross term vanishes: v = E[u | y_t])
    n = 20000
    y = gaussian.mu + S * torch.randn(n, 1, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    batch = {"x": ((y + 1) / 2).float(), "y": torch.zeros(n, dtype=torch.long)}
    losses = {}
    for shift in (0.0, 0.1):
        gaussian.shift = shift
        torch.manual_seed(0)                        # the same t, y_0 and dequantization for both fields
        losses[shift] = gaussian.loss(batch)["loss"].item()
    gaussian.shift = 0.0
    # measured when written: 0.2376 (seeds 0-3: 0.229 to 0.238; its standard error about 0.003)
    assert losses[0.0] == pytest.approx(S * math.pi / 2, abs=0.012), losses
    assert losses[0.1] - losses[0.0] == pytest.approx(0.1 ** 2, abs=0.002), losses


def test_guidance_combines_the_conditional_and_the_null_fields():
    class LabelField(FlowMatching):     # v(y, t, c) = c / 20 everywhere: the guided field is ((1 + w) c - w null) / 20
        def velocity(self, y, t, labels=None):
            return labels.to(y.dtype).view(-1, 1, 1, 1).expand_as(y) / 20

    model = LabelField(tiny_config("flow-matching-cfg", 1, 4)).eval()          # null label 10, guidance w = 1
    y, t = torch.zeros(2, 1, 4, 4), torch.full((2,), 0.5)
    labels = torch.tensor([3, 7])
    assert torch.allclose(guided_velocity(model, y, t, labels, 0.0)[:, 0, 0, 0], torch.tensor([3.0, 7.0]) / 20)
    guided = guided_velocity(model, y, t, labels, 2.0)[:, 0, 0, 0]
    assert torch.allclose(guided, (3 * torch.tensor([3.0, 7.0]) - 20) / 20)
    # sample() guides with the config's w unless told: y_1 = y_0 + the guided field, constant over t in [0, 1]
    y0 = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    for w in (None, 0.0, 2.0):
        x = model.sample(2, labels=labels, generator=torch.Generator().manual_seed(0), sampler="euler", steps=3,
                         guidance=w)
        scale = 1.0 if w is None else w
        expected = ((y0 + ((1 + scale) * labels.view(-1, 1, 1, 1) - scale * 10) / 20 + 1) / 2).clamp(0, 1)
        assert torch.allclose(x, expected, atol=1e-6), w


def test_ode_likelihood_of_a_gaussian_matches_its_closed_form_to_the_solvers_second_order_error(gaussian):
    mu, D = gaussian.mu, 16
    y = mu + S * torch.randn(4, 1, 4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x = (y + 1) / 2
    # log N(2x - 1; mu, s^2 I) + D ln 2: the density of x over [0, 1]^D
    closed = (-0.5 * (((y - mu) / S) ** 2 + math.log(2 * math.pi * S ** 2))).flatten(1).sum(1) + D * math.log(2)
    errors = {}
    for steps in (32, 64):
        with torch.no_grad():
            hutchinson = gaussian.log_prob(x, generator=torch.Generator().manual_seed(2), steps=steps)
            exact = gaussian.log_prob(x, steps=steps, exact=True)
        # a linear field has a diagonal Jacobian here, so one Rademacher probe gives its trace exactly
        assert torch.allclose(hutchinson, exact, rtol=0, atol=1e-9)
        errors[steps] = (exact - closed).abs().max().item()
    # Heun is second order: measured when written, 0.085 nats at 32 steps and 0.021 at 64 (of a log-density near 39)
    assert errors[64] < 0.05 and errors[32] / errors[64] > 3.5, errors


def test_both_samplers_draw_the_gaussian_and_heun_beats_euler_at_few_steps(gaussian):
    n, mu = 4000, gaussian.mu[0]
    y0 = torch.randn(n, 1, 4, 4, generator=torch.Generator().manual_seed(0)).double()    # sample()'s own draw
    exact_map = gaussian.mu + S * y0                                                       # the flow's end point
    for sampler, steps in (("euler", 100), ("heun", 20)):
        x = gaussian.sample(n, generator=torch.Generator().manual_seed(0), sampler=sampler, steps=steps)
        y = x.double() * 2 - 1
        mean_se, std_se = S / math.sqrt(n), S / math.sqrt(2 * n)
        assert (y.mean(0) - mu).abs().max() < 5 * mean_se, sampler
        # measured when written: 0.0075 (Euler-100, whose own error is 0.004) and 0.0042 (Heun-20)
        assert (y.std(0) - S).abs().max() < 5 * std_se + 0.006, sampler
        assert (y - exact_map).abs().mean() < 0.005, sampler
    error = {}
    for sampler in ("euler", "heun"):
        y = gaussian.sample(n, generator=torch.Generator().manual_seed(0), sampler=sampler, steps=4).double() * 2 - 1
        error[sampler] = (y - exact_map).abs().mean().item()
    assert error["heun"] < 0.5 * error["euler"], error                  # measured: 0.025 and 0.073
    for steps in (1, 3, 7):                                              # any number of steps
        assert gaussian.sample(2, generator=torch.Generator().manual_seed(0), steps=steps).shape == (2, 1, 4, 4)


def test_sample_refuses_bad_options_by_name(gaussian):
    for kw, words in (({"sampler": "rk4"}, "sampler must be one of euler, heun"),
                      ({"steps": 0}, "steps must be an integer in [1, 1000]"),
                      ({"steps": 1001}, "steps must be an integer in [1, 1000]"),
                      ({"guidance": 1.0}, "guidance needs a class-conditional model")):
        with pytest.raises(ValueError, match=words.replace("[", r"\[").replace("]", r"\]")):
            gaussian.sample(2, **kw)
    with pytest.raises(ValueError, match="steps must be"):
        gaussian.log_prob(torch.rand(1, 1, 4, 4, dtype=torch.float64), steps=0)


# -- the presets through the trainer and the applications


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("flow-matching")
    for name in ("flow-matching", "flow-matching-cfg"):
        assert main(["train", name, "--data", "digits", "--steps", "3", "--out", str(root / name), "--no-progress",
                     "--set", "batch_size=16", "--set", "sample_every_steps=0", "--set", "coverage_every_steps=0",
                     *tiny_args(name)]) == 0
    return root


def test_trained_presets_sample_and_check_their_options_through_the_cli(runs, tmp_path, capsys):
    for name in ("flow-matching", "flow-matching-cfg"):
        model = load(runs / name)
        assert model.config.sample_steps == 4 and model.capabilities.likelihood.kind == "estimate"
        x = model.sample(3, generator=torch.Generator().manual_seed(0), sampler="euler", steps=2)
        assert x.shape == (3, 1, 8, 8) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
        png = str(tmp_path / f"{name}.png")
        assert main(["sample", str(runs / name), "-n", "4", "--out", png, "--opt", "sampler=euler",
                     "--opt", "steps=3"]) == 0
        for opt, words in (("sampler=rk4", "sampler must be one of euler, heun"),
                           ("steps=0", "steps must be an integer in [1, 1000]"),
                           ("steps=1001", "steps must be an integer in [1, 1000]")):
            assert main(["sample", str(runs / name), "-n", "4", "--out", png, "--opt", opt]) == 2, opt
            assert words in capsys.readouterr().err, opt
    guided = ["sample", str(runs / "flow-matching-cfg"), "-n", "4", "--out", png, "--labels", "1,2"]
    assert main([*guided, "--opt", "guidance=2"]) == 0
    assert main([*guided, "--opt", "guidance=-1"]) == 2
    assert "guidance must be a number in [0, inf)" in capsys.readouterr().err


def test_eval_reports_the_ode_likelihood_in_bits_per_dim(runs, tmp_path):
    run = runs / "flow-matching"
    assert main(["eval", str(run), "--metrics", "nll", "--no-progress", "--out", str(tmp_path / "e.json")]) == 0
    m = json.loads((tmp_path / "e.json").read_text())["metrics"]
    # the same number from log_prob on the seed-0 dequantized test set (probes from seed 1), by docs/metrics.md
    x = dequantize_fixed(load_split("digits", "test").images, seed=0)
    with torch.no_grad():
        lp = load(run).log_prob(x, generator=torch.Generator().manual_seed(1))
    assert set(m) == {"bpd", "ode_steps"} and m["ode_steps"] == 4, m
    assert m["bpd"] == pytest.approx(bits_per_dim(-lp.mean().item(), 64), rel=1e-5), m


def test_bayes_classifier_and_ood_scores_use_the_ode_likelihood(runs, tmp_path):
    out = tmp_path / "c.json"
    assert main(["classify", str(runs / "flow-matching-cfg"), "--test", "--n", "20", "--bound-steps", "2",
                 "--out", str(out), "--no-progress"]) == 0
    res = json.loads(out.read_text())
    assert res["estimator"] == "ODE likelihood (Hutchinson) of log p(x|y), 2 Heun steps" and res["n"] == 20
    assert res["bound_steps"] == 2 and 0 <= res["bayes_acc"] <= 1
    assert main(["classify", str(runs / "flow-matching"), "--test", "--no-progress"]) == 2    # unconditional
    res = ood_eval(load(runs / "flow-matching"), "digits", "digits", n=10, steps=2, progress=False)
    assert res["estimator"] == "ODE likelihood (Hutchinson) of log p(x), 2 Heun steps"
    assert math.isfinite(res["metrics"]["bpd_in"]) and res["metrics"]["ood_auroc"] == 0.5    # the same images


def test_the_config_refuses_bad_values_by_name():
    cfg = tiny_config("flow-matching")
    for key, value in (("sample_steps", 0), ("likelihood_steps", 1001), ("image_size", 6), ("p_uncond", 1.0),
                       ("guidance", -1.0)):
        with pytest.raises(ValueError, match=key):
            dataclasses.replace(cfg, **{key: value})
