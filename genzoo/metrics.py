"""Sample-quality metrics on feature tensors, as defined in docs/metrics.md: FID, KID, precision/recall,
density/coverage and the classifier score; and Inception FID on images, from local InceptionV3 weights.

Pure functions: features (N, D) in, Python floats out. With ``dataset="mnist"`` (or another data set
genzoo ships a classifier for) they take images (N, C, H, W) in [0, 1] instead, map them through that
frozen classifier, and compare with the cached features of the real split when no second set is given:
``fid(images, dataset="mnist")``. Inputs may be torch tensors (kept on their device) or numpy arrays;
everything is computed in float64, because FID and KID are differences of large nearly equal sums.
Pairwise distances are computed in row batches, so N = 10,000 real and fake features never need
more than batch_size x N distances in memory.
"""
from __future__ import annotations

import torch

from .errors import GenzooError


def _features(x, name: str, device=None) -> torch.Tensor:
    # any (N, D) array-like -> float64 tensor on `device` (default: where x already is)
    x = torch.as_tensor(x).detach()
    if x.dim() != 2:
        raise GenzooError(f"{name} must be features shaped (N, D); got shape {tuple(x.shape)}.")
    return x.to(device=device if device is not None else x.device, dtype=torch.float64)


def _pair(a, b, names=("real", "fake")) -> tuple[torch.Tensor, torch.Tensor]:
    a = _features(a, names[0])
    b = _features(b, names[1], device=a.device)
    if a.shape[1] != b.shape[1]:
        raise GenzooError(f"{names[0]} and {names[1]} have different feature sizes "
                          f"({a.shape[1]} vs {b.shape[1]}); they must come from the same extractor.")
    return a, b


# ---------------------------------------------------------------------------------------------
# FID


def gaussian_stats(features) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian fit of features (N, D): mean (D,) and unbiased covariance (D, D), both float64.

    The two statistics of the Frechet distance (Heusel et al. 2017); covariance with ddof = 1.
    """
    x = _features(features, "features")
    if len(x) < 2:
        raise GenzooError(f"a covariance needs at least 2 feature vectors; got {len(x)}.")
    mu = x.mean(0)                                   # (D,)
    xc = x - mu                                      # (N, D)
    sigma = xc.T @ xc / (len(x) - 1)                 # (D, D)
    return mu, (sigma + sigma.T) / 2                 # exactly symmetric for eigh below


def _sqrt_psd(s: torch.Tensor) -> torch.Tensor:
    # Symmetric PSD (D, D) -> its symmetric PSD square root. Eigenvalues at the rounding-noise level
    # (below D * eps * the largest, numpy's matrix_rank tolerance) are set to 0: a sample covariance
    # with N <= D is singular, and the square root of noise (~1e-8 per eigenvalue) would otherwise
    # add up over D directions.
    lam, v = torch.linalg.eigh(s)                    # (D,), (D, D)
    tol = lam.abs().max() * s.shape[0] * torch.finfo(s.dtype).eps
    lam = torch.where(lam > tol, lam, torch.zeros_like(lam)).sqrt()
    return (v * lam) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2) (Dowson & Landau 1982; FID, Heusel et al. 2017):

        d^2 = ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^{1/2})

    Works for singular covariances (fewer samples than feature dimensions).
    """
    device = torch.as_tensor(mu1).device
    mu1, mu2, s1, s2 = (torch.as_tensor(t).detach().to(device=device, dtype=torch.float64)
                        for t in (mu1, mu2, sigma1, sigma2))
    d = mu1.shape[-1] if mu1.dim() else -1
    if not (mu1.shape == mu2.shape == (d,) and s1.shape == s2.shape == (d, d)):
        raise GenzooError(f"frechet_distance needs two means (D,) and two covariances (D, D) of one D; got "
                          f"{tuple(mu1.shape)}, {tuple(s1.shape)}, {tuple(mu2.shape)}, {tuple(s2.shape)}.")
    s1, s2 = (s1 + s1.T) / 2, (s2 + s2.T) / 2
    # Tr (S1 S2)^{1/2} = sum of sqrt(eigenvalues of S1^{1/2} S2 S1^{1/2}) (S1 S2 has the same
    # nonzero eigenvalues) = sum of singular values of A = S1^{1/2} S2^{1/2}, since A A^T is that
    # matrix. Singular values of A instead of eigenvalues of A A^T avoid squaring the condition
    # number: small terms keep an absolute error ~eps rather than ~sqrt(eps). Real throughout.
    tr_covmean = torch.linalg.svdvals(_sqrt_psd(s1) @ _sqrt_psd(s2)).sum()
    diff = mu1 - mu2
    value = diff @ diff + s1.trace() + s2.trace() - 2 * tr_covmean
    # d^2 >= 0; rounding can leave it a few ulps of the traces below 0
    return max(float(value), 0.0)


