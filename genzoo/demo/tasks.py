"""What each tab of the page computes, from the values a visitor sends to pictures and words. Nothing here imports
gradio: the page's handlers (app.py) call these under the model's lock and show what they return. Every number is
clamped to its declared range (served.py) and every image comes from the test split or a checked upload
(uploads.py); the work itself is the library's: genzoo.sampling, genzoo.apps.restore, .edit, .classify, .ood.
"""
from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from ..errors import GenzooError
from . import served as sv
from .uploads import drawn_mask, read_upload

MAX_INTERPOLATION_STEPS = 32
OOD_REFERENCE_IMAGES = 100     # test images whose scores set the OOD threshold
OOD_FALSE_ALARMS = 0.05        # the share of those test images the threshold calls out of distribution
NOISE_STD = (0.01, 1.0)        # the denoise task's noise std on the page ([0, 1] units)
# the cost knobs of the restore methods on the page, each up to this top (within genzoo.apps.restore.LIMITS), from
# the library's defaults (OPTIONS, what `genzoo restore` uses)
RESTORE_KNOB_TOPS = {"steps": 1000, "resample": 20, "particles": 64, "restarts": 16, "iters": 2000}
OWN_CLASS = "the test image's class"


def chosen_image(served: sv.Served, source: str, index, upload) -> tuple[torch.Tensor, int]:
    """(the image a visitor chose: test image ``index`` or the uploaded file, (1, C, H, W) in [0, 1]; its test
    label, -1 for an upload)."""
    if source == "upload":
        c = served.model.config
        return read_upload(upload, c.channels, c.image_size), -1
    return sv.test_image(served, index)


# -- sample

def sample_grid(served: sv.Served, n, seed, label_choice, option_values: dict) -> tuple[np.ndarray, str]:
    """A grid of n <= MAX_IMAGES samples: the images `genzoo sample -n N --seed SEED` draws with the same labels
    and options (one batch)."""
    from ..sampling import sample
    model = served.model
    n = sv.number(n, 1, sv.MAX_IMAGES, "the number of images")
    seed = sv.number(seed, 0, sv.MAX_SEED, "the seed")
    options = sv.sample_options(model, option_values)
    labels = sv.labels(model, label_choice, n)
    try:
        images = sample(model, n, seed, batch_size=n, labels=labels, options=options)
    except ValueError as e:                 # a sampling option's value the model refuses
        raise GenzooError(str(e)) from None
    each = labels is not None and label_choice in (None, "", sv.EACH_CLASS)
    what = "" if labels is None else ", each class in turn" if each else f", class {int(labels[0])}"
    opts = "".join(f", {k}={v}" for k, v in options.items())
    k = model.config.num_classes if each else 0
    nrow = k if each and n >= 2 * k else None                 # one column per class once every class has two
    return sv.picture(images, nrow=nrow), f"{n} samples, seed {seed}{what}{opts}"


# -- restore

def restore_labels(served: sv.Served, choice, test_label: int):
    """A conditional model's class of the image: the test image's own, or the chosen one; None for an
    unconditional model (or a "no class" model given none)."""
    model = served.model
    if not model.capabilities.conditional:
        return None
    if choice in (None, "", OWN_CLASS):
        if test_label >= 0:
            return torch.tensor([test_label])
        if model.capabilities.null_label:
            return None
        raise GenzooError("this model is class-conditional: choose the uploaded image's class.")
    return sv.labels(model, choice, 1)


def restore_knobs(model) -> dict[str, tuple[int, int, int]]:
    """The cost knobs of the model's restore method (its declared capability): name -> (low, start, high)."""
    from ..apps.restore import LIMITS, OPTIONS, capability
    kind = capability(model)
    out = {}
    for name, top in RESTORE_KNOB_TOPS.items():
        start = next((o[name] for (k, _), o in OPTIONS.items() if k == kind and name in o), None)
        if start is not None:
            low, high = LIMITS[name]
            if name == "steps" and kind == "diffusion":          # a diffusion model restores over its T steps
                high = len(model.alphas_cumprod)
            high = min(high, top)
            out[name] = (low, min(start, high), high)
    return out


