"""No kill strands a run: --resume starts what has not started, restarts what stopped before its first
checkpoint, calls a finished run complete, and after SIGKILL at random moments ends with the weights and the log
of a run that was never interrupted."""
import json
import os
import random
import signal
import subprocess
import sys
import time

import torch
from safetensors.torch import load_file

from genzoo import checkpoint as ckpt
from genzoo.cli import main
from helpers import tiny_args

STEPS = 240


def _command(out, resume: bool) -> list[str]:
    # one thread, so the killed and the uninterrupted runs reduce in the same order
    return [sys.executable, "-m", "genzoo", "train", "vae", "--data", "digits", "--steps", str(STEPS),
            "--out", str(out), "--no-progress", "--set", "batch_size=32", "--set", "threads=1",
            "--set", "ckpt_every_steps=40", "--set", "log_every_steps=10", "--set", "sample_every_steps=60",
            "--set", "coverage_every_steps=120", *tiny_args("vae"), *(["--resume"] if resume else [])]


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}


def _start(out, resume=True) -> subprocess.Popen:
    return subprocess.Popen(_command(out, resume), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _kill(proc: subprocess.Popen) -> bool:
    """SIGKILL the run if it is still going; True if it was."""
    alive = proc.poll() is None
    if alive:
        proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    return alive


def _wait_for(path, proc, timeout=60.0) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if path.exists():
            return True
        time.sleep(0.002)
    return path.exists()


def _last_step(run) -> int:
    """The last step of the run's log (0 before its first line); a half-written last line does not count."""
    try:
        lines = (run / "metrics.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return 0
    for line in reversed(lines):
        try:
            return json.loads(line)["step"]
        except json.JSONDecodeError:
            continue
    return 0


def _rows(run) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k != "img_per_s"}
            for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_sigkill_at_random_moments_then_resume_gives_the_uninterrupted_run(tmp_path):
    ref = tmp_path / "ref"
    done = subprocess.run(_command(ref, resume=False), env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr

    run, rng, kills = tmp_path / "killed", random.Random(0), []
    # 1) before the folder exists; 2) after config.json, before the first checkpoint
    proc = _start(run)
    time.sleep(0.05)
    kills.append(("start", _kill(proc), (run / ckpt.STATE).exists()))
    proc = _start(run)
    assert _wait_for(run / ckpt.CONFIG, proc)
    kills.append(("config", _kill(proc), (run / ckpt.STATE).exists()))
    # 3-7) a random few ms after a random step's log line, one step drawn in each fifth of the run, so each lies
    # past the log the previous kill left behind
    for target in [15 + 43 * i + rng.randrange(25) for i in range(5)]:
        proc = _start(run)
        while proc.poll() is None and _last_step(run) < target:
            time.sleep(0.002)
        time.sleep(rng.uniform(0, 0.05))
        kills.append((f"after step {target}", _kill(proc), (run / ckpt.STATE).exists()))
    final = subprocess.run(_command(run, resume=True), env=_env(), capture_output=True, text=True, timeout=600)
    assert final.returncode == 0, final.stderr

    print("kills (moment, hit a running process, a checkpoint existed):", kills)
    landed = [k for k in kills if k[1]]
    assert len(landed) == len(kills), kills                # every kill hit a running process
    assert any(not has_ckpt for _, _, has_ckpt in landed), kills   # at least one before the first checkpoint
    for name in (ckpt.MODEL, ckpt.EMA):
        a, b = load_file(ref / name), load_file(run / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    assert _rows(run) == _rows(ref)                         # every logged step once, with the same values
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["step"] == STEPS
    assert summary["elbo_nats"] == json.loads((ref / "summary.json").read_text())["elbo_nats"]
    assert not list(run.glob(".*.tmp")), list(run.iterdir())

    # the same command once more: the run is complete, which is not an error
    again = subprocess.run(_command(run, resume=True), env=_env(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert "is complete: step 240 of 240" in again.stderr


def _train(out, steps=6, extra=()):
    return main(["train", "vae", "--data", "digits", "--steps", str(steps), "--out", str(out), "--no-progress",
                 "--set", "batch_size=32", "--set", "log_every_steps=1", *tiny_args("vae"), *extra])


def test_resume_on_a_missing_folder_starts_a_new_run(tmp_path, capsys):
    assert _train(tmp_path / "a", extra=["--resume"]) == 0
    assert "holds no run yet; starting a new one at step 0" in capsys.readouterr().err
    assert _train(tmp_path / "b") == 0
    a, b = load_file(tmp_path / "a" / ckpt.MODEL), load_file(tmp_path / "b" / ckpt.MODEL)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_before_the_first_checkpoint_restarts_with_the_recorded_config(tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(run, extra=["--set", "seed=5", "--set", "ckpt_every_steps=3"]) == 0
    assert _train(tmp_path / "ref", extra=["--set", "seed=5"]) == 0
    # what a kill after config.json and before the first checkpoint leaves: the config, a log, no checkpoint
    for name in (ckpt.STATE, ckpt.MODEL, ckpt.EMA, "summary.json"):
        (run / name).unlink()
    (run / ".model.safetensors.x1.tmp").write_bytes(b"half")
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 7, "lo')                     # a half-written line
    capsys.readouterr()
    assert _train(run, extra=["--resume"]) == 0        # no --set seed=5: the recorded config holds it
    assert "stopped before its first checkpoint; starting it again at step 0" in capsys.readouterr().err
    assert json.loads((run / "config.json").read_text())["train"]["seed"] == 5
    a, b = load_file(tmp_path / "ref" / ckpt.MODEL), load_file(run / ckpt.MODEL)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["step"] for r in _rows(run)] == list(range(1, 7))
    assert not list(run.glob(".*.tmp"))


def test_resume_of_a_finished_run_says_it_is_complete_and_succeeds(tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(run) == 0
    before = (run / ckpt.STATE).read_bytes()
    capsys.readouterr()
    assert _train(run, extra=["--resume"]) == 0
    assert "is complete: step 6 of 6 (finished)" in capsys.readouterr().err
    assert (run / ckpt.STATE).read_bytes() == before
    # killed after the last checkpoint, before its summary: the resume writes the end of the run
    (run / "summary.json").unlink()
    assert _train(run, extra=["--resume"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["step"] == 6 and "elbo_nats" in summary
    # a time-limited run that used its budget is complete too
    assert _train(tmp_path / "t", steps=100_000, extra=["--set", "max_train_minutes=0.005"]) == 0
    step = json.loads((tmp_path / "t" / "summary.json").read_text())["step"]
    capsys.readouterr()
    assert _train(tmp_path / "t", steps=100_000, extra=["--resume"]) == 0
    assert f"is complete: step {step} of 100000 (time_limit)" in capsys.readouterr().err


def test_resume_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    assert _train(tmp_path / "mine", extra=["--resume"]) == 2
    assert "is not a run folder" in " ".join(capsys.readouterr().err.split())
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"
