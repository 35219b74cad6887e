"""Features of real data, the side every sample-quality metric compares with (docs/metrics.md): a real split, or
the seeded train subset of the real-vs-real reference, in the frozen classifier's features, in InceptionV3's or in
a user feature network's. Each is computed once and cached in DATA/stats per data set, split and network, so
`genzoo eval`, the metrics' ``dataset=`` form, the report and bench share one cache."""
from __future__ import annotations

import hashlib

import numpy as np
import torch

from .classifier import Classifier, asset_paths, predict
from .data import cache_tag, data_root, load_split

REF_TRAIN_SUBSET = 10_000        # train images in the real-vs-real reference
REF_SEED = 0                     # seeds the draw of that subset


def classifier_hash(dataset: str) -> str:
    """The first 16 hex digits of the sha256 of genzoo's frozen classifier for ``dataset``."""
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
