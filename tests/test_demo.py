"""genzoo demo: the page offers each model what it declares and nothing else, clamps every number to the declared
ranges, refuses bad uploads with a message, and works in a real browser (headless Chromium): a grid is drawn, an
image inpainted with a preset mask, ten real-or-fake answers change the tally, a corrupt upload shows its error while
the server keeps answering, and the page logs no console error and asks nothing of another host."""
import dataclasses
import json
import socket
import sys
import tempfile
import time
import urllib.request

import numpy as np
import pytest
import torch
from PIL import Image

import genzoo
from genzoo.cli import main
from genzoo.errors import GenzooError
from genzoo.models import build_model, default_config

from helpers import tiny_config

pytest.importorskip("gradio")

from genzoo.demo import served as sv, tasks, uploads   # noqa: E402  (after the skip: the page needs gradio)
from genzoo.demo.judgements import Judgements  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
TINY = {"width": 8, "latent_dim": 4, "mlp_hidden": 16}
KINDS = {   # a model of each kind (untrained, 1x8x8 like digits) -> the tabs its declaration earns
    "dcgan": ("sample", "restore", "interpolate"),                      # a GAN: no likelihood
    "cvae": ("sample", "restore", "interpolate", "classify"),           # a VAE: a bound, an encoder
    "ddpm": ("sample", "restore", "classify"),                          # diffusion: no latent space to walk
    "pixelcnn": ("sample", "restore", "classify"),
    "realnvp": ("sample", "restore", "interpolate", "classify"),
    "flow-matching": ("sample", "classify"),                            # an ODE estimate, nothing to restore with
}


@pytest.fixture(scope="module", autouse=True)
def _one_thread_and_pillow_limits():
    threads, pixels = torch.get_num_threads(), Image.MAX_IMAGE_PIXELS
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    Image.MAX_IMAGE_PIXELS = pixels                    # the page lowers it for its process


