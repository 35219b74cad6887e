"""`genzoo report`: one self-contained HTML page that shows a run, and the memorisation check behind it.

The page holds sample grids (one row per class for conditional models), reconstructions of test images (models
that declare ``reconstruct``), the training curves of metrics.jsonl (validation included), the `genzoo eval` results in
the run folder beside their real-vs-real references, a memorisation check and a 2-D map of features. Every
image is a PNG in a folder beside the page and is also inlined as a base64 data URI, so the page needs no
network and no other file; it has no scripts.

The memorisation check and the map live in the feature space of genzoo's frozen classifier for the data set
(the metric features of docs/metrics.md). A query q counts as a copy when its nearest training image t is at least
as close to q as t is to its own nearest other training image (the authenticity test of Alaa et al., "How
Faithful is your Synthetic Data?", ICML 2022, in these features). The fraction of copies among samples is
set beside the same fraction among held-out test images, which no model has seen: a sample fraction well
above it means the model reproduces its training images.
"""
from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .errors import GenzooError
from .hub import locate
from .reference import classifier_hash, real_features
from .sampling import balanced_labels, sample, sample_batches

RERANK_EXTRA = 8        # float32 candidates beyond k that are re-ranked with exact float64 distances
NN_SHOWN = 64           # samples shown with their nearest training images
NN_K = 3                # nearest training images shown beside each
MAP_POINTS = 2000       # points of each kind (real test, generated) in the feature map
MAP_METHODS = ("pca", "tsne")


# ---------------------------------------------------------------------------------------------
# nearest neighbours and the memorisation fraction

