"""genzoo.inception and `genzoo eval --metrics inception_fid`: the two weight-file layouts, loading and
verification, refusals, and the metric end to end.

The tests have no real InceptionV3 weights (genzoo never downloads them), so they use random weights in
the exact layout of the real files. The architecture is checked against facts that do not come from this
code: torchvision's published parameter count and FLOPs, the paper's grid sizes, and a hand computation of
how the two variants pool. No independent implementation can be a test dependency, because each one
requires torchvision. Where GENZOO_INCEPTION_REFS points at unpacked torch-fidelity, pytorch-fid and
torchvision wheels, the last test compares features with theirs (scripts/check_inception_refs.py says how).
"""
import dataclasses
import hashlib
import importlib.util
import json
import math
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import genzoo
from genzoo import checkpoint as ckpt
from genzoo import evaluate, inception, metrics, reference
from genzoo.cli import EVAL_HELP, main
from genzoo.errors import GenzooError
from genzoo.inception import InceptionV3, expected_layout, load_inception
from genzoo.sampling import sample
from helpers import AEConfig, DeterministicAE, register_test_models

ROOT = Path(__file__).resolve().parents[1]
# torchvision's documented num_params for Inception_V3_Weights.IMAGENET1K_V1 (aux classifier included)
TORCHVISION_PARAMS = 27_161_264
AUX_PARAMS = (768 * 128 + 2 * 128) + (128 * 768 * 25 + 2 * 768) + (768 * 1000 + 1000)


def random_state_dict(variant: str, seed: int) -> dict[str, torch.Tensor]:
    # random values in the variant's layout, scaled so that the features stay finite and of order 1
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in InceptionV3(variant).state_dict().items():
        if k.endswith("num_batches_tracked"):
            out[k] = v
        elif k.endswith(("running_var", "bn.weight")):
            out[k] = torch.rand(v.shape, generator=g) + 0.5
        elif k.endswith(("running_mean", "bn.bias")):
            out[k] = 0.1 * torch.randn(v.shape, generator=g)
        else:
            out[k] = torch.randn(v.shape, generator=g) * (2.0 / v[0].numel()) ** 0.5
    return out


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Random-weight files: pytorch-fid's layout as .pth (zip), legacy .pth and .safetensors; torchvision's as .pth."""
    root = tmp_path_factory.mktemp("inception")
    fid, tv = random_state_dict("pytorch-fid", 0), random_state_dict("torchvision", 1)
    paths = {"fid": root / "fid-random.pth", "fid_legacy": root / "fid-random-legacy.pth",
             "fid_st": root / "fid-random.safetensors", "tv": root / "tv-random.pth"}
    torch.save(fid, paths["fid"])
    # pytorch-fid's file dates from before the zip format became torch.save's default (torch 1.6)
    torch.save(fid, paths["fid_legacy"], _use_new_zipfile_serialization=False)
    save_file(fid, str(paths["fid_st"]))
    torch.save(tv, paths["tv"])
    return paths


@pytest.fixture
def small_input(monkeypatch):
    """Resize to 75 x 75, InceptionV3's smallest input, instead of 299: ~16x less compute in the tests."""
    monkeypatch.setattr(inception, "INPUT_SIZE", 75)


# ---------------------------------------------------------------------------------------------
# Architecture


