"""Experiment files: config_yaml writes a resolved config with each key's comment, and reading it back (--config,
genzoo.trainer.runs.resolve_config) gives the same configs; a file may name the model and the data set."""
import json

import pytest
import yaml

from genzoo.cli import main
from genzoo.config import TrainConfig, config_yaml, field_comments, parse_set, read_experiment
from genzoo.errors import GenzooError
from genzoo.models import MODELS, default_config
from genzoo.trainer.runs import resolve_config
from helpers import tiny_args


def _err(capsys) -> str:
    return " ".join(capsys.readouterr().err.split())


def test_field_comments_read_every_commented_field_with_its_continuation_lines():
    notes = field_comments(TrainConfig)
    assert notes["steps"] == ["optimiser steps; each of the model's phases steps once per step"]
    assert len(notes["bf16"]) == 5 and notes["bf16"][-1].endswith("(genzoo.hardware.resolve_bf16)")
    assert notes["fit_steps"][0].startswith("with max_train_minutes")
    assert set(notes) <= {f for f in TrainConfig.__dataclass_fields__}
    vae = field_comments(type(default_config("vae")))
    assert vae["beta"] == ["weight of the KL term (beta-VAE)"] and "latent_dim" not in vae   # no comment there


@pytest.mark.parametrize("name", sorted(MODELS))
def test_config_yaml_round_trips_every_preset(name, tmp_path):
    overrides = {"steps": 123, "lr": 2e-4, "adam_betas": [0.5, 0.99]}
    model_cfg, train_cfg = resolve_config(name, "digits", overrides=overrides)
    text = config_yaml(name, "digits", model_cfg, train_cfg)
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    assert read_experiment(path)[:2] == (name, "digits")
    assert resolve_config(name, "digits", config_files=[path]) == (model_cfg, train_cfg)
    # every key is there, and the commented ones carry their comment
    data = yaml.safe_load(text)
    assert set(data["model"]) == set(model_cfg.__dataclass_fields__)
    assert set(data["train"]) == set(TrainConfig.__dataclass_fields__)
    assert "  steps: 123" in text and "# optimiser steps" in text


def test_config_yaml_quotes_data_names_that_need_it(tmp_path):
    model_cfg, train_cfg = resolve_config("vae", "digits")
    for data in ("folder[size=16,channels=1]:/tmp/my photos", "memory:0123456789abcdef"):
        path = tmp_path / "exp.yaml"
        path.write_text(config_yaml("vae", data, model_cfg, train_cfg))
        assert read_experiment(path)[1] == data


def test_train_takes_model_and_data_from_the_experiment_file(tmp_path, capsys):
    model_cfg, train_cfg = resolve_config("vae", "digits", overrides={"width": 8, "latent_dim": 4, "steps": 2,
                                                                      "threads": 1, "coverage_every_steps": 0})
    exp = tmp_path / "exp.yaml"
    exp.write_text(config_yaml("vae", "digits", model_cfg, train_cfg))
    run = tmp_path / "run"
    assert main(["train", "--config", str(exp), "--out", str(run), "--no-progress"]) == 0
    saved = json.loads((run / "config.json").read_text())
    assert (saved["model_name"], saved["data"], saved["model"]["width"], saved["train"]["steps"]) == \
        ("vae", "digits", 8, 2)
    # a run's config.json is an experiment file too: the same run again
    assert main(["train", "--config", str(run / "config.json"), "--out", str(tmp_path / "again"),
                 "--no-progress"]) == 0
    assert json.loads((tmp_path / "again" / "config.json").read_text()) == saved
    # the command line may repeat what the file names; a conflict names both
    capsys.readouterr()
    assert main(["train", "dcgan", "--config", str(exp), "--out", str(tmp_path / "x")]) == 2
    err = _err(capsys)
    assert "names model_name: vae" in err and "MODEL is 'dcgan'" in err
    assert main(["train", "--data", "mnist", "--config", str(exp), "--out", str(tmp_path / "x")]) == 2
    assert "names data: digits" in _err(capsys) and not (tmp_path / "x").exists()
    with pytest.raises(GenzooError, match="but model is 'dcgan'"):
        resolve_config("dcgan", "digits", config_files=[exp])


def test_experiment_file_errors_say_what_to_write(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: vae\ndata: digits\n")
    assert main(["train", "--config", str(bad)]) == 2
    assert "model_name: vae" in _err(capsys)
    bad.write_text("data: digits\nsteps: 3\n")
    assert main(["train", "--config", str(bad)]) == 2
    assert "Name the MODEL to train" in _err(capsys)
    assert main(["train", "vae"]) == 2
    assert "Name the data to train" in _err(capsys)
    bad.write_text("model_name: [vae]\n")
    assert main(["train", "--config", str(bad), "--data", "digits"]) == 2
    assert "model_name must be a name" in _err(capsys)


def test_a_malformed_override_names_the_parameter_in_python_and_the_flag_on_the_command_line(capsys):
    with pytest.raises(GenzooError, match="pairs: each override is key=value, got 'lr'"):
        parse_set(["lr"])
    with pytest.raises(GenzooError, match="pairs: cannot parse the value of lr"):
        parse_set(["lr=[1"])
    for command in ("train", "config"):
        assert main([command, "vae", "--data", "digits", "--set", "lr"]) == 2
        assert "--set: each override is key=value, got 'lr'" in _err(capsys)


def test_command_line_and_python_resolve_the_same_config(tmp_path):
    from genzoo.cli import build_parser
    from genzoo.cli.training import _resolve_configs
    args = build_parser().parse_args(["train", "vae", "--data", "digits", "--steps", "7", "--set", "lr=3e-3",
                                      *tiny_args("vae")])
    assert _resolve_configs(args, tmp_path) == resolve_config("vae", "digits", overrides={
        "steps": 7, "lr": 3e-3, "width": 8, "latent_dim": 4, "res_blocks": 1, "mlp_hidden": 16})
