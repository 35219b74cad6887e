"""The VAE's likelihood estimators against an independent float64 computation.

With a 1-D latent, log p(x) = log of the integral of p(x|z) N(z; 0, 1) dz can be done by quadrature on a fine
grid, which checks the IWAE bound (a lower bound that closes as k grows) and the ELBO
(a looser lower bound) of the same tiny model.
"""
import functools
import math

import torch
import torch.nn.functional as F

from genzoo.likelihood import binarize_fixed, mean_bound
from genzoo.models.vae import VAE, VAEConfig


def _model():
    torch.manual_seed(0)
    model = VAE(VAEConfig(channels=1, image_size=4, latent_dim=1, width=4)).eval()
    with torch.no_grad():
        # q(z|x) = N(0.3, 1.2^2) for every x: not the true posterior, but wider than the prior, so the
        # importance weights p(x, z) / q(z|x) are bounded and the k-sample bound converges quickly
        model.enc_head.weight.zero_()
        model.enc_head.bias.copy_(torch.tensor([0.3, 2 * math.log(1.2)]))
    return model


def _images():
    g = torch.Generator().manual_seed(1)
    return torch.bernoulli(torch.full((6, 1, 4, 4), 0.4), generator=g)


def _brute_force_log_px(model, x):
    z = torch.linspace(-10, 10, 20001, dtype=torch.float64)                     # (G,)
    dz = z[1] - z[0]
    with torch.no_grad():
        logits = model.decoder_logits(z.float().unsqueeze(1)).double()          # (G, 1, 4, 4)
    out = []
    for xi in x.double():
        log_px_z = -F.binary_cross_entropy_with_logits(logits, xi.expand_as(logits), reduction="none").flatten(1).sum(1)
        log_pz = -0.5 * (z ** 2 + math.log(2 * math.pi))
        out.append(torch.logsumexp(log_px_z + log_pz, 0) + torch.log(dz))
    return torch.stack(out)


def test_iwae_bound_closes_on_the_quadrature_log_likelihood():
    model, x = _model(), _images()
    exact = _brute_force_log_px(model, x)
    g = torch.Generator().manual_seed(0)
    iwae = model.log_prob(x, k=20000, chunk=5000, generator=g).double()
    # one draw of the bound may sit a Monte Carlo error above log p(x) (it is a bound in expectation);
    # a wrong term in log p(z) or log q(z|x) would be off by far more than 5e-3 nats
    assert torch.allclose(iwae, exact, atol=5e-3), (iwae - exact)
    # in expectation the bound rises with k and stays below log p(x): k = 1 < k = 5 <= exact
    reps = 10000
    xr = x.repeat(reps, 1, 1, 1)
    k1 = model.log_prob(xr, k=1, generator=g).view(reps, -1).double()
    k5 = model.log_prob(xr, k=5, generator=g).view(reps, -1).double()
    se = (k1.std(0) + k5.std(0)) / math.sqrt(reps)
    assert torch.all(k1.mean(0) + 4 * se < k5.mean(0)), (k1.mean(0), k5.mean(0))
    assert torch.all(k5.mean(0) < exact + 2 * se), (k5.mean(0), exact)


def test_elbo_is_below_log_likelihood_and_equals_the_k1_bound_in_expectation():
    model, x = _model(), _images()
    exact = _brute_force_log_px(model, x)
    g = torch.Generator().manual_seed(0)
    reps = 4000
    xr = x.repeat(reps, 1, 1, 1)
    elbo = model.elbo(xr, generator=g).view(reps, -1).double()
    k1 = model.log_prob(xr, k=1, generator=g).view(reps, -1).double()
    assert torch.all(elbo.mean(0) < exact - 0.01)             # a strictly looser bound here
    # analytic-KL ELBO and the k = 1 importance-weighted bound agree in mean (4 standard errors)
    se = (k1.std(0) / math.sqrt(reps))
    assert torch.all((elbo.mean(0) - k1.mean(0)).abs() < 4 * se + 1e-3)


def test_test_bound_binarizes_once_with_seed_zero_and_is_reproducible():
    imgs = torch.randint(0, 256, (50, 1, 4, 4), dtype=torch.uint8)
    a, b = binarize_fixed(imgs, 0), binarize_fixed(imgs, 0)
    assert torch.equal(a, b) and set(a.unique().tolist()) <= {0.0, 1.0}
    assert abs(a.mean().item() - imgs.float().mean().item() / 255) < 0.05
    model = _model()
    assert mean_bound(model, imgs, "elbo", progress=False) == mean_bound(model, imgs, "elbo", progress=False)


def test_on_a_trained_vae_the_iwae_bound_is_above_the_elbo_and_rises_with_k(tmp_path):
    from genzoo import load
    from genzoo.cli import main
    from genzoo.data import load_split
    from helpers import tiny_args

    run = tmp_path / "vae"
    assert main(["train", "vae", "--data", "digits", "--steps", "150", "--out", str(run), "--no-progress",
                 "--set", "batch_size=64", *tiny_args("vae")]) == 0
    model, images = load(run), load_split("digits", "test").images
    elbo = mean_bound(model, images, "elbo", progress=False)
    b1, b10, b100, b1000 = (mean_bound(model, images, "iwae", k=k, batch_size=100, progress=False)
                            for k in (1, 10, 100, 1000))
    assert abs(b1 - elbo) < 0.5                         # k = 1 is the ELBO (in expectation)
    # non-decreasing in k up to Monte Carlo noise (0.05 nats), and a real gap from k = 1 to k = 1000
    assert elbo < b10 < b100 + 0.05 and b100 < b1000 + 0.05, (elbo, b1, b10, b100, b1000)
    # same binarized data for every k; the k=1000 - k=1 gap measured 0.07-0.11 nats over seeds 0-3
    assert b1000 - max(elbo, b1) > 0.05, (elbo, b1, b1000)


def test_scoring_turns_tf32_off_and_restores_it(monkeypatch):
    # cuDNN allows TF32 convolutions by default; every path that scores a likelihood must run in full float32 and
    # hand the caller's flags back unchanged
    from genzoo.apps.classify import class_log_likelihoods
    from genzoo.apps.ood import log_likelihoods
    flags = torch.backends.cudnn, torch.backends.cuda.matmul
    saved, seen = [f.allow_tf32 for f in flags], []
    try:
        for before in (True, False):
            for f in flags:
                f.allow_tf32 = before
            for conditional in (False, True):
                config = VAEConfig(channels=1, image_size=4, latent_dim=1, width=4, conditional=conditional,
                                   num_classes=2 if conditional else 0)
                model = VAE(config).eval()
                real = model.log_prob

                @functools.wraps(real)    # the same signature: the callers read its keywords
                def log_prob(*args, real=real, **kw):
                    seen.append(tuple(f.allow_tf32 for f in flags))
                    return real(*args, **kw)
                monkeypatch.setattr(model, "log_prob", log_prob)
                x = (_images() * 255).to(torch.uint8)
                labels = torch.zeros(len(x), dtype=torch.long) if conditional else None
                mean_bound(model, x, "iwae", k=2, progress=False, labels=labels)
                if conditional:
                    class_log_likelihoods(model, x, k=2)
                log_likelihoods(model, binarize_fixed(x), k=2)
                assert [f.allow_tf32 for f in flags] == [before, before]
    finally:
        for f, value in zip(flags, saved):
            f.allow_tf32 = value
    assert len(seen) >= 8 and set(seen) == {(False, False)}
