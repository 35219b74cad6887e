"""The command line: listing, sampling, configs, and a clear one-paragraph error for each bad input."""
import json

import numpy as np
import pytest

from genzoo.cli import main
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
