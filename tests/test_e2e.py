"""End to end on real MNIST: the default VAE, trained for at most 2 minutes, beats a quality bar."""
import json
import math

import pytest

from genzoo.cli import main


@pytest.mark.slow
def test_vae_on_mnist_reaches_a_test_elbo_below_120_nats(tmp_path):
    run = tmp_path / "vae"
    assert main(["train", "vae", "--data", "mnist", "--steps", "1200", "--out", str(run), "--no-progress",
                 "--set", "sample_every_steps=0", "--set", "ckpt_every_steps=0"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    # an untrained model scores above 500 nats; the published one-layer VAE reaches about 87
    assert math.isfinite(summary["elbo_nats"]) and summary["elbo_nats"] < 120, summary
    assert summary["train_wall_s"] < 120, summary
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["loss"] > rows[-1]["loss"] + 50    # it learned, it was not handed a good model
