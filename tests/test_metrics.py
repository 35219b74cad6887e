"""Each metric of genzoo.metrics against an independent computation: closed forms for Gaussians,
scipy's sqrtm, and brute-force float64 loops written out here on small sets."""
import math

import numpy as np
import pytest
import scipy.linalg
import torch

from genzoo import metrics
from genzoo.errors import GenzooError
from genzoo.metrics import (classifier_score, density_coverage, fid, frechet_distance, gaussian_stats, kid,
                            precision_recall)


def _randn(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _spd(d, seed):
    a = _randn(d, d, seed=seed)
    return a @ a.T / d + 0.1 * torch.eye(d, dtype=torch.float64)


# ---------------------------------------------------------------------------------------------
# FID


def test_gaussian_stats_match_numpy():
    x = _randn(50, 6, dtype=torch.float32)
    mu, sigma = gaussian_stats(x)
    assert mu.dtype == sigma.dtype == torch.float64
    np.testing.assert_allclose(mu.numpy(), x.double().numpy().mean(0), rtol=1e-12)
    np.testing.assert_allclose(sigma.numpy(), np.cov(x.double().numpy(), rowvar=False, ddof=1), rtol=1e-12)


def test_frechet_distance_diagonal_closed_form():
    g = torch.Generator().manual_seed(1)
    m1, m2 = torch.randn(7, generator=g, dtype=torch.float64), torch.randn(7, generator=g, dtype=torch.float64)
    s1, s2 = torch.rand(7, generator=g, dtype=torch.float64) + 0.1, torch.rand(7, generator=g, dtype=torch.float64) * 3
    s2[0] = 0.0                                          # one degenerate direction
    expected = float(((m1 - m2) ** 2).sum() + (s1 + s2 - 2 * (s1 * s2).sqrt()).sum())
    assert frechet_distance(m1, torch.diag(s1), m2, torch.diag(s2)) == pytest.approx(expected, rel=1e-12)


def test_frechet_distance_full_covariance_matches_scipy_sqrtm():
    d = 8
    m1, m2 = _randn(d, seed=1), _randn(d, seed=2)
    s1, s2 = _spd(d, 3), _spd(d, 4)
    covmean = scipy.linalg.sqrtm(s1.numpy() @ s2.numpy())
    expected = float(((m1 - m2) ** 2).sum()) + np.trace(s1.numpy() + s2.numpy() - 2 * covmean.real)
    assert frechet_distance(m1, s1, m2, s2) == pytest.approx(expected, rel=1e-10)
    # numpy inputs give the same number
    assert frechet_distance(m1.numpy(), s1.numpy(), m2.numpy(), s2.numpy()) == frechet_distance(m1, s1, m2, s2)


def test_fid_of_large_samples_approaches_the_closed_form():
    d, n = 4, 20000
    m1, m2 = torch.zeros(d, dtype=torch.float64), torch.tensor([0.5, -0.3, 0.2, 0.0], dtype=torch.float64)
    s1, s2 = _spd(d, 5), _spd(d, 6)
    expected = float(((m1 - m2) ** 2).sum()) + np.trace(
        s1.numpy() + s2.numpy() - 2 * scipy.linalg.sqrtm(s1.numpy() @ s2.numpy()).real)
    a = m1 + _randn(n, d, seed=7) @ torch.linalg.cholesky(s1).T
    b = m2 + _randn(n, d, seed=8) @ torch.linalg.cholesky(s2).T
    # over 20 seeds the estimate at this n scatters by ~0.02 around the closed form (~2)
    assert fid(a, b) == pytest.approx(expected, abs=0.1)


def test_fid_of_a_set_with_itself_is_zero_and_fid_is_symmetric():
    a, b = _randn(200, 16, seed=1, dtype=torch.float32), _randn(300, 16, seed=2, dtype=torch.float32) * 1.3 + 0.1
    assert abs(fid(a, a)) < 1e-6
    assert fid(a, b) == pytest.approx(fid(b, a), rel=1e-10)
    assert fid(a, b) > 1.0
    assert fid(a.numpy(), b.numpy()) == fid(a, b)


def test_fid_with_singular_covariances_matches_the_small_side_computation():
    # D = 64 > N: both covariances have rank <= N - 1. With centred data X1 (n1, D) and X2 (n2, D),
    # S1 S2 has the nonzero eigenvalues of (X1 X2^T)(X1 X2^T)^T / ((n1-1)(n2-1)), so
    # Tr (S1 S2)^{1/2} = nuclear norm of X1 X2^T / sqrt((n1-1)(n2-1)): an (n1, n2) problem.
    x, y = _randn(20, 64, seed=1), _randn(25, 64, seed=2) * 1.5 + 0.2
    x1, x2 = (x - x.mean(0)).numpy(), (y - y.mean(0)).numpy()
    tr_covmean = np.linalg.svd(x1 @ x2.T, compute_uv=False).sum() / math.sqrt(19 * 24)
    expected = (float(((x.mean(0) - y.mean(0)) ** 2).sum()) + (x1 ** 2).sum() / 19 + (x2 ** 2).sum() / 24
                - 2 * tr_covmean)
    assert fid(x, y) == pytest.approx(expected, rel=1e-10)
    assert fid(y, x) == pytest.approx(expected, rel=1e-10)
    assert abs(fid(x, x)) < 1e-6
    assert abs(fid(x * 1000, x * 1000)) < 1e-6


# ---------------------------------------------------------------------------------------------
# KID


def _kernel(u, v):
    return (float(np.dot(u, v)) / len(u) + 1.0) ** 3


def _brute_force_mmd2(x, y):
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    m, n = len(x), len(y)
    xx = sum(_kernel(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(_kernel(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(_kernel(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_unbiased_mmd2_matches_a_double_loop():
    x, y = _randn(30, 5, seed=1), _randn(25, 5, seed=2) + 0.3
    assert metrics._mmd2_unbiased(x, y).item() == pytest.approx(_brute_force_mmd2(x, y), rel=1e-10)


def test_kid_with_one_whole_set_subset_matches_a_double_loop():
    # subset_size is capped at 30 = both sizes, so the one subset is each whole set (in another order)
    x, y = _randn(30, 5, seed=3, dtype=torch.float32), _randn(30, 5, seed=4, dtype=torch.float32) * 0.8
    mean, std = kid(x, y, n_subsets=1, subset_size=1000)
    assert mean == pytest.approx(_brute_force_mmd2(x.double(), y.double()), rel=1e-10)
    assert std == 0.0


def test_kid_is_near_zero_for_one_distribution_and_positive_for_a_shift():
    n_subsets = 50
    a, b = _randn(2000, 8, seed=5), _randn(2000, 8, seed=6)
    mean, std = kid(a, b, n_subsets=n_subsets, subset_size=100)
    # subsets of 100 from 2000 barely overlap: the mean has a standard error of about std / sqrt(n_subsets)
    assert abs(mean) < 3 * std / math.sqrt(n_subsets)
    shifted_mean, shifted_std = kid(a, b + 0.5, n_subsets=n_subsets, subset_size=100)
    assert shifted_mean > 10 * shifted_std / math.sqrt(n_subsets)
    assert shifted_mean > 10 * abs(mean)


def test_kid_is_deterministic_given_the_seed():
    a, b = _randn(300, 4, seed=1), _randn(300, 4, seed=2)
    assert kid(a, b, n_subsets=5, subset_size=50, seed=3) == kid(a.numpy(), b.numpy(), n_subsets=5, subset_size=50,
                                                                 seed=3)
    assert kid(a, b, n_subsets=5, subset_size=50, seed=3) != kid(a, b, n_subsets=5, subset_size=50, seed=4)


# ---------------------------------------------------------------------------------------------
# precision/recall and density/coverage


def _brute_force_radii(x, k):
    out = []
    for i in range(len(x)):
        d = sorted(float(np.linalg.norm(x[i] - x[j])) for j in range(len(x)) if j != i)
        out.append(d[k - 1])
    return out


def _brute_force_precision_recall(real, fake, k):
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    r_real, r_fake = _brute_force_radii(real, k), _brute_force_radii(fake, k)

    def inside(points, centres, radii):
        return [any(np.linalg.norm(p - c) <= r for c, r in zip(centres, radii)) for p in points]

    return {"precision": np.mean(inside(fake, real, r_real)), "recall": np.mean(inside(real, fake, r_fake))}


def _brute_force_density_coverage(real, fake, k):
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    radii = _brute_force_radii(real, k)
    in_ball = [[np.linalg.norm(y - x) <= r for x, r in zip(real, radii)] for y in fake]   # [fake][real]
    density = sum(sum(row) for row in in_ball) / (k * len(fake))
    coverage = np.mean([any(row[i] for row in in_ball) for i in range(len(real))])
    return {"density": density, "coverage": coverage}


@pytest.mark.parametrize("k", [1, 3, 5])
def test_precision_recall_match_brute_force(k):
    real, fake = _randn(40, 3, seed=1), _randn(35, 3, seed=2) * 1.4 + 0.5
    got, expected = precision_recall(real, fake, k=k), _brute_force_precision_recall(real, fake, k)
    assert got == pytest.approx(expected, abs=1e-12)
    assert 0 < got["precision"] < 1 and 0 < got["recall"] < 1


def test_precision_recall_of_identical_and_of_far_sets():
    real = _randn(40, 3, seed=3)
    assert precision_recall(real, real.clone()) == {"precision": 1.0, "recall": 1.0}
    assert precision_recall(real, real + 100.0) == {"precision": 0.0, "recall": 0.0}


def test_precision_recall_on_a_hand_built_1d_example():
    # k = 1: every real ball has radius 1 (neighbours 1 apart); fake radii are 2, 2 and 4.5.
    # fake 0.5 and 2.5 lie in real balls, 7 is 4 from the nearest real point: precision 2/3.
    # real 0..3 lie within 2 of 0.5 or 2.5; 20 and 21 are 13+ from fake 7 (radius 4.5): recall 4/6.
    real = torch.tensor([[0.0], [1.0], [2.0], [3.0], [20.0], [21.0]])
    fake = torch.tensor([[0.5], [2.5], [7.0]])
    got = precision_recall(real, fake, k=1)
    assert got["precision"] == pytest.approx(2 / 3) and got["recall"] == pytest.approx(4 / 6)


@pytest.mark.parametrize("k", [2, 5])
def test_density_coverage_match_brute_force(k):
    real, fake = _randn(40, 3, seed=4), _randn(30, 3, seed=5) * 0.7 + 0.4
    got, expected = density_coverage(real, fake, k=k), _brute_force_density_coverage(real, fake, k)
    assert got == pytest.approx(expected, abs=1e-12)
    assert got["density"] > 0 and 0 < got["coverage"] < 1


def test_density_coverage_of_identical_and_of_far_sets():
    real = _randn(40, 3, seed=6)
    assert density_coverage(real, real.clone())["coverage"] == 1.0
    assert density_coverage(real, real + 100.0) == {"density": 0.0, "coverage": 0.0}


def test_batched_distances_give_the_unbatched_results():
    real, fake = _randn(50, 4, seed=7), _randn(45, 4, seed=8) + 0.3
    for k in (1, 3):
        np.testing.assert_allclose(metrics._knn_radii_sq(real, k, batch_size=7).numpy(),
                                   metrics._knn_radii_sq(real, k, batch_size=10_000).numpy(), rtol=1e-12)
    assert precision_recall(real, fake, batch_size=7) == precision_recall(real, fake, batch_size=10_000)
    assert density_coverage(real, fake, batch_size=7) == density_coverage(real, fake, batch_size=10_000)


def test_knn_metrics_reject_too_large_k():
    with pytest.raises(GenzooError, match="k="):
        precision_recall(_randn(3, 2), _randn(3, 2), k=3)


# ---------------------------------------------------------------------------------------------
# classifier score


def test_classifier_score_extremes():
    assert classifier_score(torch.full((20, 10), 0.1)) == pytest.approx(1.0, abs=1e-12)
    one_hot = torch.eye(5).repeat(4, 1)                  # (20, 5): each class predicted for 4 inputs
    assert classifier_score(one_hot) == pytest.approx(5.0, rel=1e-12)


def test_classifier_score_matches_numpy():
    p = torch.softmax(_randn(100, 10, seed=9) * 3, dim=1).numpy()
    p[0] = 0.0                                           # an exact zero must not give log(0)
    p[0, 3] = 1.0
    expected = np.exp(np.mean(np.sum(p * (np.log(np.where(p > 0, p, 1.0)) - np.log(p.mean(0))), axis=1)))
    assert classifier_score(p) == pytest.approx(expected, rel=1e-12)


def test_classifier_score_rejects_logits():
    with pytest.raises(GenzooError, match="softmax"):
        classifier_score(_randn(10, 4))
