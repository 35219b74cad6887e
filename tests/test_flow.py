"""The flow family: invertibility, every layer's log-determinant against a float64 autograd Jacobian,
the density's normalisation by quasi-Monte-Carlo integration, the 8-bit dequantization and bits/dim
convention, data-dependent actnorm init under the trainer, temperature, the class-conditional prior, and
a short real training run through the CLI."""
import copy
import dataclasses
import json
import math
import warnings

import pytest
import torch
from safetensors.torch import load_file
from torch.autograd.functional import jacobian

import genzoo
from genzoo import evaluate
from genzoo.checkpoint import config_from_dict, read_config
from genzoo.cli import main
from genzoo.data import load_split
from genzoo.models import build_model, default_config
from genzoo.models.flow import (ActNorm, Coupling, Flow, FlowConfig, InvConv1x1, Preprocess, Prior, Split,
                                Squeeze)
from genzoo.trainer import BatchSampler, ema_update
from helpers import tiny_config

PRESETS = ("realnvp", "glow")
LN256 = math.log(256)


def _randomize(module, scale=0.05, seed=0):
    """Move every parameter off its initial value (zero-initialised nets would make couplings trivial) and mark
    actnorms initialised, so that eval-mode calls use these values. (Much larger moves make a deep random flow
    so ill-conditioned that float32 cannot invert it: a coupling scale of 1e-5 wipes out the digits it scales.)"""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g).to(p.dtype))
    for m in module.modules():
        if isinstance(m, ActNorm):
            m.initialized.fill_(True)
    return module


def _tiny(name, channels=1, size=8, **over):
    torch.manual_seed(0)
    cfg = dataclasses.replace(tiny_config(name, channels, size), **over)
    return _randomize(build_model(name, cfg)).eval()


def _batch(n=6, c=1, s=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    k = torch.randint(0, 256, (n, c, s, s), generator=g)
    return {"x": k.float() / 255, "y": torch.randint(0, 10, (n,), generator=g)}


def test_presets_set_what_their_papers_define():
    nvp, glow = Flow(default_config("realnvp")), Flow(default_config("glow"))
    kinds = lambda m: [(l.kind, l.parity) for l in m.flow if isinstance(l, Coupling)]    # noqa: E731
    K = nvp.config.steps_per_level
    # Real NVP: per level K alternating checkerboard couplings, squeeze, K alternating channel couplings, split;
    # then K + 1 checkerboard couplings (the paper's 3, 3 and 4); no learned permutations, logit preprocessing
    level = [("checkerboard", i % 2) for i in range(K)] + [("channel", i % 2) for i in range(K)]
    assert kinds(nvp) == level * nvp.config.n_levels + [("checkerboard", i % 2) for i in range(K + 1)]
    assert not any(isinstance(l, InvConv1x1) for l in nvp.flow)
    assert sum(isinstance(l, Split) for l in nvp.flow) == nvp.config.n_levels
    assert nvp.config.preprocess == "logit" and nvp.config.logit_alpha == 0.05 and nvp.config.scale == "tanh"
    # Glow: per level squeeze, K x (actnorm, LU 1x1 conv, coupling), split except after the last level
    steps = [type(l).__name__ for l in glow.flow]
    K = glow.config.steps_per_level
    level = ["Squeeze"] + ["ActNorm", "InvConv1x1", "Coupling"] * K
    assert steps == level + ["Split"] + level
    assert all(l.lu for l in glow.flow if isinstance(l, InvConv1x1)) and glow.config.scale == "sigmoid"
    assert kinds(glow) == [("channel", 0)] * (2 * K)
    # scored on 8-bit data everywhere: no binarize field, so the CLI never sets one
    assert "binarize" not in {f.name for f in dataclasses.fields(FlowConfig)}
    declared = glow.capabilities.likelihood
    assert (declared.kind, declared.estimator, declared.elbo) == ("exact", "exact", False)


@pytest.mark.parametrize("name", PRESETS)
@pytest.mark.parametrize("channels,size", [(1, 8), (3, 32)])
def test_inverse_of_forward_is_the_identity(name, channels, size):
    model = _tiny(name, channels, size, conditional=True)
    x = torch.rand(5, channels, size, size, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 3, 3, 7, 9])
    with torch.no_grad():
        eps, logdet = model.forward_flow(x, labels)
        back = model.inverse_flow(eps, labels)
        other = model.forward_flow(x, (labels + 1) % 10)[0]
    assert [e.shape[1:] for e in eps] == [torch.Size(s) for s in model.noise_shapes]
    assert sum(e[0].numel() for e in eps) == x[0].numel()
    assert (back - x).abs().max() < 1e-4
    assert torch.isfinite(logdet).all()
    assert not torch.allclose(eps[-1], other[-1])          # the class prior moves eps


