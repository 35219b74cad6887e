"""Out-of-distribution scores (genzoo.apps.ood, `genzoo ood`): AUROC against a brute-force pairwise count, the
complexity and typicality scores against hand computations from log_prob and PIL, refusals by capability, and the
command on a VAE trained on digits against inverted digits."""
import dataclasses
import io
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from genzoo.apps.ood import auroc, log_likelihoods, ood_scores, png_bits
from genzoo.cli import main
from genzoo.data import load_split
from genzoo.errors import GenzooError
from genzoo.likelihood import binarize_fixed, dequantize_fixed
from genzoo.models import build_model
from helpers import tiny_args, tiny_config


def _brute_auroc(a, b):
    # every (in, out) pair: 1 when the in score is higher, 1/2 on a tie
    wins = sum(1.0 if x > y else 0.5 if x == y else 0.0 for x in a for y in b)
    return wins / (len(a) * len(b))


@pytest.mark.parametrize("n_in,n_out,levels", [(7, 5, 4), (40, 33, 6), (25, 60, 1000), (1, 1, 2)])
def test_auroc_equals_the_pairwise_count_with_ties_half(n_in, n_out, levels):
    g = torch.Generator().manual_seed(n_in * 100 + n_out)
    a = torch.randint(0, levels, (n_in,), generator=g).double() / 3      # few levels: many ties
    b = torch.randint(0, levels, (n_out,), generator=g).double() / 3 - 0.2
    assert auroc(a, b) == pytest.approx(_brute_auroc(a.tolist(), b.tolist()), abs=1e-14)


def test_auroc_obvious_cases():
    a = torch.arange(10.0)
    assert auroc(a + 100, a) == 1.0                 # every in score above every out score
    assert auroc(a, a + 100) == 0.0
    assert auroc(torch.ones(5), torch.ones(8)) == 0.5     # all tied
    assert auroc(a, a) == 0.5                       # the same scores on both sides
    assert auroc([2.0], [1.0, 3.0]) == 0.5 and auroc([2.0, 2.0], [2.0, 1.0]) == 0.75
    for bad in (([], [1.0]), ([1.0], [math.nan])):
        with pytest.raises(GenzooError):
            auroc(*bad)


def test_png_bits_is_the_length_of_the_png_file():
    g = torch.Generator().manual_seed(0)
    noise = torch.randint(0, 256, (1, 1, 8, 8), generator=g, dtype=torch.uint8)
    flat = torch.zeros(1, 1, 8, 8, dtype=torch.uint8)
    bits = png_bits(torch.cat([noise, flat]))
    buf = io.BytesIO()
    Image.fromarray(noise[0, 0].numpy()).save(buf, format="PNG", compress_level=9)
    assert bits[0].item() == 8 * len(buf.getvalue())
    assert bits[1] < bits[0]                         # a blank image is simpler than noise


def _model(name, **over):
    torch.manual_seed(0)
    return build_model(name, dataclasses.replace(tiny_config(name), **over)).eval()


def _png_bits_by_hand(levels: np.ndarray, bilevel: bool) -> float:
    img = Image.fromarray(levels)
    if bilevel:
        img = img.convert("1")
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=9)
    return 8.0 * len(buf.getvalue())


@pytest.mark.parametrize("name,over", [("pixelcnn", {}), ("pixelcnn", {"binarize": False}), ("glow", {})])
def test_complexity_and_typicality_scores_by_hand(name, over):
    model = _model(name, **over)
    x = torch.randint(0, 256, (4, 1, 8, 8), generator=torch.Generator().manual_seed(2), dtype=torch.uint8)
    binary = name == "pixelcnn" and over.get("binarize", True)
    xp = binarize_fixed(x, 0) if binary else dequantize_fixed(x, 0)
    log_px = model.log_prob(xp).double()
    s = ood_scores(model, xp, train_mean_log_px=-50.0)
    assert torch.allclose(s["log_likelihood"], log_px, rtol=0, atol=1e-6)
    for i in range(4):
        if binary:      # log2 P(x) of the binary image, and it compressed as a bilevel PNG
            want = log_px[i].item() / math.log(2) + _png_bits_by_hand((xp[i, 0] * 255).byte().numpy(), True)
        else:           # the density over [0, 1]^64 minus 64 ln 256 is log P(k), k = floor(256 x)
            k = (xp[i, 0] * 256).floor().byte().numpy()
            want = (log_px[i].item() - 64 * math.log(256)) / math.log(2) + _png_bits_by_hand(k, False)
        assert s["complexity"][i].item() == pytest.approx(want, abs=1e-6)
        assert s["typicality"][i].item() == pytest.approx(-abs(log_px[i].item() + 50.0), abs=1e-6)


