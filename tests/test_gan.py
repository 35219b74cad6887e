"""The GAN family: what each preset's paper prescribes, the Salimans et al. options, and the
trainer's GAN health logging (critic repeats, two learning rates, D(x)/D(G(z)), mode coverage)."""
import dataclasses
import json

import numpy as np
import pytest
import torch
from PIL import Image

from genzoo.cli import main
from genzoo.models import MODELS, build_model, default_config, default_train_overrides, register_model
from genzoo.models.base import GenerativeModel
from genzoo.models.gan import GAN, GANConfig
from helpers import tiny_args, tiny_config

GAN_PRESETS = sorted(n for n, (cls, _, _) in MODELS.items() if cls is GAN)


def _batch(n=8, c=1, s=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"x": torch.rand(n, c, s, s, generator=g), "y": torch.randint(0, 10, (n,), generator=g)}


def test_every_paper_preset_is_registered_with_its_settings():
    assert set(GAN_PRESETS) >= {"gan", "dcgan", "wgan-gp", "cgan", "acgan", "infogan", "sagan"}
    wgan = default_config("wgan-gp")
    assert (wgan.loss, wgan.n_critic, wgan.d_norm) == ("wgan-gp", 5, "layer")
    assert default_train_overrides("wgan-gp")["adam_betas"] == (0.0, 0.9)
    sagan, sagan_train = default_config("sagan"), default_train_overrides("sagan")
    assert sagan.attention and sagan.spectral_norm == "both" and sagan.loss == "hinge"
    assert sagan_train["lr"] == 1e-4 and sagan_train["lr"] * sagan.d_lr_scale == pytest.approx(4e-4)
    assert default_config("gan").arch == "mlp"
    assert default_config("cgan").conditioning == "projection"
    assert default_config("acgan").conditioning == "acgan"
    assert default_config("infogan").info_cat == 10 and default_config("infogan").info_cont == 2


def test_wgan_gp_interpolation_weight_is_drawn_per_sample():
    torch.manual_seed(0)
    model = build_model("wgan-gp", tiny_config("wgan-gp"))
    seen = []
    model.discriminator.register_forward_pre_hook(lambda mod, args: seen.append(args[0].detach().float().clone()))
    batch = _batch(n=16)
    model(batch, phase="discriminator")
    real, fake, x_hat = seen                              # D sees real, fake, then the interpolates
    # x_hat - fake = eps_i (real - fake) for one eps_i per sample, not per pixel
    eps = (x_hat - fake).flatten(1) / (real - fake).flatten(1)      # (B, D)
    assert torch.allclose(eps, eps[:, :1].expand_as(eps), atol=1e-4)
    per_sample = eps[:, 0]
    assert ((per_sample >= 0) & (per_sample <= 1)).all()
    assert per_sample.std() > 0.1                          # different samples, different weights


def test_wgan_gp_penalty_matches_its_definition():
    # the penalty term equals lambda * mean (||grad_x^ D||_2 - 1)^2, recomputed here in float64
    torch.manual_seed(0)
    model = build_model("wgan-gp", tiny_config("wgan-gp")).double()
    real, fake = torch.rand(6, 1, 8, 8, dtype=torch.float64) * 2 - 1, torch.rand(6, 1, 8, 8, dtype=torch.float64)
    torch.manual_seed(5)
    got = model._gradient_penalty(real, fake, None)
    torch.manual_seed(5)
    eps = torch.rand(6, 1, 1, 1, dtype=torch.float32).double()
    norms = []
    for i in range(6):
        xi = (eps[i] * real[i] + (1 - eps[i]) * fake[i]).unsqueeze(0).requires_grad_(True)
        (g,) = torch.autograd.grad(model.discriminator(xi)[0].sum(), xi)
        norms.append(g.norm())
    want = torch.stack([(n - 1) ** 2 for n in norms]).mean()
    assert got.item() == pytest.approx(want.item(), rel=1e-4)


def test_batch_norm_in_a_wgan_gp_critic_is_refused():
    with pytest.raises(ValueError, match="batch norm"):
        GANConfig(loss="wgan-gp", d_norm="batch")