def fid(feats_a, feats_b=None, *, dataset: str | None = None, split: str = "test") -> float:
    """FID (Heusel et al. 2017): the Frechet distance between Gaussian fits of two feature sets (N, D).

    With ``dataset``, the inputs are images and ``feats_b`` defaults to the real ``split``."""
    feats_a, feats_b = _resolve(feats_a, feats_b, dataset, split)
    a, b = _pair(feats_a, feats_b, ("feats_a", "feats_b"))
    return frechet_distance(*gaussian_stats(a), *gaussian_stats(b))


# ---------------------------------------------------------------------------------------------
# KID


def _mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # Unbiased MMD^2 (Gretton et al. 2012, the U-statistic MMD_u^2) with the KID kernel
    # k(a, b) = (a.b / D + 1)^3 (Binkowski et al. 2018). x (m, D), y (n, D), m, n >= 2:
    #   sum_{i != j} k(x_i, x_j) / (m (m-1)) + sum_{i != j} k(y_i, y_j) / (n (n-1)) - 2 sum_{i,j} k(x_i, y_j) / (m n)
    m, n, d = len(x), len(y), x.shape[1]
    k_xx = (x @ x.T / d + 1) ** 3                    # (m, m)
    k_yy = (y @ y.T / d + 1) ** 3                    # (n, n)
    k_xy = (x @ y.T / d + 1) ** 3                    # (m, n)
    return ((k_xx.sum() - k_xx.diagonal().sum()) / (m * (m - 1))
            + (k_yy.sum() - k_yy.diagonal().sum()) / (n * (n - 1))
            - 2 * k_xy.mean())


def kid(feats_a, feats_b=None, n_subsets: int = 100, subset_size: int = 1000, seed: int = 0, *,
        dataset: str | None = None, split: str = "test") -> tuple[float, float]:
    """KID (Binkowski et al. 2018): unbiased MMD^2 with the kernel k(x, y) = (x.y / D + 1)^3.

    Averaged over ``n_subsets`` random subsets of ``subset_size`` features from each set, drawn
    without replacement within a subset from a generator seeded with ``seed``; the subset size is
    capped at min(len(a), len(b)). Returns (mean, std) over subsets, std with ddof = 0.
    With ``dataset``, the inputs are images and ``feats_b`` defaults to the real ``split``.
    """
    feats_a, feats_b = _resolve(feats_a, feats_b, dataset, split)
    a, b = _pair(feats_a, feats_b, ("feats_a", "feats_b"))
    m = min(subset_size, len(a), len(b))
    if m < 2 or n_subsets < 1:
        raise GenzooError(f"kid needs subsets of at least 2 features and n_subsets >= 1; got subset size {m} "
                          f"(from {len(a)} and {len(b)} features) and n_subsets={n_subsets}.")
    g = torch.Generator().manual_seed(seed)          # on the CPU, so the subsets do not depend on the device
    mmds = []
    for _ in range(n_subsets):
        ia = torch.randperm(len(a), generator=g)[:m].to(a.device)
        ib = torch.randperm(len(b), generator=g)[:m].to(b.device)
        mmds.append(_mmd2_unbiased(a[ia], b[ib]))
    mmds = torch.stack(mmds)                         # (n_subsets,)
    return float(mmds.mean()), float(mmds.std(correction=0))


