"""`genzoo report`: the memorisation fraction (against a float64 double loop and on real digits features), and
the page itself, opened in headless Chromium."""
import json
import math
import tempfile
from pathlib import Path

import pytest
import torch
from PIL import Image

from genzoo.classifier import load_frozen
from genzoo.cli import main
from genzoo.demo.judgements import REAL, Judgements, model_key, wilson
from genzoo.reference import real_features
from genzoo.report import copy_test, memorisation_fraction, nearest_neighbours, nearest_other_distance
from helpers import tiny_args

CHROMIUM = "/usr/bin/chromium"      # Debian's chromium, installed by scripts/setup_browser.sh


def _brute(queries, train):
    """A float64 double loop: per query, the nearest training row (lowest index on ties), its distance, and
    whether it is a copy (distance <= that row's distance to its nearest other training row)."""
    q, t = queries.double().tolist(), train.double().tolist()

    def dist(a, b):
        return math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b)))
    radius = []
    for i, a in enumerate(t):
        radius.append(min(dist(a, b) for j, b in enumerate(t) if j != i))
    out = []
    for a in q:
        best_j, best_d = -1, math.inf
        for j, b in enumerate(t):
            d = dist(a, b)
            if d < best_d:
                best_j, best_d = j, d
        out.append((best_j, best_d, best_d <= radius[best_j]))
    return radius, out


def test_memorisation_fraction_matches_a_float64_double_loop():
    g = torch.Generator().manual_seed(0)
    train = torch.randn(90, 6, generator=g)
    train[10] = train[3]                                   # an exact duplicate inside the training set
    queries = torch.cat([torch.randn(50, 6, generator=g),
                         train[:12],                       # exact copies (including the duplicated row)
                         train[20:30] + 0.01 * torch.randn(10, 6, generator=g)])   # near copies
    radius, want = _brute(queries, train)
    for batch_size in (7, 1000):                           # blocks that cut across rows, and one block
        got_r = nearest_other_distance(train, batch_size=batch_size)
        assert got_r.tolist() == pytest.approx(radius, abs=1e-12)
        res = copy_test(queries, train, batch_size=batch_size)
        assert res["nearest"].tolist() == [j for j, _, _ in want]
        assert res["distance"].tolist() == pytest.approx([d for _, d, _ in want], abs=1e-12)
        assert res["copy"].tolist() == [c for _, _, c in want]
        frac = memorisation_fraction(queries, train, batch_size=batch_size)
        assert frac == sum(c for _, _, c in want) / len(want)
    flags = [c for _, _, c in want]
    assert all(flags[50:]) and 0 < sum(flags[:50]) < 50   # the 22 copies are; new random draws are a mix
    # the 3 nearest, in order, against sorting every distance
    d, i = nearest_neighbours(queries[:20], train, k=3, batch_size=7)
    full = torch.cdist(queries[:20].double(), train.double())
    assert torch.allclose(d, full.sort(1).values[:, :3], atol=1e-12)


def test_memorisation_fraction_on_real_digits_features():
    clf, _ = load_frozen("digits")
    train = real_features(clf, "digits", "train", progress=False)          # (1497, 128)
    test = real_features(clf, "digits", "test", progress=False)            # (300, 128)
    perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
    member, held_out = train[perm[:1000]], train[perm[1000:]]              # held_out: 497 never-seen images
    radius = nearest_other_distance(member)
    assert memorisation_fraction(member, member, radius) == 1.0
    f_test = memorisation_fraction(test, member, radius)
    f_ref = memorisation_fraction(held_out, member, radius)
    # test images and held-out train images are both new draws of the same distribution: the same fraction
    # up to sampling noise (binomial std about 0.03 for the difference), and far from 1
    assert abs(f_test - f_ref) < 0.1
    assert f_test < 0.8
    # a model that returns its training images with a little noise is caught
    copies = member[:300] + 0.02 * torch.randn(300, member.shape[1], generator=torch.Generator().manual_seed(1))
    assert memorisation_fraction(copies, member, radius) > 0.95


# ---------------------------------------------------------------------------------------------
# the page, in a browser

SECTIONS = ("samples", "reconstructions", "curves", "metrics", "memorisation", "feature-map")


def _train(out, model, data, steps, extra=()):
    argv = ["train", model, "--data", data, "--steps", str(steps), "--out", str(out), "--no-progress",
            "--set", "batch_size=32", "--set", "log_every_steps=2", "--set", "bf16=false",
            "--set", "coverage_every_steps=0", *tiny_args(model), *extra]
    assert main(argv) == 0