def test_a_conditional_model_scores_log_sum_over_classes():
    model = _model("pixelcnn", conditional=True)
    xp = binarize_fixed(torch.randint(0, 256, (3, 1, 8, 8), generator=torch.Generator().manual_seed(3),
                                      dtype=torch.uint8), 0)
    per_class = [[model.log_prob(xp, labels=torch.full((3,), c)).double()[i].item() for c in range(10)]
                 for i in range(3)]
    want = [max(r) + math.log(sum(math.exp(v - max(r)) for v in r)) - math.log(10) for r in per_class]
    assert log_likelihoods(model, xp).tolist() == pytest.approx(want, abs=1e-6)


def test_refuses_models_without_a_usable_likelihood():
    with pytest.raises(GenzooError, match="defines none"):
        log_likelihoods(_model("dcgan"), torch.zeros(2, 1, 8, 8))


def test_diffusion_is_scored_by_its_bound_from_K_steps():
    model = _model("ddpm", timesteps=10)
    xp = dequantize_fixed(torch.randint(0, 256, (3, 1, 8, 8), generator=torch.Generator().manual_seed(3),
                                        dtype=torch.uint8), 0)
    g = torch.Generator().manual_seed(4 * 1_000_003 + 1)            # the documented seeding, batch at image 0
    want = model.log_prob(xp, steps=3, generator=g).double()
    assert torch.equal(log_likelihoods(model, xp, steps=3, seed=4), want)
    with pytest.raises(GenzooError, match="steps must be"):
        log_likelihoods(model, xp, steps=11)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ood") / "vae"
    assert main(["train", "vae", "--data", "digits", "--steps", "150", "--out", str(out), "--no-progress",
                 "--set", "batch_size=64", "--set", "coverage_every_steps=0", "--set", "sample_every_steps=0",
                 "--set", "final_eval=false", *tiny_args("vae")]) == 0
    return out


def _inverted_digits(folder):
    # the digits test images with black and white swapped, one subfolder per class: a folder data set of 8x8
    test = load_split("digits", "test")
    for i, (img, y) in enumerate(zip(test.images[:100], test.labels[:100])):
        (folder / str(int(y))).mkdir(parents=True, exist_ok=True)
        Image.fromarray(255 - img[0].numpy()).save(folder / str(int(y)) / f"{i}.png")
    return f"folder[size=8,channels=1]:{folder}"


def test_ood_command_against_inverted_digits(run, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GENZOO_DATA", str(tmp_path / "data"))        # the folder's cache stays in the test
    out_name = _inverted_digits(tmp_path / "inverted")
    report = tmp_path / "ood.json"
    assert main(["ood", str(run), "--data", "digits", "--ood-data", out_name, "--n", "60", "--iwae-k", "4",
                 "--out", str(report), "--no-progress"]) == 0
    res = json.loads(report.read_text())
    m = res["metrics"]
    # 10% of the 100 inverted images are the folder's test split
    assert res["n_in"] == 60 and res["n_out"] == 10 and res["n_train_reference"] == 60
    assert res["estimator"] == "IWAE bound on log p(x), k = 4" and res["inputs"] == "binarized (seed 0)"
    for key in ("ood_auroc", "ood_auroc_complexity", "ood_auroc_typicality"):
        assert 0 <= m[key] <= 1, key
    assert m["ood_auroc"] > 0.9                      # mostly-white images are far less likely under a digits model
    assert m["mean_log_px_in_nats"] > m["mean_log_px_out_nats"]
    for key in ("model", "run", "command", "machine", "in_dataset", "out_dataset", "scores", "seed"):
        assert key in res, key
    printed = capsys.readouterr().out
    assert "ood_auroc_complexity" in printed and "Serra" in printed


def test_ood_errors_are_one_clear_line(run, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GENZOO_DATA", str(tmp_path / "data"))
    big = tmp_path / "big"
    for c in range(2):
        (big / str(c)).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((16, 16), 40 * i, dtype=np.uint8)).save(big / str(c) / f"{i}.png")
    cases = [(["--data", "mnist", "--ood-data", "digits"], "trained on digits"),
             (["--ood-data", "digits"], "another data set than --data"),
             (["--ood-data", "no-such-set"], "Unknown data set"),
             (["--ood-data", f"folder[size=16,channels=1]:{big}"], "need one shape for both sets"),
             (["--ood-data", f"folder[size=8,channels=1]:{big}", "--n", "1"], "--n must be between 2")]
    for argv, reason in cases:
        assert main(["ood", str(run), *argv, "--no-progress"]) == 2, argv
        err = capsys.readouterr().err
        lines = err[err.index("genzoo: error: "):].strip().splitlines()     # after any data preparation notes
        assert all(line.startswith("  ") for line in lines[1:]) and "Traceback" not in err, argv
        assert reason in " ".join(line.strip() for line in lines), argv