# ---------------------------------------------------------------------------------------------
# k-NN manifolds: precision/recall and density/coverage


def _sq_dist_batches(x: torch.Tensor, y: torch.Tensor, batch_size: int):
    # Yields (start, d2) with d2 (B, len(y)) the squared Euclidean distances of x[start:start+B] to
    # every row of y. Squared distances keep the order of distances and skip a sqrt; only one
    # (B, len(y)) float64 block is alive at a time (batch_size * N * 8 bytes).
    if batch_size < 1:
        raise GenzooError(f"batch_size must be >= 1; got {batch_size}.")
    y_sq = (y * y).sum(1)                            # (Ny,)
    for start in range(0, len(x), batch_size):
        xb = x[start:start + batch_size]             # (B, D)
        d2 = xb @ y.T                                # (B, Ny)
        d2.mul_(-2).add_((xb * xb).sum(1, keepdim=True)).add_(y_sq).clamp_(min=0)
        yield start, d2


def _knn_radii_sq(x: torch.Tensor, k: int, batch_size: int) -> torch.Tensor:
    # (N,) squared distance from each row of x to its k-th nearest neighbour among the other rows
    # (itself excluded by index, so a duplicate point counts as a neighbour at distance 0)
    if not 1 <= k < len(x):
        raise GenzooError(f"k-NN radii need 1 <= k < number of features; got k={k} with {len(x)} features.")
    radii = torch.empty(len(x), dtype=x.dtype, device=x.device)
    for start, d2 in _sq_dist_batches(x, x, batch_size):
        rows = torch.arange(len(d2), device=x.device)
        d2[rows, start + rows] = float("inf")         # self
        radii[start:start + len(d2)] = d2.kthvalue(k, dim=1).values
    return radii


