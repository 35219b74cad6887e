"""The trainer: resume equivalence, atomic checkpoints, NaN stop, SIGINT, run-folder safety."""
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from genzoo import checkpoint as ckpt
from genzoo.cli import main
from genzoo.errors import GenzooError
from helpers import register_test_models, tiny_args

register_test_models()


def _train(out, model="vae", steps=12, extra=(), data="digits"):
    sets = tiny_args(model) if model in ("vae", "dcgan") else []
    argv = ["train", model, "--data", data, "--steps", str(steps), "--out", str(out), "--no-progress",
            "--set", "log_every_steps=1", "--set", "batch_size=32", *sets, *extra]
    return main(argv)


def _losses(run):
    return [json.loads(line) for line in (Path(run) / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("model", ["vae", "dcgan"])
def test_resume_gives_the_losses_of_an_uninterrupted_run(tmp_path, model):
    assert _train(tmp_path / "full", model, steps=16) == 0
    assert _train(tmp_path / "part", model, steps=7, extra=["--set", "ckpt_every_steps=7"]) == 0
    first_wall = json.loads((tmp_path / "part" / "summary.json").read_text())["train_wall_s"]
    assert _train(tmp_path / "part", model, steps=16, extra=["--resume"]) == 0
    # the summary's training time counts both sessions, not only the resumed one
    saved = torch.load(tmp_path / "part" / ckpt.STATE, weights_only=True)["train_wall_s"]
    assert json.loads((tmp_path / "part" / "summary.json").read_text())["train_wall_s"] >= round(saved, 2) - 0.01
    assert saved > first_wall - 0.01
    full, part = _losses(tmp_path / "full"), _losses(tmp_path / "part")
    assert [r["step"] for r in part] == list(range(1, 17))
    for a, b in zip(full, part):
        assert {k: v for k, v in a.items() if k != "img_per_s"} == {k: v for k, v in b.items() if k != "img_per_s"}
    wa, wb = load_file(tmp_path / "full" / ckpt.MODEL), load_file(tmp_path / "part" / ckpt.MODEL)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_learning_rate_schedule_reaches_the_optimiser_and_resumes_exactly(tmp_path):
    from genzoo.config import TrainConfig
    cfg = TrainConfig(steps=10, lr=0.01, lr_warmup_steps=2, lr_decay="cosine")
    want = [0.5, 1.0] + [0.5 * (1 + math.cos(math.pi * i / 8)) for i in range(8)]
    assert [cfg.lr_factor(s) for s in range(10)] == pytest.approx(want, abs=1e-12)
    sched = ["--set", "lr_warmup_steps=3", "--set", "lr_decay=cosine", "--set", "lr=0.002"]
    assert _train(tmp_path / "full", "dcgan", steps=12, extra=sched) == 0
    rows = _losses(tmp_path / "full")
    cfg = TrainConfig(steps=12, lr=0.002, lr_warmup_steps=3, lr_decay="cosine")
    # the row of step s was logged after the update made at step s - 1
    assert [r["lr"] for r in rows] == pytest.approx([0.002 * cfg.lr_factor(r["step"] - 1) for r in rows])
    state = torch.load(tmp_path / "full" / "trainer_state.pt", weights_only=True)
    d_lr = state["optimizers"]["discriminator"]["param_groups"][0]["lr"]
    assert d_lr == pytest.approx(0.002 * cfg.lr_factor(11))
    # the learning rate is a function of the step alone: a run stopped inside the warm-up and resumed matches
    # an uninterrupted one (a cosine decay also depends on --steps, which a resume may raise)
    warm = ["--set", "lr_warmup_steps=9", "--set", "lr=0.002"]
    assert _train(tmp_path / "w-full", "dcgan", steps=12, extra=warm) == 0
    assert _train(tmp_path / "w-part", "dcgan", steps=5, extra=[*warm, "--set", "ckpt_every_steps=5"]) == 0
    assert _train(tmp_path / "w-part", "dcgan", steps=12, extra=[*warm, "--resume"]) == 0
    wa, wb = load_file(tmp_path / "w-full" / ckpt.MODEL), load_file(tmp_path / "w-part" / ckpt.MODEL)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_run_folder_has_everything(tmp_path):
    assert _train(tmp_path / "run", "vae", steps=10, extra=["--set", "sample_every_steps=5"]) == 0
    run = tmp_path / "run"
    for name in ("config.json", "model.safetensors", "ema.safetensors", "trainer_state.pt", "metrics.jsonl",
                 "samples.png", "curves.png", "summary.json", "samples/step_0000005.png"):
        assert (run / name).exists(), name
    assert any((run / "tensorboard").glob("events.out.tfevents.*"))
    config = json.loads((run / "config.json").read_text())
    assert config["model_name"] == "vae" and config["data"] == "digits"
    assert config["model"]["image_size"] == 8 and config["train"]["steps"] == 10
    assert "genzoo_version" in config
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["elbo_nats"] > 0
    state = torch.load(run / "trainer_state.pt", weights_only=True)
    assert state["step"] == 10


def test_existing_run_folder_is_not_overwritten(tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(run, "vae", steps=3) == 0
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    assert _train(run, "vae", steps=3) == 2
    assert "already exists" in capsys.readouterr().err
    assert before == {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    assert _train(run, "vae", steps=3, extra=["--overwrite"]) == 0


def test_overwrite_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    assert _train(tmp_path / "mine", "vae", steps=3, extra=["--overwrite"]) == 2
    assert "not a genzoo run folder" in capsys.readouterr().err
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(GenzooError, match="non-finite.*last good checkpoint \\(step 5\\)"):
        main_argv = ["train", "test-ae", "--data", "digits", "--steps", "20", "--out", str(run),
                     "--no-progress", "--set", "nan_after_steps=8", "--set", "ckpt_every_steps=5",
                     "--set", "log_every_steps=4", "--set", "batch_size=16"]
        from genzoo.cli import build_parser
        args = build_parser().parse_args(main_argv)
        args.func(args)
    state = torch.load(run / "trainer_state.pt", weights_only=True)
    assert state["step"] == 5
    weights = load_file(run / ckpt.MODEL)
    assert all(torch.isfinite(v.float()).all() for v in weights.values())


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "f.bin"
    target.write_bytes(b"old")

    def failing(path):
        Path(path).write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        ckpt.atomic_write(target, failing)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_sigint_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "genzoo", "train", "vae", "--data", "digits", "--steps", "100000",
           "--out", str(run), "--no-progress", "--set", "log_every_steps=5", "--set", "batch_size=16",
           *tiny_args("vae")]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not ((run / "metrics.jsonl").exists() and (run / "metrics.jsonl").stat().st_size):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "interrupted at step" in out
    state = torch.load(run / "trainer_state.pt", weights_only=True)
    assert 0 < state["step"] < 100000
    assert json.loads((run / "summary.json").read_text())["status"] == "interrupted"


def test_resume_rewrites_weights_that_a_kill_left_a_checkpoint_behind(tmp_path, capsys):
    assert _train(tmp_path / "full", "vae", steps=8) == 0
    run = tmp_path / "run"
    assert _train(run, "vae", steps=4) == 0
    import genzoo
    model = genzoo.load(run, ema=False)
    ckpt.save_weights(run, model, model, step=3)     # as if a kill fell after trainer_state.pt, before the weights
    capsys.readouterr()
    assert _train(run, "vae", steps=8, extra=["--resume"]) == 0
    assert "rewrote the weights of step 4 from trainer_state.pt" in " ".join(capsys.readouterr().err.split())
    for name in (ckpt.MODEL, ckpt.EMA):
        wa, wb = load_file(tmp_path / "full" / name), load_file(run / name)
        assert all(torch.equal(wa[k], wb[k]) for k in wa), name


def test_resume_refuses_mixed_weights_of_a_trainer_state_without_its_own_copy(tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(run, "vae", steps=4) == 0
    state = torch.load(run / ckpt.STATE, weights_only=True)
    del state["weights"]                              # as trainer_state.pt was before it held the weights
    ckpt.save_trainer_state(run, state)
    import genzoo
    model = genzoo.load(run, ema=False)
    ckpt.save_weights(run, model, model, step=3)     # as if a crash hit between the two writes
    assert _train(run, "vae", steps=8, extra=["--resume"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "from step 3 but trainer_state.pt from step 4" in err


def test_max_train_minutes_stops_at_the_budget_with_a_checkpoint_and_resumes(tmp_path, capsys):
    run = tmp_path / "run"
    # 0.01 min = 0.6 s: a few steps of the tiny vae, far fewer than the 100000 asked for
    assert _train(run, "vae", steps=100_000, extra=["--set", "max_train_minutes=0.01"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "time_limit" and 1 <= summary["step"] < 100_000, summary
    assert summary["train_wall_s"] >= 0.6
    assert "elbo_nats" in summary, summary       # the end-of-run likelihood still runs
    state = torch.load(run / ckpt.STATE, weights_only=True)
    assert state["step"] == summary["step"]
    # the budget counts every session of the run: a resume with a larger one goes on from the saved step
    assert _train(run, "vae", steps=100_000, extra=["--resume", "--set", "max_train_minutes=0.02"]) == 0
    again = json.loads((run / "summary.json").read_text())
    assert again["status"] == "time_limit" and again["step"] > summary["step"]
    assert again["train_wall_s"] >= 1.2
    # a budget that the steps end before leaves the run "finished"
    assert _train(tmp_path / "short", "vae", steps=3, extra=["--set", "max_train_minutes=60"]) == 0
    assert json.loads((tmp_path / "short" / "summary.json").read_text())["status"] == "finished"
    capsys.readouterr()
    assert _train(tmp_path / "bad", "vae", steps=3, extra=["--set", "max_train_minutes=-1"]) == 2
    assert "max_train_minutes must be >= 0" in capsys.readouterr().err


def test_summary_splits_monitoring_time_from_training_time(tmp_path):
    # sample grids and coverage checks between steps are part of train_wall_s and reported as monitor_wall_s
    run = tmp_path / "run"
    assert _train(run, "vae", steps=6, extra=["--set", "sample_every_steps=2", "--set", "coverage_every_steps=2",
                                              "--set", "ckpt_every_steps=3"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert 0 < summary["monitor_wall_s"] < summary["train_wall_s"], summary
    saved = torch.load(run / ckpt.STATE, weights_only=True)["monitor_wall_s"]
    assert 0 < saved <= summary["monitor_wall_s"] + 0.01
    # a resume adds to the earlier sessions' monitoring time
    assert _train(run, "vae", steps=8, extra=["--resume", "--set", "sample_every_steps=0",
                                              "--set", "coverage_every_steps=0"]) == 0
    assert json.loads((run / "summary.json").read_text())["monitor_wall_s"] >= round(saved, 2) - 0.01


def test_shift_images_matches_a_pixel_loop_with_repeated_edges():
    from genzoo.images import shift_images
    g = torch.Generator().manual_seed(0)
    x = torch.rand(5, 2, 6, 7, generator=g, dtype=torch.float64)
    offsets = torch.tensor([[0, 0], [1, -2], [-3, 3], [6, 0], [-1, 7]])
    out = shift_images(x, offsets)
    want = torch.empty_like(x)
    for b, (dy, dx) in enumerate(offsets.tolist()):
        for i in range(6):
            for j in range(7):
                want[b, :, i, j] = x[b, :, min(max(i - dy, 0), 5), min(max(j - dx, 0), 6)]
    assert torch.equal(out, want)
    assert torch.equal(out[0], x[0])
    # fill: the pixels that enter are that value instead of the edge
    zero = shift_images(x, offsets, fill=0.0)
    for b, (dy, dx) in enumerate(offsets.tolist()):
        for i in range(6):
            for j in range(7):
                inside = 0 <= i - dy < 6 and 0 <= j - dx < 7
                assert torch.equal(zero[b, :, i, j], want[b, :, i, j] if inside else torch.zeros(2, dtype=x.dtype))
    with pytest.raises(ValueError, match="offsets"):
        shift_images(x, offsets[:3])


def test_shift_augment_changes_the_batches_reproducibly_and_resumes_exactly(tmp_path):
    shift = ["--set", "shift_augment=2"]
    assert _train(tmp_path / "plain", steps=6) == 0
    assert _train(tmp_path / "a", steps=6, extra=shift) == 0
    assert _train(tmp_path / "b", steps=6, extra=shift) == 0
    loss = lambda run: [r["loss"] for r in _losses(run)]                                   # noqa: E731
    assert loss(tmp_path / "a") == loss(tmp_path / "b")
    assert loss(tmp_path / "a")[0] != loss(tmp_path / "plain")[0]
    assert _train(tmp_path / "part", steps=3, extra=[*shift, "--set", "ckpt_every_steps=3"]) == 0
    assert _train(tmp_path / "part", steps=6, extra=[*shift, "--resume"]) == 0
    assert loss(tmp_path / "part") == loss(tmp_path / "a")
    with pytest.raises(ValueError, match="shift_augment"):
        from genzoo.config import TrainConfig
        TrainConfig(shift_augment=-1)


def test_fit_steps_plans_the_steps_the_budget_holds_and_leaves_the_run_unchanged(tmp_path, monkeypatch, capsys):
    import genzoo.trainer.steps
    monkeypatch.setattr(genzoo.trainer.steps, "PROBE_SECONDS", 0.5)
    run = tmp_path / "fit"
    assert _train(run, "vae", steps=100_000, extra=["--set", "max_train_minutes=0.05", "--set", "fit_steps=true"]) == 0
    assert "steps/s on this machine" in capsys.readouterr().err
    fitted = json.loads((run / "config.json").read_text())["train"]["steps"]
    summary = json.loads((run / "summary.json").read_text())
    assert 1 <= fitted < 100_000 and summary["step"] <= fitted, (fitted, summary)
    assert summary["train_wall_s"] < 0.05 * 60 * 1.5          # the plan held the budget, give or take the monitors
    # the probe ran on copies with the RNG forked: the same steps without it give the same weights
    assert _train(tmp_path / "plain", "vae", steps=summary["step"]) == 0
    wa, wb = load_file(run / ckpt.MODEL), load_file(tmp_path / "plain" / ckpt.MODEL)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    capsys.readouterr()
    assert _train(tmp_path / "bad", "vae", steps=3, extra=["--set", "fit_steps=true"]) == 2
    assert "set max_train_minutes too" in capsys.readouterr().err
