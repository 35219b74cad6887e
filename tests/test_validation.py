"""Validation during training: the held-out split, the metric, best/, early stopping, resume."""
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import genzoo
import genzoo.trainer
from genzoo import checkpoint as ckpt
from genzoo.cli import main
from genzoo.config import TrainConfig
from genzoo.data import ImageData, load_split
from genzoo.errors import GenzooError
from genzoo.models import register_model
from genzoo.models.base import Capabilities, GenerativeModel, Likelihood
from helpers import register_test_models, tiny_args

register_test_models()      # test-ae: a tiny noise-free autoencoder, fast enough for the scripted-metric runs


def _train(out, model="vae", steps=12, extra=(), data="digits"):
    sets = tiny_args(model) if model in ("vae", "dcgan", "cvae") else []
    argv = ["train", model, "--data", data, "--steps", str(steps), "--out", str(out), "--no-progress",
            "--set", "log_every_steps=1", "--set", "batch_size=32", "--set", "coverage_every_steps=0",
            "--set", "bf16=false", *sets, *extra]
    return main(argv)


def _rows(run):
    return [json.loads(line) for line in (Path(run) / "metrics.jsonl").read_text().splitlines()]


def _same_weights(a, b) -> bool:
    wa, wb = load_file(a), load_file(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def _scripted(monkeypatch, values):
    """Replace the trainer's validation metric by ``values``, one per validation, in order; returns the call log."""
    calls = []

    def metric(model, val):
        calls.append(val.key)
        return values[len(calls) - 1]
    monkeypatch.setattr(genzoo.trainer.monitors, "validation_metric", metric)
    return calls


def test_split_is_seeded_disjoint_and_sized_as_documented():
    tr, va = genzoo.trainer.split_validation(60_000)
    assert len(va) == 5000 and len(tr) == 55_000
    assert torch.equal(torch.cat([tr, va]).sort().values, torch.arange(60_000))
    tr2, va2 = genzoo.trainer.split_validation(60_000)
    assert torch.equal(va, va2) and torch.equal(tr, tr2)
    assert len(genzoo.trainer.split_validation(1497)[1]) == 149            # digits: 10%
    assert len(genzoo.trainer.split_validation(1497, val_size=300)[1]) == 300
    with pytest.raises(GenzooError, match="val_size"):
        genzoo.trainer.split_validation(100, val_size=100)
    with pytest.raises(ValueError, match="early_stop_patience"):
        TrainConfig(early_stop_patience=3)


# ---------------------------------------------------------------------------------------------
# which images train and which validate

SEEN = {"train": [], "eval": []}     # image indices each forward pass saw, by the module's mode


@dataclass
class RecorderConfig:
    channels: int = 1
    image_size: int = 8
    num_classes: int = 0


class Recorder(GenerativeModel):
    """Reads the index written into each image's first two pixels; a likelihood model whose own loss validates."""

    Config = RecorderConfig

    def __init__(self, config):
        super().__init__(config)
        self.w = torch.nn.Parameter(torch.zeros(()))

    @property
    def capabilities(self):      # a bound that is not an ELBO: validation scores the model's own loss
        return Capabilities(Likelihood("bound", "vlb"))

    def loss(self, batch, phase="model"):
        k = (batch["x"][:, 0, 0, :2] * 255).round().long()                 # (B, 2)
        SEEN["train" if self.training else "eval"].append(k[:, 0] * 256 + k[:, 1])
        return {"loss": (batch["x"].mean() - self.w).square()}

    @torch.no_grad()
    def sample(self, n, labels=None, generator=None):
        return torch.rand(n, 1, 8, 8, generator=generator)


def test_validation_images_never_enter_a_training_batch(tmp_path, monkeypatch):
    n = 1000
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 1, 8, 8), dtype=torch.uint8, generator=g)
    idx = torch.arange(n)
    images[:, 0, 0, 0], images[:, 0, 0, 1] = (idx // 256).to(torch.uint8), (idx % 256).to(torch.uint8)
    splits = []

    def fake_split(name, split="train", **kw):
        splits.append(split)
        return ImageData(images=images.clone(), labels=torch.zeros(n, dtype=torch.long), num_classes=0,
                         name=name, split=split)
    monkeypatch.setattr(genzoo.trainer.state, "load_split", fake_split)
    register_model("test-recorder", Recorder, description="records the indices it trains and validates on")
    SEEN["train"].clear(), SEEN["eval"].clear()
    cfg = TrainConfig(steps=12, batch_size=100, val_every_steps=4, coverage_every_steps=0, final_eval=False,
                      log_every_steps=4)
    summary = genzoo.trainer.train(tmp_path / "run", "test-recorder", "digits", RecorderConfig(), cfg, progress=False)
    val_idx = torch.load(tmp_path / "run" / ckpt.STATE, weights_only=True)["validation"]["indices"]
    trained = torch.cat(SEEN["train"])
    assert len(val_idx) == 100                                          # 10% of 1000
    assert not set(trained.tolist()) & set(val_idx.tolist())
    assert set(trained.tolist()) == set(range(n)) - set(val_idx.tolist())   # 12 steps of 100 cover the other 900
    validated = torch.cat(SEEN["eval"])
    assert summary["validation"]["evaluations"] == 3 and len(validated) == 3 * 100
    assert torch.equal(validated.view(3, 100).sort(1).values, val_idx.expand(3, -1))
    assert splits == ["train"]                                          # the test split is never read


# ---------------------------------------------------------------------------------------------
# early stopping and best/

def test_early_stop_at_the_right_validation_and_best_holds_that_steps_weights(tmp_path, monkeypatch, capsys):
    # validations at steps 2, 4, ...: the best is the 4th (step 8); patience 3 stops at the 7th (step 14)
    calls = _scripted(monkeypatch, [5.0, 4.0, 4.5, 3.0, 3.2, 3.1, 3.3, 1.0, 1.0])
    val = ["--set", "val_every_steps=2"]
    assert _train(tmp_path / "a", "test-ae", steps=40, extra=[*val, "--set", "early_stop_patience=3"]) == 0
    assert "stopped early at step 14" in capsys.readouterr().out
    run = tmp_path / "a"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "early_stopped" and summary["step"] == 14 and len(calls) == 7
    assert summary["validation"]["best_step"] == 8 and summary["validation"]["best_value"] == 3.0
    best = json.loads((run / "best" / "best.json").read_text())
    assert (best["step"], best["value"], best["metric"]) == (8, 3.0, "val/fid")     # no likelihood: FID
    assert [(r["step"], r["val/fid"]) for r in _rows(run) if "val/fid" in r] == \
        list(zip(range(2, 16, 2), [5.0, 4.0, 4.5, 3.0, 3.2, 3.1, 3.3]))
    assert torch.load(run / ckpt.STATE, weights_only=True)["step"] == 14

    # the same seed trained to exactly step 8 (same split, so validation on) has best/'s weights
    _scripted(monkeypatch, [1.0] * 10)
    assert _train(tmp_path / "b", "test-ae", steps=8, extra=val) == 0
    for name in (ckpt.MODEL, ckpt.EMA):
        assert _same_weights(run / "best" / name, tmp_path / "b" / name)
        assert not _same_weights(run / name, tmp_path / "b" / name)      # the latest weights moved on

    # best/ is a run folder for load, sample and eval
    model = genzoo.load(run / "best")
    assert model.sample(2).shape == (2, 1, 8, 8) and model.config.width == 8
    assert main(["sample", str(run / "best"), "-n", "4", "--out", str(tmp_path / "s.png")]) == 0
    assert main(["eval", str(run / "best"), "--metrics", "fid", "--n", "50", "--no-progress"]) == 0
    assert "fid" in json.loads((run / "best" / "eval.json").read_text())["metrics"]


def test_resume_keeps_the_best_value_the_patience_count_and_the_split(tmp_path, monkeypatch):
    # best 3.0 at step 4; three worse validations (steps 6, 8, 10) stop the run at step 10
    seq = [5.0, 3.0, 4.0, 4.0, 4.0, 4.0, 4.0]
    val = ["--set", "val_every_steps=2", "--set", "early_stop_patience=3"]
    _scripted(monkeypatch, seq)
    assert _train(tmp_path / "full", "test-ae", steps=30, extra=val) == 0
    _scripted(monkeypatch, seq)      # one sequence across both runs' validations
    assert _train(tmp_path / "part", "test-ae", steps=6, extra=[*val, "--set", "ckpt_every_steps=6"]) == 0
    assert json.loads((tmp_path / "part" / "summary.json").read_text())["status"] == "finished"
    assert _train(tmp_path / "part", "test-ae", steps=30, extra=["--resume"]) == 0
    full, part = tmp_path / "full", tmp_path / "part"
    for run in (full, part):
        summary = json.loads((run / "summary.json").read_text())
        assert (summary["status"], summary["step"]) == ("early_stopped", 10)
        assert json.loads((run / "best" / "best.json").read_text())["step"] == 4
    drop = lambda rows: [{k: v for k, v in r.items() if k != "img_per_s"} for r in rows]   # noqa: E731
    assert drop(_rows(full)) == drop(_rows(part))
    for name in (ckpt.MODEL, ckpt.EMA):
        assert _same_weights(full / "best" / name, part / "best" / name)
        assert _same_weights(full / name, part / name)
    vf = torch.load(full / ckpt.STATE, weights_only=True)["validation"]
    vp = torch.load(part / ckpt.STATE, weights_only=True)["validation"]
    assert torch.equal(vf["indices"], vp["indices"]) and vf["bad_evals"] == vp["bad_evals"] == 3
    # switching validation off would change the training images: refused
    assert _train(part, "test-ae", steps=40, extra=["--resume", "--set", "val_every_steps=0"]) == 2


# ---------------------------------------------------------------------------------------------
# the real metrics

@pytest.mark.parametrize("model,key", [("vae", "val/elbo_nats"), ("dcgan", "val/fid")])
def test_validation_metric_is_logged_kept_in_best_and_leaves_training_unchanged(tmp_path, model, key):
    extra = ["--set", "val_fid_samples=200"]
    assert _train(tmp_path / "v", model, steps=6, extra=[*extra, "--set", "val_every_steps=2"]) == 0
    # same split, no validation inside the 6 steps: the weights must be the same
    assert _train(tmp_path / "n", model, steps=6, extra=[*extra, "--set", "val_every_steps=1000"]) == 0
    assert _same_weights(tmp_path / "v" / ckpt.MODEL, tmp_path / "n" / ckpt.MODEL)
    vals = [(r["step"], r[key]) for r in _rows(tmp_path / "v") if key in r]
    assert [s for s, _ in vals] == [2, 4, 6] and all(v > 0 for _, v in vals)
    best = json.loads((tmp_path / "v" / "best" / "best.json").read_text())
    assert (best["step"], best["value"]) == min(vals, key=lambda sv: sv[1])
    if model == "vae":   # recompute the negative ELBO of best/'s EMA weights on the held-out images
        from genzoo.likelihood import mean_bound
        _, val_idx = genzoo.trainer.split_validation(len(load_split("digits").images))
        images = load_split("digits").images[val_idx]
        value = -mean_bound(genzoo.load(tmp_path / "v" / "best"), images, "elbo", seed=0, progress=False)
        assert value == pytest.approx(best["value"], rel=1e-6)


def test_a_model_without_a_validation_metric_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    def no_classifier(name):
        raise GenzooError(f"genzoo ships no feature classifier for {name!r}")
    monkeypatch.setattr("genzoo.classifier.load_frozen", no_classifier)
    with pytest.raises(GenzooError, match="val_every_steps needs a validation metric"):
        genzoo.trainer.train(tmp_path / "run", "dcgan", "digits", _tiny_dcgan(),
                           TrainConfig(steps=4, batch_size=32, val_every_steps=2))
    assert not (tmp_path / "run").exists()


def _tiny_dcgan():
    from helpers import tiny_config
    return tiny_config("dcgan")
