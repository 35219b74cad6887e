"""How much of an image an autoencoding run keeps: reconstruct the first n test images from the posterior mean and
report the frozen classifier's accuracy on the reconstructions (does the class survive?) and the pixel MSE. Prints
one line per run; used to choose the VAE-GAN's KL weight (a model whose KL collapses decodes every input to some
sample, and its class accuracy falls toward chance).

    python bench/recon_class.py runs/bench-vaegan-mnist runs/bench-vae-fashion-mnist-short --n 500
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

import genzoo
from genzoo.classifier import load_frozen
from genzoo.data import load_split


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="run folders of models with encode and decode")
    p.add_argument("--n", type=int, default=500, help="test images (the first n; default 500)")
    args = p.parse_args()
    for run in args.runs:
        data = json.loads((Path(run) / "config.json").read_text())["data"]
        test = load_split(data, "test")
        x, y = test.images[: args.n].float() / 255, test.labels[: args.n]
        clf, _ = load_frozen(data)
        model = genzoo.load(run).eval()
        with torch.no_grad():
            rec = model.reconstruct(x)                      # decoder mean at the posterior mean
            acc = (clf(rec).argmax(1) == y).float().mean().item()
            true = (clf(x).argmax(1) == y).float().mean().item()
        print(f"{run}: class kept in {100 * acc:.1f}% of {len(x)} reconstructions (inputs {100 * true:.1f}%), "
              f"pixel MSE {((rec - x) ** 2).mean().item():.4f}")


if __name__ == "__main__":
    main()