def restore_image(served: sv.Served, x: torch.Tensor, test_label: int, task: str, mask_choice: str, layers,
                  noise_std, label_choice, seed, knobs: dict | None = None,
                  progress: bool = False) -> tuple[np.ndarray, str]:
    """Degrade the clean image x (1, C, H, W) as ``task`` says (mask it, add noise, halve it), restore it with the
    model's method at the cost ``knobs`` (restore_knobs; the library's defaults where missing), and show the input
    as the model sees it, the result and the original side by side."""
    from ..apps.restore import OPTIONS, PRESETS, capabilities, capability, degrade, mask_preset, observed_view, \
        psnr, restore
    model = served.model
    methods = capabilities(model)
    if task not in methods:
        raise GenzooError(f"this model cannot {task}; it can {', '.join(methods)}.")
    seed = sv.number(seed, 0, sv.MAX_SEED, "the seed")
    taken = OPTIONS[(capability(model), task)]
    options = {name: sv.number((knobs or {}).get(name, start), low, high, name)
               for name, (low, start, high) in restore_knobs(model).items() if name in taken}
    size = model.config.image_size
    g = torch.Generator().manual_seed(seed)                  # the random50 mask and the noise
    known, std = None, None
    if task == "inpaint":
        if mask_choice == "drawn":
            known = drawn_mask(layers, size)
        elif mask_choice in PRESETS:
            known = mask_preset(mask_choice, 1, size, g)
        else:
            raise GenzooError(f"choose a mask: {', '.join(PRESETS)} or drawn.")
    elif task == "denoise":
        std = sv.number(noise_std, *NOISE_STD, "the noise std", integer=False)
    y = degrade(x, task, noise_std=std, generator=g)
    labels = restore_labels(served, label_choice, test_label)
    out = restore(model, y, known, task, noise_std=std, labels=labels, progress=progress,
                  generator=torch.Generator(device=model.device).manual_seed(seed), **options).cpu()
    panels = torch.cat([observed_view(y, task, known), out, x])
    cost = ", ".join(f"{k}={v}" for k, v in options.items())
    what = f"{task} ({mask_choice} mask)" if task == "inpaint" else task
    text = (f"{what} by {methods[task]} ({cost}): the input as the model sees it, the result "
            f"({psnr(out, x).item():.1f} dB PSNR against the original), the original")
    return sv.picture(panels, nrow=3, width_px=3 * sv.IMAGE_PX), text


# -- interpolate

def interpolate_strip(served: sv.Served, mode: str, seeds, images: torch.Tensor | None, label_choice, steps,
                      method: str, out_dir: Path) -> tuple[np.ndarray, Path, str]:
    """The path between two seeds or two images (2, C, H, W): a strip (framed by the two images) and a GIF that
    plays it forth and back, written to ``out_dir``."""
    from ..apps.edit import interpolate
    from ..images import save_gif
    model = served.model
    if mode not in sv.interpolation_modes(model):
        raise GenzooError(f"this model interpolates between {' or '.join(sv.interpolation_modes(model))}.")
    steps = sv.number(steps, 2, MAX_INTERPOLATION_STEPS, "the number of steps")
    if method not in ("slerp", "lerp"):
        raise GenzooError(f"the path is slerp or lerp, got {method!r:.20}.")
    labels = None
    if model.capabilities.conditional:
        labels = sv.labels(model, "0" if label_choice in (None, "", sv.EACH_CLASS) else label_choice, 1)
    ends = None
    if mode == "two seeds":
        ends = tuple(sv.number(s, 0, sv.MAX_SEED, "a seed") for s in seeds)
        images = None
    strip = interpolate(model, steps, images=images, seeds=ends, labels=labels, method=method).cpu()
    framed = torch.cat([images[:1], strip, images[1:]]) if images is not None else strip
    gif = save_gif(strip, Path(out_dir) / f"interpolation-{uuid.uuid4().hex[:12]}.gif")
    between = f"seeds {ends[0]} and {ends[1]}" if ends else "the two images (shown at the ends)"
    cls = f", class {int(labels[0])}" if labels is not None else ""
    return sv.picture(framed, nrow=len(framed), width_px=min(96 * len(framed), 1600)), gif, \
        f"{steps} steps by {method} between {between}{cls}"


# -- classify and OOD

