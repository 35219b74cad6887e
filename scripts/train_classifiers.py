"""Train genzoo's frozen feature classifiers (shipped in genzoo/assets) with the fixed, seeded recipe.

    python scripts/train_classifiers.py [mnist] [fashion-mnist]

Each is trained on the full 60,000-image train split and its test accuracy on the 10,000 test
images is recorded beside its weights (classifier-DATASET.json).
"""
from __future__ import annotations

import dataclasses
import hashlib
import sys
import time

import torch

from genzoo.classifier import RecipeConfig, accuracy, asset_paths, save_frozen, train_classifier
from genzoo.data import load_split

TARGETS = {"mnist": 0.993, "fashion-mnist": 0.92, "digits": None}   # digits: for fast tests


def main(names: list[str]) -> None:
    for name in names or list(TARGETS):
        train, test = load_split(name, "train"), load_split(name, "test")
        recipe = RecipeConfig()
        t0 = time.perf_counter()
        model = train_classifier(train.images, train.labels, train.num_classes, recipe, desc=name)
        wall = time.perf_counter() - t0
        acc = accuracy(model, test.images, test.labels)
        print(f"{name}: test accuracy {acc:.4f} (target {TARGETS.get(name)}) after {wall:.0f} s")
        save_frozen(model, name, {
            "dataset": name, "test_accuracy": round(acc, 4), "n_test": len(test.images),
            "recipe": dataclasses.asdict(recipe), "train_wall_s": round(wall, 1),
            "command": f"python scripts/train_classifiers.py {name}",
            "torch": torch.__version__, "threads": torch.get_num_threads()})
        weights, _ = asset_paths(name)
        print(f"  wrote {weights} ({weights.stat().st_size / 1e6:.2f} MB, sha256 "
              f"{hashlib.sha256(weights.read_bytes()).hexdigest()[:16]})")


if __name__ == "__main__":
    main(sys.argv[1:])