@pytest.mark.parametrize("variant", ["pytorch-fid", "torchvision"])
def test_layout_is_the_official_files(variant):
    layout = expected_layout(variant)
    counters = [k for k in layout if k.endswith("num_batches_tracked")]
    # 94 conv + batch-norm units (5 stem, 3 x 7 A, 4 B, 4 x 10 C, 6 D, 2 x 9 E) + fc; torchvision adds 2 in AuxLogits
    units = 94 + (2 if variant == "torchvision" else 0)
    assert len(counters) == units
    assert len(layout) == units * 6 + 2 + (2 if variant == "torchvision" else 0)
    classes = 1008 if variant == "pytorch-fid" else 1000
    assert layout["fc.weight"] == (classes, 2048) and layout["fc.bias"] == (classes,)
    assert layout["Conv2d_1a_3x3.conv.weight"] == (32, 3, 3, 3)
    assert layout["Mixed_5b.branch_pool.conv.weight"] == (32, 192, 1, 1)
    assert layout["Mixed_6b.branch7x7_2.conv.weight"] == (128, 128, 1, 7)
    assert layout["Mixed_7a.branch3x3_2.conv.weight"] == (320, 192, 3, 3)
    assert layout["Mixed_7c.branch_pool.conv.weight"] == (192, 2048, 1, 1)
    assert layout["Mixed_7c.branch3x3dbl_3b.bn.running_var"] == (384,)
    assert not any("bias" in k for k in layout if ".conv." in k)
    assert ("AuxLogits.conv1.conv.weight" in layout) == (variant == "torchvision")
    net = InceptionV3(variant)
    assert all(m.eps == 1e-3 for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    params = sum(p.numel() for p in net.parameters())
    assert params == (TORCHVISION_PARAMS if variant == "torchvision" else TORCHVISION_PARAMS - AUX_PARAMS + 8 * 2049)


def test_grid_sizes_and_flops_at_299():
    """The paper's grid (Table 1): 35x35x288, 17x17x768, 8x8x1280, 8x8x2048; torchvision lists 5.713 GFLOPS
    (multiply-adds, its fc included) for InceptionV3 at 299 x 299."""
    from torch.utils.flop_counter import FlopCounterMode
    net = InceptionV3().eval()
    shapes = {}
    for name in ("Mixed_5d", "Mixed_6e", "Mixed_7a", "Mixed_7c"):
        getattr(net, name).register_forward_hook(lambda m, i, o, name=name: shapes.__setitem__(name, o.shape[1:]))
    with FlopCounterMode(display=False) as counter:
        feats = net.features(torch.rand(1, 3, 299, 299))
    assert feats.shape == (1, 2048)
    assert shapes == {"Mixed_5d": (288, 35, 35), "Mixed_6e": (768, 17, 17), "Mixed_7a": (1280, 8, 8),
                      "Mixed_7c": (2048, 8, 8)}
    macs = counter.get_total_flops() / 2 + 2048 * 1000      # + the fc layer, which features() does not run
    assert macs == pytest.approx(5.713e9, rel=1e-3)


def _pool_branch(block, c_in: int) -> torch.Tensor:
    # Make the block's pool-branch 1x1 conv the channel mean and its batch norm the identity; feed every
    # channel the 5x5 map 1..25. The block's last output channel is then the 3x3 pool of that map.
    with torch.no_grad():
        block.branch_pool.conv.weight.fill_(1 / c_in)
        bn = block.branch_pool.bn
        bn.weight.fill_(1), bn.bias.zero_(), bn.running_mean.zero_(), bn.running_var.fill_(1 - bn.eps)
        x = torch.arange(1.0, 26.0).view(1, 1, 5, 5).expand(1, c_in, 5, 5)
        return block.eval()(x)[0, -1]                     # (5, 5)


def test_pool_branches_by_hand():
    """TensorFlow's average pool leaves the padding out of the mean, torchvision's counts it, and the TF
    graph's Mixed_7c max-pools. On the map 1..25 the 3x3 window at the corner holds 1, 2, 6, 7 (sum 16), at
    the top edge 2, 3, 4, 7, 8, 9 (sum 33), in the centre 7..9, 12..14, 17..19 (mean 13)."""
    tf_avg = {(0, 0): 16 / 4, (0, 2): 33 / 6, (2, 2): 13.0}
    tv_avg = {(0, 0): 16 / 9, (0, 2): 33 / 9, (2, 2): 13.0}
    tf_max = {(0, 0): 7.0, (0, 2): 9.0, (2, 2): 19.0}
    fid, tv = InceptionV3("pytorch-fid"), InceptionV3("torchvision")
    cases = [(fid.Mixed_5b, 192, tf_avg), (fid.Mixed_6b, 768, tf_avg), (fid.Mixed_7b, 1280, tf_avg),
             (fid.Mixed_7c, 2048, tf_max),
             (tv.Mixed_5b, 192, tv_avg), (tv.Mixed_6b, 768, tv_avg), (tv.Mixed_7b, 1280, tv_avg),
             (tv.Mixed_7c, 2048, tv_avg)]
    for block, c_in, expected in cases:
        out = _pool_branch(block, c_in)
        for (i, j), value in expected.items():
            assert out[i, j].item() == pytest.approx(value, rel=1e-5), (block, (i, j))


# ---------------------------------------------------------------------------------------------
# Loading and verification


def test_random_weights_load_from_every_format(weights, small_input):
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    feats = {}
    for name in ("fid", "fid_legacy", "fid_st", "tv"):
        net, record = load_inception(weights[name], trust=True)
        assert record == {"file": weights[name].name, "sha256": hashlib.sha256(weights[name].read_bytes()).hexdigest(),
                          "variant": "torchvision" if name == "tv" else "pytorch-fid", "verified": False,
                          "feature_dim": 2048, "input_size": 75}
        assert not net.training and not any(p.requires_grad for p in net.parameters())
        feats[name] = net.features(x)
        assert feats[name].shape == (3, 2048) and torch.isfinite(feats[name]).all()
        assert torch.equal(net.features(x), feats[name])                  # deterministic
    assert torch.equal(feats["fid"], feats["fid_legacy"]) and torch.equal(feats["fid"], feats["fid_st"])
    assert not torch.allclose(feats["fid"], feats["tv"])


def test_grayscale_is_repeated_and_uint8_is_scaled(weights, small_input):
    net, _ = load_inception(weights["fid"], trust=True)
    gray = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    x = gray.float() / 255
    a = net.features(x)
    assert torch.equal(a, net.features(x.expand(-1, 3, -1, -1))) and torch.equal(a, net.features(gray))
    assert torch.allclose(inception.inception_features(net, gray, batch_size=3), a, rtol=1e-5, atol=1e-5)
    assert net.num_features == 2048 and torch.equal(net(x), a)          # torchmetrics' feature-module convention
    with pytest.raises(GenzooError, match="C = 1 or 3"):
        net.features(torch.rand(2, 2, 8, 8))


def test_a_known_sha256_prefix_is_verified(weights, monkeypatch, small_input):
    sha = hashlib.sha256(weights["fid"].read_bytes()).hexdigest()
    known = inception.KnownWeights("pytorch-fid", "pt_inception-2015-12-05-6726825d.pth", "https://example.org")
    monkeypatch.setattr(inception, "KNOWN_WEIGHTS", {sha[:8]: known})
    _, record = load_inception(weights["fid"])                          # no trust needed
    assert record["verified"] is True and record["variant"] == "pytorch-fid"
    # the same prefix on a file of the other layout is not the known file
    tv_sha = hashlib.sha256(weights["tv"].read_bytes()).hexdigest()
    monkeypatch.setattr(inception, "KNOWN_WEIGHTS", {tv_sha[:8]: known})
    with pytest.raises(GenzooError, match="holds the torchvision layout"):
        load_inception(weights["tv"])
    assert load_inception(weights["tv"], trust=True)[1]["verified"] is False


def test_unverified_missing_and_malformed_files_are_refused(weights, tmp_path):
    with pytest.raises(GenzooError, match="pass trust=True") as e:
        load_inception(weights["fid_st"])
    assert "not one of the two known" in str(e.value)
    with pytest.raises(GenzooError) as e:
        load_inception(tmp_path / "pt_inception-2015-12-05-6726825d.pth")
    assert "never downloads" in str(e.value)
    for known in inception.KNOWN_WEIGHTS.values():
        assert known.url in str(e.value)

    def refused(state, match, name="bad.pth"):
        path = tmp_path / name
        torch.save(state, path)
        with pytest.raises(GenzooError, match=match):
            load_inception(path, trust=True)

    good = random_state_dict("pytorch-fid", 0)
    refused({"conv.weight": torch.zeros(3, 3)}, r"not an InceptionV3 state dict.*missing keys: Conv2d_1a_3x3.conv.weight, "
                                                r".* and \d+ more; unexpected keys: conv.weight\.$")
    refused({**good, "Mixed_7c.branch_pool.conv.weight": torch.zeros(100, 2048, 1, 1)},
            r"wrong shapes: Mixed_7c.branch_pool.conv.weight \(100, 2048, 1, 1\) \(expected \(192, 2048, 1, 1\)\)")
    refused({k: v for k, v in random_state_dict("torchvision", 1).items() if not k.startswith("AuxLogits")},
            r"missing keys: AuxLogits.conv0.conv.weight")
    refused({"fc.weight": torch.zeros(10, 2048)}, r"fc.weight \(10, 2048\) \(expected \(1008, 2048\)\)")
    refused({"state_dict": good, "epoch": 3}, "does not hold a state dict")
    refused(GenzooError("a pickled object, not tensors"), "could not be read as a state dict")   # weights_only
    with pytest.raises(GenzooError, match=".pth/.pt or .safetensors"):
        (tmp_path / "weights.bin").write_bytes(b"0")
        load_inception(tmp_path / "weights.bin", trust=True)
    # the batch-norm counters are optional: a file without them loads
    path = tmp_path / "no-counters.safetensors"
    save_file({k: v for k, v in good.items() if not k.endswith("num_batches_tracked")}, str(path))
    assert load_inception(path, trust=True)[1]["variant"] == "pytorch-fid"


class _FidSpy:
    """Stands in for metrics.fid, recording its inputs (a 2048-d FID costs ~5 s on one thread)."""

    def __init__(self, real_fid=None):
        self.calls, self.real_fid = [], real_fid

    def __call__(self, a, b):
        self.calls.append((a, b))
        return self.real_fid(a, b) if self.real_fid else 1.5


def test_python_api(weights, small_input, monkeypatch):
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(6, 1, 8, 8, generator=g), torch.rand(5, 1, 8, 8, generator=g)
    net, _ = load_inception(weights["fid"], trust=True)
    spy = _FidSpy()
    monkeypatch.setattr(metrics, "fid", spy)
    assert metrics.inception_fid(a, b, weights=weights["fid"], trust=True) == 1.5
    (fa, fb), = spy.calls
    assert torch.equal(fa, inception.inception_features(net, a)) and torch.equal(fb, inception.inception_features(net, b))
    with pytest.raises(GenzooError, match="pass trust=True"):
        metrics.inception_fid(a, b, weights=weights["fid"])
    with pytest.raises(GenzooError, match="dataset=NAME"):
        metrics.inception_fid(a, weights=weights["fid"], trust=True)
    with pytest.raises(GenzooError, match="images"):
        metrics.inception_fid(torch.rand(5, 4), b, weights=weights["fid"], trust=True)


# ---------------------------------------------------------------------------------------------
# genzoo eval


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny unconditional run on digits (8x8 grayscale), written directly."""
    register_test_models()
    root = tmp_path_factory.mktemp("inception-run")
    torch.manual_seed(0)
    ckpt.write_config(root, {"model_name": "test-ae", "data": "digits", "model": dataclasses.asdict(AEConfig()),
                             "train": {}})
    ckpt.save_weights(root, DeterministicAE(AEConfig()), None, step=0)
    return root


def _eval(run, out, *extra):
    return main(["eval", str(run), "--n", "20", "--no-progress", "--out", str(out), *extra])


def test_inception_fid_without_features_is_refused(run, tmp_path, capsys):
    out = tmp_path / "e.json"
    assert _eval(run, out, "--metrics", "fid,inception_fid") == 0
    res = json.loads(out.read_text())
    assert "fid" in res["metrics"] and "inception_fid" not in res["metrics"]
    assert "--features" in res["refused"]["inception_fid"] and "never downloads" in res["refused"]["inception_fid"]
    assert "inception_network" not in res
    assert "inception_fid     refused:" in capsys.readouterr().out
    assert _eval(run, out, "--metrics", "inception_fid") == 2                   # nothing left to compute
    assert "inception_fid" not in evaluate.DEFAULT_METRICS
    for known in inception.KNOWN_WEIGHTS.values():                             # --help names both files
        assert known.url in EVAL_HELP


@pytest.mark.parametrize("case", ["missing", "wrong keys", "unverified", "no metric", "trust alone"])
def test_eval_refuses_bad_weights_before_sampling(run, weights, tmp_path, capsys, case):
    bad = tmp_path / "bad.pth"
    torch.save({"conv.weight": torch.zeros(3)}, bad)
    args = {"missing": ["--metrics", "inception_fid", "--features", str(tmp_path / "nope.pth")],
            "wrong keys": ["--metrics", "inception_fid", "--features", str(bad), "--trust-features"],
            "unverified": ["--metrics", "inception_fid", "--features", str(weights["fid_st"])],
            "no metric": ["--metrics", "fid", "--features", str(weights["fid"]), "--trust-features"],
            "trust alone": ["--metrics", "fid,inception_fid", "--trust-features"]}[case]
    out = tmp_path / "r.json"
    assert _eval(run, out, *args) == 2
    err = " ".join(capsys.readouterr().err.split())                            # unwrap the paragraph
    assert {"missing": "never downloads", "wrong keys": "not an InceptionV3 state dict",
            "unverified": "pass --trust-features", "no metric": "--metrics must include inception_fid",
            "trust alone": "pass both"}[case] in err
    assert not out.exists()


def test_evaluate_run_names_its_own_parameters(run, weights, tmp_path):
    with pytest.raises(GenzooError, match=r"^features: .*pass trust_features=True"):
        evaluate.evaluate_run(run, ("inception_fid",), n=20, progress=False, features=weights["fid_st"])
    with pytest.raises(GenzooError, match=r"^features: No InceptionV3 weights"):
        evaluate.evaluate_run(run, ("inception_fid",), n=20, progress=False, features=tmp_path / "nope.pth")
    with pytest.raises(GenzooError, match=r"^trust_features=True applies to the weights given with features="):
        evaluate.evaluate_run(run, ("inception_fid",), n=20, progress=False, trust_features=True)


def test_eval_computes_inception_fid_with_trusted_weights(run, weights, tmp_path, monkeypatch, capsys, small_input):
    monkeypatch.setattr(reference, "data_root", lambda: tmp_path)      # keep the feature cache in tmp
    monkeypatch.setattr(reference, "REF_TRAIN_SUBSET", 200)            # digits has 1,497 train images
    spy = _FidSpy(metrics.fid)
    monkeypatch.setattr(metrics, "fid", spy)
    out = tmp_path / "i.json"
    assert _eval(run, out, "--metrics", "fid,inception_fid", "--features", str(weights["fid"]),
                 "--trust-features") == 0
    res = json.loads(out.read_text())
    m = res["metrics"]
    for key in ("fid", "fid_ref", "inception_fid", "inception_fid_ref"):
        assert math.isfinite(m[key]) and m[key] >= 0, key
    assert res["inception_network"] == {
        "file": weights["fid"].name, "sha256": hashlib.sha256(weights["fid"].read_bytes()).hexdigest(),
        "variant": "pytorch-fid", "verified": False, "feature_dim": 2048, "input_size": 75}
    assert res["n_generated"] == 20 and "inception_fid" not in res["refused"]
    printed = capsys.readouterr().out
    assert "inception_fid_ref" in printed and "NOT verified" in printed
    assert sorted(p.name.split("-inception")[0] for p in (tmp_path / "stats").glob("*inception75-*.npz")) == \
        ["digits-test", "digits-train-sub200-seed0"]

    # inception_fid compared the features of the same 20 seeded samples with those of the 300 test images,
    # and inception_fid_ref 200 train images with the same test images (the calls after the classifier's two)
    (fake, real), (ref, real_again) = spy.calls[2:]
    net, _ = load_inception(weights["fid"], trust=True)
    samples = sample(genzoo.load(run), 20, seed=0)
    assert torch.allclose(fake, inception.inception_features(net, samples), atol=1e-5)
    test_images = evaluate.load_split("digits", "test").images
    assert torch.allclose(real, inception.inception_features(net, test_images), atol=1e-5)
    assert torch.equal(real_again, real) and ref.shape == (200, 2048)
    # the real features now come from the cache, for the Python API as for the next eval
    cached = reference.real_inception_features(net, res["inception_network"]["sha256"], "digits", "test")
    assert torch.equal(cached, real)


# ---------------------------------------------------------------------------------------------
# Independent implementations (optional: they need torchvision, so they are never test dependencies)


def test_features_equal_independent_implementations():
    refs = os.environ.get("GENZOO_INCEPTION_REFS")
    if not refs:
        pytest.skip("set GENZOO_INCEPTION_REFS to unpacked torch-fidelity, pytorch-fid and torchvision wheels "
                    "(see scripts/check_inception_refs.py)")
    spec = importlib.util.spec_from_file_location("check_inception_refs", ROOT / "scripts" / "check_inception_refs.py")
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    fid, tv = random_state_dict("pytorch-fid", 0), random_state_dict("torchvision", 1)
    assert check.check_torch_fidelity(Path(refs), fid) <= check.TOLERANCE
    assert check.check_pytorch_fid(Path(refs), fid) <= check.TOLERANCE
    assert check.check_torchvision(Path(refs), tv) <= check.TOLERANCE
