"""`genzoo eval`: sample quality in the frozen classifier's feature space, likelihood, CAS, and
Inception FID from user-supplied InceptionV3 weights, as docs/metrics.md defines them. Metrics are asked
of the model's capabilities; one that does not apply is refused with its reason, never skipped in silence.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import __version__, metrics, reference
from .checkpoint import device_name, load, read_config
from .classifier import Classifier, RecipeConfig, accuracy, load_frozen, predict, train_classifier
from .data import load_split
from .errors import GenzooError
from .hardware import machine
from .hub import locate
from .likelihood import score_split, scoring_layout
from .models.base import check_sample_options, require
from .reference import classifier_hash
from .sampling import balanced_labels, sample_batches

ALL_METRICS = ("fid", "kid", "pr", "score", "nll", "cas", "inception_fid")
DEFAULT_METRICS = ("fid", "kid", "pr", "score", "nll", "cas")   # inception_fid (5.7 G mult-adds an image): by name


def sample_features(model, classifier: Classifier, n: int, seed: int, batch_size: int = 500,
                    labels: torch.Tensor | None = None, progress: bool = True):
    """(features (n, D), probabilities (n, C)) of n seeded samples under the frozen classifier."""
    return generated_features(model, {"classifier": lambda x: predict(classifier, x)}, n, seed, batch_size,
                              labels, progress)["classifier"]


def generated_features(model, extractors: dict, n: int, seed: int, batch_size: int = 500,
                       labels: torch.Tensor | None = None, progress: bool = True,
                       sample_options: dict | None = None) -> dict:
    """Draw n samples once (``genzoo.sampling.sample_batches``) and map every batch through each extractor
    ``{name: fn(images) -> tensor or tuple of tensors}``; returns ``{name: the results concatenated}``.
    Only the outputs are kept, never the images."""
    chunks = {name: [] for name in extractors}

    def take(x, _):
        for name, fn in extractors.items():
            chunks[name].append(fn(x))
    sample_batches(model, n, seed, batch_size, labels, progress, take, sample_options)
    return {name: torch.cat(c) if torch.is_tensor(c[0]) else tuple(torch.cat(parts) for parts in zip(*c))
            for name, c in chunks.items()}


def likelihood(model, dataset: str, split: str, iwae_k: int, seed: int, progress: bool,
               first: int | None = None) -> dict:
    """nll_nats (+ elbo_nats, iwae_k) on dyn-binarized data, or bpd (+ iwae_k, or ode_steps) on 8-bit data
    dequantized once with seed ``seed`` (``likelihood.score_split``), on the split or its ``first`` images (then
    nll_images says how many); a class-conditional model is scored on log p(x|y) with the true labels."""
    require(model, "likelihood", "nll")
    data = load_split(dataset, split)
    images, labels = data.images, data.labels if model.capabilities.conditional else None
    if first is not None and first < len(images):
        images, labels = images[:first], None if labels is None else labels[:first]
    declared = model.capabilities.likelihood
    bounded = declared.elbo   # a latent-variable model: log_prob is the IWAE bound with k
    scoring_layout(model)
    scored = score_split(model, images, labels, estimator=declared.estimator, k=iwae_k, seed=seed,
                         batch_size=20 if bounded else 500, progress=progress)
    out = {}
    if bounded and "nll_nats" in scored:
        out.update(score_split(model, images, labels, estimator="elbo", seed=seed, progress=progress))
    out.update(scored)
    if bounded:
        out["iwae_k"] = iwae_k
    if declared.kind == "estimate":   # the ODE likelihood at the model's default solver steps
        out["ode_steps"] = declared.knob_default
    if len(images) < len(data.images):
        out["nll_images"] = len(images)
    return out


@dataclass
class _Features:
    """The feature networks one evaluation uses, loaded (and checked) before any sampling, and what it refused."""
    wanted: list[str]                    # the feature metrics still asked for (fid, kid, pr, score, cas)
    refused: dict[str, str]
    space: str | None = None             # where fid/kid/pr live: "classifier", "user" or None (not asked)
    classifier: Classifier | None = None
    record: dict | None = None           # the frozen classifier's record
    inception: object = None
    inception_record: dict | None = None
    user_net: object = None
    user_record: dict | None = None


def _check_request(wanted, n: int, features, trust_features: bool, feature_net) -> None:
    unknown = [m for m in wanted if m not in ALL_METRICS]
    if unknown:
        raise GenzooError(f"Unknown metric {', '.join(unknown)}; choose from {', '.join(ALL_METRICS)}.")
    if not 2 <= n <= 1_000_000:
        raise GenzooError(f"n must be between 2 and 1000000, got {n}.")
    if features is not None and "inception_fid" not in wanted:
        raise GenzooError("features gives the InceptionV3 weights of inception_fid; wanted must include "
                          "inception_fid too.")
    if trust_features and features is None:
        raise GenzooError("trust_features=True applies to the weights given with features=PATH; pass both.")
    if feature_net is not None and not any(m in wanted for m in ("fid", "kid", "pr")):
        raise GenzooError("feature_net gives the feature space of fid, kid and pr; wanted must include one of "
                          "them.")


def _refusals(model, name: str, wanted) -> dict[str, str]:
    """The metrics this model's declaration rules out, each with its reason."""
    caps, refused = model.capabilities, {}
    if "nll" in wanted and caps.likelihood.kind == "none":
        refused["nll"] = f"{name} defines no likelihood ({caps.likelihood.reason})"
    if "cas" in wanted and not caps.conditional:
        refused["cas"] = f"CAS needs a class-conditional model; {name} is unconditional"
    return refused


