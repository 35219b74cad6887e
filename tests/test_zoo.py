"""Exported models and the zoo (genzoo.export, genzoo.hub): a run exported and loaded again gives the same
samples; a zoo model loads by name in every command; a missing or altered file is refused by name; hf://
goes through huggingface_hub's snapshot_download, pinned to the revision asked for (faked here: tests
never reach the network)."""
import json
import sys
import types
from pathlib import Path

import pytest
import torch

import genzoo
from genzoo import hub
from genzoo.cli import main
from genzoo.errors import GenzooError
from genzoo.export import export

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = {"steps": 30, "width": 8, "latent_dim": 4, "batch_size": 32, "sample_every_steps": 0,
        "coverage_every_steps": 0, "final_eval": False}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("zoo") / "cvae-digits"
    genzoo.train("cvae", data="digits", out=folder, progress=False, **TINY)
    assert main(["eval", str(folder), "--metrics", "nll", "--iwae-k", "2", "--no-progress"]) == 0
    return folder


def _err(capsys) -> str:
    return " ".join(capsys.readouterr().err.split())                   # unwrap the message


def _samples(model, seed=0):
    return model.sample(6, labels=torch.arange(6), generator=torch.Generator().manual_seed(seed))


def test_an_exported_run_loads_with_the_same_weights_and_a_card_of_its_eval(run, tmp_path):
    out = export(run, tmp_path / "exported", name="tiny-cvae")
    assert sorted(p.name for p in out.iterdir()) == ["card.json", "card.md", "config.json", "ema.safetensors",
                                                    "manifest.json"]
    assert torch.equal(_samples(genzoo.load(out)), _samples(genzoo.load(run)))
    card = json.loads((out / "card.json").read_text())
    evaluated = json.loads((run / "eval.json").read_text())["metrics"]
    assert card["name"] == "tiny-cvae" and card["data"] == "digits" and card["model_name"] == "cvae"
    assert card["headline"]["nll_nats"] == evaluated["nll_nats"]
    assert "classes" in card["capabilities"] and "encode" in card["capabilities"]
    assert card["training"]["steps"] == 30 and "core" in card["training"]["machine"]
    assert "nll_nats" in (out / "card.md").read_text()
    with pytest.raises(GenzooError, match="only its EMA weights"):
        genzoo.load(out, ema=False)


def test_half_precision_export_stores_the_rounded_weights_and_says_so(run, tmp_path):
    full, half = export(run, tmp_path / "full"), export(run, tmp_path / "half", dtype="float16")
    ratio = (half / "ema.safetensors").stat().st_size / (full / "ema.safetensors").stat().st_size
    assert 0.45 < ratio < 0.55, ratio
    loaded, original = genzoo.load(half).state_dict(), genzoo.load(run).state_dict()
    for key, value in original.items():
        assert loaded[key].dtype == value.dtype, key                  # computes in float32 again
        assert torch.equal(loaded[key], value.half().to(value.dtype) if value.is_floating_point() else value), key
    card = json.loads((half / "card.json").read_text())
    assert card["weights_dtype"] == "float16"
    assert card["weights_bytes"] == sum(v.numel() * 2 for v in original.values())
    assert "stored in float16" in (half / "card.md").read_text()
    with pytest.raises(GenzooError, match="dtype must be one of"):
        export(run, tmp_path / "bad", dtype="int8")
    assert not (tmp_path / "bad").exists()


def test_the_card_carries_the_bayes_classifier_accuracy(run, tmp_path, capsys):
    assert main(["classify", str(run), "--test", "-n", "30", "--iwae-k", "2", "--no-progress"]) == 0
    accuracy = json.loads((run / "classify.json").read_text())["by_noise"][0]["bayes_acc"]
    card = json.loads((export(run, tmp_path / "m") / "card.json").read_text())
    assert card["headline"]["bayes_acc"] == accuracy
    assert any(e["file"] == "classify.json" and e["n_classified"] == 30 for e in card["evaluations"])
    assert "30 test images classified" in (tmp_path / "m" / "card.md").read_text()
    (run / "classify.json").unlink()