def precision_recall(real, fake=None, k: int = 3, batch_size: int = 1000, *, dataset: str | None = None,
                     split: str = "test") -> dict[str, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019) with k-NN manifolds.

    The manifold of a set is the union of closed balls B(phi, ||phi - NN_k(phi)||) around each of its
    features, NN_k the k-th nearest other feature of the same set. precision = fraction of fake
    features inside the real manifold; recall = fraction of real features inside the fake manifold.
    Distances are computed ``batch_size`` rows at a time. With ``dataset``, pass generated images
    alone (``precision_recall(images, dataset="mnist")``): they are compared with the real ``split``.
    """
    real, fake = _real_fake(real, fake, dataset, split)
    real, fake = _pair(real, fake)
    r_real = _knn_radii_sq(real, k, batch_size)      # (Nr,)
    r_fake = _knn_radii_sq(fake, k, batch_size)      # (Nf,)
    fake_in_real = torch.zeros(len(fake), dtype=torch.bool, device=real.device)
    real_in_fake = torch.zeros(len(real), dtype=torch.bool, device=real.device)
    for start, d2 in _sq_dist_batches(fake, real, batch_size):   # d2 (B, Nr): fake rows vs every real
        fake_in_real[start:start + len(d2)] = (d2 <= r_real).any(1)
        real_in_fake |= (d2 <= r_fake[start:start + len(d2), None]).any(0)
    return {"precision": fake_in_real.double().mean().item(), "recall": real_in_fake.double().mean().item()}


def density_coverage(real, fake=None, k: int = 5, batch_size: int = 1000, *, dataset: str | None = None,
                     split: str = "test") -> dict[str, float]:
    """Density and coverage (Naeem et al. 2020), with closed balls B(X_i, NND_k(X_i)) around real features:

        density  = 1 / (k M) * sum_j sum_i 1[Y_j in B(X_i, NND_k(X_i))]
        coverage = 1 / N * sum_i 1[exists j: Y_j in B(X_i, NND_k(X_i))]

    X_i the N real and Y_j the M fake features; NND_k the distance to the k-th nearest other real
    feature. Distances are computed ``batch_size`` rows at a time. With ``dataset``, pass generated
    images alone, as for precision_recall.
    """
    real, fake = _real_fake(real, fake, dataset, split)
    real, fake = _pair(real, fake)
    r_real = _knn_radii_sq(real, k, batch_size)      # (N,)
    in_balls = torch.zeros((), dtype=torch.float64, device=real.device)   # sum over j of #balls holding Y_j
    covered = torch.zeros(len(real), dtype=torch.bool, device=real.device)
    for _, d2 in _sq_dist_batches(fake, real, batch_size):       # d2 (B, N): fake rows vs every real
        inside = d2 <= r_real                        # (B, N)
        in_balls += inside.sum()
        covered |= inside.any(0)
    return {"density": (in_balls / (k * len(fake))).item(), "coverage": covered.double().mean().item()}


# ---------------------------------------------------------------------------------------------
# Classifier score


def classifier_score(probs, *, dataset: str | None = None) -> float:
    """The Inception Score formula (Salimans et al. 2016) for any classifier, one split:

        exp(E_x KL(p(y|x) || p(y))),  p(y) = mean over the set of p(y|x)

    ``probs`` (N, C) are class probabilities (softmax outputs, rows summing to 1), not logits.
    Ranges from 1 (every x gets the same prediction) to C (confident and balanced).
    With ``dataset``, pass images: the probabilities are that data set's frozen classifier's.
    """
    if dataset is not None:
        probs = _classify(probs, dataset)[1]
    p = _features(probs, "probs")                    # (N, C)
    if (p < 0).any() or ((p.sum(1) - 1).abs() > 1e-3).any():
        raise GenzooError("classifier_score needs probabilities (N, C) with non-negative rows summing to 1; "
                          "apply softmax to logits first.")
    p_y = p.mean(0)                                  # (C,)
    # xlogy gives 0 log 0 = 0; where p(y|x) > 0 also p(y) > 0, so no log(0) is ever used
    kl = (torch.xlogy(p, p) - torch.xlogy(p, p_y)).sum(1)        # (N,) nats
    return float(kl.mean().exp())


# ---------------------------------------------------------------------------------------------
# Inception FID


def inception_fid(images_a, images_b=None, *, weights, dataset: str | None = None, split: str = "test",
                  trust: bool = False, batch_size: int = 50) -> float:
    """FID in the 2048-d pool3 features of ImageNet InceptionV3 ("Inception FID", docs/metrics.md).

    ``weights`` is the path of a local InceptionV3 file, pytorch-fid's pt_inception-2015-12-05-6726825d.pth
    or torchvision's inception_v3_google-0cc3c7bd.pth (genzoo never downloads them; see genzoo.inception).
    Any other file, e.g. one converted to safetensors, is refused unless ``trust=True``. Images are
    (N, C, H, W), uint8 or float in [0, 1], C = 1 (repeated to RGB) or 3, any size (resized to 299 x 299).
    Without ``images_b``, ``images_a`` is compared with the real ``split`` of ``dataset``, whose features are
    cached per weight file:
    ``inception_fid(images, weights="pt_inception-2015-12-05-6726825d.pth", dataset="mnist")``.
    """
    from .inception import inception_features, load_inception
    if images_b is None and dataset is None:
        raise GenzooError("pass two image sets, or images with dataset=NAME to compare with real data.")
    images_a = _check_images(images_a, (1, 3))
    images_b = None if images_b is None else _check_images(images_b, (1, 3))
    net, record = load_inception(weights, trust=trust)
    a = inception_features(net, images_a, batch_size)
    if images_b is not None:
        b = inception_features(net, images_b, batch_size)
    else:
        from .reference import real_inception_features
        b = real_inception_features(net, record["sha256"], dataset, split)
    return fid(a, b)


def _check_images(images, channels: tuple[int, ...]) -> torch.Tensor:
    images = torch.as_tensor(images)
    if images.dim() != 4 or images.shape[1] not in channels:
        raise GenzooError(f"the inputs must be images (N, C, H, W) with C in {channels}; got shape "
                          f"{tuple(images.shape)}.")
    if images.dtype != torch.uint8 and (images.min() < 0 or images.max() > 1):
        raise GenzooError("images must be floats in [0, 1] (or uint8).")
    return images


# ---------------------------------------------------------------------------------------------
# Images in, via a data set's frozen classifier


def _classify(images, dataset: str) -> tuple[torch.Tensor, torch.Tensor]:
    from .classifier import predict
    images = torch.as_tensor(images)
    if images.dim() != 4:
        raise GenzooError(f"with dataset={dataset!r} the inputs are images (N, C, H, W); got shape "
                          f"{tuple(images.shape)}.")
    if images.dtype != torch.uint8 and (images.min() < 0 or images.max() > 1):
        raise GenzooError("images must be floats in [0, 1] (or uint8).")
    clf = _frozen(dataset)
    want = (clf.config.channels, clf.config.image_size, clf.config.image_size)
    if tuple(images.shape[1:]) != want:
        raise GenzooError(f"{dataset} images are {want}; got {tuple(images.shape[1:])}.")
    return predict(clf, images.cpu())


class _FeatureModule(torch.nn.Module):
    """A frozen classifier in torchmetrics' feature-module form: images (N, C, H, W) in [0, 1] -> (N, num_features)."""

    def __init__(self, clf, output: str):
        super().__init__()
        self.clf, self.output = clf.eval(), output
        self.num_features = clf.num_features if output == "features" else clf.config.num_classes

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
        return self.clf.features(x) if self.output == "features" else self.clf(x)