@torch.no_grad()
def nearest_neighbours(queries: torch.Tensor, refs: torch.Tensor, k: int = 1, exclude_self: bool = False,
                       batch_size: int = 2048, progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The k nearest rows of ``refs`` (M, D) to each row of ``queries`` (N, D) in Euclidean distance:
    (distances (N, k) float64, indices (N, k) int64), nearest first; exact ties go to the lower index.

    Computed block by block (``batch_size`` queries x ``batch_size`` refs at a time, never the whole N x M
    matrix): float32 squared distances pick k + 8 candidates, which are re-ranked by float64 distances of the
    differences, so the distances returned are exact. ``exclude_self``: queries and refs are the same rows,
    and row i is never its own neighbour.
    """
    if queries.ndim != 2 or refs.ndim != 2 or queries.shape[1] != refs.shape[1]:
        raise ValueError(f"queries and refs must be (N, D) and (M, D), got {tuple(queries.shape)} and "
                         f"{tuple(refs.shape)}")
    if exclude_self and len(queries) != len(refs):
        raise ValueError("exclude_self needs queries and refs to be the same rows")
    available = len(refs) - int(exclude_self)
    if not 1 <= k <= available:
        raise ValueError(f"k must be in [1, {available}], got {k}")
    q32, r32 = queries.float(), refs.float()
    q64, r64 = queries.double(), refs.double()
    r_sq = r32.square().sum(1)                                       # (M,)
    n_cand = min(k + RERANK_EXTRA, available)
    out_d, out_i = [], []
    for qs in tqdm(range(0, len(q32), batch_size), desc="nearest neighbours", disable=not progress, leave=False):
        qb = q32[qs:qs + batch_size]                                 # (b, D)
        q_sq = qb.square().sum(1, keepdim=True)                      # (b, 1)
        best_d = torch.empty(len(qb), 0)
        best_i = torch.empty(len(qb), 0, dtype=torch.long)
        for rs in range(0, len(r32), batch_size):
            rb = r32[rs:rs + batch_size]
            d2 = q_sq + r_sq[rs:rs + batch_size] - 2 * qb @ rb.T     # (b, m) squared distances, float32
            idx = torch.arange(rs, rs + len(rb)).expand(len(qb), -1)  # (b, m) ref indices
            if exclude_self:
                d2 = d2.masked_fill(idx == torch.arange(qs, qs + len(qb))[:, None], math.inf)
            cat_d, cat_i = torch.cat([best_d, d2], 1), torch.cat([best_i, idx], 1)
            top = cat_d.topk(min(n_cand, cat_d.shape[1]), dim=1, largest=False)
            best_d, best_i = top.values, cat_i.gather(1, top.indices)
        best_i = best_i.sort(1).values                               # by index, so that ties go to the lower one
        exact = (q64[qs:qs + batch_size, None, :] - r64[best_i]).square().sum(-1).sqrt()   # (b, n_cand)
        order = exact.argsort(dim=1, stable=True)[:, :k]
        out_d.append(exact.gather(1, order))
        out_i.append(best_i.gather(1, order))
    return torch.cat(out_d), torch.cat(out_i)


def nearest_other_distance(train: torch.Tensor, batch_size: int = 2048, progress: bool = False) -> torch.Tensor:
    """(M,) float64: the distance from each training row to its nearest other training row."""
    return nearest_neighbours(train, train, 1, exclude_self=True, batch_size=batch_size, progress=progress)[0][:, 0]


def copy_test(queries: torch.Tensor, train: torch.Tensor, train_radius: torch.Tensor | None = None,
              batch_size: int = 2048, progress: bool = False) -> dict:
    """The memorisation test of each query: {"copy": bool (N,), "distance": (N,) float64 distance to the nearest
    training row, "nearest": (N,) its index}. A query is a copy when that distance is at most the nearest
    training row's ``train_radius`` (``nearest_other_distance(train)``, computed when not given)."""
    if train_radius is None:
        train_radius = nearest_other_distance(train, batch_size, progress)
    if train_radius.shape != (len(train),):
        raise ValueError(f"train_radius must be ({len(train)},), got {tuple(train_radius.shape)}")
    dist, idx = nearest_neighbours(queries, train, 1, batch_size=batch_size, progress=progress)
    dist, idx = dist[:, 0], idx[:, 0]
    return {"copy": dist <= train_radius.double()[idx], "distance": dist, "nearest": idx}


def memorisation_fraction(queries: torch.Tensor, train: torch.Tensor, train_radius: torch.Tensor | None = None,
                          batch_size: int = 2048, progress: bool = False) -> float:
    """Fraction of ``queries`` (N, D) whose nearest row of ``train`` (M, D) is at least as close to them as that
    training row is to its nearest other training row. The training set against itself gives 1; held-out
    data from the same distribution gives the reference a model's samples are compared with."""
    return copy_test(queries, train, train_radius, batch_size, progress)["copy"].double().mean().item()


# ---------------------------------------------------------------------------------------------
# the page

def _png_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _img(path: Path, alt: str) -> str:
    return f'<figure><img src="{_png_uri(path)}" alt="{html.escape(alt)}"><figcaption>{html.escape(alt)}' \
           f'</figcaption></figure>'


def _p(text: str, cls: str = "") -> str:
    return f'<p{f" class={cls!r}" if cls else ""}>{html.escape(text)}</p>'


def _grid_scale(image_size: int) -> int:
    return max(1, round(56 / image_size))        # 28 px -> 2x, 8 px -> 7x: small images stay visible


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def build_report(run_dir: str | Path, out: str | Path | None = None, n: int = 10_000, seed: int = 0,
                 ema: bool = True, method: str = "pca", batch_size: int = 500, progress: bool = True,
                 device: str = "cpu", judgements: str | Path | None = None) -> Path:
    """Write the report of a run folder: ``out`` (default RUN/report.html) and its PNGs in the folder of the same
    name beside it (RUN/report/). ``n`` samples (seed ``seed``) enter the memorisation fraction and the map;
    ``method`` is "pca" or "tsne" (scikit-learn) for the map; ``device`` is where the model samples. Where the
    human-evaluation file ``judgements`` (default: ``genzoo demo``'s, genzoo.demo.judgements.DEFAULT_PATH)
    holds answers on this model's samples, the page shows how often people judged them real. Returns the HTML
    path."""
    from .checkpoint import BEST_RECORD, load, read_best, read_config
    from .data import load_split

    from .demo.judgements import DEFAULT_PATH, model_key

    key = model_key(run_dir)              # the name `genzoo demo` stores answers under
    run_dir = locate(run_dir)             # a run folder, a zoo model or hf://, its manifest checked
    if method not in MAP_METHODS:
        raise GenzooError(f"method takes {' or '.join(MAP_METHODS)}, got {method!r}.")
    if not 64 <= n <= 1_000_000:
        raise GenzooError(f"n must be between 64 and 1000000, got {n}.")
    config = read_config(run_dir)
    out = Path(out) if out is not None else run_dir / "report.html"
    if out.suffix.lower() not in (".html", ".htm"):
        raise GenzooError(f"out is the report's .html file, got {out}.")
    folder = out.with_suffix("")
    folder.mkdir(parents=True, exist_ok=True)
    dataset = config["data"]
    model = load(run_dir, ema=ema, device=device)
    home = run_dir.parent if (run_dir / BEST_RECORD).exists() else run_dir    # RUN/best: RUN's log and summary
    summary = _read_json(home / "summary.json") or {}
    best = read_best(home)
    scale = _grid_scale(model.config.image_size)
    sections = []

    # -- samples
    sections.append(("samples", "Samples", _samples_section(model, folder, seed, scale)))

    # -- reconstructions
    if model.capabilities.reconstruct:
        test = load_split(dataset, "test")
        x = test.images[:16].float().div(255).to(model.device)                 # (16, C, H, W) in [0, 1]
        labels = test.labels[:16].to(model.device) if model.capabilities.conditional else None
        with torch.no_grad():
            rec = model.reconstruct(x, labels=labels)
        from .images import save_grid
        path = save_grid(torch.cat([x, rec]).cpu(), folder / "reconstructions.png", nrow=16, scale=scale)
        body = _p("The first 16 test images (top row) and the model's reconstructions of them (bottom row).") \
            + _img(path, "test images over their reconstructions")
    else:
        body = _p(f"{config['model_name']} declares no reconstruct: it does not map images back to images.", "note")
    sections.append(("reconstructions", "Reconstructions", body))

    # -- curves
    sections.append(("curves", "Training curves", _curves_section(home, folder, summary, best)))

    # -- metrics
    sections.append(("metrics", "Metrics (genzoo eval)", _metrics_section(run_dir)))

    # -- human evaluation, where genzoo demo's answers hold some for this model
    human = _human_section(key, Path(judgements) if judgements is not None else DEFAULT_PATH)
    if human:
        sections.append(("human", "Human evaluation (genzoo demo)", human))

    # -- memorisation and feature map, in the frozen classifier's feature space
    mem, fmap = _feature_sections(model, dataset, folder, n, seed, method, batch_size, scale, progress)
    sections.append(("memorisation", "Memorisation check", mem))
    sections.append(("feature-map", "Feature map", fmap))

    title = f"genzoo report: {config['model_name']} on {dataset}"
    facts = [f"run {run_dir}", f"{'EMA' if ema and (run_dir / 'ema.safetensors').exists() else 'raw'} weights"]
    if home != run_dir and best is not None:
        facts.append(f"the best validation checkpoint, step {best['step']}")
    elif "step" in summary:
        facts.append(f"step {summary['step']} ({summary.get('status', '?')})")
    if "train_wall_s" in summary:
        facts.append(f"{summary['train_wall_s']} s of training")
    page = _page(title, " | ".join(facts), sections)
    out.write_text(page)
    return out


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _samples_section(model, folder: Path, seed: int, scale: int) -> str:
    from .images import save_grid
    if model.capabilities.conditional:          # one row of 10 per class
        k = model.config.num_classes
        labels = torch.arange(k).repeat_interleave(10)
        x = sample(model, len(labels), seed, labels=labels)
        path = save_grid(x, folder / "samples.png", nrow=10, scale=scale)
        return _p(f"Class-conditional samples (seed {seed}): row c holds 10 samples drawn for class c.") \
            + _img(path, f"samples, one row per class (0 to {k - 1})")
    x = sample(model, 64, seed)
    path = save_grid(x, folder / "samples.png", nrow=8, scale=scale)
    return _p(f"64 samples (seed {seed}).") + _img(path, "64 samples")


def _human_section(key: str, path: Path) -> str:
    """The tally of the answers on this model's samples in ``path``, or "" where there are none."""
    from .demo.judgements import REAL, Judgements
    tally = Judgements(path).tally([key])
    mine, real = tally[key], tally[REAL]
    if not mine["n"]:
        return ""

    def cell(frac, low, high):
        return "" if frac is None else f"{100 * frac:.1f}% [{100 * low:.1f}, {100 * high:.1f}]"
    rows = [f"<tr><td>this model's samples</td><td>{mine['n']}</td>"
            f"<td>{cell(mine['judged_real'], mine['judged_real_low'], mine['judged_real_high'])}</td>"
            f"<td>{cell(mine['accuracy'], mine['accuracy_low'], mine['accuracy_high'])}</td></tr>",
            f"<tr><td>real test images</td><td>{real['n']}</td>"
            f"<td>{cell(real['judged_real'], real['judged_real_low'], real['judged_real_high'])}</td><td></td></tr>"]
    return (_p(f"People's answers in {path}, from the Real or fake tab of genzoo demo: one image at a time, a "
               "sample of this model or a real test image, each judged real or fake. Fractions with 95% Wilson "
               "intervals; the accuracy counts the answers on this model's samples and on the real images. A "
               "model whose samples pass for real about as often as real images do cannot be told apart by eye.")
            + "<table><tr><th>shown</th><th>answers</th><th>judged real</th><th>accuracy</th></tr>"
            + "".join(rows) + "</table>")


def _curves_section(run_dir: Path, folder: Path, summary: dict, best: dict | None) -> str:
    from .plots import plot_curves
    metrics_path = run_dir / "metrics.jsonl"
    if not metrics_path.exists():
        return _p(f"{run_dir} has no metrics.jsonl.", "note")
    path = plot_curves(metrics_path, folder / "curves.png")
    if path is None:
        return _p("metrics.jsonl holds no numbers yet.", "note")
    parts = [_p("Every quantity of metrics.jsonl against the training step: the losses, the gradient norms, "
                "images/s and, when validation was on, the validation metric (val/*) and its best value so far.")]
    val = summary.get("validation")
    if best is not None:
        parts.append(_p(f"Best validation {best['metric']} = {best['value']:.4g} at step {best['step']}, kept in "
                        f"{run_dir / 'best'} ({best.get('description', '')})."))
    if val and summary.get("status") == "early_stopped":
        parts.append(_p(f"Training stopped early at step {summary['step']} after {val['evaluations']} validations."))
    parts.append(_img(path, "training curves"))
    return "".join(parts)


def _metrics_section(run_dir: Path) -> str:
    files = sorted(run_dir.glob("eval.json")) + sorted(run_dir.glob("eval-*.json")) \
        + sorted((run_dir / "best").glob("eval.json")) + sorted((run_dir / "best").glob("eval-*.json"))
    if not files:
        return _p(f"No genzoo eval results in {run_dir} (eval.json, eval-*.json): run genzoo eval {run_dir}.", "note")
    parts = []
    for path in files:
        res = _read_json(path)
        if not isinstance(res, dict) or not isinstance(res.get("metrics"), dict):
            parts.append(_p(f"{path.relative_to(run_dir)} is not a genzoo eval result.", "note"))
            continue
        m = res["metrics"]
        caption = (f"{path.relative_to(run_dir)}: {res.get('model')} on {res.get('dataset')} {res.get('split')}, "
                   f"{res.get('checkpoint')} weights, {res.get('n_generated')} samples, seed {res.get('seed')}")
        rows = []
        for k, v in m.items():
            if k.endswith("_ref"):
                continue
            ref = m.get(f"{k}_ref")
            rows.append(f"<tr><td>{html.escape(k)}</td><td>{_fmt(v)}</td>"
                        f"<td>{'' if ref is None else _fmt(ref)}</td></tr>")
        for k, why in (res.get("refused") or {}).items():
            rows.append(f"<tr class='refused'><td>{html.escape(k)}</td>"
                        f"<td colspan=2>refused: {html.escape(why)}</td></tr>")
        parts.append(f"<table><caption>{html.escape(caption)}</caption><tr><th>metric</th><th>value</th>"
                     f"<th>real vs real</th></tr>{''.join(rows)}</table>")
    parts.append(_p("real vs real: the same metric between 10,000 train images and the evaluation split, the "
                    "floor a model is judged against (docs/metrics.md)."))
    return "".join(parts)


def _train_radius(classifier, dataset: str, train_feats: torch.Tensor, progress: bool) -> torch.Tensor:
    """nearest_other_distance of the train split's features, cached beside the cached features."""
    from .data import cache_tag, data_root
    path = data_root() / "stats" / f"{cache_tag(dataset)}-train-nnradius-{classifier_hash(dataset)}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as f:
            radius = torch.from_numpy(f["radius"])
        if radius.shape == (len(train_feats),):
            return radius
    radius = nearest_other_distance(train_feats, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, radius=radius.numpy())
    tmp.replace(path)
    return radius


def _feature_sections(model, dataset: str, folder: Path, n: int, seed: int, method: str, batch_size: int,
                      scale: int, progress: bool) -> tuple[str, str]:
    from .classifier import load_frozen, predict
    from .data import load_split
    from .images import save_grid

    try:
        classifier, _ = load_frozen(dataset)
    except GenzooError:
        line = _p(f"Not available: genzoo ships no frozen classifier for {dataset}, so there is no feature space "
                  f"for this section.", "note")
        return line, line
    c = classifier.config
    if (c.channels, c.image_size) != (model.config.channels, model.config.image_size):
        line = _p(f"Not available: the frozen {dataset} classifier takes {c.channels}x{c.image_size}x"
                  f"{c.image_size} images, the model makes {model.config.channels}x{model.config.image_size}x"
                  f"{model.config.image_size}.", "note")
        return line, line

    train = load_split(dataset, "train")
    test = load_split(dataset, "test")
    train_feats = real_features(classifier, dataset, "train", progress=progress)     # (M, D), cached
    test_feats = real_features(classifier, dataset, "test", progress=progress)       # (T, D), cached
    radius = _train_radius(classifier, dataset, train_feats, progress)

    labels = balanced_labels(n, model.config.num_classes) if model.capabilities.conditional else None
    feats, preds, shown = [], [], []

    def take(x, _):
        f, p = predict(classifier, x)
        feats.append(f)
        preds.append(p.argmax(1))
        if sum(len(s) for s in shown) < NN_SHOWN:
            shown.append(x[:NN_SHOWN - sum(len(s) for s in shown)])
    sample_batches(model, n, seed, batch_size, labels, progress, take)
    gen_feats, gen_pred, shown = torch.cat(feats), torch.cat(preds), torch.cat(shown)

    gen = copy_test(gen_feats, train_feats, radius, progress=progress)
    ref = copy_test(test_feats, train_feats, radius, progress=progress)
    frac_gen, frac_ref = gen["copy"].double().mean().item(), ref["copy"].double().mean().item()

    # 64 samples, each followed by its 3 nearest training images; 4 groups a row, a blank between groups
    _, nn_idx = nearest_neighbours(gen_feats[:NN_SHOWN], train_feats, NN_K)
    neighbours = train.images[nn_idx.flatten()].float().div(255).view(len(shown), NN_K, *shown.shape[1:])
    blank = torch.ones_like(shown[:1])
    tiles = []
    for s, nb in zip(shown, neighbours):
        tiles += [s[None], nb, blank]
    nn_path = save_grid(torch.cat(tiles), folder / "nearest_train.png", nrow=4 * (NN_K + 2), scale=scale)
    hist_path = _distance_histogram(gen["distance"], ref["distance"], folder / "nn_distances.png")

    mem = "".join([
        _p(f"A query counts as a copy when its nearest training image (in the frozen {dataset} classifier's "
           f"features) is at least as close to it as that training image is to its nearest other training image."),
        "<table><tr><th>queries</th><th>n</th><th>fraction of copies</th></tr>"
        f"<tr><td>generated samples (seed {seed})</td><td>{n}</td><td>{frac_gen:.4f}</td></tr>"
        f"<tr><td>held-out test images (reference)</td><td>{len(test_feats)}</td><td>{frac_ref:.4f}</td></tr>"
        f"<tr><td>training images against themselves</td><td>{len(train_feats)}</td><td>1 (by definition)</td></tr>"
        "</table>",
        _p("A sample fraction near the test reference means the samples are as close to the training set as new "
           "real images are; well above it, the model reproduces training images. The training set here is the "
           f"whole train split ({len(train_feats)} images), including any validation images the run held out."),
        _img(nn_path, f"{len(shown)} samples, each followed by its {NN_K} nearest training images"),
        _img(hist_path, "distance to the nearest training image: samples vs test images"),
    ])

    map_path = _feature_map(test_feats, test.labels, gen_feats, gen_pred, model.config.num_classes or
                            c.num_classes, method, seed, folder / "feature_map.png")
    fmap = _p(f"{'PCA' if method == 'pca' else 't-SNE'} of the classifier features of up to {MAP_POINTS} test images "
              f"and {MAP_POINTS} samples, fitted on both together; colour = class (samples: the class the frozen "
              "classifier predicts). Regions with real points but no samples are modes the model misses.") \
        + _img(map_path, f"{method} map of real vs generated features")
    return mem, fmap


def _distance_histogram(gen: torch.Tensor, ref: torch.Tensor, out: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    hi = float(torch.quantile(torch.cat([gen, ref]).float(), 0.995))
    bins = np.linspace(0, hi, 60)
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    ax.hist(ref.numpy(), bins=bins, density=True, alpha=0.55, label=f"test images ({len(ref)})")
    ax.hist(gen.numpy(), bins=bins, density=True, alpha=0.55, label=f"samples ({len(gen)})")
    ax.set_xlabel("distance to the nearest training image (classifier features)")
    ax.set_ylabel("density")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def _feature_map(real: torch.Tensor, real_labels: torch.Tensor, gen: torch.Tensor, gen_labels: torch.Tensor,
                 num_classes: int, method: str, seed: int, out: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    g = torch.Generator().manual_seed(seed)
    ri = torch.randperm(len(real), generator=g)[:MAP_POINTS]
    gi = torch.randperm(len(gen), generator=g)[:MAP_POINTS]
    pts = torch.cat([real[ri], gen[gi]]).double().numpy()
    if method == "pca":
        from sklearn.decomposition import PCA
        xy = PCA(n_components=2, random_state=seed).fit_transform(pts)
    else:
        from sklearn.manifold import TSNE
        xy = TSNE(n_components=2, init="pca", random_state=seed, perplexity=min(30.0, len(pts) / 4)).fit_transform(pts)
    xy_real, xy_gen = xy[:len(ri)], xy[len(ri):]
    cmap = plt.get_cmap("tab10" if num_classes <= 10 else "tab20")
    fig, axes = plt.subplots(1, 2, figsize=(11, 5), sharex=True, sharey=True)
    for ax, pts2, lab, title in ((axes[0], xy_real, real_labels[ri], "real test images (true class)"),
                                 (axes[1], xy_gen, gen_labels[gi], "samples (predicted class)")):
        ax.scatter(pts2[:, 0], pts2[:, 1], c=lab.numpy() % cmap.N, cmap=cmap, vmin=0, vmax=cmap.N - 1, s=4,
                   alpha=0.7, linewidths=0)
        ax.set_title(title, fontsize=10)
    handles = [plt.Line2D([], [], marker="o", ls="", color=cmap(k % cmap.N), label=str(k))
               for k in range(min(num_classes, 20))]
    fig.legend(handles=handles, loc="center right", title="class", fontsize=8)
    fig.tight_layout(rect=(0, 0, 0.93, 1))
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


_CSS = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; }
.facts { color: #555; margin-top: 0; }
nav a { margin-right: 1em; }
section { border-top: 1px solid #ddd; margin-top: 1.5em; padding-top: 0.5em; }
figure { margin: 0.8em 0; }
img { max-width: 100%; image-rendering: pixelated; border: 1px solid #eee; }
figcaption { color: #666; font-size: 0.9em; }
table { border-collapse: collapse; margin: 0.8em 0; }
caption { text-align: left; font-weight: 600; padding-bottom: 0.3em; }
td, th { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; }
tr.refused td { color: #777; }
p.note { color: #8a5a00; }
"""


def _page(title: str, facts: str, sections: list[tuple[str, str, str]]) -> str:
    nav = " ".join(f'<a href="#{sid}">{html.escape(name)}</a>' for sid, name, _ in sections)
    body = "\n".join(f'<section id="{sid}"><h2>{html.escape(name)}</h2>{content}</section>'
                     for sid, name, content in sections)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'<link rel="icon" href="data:,"><style>{_CSS}</style></head>\n<body><h1>{html.escape(title)}</h1>'
            f'<p class="facts">{html.escape(facts)}</p><nav>{nav}</nav>\n{body}\n</body></html>\n')
