"""The training subset (TrainConfig.train_subset, genzoo.data.balanced_subset) and the augmentation-gain experiment
(genzoo.apps.augment, `genzoo augment`): seeded and class-balanced, recorded by the run, checked by augment, and a
report whose real-only accuracies equal the fixed recipe trained by hand on the same images."""
import json
import statistics

import pytest
import torch
from PIL import Image

from genzoo.classifier import RecipeConfig, accuracy, train_classifier
from genzoo.cli import main
from genzoo.data import balanced_subset, load_split
from genzoo.errors import GenzooError
from helpers import tiny_args


def test_balanced_subset_is_seeded_and_class_balanced():
    labels = load_split("digits", "train").labels
    a = balanced_subset(labels, 100, 10)
    assert torch.equal(a, balanced_subset(labels, 100, 10))                   # seeded
    assert not torch.equal(a, balanced_subset(labels, 100, 10, seed=1))
    assert a.dtype == torch.int64 and torch.equal(a, a.sort().values) and len(a.unique()) == 100
    assert torch.bincount(labels[a], minlength=10).tolist() == [10] * 10
    b = torch.bincount(labels[balanced_subset(labels, 105, 10)], minlength=10)
    assert sorted(b.tolist()) == [10] * 5 + [11] * 5                         # the remainder spread one each
    assert torch.equal(balanced_subset(labels, len(labels), 10), torch.arange(len(labels)))   # the whole split
    for n, why in ((len(labels) + 1, "1 to"), (0, "1 to"), (7, "cannot hold all 10")):
        with pytest.raises(GenzooError, match=why):
            balanced_subset(labels, n, 10)
    short = torch.tensor([0] * 50 + [1] * 3)
    with pytest.raises(GenzooError, match="needs 5 of class 1; the split has 3"):
        balanced_subset(short, 10, 2)


_COMMON = ["--data", "digits", "--no-progress", "--set", "batch_size=32", "--set", "coverage_every_steps=0",
           "--set", "sample_every_steps=0", "--set", "final_eval=false"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("augment")
    assert main(["train", "cvae", "--steps", "40", "--out", str(root / "cvae"), "--set", "train_subset=100",
                 *_COMMON, *tiny_args("cvae")]) == 0
    assert main(["train", "vae", "--steps", "3", "--out", str(root / "vae"), "--set", "train_subset=100",
                 *_COMMON, *tiny_args("vae")]) == 0
    return root


def test_the_run_records_its_subset_and_trains_on_exactly_it(runs):
    config = json.loads((runs / "cvae" / "config.json").read_text())
    assert config["train"]["train_subset"] == 100
    state = torch.load(runs / "cvae" / "trainer_state.pt", weights_only=True)
    # the data order is a permutation of the images the trainer holds: 100 of them, not digits' 1497
    assert sorted(state["sampler"]["perm"].tolist()) == list(range(100))


def test_validation_is_carved_from_the_subset(tmp_path):
    from genzoo.trainer import split_validation
    assert main(["train", "vae", "--steps", "2", "--out", str(tmp_path / "v"), "--set", "train_subset=100",
                 "--set", "val_every_steps=2", *_COMMON, *tiny_args("vae")]) == 0
    state = torch.load(tmp_path / "v" / "trainer_state.pt", weights_only=True)
    train_idx, val_idx = split_validation(100)
    assert torch.equal(state["validation"]["indices"], val_idx)
    assert sorted(state["sampler"]["perm"].tolist()) == list(range(len(train_idx)))     # 90 train, 10 held out


def test_a_subset_the_split_cannot_give_is_one_error_line(tmp_path, capsys):
    assert main(["train", "vae", "--steps", "2", "--out", str(tmp_path / "big"), "--set", "train_subset=5000",
                 *_COMMON, *tiny_args("vae")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "genzoo: error: a training subset of 5000 images needs 1 to 1497 (the train split's size)."
    assert not (tmp_path / "big").exists()                                   # refused before anything is written
    assert main(["train", "vae", "--out", str(tmp_path / "neg"), "--set", "train_subset=-1", *_COMMON]) == 2
    assert "train_subset must be >= 0" in capsys.readouterr().err


def test_augment_report_matches_the_recipe_trained_by_hand(runs, tmp_path):
    out = tmp_path / "rep"
    assert main(["augment", str(runs / "cvae"), "--n-real", "100", "--seeds", "0,1", "--classifier-steps", "15",
                 "--cas-n", "50", "--out", str(out), "--no-progress"]) == 0
    res = json.loads((out / "augment-n100.json").read_text())
    assert res["n_real"] == 100 and res["n_generated"] == 100 and res["gen_ratio"] == 1.0 and res["seeds"] == [0, 1]
    for key in ("model", "dataset", "run", "checkpoint", "real_images", "recipe", "test_split", "machine", "wall_s",
                "command", "refused"):
        assert key in res, key
    assert res["device"] == "cpu"
    m = res["metrics"]
    for key in ("acc_real_mean", "acc_real_std", "acc_real_gen_mean", "acc_real_gen_std", "aug_gain", "cas",
                "cas_real"):
        assert key in m and 0 <= abs(m[key]) <= 1, key
    for part in ("real", "real_gen"):
        accs = res[part]["acc"]
        assert len(accs) == 2
        assert res[part]["mean"] == pytest.approx(statistics.mean(accs), abs=1e-12)
        assert res[part]["std"] == pytest.approx(statistics.stdev(accs), abs=1e-12)
    assert m["aug_gain"] == pytest.approx(res["real_gen"]["mean"] - res["real"]["mean"], abs=1e-12)
    # the real-only classifier of seed 1, trained here on the seeded subset: the same images, the same number
    train, test = load_split("digits", "train"), load_split("digits", "test")
    idx = balanced_subset(train.labels, 100, 10)
    clf = train_classifier(train.images[idx], train.labels[idx], 10, RecipeConfig(steps=15, seed=1), progress=False)
    assert res["real"]["acc"][1] == accuracy(clf, test.images, test.labels)
    with Image.open(out / "augment.png") as img:
        assert img.width > 100 and img.height > 100


def test_augment_refuses_a_mismatched_n_and_an_unconditional_model(runs, capsys):
    assert main(["augment", str(runs / "cvae"), "--n-real", "1000", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("genzoo: error: ") and "trained on 100 real images, not 1000" in err
    assert "Traceback" not in err
    assert main(["augment", str(runs / "vae"), "--n-real", "100", "--no-progress"]) == 2
    assert "unconditional" in capsys.readouterr().err
    assert main(["augment", str(runs / "cvae"), "--n-real", "100", "--seeds", "0,x"]) == 2
    assert "--seeds takes integers" in capsys.readouterr().err
    assert main(["augment", str(runs / "cvae"), "--n-real", "100", "--gen-ratio", "0"]) == 2
    assert "--gen-ratio must be in" in capsys.readouterr().err
    assert main(["augment", str(runs / "cvae"), "--n-real", "100", "--device", "tpu", "--no-progress"]) == 2
    assert "unknown device" in capsys.readouterr().err
