"""The page of ``genzoo demo``, in gradio: a model chooser, one tab per capability the chosen model declares
(served.tabs), and the real-or-fake test. The widgets' ranges are the model's declared ones; each handler clamps
what it gets again, computes with tasks.py under the model's lock, and turns a failure into a message on the page.

Bounds: the page listens on 127.0.0.1 unless told otherwise; uploads are at most MAX_UPLOAD_BYTES, of the formats
uploads.py reads, decoded with Pillow's limits set low (uploads.limit_decoding); requests wait in one queue
(at most MAX_QUEUE) and each model's work runs one request at a time; gradio's telemetry is off, so nothing
leaves the machine.
"""
from __future__ import annotations

import functools
import os
import secrets
import tempfile
import traceback
from pathlib import Path

import torch

from ..errors import GenzooError
from . import served as sv
from . import tasks
from .uploads import EXTENSIONS, MAX_UPLOAD_BYTES, limit_decoding

MAX_QUEUE = 64                         # requests waiting at once; more are refused with a message
SOURCES = ("test image", "upload")


def _gradio():
    """The gradio module, with its telemetry off, or a GenzooError that says how to install it."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    try:
        import gradio
    except ImportError:
        raise GenzooError('genzoo demo needs gradio: pip install "genzoo[demo]".') from None
    return gradio


def _on_page(fn):
    """A handler whose failures show on the page as a message (the server keeps serving)."""
    gr = _gradio()

    @functools.wraps(fn)
    def handler(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except GenzooError as e:
            raise gr.Error(str(e), print_exception=False) from None
        except Exception as e:                # a bug or an exhausted machine: say so, keep serving
            traceback.print_exc()
            raise gr.Error(f"the request failed ({type(e).__name__}: {e}); the page still works.",
                           print_exception=False) from None
    return handler


def _queue(slug: str) -> dict:
    """One request at a time per model (its own queue)."""
    return {"concurrency_limit": 1, "concurrency_id": f"{slug}-work", "show_progress": "full"}


def _start_value(opt):
    """Where an option's widget starts when its default is None (the model's choice, ticked by default)."""
    if opt.low is not None and opt.high is not None:
        middle = (opt.low + opt.high) / 2
        return round(middle) if opt.type is int else middle
    return (opt.low or 0) + 1


def _option_widget(gr, opt, elem_id: str):
    """Bounded widgets for one declared sampling option: (a slider where both ends are declared, else a number box
    with the declared bound; a dropdown of its choices; a checkbox, and for an option whose default is None the
    checkbox "the model's default", ticked)."""
    if opt.type is bool:
        return gr.Checkbox(bool(opt.default), label=opt.name, info=opt.help, elem_id=elem_id), None
    if opt.type is str:
        return gr.Dropdown(list(opt.choices), value=opt.default, label=opt.name, info=opt.help,
                           elem_id=elem_id), None
    whole = opt.type is int
    info = f"{opt.help} (range {opt.range_text()})"
    value = opt.default if opt.default is not None else _start_value(opt)
    if opt.low is not None and opt.high is not None:
        low = opt.low if not opt.low_open else opt.low + (opt.high - opt.low) / 100
        widget = gr.Slider(low, opt.high, value=value, step=1 if whole else (opt.high - opt.low) / 100,
                           label=opt.name, info=info, elem_id=elem_id)
    else:
        widget = gr.Number(value, label=opt.name, info=info, precision=0 if whole else None, minimum=opt.low,
                           maximum=opt.high, step=1 if whole else 0.1, elem_id=elem_id)
    if opt.default is not None:
        return widget, None
    return widget, gr.Checkbox(True, label=f"{opt.name}: the model's default", elem_id=f"{elem_id}-default")


def _picture(gr, label: str, elem_id: str, buttons=("download", "fullscreen"), **more):
    """An image the page shows (a PNG: pixels stay exact)."""
    return gr.Image(label=label, format="png", interactive=False, buttons=list(buttons), elem_id=elem_id, **more)


def _image_choice(gr, served, slug: str, what: str):
    """The widgets that pick an image: (source radio, test image number, upload)."""
    n_test = len(sv.test_split(served.data).images)
    source = gr.Radio(list(SOURCES), value=SOURCES[0], label="image", elem_id=f"{slug}-{what}-source")
    index = gr.Number(0, label=f"test image number (0 to {n_test - 1})", precision=0, minimum=0,
                      maximum=n_test - 1, elem_id=f"{slug}-{what}-index")
    upload = gr.File(label=f"or an image file ({', '.join(EXTENSIONS)}; at most {MAX_UPLOAD_BYTES // 2**20} MB)",
                     file_types=list(EXTENSIONS), type="filepath", elem_id=f"{slug}-{what}-upload")
    return source, index, upload


def _sample_tab(gr, served, slug: str, _out_dir: Path) -> None:
    model = served.model
    with gr.Row():
        with gr.Column(scale=1):
            seed = gr.Number(0, label="seed", precision=0, minimum=0, maximum=sv.MAX_SEED, elem_id=f"{slug}-seed")
            n = gr.Slider(1, sv.MAX_IMAGES, value=16, step=1, label="images", elem_id=f"{slug}-n")
            label = gr.Dropdown([sv.EACH_CLASS, *sv.class_choices(model)], value=sv.EACH_CLASS, label="class",
                                elem_id=f"{slug}-class") if model.capabilities.conditional else None
            options = {o.name: _option_widget(gr, o, f"{slug}-opt-{o.name}")
                       for o in model.capabilities.sample_options}       # name -> (widget, "default" or None)
            button = gr.Button("Sample", variant="primary", elem_id=f"{slug}-sample")
        with gr.Column(scale=2):
            grid = _picture(gr, "samples", f"{slug}-grid")
            caption = gr.Markdown(elem_id=f"{slug}-caption")

    @_on_page
    def run(v, progress=gr.Progress()):
        progress(0, desc="sampling")
        values = {name: None if default is not None and v[default] else v[w] for name, (w, default) in options.items()}
        with served.lock:
            return tasks.sample_grid(served, v[n], v[seed], v[label] if label else None, values)
    widgets = {w for pair in options.values() for w in pair if w is not None}
    button.click(run, {n, seed, *([label] if label else []), *widgets}, [grid, caption], **_queue(slug))


def _restore_tab(gr, served, slug: str, _out_dir: Path) -> None:
    from ..apps.restore import PRESETS, capabilities
    model = served.model
    methods = capabilities(model)
    with gr.Row():
        with gr.Column(scale=1):
            source, index, upload = _image_choice(gr, served, slug, "restore")
            task = gr.Radio(list(methods), value=next(iter(methods)), label="task (the image is degraded first)",
                            elem_id=f"{slug}-task")
            mask = gr.Radio([*PRESETS, "drawn"], value=PRESETS[0], label="inpaint: mask (drawn: paint below)",
                            elem_id=f"{slug}-mask")
            noise = gr.Slider(*tasks.NOISE_STD, value=0.3, step=0.01, label="denoise: noise std ([0, 1] units)",
                              elem_id=f"{slug}-noise")
            label = gr.Dropdown([tasks.OWN_CLASS, *sv.class_choices(model)], value=tasks.OWN_CLASS,
                                label="class", elem_id=f"{slug}-restore-class") \
                if model.capabilities.conditional else None
            seed = gr.Number(0, label="seed", precision=0, minimum=0, maximum=sv.MAX_SEED,
                             elem_id=f"{slug}-restore-seed")
            knobs = {name: gr.Slider(low, high, value=start, step=1, label=f"{name} (the method's cost)",
                                     elem_id=f"{slug}-restore-{name}")
                     for name, (low, start, high) in tasks.restore_knobs(model).items()}
            button = gr.Button("Restore", variant="primary", elem_id=f"{slug}-restore")
        with gr.Column(scale=2):
            editor = gr.ImageEditor(label="paint the pixels to fill in (mask: drawn)", type="numpy", format="png",
                                    sources=[], transforms=[], layers=False, elem_id=f"{slug}-editor",
                                    brush=gr.Brush(colors=["#ff3030"], default_size=16))
            show = gr.Button("Show the image to paint on", elem_id=f"{slug}-show")
            result = _picture(gr, "input, result, original", f"{slug}-restored")
            caption = gr.Markdown(elem_id=f"{slug}-restore-caption")

    @_on_page
    def to_editor(v):
        x, _ = tasks.chosen_image(served, v[source], v[index], v[upload])
        return {"background": sv.picture(x, width_px=sv.IMAGE_PX), "layers": [], "composite": None}

    @_on_page
    def run(v, progress=gr.Progress(track_tqdm=True)):
        x, test_label = tasks.chosen_image(served, v[source], v[index], v[upload])
        progress(0, desc=f"{v[task]}")
        layers = (v[editor] or {}).get("layers") if v[mask] == "drawn" else None
        with served.lock:
            return tasks.restore_image(served, x, test_label, v[task], v[mask], layers, v[noise],
                                       v[label] if label else None, v[seed], {k: v[w] for k, w in knobs.items()},
                                       progress=True)
    show.click(to_editor, {source, index, upload}, editor, queue=False)
    inputs = {source, index, upload, task, mask, noise, seed, editor, *knobs.values(), *([label] if label else [])}
    button.click(run, inputs, [result, caption], **_queue(slug))


def _interpolate_tab(gr, served, slug: str, out_dir: Path) -> None:
    model = served.model
    modes = sv.interpolation_modes(model)
    n_test = len(sv.test_split(served.data).images)
    with gr.Row():
        with gr.Column(scale=1):
            mode = gr.Radio(list(modes), value=modes[0], label="between", elem_id=f"{slug}-between")
            seeds = [gr.Number(i, label=f"seed {'AB'[i]}", precision=0, minimum=0, maximum=sv.MAX_SEED,
                               elem_id=f"{slug}-seed-{'ab'[i]}") for i in range(2)]
            images = []
            if model.capabilities.encode:
                images = [gr.Number(i, label=f"test image {'AB'[i]} (0 to {n_test - 1})", precision=0, minimum=0,
                                    maximum=n_test - 1, elem_id=f"{slug}-image-{'ab'[i]}") for i in range(2)]
                images += [gr.File(label=f"or upload {'AB'[i]}", file_types=list(EXTENSIONS), type="filepath",
                                   elem_id=f"{slug}-upload-{'ab'[i]}") for i in range(2)]
            label = gr.Dropdown(sv.class_choices(model), value="0", label="class of the path",
                                elem_id=f"{slug}-path-class") if model.capabilities.conditional else None
            steps = gr.Slider(2, tasks.MAX_INTERPOLATION_STEPS, value=10, step=1, label="steps",
                              elem_id=f"{slug}-steps")
            method = gr.Radio(["slerp", "lerp"], value="slerp", label="path", elem_id=f"{slug}-method")
            button = gr.Button("Interpolate", variant="primary", elem_id=f"{slug}-interpolate")
        with gr.Column(scale=2):
            strip = _picture(gr, "strip", f"{slug}-strip")
            gif = _picture(gr, "animation", f"{slug}-gif", type="filepath")
            caption = gr.Markdown(elem_id=f"{slug}-interpolate-caption")

    @_on_page
    def run(v, progress=gr.Progress()):
        progress(0, desc="interpolating")
        ends = None
        if v[mode] == "two test images":
            ends = torch.cat([sv.test_image(served, v[images[i]])[0] for i in range(2)])
        elif v[mode] == "two uploads":
            ends = torch.cat([tasks.chosen_image(served, "upload", None, v[images[2 + i]])[0] for i in range(2)])
        with served.lock:
            return tasks.interpolate_strip(served, v[mode], [v[s] for s in seeds], ends, v[label] if label else None,
                                           v[steps], v[method], out_dir)
    button.click(run, {mode, *seeds, *images, steps, method, *([label] if label else [])}, [strip, gif, caption],
                 **_queue(slug))


def _classify_tab(gr, served, slug: str, _out_dir: Path) -> None:
    model = served.model
    with gr.Row():
        with gr.Column(scale=1):
            source, index, upload = _image_choice(gr, served, slug, "classify")
            button = gr.Button("Classify and check", variant="primary", elem_id=f"{slug}-classify")
            seen = _picture(gr, "the image as the model sees it", f"{slug}-classified")
        with gr.Column(scale=2):
            bayes = gr.Label(label="p(y|x) by Bayes' rule from this model", num_top_classes=3,
                             elem_id=f"{slug}-bayes") if model.capabilities.conditional else None
            disc = gr.Label(label="genzoo's discriminative classifier", num_top_classes=3, elem_id=f"{slug}-disc")
            verdict = gr.Markdown(elem_id=f"{slug}-verdict")

    @_on_page
    def run(v, progress=gr.Progress()):
        x, _ = tasks.chosen_image(served, v[source], v[index], v[upload])
        progress(0, desc="scoring log p(x)")
        with served.lock:
            out = tasks.classify_image(served, x)
        shown = [sv.picture(x, width_px=sv.IMAGE_PX)] + ([out["bayes"]] if bayes else [])
        return [*shown, out["discriminative"], out["text"]]
    button.click(run, {source, index, upload}, [seen, *([bayes] if bayes else []), disc, verdict], **_queue(slug))


BUILDERS = {"sample": _sample_tab, "restore": _restore_tab, "interpolate": _interpolate_tab,
            "classify": _classify_tab}


def _model_section(gr, served, slug: str, visible: bool, out_dir: Path):
    with gr.Column(visible=visible, elem_id=slug) as section:
        gr.Markdown(sv.describe(served))
        with gr.Tabs():
            for tab in sv.tabs(served.model):
                with gr.Tab(sv.TAB_TITLES[tab], id=f"{slug}-{tab}", elem_id=f"{slug}-{tab}-tab"):
                    BUILDERS[tab](gr, served, slug, out_dir)
    return section


def _real_or_fake(gr, tab, models: list, judgements, seed: int | None) -> None:
    """One image at a time, a real test image or a sample of one of the models of a data set (the seeded coin of
    judgements.draw); each answer is stored in ``judgements`` and the tally beside it follows."""
    pools = tasks.pools(models)
    questions = tasks.Questions(pools)
    gr.Markdown("Is this image real (from the test set) or made by a model? Half of the images are real. Each "
                f"answer is stored on this machine, in {judgements.path}.")
    data = gr.Radio(list(pools), value=next(iter(pools)), label="data set", visible=len(pools) > 1,
                    elem_id="judge-data")
    state = gr.State(None)          # {"data", "seed", "index", "asked": the question on screen}
    with gr.Row():
        with gr.Column(scale=1):
            image = _picture(gr, "real or fake?", "judge-image", buttons=[])
            with gr.Row():
                real = gr.Button("Real", elem_id="judge-real")
                fake = gr.Button("Fake", elem_id="judge-fake")
            status = gr.Markdown(elem_id="judge-status")
        with gr.Column(scale=1):
            tally = gr.Markdown(elem_id="judge-tally")

    def ask(name: str, session_seed: int, index: int):
        picture, asked = questions.ask(name, session_seed, index)
        return {"data": name, "seed": session_seed, "index": index, "asked": asked}, picture

    @_on_page
    def start(current, name):
        if current is None or current["data"] != name:
            current, picture = ask(name, seed if seed is not None else secrets.randbelow(sv.MAX_SEED), 0)
        else:
            picture = gr.update()
        note = f"Question {current['index'] + 1} (session seed {current['seed']})."
        return current, picture, note, tasks.tally_table(judgements, pools[name])

    def answer(said: str):
        @_on_page
        def run(current, name):
            if current is None or current["data"] != name:
                raise GenzooError("no question on screen yet: open the Real or fake tab again.")
            row = tasks.record_answer(judgements, current["asked"], said)
            current, picture = ask(name, current["seed"], current["index"] + 1)
            note = (f"Recorded: you said {said}, it was {row['truth']}. Question {current['index'] + 1} "
                    f"(session seed {current['seed']}).")
            return current, picture, note, tasks.tally_table(judgements, pools[name])
        return run
    outputs = [state, image, status, tally]
    queue = {"concurrency_limit": 1, "concurrency_id": "judge"}
    tab.select(start, [state, data], outputs, **queue)
    data.change(start, [state, data], outputs, **queue)
    for button, said in ((real, "real"), (fake, "fake")):
        button.click(answer(said), [state, data], outputs, **queue)


def build_page(models: list, judgements, seed: int | None = None):
    """The page (a gradio Blocks) over loaded models (served.open_models) and a judgements.Judgements store;
    ``seed`` fixes the real-or-fake questions (None: a fresh seed per visit)."""
    gr = _gradio()
    out_dir = Path(tempfile.mkdtemp(prefix="genzoo-demo-"))      # the interpolation GIFs
    slugs = {s.name: f"model{i}" for i, s in enumerate(models)}
    with gr.Blocks(title="genzoo demo", analytics_enabled=False) as page:
        gr.Markdown("## genzoo demo\nTry each model with what it declares it can do, or judge real from fake. "
                    "Everything runs on this machine.")
        with gr.Tabs():
            with gr.Tab("Models", id="models", elem_id="models-tab"):
                chooser = gr.Radio(list(slugs), value=models[0].name, label="model", elem_id="model")
                sections = [_model_section(gr, s, slugs[s.name], i == 0, out_dir) for i, s in enumerate(models)]
                chooser.change(lambda name: [gr.update(visible=s.name == name) for s in models], chooser, sections,
                               queue=False)
            with gr.Tab("Real or fake", id="judge", elem_id="judge-tab") as tab:
                _real_or_fake(gr, tab, models, judgements, seed)
    page.queue(max_size=MAX_QUEUE, default_concurrency_limit=1)
    return page, out_dir


def launch(models: list, *, host: str = "127.0.0.1", port: int = 7860, judgements=None, seed: int | None = None,
           block: bool = True, quiet: bool = False):
    """Serve the page for loaded models (served.open_models) on http://HOST:PORT; answers of the real-or-fake test
    go to ``judgements`` (judgements.DEFAULT_PATH when None). ``block`` False returns the running page at once (its
    ``close()`` stops it)."""
    from .judgements import DEFAULT_PATH, Judgements
    page, out_dir = build_page(models, Judgements(judgements or DEFAULT_PATH), seed)
    limit_decoding()
    try:
        page.launch(server_name=host, server_port=port, max_file_size=MAX_UPLOAD_BYTES, allowed_paths=[str(out_dir)],
                    prevent_thread_lock=not block, quiet=quiet, share=False, inbrowser=False, ssr_mode=False,
                    mcp_server=False, enable_monitoring=False, pwa=False)
    except OSError as e:
        raise GenzooError(f"cannot listen on {host}:{port} ({e}); choose another port.") from None
    return page


def serve(refs=(), *, host: str = "127.0.0.1", port: int = 7860, judgements=None, device: str = "cpu",
          ema: bool = True, seed: int | None = None, block: bool = True, quiet: bool = False):
    """Load the models ``refs`` (zoo names, run folders, hf:// references; none: every zoo model) on ``device`` and
    serve their page (``launch``); ``seed`` fixes the real-or-fake questions (None: a fresh seed per visit)."""
    _gradio()                                     # before the models load: say at once when gradio is missing
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise GenzooError(f"port must be an integer between 0 and 65535, got {port!r}.")
    if seed is not None and not 0 <= seed <= sv.MAX_SEED:
        raise GenzooError(f"seed must be between 0 and {sv.MAX_SEED}, got {seed}.")
    models = sv.open_models(refs, device=device, ema=ema)
    return launch(models, host=host, port=port, judgements=judgements, seed=seed, block=block, quiet=quiet)
