"""The Bayes classifier (genzoo.apps.classify, `genzoo classify`): Bayes' rule against a float64 hand computation from
log_prob, refusals by capability, the noise, and the command on a conditional VAE trained on digits."""
import dataclasses
import json
import math

import pytest
import torch
from PIL import Image

from genzoo.apps.classify import add_noise, class_log_likelihoods, likelihood_estimator, model_inputs, posterior
from genzoo.classifier import accuracy, load_frozen
from genzoo.cli import main
from genzoo.data import load_split
from genzoo.errors import GenzooError
from genzoo.likelihood import binarize_fixed, dequantize_fixed
from genzoo.models import build_model
from helpers import tiny_args, tiny_config


def _model(name, **over):
    torch.manual_seed(0)
    return build_model(name, dataclasses.replace(tiny_config(name), **over)).eval()


def _images(n=5, seed=1):
    return torch.randint(0, 256, (n, 1, 8, 8), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def _hand_posterior(ll: list[list[float]], log_p: list[float]) -> list[list[float]]:
    # Bayes' rule one row at a time in Python floats (float64), max-shifted
    out = []
    for row in ll:
        joint = [a + b for a, b in zip(row, log_p)]
        m = max(joint)
        z = sum(math.exp(j - m) for j in joint)
        out.append([math.exp(j - m) / z for j in joint])
    return out


@pytest.mark.parametrize("name", ["glow", "pixelcnn"])
def test_exact_models_posterior_is_bayes_rule_on_log_prob(name):
    model = _model(name, conditional=True)
    assert likelihood_estimator(model)[0] == "exact"
    x = _images()
    # the evaluation's inputs, built here from genzoo.likelihood directly
    xp = binarize_fixed(x, 0) if name == "pixelcnn" else dequantize_fixed(x, 0)
    hand = [[model.log_prob(xp, labels=torch.full((len(x),), c)).double()[i].item() for c in range(10)]
            for i in range(len(x))]
    ll = class_log_likelihoods(model, x, batch_size=2)          # batches of 2: the split must not matter
    assert ll.dtype == torch.float64 and ll.shape == (5, 10)
    assert torch.allclose(ll, torch.tensor(hand, dtype=torch.float64), rtol=0, atol=1e-4)
    post = posterior(log_likelihoods=ll)
    assert torch.allclose(post.sum(1), torch.ones(5, dtype=torch.float64), rtol=0, atol=1e-12)
    uniform = _hand_posterior(ll.tolist(), [-math.log(10)] * 10)
    assert torch.allclose(post, torch.tensor(uniform, dtype=torch.float64), rtol=0, atol=1e-12)
    freqs = torch.arange(1, 11, dtype=torch.float64)            # a non-uniform prior moves the posterior
    prior = [math.log(f / 55) for f in range(1, 11)]
    post_f = posterior(log_likelihoods=ll, class_frequencies=freqs)
    assert torch.allclose(post_f, torch.tensor(_hand_posterior(ll.tolist(), prior), dtype=torch.float64),
                          rtol=0, atol=1e-12)
    assert not torch.allclose(post_f, post)
    # posterior(model, x) = the same numbers from images in [0, 1] (another batch size: float32 convolutions may
    # sum in another order, so agreement is to float32 precision)
    assert torch.allclose(posterior(model, x.float() / 255, batch_size=5), post, rtol=0, atol=1e-6)


def test_cvae_uses_the_iwae_bound_with_the_same_draws_for_every_class():
    model = _model("cvae")
    est, kw = likelihood_estimator(model, k=7)
    assert (est, kw) == ("iwae", {"k": 7})
    x = _images(4)
    xp = binarize_fixed(x, 3)                                   # the seed seeds the binarization too
    g = lambda: torch.Generator().manual_seed(3 * 1_000_003 + 1)       # noqa: E731  (the documented seeding)
    hand = torch.stack([model.log_prob(xp, labels=torch.full((4,), c), k=7, generator=g()).double()
                        for c in range(10)], 1)
    ll = class_log_likelihoods(model, x, k=7, seed=3, batch_size=4)
    assert torch.allclose(ll, hand, rtol=0, atol=1e-4)
    assert torch.equal(ll, class_log_likelihoods(model, x, k=7, seed=3, batch_size=4))       # seeded
    post = posterior(model, x, k=7, seed=3, batch_size=4)
    assert torch.allclose(post.sum(1), torch.ones(4, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(post, torch.tensor(_hand_posterior(ll.tolist(), [-math.log(10)] * 10),
                                             dtype=torch.float64), atol=1e-12)


def test_conditional_diffusion_uses_its_bound_from_K_steps_with_the_same_draws_for_every_class():
    model = _model("ddpm-cfg", timesteps=10)
    with torch.no_grad():                                          # not the zero-initialised output layer
        for p in model.parameters():
            p.normal_(0, 0.1)
    assert likelihood_estimator(model, steps=3) == ("vlb", {"steps": 3})
    x = _images(4)
    xp = dequantize_fixed(x, 2)
    g = lambda: torch.Generator().manual_seed(2 * 1_000_003 + 1)       # noqa: E731  (the documented seeding)
    hand = torch.stack([model.log_prob(xp, labels=torch.full((4,), c), steps=3, generator=g()).double()
                        for c in range(10)], 1)
    ll = class_log_likelihoods(model, x, steps=3, seed=2, batch_size=4)
    assert torch.allclose(ll, hand, rtol=0, atol=1e-6)
    assert not torch.allclose(ll[:, 0], ll[:, 1])                  # the label changes the bound
    post = posterior(model, x, steps=3, seed=2, batch_size=4)
    assert torch.allclose(post.sum(1), torch.ones(4, dtype=torch.float64), atol=1e-12)
    for bad in (0, 11, 2.5):
        with pytest.raises(GenzooError, match="steps must be"):
            class_log_likelihoods(model, x, steps=bad)


@pytest.mark.parametrize("name,over,reason", [
    ("vae", {}, "unconditional"),
    ("glow", {}, "unconditional"),
    ("cgan", {}, "defines none"),
    ("cvae", {"adversarial": True}, "defines none"),
    ("ddpm", {"timesteps": 10}, "unconditional"),
])
def test_refuses_models_without_classes_or_a_usable_likelihood(name, over, reason):
    model = _model(name, **over)
    with pytest.raises(GenzooError, match=reason):
        class_log_likelihoods(model, _images(2))
    with pytest.raises(GenzooError, match=reason):
        posterior(model, _images(2))


def test_noise_is_seeded_clipped_and_of_the_stated_std():
    x = torch.full((200, 1, 8, 8), 128, dtype=torch.uint8)
    assert add_noise(x, 0.0) is x
    a, b = add_noise(x, 0.05, seed=4), add_noise(x, 0.05, seed=4)
    assert torch.equal(a, b) and not torch.equal(a, add_noise(x, 0.05, seed=5))
    d = (a.double() - 128) / 255                               # mid-grey, 2.6 std from either end: no clipping
    assert abs(d.std().item() - 0.05) < 0.0015                 # 12,800 draws, rounded to 1/255
    edge = add_noise(torch.full((50, 1, 8, 8), 250, dtype=torch.uint8), 0.5, seed=0)
    assert edge.max() == 255 and (edge == 255).double().mean() > 0.4     # clipped at 1, not wrapped
    with pytest.raises(GenzooError):
        add_noise(x, -0.1)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("classify")
    common = ["--data", "digits", "--no-progress", "--set", "batch_size=64", "--set", "coverage_every_steps=0",
              "--set", "sample_every_steps=0", "--set", "final_eval=false"]
    # long enough for a conditional VAE on 8x8 digits to classify far above chance (87% after 1500 steps)
    assert main(["train", "cvae", "--steps", "800", "--out", str(root / "cvae"), *common,
                 "--set", "width=16"]) == 0
    assert main(["train", "vae", "--steps", "5", "--out", str(root / "vae"), *common, *tiny_args("vae")]) == 0
    return root


def test_classify_test_set_command(runs, capsys):
    out = runs / "c.json"
    assert main(["classify", str(runs / "cvae"), "--test", "--iwae-k", "16", "--noise-std", "0.2", "--out",
                 str(out), "--no-progress"]) == 0
    res = json.loads(out.read_text())
    assert res["estimator"] == "IWAE bound on log p(x|y), k = 16" and res["prior"] == "uniform"
    assert res["n"] == 300 and [r["noise_std"] for r in res["by_noise"]] == [0.0, 0.2]
    assert res["bayes_acc"] > 0.6                              # chance is 0.1
    test = load_split("digits", "test")
    assert res["discriminative_acc"] == pytest.approx(accuracy(load_frozen("digits")[0], test.images, test.labels),
                                                      abs=1e-6)
    noisy = res["by_noise"][1]
    assert noisy["bayes_acc"] < res["bayes_acc"] + 0.05 and noisy["discriminative_acc"] < res["discriminative_acc"]
    for key in ("model", "run", "command", "machine", "checkpoint", "inputs", "noise"):
        assert key in res, key
    printed = capsys.readouterr().out
    assert "bayes_acc" in printed and "discriminative" in printed


def test_classify_images_prints_the_posterior(runs, tmp_path, capsys):
    test = load_split("digits", "test")
    paths = []
    for i in range(2):
        p = tmp_path / f"d{i}.png"
        Image.fromarray(test.images[i, 0].numpy()).save(p)
        paths.append(str(p))
    assert main(["classify", str(runs / "cvae"), "--image", *paths, "--iwae-k", "8"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and lines[0].startswith(paths[0]) and "IWAE bound" in lines[2]
    probs = [float(v) for v in lines[0].split("p(y|x) = ")[1].split(", ")]
    assert len(probs) == 10 and sum(probs) == pytest.approx(1, abs=1e-2)


def _one_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert lines[0].startswith("genzoo: error: ") and all(line.startswith("  ") for line in lines[1:]), err
    assert "Traceback" not in err
    return " ".join(line.strip() for line in lines)


def test_classify_errors_are_one_clear_line(runs, capsys):
    cases = [("vae", ["--test"], "unconditional"),
             ("cvae", [], "one of the two"),
             ("cvae", ["--image", str(runs / "missing.png")], "does not exist"),
             ("cvae", ["--test", "--n", "0"], "between 1 and 300"),
             ("cvae", ["--test", "--noise-std", "-1"], "noise std"),
             ("cvae", ["--test", "--iwae-k", "0"], "k must be an integer between 1 and 100000")]
    for run, argv, reason in cases:
        assert main(["classify", str(runs / run), *argv, "--no-progress"]) == 2, argv
        assert reason in _one_error(capsys.readouterr().err), argv


def test_a_mixture_of_models_is_the_log_mean_of_their_likelihoods():
    a = _model("glow", conditional=True)
    torch.manual_seed(1)
    b = build_model("glow", dataclasses.replace(tiny_config("glow"), conditional=True)).eval()
    x = _images()
    xp = dequantize_fixed(x, 0)
    hand = [[math.log(0.5 * math.exp(a.log_prob(xp, labels=torch.full((5,), c)).double()[i].item())
                      + 0.5 * math.exp(b.log_prob(xp, labels=torch.full((5,), c)).double()[i].item()))
             for c in range(10)] for i in range(5)]
    mixed = class_log_likelihoods([a, b], x, batch_size=2)
    assert torch.allclose(mixed, torch.tensor(hand, dtype=torch.float64), rtol=0, atol=1e-4)
    assert torch.allclose(class_log_likelihoods([a, a], x), class_log_likelihoods(a, x), rtol=0, atol=1e-9)
    post = posterior([a, b], x)
    assert torch.allclose(post.sum(1), torch.ones(5, dtype=torch.float64), rtol=0, atol=1e-12)


def test_a_mixture_of_vaes_scores_each_member_with_the_same_draws():
    a = _model("vae", conditional=True)
    torch.manual_seed(3)
    b = build_model("vae", dataclasses.replace(tiny_config("vae"), conditional=True)).eval()
    x = _images()
    each = torch.stack([class_log_likelihoods(m, x, k=7, seed=4) for m in (a, b)])
    assert torch.allclose(class_log_likelihoods([a, b], x, k=7, seed=4), each.logsumexp(0) - math.log(2),
                          rtol=0, atol=1e-9)


def test_a_mixture_refuses_members_that_do_not_match():
    cvae = _model("vae", conditional=True)
    with pytest.raises(GenzooError, match="differently|different inputs"):
        likelihood_estimator([cvae, _model("glow", conditional=True)])
    with pytest.raises(GenzooError, match="num_classes"):
        class_log_likelihoods([cvae, _model("vae", conditional=True, num_classes=4)], _images())
    with pytest.raises(GenzooError, match="at least one"):
        likelihood_estimator([])


def test_classify_a_mixture_of_runs(runs, capsys):
    one, two = runs / "one.json", runs / "two.json"
    base = ["--test", "--iwae-k", "4", "--n", "60", "--no-progress"]
    assert main(["classify", str(runs / "cvae"), *base, "--out", str(one)]) == 0
    assert main(["classify", str(runs / "cvae"), "--mix", str(runs / "cvae"), *base, "--out", str(two)]) == 0
    single, mixed = json.loads(one.read_text()), json.loads(two.read_text())
    # a run mixed with itself is the run: the same log-likelihoods, so the same predictions
    assert mixed["bayes_acc"] == single["bayes_acc"] and mixed["mixture_of"] == 2
    assert mixed["mixture_runs"] == [str(runs / "cvae")] * 2 and "mixture of 2 models" in mixed["estimator"]
    capsys.readouterr()
    assert main(["classify", str(runs / "cvae"), "--mix", str(runs / "vae"), *base]) == 2
    assert "unconditional" in _one_error(capsys.readouterr().err)


@pytest.mark.parametrize("name", ["pixelcnn", "glow"])
def test_draws_average_log_p_over_binarizations_or_dequantizations(name):
    model = _model(name, conditional=True)
    x = _images(4)
    prepare = binarize_fixed if name == "pixelcnn" else dequantize_fixed
    # the mean over seeds 2, 3, 4 of exact log p(x_d|y), x_d the draw of seed d, in float64 from log_prob
    hand = torch.stack([torch.stack([model.log_prob(prepare(x, d), labels=torch.full((4,), c)).double()
                                     for c in range(10)], 1) for d in (2, 3, 4)]).mean(0)
    ll = class_log_likelihoods(model, x, seed=2, draws=3, batch_size=3)
    assert torch.allclose(ll, hand, rtol=0, atol=1e-4)
    assert not torch.allclose(ll, class_log_likelihoods(model, x, seed=2), rtol=0, atol=1e-3)
    post = posterior(model, x, seed=2, draws=3)
    assert torch.allclose(post.sum(1), torch.ones(4, dtype=torch.float64), rtol=0, atol=1e-12)


def test_draws_converge_to_the_cross_entropy_from_the_grey_image():
    # A PixelCNN with zero weights and an output bias b has p(x_i = 1 | y) = s = sigmoid(b) at every pixel, so the
    # mean of log p(b|y) over binarizations b ~ Bernoulli(grey x) tends to sum_i x_i log s + (1 - x_i) log(1 - s).
    model = _model("pixelcnn", conditional=True)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.net.head.out.bias.fill_(1.5)
    x = _images(3)
    grey = x.double().flatten(1) / 255
    log_s, log_1ms = math.log(torch.sigmoid(torch.tensor(1.5, dtype=torch.float64))), math.log(
        torch.sigmoid(torch.tensor(-1.5, dtype=torch.float64)))
    closed = (grey * log_s + (1 - grey) * log_1ms).sum(1)
    se = ((grey * (1 - grey)).sum(1) * (log_s - log_1ms) ** 2 / 400).sqrt()    # std of a 400-draw mean
    ll = class_log_likelihoods(model, x, draws=400, seed=5)
    assert torch.allclose(ll, ll[:, :1].expand_as(ll))                 # no weights: no class tells apart
    assert ((ll[:, 0] - closed).abs() < 5 * se).all(), (ll[:, 0], closed, se)
    one = class_log_likelihoods(model, x, seed=5)[:, 0]                # one draw: 20 times the spread
    assert ((one - closed).abs() > 5 * se).any()


def test_draws_are_checked_and_a_subset_sees_the_draws_of_the_whole_split():
    model = _model("vae", conditional=True)
    for bad in (0, -1, True, 1.5, 1001):
        with pytest.raises(GenzooError, match="draws must be"):
            class_log_likelihoods(model, _images(), k=2, draws=bad)
    with pytest.raises(GenzooError, match="prepared"):
        class_log_likelihoods(model, binarize_fixed(_images(), 0), k=2, draws=2, prepared=True)
    # bayes_accuracy scores the first n test images as drawn with the whole split: the draws go image by image
    x = _images(50, seed=7)
    for prepare in (binarize_fixed, dequantize_fixed):
        assert torch.equal(prepare(x, 3)[:17], prepare(x[:17], 3))


def test_classify_with_draws(runs, capsys):
    out = runs / "draws.json"
    assert main(["classify", str(runs / "cvae"), "--test", "--iwae-k", "4", "--n", "60", "--draws", "2",
                 "--no-progress", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["draws"] == 2 and "averaged over 2 binarizations" in res["estimator"]
    assert res["inputs"].startswith("binarized 2 times (seeds 0 to 1)")
    import genzoo
    test = load_split("digits", "test")
    ll = class_log_likelihoods(genzoo.load(runs / "cvae"), test.images[:60], k=4, draws=2)
    assert res["bayes_acc"] == pytest.approx((ll.argmax(1) == test.labels[:60]).double().mean().item(), abs=1e-12)
    capsys.readouterr()
    assert main(["classify", str(runs / "cvae"), "--test", "--draws", "0", "--no-progress"]) == 2
    assert "draws must be" in _one_error(capsys.readouterr().err)


def test_threshold_scores_the_grey_image_at_one_half():
    # a binarized model scores 1 where the 8-bit level is at least 128, the same image whatever the seed; exact
    # log p of that image, class by class, from log_prob itself
    model = _model("pixelcnn", conditional=True)
    x = _images(4)
    hand_x = (x >= 128).float()
    assert torch.equal(model_inputs(model, x, seed=3, binarize="threshold"), hand_x)
    assert torch.equal(model_inputs(model, x.float() / 255, binarize="threshold"), hand_x)   # floats read as levels
    hand = torch.stack([model.log_prob(hand_x, labels=torch.full((4,), c)).double() for c in range(10)], 1)
    for seed in (0, 7):
        ll = class_log_likelihoods(model, x, seed=seed, binarize="threshold", batch_size=3)
        assert torch.allclose(ll, hand, rtol=0, atol=1e-4)
    assert not torch.allclose(class_log_likelihoods(model, x), hand, rtol=0, atol=1e-3)     # a draw is another image


def test_threshold_is_refused_where_it_means_nothing():
    x = _images()
    with pytest.raises(GenzooError, match="binarized images"):
        model_inputs(_model("glow", conditional=True), x, binarize="threshold")     # scores dequantized images
    model = _model("pixelcnn", conditional=True)
    with pytest.raises(GenzooError, match="draws must be 1"):
        class_log_likelihoods(model, x, draws=2, binarize="threshold")
    with pytest.raises(GenzooError, match="binarize must be one of"):
        class_log_likelihoods(model, x, binarize="round")


def test_classify_thresholded_test_set_measures_both_classifiers_on_it(runs, capsys):
    out = runs / "threshold.json"
    assert main(["classify", str(runs / "cvae"), "--test", "--iwae-k", "4", "--n", "60", "--noise-std", "0.1",
                 "--binarize", "threshold", "--no-progress", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["binarize"] == "threshold" and res["inputs"].startswith("binarized by threshold")
    import genzoo
    test = load_split("digits", "test")
    noisy = add_noise(test.images, 0.1, 1)[:60]
    ll = class_log_likelihoods(genzoo.load(runs / "cvae"), noisy, k=4, binarize="threshold")
    row = res["by_noise"][1]
    assert row["bayes_acc"] == pytest.approx((ll.argmax(1) == test.labels[:60]).double().mean().item(), abs=1e-12)
    thresholded = ((noisy >= 128) * 255).to(torch.uint8)
    disc = accuracy(load_frozen("digits")[0], thresholded, test.labels[:60])
    assert row["discriminative_thresholded_acc"] == pytest.approx(disc, abs=1e-6)      # accuracy() is float32
    assert "on the thresholded images" in capsys.readouterr().out
    assert main(["classify", str(runs / "cvae"), "--test", "--binarize", "threshold", "--draws", "2",
                 "--no-progress"]) == 2
    assert "draws must be 1" in _one_error(capsys.readouterr().err)