def _feature_networks(model, dataset: str, wanted, refused: dict, features, trust_features: bool,
                      feature_net) -> _Features:
    """Load every feature network the wanted metrics need; a metric whose network genzoo lacks is refused."""
    f = _Features(wanted=[], refused=refused)
    if "inception_fid" in wanted:
        if features is None:
            refused["inception_fid"] = ("needs local InceptionV3 weights, which genzoo never downloads: pass "
                                        "features=PATH (genzoo eval --features PATH; docs/evaluation.md)")
        else:   # a missing, unknown or malformed file stops here, before any sampling
            from .inception import load_inception
            try:
                f.inception, f.inception_record = load_inception(features, trust=trust_features)
            except GenzooError as e:      # named as the caller passed it (load_inception's trust: trust_features)
                raise GenzooError(f"features: {str(e).replace('trust=True', 'trust_features=True')}") from None
    if feature_net is not None:   # a missing or malformed network stops here, before any sampling
        from .feature_net import load_feature_net
        c = model.config
        try:
            f.user_net, f.user_record = load_feature_net(feature_net,
                                                         shape=(c.channels, c.image_size, c.image_size))
        except GenzooError as e:
            raise GenzooError(f"feature_net: {e}") from None
    f.wanted = [m for m in ("fid", "kid", "pr", "score", "cas") if m in wanted and m not in refused]
    # fid/kid/pr live in the user's feature space when given one, else in the frozen classifier's
    need_classifier = [m for m in f.wanted if m in ("score", "cas") or f.user_net is None]
    if need_classifier:
        try:
            f.classifier, f.record = load_frozen(dataset)
        except GenzooError:
            for m in need_classifier:
                refused[m] = _no_classifier_reason(m, dataset)
            f.wanted = [m for m in f.wanted if m not in need_classifier]
    if any(m in f.wanted for m in ("fid", "kid", "pr")):
        f.space = "user" if f.user_net is not None else "classifier"
    return f


def _sampled_features(model, f: _Features, n: int, seed: int, batch_size: int, labels, progress: bool,
                      sample_options: dict) -> dict:
    """Every feature of the same n seeded samples, drawn once: {"classifier": (features, probabilities),
    "user": features, "inception": features}, as the metrics need them."""
    extractors = {}
    if f.space == "classifier" or "score" in f.wanted:
        extractors["classifier"] = lambda x: predict(f.classifier, x)
    if f.space == "user":
        extractors["user"] = lambda x: f.user_net.features(x)
    if f.inception is not None:
        from .inception import inception_features
        extractors["inception"] = lambda x: inception_features(f.inception, x)
    if not extractors:
        return {}
    return generated_features(model, extractors, n, seed, batch_size, labels, progress, sample_options)


