"""Benchmark: the real-vs-real reference of every feature metric, per data set (docs/metrics.md: "a model
cannot be judged without it"). A seeded 10,000-image train subset plays the generated set against
the 10,000 test images, in the frozen classifier's feature space.

FID is biased upward at small n, so a model scored on fewer samples (the slow samplers: n = 1000 or
2000) is read against the reference at the same n: `--n N` plays the first N images of that seeded
subset against the same 10,000 test images and writes real-DATA-nN.json.

    python bench/real_reference.py [mnist] [fashion-mnist] [--n N]
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402

from genzoo import metrics  # noqa: E402
from genzoo.classifier import load_frozen, predict  # noqa: E402
from genzoo.data import load_split  # noqa: E402
from genzoo.reference import REF_TRAIN_SUBSET, classifier_hash, real_features  # noqa: E402


def main(names: list[str], n: int | None = None) -> None:
    if n is not None and not 2 <= n <= REF_TRAIN_SUBSET:
        raise SystemExit(f"--n must be in [2, {REF_TRAIN_SUBSET}], got {n}")
    for name in names or ["mnist", "fashion-mnist"]:
        t0 = time.perf_counter()
        clf, record = load_frozen(name)
        real = real_features(clf, name, "test")
        ref = real_features(clf, name, "train", subset=REF_TRAIN_SUBSET)[:n]
        probs = predict(clf, load_split(name, "test").images)[1]
        m = {"fid": metrics.fid(ref, real)}
        m["kid_mean"], m["kid_std"] = metrics.kid(ref, real)
        m.update(metrics.precision_recall(real, ref, k=3))
        m.update(metrics.density_coverage(real, ref, k=5))
        m["classifier_score"] = metrics.classifier_score(probs)
        write_result(f"real-{name}" + (f"-n{n}" if n else ""), {
            "model": "real data", "dataset": name, "variant": "real-vs-real", "n_generated": len(ref),
            "command": f"python bench/real_reference.py {name}" + (f" --n {n}" if n else ""),
            "reference": f"{len(ref)} train images (the first of a seeded {REF_TRAIN_SUBSET}-image subset, seed 0) "
                         "vs the 10000 test images; classifier score of the test images",
            "feature_network": {"sha256_16": classifier_hash(name), "test_accuracy": record["test_accuracy"]},
            "wall_s": round(time.perf_counter() - t0, 1),
            "metrics": {k: round(v, 6) for k, v in m.items()}})


if __name__ == "__main__":
    import argparse
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("datasets", nargs="*")
    p.add_argument("--n", type=int, help="train images in the reference (default: all 10,000 of the subset)")
    args = p.parse_args()
    main(args.datasets, args.n)