def test_a_missing_or_altered_file_is_refused_by_name(run, tmp_path):
    out = export(run, tmp_path / "m")
    weights = (out / "ema.safetensors").read_bytes()
    (out / "ema.safetensors").write_bytes(weights[:-1] + bytes([weights[-1] ^ 1]))       # one bit flipped
    with pytest.raises(GenzooError, match="ema.safetensors is not the file .* manifest lists"):
        genzoo.load(out)
    (out / "ema.safetensors").write_bytes(weights)
    genzoo.load(out)
    (out / "card.md").unlink()
    with pytest.raises(GenzooError, match="card.md is missing"):
        genzoo.load(out)


def test_export_keeps_what_it_did_not_write(run, tmp_path, capsys):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    assert main(["export", str(run), str(tmp_path / "busy")]) == 2
    assert "not empty; pass --overwrite" in _err(capsys)
    assert main(["export", str(run), str(tmp_path / "busy"), "--overwrite"]) == 2
    assert "not an exported model folder" in _err(capsys)
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"
    assert main(["export", str(run), "--out", str(tmp_path / "e")]) == 0
    assert main(["export", str(run), "--out", str(tmp_path / "e"), "--overwrite"]) == 0
    assert main(["export", str(run)]) == 2                                # no folder given


@pytest.fixture
def zoo(run, tmp_path, monkeypatch):
    """A zoo of one model, tiny-cvae, in place of genzoo's own."""
    monkeypatch.setattr(hub, "ZOO_DIR", tmp_path / "zoo")
    export(run, tmp_path / "zoo" / "tiny-cvae")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def test_a_zoo_model_is_listed_and_loads_by_name_in_every_command(zoo, run, capsys):
    assert main(["zoo"]) == 0
    listed = capsys.readouterr().out
    assert "tiny-cvae" in listed and "VAE" in listed and "digits" in listed and "nll_nats" in listed
    assert torch.equal(_samples(genzoo.load("tiny-cvae")), _samples(genzoo.load(run)))
    assert main(["sample", "tiny-cvae", "-n", "4", "--labels", "1", "--out", "grid.png"]) == 0
    assert (zoo / "grid.png").is_file()
    assert main(["eval", "tiny-cvae", "--metrics", "nll", "--iwae-k", "2", "--no-progress"]) == 0
    record = json.loads((zoo / "tiny-cvae-results" / "eval.json").read_text())   # beside the user, not in the zoo
    assert record["checkpoint"] == "ema"
    assert main(["interpolate", "tiny-cvae", "--seeds", "1,2", "-n", "3", "--label", "1",
                 "--out", "strip.png"]) == 0


def test_an_unknown_name_says_what_the_zoo_holds(zoo, capsys):
    assert main(["sample", "no-such-model", "--out", "x.png"]) == 2
    assert "neither a run folder" in _err(capsys) and "tiny-cvae" in hub.zoo_names()


def test_hf_references_download_the_pinned_revision_and_check_it(run, tmp_path, monkeypatch):
    folder = export(run, tmp_path / "hub-copy")
    calls = []

    def snapshot_download(repo_id, revision=None, allow_patterns=None):
        calls.append((repo_id, revision))
        return str(folder)
    monkeypatch.setitem(sys.modules, "huggingface_hub", types.SimpleNamespace(snapshot_download=snapshot_download))
    model = genzoo.load("hf://someone/tiny-cvae@0123abc")
    assert calls == [("someone/tiny-cvae", "0123abc")]
    assert torch.equal(_samples(model), _samples(genzoo.load(run)))
    (folder / "config.json").write_text((folder / "config.json").read_text() + " ")
    with pytest.raises(GenzooError, match="config.json is not the file"):
        genzoo.load("hf://someone/tiny-cvae")
    with pytest.raises(GenzooError, match="not a Hub reference"):
        genzoo.load("hf://just-a-name")
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)            # not installed
    with pytest.raises(GenzooError, match="needs huggingface_hub"):
        genzoo.load("hf://someone/tiny-cvae")


def test_the_zoo_that_ships_is_complete_and_small(tmp_path):
    names = hub.zoo_names()
    total = 0
    for name in names:
        folder = hub.ZOO_DIR / name
        hub.verify(folder)
        card = json.loads((folder / "card.json").read_text())
        assert card["name"] == name and card["evaluations"], name       # every zoo model is scored
        total += sum(p.stat().st_size for p in folder.iterdir())
    assert total <= 60e6
    assert Path(hub.ZOO_DIR).is_dir() or not names
