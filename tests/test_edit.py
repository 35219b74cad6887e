"""Latent interpolation (genzoo.apps.edit, `genzoo interpolate`): slerp against its closed form, endpoints that are
the models' own images, and the command's files and errors."""
import dataclasses
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
                 "-n", "5", "--out", str(out)]) == 0
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
    (["--seeds", "1,2", "-n", "1"], "--n must be between"),
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


# -- class edits (class_edit, `genzoo edit`)

def test_conditional_flow_edit_keeps_the_latent_and_changes_only_the_label():
    # a conditional flow is a bijection for each label: editing A -> A gives the image back, and the edit A -> B is
    # the image whose latent under B is the input's latent under A ("same style, other class")
    from genzoo.apps.edit import class_edit
    torch.manual_seed(0)
    flow = build_model("glow", dataclasses.replace(tiny_config("glow"), conditional=True)).eval()
    with torch.no_grad():
        for p in flow.parameters():
            p.normal_(0, 0.02)
    x = 0.3 + 0.4 * torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(2))   # far from the clamp
    assert (class_edit(flow, x, 4, 4) - x).abs().max() < 1e-4
    edited = class_edit(flow, x, 4, 7)
    assert (edited - x).abs().max() > 0.01 and 0 < edited.min() and edited.max() < 1
    z_a = flow.encode_latents(x, torch.full((3,), 4))
    z_b = flow.encode_latents(edited, torch.full((3,), 7))
    assert (z_a - z_b).abs().max() < 1e-3


def test_cvae_edit_decodes_the_label_a_latent_with_label_b():
    from genzoo.apps.edit import class_edit
    torch.manual_seed(0)
    cvae = build_model("cvae", tiny_config("cvae")).eval()
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    mu, _ = cvae.encode(x, torch.tensor([3, 3]))
    want = cvae.decode(mu, torch.tensor([8, 8]))
    assert torch.allclose(class_edit(cvae, x, 3, 8), want, atol=1e-6)
    assert not torch.allclose(class_edit(cvae, x, 3, 8), class_edit(cvae, x, 3, 3))
    with pytest.raises(GenzooError, match=r"label must be an integer in \[0, 9\]"):
        class_edit(cvae, x, 3, 10)


def test_attribute_vector_is_the_difference_of_class_means_of_the_latents():
    from genzoo.apps.edit import attribute_vector, class_edit
    torch.manual_seed(0)
    vae = build_model("vae", tiny_config("vae")).eval()
    g = torch.Generator().manual_seed(3)
    images, labels = torch.rand(40, 1, 8, 8, generator=g), torch.randint(0, 4, (40,), generator=g)
    # by hand, one image at a time in float64
    z = [vae.encode(images[i:i + 1])[0][0].double() for i in range(40)]
    mean = (lambda c: sum(z[i] for i in range(40) if labels[i] == c) / int((labels == c).sum()))
    v = attribute_vector(vae, images, labels, 1, 2, batch_size=7)
    assert torch.allclose(v[0].double(), mean(2) - mean(1), atol=1e-5)
    x = images[:3]
    want = vae.decode(vae.encode(x)[0] + v)
    assert torch.allclose(class_edit(vae, x, 1, 2, images=images, labels=labels), want, atol=1e-6)
    with pytest.raises(GenzooError, match="unconditional"):
        class_edit(vae, x, 1, 2)
    with pytest.raises(GenzooError, match="no image of class"):
        class_edit(vae, x, 1, 2, images=images[labels != 2], labels=labels[labels != 2])
    with pytest.raises(GenzooError, match="no encoder"):
        class_edit(build_model("cgan", tiny_config("cgan")).eval(), x, 1, 2)


@pytest.fixture(scope="module")
def edit_runs(tmp_path_factory):
    out = {}
    for name in ("cvae", "dcgan"):
        out[name] = tmp_path_factory.mktemp("edit") / name
        assert main(["train", name, "--data", "digits", "--steps", "3", "--out", str(out[name]), "--no-progress",
                     "--set", "coverage_every_steps=0", *tiny_args(name)]) == 0
    return out


def test_edit_command_works_for_a_cvae_and_an_unconditional_vae(edit_runs, vae_run, tmp_path, capsys):
    img = tmp_path / "x.png"
    Image.fromarray(np.full((8, 8), 200, np.uint8)).save(img)
    out, compare = tmp_path / "e.png", tmp_path / "c.png"
    assert main(["edit", str(edit_runs["cvae"]), "--image", str(img), "--from-label", "3", "--to-label", "5",
                 "--out", str(out), "--compare", str(compare)]) == 0
    from genzoo.apps.edit import class_edit
    want = class_edit(load(edit_runs["cvae"]), torch.full((1, 1, 8, 8), 200 / 255), 3, 5)
    got = torch.from_numpy(np.asarray(Image.open(out)).copy()).float()
    assert (got - (want[0, 0] * 255).round()).abs().max() == 0
    assert Image.open(compare).size == (4 * 32, 4 * 12)                # input, reconstruction, edit
    assert "encoded as class 3 -> 5" in capsys.readouterr().out
    # an unconditional VAE: the attribute vector of the run's test images
    assert main(["edit", str(vae_run), "--image", str(img), "--from-label", "3", "--to-label", "5",
                 "--reference-images", "20", "--out", str(out)]) == 0
    assert "attribute vector from class 3 -> 5" in capsys.readouterr().out


@pytest.mark.parametrize("run,args,message", [
    ("dcgan", [], "has no encoder"),
    ("cvae", ["--to-label", "12"], "label must be an integer in [0, 9]"),
    ("cvae", ["--image", "nope.png"], "does not exist"),
    ("cvae", ["--out", "e.jpg"], ".png files"),
])
def test_edit_command_errors(edit_runs, tmp_path, capsys, run, args, message):
    img = tmp_path / "x.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(img)
    base = {"--image": str(img), "--from-label": "1", "--to-label": "2", "--out": str(tmp_path / "e.png")}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value
    assert main(["edit", str(edit_runs[run]), *[a for kv in base.items() for a in kv]]) == 2
    err = capsys.readouterr().err
    assert err.startswith("genzoo: error: ") and message in " ".join(err.split()), err