def _brute_logdet(fn, x):
    # log|det J| of fn: R^D -> R^D at x (one image, float64), J from autograd
    J = jacobian(lambda v: fn(v.view_as(x)).flatten(), x.flatten())
    assert J.shape[0] == J.shape[1]
    return torch.linalg.slogdet(J)[1]


def _layers():
    c, s = 4, 2
    return {
        "logit": Preprocess("logit", 0.05),
        "shift": Preprocess("shift", 0.05),
        "actnorm": ActNorm(c),
        "conv1x1": InvConv1x1(c, lu=False),
        "conv1x1_lu": InvConv1x1(c, lu=True),
        "squeeze": Squeeze(),
        "checkerboard_sigmoid_0": Coupling(c, s, "checkerboard", 0, 6, 1, "sigmoid"),
        "checkerboard_tanh_1": Coupling(c, s, "checkerboard", 1, 6, 1, "tanh"),
        "channel_sigmoid_0": Coupling(c, s, "channel", 0, 6, 0, "sigmoid"),
        "channel_tanh_1": Coupling(c, s, "channel", 1, 6, 1, "tanh"),
    }


@pytest.mark.parametrize("kind", sorted(_layers()))
def test_layer_log_det_equals_the_float64_jacobian(kind):
    torch.manual_seed(0)
    layer = _randomize(_layers()[kind], scale=0.3).double().eval()
    x = torch.rand(1, 4, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))   # D = 16
    with torch.no_grad():
        y, logdet = layer(x)
        assert torch.allclose(layer.inverse(y), x, atol=1e-10)
    want = _brute_logdet(lambda v: layer(v)[0], x)
    assert logdet.shape == (1,)
    assert logdet.item() == pytest.approx(want.item(), abs=1e-8)
    if kind not in ("squeeze", "shift"):
        assert abs(want.item()) > 0.1          # a non-trivial Jacobian, so the check has teeth


def test_prior_standardization_log_det_equals_the_float64_jacobian():
    # (h, z) -> (h, eps = (z - mu(h, y)) / sigma(h, y)): the learned split prior and the class table
    torch.manual_seed(0)
    prior = _randomize(Prior(2, 2, c_h=2, num_classes=10), scale=0.3).double()
    labels = torch.tensor([4])
    x = torch.rand(1, 4, 2, 2, dtype=torch.float64)

    def fn(v):
        h, z = v[:, :2], v[:, 2:]
        return torch.cat([h, prior.standardize(z, h, labels)[0]], 1)
    with torch.no_grad():
        eps, logdet = prior.standardize(x[:, 2:], x[:, :2], labels)
        assert torch.allclose(prior.unstandardize(eps, x[:, :2], labels), x[:, 2:], atol=1e-12)
    want = _brute_logdet(fn, x)
    assert logdet.item() == pytest.approx(want.item(), abs=1e-8) and abs(want.item()) > 0.1