def _served(name: str, **over) -> sv.Served:
    cfg = dataclasses.replace(tiny_config(name), **over)
    return sv.Served(name=name, key=name, model=build_model(name, cfg).eval(), data="digits")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny conditional VAE and a tiny conditional GAN trained for seconds on digits."""
    out = {}
    for name in ("cvae", "cgan"):
        fields = {f.name for f in dataclasses.fields(default_config(name))}
        out[name] = tmp_path_factory.mktemp("demo") / name
        genzoo.train(name, data="digits", out=out[name], progress=False, steps=20, batch_size=32, bf16=False,
                     sample_every_steps=0, coverage_every_steps=0, final_eval=False,
                     **{k: v for k, v in TINY.items() if k in fields})
    return out


# -- what the page offers, from the declarations

@pytest.mark.parametrize("name", sorted(KINDS))
def test_tabs_are_the_declared_capabilities(name):
    assert sv.tabs(_served(name).model) == KINDS[name]


def test_the_page_has_one_tab_per_declared_capability_and_bounded_option_widgets(tmp_path):
    from genzoo.demo.app import build_page
    models = [_served(name, **({"timesteps": 20} if name == "ddpm" else {})) for name in sorted(KINDS)]
    page, _ = build_page(models, Judgements(tmp_path / "answers.jsonl"))
    components = page.config["components"]
    labels = {c["props"].get("elem_id"): c["props"].get("label") for c in components if c["type"] == "tabitem"}
    for i, s in enumerate(models):
        mine = {k.split("-")[1] for k in labels if k.startswith(f"model{i}-")}
        assert mine == set(KINDS[s.name]), s.name
    assert labels["judge-tab"] == "Real or fake"
    props = {c["props"].get("elem_id"): (c["type"], c["props"]) for c in components}
    i = [s.name for s in models].index("ddpm")
    kind, steps = props[f"model{i}-opt-steps"]          # declared [1, T], default None: a slider + "the model's"
    assert kind == "slider" and (steps["minimum"], steps["maximum"]) == (1, 20)
    assert props[f"model{i}-opt-steps-default"][1]["value"] is True
    assert props[f"model{i}-opt-sampler"][0] == "dropdown"
    i = [s.name for s in models].index("dcgan")
    kind, trunc = props[f"model{i}-opt-truncation"]     # (0, 10]: the open end is not offered
    assert kind == "slider" and 0 < trunc["minimum"] < 1 and trunc["maximum"] == 10
    assert props[f"model{i}-n"][1]["maximum"] == sv.MAX_IMAGES


def test_numbers_are_clamped_to_the_declared_ranges():
    assert sv.number(1000, 1, sv.MAX_IMAGES, "n") == 64 and sv.number(-3.6, 0, None, "seed") == 0
    assert sv.number("7.4", 0, 10, "x") == 7 and sv.number(2.5, 0, 1, "x", integer=False) == 1.0
    for bad in (None, "", "seven", float("nan"), float("inf")):
        with pytest.raises(GenzooError, match="the seed"):
            sv.number(bad, 0, 10, "the seed")
    ddpm = _served("ddpm", timesteps=20)
    picture, caption = tasks.sample_grid(ddpm, 1000, -5, None, {"steps": 10**9, "eta": 7.0, "sampler": "ddim"})
    assert caption == "64 samples, seed 0, steps=20, eta=1.0, sampler=ddim"
    assert picture.dtype == np.uint8 and picture.shape[2] == 3 and picture.shape[1] >= sv.GRID_PX * 0.75
    gan = _served("dcgan")
    assert sv.sample_options(gan.model, {"truncation": 50.0}) == {"truncation": 10.0}
    assert sv.sample_options(gan.model, {"truncation": None}) == {}                     # the model's default
    with pytest.raises(GenzooError, match=r"truncation must be a number in \(0, 10\]"):
        sv.sample_options(gan.model, {"truncation": -1})                               # clamped to the open end
    with pytest.raises(GenzooError, match="sampler must be one of"):
        sv.sample_options(ddpm.model, {"sampler": "euler"})
    cvae = _served("cvae")
    assert sv.labels(cvae.model, "99", 3).tolist() == [9, 9, 9]
    assert sv.labels(cvae.model, sv.EACH_CLASS, 12).tolist() == [*range(10), 0, 1]
    assert sv.test_image(cvae, 10**6)[0].shape == (1, 1, 8, 8)                         # the last test image


def test_bad_uploads_are_refused_with_a_message(tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray((np.arange(256).reshape(16, 16)).astype(np.uint8)).save(good)
    x = uploads.read_upload(good, 1, 8)
    assert x.shape == (1, 1, 8, 8) and 0 <= x.min() and x.max() <= 1
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    (tmp_path / "text.png").write_text("not an image")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "image.tiff")             # a format not read
    Image.new("1", (5000, 5000)).save(tmp_path / "bomb.png")                               # 25 M pixels in 4 kB
    with open(tmp_path / "big.png", "wb") as f:
        f.truncate(uploads.MAX_UPLOAD_BYTES + 1)
    for name, why in [("corrupt.png", "cannot be read as an image"), ("text.png", "cannot be read as an image"),
                      ("image.tiff", "cannot be read as an image"), ("bomb.png", "more than the 16,777,216 pixels"),
                      ("big.png", "at most 5 MB"), ("gone.png", "upload it again")]:
        with pytest.raises(GenzooError, match=why):
            uploads.read_upload(tmp_path / name, 1, 8)
    with pytest.raises(GenzooError, match="no image uploaded"):
        uploads.read_upload(None, 1, 8)
    uploads.limit_decoding()                                                                # gradio's decodes too
    with pytest.raises((Image.DecompressionBombError, Image.DecompressionBombWarning)):
        Image.open(tmp_path / "bomb.png").load()


def test_a_drawn_mask_marks_the_painted_pixels_unknown():
    layer = np.zeros((64, 64, 4), np.uint8)
    layer[16:48, 0:32, 3] = 255                                   # the left half of the middle rows, painted
    known = uploads.drawn_mask([layer], 8)
    assert known.shape == (1, 1, 8, 8) and known.dtype == torch.bool
    assert not known[0, 0, 2:6, 0:4].any() and known[0, 0, :2].all() and known[0, 0, :, 4:].all()
    with pytest.raises(GenzooError, match="nothing is drawn"):
        uploads.drawn_mask([np.zeros((64, 64, 4), np.uint8)], 8)


def test_without_gradio_the_command_says_how_to_install_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gradio", None)                   # import gradio raises ImportError
    assert main(["demo", "cgan-mnist"]) == 2
    assert 'pip install "genzoo[demo]"' in " ".join(capsys.readouterr().err.split())


def test_the_command_passes_its_flags_and_refuses_a_bad_port(monkeypatch, capsys, tmp_path):
    import genzoo.demo.app as app
    calls = []
    monkeypatch.setattr(app, "serve", lambda refs, **kw: calls.append((refs, kw)))
    assert main(["demo", "a", "runs/b", "--port", "8000", "--judgements", str(tmp_path / "j.jsonl")]) == 0
    assert calls == [(["a", "runs/b"], {"host": "127.0.0.1", "port": 8000, "judgements": str(tmp_path / "j.jsonl"),
                                        "device": "cpu", "ema": True, "seed": None})]
    monkeypatch.undo()
    assert main(["demo", "cgan-mnist", "--port", "70000"]) == 2
    assert "port must be an integer between 0 and 65535" in capsys.readouterr().err


def test_each_tab_computes_with_a_trained_model(runs, tmp_path):
    from genzoo.demo.judgements import draw
    from genzoo.sampling import sample
    cvae = sv.open_models([str(runs["cvae"])])[0]
    assert cvae.key == str(runs["cvae"].resolve()) and sv.tabs(cvae.model) == KINDS["cvae"]
    grid, _ = tasks.sample_grid(cvae, 20, 3, sv.EACH_CLASS, {})      # what `genzoo sample -n 20 --seed 3` draws
    assert np.array_equal(grid, sv.picture(sample(cvae.model, 20, 3, labels=torch.arange(20) % 10), nrow=10))
    x, label = sv.test_image(cvae, 5)
    for task in ("denoise", "superres"):
        picture, text = tasks.restore_image(cvae, x, label, task, "center", None, 0.2, None, 0)
        assert picture.shape[1] >= 3 * sv.IMAGE_PX * 0.75 and text.startswith(f"{task} by latent-map")
    _, text = tasks.restore_image(cvae, x, label, "inpaint", "half", None, None, "4", 0, {"restarts": 99, "iters": 0})
    assert text.startswith("inpaint (half mask) by latent-map (restarts=16, iters=1)")            # the knobs, clamped
    with pytest.raises(GenzooError, match="nothing is drawn"):
        tasks.restore_image(cvae, x, label, "inpaint", "drawn", [], None, None, 0)
    with pytest.raises(GenzooError, match="choose the uploaded image's class"):
        tasks.restore_image(cvae, x, -1, "inpaint", "center", None, None, tasks.OWN_CLASS, 0)
    Image.fromarray((x[0, 0].numpy() * 255).astype(np.uint8)).resize((32, 32)).save(tmp_path / "digit.png")
    upload, _ = tasks.chosen_image(cvae, "upload", None, tmp_path / "digit.png")
    ends = torch.cat([x, upload])
    strip, gif, text = tasks.interpolate_strip(cvae, "two uploads", (0, 0), ends, "3", 100, "lerp", tmp_path)
    assert gif.read_bytes()[:6] == b"GIF89a" and text.startswith("32 steps by lerp between the two images")
    strip, gif, text = tasks.interpolate_strip(cvae, "two seeds", (4, -1), None, None, 5, "slerp", tmp_path)
    assert text == "5 steps by slerp between seeds 4 and 0, class 0"
    out = tasks.classify_image(cvae, upload)
    assert abs(sum(out["bayes"].values()) - 1) < 1e-6 and abs(sum(out["discriminative"].values()) - 1) < 1e-6
    assert "distribution**: score" in out["text"] and "threshold" in out["text"]
    # the real-or-fake questions follow the seeded coin, and an answer is stored with its truth
    questions, answers = tasks.Questions(tasks.pools([cvae])), Judgements(tmp_path / "answers.jsonl")
    for index in range(4):
        picture, asked = questions.ask("digits", 7, index)
        source, k = draw(7, index, [cvae.key], pool=len(sv.test_split("digits").images))
        assert asked["source"] == source and asked["image_id"].endswith(f"{k}" if source == "real" else f"{k % 10}")
        tasks.record_answer(answers, asked, "real")
    assert sum(answers.tally([cvae.key])[k]["n"] for k in (cvae.key, "real")) == 4


# -- the page in a browser

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_text(page, selector: str, text: str, timeout_ms: int = 90_000) -> None:
    page.wait_for_function("([s, t]) => document.querySelector(s) && document.querySelector(s).innerText.includes(t)",
                           arg=[selector, text], timeout=timeout_ms)


def _picture_width(page, selector: str) -> int:
    """The natural width of the image under ``selector`` once it has loaded."""
    page.wait_for_function("s => { const i = document.querySelector(s + ' img'); return i && i.complete && "
                           "i.naturalWidth > 0; }", arg=selector)
    return page.eval_on_selector(selector + " img", "i => i.naturalWidth")


def _answers(tally: str) -> int:
    """The total of the tally's answers column (its second column)."""
    rows = [r.split("\t") for r in tally.splitlines() if "\t" in r][1:]
    return sum(int(r[1]) for r in rows)