def feature_module(dataset: str, output: str = "features") -> torch.nn.Module:
    """genzoo's frozen classifier for ``dataset`` as a module with ``num_features``, for torchmetrics:
    ``FrechetInceptionDistance(feature=feature_module("mnist"))`` or ``KernelInceptionDistance(...)`` compute FID/KID
    in the same feature space as ``genzoo eval``; ``InceptionScore(feature=feature_module("mnist", "logits"))`` the
    classifier score. Feed it images in [0, 1] (torchmetrics' ``normalize=True`` with float images) or uint8."""
    if output not in ("features", "logits"):
        raise GenzooError(f"output must be features or logits, got {output!r}.")
    return _FeatureModule(_frozen(dataset), output)


def _frozen(dataset: str):
    if dataset not in _FROZEN:
        from .classifier import load_frozen
        _FROZEN[dataset] = load_frozen(dataset)[0]
    return _FROZEN[dataset]


_FROZEN: dict = {}


def _real_split(dataset: str, split: str) -> torch.Tensor:
    from .reference import real_features
    return real_features(_frozen(dataset), dataset, split)


def _resolve(a, b, dataset: str | None, split: str):
    # (generated, real) features from features, or from images with a data set's classifier
    if dataset is None:
        if b is None:
            raise GenzooError("pass two feature sets, or images with dataset=NAME to compare with real data.")
        return a, b
    return _classify(a, dataset)[0], (_classify(b, dataset)[0] if b is not None else _real_split(dataset, split))


def _real_fake(real, fake, dataset: str | None, split: str):
    # precision/recall and density/coverage take (real, fake); with a data set, one argument is the fake
    if dataset is None:
        if fake is None:
            raise GenzooError("pass real and fake features, or generated images with dataset=NAME.")
        return real, fake
    if fake is None:
        return _real_split(dataset, split), _classify(real, dataset)[0]
    return _classify(real, dataset)[0], _classify(fake, dataset)[0]
