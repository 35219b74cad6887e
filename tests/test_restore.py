"""Restoration (genzoo.apps.restore, `genzoo restore`): masks, PSNR/SSIM against their formulas, known pixels kept
exactly by every family, each method against a closed form (RePaint, the SDEdit start and the DDNM projection on a
diffusion model whose eps-predictor is exact for Gaussian data; importance-resampled autoregressive completion
against the enumerated conditional; the latent fit against the MAP of a linear-Gaussian decoder), and the command's
files and errors on short digits runs."""
import dataclasses
import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from genzoo.apps.restore import (capabilities, degrade, fit_latents, known_first, mask_preset, psnr,
                                 repaint_schedule, restore, ssim, ssim_map)
from genzoo.cli import main
from genzoo.errors import GenzooError
from genzoo.models import build_model
from genzoo.models.base import Capabilities, GenerativeModel
from genzoo.models.diffusion import Diffusion
from helpers import DeterministicAE, tiny_args, tiny_config


pytestmark = pytest.mark.usefixtures("one_thread")   # tiny models: see conftest.py


def _tiny(name, size=8, scale=None):
    torch.manual_seed(0)
    if name == "vae-pixel":   # the VAE with an autoregressive decoder: decode is a pixel-by-pixel loop
        model = build_model("vae", dataclasses.replace(tiny_config("vae", 1, size), pixel_context=3,
                                                       pixel_width=4)).eval()
    else:
        model = build_model(name, tiny_config(name, 1, size)).eval()
    if scale is not None:   # random weights with a real effect (zero-initialised output layers give a constant)
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0, scale)
    return model


# -- masks

def test_mask_presets_have_the_documented_shapes_and_random50_is_seeded():
    center = mask_preset("center", 3, 8)
    assert center.shape == (3, 1, 8, 8) and center.dtype == torch.bool
    want = torch.ones(8, 8, dtype=torch.bool)
    want[2:6, 2:6] = False                                   # the centre half-square
    assert torch.equal(center[1, 0], want)
    half = mask_preset("half", 2, 28)
    assert half[:, :, :14].all() and not half[:, :, 14:].any()
    assert known_first(half) and not known_first(center)
    a = mask_preset("random50", 4, 64, torch.Generator().manual_seed(3))
    b = mask_preset("random50", 4, 64, torch.Generator().manual_seed(3))
    c = mask_preset("random50", 4, 64, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a[0], a[1])
    # the unknown fraction of 16384 fair coin flips: within 5 standard deviations (0.0039 each) of 1/2
    assert abs((~a).float().mean().item() - 0.5) < 5 * math.sqrt(0.25 / a.numel())
    with pytest.raises(GenzooError, match="unknown mask preset"):
        mask_preset("corner", 1, 8)


# -- scores

def _ssim_brute(x, y, region=None):
    # SSIM (Wang et al. 2004, eq. 13) of each 7 x 7 window inside the image, one window at a time in float64
    # numpy, averaged over the windows whose centre is in the region and over channels
    x, y = x.double().numpy(), y.double().numpy()
    n, c, h, w = x.shape
    out = []
    for i in range(n):
        vals = []
        for r in range(3, h - 3):
            for s in range(3, w - 3):
                if region is not None and not region[i, 0, r, s]:
                    continue
                per_channel = []
                for ch in range(c):
                    a, b = x[i, ch, r - 3:r + 4, s - 3:s + 4].ravel(), y[i, ch, r - 3:r + 4, s - 3:s + 4].ravel()
                    ma, mb = a.mean(), b.mean()
                    va, vb, cab = ((a - ma) ** 2).mean(), ((b - mb) ** 2).mean(), ((a - ma) * (b - mb)).mean()
                    c1, c2 = 0.01 ** 2, 0.03 ** 2
                    per_channel.append((2 * ma * mb + c1) * (2 * cab + c2)
                                       / ((ma ** 2 + mb ** 2 + c1) * (va + vb + c2)))
                vals.append(np.mean(per_channel))
        out.append(np.mean(vals))
    return torch.tensor(out, dtype=torch.float64)