def test_spectral_norm_keeps_the_largest_singular_value_near_one():
    torch.manual_seed(0)
    model = build_model("sagan", tiny_config("sagan"))
    opt = torch.optim.Adam(model.parameters(), 4e-4, betas=(0.0, 0.9))   # SAGAN's discriminator lr
    for step in range(20):                                # power iteration runs once per training forward
        for phase in model.phases:
            opt.zero_grad()
            model(_batch(seed=step), phase=phase)["loss"].backward()
            opt.step()
    wrapped = [m for m in model.modules() if hasattr(m, "parametrizations")]
    assert len(wrapped) >= 8                              # every conv and linear in both nets
    for m in wrapped:
        w = m.weight.detach()
        if isinstance(m, torch.nn.ConvTranspose2d):       # spectral_norm reshapes along dim 1 for these
            w = w.transpose(0, 1)
        sigma = torch.linalg.matrix_norm(w.reshape(w.shape[0], -1).double(), ord=2)
        assert sigma.item() == pytest.approx(1.0, abs=0.05), m
        raw = m.parametrizations.weight.original.detach()
        raw = raw.transpose(0, 1) if isinstance(m, torch.nn.ConvTranspose2d) else raw
        assert torch.linalg.matrix_norm(raw.reshape(raw.shape[0], -1).double(), ord=2) > 0   # it did something


def test_projection_discriminator_is_psi_plus_embedding_dot_features():
    torch.manual_seed(0)
    model = build_model("cgan", tiny_config("cgan"))
    d = model.discriminator.eval()
    x, y = torch.rand(5, 1, 8, 8) * 2 - 1, torch.tensor([0, 3, 3, 9, 1])
    logit, h = d(x, y)
    want = d.out(h).squeeze(1) + (d.project.weight[y] * h).sum(1)
    assert torch.allclose(logit, want, atol=1e-5)
    other, _ = d(x, (y + 1) % 10)
    assert not torch.allclose(logit, other)                 # the label matters


@pytest.mark.parametrize("name", ["cgan", "acgan"])
def test_conditional_presets_obey_labels(name):
    torch.manual_seed(0)
    model = build_model(name, tiny_config(name)).eval()
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    a = model.sample(4, labels=torch.tensor([1, 1, 1, 1]), generator=g())
    b = model.sample(4, labels=torch.tensor([2, 2, 2, 2]), generator=g())
    assert not torch.equal(a, b)
    assert model.conditional and not build_model("dcgan", tiny_config("dcgan")).conditional


def test_truncation_bounds_the_latents_and_is_deterministic():
    model = build_model("dcgan", tiny_config("dcgan")).eval()
    z, _ = model.draw_latents(500, torch.Generator().manual_seed(0), truncation=0.5)
    assert z.abs().max() <= 0.5 and z.abs().max() > 0.45
    a = model.sample(3, generator=torch.Generator().manual_seed(1), truncation=0.7)
    b = model.sample(3, generator=torch.Generator().manual_seed(1), truncation=0.7)
    assert torch.equal(a, b)


@pytest.mark.parametrize("option", [{"feature_matching": True}, {"label_smoothing": 0.1},
                                    {"minibatch_stddev": True}, {"loss": "minimax"}, {"loss": "hinge"},
                                    {"arch": "mlp", "mlp_hidden": 16}])
@pytest.mark.parametrize("name", ["dcgan", "acgan"])
def test_salimans_options_work_with_any_preset(name, option):
    torch.manual_seed(0)
    model = build_model(name, dataclasses.replace(tiny_config(name), **option))
    for phase in model.phases:
        model.zero_grad(set_to_none=True)
        out = model(_batch(), phase=phase)
        assert torch.isfinite(out["loss"])
        out["loss"].backward()
        assert all(p.grad is not None for p in model.phase_parameters(phase))


def test_one_sided_label_smoothing_changes_only_the_real_term():
    torch.manual_seed(0)
    plain = build_model("dcgan", tiny_config("dcgan"))
    smooth = build_model("dcgan", dataclasses.replace(tiny_config("dcgan"), label_smoothing=0.2))
    smooth.load_state_dict(plain.state_dict())
    real = torch.rand(6, 1, 8, 8) * 2 - 1
    with torch.no_grad():
        l, _ = plain.discriminator(real)
    sp = torch.nn.functional.softplus
    torch.manual_seed(1)
    a = plain({"x": (real + 1) / 2, "y": torch.zeros(6, dtype=torch.long)}, "discriminator")["loss"]
    torch.manual_seed(1)
    b = smooth({"x": (real + 1) / 2, "y": torch.zeros(6, dtype=torch.long)}, "discriminator")["loss"]
    # target 0.8 for real: 0.8 * -log D(x) + 0.2 * -log(1 - D(x)); the fake term is unchanged
    want = ((0.8 * sp(-l) + 0.2 * sp(l)) - sp(-l)).mean().item()
    assert abs(want) > 1e-3 and (b - a).item() == pytest.approx(want, abs=1e-5)


