"""genzoo.train from Python: by name it equals the command line bit for bit; tensors and a torch Dataset train as
in-memory data sets that the run folder keeps; bad data is refused naming the parameter."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import genzoo
from genzoo import checkpoint as ckpt
from genzoo.cli import main
from genzoo.data import load_split
from genzoo.data import memory
from genzoo.errors import GenzooError

TINY = {"width": 8, "latent_dim": 4, "steps": 4, "batch_size": 32, "threads": 1, "bf16": False,
        "coverage_every_steps": 0, "log_every_steps": 1}


def _same_weights(a: Path, b: Path) -> bool:
    for name in (ckpt.MODEL, ckpt.EMA):
        wa, wb = load_file(a / name), load_file(b / name)
        if wa.keys() != wb.keys() or not all(torch.equal(wa[k], wb[k]) for k in wa):
            return False
    return True


def test_training_by_name_equals_the_command_line_bit_for_bit(tmp_path):
    run = genzoo.train("vae", data="digits", out=tmp_path / "py", progress=False, **TINY)
    assert run == tmp_path / "py"
    sets = [a for k, v in TINY.items() if k != "steps" for a in ("--set", f"{k}={str(v).lower()}")]
    assert main(["train", "vae", "--data", "digits", "--steps", "4", "--out", str(tmp_path / "cli"), "--no-progress",
                 *sets]) == 0
    assert _same_weights(tmp_path / "py", tmp_path / "cli")
    drop = lambda run: {k: v for k, v in json.loads((run / "config.json").read_text()).items()}   # noqa: E731
    assert drop(tmp_path / "py") == drop(tmp_path / "cli")
    # the run folder is guarded as on the command line
    with pytest.raises(GenzooError, match="already exists. Pass resume=True"):
        genzoo.train("vae", data="digits", out=run, progress=False, **TINY)
    genzoo.train("vae", data="digits", out=run, progress=False, resume=True, **{**TINY, "steps": 6})
    assert json.loads((run / "summary.json").read_text())["step"] == 6
    with pytest.raises(GenzooError, match="resume=True continues the saved config.*not lr"):
        genzoo.train("vae", data="digits", out=run, progress=False, resume=True, **{**TINY, "lr": 0.5})
    genzoo.train("vae", data="digits", out=run, progress=False, overwrite=True, **TINY)
    assert _same_weights(run, tmp_path / "cli")


def test_training_on_tensors_keeps_them_in_the_run_folder_for_every_command(tmp_path):
    digits = load_split("digits")
    images = digits.images[:400].float() / 255                      # [0, 1] floats, as a model's samples are
    run = genzoo.train("cvae", data=(images, digits.labels[:400]), out=tmp_path / "run", progress=False, **TINY)
    config = json.loads((run / "config.json").read_text())
    name = config["data"]
    assert name.startswith("memory:") and (run / memory.DATA_FILE).is_file()
    assert config["model"]["num_classes"] == 10 and config["model"]["binarize"] is False    # 8-bit images
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test_split"] == f"{name} test (40 images)" and summary["elbo_bpd"] > 0   # 10% held out
    # uint8 images with the same pixels are the same data set
    assert genzoo.train("cvae", data=(digits.images[:400], digits.labels[:400]), out=tmp_path / "again",
                        progress=False, **TINY) and \
        json.loads((tmp_path / "again" / "config.json").read_text())["data"] == name
    assert _same_weights(run, tmp_path / "again")
    # a new process knows nothing of the tensors: reading the run's config finds its data.npz
    code = ("import sys; from genzoo.cli import main; sys.exit(main(sys.argv[1:]))")
    for argv in (["train", "cvae", "--data", name, "--out", str(run), "--steps", "6", "--resume", "--no-progress"],
                 ["eval", str(run), "--metrics", "nll", "--iwae-k", "5", "--no-progress"]):
        res = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr
    assert json.loads((run / "summary.json").read_text())["step"] == 6
    evaluated = json.loads((run / "eval.json").read_text())
    assert evaluated["dataset"] == name and evaluated["metrics"]["bpd"] > 0
    # a data.npz whose images changed is refused, not trained on
    memory._ARRAYS.clear(), memory._FILES.clear()
    np.savez(run / memory.DATA_FILE, images=digits.images[:400].numpy() // 2, labels=digits.labels[:400].numpy())
    with pytest.raises(GenzooError, match="does not hold the images of memory:"):
        genzoo.train("cvae", data=name, out=run, steps=8, resume=True, progress=False)


class _Digits(torch.utils.data.Dataset):
    """(image (1, 8, 8) in [0, 1], label) pairs, as a torchvision-style data set yields them."""

    def __init__(self, n: int, labelled: bool = True):
        d = load_split("digits")
        self.images, self.labels, self.labelled = d.images[:n], d.labels[:n], labelled

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        x = self.images[i].float() / 255
        return (x, int(self.labels[i])) if self.labelled else x


def test_training_on_a_dataset_equals_training_on_its_tensors(tmp_path):
    run = genzoo.train("vae", data=_Digits(300), out=tmp_path / "ds", progress=False, **TINY)
    d = load_split("digits")
    genzoo.train("vae", data=(d.images[:300], d.labels[:300]), out=tmp_path / "t", progress=False, **TINY)
    assert _same_weights(run, tmp_path / "t")
    # unlabelled images: an unconditional model trains, a conditional one is refused before anything is written
    genzoo.train("vae", data=_Digits(300, labelled=False), out=tmp_path / "u", progress=False, **TINY)
    assert json.loads((tmp_path / "u" / "config.json").read_text())["model"]["num_classes"] == 0
    with pytest.raises(GenzooError, match="cvae cannot train on memory:.*, which has no class labels"):
        genzoo.train("cvae", data=_Digits(300, labelled=False), out=tmp_path / "c", progress=False, **TINY)
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("data,message", [
    (torch.rand(10, 8, 8), r"data: images must be shaped \(N, C, H, W\)"),
    (torch.rand(10, 1, 8, 8) * 2, r"data: float images must lie in \[0, 1\]"),
    (torch.randint(0, 9, (10, 1, 8, 8)), "data: images must be uint8 or float"),
    ((torch.rand(10, 1, 8, 8), torch.rand(10)), "data: labels must be integers"),
    ((torch.rand(10, 1, 8, 8), torch.arange(9)), r"data: labels must be integers of shape \(10,\)"),
    ((torch.rand(10, 1, 8, 8), -torch.arange(10)), "data: labels must be class indices"),
    (torch.rand(1, 1, 8, 8), "data: 1 image"),
    (42, "data must be a data set name, folder:PATH, a tensor"),
    ("mnsit", "Unknown data set 'mnsit'"),
])
def test_bad_data_is_refused_naming_the_parameter(tmp_path, data, message):
    with pytest.raises(GenzooError, match=message):
        genzoo.train("vae", data=data, out=tmp_path / "run", progress=False, **TINY)
    assert not (tmp_path / "run").exists()


def test_the_documented_example_runs(tmp_path, monkeypatch):
    text = (Path(__file__).parents[1] / "docs" / "python-api.md").read_text()
    block = text.split("## Training from Python", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    scope = {}
    exec(block, scope)
    assert scope["x"].shape == (16, 1, 8, 8) and scope["run"] == Path("runs/cvae-mine")
    assert json.loads((tmp_path / "runs" / "cvae-mine" / "summary.json").read_text())["step"] == 400
