"""`genzoo eval`: refusals, determinism, bits/dim, CAS, and FID/KID against torchmetrics' implementation."""
import dataclasses
import json
import math
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from genzoo import checkpoint as ckpt
from genzoo import evaluate, metrics
from genzoo.classifier import RecipeConfig, load_frozen, predict
from genzoo.cli import main
from genzoo.data import load_split
from genzoo.likelihood import bits_per_dim
from genzoo.models import register_model
from genzoo.models.base import Capabilities, GenerativeModel, Likelihood
from helpers import tiny_args


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    for name in ("vae", "dcgan"):
        assert main(["train", name, "--data", "digits", "--steps", "30", "--out", str(root / name), "--no-progress",
                     "--set", "batch_size=32", *tiny_args(name)]) == 0
    return root


def _eval(run, *extra):
    return main(["eval", str(run), "--n", "300", "--no-progress", "--iwae-k", "8", *extra])


def test_vae_gets_every_metric_that_applies_and_cas_is_refused(runs, capsys):
    out = runs / "vae" / "a.json"
    assert _eval(runs / "vae", "--out", str(out)) == 0
    res = json.loads(out.read_text())
    m = res["metrics"]
    for key in ("fid", "fid_ref", "kid_mean", "kid_std", "precision", "recall", "density", "coverage",
                "classifier_score", "nll_nats", "elbo_nats", "iwae_k"):
        assert key in m and math.isfinite(m[key]), key
    assert m["nll_nats"] <= m["elbo_nats"] + 0.5          # the k = 8 bound is (nearly always) tighter
    assert 1 <= m["classifier_score"] <= 10
    assert "cas" in res["refused"] and "unconditional" in res["refused"]["cas"]
    for key in ("dataset", "split", "n_generated", "seed", "checkpoint", "command", "machine", "wall_s"):
        assert key in res, key
    assert res["n_generated"] == 300 and res["checkpoint"] == "ema"
    printed = capsys.readouterr().out
    assert "fid_ref" in printed and "refused" in printed


def test_device_is_checked_before_sampling_and_named_in_the_record(runs, capsys):
    out = runs / "dcgan" / "device.json"
    assert _eval(runs / "dcgan", "--metrics", "fid", "--device", "cpu", "--out", str(out)) == 0
    assert json.loads(out.read_text())["device"] == "cpu"
    for device, says in (("tpu", "unknown device"), ("meta", "not supported"), ("cuda:99", "cuda:99")):
        capsys.readouterr()
        assert _eval(runs / "dcgan", "--metrics", "fid", "--device", device, "--out", str(out)) == 2
        assert says in capsys.readouterr().err
    if not torch.cuda.is_available():     # a machine without a GPU says so instead of failing inside sampling
        assert _eval(runs / "dcgan", "--metrics", "fid", "--device", "cuda", "--out", str(out)) == 2
        assert "sees no CUDA GPU" in capsys.readouterr().err
        assert main(["sample", str(runs / "dcgan"), "--device", "cuda", "--out", str(runs / "x.png")]) == 2


def test_checkpoints_are_written_from_host_memory():
    net = nn.Linear(3, 2)
    state = ckpt._state_dict(net)
    assert all(v.device.type == "cpu" and v.is_contiguous() for v in state.values())
    assert torch.equal(state["weight"], net.weight.detach())


def test_gan_nll_is_refused_with_a_reason(runs, capsys):
    out = runs / "dcgan" / "e.json"
    assert _eval(runs / "dcgan", "--metrics", "fid,nll", "--out", str(out)) == 0
    res = json.loads(out.read_text())
    assert "fid" in res["metrics"] and "nll_nats" not in res["metrics"] and "bpd" not in res["metrics"]
    assert "no likelihood" in res["refused"]["nll"]
    assert _eval(runs / "dcgan", "--metrics", "nll", "--out", str(out)) == 2     # nothing left to compute


def test_same_seed_same_metrics(runs):
    a, b = runs / "vae" / "s1.json", runs / "vae" / "s2.json"
    for out in (a, b):
        assert _eval(runs / "vae", "--metrics", "fid,kid,pr,score", "--seed", "5", "--out", str(out)) == 0
    assert json.loads(a.read_text())["metrics"] == json.loads(b.read_text())["metrics"]


