"""The VAE family: likelihoods against float64 brute force, the presets' defining equations, and
the capabilities later applications use (encode, decode, reconstruct, log_prob with labels)."""
import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from genzoo import evaluate
from genzoo.models import build_model, default_config
from genzoo.models.vae import VAE, VAEConfig, discretized_logistic_log_prob
from helpers import tiny_config


def _bits(n=6, c=1, s=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"x": torch.rand(n, c, s, s, generator=g), "y": torch.randint(0, 10, (n,), generator=g)}


def test_presets_set_what_their_papers_define():
    assert default_config("vae-mlp").arch == "mlp"
    assert default_config("beta-vae").beta > 1
    assert default_config("cvae").conditional
    assert default_config("iwae").iwae_k > 1
    assert default_config("vaegan").adversarial


def test_discretised_logistic_is_a_distribution_over_256_levels():
    # against a float64 brute force: CDF differences at the bin edges, tails in the edge bins
    g = torch.Generator().manual_seed(0)
    mean = torch.rand(7, generator=g, dtype=torch.float64) * 2.4 - 1.2
    log_s = torch.rand(7, generator=g, dtype=torch.float64) * 6 - 6       # scales from 0.0025 to 1
    k = torch.arange(256, dtype=torch.float64)
    logp = discretized_logistic_log_prob(k[:, None], mean[None], log_s[None])          # (256, 7)
    assert torch.allclose(logp.exp().sum(0), torch.ones(7, dtype=torch.float64), atol=1e-6)
    edges = (torch.arange(257, dtype=torch.float64) - 0.5) / 127.5 - 1                 # bin edges in [-1, 1]
    t = (edges[:, None] - mean[None]) / log_s.exp()[None]                               # (257, 7)
    cdf, sf = torch.sigmoid(t), torch.sigmoid(-t)   # sf: no cancellation right of the mean
    cdf[0], cdf[-1], sf[0], sf[-1] = 0.0, 1.0, 1.0, 0.0
    centre = (k[:, None] / 127.5 - 1)
    want = torch.where(centre > mean[None], sf[:-1] - sf[1:], cdf[1:] - cdf[:-1]).log()
    ok = want > -200
    assert ok.float().mean() > 0.5
    assert torch.allclose(logp[ok], want[ok], atol=1e-6, rtol=1e-6)


def _tiny(decoder="bernoulli", binarize=True, size=2, **kw):
    torch.manual_seed(0)
    cfg = VAEConfig(channels=1, image_size=size, arch="mlp", latent_dim=1, mlp_hidden=6, decoder=decoder,
                    binarize=binarize, **kw)
    model = VAE(cfg).eval()
    with torch.no_grad():   # q(z|x) = N(0.3, 1.2^2): wider than the prior, so importance weights stay bounded
        model.enc_head.weight.zero_()
        model.enc_head.bias.copy_(torch.tensor([0.3, 2 * math.log(1.2)]))
    return model


def _quadrature_log_px(model, x, target_fn):
    # log p(x) = log int p(x|z) N(z; 0, 1) dz on a fine float64 grid
    z = torch.linspace(-10, 10, 8001, dtype=torch.float64)
    with torch.no_grad():
        params = model.decoder_params(z.float().unsqueeze(1)).double()
    log_px_z = target_fn(params, x)                                          # (G,)
    log_pz = -0.5 * (z ** 2 + math.log(2 * math.pi))
    return torch.logsumexp(log_px_z + log_pz, 0) + (z[1] - z[0]).log()


def test_bernoulli_log_prob_sums_to_one_over_all_2x2_binary_images():
    model = _tiny()
    images = torch.tensor([[(i >> b) & 1 for b in range(4)] for i in range(16)], dtype=torch.float32)
    images = images.view(16, 1, 2, 2)
    torch.manual_seed(1)
    lp = model.log_prob(images, k=20000, chunk=5000)
    assert lp.exp().sum().item() == pytest.approx(1.0, abs=0.01)

    def bern(params, x):
        return -F.binary_cross_entropy_with_logits(params, x.double().expand_as(params), reduction="none") \
            .flatten(1).sum(1)
    exact = torch.stack([_quadrature_log_px(model, x, bern) for x in images])
    assert exact.exp().sum().item() == pytest.approx(1.0, abs=1e-6)
    assert torch.allclose(lp.double(), exact, atol=0.02)


