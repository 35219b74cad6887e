"""The command line: listing, sampling, configs, and a clear one-paragraph error for each bad input."""
import argparse
import contextlib
import io
import json
import shlex
from pathlib import Path

import numpy as np
import pytest

from genzoo.cli import _in_flags, build_parser, main
from genzoo.models import MODELS
from helpers import tiny_args


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    sets = tiny_args("vae")
    assert main(["train", "vae", "--data", "digits", "--steps", "3", "--out", str(out), "--no-progress", *sets]) == 0
    return out


def _err(capsys) -> str:
    return " ".join(capsys.readouterr().err.split())   # undo the paragraph wrapping


def test_models_lists_every_registered_model_with_a_description(capsys):
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert sorted(line.split()[0] for line in lines) == sorted(MODELS)
    assert all(len(line.split(None, 1)[1]) > 10 for line in lines)


def test_unknown_model_lists_the_valid_ones(capsys):
    assert main(["train", "vea", "--data", "digits"]) == 2
    err = _err(capsys)
    assert "Unknown model 'vea'" in err and all(name in err for name in MODELS)


def test_unknown_data_set_lists_the_valid_ones(capsys):
    assert main(["train", "vae", "--data", "mnsit"]) == 2
    err = _err(capsys)
    assert "Unknown data set 'mnsit'" in err and "mnist" in err and "fashion-mnist" in err and "digits" in err


def test_unknown_set_key_names_the_key_and_the_valid_keys(capsys, tmp_path):
    assert main(["train", "vae", "--data", "digits", "--out", str(tmp_path / "r"), "--set", "latnt_dim=3"]) == 2
    err = _err(capsys)
    assert "'latnt_dim'" in err and "latent_dim" in err and "batch_size" in err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("pair,key", [("latent_dim=big", "latent_dim"), ("bf16=3", "bf16"), ("lr=fast", "lr"),
                                      ("lr=nan", "lr"),
                                      ("adam_betas=0.5", "adam_betas"), ("batch_size=-4", "batch_size")])
def test_ill_typed_set_value_names_the_key(capsys, tmp_path, pair, key):
    assert main(["train", "vae", "--data", "digits", "--out", str(tmp_path / "r"), "--set", pair]) == 2
    assert key in _err(capsys)
    assert not (tmp_path / "r").exists()


