"""Latent interpolation (genzoo.apps.edit, `genzoo interpolate`): slerp against its closed form, endpoints that are
the models' own images, and the command's files and errors."""
import math

import numpy as np
import pytest
import torch
from PIL import Image

from genzoo import load
from genzoo.cli import main
from genzoo.apps.edit import interpolate, slerp
from genzoo.errors import GenzooError
from genzoo.models import build_model
from helpers import tiny_args, tiny_config


def test_slerp_follows_the_great_circle_between_orthogonal_vectors():
    # a and b orthogonal with norms 2 and 3: the point at t has angle t * pi/2 from a and norm 2 + t
    a = torch.tensor([[2.0, 0.0, 0.0]])
    b = torch.tensor([[0.0, 3.0, 0.0]])
    t = torch.tensor([0.0, 0.25, 0.5, 1.0])
    got = slerp(a, b, t)[:, 0]
    for ti, g in zip(t.tolist(), got):
        want = (2 + ti) * torch.tensor([math.cos(ti * math.pi / 2), math.sin(ti * math.pi / 2), 0.0],
                                       dtype=torch.float64)
        assert torch.allclose(g, want, atol=1e-12)


def test_slerp_endpoints_norms_and_the_parallel_limit():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 64, generator=g), torch.randn(5, 64, generator=g)
    t = torch.linspace(0, 1, 7)
    path = slerp(a, b, t)
    assert torch.allclose(path[0], a.double(), atol=1e-10) and torch.allclose(path[-1], b.double(), atol=1e-10)
    norms = path.norm(dim=-1)                                   # (T, N): linear in t
    want = (1 - t.double().view(-1, 1)) * a.double().norm(dim=1) + t.double().view(-1, 1) * b.double().norm(dim=1)
    assert torch.allclose(norms, want, atol=1e-10)
    # equal directions: the path stays on the ray (no 0/0)
    same = slerp(a[:1], 2 * a[:1], t)[:, 0]
    assert torch.isfinite(same).all()
    assert torch.allclose(same / same.norm(dim=1, keepdim=True), (a[:1] / a[:1].norm()).double().expand(7, -1),
                          atol=1e-8)


def test_vae_path_starts_and_ends_at_the_reconstructions_of_the_two_images():
    torch.manual_seed(0)
    vae = build_model("vae", tiny_config("vae")).eval()
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    strip = interpolate(vae, 6, images=x)
    assert strip.shape == (6, 1, 8, 8) and strip.min() >= 0 and strip.max() <= 1
    rec = vae.reconstruct(x)
    assert torch.allclose(strip[0], rec[0], atol=1e-5) and torch.allclose(strip[-1], rec[1], atol=1e-5)
    assert not torch.allclose(strip[2], strip[3])


def test_gan_path_from_seeds_starts_at_that_seeds_sample_and_needs_a_class_when_conditional():
    torch.manual_seed(0)
    gan = build_model("dcgan", tiny_config("dcgan")).eval()
    strip = interpolate(gan, 5, seeds=(3, 4))
    first = gan.sample(1, generator=torch.Generator().manual_seed(3))
    last = gan.sample(1, generator=torch.Generator().manual_seed(4))
    assert torch.allclose(strip[0], first[0], atol=1e-5) and torch.allclose(strip[-1], last[0], atol=1e-5)
    with pytest.raises(GenzooError, match="cannot map images"):
        interpolate(gan, 5, images=torch.rand(2, 1, 8, 8))
    cgan = build_model("cgan", tiny_config("cgan")).eval()
    with pytest.raises(GenzooError, match="class-conditional"):
        interpolate(cgan, 5, seeds=(0, 1))
    a = interpolate(cgan, 4, seeds=(0, 1), labels=torch.tensor([7]))
    b = cgan.sample(1, labels=torch.tensor([7]), generator=torch.Generator().manual_seed(0))
    assert torch.allclose(a[0], b[0], atol=1e-5)


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("interp") / "run"
    assert main(["train", "vae", "--data", "digits", "--steps", "3", "--out", str(out), "--no-progress",
                 *tiny_args("vae")]) == 0
    return out


def test_interpolate_command_writes_a_framed_strip_and_a_gif(vae_run, tmp_path, capsys):
    for i, v in enumerate((30, 220)):
        Image.fromarray(np.full((40, 30, 3), v, np.uint8)).save(tmp_path / f"{i}.png")   # RGB, not square
    out = tmp_path / "strip.png"
    assert main(["interpolate", str(vae_run), "--from", str(tmp_path / "0.png"), "--to", str(tmp_path / "1.png"),
                 "--steps", "5", "--out", str(out)]) == 0
    strip = Image.open(out)
    assert strip.width == 3 * (7 * (8 + 2) + 2)           # 5 steps framed by the 2 inputs, scale 3
    model = load(vae_run)
    x = torch.stack([torch.full((1, 8, 8), 30 / 255), torch.full((1, 8, 8), 220 / 255)])
    want = (interpolate(model, 5, images=x) * 255).round().to(torch.uint8)[:, 0]     # (5, 8, 8)
    # the GIF plays the path forth and back (GIF writers merge repeated frames, so compare runs of frames)
    gif = Image.open(out.with_suffix(".gif"))
    frames = []
    for i in range(gif.n_frames):
        gif.seek(i)
        frames.append(torch.from_numpy(np.asarray(gif.convert("L"))[::4, ::4].copy()))
    expected = list(want) + list(want)[-2:0:-1]
    dedup = lambda fs: [f for j, f in enumerate(fs) if j == 0 or not torch.equal(f, fs[j - 1])]  # noqa: E731
    assert [f.tolist() for f in dedup(frames)] == [f.tolist() for f in dedup(expected)]
    assert main(["interpolate", str(vae_run), "--seeds", "1,2", "--out", str(tmp_path / "s.png")]) == 0


@pytest.mark.parametrize("args,message", [
    (["--seeds", "1"], "two integers"),
    (["--seeds", "1,2", "--from", "a.png", "--to", "b.png"], "two images"),
    (["--from", "a.png"], "come together"),
    (["--from", "nope.png", "--to", "nope.png"], "does not exist"),
    (["--seeds", "1,2", "--steps", "1"], "steps must be between"),
])
def test_interpolate_command_errors(vae_run, tmp_path, capsys, args, message):
    assert main(["interpolate", str(vae_run), *args, "--out", str(tmp_path / "x.png")]) == 2
    assert message in " ".join(capsys.readouterr().err.split())


def test_unreadable_image_is_a_clear_error(vae_run, tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 20)
    assert main(["interpolate", str(vae_run), "--from", str(bad), "--to", str(bad),
                 "--out", str(tmp_path / "x.png")]) == 2
    assert "not a readable image" in capsys.readouterr().err