def test_sampling_options_reach_every_sample_and_are_recorded(runs, capsys):
    a, b, c = (runs / "dcgan" / f"opt{k}.json" for k in "abc")
    assert _eval(runs / "dcgan", "--metrics", "fid", "--opt", "truncation=0.3", "--out", str(a)) == 0
    assert _eval(runs / "dcgan", "--metrics", "fid", "--opt", "truncation=0.3", "--out", str(b)) == 0
    assert _eval(runs / "dcgan", "--metrics", "fid", "--out", str(c)) == 0
    ra, rb, rc = (json.loads(p.read_text()) for p in (a, b, c))
    assert ra["sample_options"] == {"truncation": 0.3} and "sample_options" not in rc
    assert ra["metrics"] == rb["metrics"] and ra["metrics"]["fid"] != rc["metrics"]["fid"]
    capsys.readouterr()
    assert _eval(runs / "dcgan", "--metrics", "fid", "--opt", "steps=10") == 2
    assert "no sampling option 'steps'" in capsys.readouterr().err
    assert _eval(runs / "dcgan", "--metrics", "fid", "--opt", "truncation=-1") == 2     # out of the declared range
    assert "truncation must be a number in (0, 10]" in capsys.readouterr().err


def test_unknown_metric_is_an_error(runs, capsys):
    assert _eval(runs / "vae", "--metrics", "fid,inception") == 2
    assert "Unknown metric inception" in capsys.readouterr().err