def _log_px(model, x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """(log p(x|y) (N, K) or None for an unconditional model, log p(x) (N,), the inputs log_prob scored), in nats,
    at the page's cost; a conditional model's log p(x) is log sum_y p(x|y) p(y) with a uniform prior."""
    from ..apps.classify import class_log_likelihoods, log_prior, model_inputs
    from ..apps.ood import log_likelihoods
    k, steps = sv.PAGE_IWAE_K, sv.PAGE_BOUND_STEPS
    xp = model_inputs(model, x, seed=0)
    if model.capabilities.conditional:
        ll = class_log_likelihoods(model, xp, k=k, steps=steps, prepared=True)
        return ll, (ll + log_prior(ll.shape[1])).logsumexp(1), xp
    return None, log_likelihoods(model, xp, k=k, steps=steps), xp


def _complexity(model, log_px: torch.Tensor, xp: torch.Tensor) -> torch.Tensor:
    """The OOD score of genzoo ood's input-complexity correction: log2 P(x) + PNG bits (higher = more typical)."""
    from ..apps.ood import discrete_log2_prob, input_levels, png_bits
    return discrete_log2_prob(model, log_px, xp[0].numel()) + png_bits(input_levels(model, xp))


def ood_threshold(served: sv.Served) -> float:
    """The score below which an image is called out of distribution: the OOD_FALSE_ALARMS quantile of the scores
    of the first OOD_REFERENCE_IMAGES test images (computed once per model)."""
    if "ood_threshold" not in served.cache:
        split = sv.test_split(served.data)
        x = split.images[:OOD_REFERENCE_IMAGES].float() / 255
        _, log_px, xp = _log_px(served.model, x)
        scores = _complexity(served.model, log_px, xp)
        served.cache["ood_threshold"] = torch.quantile(scores, OOD_FALSE_ALARMS).item()
    return served.cache["ood_threshold"]


def _class_names(data: str, k: int) -> list[str]:
    names = sv.test_split(data).classes
    return [f"{i} ({names[i]})" if len(names) == k and names[i] != str(i) else str(i) for i in range(k)]


def _discriminative(served: sv.Served, x: torch.Tensor) -> tuple[dict | None, str]:
    """genzoo's frozen classifier of the data set on x: ({class: p}, its name) or (None, why not)."""
    from ..classifier import load_frozen, predict
    if "classifier" not in served.cache:
        try:
            served.cache["classifier"] = load_frozen(served.data)
        except GenzooError as e:
            served.cache["classifier"] = (None, str(e))
    clf, record = served.cache["classifier"]
    if clf is None:
        return None, record
    probs = predict(clf, x)[1][0]
    return dict(zip(_class_names(served.data, len(probs)), probs.tolist())), \
        f"genzoo's classifier for {served.data} ({100 * record['test_accuracy']:.1f}% test accuracy)"


def classify_image(served: sv.Served, x: torch.Tensor) -> dict:
    """For one image x (1, C, H, W): p(y|x) by Bayes' rule (a conditional model), genzoo's discriminative
    classifier, and the OOD verdict: {"bayes", "discriminative" ({class: p} or None), "text" (markdown)}."""
    from ..apps.classify import posterior
    from ..likelihood import describe, estimator_of
    model = served.model
    if sv.likelihood_cost(model) is None:
        raise GenzooError("this model declares no likelihood the page can score.")
    estimator, cost = estimator_of(model, k=sv.PAGE_IWAE_K, steps=sv.PAGE_BOUND_STEPS)
    ll, log_px, xp = _log_px(model, x)
    score = _complexity(model, log_px, xp).item()
    threshold = ood_threshold(served)
    bayes = None
    if ll is not None:
        post = posterior(log_likelihoods=ll)[0]
        bayes = dict(zip(_class_names(served.data, len(post)), post.tolist()))
    disc, disc_text = _discriminative(served, x)
    verdict = "in distribution" if score >= threshold else "out of distribution"
    text = (f"**{verdict}**: score {score:.1f} bits, threshold {threshold:.1f} bits (log2 P(x) + PNG bits, the "
            f"input-complexity score of genzoo ood; {100 * (1 - OOD_FALSE_ALARMS):g}% of the first "
            f"{OOD_REFERENCE_IMAGES} {served.data} test images score above it). log p(x) = {log_px.item():.1f} nats "
            f"({describe(estimator, cost)}{', summed over the classes' if ll is not None else ''}).\n\n"
            f"Discriminative: {disc_text}.")
    return {"bayes": bayes, "discriminative": disc, "text": text}


# -- real or fake

def pools(models: list[sv.Served]) -> dict[str, list[sv.Served]]:
    """The served models grouped by data set: a question shows a real test image or a sample of one of them."""
    out: dict[str, list[sv.Served]] = {}
    for s in models:
        out.setdefault(s.data, []).append(s)
    return out


def question(models: list[sv.Served], seed: int, index: int) -> tuple[np.ndarray, dict]:
    """Question ``index`` of the session ``seed`` over ``models`` (one data set): the picture and what it is
    (source: "real" or the model's key, image_id)."""
    from ..sampling import sample
    from .judgements import REAL, draw
    data = models[0].data
    split = sv.test_split(data)
    source, k = draw(seed, index, [s.key for s in models], pool=len(split.images))
    if source == REAL:
        x, image_id = split.images[k:k + 1].float() / 255, f"{data}:test:{k}"
    else:
        served = next(s for s in models if s.key == source)
        labels = sv.labels(served.model, str(k % served.model.config.num_classes), 1)
        with served.lock:
            x = sample(served.model, 1, seed=k, labels=labels)
        image_id = f"sample:seed={k}" + (f":label={int(labels[0])}" if labels is not None else "")
    return sv.picture(x, width_px=sv.IMAGE_PX), {"source": source, "image_id": image_id}


class Questions:
    """The questions of every session, each drawn while the one before it is on screen: a sample that takes a model
    seconds to draw must not give itself away by arriving later than a real image does."""

    def __init__(self, pools: dict[str, list[sv.Served]], keep: int = 256):
        self.pools, self.keep = pools, keep
        self.pending: OrderedDict = OrderedDict()         # (data, seed, index) -> the future of question()
        self.lock = threading.Lock()
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="genzoo-questions")

    def _prepare(self, data: str, seed: int, index: int) -> None:
        with self.lock:
            if (data, seed, index) not in self.pending:
                self.pending[(data, seed, index)] = self.worker.submit(question, self.pools[data], seed, index)
            while len(self.pending) > self.keep:          # sessions that were left: forget their next question
                self.pending.popitem(last=False)

    def ask(self, data: str, seed: int, index: int) -> tuple[np.ndarray, dict]:
        """Question ``index`` of the session (its picture, and its record with shown_at = now); the next one is
        drawn at once in the background."""
        with self.lock:
            ready = self.pending.pop((data, seed, index), None)
        picture, asked = ready.result() if ready is not None else question(self.pools[data], seed, index)
        self._prepare(data, seed, index + 1)
        return picture, {**asked, "shown_at": time.time()}


