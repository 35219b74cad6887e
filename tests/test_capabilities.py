"""The capability contract (genzoo.models.base.Capabilities) over every registered preset at tiny size: each
capability a model declares works as the declaration promises, and each one it does not declare is refused by
genzoo's applications with a GenzooError that gives the reason (docs/python-api.md, "The model contract")."""
import dataclasses

import pytest
import torch

from genzoo.apps import classify, edit, ood, restore
from genzoo.errors import GenzooError
from genzoo.likelihood import binarize_fixed, dequantize_fixed, estimator_of, is_binarized
from genzoo.models import MODELS, build_model
from genzoo.models.base import check_sample_options, require
from genzoo.sampling import sample
from helpers import DeterministicAE, tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")   # tiny models: see conftest.py

SPEED = {"timesteps": 10}          # a diffusion model's T: its bound and DDPM sampler cost T passes
# beyond the presets: a declaration that only a config turns on (PixelVAE's binary option, class-conditional
# exact likelihoods)
VARIANTS = {"vae+pixel": ("vae", {"pixel_context": 3, "pixel_width": 8}),
            "glow+labels": ("glow", {"conditional": True}), "pixelcnn+labels": ("pixelcnn", {"conditional": True})}
CASES = sorted(MODELS) + sorted(VARIANTS)
B = 3                              # images per check


def _build(case: str):
    name, over = VARIANTS.get(case, (case, {}))
    cfg = tiny_config(name)
    fields = {f.name for f in dataclasses.fields(cfg)}
    torch.manual_seed(0)
    return build_model(name, dataclasses.replace(cfg, **{k: v for k, v in {**SPEED, **over}.items()
                                                        if k in fields})).eval()


_MODELS: dict = {}


def _get(case: str):
    if case not in _MODELS:
        _MODELS[case] = _build(case)
    return _MODELS[case]


def _declaring(has) -> list[str]:
    """The cases whose declaration satisfies ``has(capabilities)``, chosen when the tests are collected."""
    return [case for case in CASES if has(_get(case).capabilities)]


@pytest.fixture
def model(request):
    return _get(request.param)


def _labels(model):
    return torch.tensor([1, 2, 3][:B]) if model.capabilities.conditional else None


def _inputs(model, seed: int = 0) -> torch.Tensor:
    """What log_prob scores: binary images for a binarized model, dequantized 8-bit ones otherwise."""
    levels = torch.randint(0, 256, (B, 1, 8, 8), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)
    return binarize_fixed(levels) if is_binarized(model) else dequantize_fixed(levels)


def _in_range(opt):
    """A value of a declared option other than its default, inside its range."""
    if opt.type is bool:
        return not opt.default
    if opt.type is str:
        return next(c for c in opt.choices if c != opt.default)
    low = 0 if opt.low is None else opt.low
    if opt.high is not None:
        return opt.type((low + opt.high) / 2) if opt.type is float else int(low + opt.high) // 2
    return opt.type(low + (1 if opt.type is int else 0.5))


def _out_of_range(opt):
    if opt.type is bool:
        return "yes"
    if opt.type is str:
        return "no-such-choice"
    return opt.high + 1 if opt.high is not None else opt.low - 1


def _refused(call, *words):
    with pytest.raises(GenzooError) as e:
        call()
    for w in words:
        assert w in str(e.value), (w, str(e.value))


# -- what a model declares works

@pytest.mark.parametrize("model", _declaring(lambda c: c.likelihood.kind != "none"), indirect=True)
def test_a_declared_likelihood_scores_a_batch(model):
    declared = model.capabilities.likelihood
    assert declared.kind in ("exact", "bound", "estimate") and declared.estimator in ("exact", "iwae", "vlb", "ode")
    estimator, cost = estimator_of(model, k=2, steps=2)
    assert estimator == declared.estimator and cost == ({declared.knob: 2} if declared.knob else {})
    kw = dict(cost)
    if declared.stochastic:
        kw["generator"] = torch.Generator().manual_seed(0)
    with torch.no_grad():
        lp = model.log_prob(_inputs(model), _labels(model), **kw)
    assert lp.shape == (B,) and torch.isfinite(lp).all()
    if declared.stochastic:      # seeded: the same generator seed, the same estimate
        kw["generator"] = torch.Generator().manual_seed(0)
        with torch.no_grad():
            assert torch.equal(lp, model.log_prob(_inputs(model), _labels(model), **kw))
    if declared.knob_max:        # the cost knob's range is enforced where a user sets it
        _refused(lambda: estimator_of(model, k=declared.knob_max + 1, steps=declared.knob_max + 1),
                 "must be an integer between 1 and")
    if declared.elbo:
        with torch.no_grad():
            e = model.elbo(_inputs(model), _labels(model), generator=torch.Generator().manual_seed(0))
        assert e.shape == (B,) and torch.isfinite(e).all()


@pytest.mark.parametrize("model", _declaring(lambda c: c.latents), indirect=True)
def test_declared_latents_decode_and_an_encoder_maps_into_them(model):
    caps = model.capabilities
    with torch.no_grad():
        z = model.prior_latents(B, generator=torch.Generator().manual_seed(0))
        x = model.decode(z, _labels(model))
        assert x.shape == (B, 1, 8, 8) and x.min() >= 0 and x.max() <= 1
        if caps.encode:
            assert model.encode_latents(torch.rand(B, 1, 8, 8), _labels(model)).shape == z.shape
        if caps.reconstruct:
            rec = model.reconstruct(torch.rand(B, 1, 8, 8), _labels(model))
            assert rec.shape == (B, 1, 8, 8) and rec.min() >= 0 and rec.max() <= 1
        for code in caps.traversable_codes[:1]:
            grid = model.traverse(code, n_rows=2, n_cols=3, generator=torch.Generator().manual_seed(0))
            assert grid.shape[0] % 2 == 0 and grid.shape[1:] == (1, 8, 8)