def test_class_prior_vae_matches_quadrature_for_every_class():
    # label_in=prior: p(x|y) = int p(x|z) N(z; m_y, s_y^2) dz, the label nowhere but in the prior
    model = _tiny(conditional=True, label_in="prior", num_classes=2)
    with torch.no_grad():
        model.prior_loc.copy_(torch.tensor([[-1.0], [1.5]]))
        model.prior_log_scale.copy_(torch.tensor([[0.0], [math.log(0.7)]]))
    images = torch.tensor([[(i >> b) & 1 for b in range(4)] for i in range(16)], dtype=torch.float32)
    images = images.view(16, 1, 2, 2)
    z = torch.linspace(-10, 10, 8001, dtype=torch.float64)
    with torch.no_grad():
        logits = model.decoder(model.decoder_in(z.float().unsqueeze(1))).double()                   # (G, 1, 2, 2)
    for y, (m, s) in enumerate([(-1.0, 1.0), (1.5, 0.7)]):
        log_pz = -0.5 * (((z - m) / s) ** 2 + math.log(2 * math.pi)) - math.log(s)
        exact = torch.stack([torch.logsumexp(-F.binary_cross_entropy_with_logits(
            logits, x.double().expand_as(logits), reduction="none").flatten(1).sum(1) + log_pz, 0)
            + (z[1] - z[0]).log() for x in images])
        assert exact.exp().sum().item() == pytest.approx(1.0, abs=1e-6)
        torch.manual_seed(1)
        lp = model.log_prob(images, labels=torch.full((16,), y), k=20000, chunk=5000)
        assert torch.allclose(lp.double(), exact, atol=0.02), (y, lp, exact)
    # q(z|x) ignores the label: its standardized latents map back to one z-space posterior
    mu0, lv0 = model.encode(images[:3], torch.zeros(3, dtype=torch.long))
    mu1, lv1 = model.encode(images[:3], torch.ones(3, dtype=torch.long))
    assert torch.allclose(mu0 * 1.0 - 1.0, mu1 * 0.7 + 1.5, atol=1e-5)
    assert torch.allclose(lv0, lv1 + 2 * math.log(0.7), atol=1e-5)


def test_separate_vae_is_one_unconditional_vae_per_class():
    # label_in=separate: log p(x|y) is the bound of the class-y VAE alone, with its own weights
    cfg = dict(channels=1, image_size=8, arch="mlp", latent_dim=3, mlp_hidden=16)
    torch.manual_seed(0)
    model = VAE(VAEConfig(conditional=True, label_in="separate", num_classes=3, **cfg)).eval()
    x = torch.bernoulli(_bits(5)["x"])
    labels = torch.tensor([2, 0, 2, 1, 0])
    both = model.log_prob(x, labels=labels, k=7, generator=torch.Generator().manual_seed(4))
    for c in range(3):
        single = VAE(VAEConfig(**cfg)).eval()
        single.load_state_dict({k.replace(f".{c}.", ".", 1): v for k, v in model.state_dict().items()
                                if k.split(".")[1] == str(c)})
        rows = labels == c
        want = single.log_prob(x, k=7, generator=torch.Generator().manual_seed(4))
        got = model.log_prob(x, labels=torch.full((5,), c), k=7, generator=torch.Generator().manual_seed(4))
        assert torch.allclose(got, want, atol=1e-5), c
        assert rows.any() and torch.isfinite(both[rows]).all()
    # a training step on a batch without class 1 leaves class 1's VAE untouched
    model.train()
    loss = model.loss({"x": x, "y": torch.tensor([0, 2, 2, 0, 0])})["loss"]
    loss.backward()
    assert all(p.grad is None for n, p in model.named_parameters() if n.split(".")[1] == "1")
    assert all(p.grad is not None for n, p in model.named_parameters() if n.split(".")[1] in "02")
    with pytest.raises(ValueError, match="pass labels"):
        model.encode(x)
    with pytest.raises(ValueError, match="one label per image in"):
        model.encode(x, torch.tensor([0, 1, 2, 3, 0]))
    assert model.encode(x[:0], labels[:0])[0].shape == (0, 3)