def _feature_metrics(f: _Features, got: dict, dataset: str, split: str, labels, seed: int, progress: bool) -> dict:
    """fid (with its real-vs-real reference and, for a conditional model, intra_fid), kid, pr and the classifier
    score from the samples' features ``got``, and inception_fid with its reference."""
    out = {}
    if f.space is not None:
        if f.space == "user":
            fake = got["user"]

            def real_of(split_, subset=None):
                return reference.real_user_features(f.user_net, f.user_record["id"], dataset, split_, subset,
                                                    progress)
        else:
            fake = got["classifier"][0]

            def real_of(split_, subset=None):
                return reference.real_features(f.classifier, dataset, split_, subset=subset, progress=progress)
        real = real_of(split)
        if "fid" in f.wanted:
            out["fid"] = metrics.fid(fake, real)
            out["fid_ref"] = metrics.fid(real_of("train", reference.REF_TRAIN_SUBSET), real)
            if labels is not None:
                out["intra_fid"] = _intra_fid(fake, labels, real, load_split(dataset, split).labels)
        if "kid" in f.wanted:
            out["kid_mean"], out["kid_std"] = metrics.kid(fake, real, seed=seed)
        if "pr" in f.wanted:
            out.update(metrics.precision_recall(real, fake, k=3))
            out.update(metrics.density_coverage(real, fake, k=5))
    if "score" in f.wanted:
        out["classifier_score"] = metrics.classifier_score(got["classifier"][1])
    if "inception" in got:
        sha = f.inception_record["sha256"]
        real = reference.real_inception_features(f.inception, sha, dataset, split, progress=progress)
        out["inception_fid"] = metrics.fid(got["inception"], real)
        ref = reference.real_inception_features(f.inception, sha, dataset, "train",
                                                subset=reference.REF_TRAIN_SUBSET, progress=progress)
        out["inception_fid_ref"] = metrics.fid(ref, real)
    return out


def evaluate_run(run_dir: str | Path, wanted: tuple[str, ...] = DEFAULT_METRICS, n: int = 10_000,
                 split: str = "test", ema: bool = True, seed: int = 0, batch_size: int = 500, iwae_k: int = 1000,
                 progress: bool = True, features: str | Path | None = None, trust_features: bool = False,
                 sample_options: dict | None = None, feature_net: str | Path | None = None,
                 device: str = "cpu", cas_n: int = 60_000, nll_n: int | None = None) -> dict:
    """Evaluate a run folder; returns the result record of docs/metrics.md ("metrics", "refused", provenance).

    ``sample_options`` are the model's declared sampling options (``capabilities.sample_options``, e.g. a
    sampler and its steps), checked against that declaration; every sample-based metric uses them and the
    record keeps them.

    ``features`` is the path of local InceptionV3 weights for ``inception_fid`` (genzoo.inception); a file
    that is not one of the two known ones is used only with ``trust_features``.

    ``feature_net`` is a user feature network (``NAME.safetensors`` + ``NAME.json``, genzoo.feature_net): fid,
    kid and pr are then computed in its feature space, on any data set. Without it they need genzoo's frozen
    classifier, shipped for mnist, fashion-mnist and digits only, and are refused elsewhere.

    ``device`` runs the model there (sampling, the likelihood); feature networks stay on the CPU. A seed draws
    different images on a GPU than on the CPU, so the record names the device.

    ``cas_n`` is the number of class-balanced samples CAS trains its classifier on (60,000, the size of the
    real train set, unless a slow sampler needs fewer), and ``nll_n`` scores the likelihood on the first
    ``nll_n`` images of the split instead of all of them (a diffusion model's bound costs its T network passes
    an image); the record keeps both where they apply.
    """
    run_dir = locate(run_dir)             # a run folder, a zoo model or hf://, its manifest checked
    _check_request(wanted, n, features, trust_features, feature_net)
    if not 100 <= cas_n <= 1_000_000:
        raise GenzooError(f"cas_n must be between 100 and 1000000, got {cas_n}.")
    if nll_n is not None and nll_n < 1:
        raise GenzooError(f"nll_n must be at least 1 (or None: the whole split), got {nll_n}.")
    config = read_config(run_dir)
    dataset, name = config["data"], config["model_name"]
    model = load(run_dir, ema=ema, device=device)
    sample_options = check_sample_options(model, sample_options)
    t0 = time.perf_counter()
    f = _feature_networks(model, dataset, wanted, _refusals(model, name, wanted), features, trust_features,
                          feature_net)
    conditional = model.capabilities.conditional
    labels = balanced_labels(n, model.config.num_classes) if conditional else None
    got = _sampled_features(model, f, n, seed, batch_size, labels, progress, sample_options)
    out = _feature_metrics(f, got, dataset, split, labels, seed, progress)
    if "nll" in wanted and "nll" not in f.refused:
        out.update(likelihood(model, dataset, split, iwae_k, seed, progress, nll_n))
    if "cas" in f.wanted:
        out.update(cas(model, dataset, f.record, seed, batch_size, progress, n=cas_n,
                       sample_options=sample_options))
    return _record(run_dir, name, dataset, split, ema, n, seed, sample_options, model, f, out,
                   time.perf_counter() - t0)


