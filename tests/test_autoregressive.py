"""The autoregressive family: causality over every position and colour channel, the blind spot, normalisation
against brute-force enumeration, the sampler against the one-pass likelihood, completion, and a real training
run through the CLI."""
import dataclasses
import itertools
import json
import math

import pytest
import torch

from genzoo.cli import main
from genzoo.likelihood import mean_bound
from genzoo.data import load_split
from genzoo.models import build_model, default_config
from genzoo.models.autoregressive import AutoregressiveConfig
from genzoo.models.autoregressive_nets import PAD
from genzoo.nn import MaskedConv2d

PRESETS = ("pixelcnn", "gated-pixelcnn", "pixelrnn", "pixel-transformer")


def _model(name, channels=1, size=4, binarize=True, conditional=False, width=12, res_blocks=2, sharpen=3.0):
    """A small float64 model of a preset; ``sharpen`` scales the weights so the conditionals depend strongly
    on their inputs (at init they are near uniform, which would hide a normalisation error)."""
    cfg = dataclasses.replace(default_config(name), channels=channels, image_size=size, num_classes=10,
                              binarize=binarize, conditional=conditional, width=width, res_blocks=res_blocks,
                              heads=2)
    torch.manual_seed(0)
    model = build_model(name, cfg).double().eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim > 1:
                p.mul_(sharpen)
    return model


def _dependence(model, labels=None):
    """(D, D) bool over the D = C H W values in autoregressive order (pixel-major, then R, G, B):
    dep[p, q] is True when the predicted distribution at p has a nonzero gradient w.r.t. input value q at any
    of 8 random inputs (one input alone can leave every ReLU of a small head off)."""
    c, s = model.config.channels, model.config.image_size
    g = torch.Generator().manual_seed(1)
    inp = (torch.rand(8, c, s, s, generator=g, dtype=torch.float64) * 2 - 1).requires_grad_()
    out = model.net(inp, None if labels is None else labels.expand(8)).view(8, c, model.k_out, s, s)
    proj = torch.randn(model.k_out, generator=g, dtype=torch.float64)       # a random functional of the logits
    dep = torch.zeros(c * s * s, c * s * s, dtype=torch.bool)
    for i, j, ch in itertools.product(range(s), range(s), range(c)):
        grad, = torch.autograd.grad((out[:, ch, :, i, j] * proj).sum(), inp, retain_graph=True)
        dep[(i * s + j) * c + ch] = (grad != 0).any(0).permute(1, 2, 0).flatten()   # (H, W, C) = autoregressive order
    return dep


@pytest.mark.parametrize("name", PRESETS)
@pytest.mark.parametrize("channels,binarize,conditional", [(1, True, False), (3, False, True)])
def test_each_value_depends_only_on_values_before_it(name, channels, binarize, conditional):
    model = _model(name, channels, 4, binarize, conditional)
    labels = torch.tensor([3]) if conditional else None
    dep = _dependence(model, labels)
    d = dep.shape[0]
    future = torch.ones(d, d, dtype=torch.bool).triu()                     # q >= p, itself included
    assert not dep[future].any(), f"{name} sees (p, q) = {dep.logical_and(future).nonzero()[:5].tolist()}"
    # the value just before (the previous channel of the pixel, or the previous pixel's last channel) counts;
    # on a 4-wide image the 7x7 first layer reaches the end of the row above even for pixelcnn and pixelrnn,
    # whose context on wider images misses the upper right (see the blind-spot test)
    assert dep.diagonal(-1).all(), f"{name} ignores its predecessor at {(~dep.diagonal(-1)).nonzero().tolist()}"


def test_the_causality_check_catches_a_mask_b_first_layer():
    model = _model("pixelcnn", 3, 4)
    model.net.conv_in = MaskedConv2d(3, model.net.conv_in.out_channels, 7, "B", 3).double()    # sees itself
    assert _dependence(model).diagonal().any()