def _open_pages(paths):
    """Load each page in headless Chromium; per page: console errors, non-local requests, and per section its
    presence, its images' natural widths and whether it says 'Not available'."""
    from playwright.sync_api import sync_playwright
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run", "--disable-sync"]
    results = []
    with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        browser = p.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, headless=True, args=args)
        for path in paths:
            page = browser.new_page()
            errors, requests = [], []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(Path(path).resolve().as_uri(), wait_until="load")
            sections = page.evaluate("""ids => Object.fromEntries(ids.map(id => {
                const s = document.getElementById(id);
                return [id, s === null ? null : {
                    widths: [...s.querySelectorAll('img')].map(i => i.complete ? i.naturalWidth : -1),
                    note: s.innerText.includes('Not available')}];
            }))""", list(SECTIONS))
            results.append({"errors": errors, "requests": [u for u in requests if not u.startswith(("file:", "data:"))],
                            "sections": sections})
            page.close()
        browser.close()
    return results


def test_report_renders_in_a_browser(tmp_path):
    # a conditional VAE on digits: per-class rows, reconstructions, validation curves, an eval table, the
    # feature sections; a DCGAN on patches: no reconstructions, no frozen classifier
    cond = tmp_path / "cvae"
    _train(cond, "cvae", "digits", 4, ["--set", "val_every_steps=2"])
    assert main(["eval", str(cond), "--metrics", "fid,kid,pr,score", "--n", "200", "--no-progress"]) == 0
    answers = Judgements(tmp_path / "answers.jsonl")     # two of this model's samples passed for real, of four
    for i, answer in enumerate(["real", "fake", "real", "fake"]):
        answers.record(model_key(cond), f"sample:{i}", "fake", answer, 1.0)
    answers.record(REAL, "test:0", "real", "real", 1.0)
    answers.record("another-model", "sample:9", "fake", "real", 1.0)
    assert main(["report", str(cond), "--n", "300", "--no-progress", "--judgements", str(answers.path)]) == 0
    gan = tmp_path / "gan"
    _train(gan, "dcgan", "patches", 4)
    out = tmp_path / "elsewhere" / "gan.html"
    (tmp_path / "elsewhere").mkdir()
    assert main(["report", str(gan), "--out", str(out), "--n", "100", "--no-progress"]) == 0

    page = (cond / "report.html").read_text()
    assert "<script" not in page and "http://" not in page and "https://" not in page
    assert {p.name for p in (cond / "report").glob("*.png")} == {
        "samples.png", "reconstructions.png", "curves.png", "nearest_train.png", "nn_distances.png",
        "feature_map.png"}
    # one row of 10 per class: 10 x 10 tiles of 8 px, 2 px padding, scaled 7x
    assert Image.open(cond / "report" / "samples.png").size == ((10 * 10 + 2) * 7,) * 2
    assert "val/elbo_nats" in page and "fid_ref" not in page and "real vs real" in page
    fid_ref = json.loads((cond / "eval.json").read_text())["metrics"]["fid_ref"]
    assert f"{fid_ref:.4g}" in page
    assert {p.name for p in (tmp_path / "elsewhere" / "gan").glob("*.png")} == {"samples.png", "curves.png"}
    low, high = wilson(2, 4)
    assert "Human evaluation" in page and f"50.0% [{100 * low:.1f}, {100 * high:.1f}]" in page
    assert "Human evaluation" not in out.read_text()                  # no answers on the GAN's samples

    assert main(["report", str(cond), "--out", str(tmp_path / "r.txt")]) == 2      # bad input: a clear error
    assert main(["report", str(cond), "--n", "5"]) == 2

    cond_page, gan_page = _open_pages([cond / "report.html", out])
    for result in (cond_page, gan_page):
        assert result["errors"] == [] and result["requests"] == []
        assert all(result["sections"][s] is not None for s in SECTIONS)
    want_images = {"samples": 1, "reconstructions": 1, "curves": 1, "metrics": 0, "memorisation": 2, "feature-map": 1}
    for name, count in want_images.items():
        widths = cond_page["sections"][name]["widths"]
        assert len(widths) == count and all(w > 0 for w in widths), (name, widths)
        assert not cond_page["sections"][name]["note"]
    for name in ("memorisation", "feature-map"):        # no frozen classifier for patches: one line instead
        assert gan_page["sections"][name] == {"widths": [], "note": True}
    assert len(gan_page["sections"]["samples"]["widths"]) == 1 and gan_page["sections"]["samples"]["widths"][0] > 0
    assert gan_page["sections"]["reconstructions"]["widths"] == []