def _record(run_dir, name: str, dataset: str, split: str, ema: bool, n: int, seed: int, sample_options: dict,
            model, f: _Features, out: dict, wall_s: float) -> dict:
    """The result record of docs/metrics.md: the metrics, the refusals and the provenance of every number."""
    frozen_record = None if f.record is None else {
        "name": f"genzoo classifier-{dataset}", "sha256_16": classifier_hash(dataset),
        "test_accuracy": f.record["test_accuracy"], "feature_dim": f.classifier.num_features}
    return {
        "model": name, "dataset": dataset, "split": split, "run": str(run_dir), "genzoo_version": __version__,
        "checkpoint": "ema" if ema and (Path(run_dir) / "ema.safetensors").exists() else "raw",
        "n_generated": n if any(m in out for m in ("fid", "kid_mean", "precision", "classifier_score",
                                                   "inception_fid")) else 0,
        "seed": seed, **({"sample_options": sample_options} if sample_options else {}), "machine": machine(),
        "device": device_name(model.device), "wall_s": round(wall_s, 1),
        "feature_network": {"name": "user feature network", **f.user_record} if f.space == "user" else
        None if f.record is None else frozen_record,
        **({"classifier_network": frozen_record} if f.space == "user" and f.record is not None else {}),
        **({"inception_network": f.inception_record} if "inception_fid" in out else {}),
        **({"ref_train_images": min(reference.REF_TRAIN_SUBSET, len(load_split(dataset, "train")))}
           if "fid_ref" in out or "inception_fid_ref" in out else {}),
        "metrics": {k: (round(v, 6) if isinstance(v, float) else v) for k, v in out.items()},
        "refused": f.refused,
    }


def _no_classifier_reason(metric: str, dataset: str) -> str:
    """One line: why ``metric`` cannot use a frozen classifier on ``dataset``, and what to use instead."""
    from .classifier import ASSETS
    shipped = ", ".join(sorted(p.stem.removeprefix("classifier-") for p in ASSETS.glob("classifier-*.safetensors")))
    if metric in ("fid", "kid", "pr"):
        return (f"genzoo ships no frozen classifier for {dataset} (only {shipped}): pass feature_net=PATH (your "
                f"own feature network; genzoo eval --feature-net PATH) or ask for inception_fid with features=PATH "
                f"(local InceptionV3 weights; genzoo eval --metrics inception_fid --features PATH)")
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
    num_classes = model.config.num_classes
    labels = balanced_labels(n, num_classes)
    chunks = []       # 8-bit, as the real images the recipe trains on
    sample_batches(model, len(labels), seed, batch_size, labels, progress,
                   lambda x, _: chunks.append((x.clamp(0, 1) * 255).round().to(torch.uint8)), sample_options)
    clf = train_classifier(torch.cat(chunks), labels, num_classes, recipe or RecipeConfig(), progress=progress,
                           desc="CAS classifier")
    test = load_split(dataset, "test")
    return {"cas": accuracy(clf, test.images, test.labels), "cas_real": record["test_accuracy"], "cas_n": n}


def format_table(result: dict) -> str:
    rows = [f"{result['model']} on {result['dataset']} {result['split']} ({result['checkpoint']} weights, "
            f"{result['n_generated']} samples, seed {result['seed']})"]
    for k, v in result["metrics"].items():
        rows.append(f"  {k:<17} {v:.4f}" if isinstance(v, float) else f"  {k:<17} {v}")
    refs = [k for k in ("fid_ref", "inception_fid_ref") if k in result["metrics"]]
    if refs:
        train = result.get('ref_train_images', reference.REF_TRAIN_SUBSET)
        rows.append(f"  ({' and '.join(refs)} {'is' if len(refs) == 1 else 'are'} real vs real: "
                    f"{train} train images vs the {result['split']} set)")
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