def record_answer(judgements, asked: dict, answer: str) -> dict:
    """Store the visitor's answer to the question ``asked`` (question's record, with the time it was shown,
    shown_at) and return the stored row."""
    from .judgements import MAX_RESPONSE_S, REAL
    truth = "real" if asked["source"] == REAL else "fake"
    response_s = min(max(time.time() - asked["shown_at"], 0.0), MAX_RESPONSE_S)
    return judgements.record(asked["source"], asked["image_id"], truth, answer, response_s)


def _row(what: str, t: dict) -> str:
    def interval(key: str) -> str:
        if t[key] is None:
            return "-"
        return f"{100 * t[key]:.0f}% [{100 * t[key + '_low']:.0f}, {100 * t[key + '_high']:.0f}]"
    return f"| {what} | {t['n']} | {interval('judged_real')} | {interval('accuracy')} |"


def tally_table(judgements, models: list[sv.Served]) -> str:
    """The answers so far as a markdown table: per model, how often its samples were judged real and how often
    the person was right, with 95% Wilson intervals; and how often real images were judged real."""
    from .judgements import REAL
    tally = judgements.tally([s.key for s in models])
    rows = ["| shown | answers | judged real (95% interval) | accuracy (95% interval) |", "|---|---|---|---|"]
    rows += [_row(f"samples of {s.name}", tally[s.key]) for s in models]
    return "\n".join(rows + [_row("real test images", tally[REAL])])