@pytest.mark.parametrize("name", PRESETS)
def test_whole_flow_log_det_equals_the_float64_jacobian(name):
    # x in [0, 1]^16 -> all eps concatenated: every layer, split and prior of both levels together
    model = _tiny(name, 1, 4, conditional=True, steps_per_level=2).double()
    labels = torch.tensor([6])
    x = torch.rand(1, 1, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        logdet = model.forward_flow(x, labels)[1]
    want = _brute_logdet(lambda v: torch.cat([e.flatten(1) for e in model.forward_flow(v, labels)[0]], 1), x)
    assert logdet.item() == pytest.approx(want.item(), abs=1e-7)


@pytest.mark.parametrize("name", PRESETS)
def test_density_integrates_to_one(name):
    # A D = 4 model (1x2x2 images, one level), random weights, float64; 8 independently scrambled Sobol point
    # sets of 2^14. Real NVP's logit maps the box (-a/(1-2a), (1-a)/(1-2a))^4 onto R^4, so its density lives
    # there: integrate uniformly over that box. Glow's lives on R^4: importance-sample from a Gaussian twice as
    # wide as the model's samples (any proposal with full support gives an unbiased estimate).
    # Tolerance 0.005: the 8 estimates' standard error is about 3e-4 (asserted below), so this is over 10
    # standard errors, while a missing Jacobian term moves the integral by far more (the logit's (1 - 2a)^4
    # alone is a factor 0.66).
    torch.manual_seed(0)
    cfg = dataclasses.replace(default_config(name), channels=1, image_size=2, num_classes=10, n_levels=1,
                              steps_per_level=2, width=4, res_blocks=1, conditional=name == "glow")
    model = _randomize(build_model(name, cfg), scale=0.2).double().eval()
    labels = (lambda n: torch.full((n,), 3)) if cfg.conditional else (lambda n: None)
    n, estimates = 2 ** 14, []
    with torch.no_grad():
        if cfg.preprocess == "logit":
            a = cfg.logit_alpha
            lo, hi = -a / (1 - 2 * a), (1 - a) / (1 - 2 * a)
            for seed in range(8):
                u = torch.quasirandom.SobolEngine(4, scramble=True, seed=seed).draw(n, dtype=torch.float64)
                x = (lo + (hi - lo) * u).view(n, 1, 2, 2)
                estimates.append(model.log_prob(x, labels(n)).exp().mean() * (hi - lo) ** 4)
        else:
            g = torch.Generator().manual_seed(9)
            draws = model.inverse_flow([torch.randn(4096, *s, generator=g, dtype=torch.float64)
                                        for s in model.noise_shapes], labels(4096)).flatten(1)
            mu, sd = draws.mean(0), 2 * draws.std(0)
            for seed in range(8):
                u = torch.quasirandom.SobolEngine(4, scramble=True, seed=seed).draw(n, dtype=torch.float64)
                v = math.sqrt(2) * torch.erfinv(2 * u - 1)                                # N(0, 1) points
                log_q = (-0.5 * v ** 2 - 0.5 * math.log(2 * math.pi) - sd.log()).sum(1)
                lp = model.log_prob((mu + sd * v).view(n, 1, 2, 2), labels(n))
                estimates.append((lp - log_q).exp().mean())
    est = torch.stack(estimates)
    se = est.std() / math.sqrt(len(est))
    assert se < 1e-3
    assert est.mean().item() == pytest.approx(1.0, abs=0.005)


def test_training_loss_is_bits_per_dim_of_the_dequantized_batch():
    model = _tiny("glow")
    batch = _batch()
    torch.manual_seed(5)
    out = model.loss(batch)
    torch.manual_seed(5)
    k = torch.round(batch["x"] * 255)
    x = (k + torch.rand_like(k)) / 256                      # docs/metrics.md: (k + u) / 256, u ~ U[0, 1)
    nll = -model.log_prob(x)
    assert out["loss"].item() == pytest.approx(((nll / 64 + LN256) / math.log(2)).mean().item(), rel=1e-6)
    assert out["nll"].item() == pytest.approx(nll.mean().item(), rel=1e-6)


def test_actnorm_initializes_on_the_first_training_batch_and_keeps_it():
    torch.manual_seed(0)
    model = build_model("glow", tiny_config("glow"))
    ema = copy.deepcopy(model).eval()
    norms = [m for m in model.modules() if isinstance(m, ActNorm)]
    assert norms and not any(m.initialized for m in norms)
    seen = {}
    hooks = [m.register_forward_hook(lambda mod, inp, out, i=i: seen.__setitem__(i, out[0].detach()))
             for i, m in enumerate(norms)]
    batch = _batch(n=32)
    torch.manual_seed(1)
    model.loss(batch)                                  # training mode: initialise on this batch
    assert all(m.initialized for m in norms)
    for out in seen.values():                          # each actnorm's output: zero mean, unit std per channel
        assert torch.allclose(out.mean((0, 2, 3)), torch.zeros(out.shape[1]), atol=1e-4)
        assert torch.allclose(out.std((0, 2, 3), unbiased=False), torch.ones(out.shape[1]), atol=1e-3)
    for h in hooks:
        h.remove()
    before = copy.deepcopy(model.state_dict())
    model.loss(_batch(n=32, seed=7))                   # a second batch does not re-initialise
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # the flag travels with the weights (checkpoints) and with the trainer's EMA copy
    assert sum(k.endswith("initialized") for k in before) == len(norms)
    fresh = build_model("glow", tiny_config("glow"))
    fresh.load_state_dict(before)
    fresh.loss(_batch(n=32, seed=8))
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in before.items())
    ema_update(ema, model, 0.5)
    assert all(m.initialized for m in ema.modules() if isinstance(m, ActNorm))