def test_minibatch_stddev_makes_d_see_the_batch():
    torch.manual_seed(0)
    model = build_model("dcgan", dataclasses.replace(tiny_config("dcgan"), minibatch_stddev=True)).eval()
    x = torch.rand(4, 1, 8, 8)
    alone, _ = model.discriminator(x[:2])
    together, _ = model.discriminator(torch.cat([x[:2], torch.rand(2, 1, 8, 8)]))
    assert not torch.allclose(alone, together[:2])


def test_infogan_traversal_varies_one_code_along_each_row(tmp_path, capsys):
    torch.manual_seed(0)
    model = build_model("infogan", tiny_config("infogan")).eval()
    x = model.traverse("cat", n_rows=3, generator=torch.Generator().manual_seed(0))
    assert x.shape == (3 * 10, 1, 8, 8)
    x = model.traverse("c1", n_rows=2, n_cols=5, generator=torch.Generator().manual_seed(0))
    assert x.shape == (10, 1, 8, 8)
    with pytest.raises(ValueError, match="unknown code"):
        model.traverse("c7")
    assert build_model("dcgan", tiny_config("dcgan")).traversable_codes == ()


@pytest.fixture(scope="module")
def gan_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("gan-runs")
    for name in ("infogan", "cgan", "wgan-gp"):
        assert main(["train", name, "--data", "digits", "--steps", "6", "--out", str(root / name), "--no-progress",
                     "--set", "batch_size=16", "--set", "log_every_steps=3", "--set", "coverage_every_steps=3",
                     *tiny_args(name)]) == 0
    return root


def test_training_logs_d_outputs_grad_norms_and_coverage(gan_runs):
    rows = [json.loads(line) for line in (gan_runs / "cgan" / "metrics.jsonl").read_text().splitlines()]
    for key in ("discriminator/d_real", "discriminator/d_fake", "discriminator/grad_norm", "generator/grad_norm"):
        assert all(key in r and np.isfinite(r[key]) for r in rows), key
    coverage = [json.loads(line) for line in (gan_runs / "cgan" / "coverage.jsonl").read_text().splitlines()]
    assert [c["step"] for c in coverage] == [3, 6]
    assert sum(coverage[0]["histogram"]) == pytest.approx(1.0, abs=0.01) and "label_accuracy" in coverage[0]


def test_conditional_sample_grid_has_one_row_per_class(gan_runs):
    grid = Image.open(gan_runs / "cgan" / "samples.png")
    scale, pad, size = 2, 2, 8                     # save_grid's defaults; 6 columns of 64 // 10
    assert grid.height == scale * (10 * (size + pad) + pad)
    assert grid.width == scale * (6 * (size + pad) + pad)