def test_class_prior_needs_a_likelihood_trained_conditional_vae():
    with pytest.raises(ValueError, match="label_in=prior"):
        VAEConfig(label_in="prior")
    with pytest.raises(ValueError, match="label_in=separate"):
        VAEConfig(conditional=True, label_in="separate", adversarial=True)
    with pytest.raises(ValueError, match="label_in must be"):
        VAEConfig(conditional=True, label_in="decoder")


def test_logistic_elbo_and_iwae_match_quadrature_on_8bit_data():
    model = _tiny("logistic", binarize=False, size=2)
    levels = torch.tensor([[0, 40, 128, 255], [3, 3, 200, 90]], dtype=torch.float32)
    x = ((levels + 0.5) / 256).view(2, 1, 2, 2)

    def logistic(params, xi):
        k = (xi * 256).floor().double()
        return discretized_logistic_log_prob(k.expand(len(params), 1, 2, 2), params[:, :1], params[:, 1:]) \
            .flatten(1).sum(1)
    exact = torch.stack([_quadrature_log_px(model, xi, logistic) for xi in x]) + 4 * math.log(256)
    torch.manual_seed(2)
    iwae = model.log_prob(x, k=20000, chunk=5000).double()
    assert torch.allclose(iwae, exact, atol=0.02)
    # the ELBO is a looser bound: its mean over many draws sits below log p(x)
    g = torch.Generator().manual_seed(3)
    elbo = model.elbo(x.repeat(4000, 1, 1, 1), generator=g).double().view(4000, 2).mean(0)
    assert (elbo < exact - 0.01).all()


def test_iwae_bound_at_k1_equals_the_elbo_in_expectation():
    model = _tiny(size=2)
    x = torch.tensor([[1, 0, 0, 1], [1, 1, 1, 0]], dtype=torch.float32).view(2, 1, 2, 2)
    g = torch.Generator().manual_seed(0)
    many = x.repeat(20000, 1, 1, 1)                      # 20,000 independent draws of each image's bound
    k1 = model.log_prob(many, k=1, generator=g).double().view(20000, 2)
    elbo = model.elbo(many, generator=g).double().view(20000, 2)
    se = (k1.var(0) / len(k1) + elbo.var(0) / len(elbo)).sqrt()
    assert ((k1.mean(0) - elbo.mean(0)).abs() < 4 * se).all(), (k1.mean(0), elbo.mean(0), se)
    assert (model.log_prob(x, k=500, generator=g) > elbo.mean(0).float()).all()


def test_beta_weights_only_the_kl_term():
    model = build_model("vae", tiny_config("vae"))
    beta = build_model("vae", dataclasses.replace(tiny_config("vae"), beta=4.0))
    beta.load_state_dict(model.state_dict())
    batch = _bits()
    torch.manual_seed(0)
    a = model(batch)
    torch.manual_seed(0)
    b = beta(batch)
    assert (b["loss"] - a["loss"]).item() == pytest.approx(3 * a["kl"].item(), rel=1e-4)