def test_fid_kid_and_classifier_score_match_torchmetrics_with_the_public_feature_module():
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.inception import InceptionScore
    from torchmetrics.image.kid import KernelInceptionDistance

    clf, _ = load_frozen("digits")
    real = load_split("digits", "train").images[:400].float() / 255
    fake = (real[:300] + 0.15 * torch.rand(300, 1, 8, 8, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    fr, ff = predict(clf, real)[0], predict(clf, fake)[0]
    module = metrics.feature_module("digits")
    assert module.num_features == clf.num_features
    tm = FrechetInceptionDistance(feature=module)
    tm.update(real, real=True)
    tm.update(fake, real=False)
    assert metrics.fid(ff, fr) == pytest.approx(tm.compute().item(), rel=1e-3)
    # one subset holding every sample: the unbiased MMD^2 does not depend on the draw
    tk = KernelInceptionDistance(feature=module, subsets=1, subset_size=300)
    tk.update(real[:300], real=True)
    tk.update(fake, real=False)
    ours, _ = metrics.kid(ff, fr[:300], n_subsets=1, subset_size=300)
    assert ours == pytest.approx(tk.compute()[0].item(), rel=1e-3, abs=1e-6)
    # the classifier score is torchmetrics' Inception Score in the classifier's softmax (one split)
    ti = InceptionScore(feature=metrics.feature_module("digits", "logits"), splits=1)
    ti.update(fake)
    assert metrics.classifier_score(fake, dataset="digits") == pytest.approx(ti.compute()[0].item(), rel=1e-4)


@dataclass
class _UniformConfig:
    channels: int = 1
    image_size: int = 8
    num_classes: int = 10


class _Uniform(GenerativeModel):
    """Density 1 on [0, 1]^D: every 8-bit image has probability 256^-D, i.e. exactly 8 bits/dim."""

    Config = _UniformConfig
    capabilities = Capabilities(Likelihood("exact", "exact"))

    def __init__(self, config):
        super().__init__(config)
        self.dummy = nn.Parameter(torch.zeros(()))

    def loss(self, batch, phase="model"):
        return {"loss": self.dummy * 0}

    def log_prob(self, x):
        return torch.zeros(x.shape[0])

    def sample(self, n, labels=None, generator=None):
        return torch.rand(n, 1, 8, 8, generator=generator)


def test_bits_per_dim_of_a_closed_form_density():
    model = _Uniform(_UniformConfig())
    assert evaluate.likelihood(model, "digits", "test", 1, 0, False)["bpd"] == pytest.approx(8.0, abs=1e-12)
    # and the conversion itself: NLL of D nats per image adds 1/ln 2 bits to every dimension
    assert bits_per_dim(64.0, 64) == pytest.approx(8 + 1 / math.log(2))


def test_likelihood_on_the_first_images_of_the_split_says_how_many(runs, capsys):
    model = _Uniform(_UniformConfig())
    assert "nll_images" not in evaluate.likelihood(model, "digits", "test", 1, 0, False)
    part = evaluate.likelihood(model, "digits", "test", 1, 0, False, first=50)
    assert part["nll_images"] == 50 and part["bpd"] == pytest.approx(8.0, abs=1e-12)
    out = runs / "vae" / "part.json"
    assert _eval(runs / "vae", "--metrics", "nll", "--nll-n", "40", "--out", str(out)) == 0
    whole = runs / "vae" / "whole.json"
    assert _eval(runs / "vae", "--metrics", "nll", "--out", str(whole)) == 0
    m, w = json.loads(out.read_text())["metrics"], json.loads(whole.read_text())["metrics"]
    assert m["nll_images"] == 40 and "nll_images" not in w and m["nll_nats"] != w["nll_nats"]
    for flag, value in (("--nll-n", "0"), ("--cas-n", "50")):
        capsys.readouterr()
        assert _eval(runs / "vae", "--metrics", "nll", flag, value) == 2
        assert flag in capsys.readouterr().err


class _Oracle(GenerativeModel):
    """A class-conditional 'model' that returns real training images of the asked class, or noise."""

    Config = _UniformConfig
    conditional = True
    noise = False

    def __init__(self, config):
        super().__init__(config)
        data = load_split("digits", "train")
        self.register_buffer("images", data.images.float() / 255)
        self.register_buffer("labels", data.labels)

    def loss(self, batch, phase="model"):
        return {"loss": torch.zeros((), requires_grad=True)}

    def sample(self, n, labels=None, generator=None):
        if self.noise:
            return torch.rand(n, 1, 8, 8, generator=generator)
        out = torch.empty(n, 1, 8, 8)
        for c in labels.unique().tolist():
            pool = self.images[self.labels == c]
            pick = torch.randint(0, len(pool), (int((labels == c).sum()),), generator=generator)
            out[labels == c] = pool[pick]
        return out


def test_cas_is_high_for_real_class_images_and_chance_for_noise():
    _, record = load_frozen("digits")
    recipe = dataclasses.replace(RecipeConfig(), steps=300)
    model = _Oracle(_UniformConfig())
    good = evaluate.cas(model, "digits", record, seed=0, batch_size=500, progress=False, n=2000, recipe=recipe)
    model.noise = True
    bad = evaluate.cas(model, "digits", record, seed=0, batch_size=500, progress=False, n=2000, recipe=recipe)
    assert good["cas"] > 0.85 and bad["cas"] < 0.3, (good, bad)
    assert good["cas_real"] == record["test_accuracy"] and good["cas_n"] == 2000


def test_intra_fid_is_the_mean_of_per_class_fids():
    g = torch.Generator().manual_seed(0)
    fake, real = torch.randn(200, 4, generator=g), torch.randn(300, 4, generator=g) + 0.3
    fl, rl = torch.arange(200) % 2, torch.arange(300) % 2
    expected = (metrics.fid(fake[fl == 0], real[rl == 0]) + metrics.fid(fake[fl == 1], real[rl == 1])) / 2
    assert evaluate._intra_fid(fake, fl, real, rl) == pytest.approx(expected)


def test_conditional_model_gets_intra_fid(tmp_path):
    register_model("test-oracle", _Oracle, description="returns real digits of the asked class")
    ckpt.write_config(tmp_path, {"model_name": "test-oracle", "data": "digits",
                                 "model": dataclasses.asdict(_UniformConfig()), "train": {}})
    ckpt.save_weights(tmp_path, _Oracle(_UniformConfig()), None, step=0)
    res = evaluate.evaluate_run(tmp_path, ("fid",), n=300, progress=False)
    assert "intra_fid" in res["metrics"] and res["metrics"]["fid"] < 5 * res["metrics"]["fid_ref"] + 1


def test_image_api_matches_the_feature_api():
    real = load_split("digits", "test").images
    imgs = (load_split("digits", "train").images[:200].float() / 255)
    clf, _ = load_frozen("digits")
    f_fake, p_fake = predict(clf, imgs)
    f_real = predict(clf, real)[0]
    assert metrics.fid(imgs, dataset="digits") == pytest.approx(metrics.fid(f_fake, f_real))
    assert metrics.kid(imgs, dataset="digits", subset_size=100) == metrics.kid(f_fake, f_real, subset_size=100)
    assert metrics.precision_recall(imgs, dataset="digits") == metrics.precision_recall(f_real, f_fake)
    assert metrics.density_coverage(imgs, dataset="digits") == metrics.density_coverage(f_real, f_fake)
    assert metrics.classifier_score(imgs, dataset="digits") == pytest.approx(metrics.classifier_score(p_fake))
    with pytest.raises(Exception, match="images"):
        metrics.fid(torch.rand(5, 3), dataset="digits")


def test_feature_scale_rescales_features_but_not_predictions():
    clf, record = load_frozen("digits")
    test = load_split("digits", "test")
    feats, probs = predict(clf, test.images)
    assert (probs.argmax(1) == test.labels).float().mean().item() == pytest.approx(record["test_accuracy"], abs=1e-4)
    assert torch.allclose(probs, torch.softmax(clf(test.images.float() / 255), 1), atol=1e-6)
    # features are divided by the RMS of the unscaled train features: their RMS is of order 1
    assert 0.5 < feats.square().mean().sqrt().item() < 2.0