def test_psnr_follows_its_formula_and_ssim_a_float64_brute_force_and_torchmetrics():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 2, 11, 9, generator=g)
    y = (x + 0.15 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    region = torch.rand(3, 1, 11, 9, generator=g) > 0.4
    for i in range(3):
        r = region[i].expand(2, 11, 9)
        mse = ((x[i][r].double() - y[i][r].double()) ** 2).mean().item()
        assert psnr(x, y, region)[i].item() == pytest.approx(10 * math.log10(1 / mse), abs=1e-9)
    assert psnr(x, x).eq(100).all()                                       # MSE floored at 1e-10
    assert torch.allclose(ssim(x, y), _ssim_brute(x, y), atol=1e-12, rtol=0)
    assert torch.allclose(ssim(x, y, region), _ssim_brute(x, y, region), atol=1e-12, rtol=0)
    assert torch.allclose(ssim(x, x), torch.ones(3, dtype=torch.float64))
    # torchmetrics averages the map over the whole image after reflection padding: the same map on padded inputs
    from torchmetrics.functional.image import structural_similarity_index_measure
    pad = (lambda v: F.pad(v.double(), (3, 3, 3, 3), mode="reflect"))
    theirs = structural_similarity_index_measure(x.double(), y.double(), gaussian_kernel=False, kernel_size=7,
                                                 data_range=1.0, reduction="none")
    assert torch.allclose(ssim_map(pad(x), pad(y)).flatten(1).mean(1), theirs, atol=1e-12, rtol=0)


# -- every family keeps the known pixels

# one preset per capability, and conditional models (given labels; the diffusion one uses its null class)
FAMILIES = {
    "ddpm": {"steps": 5, "resample": 2, "jump": 2}, "ddpm-cfg": {"steps": 5}, "pixelcnn": {"particles": 3},
    "pixel-transformer": {}, "vae": {"iters": 15}, "cvae": {"iters": 15}, "glow": {"iters": 5},
    "dcgan": {"iters": 15}, "cgan": {"iters": 15},
}


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("preset", ["center", "half", "random50"])
def test_inpainting_keeps_every_known_pixel_exactly_in_every_family(name, preset):
    model = _tiny(name, scale=0.1)
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    known = mask_preset(preset, 3, 8, torch.Generator().manual_seed(2))
    labels = torch.tensor([1, 2, 3]) if model.conditional and name != "ddpm-cfg" else None
    run = (lambda seed: restore(model, x, known, labels=labels, generator=torch.Generator().manual_seed(seed),
                                **FAMILIES[name]))
    out = run(0)
    k = known.expand_as(x)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    assert torch.equal(out[k], x[k])
    assert torch.equal(out, run(0))                                   # same seed, same images
    if not model.capabilities.encode:                                # (an encoder's start may win every time)
        assert not torch.equal(out, run(1))                           # and the seed matters
    assert capabilities(model)["inpaint"]


# -- diffusion against Gaussian data

class FullGaussianEps(Diffusion):
    """eps_theta(x_t, t) = E[eps | x_t] exactly for data x_0 ~ N(mu, Sigma) on the [-1, 1] scale (any covariance):
    x_t ~ N(sqrt(abar) mu, abar Sigma + (1 - abar) I), so E[eps | x_t] = sqrt(1 - abar) (abar Sigma + (1 - abar) I)^-1
    (x_t - sqrt(abar) mu), computed in Sigma's eigenbasis."""

    def __init__(self, config, mu, cov):
        super().__init__(config)
        lam, u = torch.linalg.eigh(cov)
        self.register_buffer("mu", mu.double().flatten(), persistent=False)
        self.register_buffer("lam", lam, persistent=False)
        self.register_buffer("u", u, persistent=False)

    def predict_eps(self, x_t, t, labels=None):
        ab = self.alphas_cumprod[t].view(-1, 1)
        w = ((x_t.double().flatten(1) - ab.sqrt() * self.mu) @ self.u) / (ab * self.lam + 1 - ab)
        return ((1 - ab).sqrt() * (w @ self.u.T)).view_as(x_t).to(x_t.dtype)


@pytest.fixture(scope="module")
def gaussian():
    """A 4 x 4 Gaussian with neighbouring pixels strongly correlated (exp(-distance / 2), sd 0.2 on the model's
    scale) and one draw from it shifted by 0.25 (so the conditional means lie well away from the mean)."""
    ii, jj = torch.meshgrid(torch.arange(4), torch.arange(4), indexing="ij")
    pos = torch.stack([ii.flatten(), jj.flatten()], 1).double()
    cov = 0.04 * torch.exp(-torch.cdist(pos, pos) / 2) + 1e-4 * torch.eye(16, dtype=torch.float64)
    mu = torch.linspace(-0.3, 0.3, 16, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    x0 = mu + torch.linalg.cholesky(cov) @ torch.randn(16, generator=g, dtype=torch.float64) + 0.25
    model = FullGaussianEps(dataclasses.replace(tiny_config("ddpm", 1, 4), timesteps=1000), mu, cov).eval()
    return model, mu, cov, x0, g


def test_repaint_approaches_the_gaussian_conditional_mean_and_resampling_is_what_brings_it_there(gaussian):
    model, mu, cov, x0, _ = gaussian
    known = mask_preset("half", 1, 4)
    k, u = known.flatten(), ~known.flatten()
    cond = mu[u] + cov[u][:, k] @ torch.linalg.solve(cov[k][:, k], x0[k] - mu[k])       # E[x_u | x_k], closed form
    cond_var = (cov[u][:, u] - cov[u][:, k] @ torch.linalg.solve(cov[k][:, k], cov[k][:, u])).diag()
    n = 2000
    img = ((x0 + 1) / 2).float().view(1, 1, 4, 4).expand(n, 1, 4, 4)

    def draws(resample):
        out = restore(model, img, known, steps=250, resample=resample, jump=10,
                      generator=torch.Generator().manual_seed(1))
        z = out.double().flatten(1)[:, u] * 2 - 1
        return ((z.mean(0) - cond).norm() / (cond - mu[u]).norm()).item(), z.var(0) / cond_var

    # RePaint is approximate: its replacement draws the known region independently of the unknown one. Measured at
    # these settings: the mean misses by 0.17 of the conditional shift ||E[x_u | x_k] - mu_u|| with resample = 10
    # and by 0.53 without resampling (Monte Carlo error of 2000 draws: about 0.02; a broken replacement gives 1);
    # the variances are 0.84 to 0.95 of Var[x_u | x_k] (0.46 to 0.52 when the jumps back add no noise)
    (with_resampling, var_ratio), (without, _) = draws(10), draws(1)
    assert with_resampling < 0.25 and without > 0.4, (with_resampling, without)
    assert ((var_ratio - 1).abs() < 0.3).all(), var_ratio


def test_repaint_schedule_goes_down_with_jumps_back():
    path = repaint_schedule(10, 3, 2)
    assert path[0] == 9 and path[-1] == -1
    assert all(abs(a - b) == 1 for a, b in zip(path[:-1], path[1:]))
    assert sum(b < a for a, b in zip(path[:-1], path[1:])) == 10 + 2 * 2 * 4     # 4 jump points, 2 extra rounds
    assert repaint_schedule(10, 1, 3) == list(range(9, -2, -1))


def test_denoising_draws_the_gaussian_posterior(gaussian):
    model, mu, cov, x0, g = gaussian
    sd = 0.1                                          # on the [0, 1] scale: 0.2 on the model's
    y01 = (x0 + 1) / 2 + sd * torch.randn(16, generator=g, dtype=torch.float64)
    y, s2, eye = 2 * y01 - 1, (2 * sd) ** 2, torch.eye(16, dtype=torch.float64)
    post_mean = mu + cov @ torch.linalg.solve(cov + s2 * eye, y - mu)                 # E[x_0 | y], closed form
    post_var = (cov - cov @ torch.linalg.solve(cov + s2 * eye, cov)).diag()
    n = 2000
    out = restore(model, y01.float().view(1, 1, 4, 4).expand(n, 1, 4, 4), task="denoise", noise_std=sd,
                  steps=50, generator=torch.Generator().manual_seed(2))
    z = out.double().flatten(1) * 2 - 1
    # the SDEdit start makes this an exact posterior draw up to the sampler's step error; the means within 5
    # Monte Carlo standard errors (measured: 2.2 at most), the variances within 20% (measured 0.89 to 0.99); an
    # unscaled noise level (noise_std instead of 2 noise_std) misses by > 10 standard errors
    z_scores = (z.mean(0) - post_mean) / (post_var / n).sqrt()
    assert z_scores.abs().max() < 5, z_scores
    assert ((z.var(0) / post_var - 1).abs() < 0.2).all()


def test_superres_is_consistent_with_its_input_and_near_the_gaussian_conditional_mean(gaussian):
    model, mu, cov, x0, _ = gaussian
    pool = torch.zeros(4, 16, dtype=torch.float64)                  # the 2 x 2 average pool as a matrix
    for i, j in itertools.product(range(4), range(4)):
        pool[(i // 2) * 2 + j // 2, i * 4 + j] = 0.25
    low = pool @ x0
    cond = mu + cov @ pool.T @ torch.linalg.solve(pool @ cov @ pool.T, low - pool @ mu)   # E[x | pool x = low]
    n = 2000
    out = restore(model, ((low + 1) / 2).float().view(1, 1, 2, 2).expand(n, 1, 2, 2), task="superres", steps=50,
                  generator=torch.Generator().manual_seed(3))
    assert (F.avg_pool2d(out.double(), 2).flatten(1) - (low + 1) / 2).abs().max() < 1e-6     # exactly consistent
    mean = (out.double().flatten(1) * 2 - 1).mean(0)
    # the projection is not an exact posterior sampler: measured 0.11 of ||E[x | low] - mu|| at 50 steps
    assert (mean - cond).norm() / (cond - mu).norm() < 0.2


# -- autoregressive

def test_autoregressive_half_completion_is_complete_itself():
    model = _tiny("pixelcnn", scale=0.3)
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    known = mask_preset("half", 4, 8)
    out = restore(model, x, known, generator=torch.Generator().manual_seed(3))
    assert torch.equal(out, model.complete(x, known, generator=torch.Generator().manual_seed(3)))


def test_importance_resampled_completion_tends_to_the_enumerated_conditional():
    # unknown: the first three values of a binary 4 x 4 image, known: the 13 after them. Raster completion cannot
    # see the known values (it draws from p(x_u)); the resampled one should draw from p(x_u | x_k), enumerated here
    # from the exact log p(x) of the 8 completions
    model = _tiny("pixelcnn", size=4, scale=0.5)
    base = (torch.rand(1, 1, 4, 4, generator=torch.Generator().manual_seed(5)) > 0.5).float()
    known = torch.ones(1, 1, 4, 4, dtype=torch.bool)
    known[..., 0, :3] = False
    options = torch.tensor(list(itertools.product([0.0, 1.0], repeat=3)))
    images = base.repeat(8, 1, 1, 1)
    images[:, 0, 0, :3] = options
    log_p = model.log_prob(images).double()
    assert torch.allclose(model.value_log_probs(images).double().flatten(1).sum(1), log_p, atol=1e-4)
    exact = (log_p - log_p.logsumexp(0)).exp()
    n = 2000

    def total_variation(particles):
        out = restore(model, base.expand(n, 1, 4, 4), known, particles=particles,
                      generator=torch.Generator().manual_seed(1))
        code = (out[:, 0, 0, :3] * torch.tensor([4.0, 2.0, 1.0])).sum(1).long()
        return 0.5 * (torch.bincount(code, minlength=8).double() / n - exact).abs().sum().item()

    # measured: 0.37 for the raster draw, 0.10 with 8 particles, 0.006 with 64 (sampling noise ~0.02)
    tv_raster, tv_resampled = total_variation(1), total_variation(32)
    assert tv_raster > 0.25 and tv_resampled < 0.06, (tv_raster, tv_resampled)


# -- latent models

@dataclasses.dataclass
class LinearConfig:
    channels: int = 1
    image_size: int = 4
    num_classes: int = 0


class LinearLatent(GenerativeModel):
    """decode(z) = W z + b with z ~ N(0, I): the MAP of a Gaussian fit is a linear solve."""

    Config = LinearConfig
    capabilities = Capabilities(latents=True)

    def __init__(self, w, b):
        super().__init__(LinearConfig())
        self.w, self.b = torch.nn.Parameter(w), torch.nn.Parameter(b)

    def prior_latents(self, n, generator=None):
        return torch.randn(n, self.w.shape[1], generator=generator)

    def decode(self, z, labels=None):
        return (z @ self.w.T + self.b).view(-1, 1, 4, 4)


def _map(w, b, a, y, weight, s):
    # argmin_z ||weight (a (W z + b) - y)||^2 / (2 s^2) + ||z||^2 / 2 for each image, float64
    w, b, a = w.double(), b.double(), a.double()
    out = []
    for yi, mi in zip(y.double().flatten(1), weight.double().flatten(1)):
        aw = a @ w
        out.append(torch.linalg.solve(aw.T @ (mi[:, None] * aw) / s ** 2 + torch.eye(w.shape[1], dtype=torch.float64),
                                      aw.T @ (mi * (yi - a @ b)) / s ** 2))
    return torch.stack(out)


def test_latent_restoration_finds_the_map_of_a_linear_gaussian_decoder():
    g = torch.Generator().manual_seed(0)
    w, b = 0.15 * torch.randn(16, 3, generator=g), 0.3 + 0.4 * torch.rand(16, generator=g)
    model = LinearLatent(w, b)
    assert capabilities(model) == {"inpaint": "latent-map", "denoise": "latent-map", "superres": "latent-map"}
    x = torch.rand(5, 1, 4, 4, generator=g)
    known = mask_preset("random50", 5, 4, g)
    pool = torch.zeros(4, 16)
    for i, j in itertools.product(range(4), range(4)):
        pool[(i // 2) * 2 + j // 2, i * 4 + j] = 0.25
    eye = torch.eye(16)
    opts = {"iters": 500, "restarts": 2, "generator": torch.Generator().manual_seed(1)}
    decode = (lambda z: (z.float() @ w.T + b).view(-1, 1, 4, 4))
    # inpaint: fit the known pixels with fit_std 0.1, keep them, fill the rest from the fit
    out = restore(model, x, known, fit_std=0.1, **opts)
    want = torch.where(known, x, decode(_map(w, b, eye, x, known.float(), 0.1)).clamp(0, 1))
    assert (out - want).abs().max() < 1e-4
    # denoise: the noise's own std is the fit's
    y = degrade(x, "denoise", noise_std=0.3, generator=g)
    out = restore(model, y, task="denoise", noise_std=0.3, **opts)
    assert (out - decode(_map(w, b, eye, y, torch.ones_like(y), 0.3)).clamp(0, 1)).abs().max() < 1e-4
    # superres: fit the 2 x 2 means, then project so that they are the input's exactly
    low = degrade(x, "superres")
    fit = decode(_map(w, b, pool, low, torch.ones_like(low), 0.1))
    out = restore(model, low, task="superres", fit_std=0.1, **opts)
    assert (out - (fit + (low - F.avg_pool2d(fit, 2)).repeat_interleave(2, -1).repeat_interleave(2, -2))
            .clamp(0, 1)).abs().max() < 1e-4


@pytest.mark.parametrize("name,scale", [("vae", 0.3), ("vae-pixel", 0.3), ("glow", 0.1), ("dcgan", 0.3)])
def test_latent_fit_reduces_the_known_pixel_error_from_its_start(name, scale):
    # random weights large enough for the image to depend on z (a flow's inverse overflows beyond 0.1); the known
    # pixels are those of an image the decoder can make. Measured error / start error: 0.001 to 0.66
    model = _tiny(name, scale=scale)
    with torch.no_grad():
        x = model.decode(model.prior_latents(4, torch.Generator().manual_seed(5)))
    known = mask_preset("center", 4, 8).float()
    z, info = fit_latents(model, x, known, fit_std=0.02, restarts=2, iters=60,
                          generator=torch.Generator().manual_seed(0))
    assert z.shape[0] == 4 and (info["error"] < 0.7 * info["start_error"]).all(), info
    # the reported error is that of the returned latents
    err = ((model.decode(z).detach() - x).square() * known).flatten(1).sum(1) / known.flatten(1).sum(1)
    assert torch.allclose(err, info["error"], rtol=1e-4, atol=1e-7)


def test_bad_calls_are_refused_with_the_reason():
    pixelcnn, vae = _tiny("pixelcnn"), _tiny("vae")
    x = torch.rand(2, 1, 8, 8)
    with pytest.raises(GenzooError, match="cannot denoise"):
        restore(pixelcnn, x, task="denoise", noise_std=0.1)
    with pytest.raises(GenzooError, match="needs a mask"):
        restore(vae, x)
    with pytest.raises(GenzooError, match="mask must be"):
        restore(vae, x, torch.ones(2, 1, 4, 4, dtype=torch.bool))
    with pytest.raises(GenzooError, match="takes the options"):
        restore(vae, x, "center", steps=5)
    with pytest.raises(GenzooError, match="iters must be an integer"):
        restore(vae, x, "center", iters=0)
    with pytest.raises(GenzooError, match="noise std"):
        restore(vae, x, task="denoise")
    with pytest.raises(GenzooError, match=r"superres takes images \(N, 1, 4, 4\)"):
        restore(vae, x, task="superres")
    with pytest.raises(GenzooError, match="give the class"):
        restore(_tiny("cvae"), x, "half")
    with pytest.raises(GenzooError, match="cannot restore"):
        restore(DeterministicAE(DeterministicAE.Config()).eval(), x, "half")


# -- the command line

def _train(tmp_path_factory, name, steps=3):
    out = tmp_path_factory.mktemp("restore") / name
    assert main(["train", name, "--data", "digits", "--steps", str(steps), "--out", str(out), "--no-progress",
                 "--set", "coverage_every_steps=0", *tiny_args(name)]) == 0
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return {name: _train(tmp_path_factory, name) for name in ("vae", "pixelcnn", "ddpm")}


@pytest.fixture(scope="module")
def digit(tmp_path_factory):
    from genzoo.data import load_split
    path = tmp_path_factory.mktemp("img") / "digit.png"
    Image.fromarray(load_split("digits", "test").images[0, 0].numpy()).save(path)
    return path


@pytest.mark.parametrize("name,args", [
    ("vae", ["--mask-preset", "center", "--opt", "iters=20"]),
    ("pixelcnn", ["--mask-preset", "half"]),
    ("ddpm", ["--mask-preset", "random50", "--opt", "steps=4", "--opt", "resample=2", "--opt", "jump=2"]),
])
def test_restore_command_keeps_the_known_pixels_of_the_image(runs, digit, tmp_path, name, args):
    out, compare = tmp_path / "out.png", tmp_path / "cmp.png"
    assert main(["restore", str(runs[name]), "--image", str(digit), *args, "--seed", "2", "--out", str(out),
                 "--compare", str(compare), "--no-progress"]) == 0
    got, img = np.asarray(Image.open(out)), np.asarray(Image.open(digit))
    known = mask_preset(args[1], 1, 8, torch.Generator().manual_seed(2))[0, 0].numpy()
    assert got.shape == (8, 8) and np.array_equal(got[known], img[known])
    assert Image.open(compare).size == (4 * (2 * 10 + 2), 4 * 12)          # input and result, scale 4
    # a mask PNG: white = known
    mask = tmp_path / "mask.png"
    Image.fromarray(np.where(known, 255, 0).astype(np.uint8)).save(mask)
    assert main(["restore", str(runs[name]), "--image", str(digit), "--mask", str(mask), "--seed", "2", *args[2:],
                 "--out", str(tmp_path / "out2.png"), "--no-progress"]) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out2.png"))[known], img[known])


@pytest.mark.parametrize("task,args", [("denoise", ["--noise-std", "0.2"]), ("superres", [])])
def test_restore_command_denoises_and_super_resolves(runs, digit, tmp_path, task, args):
    for name, opt in (("vae", "iters=10"), ("ddpm", "steps=3")):
        out = tmp_path / f"{name}-{task}.png"
        assert main(["restore", str(runs[name]), "--image", str(digit), "--task", task, *args, "--degrade",
                     "--opt", opt, "--out", str(out), "--compare", str(tmp_path / "c.png"), "--no-progress"]) == 0
        assert Image.open(out).size == (8, 8) and Image.open(tmp_path / "c.png").size == (4 * 32, 4 * 12)


@pytest.mark.parametrize("name,args,message", [
    ("vae", ["--image", "nope.png", "--mask-preset", "center"], "does not exist"),
    ("vae", ["--mask-preset", "corner"], "unknown mask preset"),
    ("vae", [], "inpaint needs one of --mask"),
    ("vae", ["--mask", "WRONG"], "this model needs a 8x8 mask"),
    ("vae", ["--task", "sharpen"], "unknown task"),
    ("vae", ["--task", "denoise"], "noise std"),
    ("vae", ["--task", "superres", "--mask-preset", "half"], "takes neither"),
    ("vae", ["--mask-preset", "half", "--opt", "particles=3"], "takes the options"),
    ("vae", ["--mask-preset", "half", "--label", "3"], "unconditional"),
    ("pixelcnn", ["--task", "denoise", "--noise-std", "0.1"], "cannot denoise"),
    ("pixelcnn", ["--task", "superres"], "cannot superres"),
])
def test_restore_command_errors_are_one_clear_line(runs, digit, tmp_path, capsys, name, args, message):
    wrong = tmp_path / "wrong.png"
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(wrong)
    args = [str(wrong) if a == "WRONG" else a for a in args]
    if "--image" not in args:
        args = ["--image", str(digit), *args]
    assert main(["restore", str(runs[name]), *args, "--out", str(tmp_path / "o.png"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("genzoo: error: ") and message in " ".join(err.split()), err


def test_evaluate_scores_the_restorations_it_returns_and_repeats_itself():
    from genzoo.apps.restore import evaluate
    from genzoo.data import load_split
    test = load_split("digits", "test")
    x = test.images[:6].float() / 255
    model = _tiny("vae", scale=0.1)
    a = evaluate(model, x, task="inpaint", preset="random50", seed=3, batch_size=4, dataset="digits",
                 progress=False, options={"iters": 5})
    b = evaluate(model, x, task="inpaint", preset="random50", seed=3, batch_size=4, progress=False,
                 options={"iters": 5})
    assert torch.equal(a["restored"], b["restored"]) and "fid" in a and "fid" not in b
    known = ~a["region"]
    assert torch.equal(known, mask_preset("random50", 6, 8, torch.Generator().manual_seed(3)))
    assert torch.equal(a["restored"][known.expand_as(x)], x[known.expand_as(x)])
    assert a["psnr"] == pytest.approx(psnr(a["restored"], x, a["region"]).mean().item())
    assert a["ssim"] == pytest.approx(ssim(a["restored"], x, a["region"]).nanmean().item())
    d = evaluate(model, x, task="denoise", noise_std=0.1, progress=False, options={"iters": 5})
    assert d["region"].all() and d["observed"].shape == x.shape


class Overflowing(LinearLatent):
    """The linear decoder, except that it overflows (NaN) beyond a latent norm, as a flow's inverse does far
    outside its typical set."""

    def __init__(self, w, b, limit):
        super().__init__(w, b)
        self.limit = limit

    def decode(self, z, labels=None):
        out = super().decode(z)
        far = z.norm(dim=1) > self.limit
        return torch.where(far.view(-1, 1, 1, 1), out * float("nan"), out)


def test_a_diverging_latent_fit_keeps_its_best_finite_iterate():
    g = torch.Generator().manual_seed(0)
    w, b = 0.15 * torch.randn(16, 3, generator=g), 0.3 + 0.4 * torch.rand(16, generator=g)
    model = Overflowing(w, b, limit=3.0)     # the prior draws of this seed lie inside
    x = torch.rand(4, 1, 4, 4, generator=g)
    known = mask_preset("random50", 4, 4, g).float()
    # a learning rate so large that Adam's first step leaves the region where decode is finite
    z, info = fit_latents(model, x, known, fit_std=0.1, restarts=2, iters=20, lr=5.0,
                          generator=torch.Generator().manual_seed(1))
    assert z.isfinite().all() and info["objective"].isfinite().all(), info
    assert (z.norm(dim=1) <= 3.0).all()
    err = ((model.decode(z) - x).square() * known).flatten(1).sum(1) / known.flatten(1).sum(1)
    assert torch.allclose(err, info["error"])
    # without the guard, the same fit ends in NaN: the decoder's overflow is what is being tested
    z_bad = torch.zeros(4, 3, requires_grad=True)
    opt = torch.optim.Adam([z_bad], lr=5.0)
    for _ in range(3):
        opt.zero_grad()
        ((model.decode(z_bad) - x).square() * known).sum().backward()
        opt.step()
    assert not model.decode(z_bad.detach()).isfinite().all()


def test_an_encoder_start_beyond_the_typical_radius_is_scaled_onto_it():
    g = torch.Generator().manual_seed(0)
    model = LinearLatent(0.1 * torch.randn(16, 9, generator=g), torch.full((16,), 0.5))
    x = torch.rand(2, 1, 4, 4, generator=g)
    start = torch.stack([torch.full((9,), 5.0), torch.full((9,), 0.2)])    # norms 15 and 0.6; sqrt(D) = 3
    z, info = fit_latents(model, x, restarts=1, iters=0, start=start)
    assert torch.allclose(z[0], torch.full((9,), 1.0)) and torch.allclose(z[1], start[1])


class HiddenOverflow(LinearLatent):
    """Overflows beyond a latent norm and, as genzoo's flows do, shows the overflowed pixels as mid-grey: the
    objective stays finite, only the gradient is not."""

    def __init__(self, w, b, limit):
        super().__init__(w, b)
        self.limit = limit

    def decode(self, z, labels=None):
        out = super().decode(z)
        far = (z.norm(dim=1) > self.limit).view(-1, 1, 1, 1)
        return torch.nan_to_num(torch.where(far, out * float("nan"), out), nan=0.5)


def test_a_latent_whose_decoder_overflows_is_pulled_back_to_where_it_does_not():
    g = torch.Generator().manual_seed(0)
    model = HiddenOverflow(0.3 * torch.randn(16, 3, generator=g), torch.full((16,), 0.2), limit=1.0)
    x = model.decode(0.3 * torch.randn(2, 3, generator=g)).detach()         # images the decoder can make
    start = torch.full((2, 3), 0.9)                      # norm 1.56, inside sqrt(3), beyond the overflow at 1
    with torch.no_grad():
        assert (model.decode(start) == 0.5).all()        # the start decodes to grey, a finite objective
    z, info = fit_latents(model, x, restarts=1, iters=50, lr=0.05, start=start)
    assert (z.norm(dim=1) <= 1.0).all(), z
    assert (info["error"] < 0.5 * info["start_error"]).all(), info


def test_bench_restore_runs_side_by_side_like_in_one_process_and_reuses_finished_parts(runs, tmp_path):
    # bench/restore.py --jobs: each run restored by its own process, merged into the same rows and figure as one
    # process gives; a part already there from the same command is reused; a run that fails is named, not fatal
    import json
    import subprocess
    import sys
    root = Path(__file__).resolve().parent.parent
    script, both = [sys.executable, str(root / "bench" / "restore.py")], [str(runs["vae"]), str(runs["ddpm"])]
    base = ["--data", "digits", "--n", "12", "--batch-size", "6", "--presets", "center,random50",
            "--opt", "iters=5", "--opt", "steps=3", "--opt", "resample=2", "--opt", "jump=2", "--no-progress"]
    one, side = tmp_path / "one", tmp_path / "side"
    subprocess.run(script + both + base + ["--results", str(one)], check=True, capture_output=True)
    cmd = script + both + [str(tmp_path / "no-such-run")] + base + ["--results", str(side), "--jobs", "3",
                                                                    "--parts", str(tmp_path / "parts")]
    subprocess.run(cmd, check=True, capture_output=True)
    a, b = (json.loads((d / "restore-digits.json").read_text()) for d in (one, side))
    assert len(a["rows"]) == 4 + 4 and [r["run"] for r in b["rows"]] == [r["run"] for r in a["rows"]]
    for ra, rb in zip(a["rows"], b["rows"]):
        assert (ra["task"], ra["preset"], ra["method"]) == (rb["task"], rb["preset"], rb["method"])
        assert rb["metrics"] == pytest.approx(ra["metrics"], rel=1e-3)
    assert b["jobs"] == 3 and len(b["part_commands"]) == 2 and b["failed_runs"] == [str(tmp_path / "no-such-run")]
    assert "jobs" not in a and "failed_runs" not in a and a["eval_device"] == "cpu"
    fa, fb = (np.asarray(Image.open(d / "restore-digits.png")) for d in (one, side))
    assert fa.shape == fb.shape
    part = tmp_path / "parts" / f"{runs['vae'].name}.npz"
    before = part.stat().st_mtime_ns
    subprocess.run(cmd, check=True, capture_output=True)                # the same command: nothing restored again
    assert part.stat().st_mtime_ns == before
    assert json.loads((side / "restore-digits.json").read_text())["rows"] == b["rows"]
    subprocess.run(cmd + ["--seed", "1"], check=True, capture_output=True)
    assert part.stat().st_mtime_ns != before