def test_the_page_in_a_browser(runs, tmp_path):
    from playwright.sync_api import sync_playwright
    from genzoo.demo.app import serve
    port, answers = _free_port(), tmp_path / "answers.jsonl"
    page = serve([str(runs["cvae"]), str(runs["cgan"])], port=port, judgements=answers, seed=1, block=False,
                 quiet=True)
    assert page.max_file_size == uploads.MAX_UPLOAD_BYTES                  # gradio refuses larger uploads
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    errors, requests = [], []
    try:
        with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
            browser = p.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, headless=True,
                                                           args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
            tab = browser.new_page()
            tab.set_default_timeout(90_000)                  # a machine busy with other work is slow, not broken
            tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            tab.on("pageerror", lambda e: errors.append(str(e)))
            tab.on("request", lambda r: requests.append(r.url))
            tab.goto(f"http://127.0.0.1:{port}/")
            _draw_a_grid(tab)
            _inpaint_with_a_preset(tab)
            _refuse_a_corrupt_upload(tab, tmp_path / "corrupt.png", port)
            _inpaint_what_is_drawn(tab)                   # the image editor's uploads come after the file's
            _judge_ten_images(tab, answers, {str(runs[k].resolve()) for k in runs})
            _the_gan_has_no_classify_tab(tab)
            browser.close()
    finally:
        page.close()
    assert not errors, errors
    assert all(u.startswith(f"http://127.0.0.1:{port}/") or u.startswith(("data:", "blob:")) for u in requests), \
        sorted({u for u in requests if "127.0.0.1" not in u})