@pytest.mark.parametrize("model", _declaring(lambda c: c.completion), indirect=True)
def test_declared_completion_completes_given_pixels(model):
    caps = model.capabilities
    x, labels = (torch.rand(B, 1, 8, 8) > 0.5).float(), _labels(model)
    with torch.no_grad():
        if caps.completion == "autoregressive":
            known = torch.zeros(B, 1, 8, 8, dtype=torch.bool)
            known[..., :4, :] = True
            out = model.complete(x, known, labels, torch.Generator().manual_seed(0))
            assert out.shape == x.shape and torch.equal(out[known], x[known])
            assert torch.isfinite(model.value_log_probs(out, labels)).all()
        else:
            assert caps.completion == "diffusion"
            T = len(model.alphas_cumprod)
            t = torch.full((B,), T - 1, dtype=torch.long)
            assert model.q_sample(x * 2 - 1, t, torch.randn_like(x)).shape == x.shape
            assert model.predict_eps(x, t, labels).shape == x.shape
            if caps.null_label:    # classifier-free guidance's "no class" is a label predict_eps takes
                null = torch.full((B,), model.null_label, dtype=torch.long)
                assert model.predict_eps(x, t, null).shape == x.shape


@pytest.mark.parametrize("model", CASES, indirect=True)
def test_every_declared_sampling_option_samples_in_range_and_refuses_out_of_it(model):
    caps = model.capabilities
    labels = _labels(model)
    base = sample(model, B, seed=0, labels=labels)           # a conditional model with labels (B,)
    assert base.shape == (B, 1, 8, 8) and base.min() >= 0 and base.max() <= 1
    assert torch.equal(base, sample(model, B, seed=0, labels=labels))
    for opt in caps.sample_options:
        if opt.default is not None:
            assert check_sample_options(model, {opt.name: opt.default}) == {opt.name: opt.default}
        value = _in_range(opt)
        x = sample(model, B, seed=0, labels=labels, options={opt.name: value})
        assert x.shape == (B, 1, 8, 8) and x.min() >= 0 and x.max() <= 1, opt.name
        _refused(lambda: check_sample_options(model, {opt.name: _out_of_range(opt)}), opt.name)
        _refused(lambda: sample(model, B, seed=0, labels=labels, options={opt.name: _out_of_range(opt)}), opt.name)
    names = ", ".join(o.name for o in caps.sample_options) or "none"
    _refused(lambda: check_sample_options(model, {"no_such_option": 1}), "no sampling option 'no_such_option'", names)


# -- what it does not declare is refused with the reason

@pytest.mark.parametrize("model", CASES, indirect=True)
def test_what_a_model_does_not_declare_is_refused_with_the_reason(model):
    caps, name = model.capabilities, type(model).__name__
    x = torch.rand(2, 1, 8, 8)
    if caps.likelihood.kind == "none":
        assert caps.likelihood.reason
        _refused(lambda: estimator_of(model), "defines none", caps.likelihood.reason)
        _refused(lambda: ood.log_likelihoods(model, x), "OOD scoring needs a likelihood", caps.likelihood.reason)
    if not caps.conditional:
        _refused(lambda: classify.likelihood_estimator(model), "Bayes classifier", f"this {name} is unconditional")
    elif caps.likelihood.kind == "none":
        _refused(lambda: classify.likelihood_estimator(model), "Bayes classifier needs a likelihood",
                 caps.likelihood.reason)
    if not caps.latents:
        _refused(lambda: edit.interpolate(model, 4, seeds=(0, 1)), "interpolation", "has no latent space")
    elif not caps.encode:
        _refused(lambda: edit.interpolate(model, 4, images=x, labels=_labels(model)), "cannot map images",
                 "no encoder")
    if not (caps.latents and caps.encode):
        _refused(lambda: edit.class_edit(model, x, 1, 2), "cannot edit an image's class", "no encoder")
    if not caps.reconstruct:
        _refused(lambda: require(model, "reconstruct", "a reconstruction"), f"this {name} does not reconstruct")
    if caps.completion != "autoregressive":
        _refused(lambda: restore.complete_importance(model, x, torch.ones_like(x, dtype=torch.bool)),
                 "no autoregressive completion")
    if caps.completion != "diffusion" and not caps.latents:     # autoregressive completion, or no restorer at all
        _refused(lambda: restore.restore(model, x, "center", task="denoise"),
                 "cannot denoise" if caps.completion else "cannot restore images")


def test_a_model_that_declares_nothing_is_refused_everywhere():
    model = DeterministicAE(DeterministicAE.Config()).eval()
    x = torch.rand(2, 1, 8, 8)
    assert model.capabilities.likelihood.kind == "none" and not model.capabilities.sample_options
    _refused(lambda: estimator_of(model, purpose="scoring"), "scoring needs a likelihood", "defines none")
    _refused(lambda: restore.restore(model, x, "center"), "cannot restore images", "no latent space")
    _refused(lambda: edit.interpolate(model, 4, seeds=(0, 1)), "no latent space")
    _refused(lambda: sample(model, 2, options={"temperature": 0.5}), "no sampling option", "none")