def test_gated_pixelcnn_has_no_blind_spot_and_pixelcnn_has():
    # 6x6, four layers: enough for the gated stacks to reach every earlier pixel
    strict_past = torch.ones(36, 36, dtype=torch.bool).tril(-1)
    for name in ("gated-pixelcnn", "pixel-transformer"):
        dep = _dependence(_model(name, 1, 6, res_blocks=4))
        assert dep[strict_past].all(), f"{name}: {(~dep & strict_past).nonzero()[:5].tolist()}"
    dep = _dependence(_model("pixelcnn", 1, 6, res_blocks=4))
    blind = ~dep & strict_past
    # pixel (1, 0) cannot see (0, 4) and (0, 5): right of the triangle a stack of masked convs reaches
    assert blind[6, 4] and blind[6, 5] and not dep[6, :6][4:].any()
    assert not dep[strict_past].all()


def _all_binary(c, s):
    d = c * s * s
    bits = torch.tensor(list(itertools.product((0.0, 1.0), repeat=d)), dtype=torch.float64)
    return bits.view(-1, s, s, c).permute(0, 3, 1, 2).contiguous()      # (2^D, C, H, W)


@pytest.mark.parametrize("name", PRESETS)
def test_log_prob_sums_to_one_over_every_image(name):
    # Bernoulli: all 16 binary 2x2 images, and all 4096 of 3x2x2; unconditional and for a class
    for c, cond in ((1, False), (1, True), (3, False)):
        model = _model(name, c, 2, conditional=cond)
        x = _all_binary(c, 2)
        labels = torch.full((len(x),), 7) if cond else None
        lp = model.log_prob(x, labels)
        assert torch.logsumexp(lp, 0).item() == pytest.approx(0.0, abs=1e-9), (c, cond)
        assert lp.std() > 0.1                                               # not a uniform distribution
    # 256-way softmax: all 65,536 2-channel 1x1 images, read from dequantized (k + u) / 256, offset removed
    for cond in (False, True):
        model = _model(name, 2, 1, binarize=False, conditional=cond)
        k = torch.tensor(list(itertools.product(range(256), repeat=2)), dtype=torch.float64).view(-1, 2, 1, 1)
        u = torch.rand(k.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        labels = torch.full((len(k),), 2) if cond else None
        lp = model.log_prob((k + u) / 256, labels) - 2 * math.log(256)
        assert torch.logsumexp(lp, 0).item() == pytest.approx(0.0, abs=1e-9), cond
        assert torch.equal(model._target(k / 255), k)                       # training images read back as k


def test_levels_of_training_images_are_round_255x():
    model = _model("pixelcnn", binarize=False)
    k = torch.arange(256, dtype=torch.float64)
    assert torch.equal(model._target(k / 255), k) and torch.equal(torch.round(255 * (k / 255)), k)


@pytest.mark.parametrize("name", PRESETS)
def test_the_sampler_steps_give_the_same_conditionals_as_one_pass(name):
    # the cached one-position-at-a-time path that sample() and complete() use, against forward()
    for c, binarize, cond in ((1, True, False), (3, False, True)):
        model = _model(name, c, 5, binarize, cond)
        labels = torch.tensor([1, 8]) if cond else None
        g = torch.Generator().manual_seed(0)
        k = torch.randint(0, model.levels, (2, c, 5, 5), generator=g).double()
        want = model.net(model._input(k), labels).view(2, c, -1, 5, 5)
        xp = k.new_zeros(2, c, PAD + 5, 5 + 2 * PAD)
        xp[:, :, PAD:, PAD:PAD + 5] = model._input(k)
        cache = model.net.start(xp)
        for i, j, ch in itertools.product(range(5), range(5), range(c)):
            got = model.net.step(xp, cache, i, j, ch, labels).view(2, c, -1)[:, ch]
            assert torch.allclose(got, want[:, ch, :, i, j], atol=1e-10), (c, i, j, ch)


@pytest.mark.parametrize("name", PRESETS)
def test_samples_follow_the_model_distribution(name):
    # frequencies of the 16 binary 2x2 images in 4000 draws against exp(log_prob); sd of each <= 0.008
    model = _model(name, 1, 2)
    x = _all_binary(1, 2)
    p = model.log_prob(x).exp()
    s = model.sample(4000, generator=torch.Generator().manual_seed(0)).double()
    index = (s.flatten(1) * 2 ** torch.arange(3, -1, -1, dtype=torch.float64)).sum(1).long()   # as _all_binary
    freq = torch.bincount(index, minlength=16).double() / len(s)
    assert (freq - p).abs().max() < 0.035, (freq, p)
    assert p.max() > 0.1                                                # not uniform (1/16)


@pytest.mark.parametrize("name", PRESETS)
def test_completion_keeps_known_values_and_is_seeded(name):
    model = _model(name, 3, 4, binarize=False, conditional=True).float()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 4, 4, generator=g)                              # not on the k / 255 grid on purpose
    known = torch.rand(3, 1, 4, 4, generator=g) < 0.5                    # per pixel, all channels
    labels = torch.tensor([0, 4, 9])
    a = model.complete(x, known, labels, generator=torch.Generator().manual_seed(5))
    b = model.complete(x, known, labels, generator=torch.Generator().manual_seed(5))
    c = model.complete(x, known, labels, generator=torch.Generator().manual_seed(6))
    k3 = known.expand_as(x)
    assert torch.equal(a[k3], x[k3])                                       # exactly, bit for bit
    assert torch.equal(a, b) and not torch.equal(a[~k3], c[~k3])
    assert torch.equal(a[~k3] * 255, (a[~k3] * 255).round())              # drawn values are levels k / 255
    assert torch.equal(model.complete(x, torch.ones_like(known), labels), x)
    # nothing known: completion is sampling, draw for draw
    none = model.complete(x, torch.zeros_like(known), labels, generator=torch.Generator().manual_seed(5))
    assert torch.equal(none, model.sample(3, labels, generator=torch.Generator().manual_seed(5)))
    with pytest.raises(ValueError, match="class-conditional"):
        model.complete(x, known)