def _draw_a_grid(tab) -> None:
    tab.wait_for_selector("#model0-sample")
    tab.fill("#model0-seed input", "3")
    tab.click("#model0-sample")
    _wait_text(tab, "#model0-caption", "16 samples, seed 3, each class in turn")
    assert _picture_width(tab, "#model0-grid") >= sv.GRID_PX * 0.75


def _inpaint_with_a_preset(tab) -> None:
    tab.click("#model0-restore-tab-button")
    tab.locator("#model0-mask").get_by_label("half").check()
    tab.click("#model0-restore")
    _wait_text(tab, "#model0-restore-caption", "inpaint (half mask) by latent-map")
    assert _picture_width(tab, "#model0-restored") >= 3 * sv.IMAGE_PX * 0.75


def _inpaint_what_is_drawn(tab) -> None:
    tab.click("#model0-restore-tab-button")
    tab.click("#model0-show")
    tab.wait_for_selector("#model0-editor canvas")
    tab.click("#model0-editor button[aria-label=Brush]")
    box = tab.locator("#model0-editor canvas").first.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    tab.mouse.move(x - 40, y)
    tab.mouse.down()
    tab.mouse.move(x + 40, y, steps=10)
    tab.mouse.up()
    tab.locator("#model0-mask").get_by_label("drawn").check()
    tab.click("#model0-restore")
    _wait_text(tab, "#model0-restore-caption", "inpaint (drawn mask) by latent-map")


def _refuse_a_corrupt_upload(tab, corrupt, port: int) -> None:
    tab.click("#model0-classify-tab-button")
    tab.wait_for_selector("#model0-classify-upload", state="visible")          # the tab is mounted
    tab.set_input_files("#model0-classify-upload input[type=file]", str(corrupt))
    _wait_text(tab, "#model0-classify-upload", "corrupt.png")
    tab.locator("#model0-classify-source").get_by_label("upload").check()
    tab.click("#model0-classify")
    tab.wait_for_selector(".toast-body :text('cannot be read as an image')")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:    # the server still answers
        assert r.status == 200
    tab.locator("#model0-classify-source").get_by_label("test image").check()
    tab.click("#model0-classify")                                                  # and so does the page
    _wait_text(tab, "#model0-verdict", "threshold")
    assert "distribution" in tab.inner_text("#model0-verdict") and "p(y|x)" in tab.inner_text("#model0-bayes")


def _judge_ten_images(tab, answers, keys: set[str]) -> None:
    tab.click("#judge-tab-button")
    _wait_text(tab, "#judge-status", "Question 1 (session seed 1)")
    assert _answers(tab.inner_text("#judge-tally")) == 0
    for i in range(10):
        tab.click("#judge-real" if i % 3 else "#judge-fake")
        _wait_text(tab, "#judge-status", f"Question {i + 2} ")
        assert _answers(tab.inner_text("#judge-tally")) == i + 1
    rows = [json.loads(line) for line in answers.read_text().splitlines()]
    assert len(rows) == 10 and [r["answer"] for r in rows] == ["fake" if i % 3 == 0 else "real" for i in range(10)]
    assert all((r["model"] == "real") == (r["truth"] == "real") and r["response_s"] >= 0 for r in rows)
    assert {r["model"] for r in rows} <= {"real", *keys}                # a run's answers go under its absolute path


def _the_gan_has_no_classify_tab(tab) -> None:
    tab.click("#models-tab-button")
    tab.locator("#model").get_by_label("cgan").check()
    tab.wait_for_selector("#model1-sample")
    time.sleep(0.2)
    titles = tab.locator("#model1 [role=tab]").all_inner_texts()
    assert titles == ["Sample", "Restore", "Interpolate"], titles