def test_yaml_config_and_set_apply_in_order(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model:\n  latent_dim: 3\n  width: 8\ntrain:\n  adam_betas: [0.8, 0.99]\n  batch_size: 16\n")
    out = tmp_path / "r"
    assert main(["train", "vae", "--data", "digits", "--config", str(cfg), "--set", "latent_dim=5",
                 "--set", "lr=2e-3", "--steps", "2", "--seed", "7", "--out", str(out), "--no-progress"]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["model"]["latent_dim"] == 5 and saved["model"]["width"] == 8
    assert saved["train"]["lr"] == 0.002          # YAML 1.1 reads 2e-3 as a string; it is still a float
    assert saved["train"]["adam_betas"] == [0.8, 0.99] and saved["train"]["seed"] == 7
    assert saved["train"]["steps"] == 2


def test_unprepared_data_set_that_cannot_be_fetched_names_the_command(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("GENZOO_DATA", str(tmp_path / "cache"))
    monkeypatch.setenv("GENZOO_FASHION_MNIST_DIR", str(tmp_path / "absent"))
    monkeypatch.setenv("GENZOO_FASHION_MNIST_MIRROR", (tmp_path / "absent-mirror").as_uri() + "/")
    assert main(["train", "vae", "--data", "fashion-mnist", "--out", str(tmp_path / "r")]) == 2
    err = _err(capsys)
    assert "genzoo data prepare fashion-mnist" in err
    assert not (tmp_path / "r").exists()


def test_sample_writes_png_npz_and_folder_and_same_seed_same_images(run, tmp_path, capsys):
    assert main(["sample", str(run), "-n", "10", "--seed", "3", "--out", str(tmp_path / "a.npz")]) == 0
    assert main(["sample", str(run), "-n", "10", "--seed", "3", "--out", str(tmp_path / "b.npz")]) == 0
    assert main(["sample", str(run), "-n", "10", "--seed", "4", "--out", str(tmp_path / "c.npz")]) == 0
    a, b, c = (np.load(tmp_path / f"{k}.npz")["images"] for k in "abc")
    assert a.shape == (10, 8, 8, 1) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert main(["sample", str(run), "-n", "5", "--out", str(tmp_path / "grid.png")]) == 0
    assert (tmp_path / "grid.png").stat().st_size > 0
    assert main(["sample", str(run), "-n", "3", "--out", str(tmp_path / "dir")]) == 0
    assert sorted(p.name for p in (tmp_path / "dir").iterdir()) == ["00000.png", "00001.png", "00002.png"]


def test_labels_on_an_unconditional_model_are_refused(run, tmp_path, capsys):
    assert main(["sample", str(run), "--labels", "1,2", "--out", str(tmp_path / "x.png")]) == 2
    assert "class-conditional" in _err(capsys)


@pytest.mark.parametrize("victim", ["model.safetensors", "ema.safetensors"])
def test_truncated_weights_are_reported_as_corrupt(run, tmp_path, capsys, victim):
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    data = (copy / victim).read_bytes()
    (copy / victim).write_bytes(data[: len(data) // 2])
    no_ema = ["--no-ema"] if victim == "model.safetensors" else []
    assert main(["sample", str(copy), "--out", str(tmp_path / "x.png"), *no_ema]) == 2
    assert "corrupt or truncated" in _err(capsys)


def test_truncated_trainer_state_is_reported_on_resume(run, tmp_path, capsys):
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    data = (copy / "trainer_state.pt").read_bytes()
    (copy / "trainer_state.pt").write_bytes(data[:100])
    sets = tiny_args("vae")
    assert main(["train", "vae", "--data", "digits", "--steps", "6", "--out", str(copy), "--resume",
                 "--no-progress", *sets]) == 2
    assert "corrupt or truncated" in _err(capsys)


def test_corrupt_config_is_reported(run, tmp_path, capsys):
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    (copy / "config.json").write_text('{"model_name": "vae", "mod')
    assert main(["sample", str(copy), "--out", str(tmp_path / "x.png")]) == 2
    assert "corrupt or truncated" in _err(capsys)


def test_sample_from_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["sample", str(tmp_path), "--out", str(tmp_path / "x.png")]) == 2
    assert "not a run folder" in _err(capsys)


# -- Shared flags: one meaning in every command

# The commands that load a run's model and compute with it, with the arguments each requires besides the run.
COMPUTING = {"sample": ["--out", "x.png"], "interpolate": ["--seeds", "1,2", "--out", "x.png"],
             "restore": ["--image", "a.png", "--out", "x.png"],
             "edit": ["--image", "a.png", "--from-label", "0", "--to-label", "1", "--out", "x.png"],
             "eval": [], "report": [], "classify": ["--test"], "augment": ["--n-real", "10"],
             "ood": ["--ood-data", "mnist"]}


def _option(command: str, flag: str):
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return next((a for a in sub.choices[command]._actions if flag in a.option_strings), None)


@pytest.mark.parametrize("flag", ["--device", "--ema", "--seed", "--batch-size", "--out", "--n", "--opt",
                                  "--no-progress", "--iwae-k", "--bound-steps", "--data"])
def test_a_shared_flag_has_one_meaning_in_every_command(flag):
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    found = {name: _option(name, flag) for name in sub.choices if _option(name, flag) is not None}
    assert found, flag
    # one action type and, --out aside (each command says what it writes), help that differs at most in its
    # default and in what the command's own seed or images are
    assert len({type(a) for a in found.values()}) == 1, flag
    if flag in ("--device", "--ema", "--no-progress"):
        assert len({a.help.split(" (")[0] for a in found.values()}) == 1, (flag, found)


@pytest.mark.parametrize("command", sorted(COMPUTING))
def test_every_computing_command_takes_device_ema_and_refuses_a_bogus_device(command, run, tmp_path, capsys):
    p = build_parser()
    args = p.parse_args([command, str(run), *COMPUTING[command], "--device", "cpu", "--no-ema"])
    assert args.device == "cpu" and args.ema is False
    assert p.parse_args([command, str(run), *COMPUTING[command]]).ema is True
    assert main([command, str(run), *COMPUTING[command], "--device", "bogus"]) == 2
    assert "--device: unknown device 'bogus'; use cpu, cuda or cuda:N." in _err(capsys)


def test_commands_run_on_the_device_they_are_given(run, tmp_path, capsys):
    assert main(["sample", str(run), "-n", "4", "--device", "cpu", "--out", str(tmp_path / "a.npz")]) == 0
    assert main(["interpolate", str(run), "--seeds", "1,2", "-n", "3", "--device", "cpu",
                 "--out", str(tmp_path / "i.png")]) == 0
    assert main(["eval", str(run), "--metrics", "nll", "--iwae-k", "2", "--device", "cpu", "--no-progress",
                 "--out", str(tmp_path / "e.json")]) == 0
    assert json.loads((tmp_path / "e.json").read_text())["metrics"]


def test_train_takes_a_device_and_refuses_a_bogus_one_before_making_the_run_folder(tmp_path, capsys):
    out = tmp_path / "run"
    tiny = ["--data", "digits", "--steps", "2", "--no-progress", "--set", "width=8", "--set", "latent_dim=4"]
    assert main(["train", "vae", *tiny, "--out", str(out), "--device", "bogus"]) == 2
    assert "--device: unknown device 'bogus'" in _err(capsys) and not out.exists()
    assert main(["train", "vae", *tiny, "--out", str(out), "--device", "cpu"]) == 0
    assert json.loads((out / "summary.json").read_text())["step"] == 2


def test_ema_and_no_ema_choose_the_weights(run, tmp_path):
    import torch
    from genzoo.cli.common import _load
    p = build_parser()
    ema = _load(p.parse_args(["sample", str(run), "--out", "x.png", "--ema"]))
    raw = _load(p.parse_args(["sample", str(run), "--out", "x.png", "--no-ema"]))
    default = _load(p.parse_args(["sample", str(run), "--out", "x.png"]))
    ema_w, raw_w, default_w = (torch.cat([t.flatten() for t in m.state_dict().values()]) for m in (ema, raw, default))
    assert torch.equal(ema_w, default_w) and not torch.equal(ema_w, raw_w)


@pytest.fixture(scope="module")
def inverted(tmp_path_factory):
    # 20 inverted digits test images, one subfolder per class: an 8x8 out-of-distribution folder data set
    from PIL import Image
    from genzoo.data import load_split
    folder = tmp_path_factory.mktemp("inverted")
    test = load_split("digits", "test")
    for i, (img, y) in enumerate(zip(test.images[:20], test.labels[:20])):
        (folder / str(int(y))).mkdir(exist_ok=True)
        Image.fromarray(255 - img[0].numpy()).save(folder / str(int(y)) / f"{i}.png")
    return f"folder[size=8,channels=1]:{folder}"


def test_ood_writes_its_result_to_out_and_names_its_data_sets_with_data_flags(run, inverted, tmp_path, capsys,
                                                                             monkeypatch):
    monkeypatch.setenv("GENZOO_DATA", str(tmp_path / "data"))
    out = tmp_path / "res" / "ood.json"
    assert main(["ood", str(run), "--data", "digits", "--ood-data", inverted, "-n", "10", "--iwae-k", "2",
                 "--no-ema", "--device", "cpu", "--no-progress", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["in_dataset"] == "digits" and res["checkpoint"] == "raw" and res["device"] == "cpu"
    assert f"wrote {out}" in capsys.readouterr().out


def test_ood_out_is_a_json_file_not_the_data_set(run, capsys):
    # the old spelling, `--out D2` naming the data set, is refused with the flag that names it now
    assert main(["ood", str(run), "--ood-data", "mnist", "--out", "fashion-mnist"]) == 2
    err = _err(capsys)
    assert "--out is the result's .json file, got fashion-mnist" in err and "--ood-data" in err


@pytest.mark.parametrize("message,flags,want", [
    ("n must be between 2 and 5000, got 1.", {"n": "--n"}, "--n must be between 2 and 5000, got 1."),
    ("noise_std (--noise-std) is the denoise task's; inpaint takes none.", {"noise_std": "--noise-std"},
     "--noise-std is the denoise task's; inpaint takes none."),
    ("the run has 3 images; k must be at most 2.", {"k": "--iwae-k"},
     "the run has 3 images; --iwae-k must be at most 2."),
    ("config.json has keys this genzoo does not know: n.", {"config": "--config", "n": "--n"},
     "config.json has keys this genzoo does not know: n."),
    ("sample_options: steps must be an integer in [1, 10].", {"sample_options": "--opt"},
     "--opt: steps must be an integer in [1, 10]."),
    ("--n must be between 64 and 1000000, got 3.", {"n": "--n"}, "--n must be between 64 and 1000000, got 3."),
])
def test_library_errors_are_put_in_the_flags_words(message, flags, want):
    assert _in_flags(message, flags) == want


def test_every_documented_command_line_parses():
    # every `genzoo ...` line of a bash block in README.md and docs/ (renamed flags would break them)
    root = Path(__file__).resolve().parent.parent
    parser, bad, seen = build_parser(), [], 0
    for path in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        fence = None
        for line in path.read_text().replace("\\\n", " ").splitlines():
            s = line.strip()
            if s.startswith("```"):
                fence = None if fence is not None else s[3:]
            elif fence in ("bash", "sh", "") and s.startswith("genzoo "):
                seen += 1
                try:
                    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
                        parser.parse_args(shlex.split(s, comments=True)[1:])
                except SystemExit:
                    bad.append(f"{path.name}: {s}")
    assert seen > 40 and not bad, bad


# -- genzoo config

def test_config_prints_the_resolved_config_that_train_reads_back(tmp_path, capsys):
    sets = [*tiny_args("vae"), "--set", "lr=2e-3", "--steps", "2", "--seed", "5"]
    assert main(["config", "vae", "--data", "digits", *sets]) == 0
    text = capsys.readouterr().out
    assert "model_name: vae" in text and "data: digits" in text
    assert "  lr: 0.002" in text and "  steps: 2 " in text and "# optimiser steps" in text   # each key's comment
    assert main(["config", "vae", "--data", "digits", *sets, "--out", str(tmp_path / "exp.yaml")]) == 0
    assert (tmp_path / "exp.yaml").read_text() == text
    # the printed experiment fed back to train gives the config.json that the same flags give
    assert main(["train", "--config", str(tmp_path / "exp.yaml"), "--out", str(tmp_path / "a"),
                 "--no-progress"]) == 0
    assert main(["train", "vae", "--data", "digits", *sets, "--out", str(tmp_path / "b"), "--no-progress"]) == 0
    a, b = (json.loads((tmp_path / k / "config.json").read_text()) for k in "ab")
    assert a == b and a["train"]["steps"] == 2 and a["model"]["width"] == 8


@pytest.mark.parametrize("argv,message", [
    (["vae", "--data", "digits", "--set", "latnt_dim=3"], "'latnt_dim'"),
    (["vae", "--data", "digits", "--image-size", "16"], "--image-size and --channels convert a folder:PATH data set"),
    (["--data", "digits"], "Name the model"),
])
def test_config_errors_name_the_flag_or_key(argv, message, capsys):
    assert main(["config", *argv]) == 2
    assert message in _err(capsys)