def test_conditional_model_needs_labels_and_uses_them():
    model = _model("gated-pixelcnn", 1, 2, conditional=True)
    x = _all_binary(1, 2)
    with pytest.raises(ValueError, match="labels"):
        model.log_prob(x)
    assert not torch.allclose(model.log_prob(x, torch.full((16,), 1)), model.log_prob(x, torch.full((16,), 2)))


def test_binarized_and_8bit_likelihoods_are_what_evaluation_expects():
    from genzoo.likelihood import is_binarized
    declared = _model("pixelcnn").capabilities.likelihood
    assert (declared.kind, declared.estimator, declared.elbo) == ("exact", "exact", False)
    assert is_binarized(_model("pixelcnn")) and not is_binarized(_model("pixelcnn", binarize=False))
    assert AutoregressiveConfig(binarize=False).likelihood == "categorical"
    with pytest.raises(ValueError, match="binary"):
        _model("pixelcnn").log_prob(torch.full((1, 1, 4, 4), 0.5, dtype=torch.float64))
    with pytest.raises(ValueError, match="heads"):
        AutoregressiveConfig(arch="transformer", width=10, heads=4)


def test_pixelcnn_trained_on_digits_through_the_cli_beats_its_init(tmp_path):
    run = tmp_path / "run"
    assert main(["train", "pixelcnn", "--data", "digits", "--steps", "150", "--out", str(run), "--no-progress",
                 "--set", "width=32", "--set", "res_blocks=4", "--set", "sample_every_steps=0",
                 "--set", "ckpt_every_steps=0", "--set", "coverage_every_steps=0"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    config = json.loads((run / "config.json").read_text())
    torch.manual_seed(0)
    init = build_model("pixelcnn", AutoregressiveConfig(**config["model"])).eval()
    test = load_split("digits", "test")
    nll_init = -mean_bound(init, test.images, "exact", progress=False)
    assert math.isfinite(summary["nll_nats"]) and summary["nll_nats"] < 0.7 * nll_init, (summary, nll_init)
