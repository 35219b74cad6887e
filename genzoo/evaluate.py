"""`genzoo eval`: sample quality in the frozen classifier's feature space, likelihood, CAS, and
Inception FID from user-supplied InceptionV3 weights, as docs/metrics.md defines them. Metrics are asked
of the model's capabilities; one that does not apply is refused with its reason, never skipped in silence.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from . import __version__, metrics
from .checkpoint import device_name, read_config
from .classifier import Classifier, asset_paths, load_frozen, predict
from .data import cache_tag, data_root, load_split
from .errors import GenzooError
from .hardware import machine
from .likelihood import bits_per_dim  # noqa: F401  (part of this module's API)

ALL_METRICS = ("fid", "kid", "pr", "score", "nll", "cas", "inception_fid")
DEFAULT_METRICS = ("fid", "kid", "pr", "score", "nll", "cas")   # inception_fid (5.7 G mult-adds an image): by name
REF_TRAIN_SUBSET = 10_000        # train images in the real-vs-real reference
REF_SEED = 0


def classifier_hash(dataset: str) -> str:
    weights, _ = asset_paths(dataset)
    return hashlib.sha256(weights.read_bytes()).hexdigest()[:16]


def real_features(classifier: Classifier, dataset: str, split: str, subset: int | None = None,
                  progress: bool = True) -> torch.Tensor:
    """Features of a real split (or a seeded subset of it), cached per data set, split and network hash."""
    return _cached_real(classifier_hash(dataset), dataset, split, subset,
                        lambda images: predict(classifier, images)[0])


def real_inception_features(net, sha256: str, dataset: str, split: str, subset: int | None = None,
                            progress: bool = True) -> torch.Tensor:
    """InceptionV3 features (N, 2048) of a real split (or a seeded subset of it), cached per data set, split,
    input size and weight file (the first 16 hex digits of its sha256)."""
    from .inception import INPUT_SIZE, inception_features
    return _cached_real(f"inception{INPUT_SIZE}-{sha256[:16]}", dataset, split, subset,
                        lambda images: inception_features(net, images, progress=progress,
                                                          desc=f"Inception features of {dataset} {split}"))


def real_user_features(net, net_id: str, dataset: str, split: str, subset: int | None = None,
                       progress: bool = True) -> torch.Tensor:
    """Features of a real split (or a seeded subset) in a user feature network (genzoo.feature_net), cached per
    data set, split and network (``net_id``: a hash of its weight and declaration files)."""
    return _cached_real(f"featnet-{net_id}", dataset, split, subset, lambda images: net.features(images))


def _cached_real(network_tag: str, dataset: str, split: str, subset: int | None, extract) -> torch.Tensor:
    # extract(uint8 images (N, C, H, W)) -> features (N, D), computed once and kept in DATA/stats; a folder's
    # tag hashes its file list, so a changed folder gets new features
    tag = f"{cache_tag(dataset)}-{split}" + (f"-sub{subset}-seed{REF_SEED}" if subset else "")
    path = data_root() / "stats" / f"{tag}-{network_tag}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as f:
            return torch.from_numpy(f["features"])
    images = load_split(dataset, split).images
    if subset and subset < len(images):
        idx = torch.randperm(len(images), generator=torch.Generator().manual_seed(REF_SEED))[:subset]
        images = images[idx]
    feats = extract(images)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, features=feats.numpy())
    tmp.replace(path)
    return feats


@torch.no_grad()
def generate(model, n: int, seed: int, batch_size: int = 500, labels: torch.Tensor | None = None,
             progress: bool = True, on_batch=None, sample_kwargs: dict | None = None) -> None:
    """Draw n samples in batches from a seeded generator, handing each batch to ``on_batch(images, labels)``."""
    g = torch.Generator(device=model.device).manual_seed(seed)
    for start in tqdm(range(0, n, batch_size), desc="sampling", disable=not progress, leave=False):
        m = min(batch_size, n - start)
        lab = labels[start:start + m].to(model.device) if labels is not None else None
        kw = {"labels": lab} if lab is not None else {}
        x = model.sample(m, generator=g, **kw, **(sample_kwargs or {}))
        on_batch(x.cpu(), lab)


def sample_features(model, classifier: Classifier, n: int, seed: int, batch_size: int = 500,
                    labels: torch.Tensor | None = None, progress: bool = True):
    """(features (n, D), probabilities (n, C)) of n seeded samples under the frozen classifier."""
    return generated_features(model, {"classifier": lambda x: predict(classifier, x)}, n, seed, batch_size,
                              labels, progress)["classifier"]


def generated_features(model, extractors: dict, n: int, seed: int, batch_size: int = 500,
                       labels: torch.Tensor | None = None, progress: bool = True,
                       sample_kwargs: dict | None = None) -> dict:
    """Draw n samples once (as ``generate`` does) and map every batch through each extractor
    ``{name: fn(images) -> tensor or tuple of tensors}``; returns ``{name: the results concatenated}``.
    Only the outputs are kept, never the images."""
    chunks = {name: [] for name in extractors}

    def take(x, _):
        for name, fn in extractors.items():
            chunks[name].append(fn(x))
    generate(model, n, seed, batch_size, labels, progress, take, sample_kwargs)
    return {name: torch.cat(c) if torch.is_tensor(c[0]) else tuple(torch.cat(parts) for parts in zip(*c))
            for name, c in chunks.items()}


def check_sample_options(model, options: dict | None) -> dict:
    """Validate sampling options (``genzoo sample/eval --opt KEY=VALUE``) against the keyword arguments of
    ``model.sample``: a flow's temperature, a diffusion model's sampler and steps, a GAN's truncation."""
    options = dict(options or {})
    params = inspect.signature(model.sample).parameters
    allowed = [k for k, p in params.items() if k not in ("n", "labels", "generator")
               and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    unknown = [k for k in options if k not in allowed]
    if unknown:
        raise GenzooError(f"{type(model).__name__}.sample has no option {', '.join(map(repr, unknown))}; "
                          f"its options are: {', '.join(allowed) or 'none'}.")
    return options


def balanced_labels(n: int, num_classes: int) -> torch.Tensor:
    return torch.arange(n) % num_classes


def likelihood(model, dataset: str, split: str, iwae_k: int, seed: int, progress: bool) -> dict:
    """nll_nats (+ elbo_nats, iwae_k) on dyn-binarized data, or bpd (+ iwae_k) on 8-bit data dequantized once
    with seed ``seed``; a class-conditional model is scored on log p(x|y) with the true labels."""
    from .likelihood import bits_per_dim, is_binarized, mean_bound, scoring_layout
    data = load_split(dataset, split)
    images = data.images
    labels = data.labels if model.conditional else None
    bounded = model.capabilities.likelihood.elbo   # a latent-variable model: log_prob is the IWAE bound with k
    scoring_layout(model)
    out = {}
    batch = 20 if bounded else 500
    nll = -mean_bound(model, images, "iwae" if bounded else "exact", k=iwae_k, batch_size=batch, seed=seed,
                      progress=progress, labels=labels)
    if is_binarized(model):
        if bounded:
            out["elbo_nats"] = -mean_bound(model, images, "elbo", seed=seed, progress=progress, labels=labels)
        out["nll_nats"] = nll
    else:
        out["bpd"] = bits_per_dim(nll, images[0].numel())
    if bounded:
        out["iwae_k"] = iwae_k
    return out


def evaluate_run(run_dir: str | Path, wanted: tuple[str, ...] = DEFAULT_METRICS, n: int = 10_000,
                 split: str = "test", ema: bool = True, seed: int = 0, batch_size: int = 500, iwae_k: int = 1000,
                 progress: bool = True, features: str | Path | None = None, trust_features: bool = False,
                 sample_options: dict | None = None, feature_net: str | Path | None = None,
                 device: str = "cpu") -> dict:
    """Evaluate a run folder; returns the result record of docs/metrics.md ("metrics", "refused", provenance).

    ``sample_options`` are keyword arguments of the model's ``sample`` (e.g. a sampler and its steps); every
    sample-based metric uses them and the record keeps them.

    ``features`` is the path of local InceptionV3 weights for ``inception_fid`` (genzoo.inception); a file
    that is not one of the two known ones is used only with ``trust_features``.

    ``feature_net`` is a user feature network (``NAME.safetensors`` + ``NAME.json``, genzoo.feature_net): fid,
    kid and pr are then computed in its feature space, on any data set. Without it they need genzoo's frozen
    classifier, shipped for mnist, fashion-mnist and digits only, and are refused elsewhere.

    ``device`` runs the model there (sampling, the likelihood); feature networks stay on the CPU. A seed draws
    different images on a GPU than on the CPU, so the record names the device.
    """
    import genzoo
    unknown = [m for m in wanted if m not in ALL_METRICS]
    if unknown:
        raise GenzooError(f"Unknown metric {', '.join(unknown)}; choose from {', '.join(ALL_METRICS)}.")
    if not 2 <= n <= 1_000_000:
        raise GenzooError(f"--n must be between 2 and 1000000, got {n}.")
    if features is not None and "inception_fid" not in wanted:
        raise GenzooError("--features gives the InceptionV3 weights of inception_fid; add inception_fid to "
                          "--metrics (e.g. --metrics fid,inception_fid).")
    if trust_features and features is None:
        raise GenzooError("--trust-features applies to the weights given with --features; pass both.")
    if feature_net is not None and not any(m in wanted for m in ("fid", "kid", "pr")):
        raise GenzooError("--feature-net gives the feature space of fid, kid and pr; ask for one of them "
                          "(e.g. --metrics fid,kid,pr).")
    config = read_config(run_dir)
    dataset, name = config["data"], config["model_name"]
    model = genzoo.load(run_dir, ema=ema, device=device)
    sample_options = check_sample_options(model, sample_options)
    t0 = time.perf_counter()
    refused: dict[str, str] = {}
    out: dict[str, float] = {}

    if "nll" in wanted and model.capabilities.likelihood.kind == "none":
        refused["nll"] = f"{name} defines no likelihood ({model.capabilities.likelihood.reason})"
    if "cas" in wanted and not model.conditional:
        refused["cas"] = f"CAS needs a class-conditional model; {name} is unconditional"
    inception = inception_record = None
    if "inception_fid" in wanted:
        if features is None:
            refused["inception_fid"] = ("needs local InceptionV3 weights, which genzoo never downloads: pass "
                                        "--features PATH (docs/evaluation.md)")
        else:   # a missing, unknown or malformed file stops here, before any sampling
            from .inception import load_inception
            inception, inception_record = load_inception(features, trust=trust_features)
    user_net = user_record = None
    if feature_net is not None:   # a missing or malformed network stops here, before any sampling
        from .feature_net import load_feature_net
        user_net, user_record = load_feature_net(feature_net, shape=(model.config.channels,
                                                                     model.config.image_size, model.config.image_size))
    feature_wanted = [m for m in ("fid", "kid", "pr", "score", "cas") if m in wanted and m not in refused]
    # fid/kid/pr live in the user's feature space when given one, else in the frozen classifier's
    need_classifier = [m for m in feature_wanted if m in ("score", "cas") or user_net is None]
    classifier = record = None
    if need_classifier:
        try:
            classifier, record = load_frozen(dataset)
        except GenzooError:
            for m in need_classifier:
                refused[m] = _no_classifier_reason(m, dataset)
            feature_wanted = [m for m in feature_wanted if m not in need_classifier]
    space = None if not any(m in feature_wanted for m in ("fid", "kid", "pr")) else \
        "user" if user_net is not None else "classifier"

    # every sample-based metric sees the same n seeded samples, drawn once
    extractors = {}
    if space == "classifier" or "score" in feature_wanted:
        extractors["classifier"] = lambda x: predict(classifier, x)
    if space == "user":
        extractors["user"] = lambda x: user_net.features(x)
    if inception is not None:
        from .inception import inception_features
        extractors["inception"] = lambda x: inception_features(inception, x)
    labels = balanced_labels(n, model.config.num_classes) if model.conditional else None
    got = generated_features(model, extractors, n, seed, batch_size, labels, progress, sample_options) \
        if extractors else {}

    if space is not None:
        if space == "user":
            fake = got["user"]

            def real_of(split_, subset=None):
                return real_user_features(user_net, user_record["id"], dataset, split_, subset, progress)
        else:
            fake = got["classifier"][0]

            def real_of(split_, subset=None):
                return real_features(classifier, dataset, split_, subset=subset, progress=progress)
        real = real_of(split)
        if "fid" in feature_wanted:
            out["fid"] = metrics.fid(fake, real)
            out["fid_ref"] = metrics.fid(real_of("train", REF_TRAIN_SUBSET), real)
            if model.conditional:
                out["intra_fid"] = _intra_fid(fake, labels, real, load_split(dataset, split).labels)
        if "kid" in feature_wanted:
            out["kid_mean"], out["kid_std"] = metrics.kid(fake, real, seed=seed)
        if "pr" in feature_wanted:
            out.update(metrics.precision_recall(real, fake, k=3))
            out.update(metrics.density_coverage(real, fake, k=5))
    if "score" in feature_wanted:
        out["classifier_score"] = metrics.classifier_score(got["classifier"][1])
    if "inception" in got:
        sha = inception_record["sha256"]
        real = real_inception_features(inception, sha, dataset, split, progress=progress)
        out["inception_fid"] = metrics.fid(got["inception"], real)
        ref = real_inception_features(inception, sha, dataset, "train", subset=REF_TRAIN_SUBSET, progress=progress)
        out["inception_fid_ref"] = metrics.fid(ref, real)
    if "nll" in wanted and "nll" not in refused:
        out.update(likelihood(model, dataset, split, iwae_k, seed, progress))
    if "cas" in feature_wanted:
        out.update(cas(model, dataset, record, seed, batch_size, progress, sample_options=sample_options))

    frozen_record = None if record is None else {
        "name": f"genzoo classifier-{dataset}", "sha256_16": classifier_hash(dataset),
        "test_accuracy": record["test_accuracy"], "feature_dim": classifier.num_features}
    return {
        "model": name, "dataset": dataset, "split": split, "run": str(run_dir), "genzoo_version": __version__,
        "checkpoint": "ema" if ema and (Path(run_dir) / "ema.safetensors").exists() else "raw",
        "n_generated": n if any(m in out for m in ("fid", "kid_mean", "precision", "classifier_score",
                                                   "inception_fid")) else 0,
        "seed": seed, **({"sample_options": sample_options} if sample_options else {}), "machine": machine(), "device": device_name(model.device), "wall_s": round(time.perf_counter() - t0, 1),
        "feature_network": {"name": "user feature network", **user_record} if space == "user" else
        None if record is None else frozen_record,
        **({"classifier_network": frozen_record} if space == "user" and record is not None else {}),
        **({"inception_network": inception_record} if "inception_fid" in out else {}),
        **({"ref_train_images": min(REF_TRAIN_SUBSET, len(load_split(dataset, "train")))}
           if "fid_ref" in out or "inception_fid_ref" in out else {}),
        "metrics": {k: (round(v, 6) if isinstance(v, float) else v) for k, v in out.items()},
        "refused": refused,
    }


def _no_classifier_reason(metric: str, dataset: str) -> str:
    """One line: why ``metric`` cannot use a frozen classifier on ``dataset``, and what to use instead."""
    from .classifier import ASSETS
    shipped = ", ".join(sorted(p.stem.removeprefix("classifier-") for p in ASSETS.glob("classifier-*.safetensors")))
    if metric in ("fid", "kid", "pr"):
        return (f"genzoo ships no frozen classifier for {dataset} (only {shipped}): pass --feature-net PATH (your "
                f"own feature network) or use --metrics inception_fid --features PATH (local InceptionV3 weights)")
    what = "the classifier score" if metric == "score" else "CAS"
    return f"{what} needs genzoo's frozen classifier for the data set, shipped for {shipped} only, not {dataset}"


def _intra_fid(fake, fake_labels, real, real_labels) -> float:
    """Mean over classes of the FID between that class's samples and that class's real images."""
    scores = [metrics.fid(fake[fake_labels == c], real[real_labels == c]) for c in real_labels.unique().tolist()]
    return float(np.mean(scores))


def cas(model, dataset: str, record: dict, seed: int, batch_size: int, progress: bool, n: int = 60_000,
        recipe=None, sample_options: dict | None = None) -> dict:
    """Classification accuracy score: the fixed recipe trained on n = 60,000 class-balanced samples, tested
    on the real test set; ``cas_real`` is the same recipe on the real train set (the shipped classifier)."""
    from .classifier import RecipeConfig, accuracy, train_classifier
    num_classes = model.config.num_classes
    labels = balanced_labels(n, num_classes)
    chunks = []
    generate(model, len(labels), seed, batch_size, labels, progress,
             lambda x, _: chunks.append((x.clamp(0, 1) * 255).round().to(torch.uint8)), sample_options)
    clf = train_classifier(torch.cat(chunks), labels, num_classes, recipe or RecipeConfig(), progress=progress,
                           desc="CAS classifier")
    test = load_split(dataset, "test")
    return {"cas": accuracy(clf, test.images, test.labels), "cas_real": record["test_accuracy"]}


def format_table(result: dict) -> str:
    rows = [f"{result['model']} on {result['dataset']} {result['split']} ({result['checkpoint']} weights, "
            f"{result['n_generated']} samples, seed {result['seed']})"]
    for k, v in result["metrics"].items():
        rows.append(f"  {k:<17} {v:.4f}" if isinstance(v, float) else f"  {k:<17} {v}")
    refs = [k for k in ("fid_ref", "inception_fid_ref") if k in result["metrics"]]
    if refs:
        rows.append(f"  ({' and '.join(refs)} {'is' if len(refs) == 1 else 'are'} real vs real: "
                    f"{result.get('ref_train_images', REF_TRAIN_SUBSET)} train images vs the {result['split']} set)")
    user = result.get("feature_network") or {}
    if user.get("name") == "user feature network":
        rows.append(f"  (fid, kid, pr: user feature network {user['file']}, sha256 {user['sha256'][:16]}..., "
                    f"{user['feature_dim']}-d features)")
    net = result.get("inception_network")
    if net:
        trust = "verified" if net["verified"] else "NOT verified, used with --trust-features"
        rows.append(f"  (inception_fid: InceptionV3 {net['variant']} weights {net['file']}, sha256 "
                    f"{net['sha256'][:16]}..., {trust})")
    for k, why in result["refused"].items():
        rows.append(f"  {k:<17} refused: {why}")
    return "\n".join(rows)


def write_result(result: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