def test_iwae_training_loss_is_the_negative_k_sample_bound():
    cfg = dataclasses.replace(tiny_config("iwae"), binarize=False, decoder="bernoulli")
    model = build_model("iwae", cfg)
    batch = {"x": torch.bernoulli(_bits()["x"]), "y": torch.zeros(6, dtype=torch.long)}
    torch.manual_seed(0)
    loss = model(batch)["loss"]
    torch.manual_seed(0)
    log_w = model._log_weights(batch["x"], None, cfg.iwae_k, cfg.iwae_k)
    assert loss.item() == pytest.approx(-(torch.logsumexp(log_w, 0) - math.log(cfg.iwae_k)).mean().item(), rel=1e-5)


def test_conditional_vae_needs_and_uses_labels():
    model = build_model("cvae", tiny_config("cvae")).eval()
    x = _bits()["x"]
    with pytest.raises(ValueError, match="pass labels"):
        model.encode(x)
    a = model.sample(3, labels=torch.tensor([1, 1, 1]), generator=torch.Generator().manual_seed(0))
    b = model.sample(3, labels=torch.tensor([7, 7, 7]), generator=torch.Generator().manual_seed(0))
    assert not torch.equal(a, b)
    xb = torch.bernoulli(x)
    la = model.log_prob(xb, labels=torch.full((6,), 1), k=4, generator=torch.Generator().manual_seed(0))
    lb = model.log_prob(xb, labels=torch.full((6,), 7), k=4, generator=torch.Generator().manual_seed(0))
    assert la.shape == (6,) and not torch.allclose(la, lb)


def test_vaegan_has_three_phases_over_disjoint_parameters_and_no_likelihood():
    model = build_model("vaegan", tiny_config("vaegan"))
    assert model.phases == ("discriminator", "encoder", "decoder")
    groups = [set(map(id, model.phase_parameters(p))) for p in model.phases]
    assert sum(map(len, groups)) == len(set().union(*groups)) == len(list(model.parameters()))
    declared = model.capabilities.likelihood
    assert declared.kind == "none" and "feature space" in declared.reason
    with pytest.raises(ValueError, match="no pixel likelihood"):
        model.log_prob(torch.rand(2, 1, 8, 8))


def test_vaegan_encoder_weights_its_kl_by_beta():
    # the encoder's loss is beta KL + L_llike: the same draws at two betas differ by exactly (b2 - b1) KL
    batch, weights = _bits(), build_model("vaegan", tiny_config("vaegan")).state_dict()
    out = {}
    for beta in (1.0, 3.0):
        model = build_model("vaegan", dataclasses.replace(tiny_config("vaegan"), beta=beta))
        model.load_state_dict(weights)
        torch.manual_seed(0)
        out[beta] = model.loss(batch, "encoder")
    assert torch.allclose(out[1.0]["kl"], out[3.0]["kl"]) and out[1.0]["kl"] > 0
    assert torch.allclose(out[3.0]["loss"] - out[1.0]["loss"], 2 * out[1.0]["kl"], rtol=1e-3, atol=1e-5)
    assert torch.allclose(out[1.0]["loss"], out[1.0]["kl"] + out[1.0]["llike"], rtol=1e-5)


def test_encode_decode_reconstruct_and_traverse_shapes():
    for decoder, binarize in (("bernoulli", True), ("logistic", False), ("categorical", False)):
        model = build_model("vae", dataclasses.replace(tiny_config("vae"), decoder=decoder, binarize=binarize)).eval()
        x = _bits()["x"]
        mu, logvar = model.encode(x)
        assert mu.shape == logvar.shape == (6, model.config.latent_dim)
        for out in (model.decode(mu), model.reconstruct(x), model.sample(6)):
            assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
        grid = model.traverse("z1", n_rows=3, n_cols=5, generator=torch.Generator().manual_seed(0))
        assert grid.shape == (15, 1, 8, 8)


def test_8bit_vae_is_scored_in_bits_per_dim():
    model = build_model("vae", dataclasses.replace(tiny_config("vae"), binarize=False)).eval()
    out = evaluate.likelihood(model, "digits", "test", iwae_k=3, seed=0, progress=False)
    assert set(out) == {"bpd", "iwae_k"} and 0 < out["bpd"] < 16
    # a binarized model on the same data reports nats, with its ELBO
    model = build_model("vae", tiny_config("vae")).eval()
    out = evaluate.likelihood(model, "digits", "test", iwae_k=3, seed=0, progress=False)
    assert set(out) == {"elbo_nats", "nll_nats", "iwae_k"} and out["nll_nats"] <= out["elbo_nats"] + 1.0