def test_temperature_scales_the_noise_and_bad_values_are_refused():
    model = _tiny("realnvp")                 # priors N(0, I): sample(T) = f^-1(T eps)
    g = lambda: torch.Generator().manual_seed(4)   # noqa: E731
    gen = g()
    eps = [torch.randn((3, *s), generator=gen) for s in model.noise_shapes]
    want = model.inverse_flow([0.6 * e for e in eps]).clamp(0, 1)
    assert torch.allclose(model.sample(3, generator=g(), temperature=0.6), want, atol=1e-6)
    assert not torch.allclose(model.sample(3, generator=g(), temperature=1.0), want)
    cold = model.sample(3, generator=g(), temperature=0)
    assert torch.equal(cold[0], cold[1])     # temperature 0: the prior's mean, the same image every time
    for bad in (-0.5, float("nan"), float("inf"), "warm", True):
        with pytest.raises(ValueError, match="temperature must be a finite number >= 0"):
            model.sample(2, temperature=bad)


def test_conditional_prior_needs_labels_and_gives_each_class_its_own_density():
    model = _tiny("glow", conditional=True)
    assert model.conditional and not _tiny("glow").conditional
    x = _batch()["x"]
    with pytest.raises(ValueError, match="class-conditional"):
        model.log_prob(x)
    lp = torch.stack([model.log_prob(x, torch.full((len(x),), y)) for y in range(10)], 1)      # (B, 10)
    assert (lp.std(1) > 0.1).all()           # log p(x|y) differs across classes
    # a per-class table for every factored-out z and the top
    priors = [l.prior for l in model.flow if isinstance(l, Split)] + [model.top]
    assert [tuple(p.per_class.shape) for p in priors] == [(10, 2 * s[0], s[1], s[2]) for s in model.noise_shapes]
    a = model.sample(4, labels=torch.tensor([1, 1, 2, 2]), generator=torch.Generator().manual_seed(0))
    b = model.sample(4, labels=torch.tensor([1, 1, 3, 3]), generator=torch.Generator().manual_seed(0))
    assert torch.equal(a[:2], b[:2]) and not torch.equal(a[2:], b[2:])
    with pytest.raises(ValueError, match="num_classes"):
        build_model("glow", dataclasses.replace(default_config("glow"), conditional=True, num_classes=0))


def test_latents_invert_exactly_so_an_interpolation_path_ends_at_the_two_images():
    from genzoo.apps.edit import interpolate
    model = _tiny("glow", conditional=True)
    x = torch.round(torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(2)) * 255) / 255
    z = model.encode_latents(x, torch.tensor([5, 5]))
    assert z.shape == (2, 64) and model.prior_latents(3).shape == (3, 64)
    assert (model.decode(z, torch.tensor([5, 5])) - x).abs().max() < 1e-4
    strip = interpolate(model, 5, images=x, labels=torch.tensor([5]))
    assert (strip[0] - x[0]).abs().max() < 1e-4 and (strip[-1] - x[1]).abs().max() < 1e-4
    assert (strip[2] - x[0]).abs().max() > 0.05 and (strip[2] - x[1]).abs().max() > 0.05


def test_bad_config_values_are_refused():
    with pytest.raises(ValueError, match="divisible by 2 \\*\\* n_levels = 8"):
        FlowConfig(image_size=28, n_levels=3)
    with pytest.raises(ValueError, match="masks must be one of"):
        FlowConfig(masks="random")
    with pytest.raises(ValueError, match="logit_alpha"):
        FlowConfig(logit_alpha=0.5)
    assert main(["train", "glow", "--data", "digits", "--set", "binarize=true"]) == 2


# -- a short real training run through the CLI, shared by the tests below

STEPS = 150
TRAIN_SET = ["--set", "width=16", "--set", "res_blocks=1", "--set", "batch_size=64", "--set", "log_every_steps=50",
             "--set", "sample_every_steps=0", "--set", "coverage_every_steps=0"]