def test_wgan_gp_critic_takes_five_steps_on_fresh_batches_per_generator_step(gan_runs):
    summary = json.loads((gan_runs / "wgan-gp" / "summary.json").read_text())
    state = torch.load(gan_runs / "wgan-gp" / "trainer_state.pt", weights_only=True)
    # the sampler drew 6 steps x (5 critic batches) of 16 from digits' 1497 train images
    assert state["sampler"]["cursor"] == (6 * 5 * 16) % (1497 // 16 * 16) and summary["step"] == 6
    d_steps = state["optimizers"]["discriminator"]["state"][0]["step"]
    g_steps = state["optimizers"]["generator"]["state"][0]["step"]
    assert (float(d_steps), float(g_steps)) == (30.0, 6.0)


def test_two_time_scale_learning_rates_reach_the_optimisers(tmp_path):
    run = tmp_path / "sagan"
    assert main(["train", "sagan", "--data", "digits", "--steps", "2", "--out", str(run), "--no-progress",
                 "--set", "batch_size=16", "--set", "coverage_every_steps=0", *tiny_args("sagan")]) == 0
    state = torch.load(run / "trainer_state.pt", weights_only=True)
    lr = {ph: state["optimizers"][ph]["param_groups"][0]["lr"] for ph in ("discriminator", "generator")}
    assert lr["generator"] == pytest.approx(1e-4) and lr["discriminator"] == pytest.approx(4e-4)


def test_sample_traverse_and_truncation_through_the_cli(gan_runs, tmp_path, capsys):
    out = tmp_path / "cat.png"
    assert main(["sample", str(gan_runs / "infogan"), "--traverse", "cat", "--out", str(out)]) == 0
    assert Image.open(out).width == 2 * (10 * 10 + 2)
    assert main(["sample", str(gan_runs / "infogan"), "--traverse", "c9", "--out", str(out)]) == 2
    assert "one of cat, c0, c1" in capsys.readouterr().err
    assert main(["sample", str(gan_runs / "cgan"), "--traverse", "cat", "--out", str(out)]) == 2
    assert "latent codes" in capsys.readouterr().err
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    assert main(["sample", str(gan_runs / "cgan"), "-n", "8", "--labels", "3", "--truncation", "0.5",
                 "--out", str(a)]) == 0
    assert main(["sample", str(gan_runs / "cgan"), "-n", "8", "--labels", "3", "--out", str(b)]) == 0
    assert not np.array_equal(np.load(a)["images"], np.load(b)["images"])
    assert main(["sample", str(gan_runs / "cgan"), "--truncation", "-1", "--out", str(a)]) == 2
    # the generic --opt KEY=VALUE reaches the same keyword of sample(); unknown keys name the valid ones
    c = tmp_path / "c.npz"
    assert main(["sample", str(gan_runs / "cgan"), "-n", "8", "--labels", "3", "--opt", "truncation=0.5",
                 "--out", str(c)]) == 0
    assert np.array_equal(np.load(a)["images"], np.load(c)["images"])
    capsys.readouterr()
    assert main(["sample", str(gan_runs / "cgan"), "--opt", "temperature=0.5", "--out", str(c)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "no sampling option 'temperature'" in err and "options are: truncation" in err
    assert main(["sample", str(gan_runs / "cgan"), "--opt", "truncation", "--out", str(c)]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err


@dataclasses.dataclass
class _FixedConfig:
    channels: int = 1
    image_size: int = 8
    num_classes: int = 0
    digit: int = -1              # -1: every class of the real data; k: only real images of class k


class _RealDigits(GenerativeModel):
    """'Samples' real digits images, all classes or one: a perfect and a collapsed generator."""

    Config = _FixedConfig

    def __init__(self, config):
        super().__init__(config)
        from genzoo.data import load_split
        data = load_split("digits", "train")
        keep = data.labels == config.digit if config.digit >= 0 else torch.ones_like(data.labels, dtype=torch.bool)
        self.register_buffer("bank", data.images[keep].float() / 255, persistent=False)
        self.w = torch.nn.Parameter(torch.zeros(()))

    def loss(self, batch, phase="model"):
        return {"loss": (self.w - batch["x"].mean()) ** 2}

    @torch.no_grad()
    def sample(self, n, labels=None, generator=None):
        idx = torch.randint(len(self.bank), (n,), generator=generator)
        return self.bank[idx]


def test_mode_coverage_warns_on_collapse_and_stays_quiet_on_real_data(tmp_path, capsys):
    register_model("test-real-digits", _RealDigits, description="real digits as samples")
    args = ["--data", "digits", "--steps", "4", "--no-progress", "--set", "coverage_every_steps=2",
            "--set", "batch_size=16", "--set", "ema_decay=0"]
    assert main(["train", "test-real-digits", "--out", str(tmp_path / "good"), *args]) == 0
    assert "collapsing" not in capsys.readouterr().err
    good = [json.loads(line) for line in (tmp_path / "good" / "coverage.jsonl").read_text().splitlines()]
    assert all(c["classes_present"] == 10 for c in good)
    assert main(["train", "test-real-digits", "--out", str(tmp_path / "bad"), *args, "--set", "digit=3"]) == 0
    err = capsys.readouterr().err
    assert "step 2: mode coverage" in err and "only 1 of 10 classes" in err
    bad = [json.loads(line) for line in (tmp_path / "bad" / "coverage.jsonl").read_text().splitlines()]
    assert bad[0]["histogram"][3] > 0.9