def test_scoring_in_channels_last_layout_keeps_the_bound():
    # evaluate.likelihood stores a CPU VAE's conv weights channels-last for speed; the bound must not move
    from genzoo.data import load_split
    from genzoo.likelihood import bits_per_dim, mean_bound
    for binarize in (True, False):
        model = build_model("vae", dataclasses.replace(tiny_config("vae"), binarize=binarize)).eval()
        images = load_split("digits", "test").images
        want = -mean_bound(model, images, "iwae", k=3, batch_size=20, seed=0, progress=False)
        convs = [p for p in model.parameters() if p.dim() == 4]
        assert convs and not all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
        out = evaluate.likelihood(model, "digits", "test", iwae_k=3, seed=0, progress=False)
        assert all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
        if binarize:
            assert out["nll_nats"] == pytest.approx(want, rel=1e-5)
        else:
            assert out["bpd"] == pytest.approx(bits_per_dim(want, images[0].numel()), rel=1e-5)


def test_bad_decoder_settings_are_refused():
    with pytest.raises(ValueError, match="8-bit"):
        VAEConfig(decoder="logistic", binarize=True)
    with pytest.raises(ValueError, match="decoder must be"):
        VAEConfig(decoder="gaussian")


def _all_2x2():
    images = torch.tensor([[(i >> b) & 1 for b in range(4)] for i in range(16)], dtype=torch.float32)
    return images.view(16, 1, 2, 2)


def _pixel_log_px_z_by_hand(model, h, x):
    # log p(x|z) as a float64 product of conditionals in raster order: the logit of pixel i is read from an
    # image whose pixels from i on are overwritten with 0.5, so nothing at or after i can reach it
    flat = x.flatten()
    out = torch.zeros(len(h), dtype=torch.float64)
    for i in range(len(flat)):
        seen = flat.clone()
        seen[i:] = 0.5
        with torch.no_grad():
            logit = model.pixel.logits(h, model.pixel.context(seen.view(1, *x.shape).expand(len(h), *x.shape)))
        logit = logit.flatten(1)[:, i].double()
        out += -F.binary_cross_entropy_with_logits(logit, torch.full_like(logit, float(flat[i])), reduction="none")
    return out