@pytest.fixture(scope="module")
def realnvp_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("flow") / "realnvp"
    # one thread: with two on a busy 2-core machine this run of many small convs took 20x longer (412 s vs 19 s
    # measured); the trainer's threads setting is process-wide, so the session's count is restored after it
    threads = torch.get_num_threads()
    try:
        assert main(["train", "realnvp", "--data", "digits", "--steps", str(STEPS), "--out", str(run),
                     "--no-progress", *TRAIN_SET, "--set", "threads=1"]) == 0
    finally:
        torch.set_num_threads(threads)
    return run


def _bpd_at_init(run) -> float:
    # the trainer's model at step 0: the same seed and init, actnorm set from the same first batch
    config = read_config(run)
    cfg, seed = config_from_dict(Flow.Config, config["model"]), config["train"]["seed"]
    torch.manual_seed(seed)
    model = build_model("realnvp", cfg)
    data = load_split("digits", "train")
    idx = BatchSampler(len(data.images), config["train"]["batch_size"], seed).next()
    with torch.no_grad():
        model.loss({"x": data.images[idx].float() / 255, "y": data.labels[idx]})
    return evaluate.likelihood(model.eval(), "digits", "test", iwae_k=1, seed=0, progress=False)["bpd"]


def test_training_on_digits_lowers_the_test_bits_per_dim(realnvp_run):
    summary = json.loads((realnvp_run / "summary.json").read_text())
    init = _bpd_at_init(realnvp_run)
    # measured: 7.65 bits/dim after actnorm init, 5.28 after 150 steps
    assert 6.5 < init < 8.5
    assert summary["bpd"] < init - 1.5, (summary["bpd"], init)
    weights = load_file(realnvp_run / "model.safetensors")
    flags = [v for k, v in weights.items() if k.endswith("initialized")]
    assert flags and all(bool(f) for f in flags)


def test_eval_bits_per_dim_is_the_formula_applied_to_log_prob(realnvp_run):
    out = realnvp_run / "eval-nll.json"
    assert main(["eval", str(realnvp_run), "--metrics", "nll", "--out", str(out), "--no-progress"]) == 0
    reported = json.loads(out.read_text())["metrics"]["bpd"]
    # independently: the seed-0 dequantized test set, log_prob of the EMA model, docs/metrics.md's formula
    model = genzoo.load(realnvp_run)
    k = load_split("digits", "test").images.float()
    x = (k + torch.rand(k.shape, generator=torch.Generator().manual_seed(0))) / 256
    with torch.no_grad():
        nll = -model.log_prob(x).double().mean().item()
    want = (nll / 64 + LN256) / math.log(2)
    assert reported == pytest.approx(want, abs=1e-5)
    assert json.loads((realnvp_run / "summary.json").read_text())["bpd"] == pytest.approx(want, abs=1e-4)


def test_temperature_reaches_sample_and_eval_through_the_cli(realnvp_run, tmp_path, capsys):
    import numpy as np
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    assert main(["sample", str(realnvp_run), "-n", "6", "--opt", "temperature=0.7", "--out", str(a)]) == 0
    assert main(["sample", str(realnvp_run), "-n", "6", "--out", str(b)]) == 0
    assert not np.array_equal(np.load(a)["images"], np.load(b)["images"])
    capsys.readouterr()
    assert main(["sample", str(realnvp_run), "--opt", "temperature=-1", "--out", str(a)]) == 2
    assert "temperature must be a number in [0, inf)" in " ".join(capsys.readouterr().err.split())
    ev = tmp_path / "ev.json"
    assert main(["eval", str(realnvp_run), "--metrics", "score", "--n", "100", "--opt", "temperature=0.7",
                 "--out", str(ev), "--no-progress"]) == 0
    assert json.loads(ev.read_text())["sample_options"] == {"temperature": 0.7}


def test_sampling_warns_when_the_inverse_overflows_instead_of_hiding_it():
    model = build_model("glow", tiny_config("glow")).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")             # a healthy flow samples without a word
        x = model.sample(4, generator=torch.Generator().manual_seed(0), temperature=0.5)
    assert torch.isfinite(x).all()
    acts = [m for m in model.modules() if isinstance(m, ActNorm)]
    with torch.no_grad():                          # the inverse of this actnorm multiplies by e^1000
        acts[0].log_scale.fill_(-1000.0)
    with pytest.warns(RuntimeWarning, match=r"4 of 4 samples overflowed.*lower temperature"):
        x = model.sample(4, generator=torch.Generator().manual_seed(0))
    assert ((x >= 0) & (x <= 1)).all()              # still images in [0, 1], drawn as mid-grey