def test_pixel_decoder_log_prob_sums_to_one_and_matches_quadrature():
    # the autoregressive decoder (pixel_context): p(x|z) = prod_i p(x_i | x_<i, z) is a distribution over the 16
    # binary 2x2 images for every z, and log p(x) by the IWAE bound matches a float64 quadrature over z of the
    # hand product of conditionals
    model = _tiny(pixel_context=3, pixel_width=5)
    with torch.no_grad():   # a context strong enough that a mask leaking pixel i itself would break the sums
        model.pixel.masked.weight.mul_(8)
    images = _all_2x2()
    z = torch.linspace(-10, 10, 2001, dtype=torch.float64)
    with torch.no_grad():
        h = model.decoder_params(z.float().unsqueeze(1))
        per_z = torch.stack([model.log_px_z(h, x.expand(len(z), 1, 2, 2)).double() for x in images])   # (16, G)
    assert torch.allclose(per_z.exp().sum(0), torch.ones(len(z), dtype=torch.float64), atol=1e-5)
    log_pz = -0.5 * (z ** 2 + math.log(2 * math.pi))
    exact = torch.stack([torch.logsumexp(_pixel_log_px_z_by_hand(model, h, x) + log_pz, 0) + (z[1] - z[0]).log()
                         for x in images])
    assert exact.exp().sum().item() == pytest.approx(1.0, abs=1e-5)
    lp = model.log_prob(images, k=20000, chunk=5000, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(lp.double(), exact, atol=0.02)


def test_pixel_decoder_is_causal_in_raster_order():
    torch.manual_seed(0)
    model = VAE(VAEConfig(image_size=8, latent_dim=3, width=8, pixel_context=5, pixel_width=6)).eval()
    h = model.decoder_params(torch.randn(2, 3))
    x = torch.bernoulli(torch.full((2, 1, 8, 8), 0.4), generator=torch.Generator().manual_seed(1))
    base = model.pixel.logits(h, model.pixel.context(x))
    for i, j in [(0, 0), (3, 4), (5, 0), (7, 6)]:
        flipped = x.clone()
        flipped[:, :, i, j] = 1 - flipped[:, :, i, j]
        changed = (model.pixel.logits(h, model.pixel.context(flipped)) - base).abs().flatten(1).amax(0) > 0
        at = i * 8 + j
        assert not changed[:at + 1].any()                        # pixel (i, j) informs only what comes after it
        assert changed[at + 1:].any()                            # and does inform it (the next pixel, at least)


def test_pixel_decoder_draws_follow_its_conditionals():
    # images drawn pixel by pixel have the frequencies exp(log p(x|z)) that scoring gives, for one fixed z
    model = _tiny(pixel_context=3, pixel_width=5)
    with torch.no_grad():
        model.pixel.masked.weight.mul_(8)
        h = model.decoder_params(torch.full((20000, 1), 0.7))
        draws = model.pixel.draw(h, generator=torch.Generator().manual_seed(2))
        p = model.log_px_z(h[:16], _all_2x2()).exp()
    assert set(draws.unique().tolist()) <= {0.0, 1.0}
    codes = (draws.flatten(1) * torch.tensor([1.0, 2, 4, 8])).sum(1).long()
    freq = torch.bincount(codes, minlength=16).double() / len(codes)
    assert p.sum().item() == pytest.approx(1.0, abs=1e-5)
    se = (p.double() * (1 - p.double()) / len(codes)).sqrt()
    assert ((freq - p.double()).abs() <= 5 * se + 1e-3).all(), (freq, p)


def test_pixel_decoder_samples_decodes_and_refusals():
    torch.manual_seed(0)
    model = build_model("vae", dataclasses.replace(tiny_config("vae"), pixel_context=3, pixel_width=4)).eval()
    g = lambda: torch.Generator().manual_seed(3)   # noqa: E731
    a, b = model.sample(5, generator=g(), binary=True), model.sample(5, generator=g(), binary=True)
    assert torch.equal(a, b) and a.shape == (5, 1, 8, 8) and set(a.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(model.sample(5, generator=g()), model.decode(model.prior_latents(5, g())))
    z = torch.randn(3, model.config.latent_dim, requires_grad=True)
    mean = model.decode(z)                                   # probabilities, deterministic and differentiable in z
    assert torch.equal(mean, model.decode(z)) and 0 <= mean.min() and mean.max() <= 1
    mean.sum().backward()
    assert z.grad.abs().sum() > 0
    x = torch.bernoulli(_bits(3)["x"])
    assert model.elbo(x).shape == model.log_prob(x, k=4).shape == (3,)
    with pytest.raises(ValueError, match="depend on the image"):
        model.decoder_logits(z)
    with pytest.raises(ValueError, match="autoregressive decoder"):
        _tiny().sample(2, binary=True)
    with pytest.raises(ValueError, match="true or false"):
        model.sample(2, binary="maybe")
    with pytest.raises(ValueError, match="odd kernel"):
        VAEConfig(pixel_context=4)
    with pytest.raises(ValueError, match="one-channel"):
        VAEConfig(pixel_context=3, binarize=False)
    with pytest.raises(ValueError, match="one-channel"):
        VAEConfig(pixel_context=3, channels=3)
    with pytest.raises(ValueError, match="one-channel"):
        VAEConfig(pixel_context=3, adversarial=True)
