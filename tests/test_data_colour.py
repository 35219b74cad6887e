"""Colour data and users' own data: CIFAR-10 from archives written here in the official format
(checksums, trust, the restricted unpickler, no network), the patches set, folders of image files,
every registered model on 3x32x32 data through the CLI's config resolution, and evaluation of colour
runs (refusals, a user feature network, bits/dim)."""
from __future__ import annotations

import functools
import hashlib
import http.server
import io
import json
import math
import socket
import struct
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from genzoo import data
from genzoo.cli import build_parser, main
from genzoo.data import load_split, prepare
from genzoo.errors import GenzooError
from genzoo.models import MODELS, build_model
from helpers import tiny_args


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("GENZOO_DATA", str(root))
    monkeypatch.delenv("GENZOO_CIFAR10_ARCHIVE", raising=False)
    data._FOLDER_MEMO.clear()
    data._FOLDER_WARNED.clear()
    return root


def _err(capsys) -> str:
    return " ".join(capsys.readouterr().err.split())   # undo the paragraph wrapping


# ---------------------------------------------------------------------------------------------
# CIFAR-10 archives in the official format: each batch a dict pickled by Python 2's cPickle
# (protocol 2), whose str objects are SHORT_BINSTRING/BINSTRING opcodes, the images a numpy array


def _str(b: bytes) -> bytes:          # a Python 2 str
    return (b"U" + bytes([len(b)]) + b) if len(b) < 256 else (b"T" + struct.pack("<i", len(b)) + b)


def _int(v: int) -> bytes:
    if 0 <= v < 256:
        return b"K" + bytes([v])
    if 0 <= v < 65536:
        return b"M" + struct.pack("<H", v)
    return b"J" + struct.pack("<i", v)


def _py2_uint8_array(a: np.ndarray) -> bytes:
    # what numpy 1.x under Python 2 writes: _reconstruct(ndarray, (0,), 'b') then BUILD with
    # (version 1, shape, dtype('u1', 0, 1) + its state, fortran False, the raw bytes as a str)
    shape = b"".join(_int(d) for d in a.shape) + {1: b"\x85", 2: b"\x86"}[a.ndim]
    dtype = (b"cnumpy\ndtype\n" + _str(b"u1") + _int(0) + _int(1) + b"\x87R"
             + b"(" + _int(3) + _str(b"|") + b"NNN" + _int(-1) + _int(-1) + _int(0) + b"tb")
    return (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n" + _int(0) + b"\x85" + _str(b"b")
            + b"\x87R" + b"(" + _int(1) + shape + dtype + b"\x89" + _str(a.tobytes()) + b"tb")


def _py2_batch(rows: np.ndarray, labels: list[int], batch_label: bytes, evil: bytes | None = None) -> bytes:
    names = [b"img_%05d.png" % i for i in range(len(labels))]
    out = (b"\x80\x02}(" + _str(b"data") + _py2_uint8_array(rows)
           + _str(b"labels") + b"](" + b"".join(_int(v) for v in labels) + b"e"
           + _str(b"batch_label") + _str(batch_label)
           + _str(b"filenames") + b"](" + b"".join(_str(n) for n in names) + b"e")
    if evil is not None:   # one more value that calls a global on load
        out += _str(b"extra") + evil
    return out + b"u."


def _cifar_archive(path: Path, n_per_batch: int = 6, n_test: int = 5, seed: int = 0,
                   evil: bytes | None = None) -> tuple[dict, str]:
    """Write a small cifar-10-python.tar.gz in the official layout; returns ({split: (images
    (N, 3, 32, 32), labels)}, its MD5). The batch rows are built plane by plane (1024 R values,
    1024 G, 1024 B, each row-major), independently of how the loader reshapes them."""
    rng = np.random.default_rng(seed)
    members, arrays = {}, {"train": ([], []), "test": ([], [])}
    for name, n, split in [*((f"data_batch_{i}", n_per_batch, "train") for i in range(1, 6)),
                           ("test_batch", n_test, "test")]:
        images = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n).tolist()
        rows = np.concatenate([images[:, c].reshape(n, 1024) for c in range(3)], axis=1)   # (n, 3072)
        label = b"testing batch 1 of 1" if split == "test" else b"training batch %d of 5" % int(name[-1])
        members[name] = _py2_batch(rows, labels, label, evil if name == "data_batch_3" else None)
        arrays[split][0].append(images)
        arrays[split][1].append(np.array(labels, dtype=np.int64))
    members["batches.meta"] = (b"\x80\x02}(" + _str(b"num_cases_per_batch") + _int(n_per_batch)
                               + _str(b"label_names") + b"](" + b"".join(_str(c.encode()) for c in
                                                                       data._CIFAR10_CLASSES)
                               + b"e" + _str(b"num_vis") + _int(3072) + b"u.")
    members["readme.html"] = b"<html></html>"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("cifar-10-batches-py")
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
        for name, blob in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    out = {split: (np.concatenate(i), np.concatenate(y)) for split, (i, y) in arrays.items()}
    return out, hashlib.md5(buf.getvalue()).hexdigest()


class _Server:
    """A localhost HTTP server for one folder, for the download path."""

    def __init__(self, folder: Path):
        class Quiet(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args):
                pass
        self.server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def _assert_cifar(arrays: dict):
    for split in ("train", "test"):
        loaded = load_split("cifar10", split, prepare_if_missing=False)
        assert loaded.images.dtype == torch.uint8 and loaded.labels.dtype == torch.int64
        assert loaded.shape == (3, 32, 32) and loaded.num_classes == 10
        assert np.array_equal(loaded.images.numpy(), arrays[split][0])
        assert np.array_equal(loaded.labels.numpy(), arrays[split][1])
    assert len(load_split("cifar10", "train").images) == 30     # batches 1..5 in order, 6 each


def test_cifar10_download_with_the_right_md5_round_trips(tmp_path, cache, monkeypatch):
    arrays, md5 = _cifar_archive(tmp_path / "site" / "cifar-10-python.tar.gz")
    monkeypatch.setattr(data.cifar, "_CIFAR10_MD5", md5)
    with _Server(tmp_path / "site") as server:
        monkeypatch.setenv("GENZOO_CIFAR10_MIRROR", server.url)
        folder = prepare("cifar10", source="download", progress=False)
    _assert_cifar(arrays)
    assert sorted(p.name for p in cache.iterdir()) == ["cifar10"]          # the download is gone
    assert sorted(p.name for p in folder.iterdir()) == ["source.json", "test.npz", "train.npz"]
    assert json.loads((folder / "source.json").read_text())["verified"] is True


def test_cifar10_bad_checksum_is_refused_and_leaves_nothing(tmp_path, cache, monkeypatch):
    _cifar_archive(tmp_path / "site" / "cifar-10-python.tar.gz")         # MD5 is not the official one
    monkeypatch.setenv("GENZOO_CIFAR10_MIRROR", (tmp_path / "site").as_uri())
    with pytest.raises(GenzooError) as err:
        prepare("cifar10", source="download", progress=False)
    assert f"expected {data._CIFAR10_MD5}" in str(err.value) and "trust_archive=" in str(err.value)
    assert list(cache.rglob("*")) == []
    # the same for a copy placed by hand: refused, the user's file kept, nothing added
    monkeypatch.setenv("GENZOO_CIFAR10_ARCHIVE", str(tmp_path / "site" / "cifar-10-python.tar.gz"))
    with pytest.raises(GenzooError, match="was not opened"):
        prepare("cifar10", source="local", progress=False)
    assert list(cache.rglob("*")) == []


def test_cifar10_trusted_archive_with_another_checksum_is_used(tmp_path, cache, capsys):
    archive = tmp_path / "mine" / "cifar-10-python.tar.gz"
    arrays, md5 = _cifar_archive(archive, seed=1)
    assert main(["data", "prepare", "cifar10", "--trust-archive", str(archive)]) == 0
    assert "30 train + 5 test images of shape (3, 32, 32), 10 classes" in capsys.readouterr().out
    _assert_cifar(arrays)
    source = json.loads((cache / "cifar10" / "source.json").read_text())
    assert source == {"archive": str(archive), "md5": md5, "verified": False, "trusted_by_user": True}


def test_cifar10_forbidden_global_is_refused_even_when_trusted(tmp_path, cache):
    marker = tmp_path / "ran"
    for evil in (b"cos\nsystem\n" + _str(f"touch {marker}".encode()) + b"\x85R",
                 b"cposix\nsystem\n" + _str(f"touch {marker}".encode()) + b"\x85R",
                 b"c_codecs\nencode\n" + _str(b"x") + _str(b"latin1") + b"\x86R"):
        archive = tmp_path / "evil" / "cifar-10-python.tar.gz"
        _cifar_archive(archive, evil=evil)
        with pytest.raises(GenzooError, match="refusing to load global"):
            prepare("cifar10", trust_archive=archive, progress=False)
        assert not marker.exists()
        assert not (cache / "cifar10").exists() and not list(cache.glob(".tmp-*"))


def test_cifar10_without_network_names_the_file_to_place(tmp_path, cache, monkeypatch, capsys):
    with socket.socket() as s:          # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("GENZOO_CIFAR10_MIRROR", f"http://127.0.0.1:{port}/")
    assert main(["data", "prepare", "cifar10"]) == 2
    err = _err(capsys)
    placed = cache / "downloads" / "cifar-10-python.tar.gz"
    assert "cifar-10-python.tar.gz" in err and str(placed) in err and "GENZOO_CIFAR10_ARCHIVE" in err
    assert data._CIFAR10_MD5 in err and "genzoo data prepare cifar10" in err
    assert not (cache / "cifar10").exists()
    # placing the file there (here one whose MD5 the loader expects) is what makes it work
    arrays, md5 = _cifar_archive(placed, seed=2)
    monkeypatch.setattr(data.cifar, "_CIFAR10_MD5", md5)
    assert main(["data", "prepare", "cifar10"]) == 0
    _assert_cifar(arrays)


# ---------------------------------------------------------------------------------------------
# patches of scikit-learn's sample photos


def _locate(photo: np.ndarray, patches: np.ndarray) -> list[tuple[int, int]]:
    """Top-left corner of each patch (n, 32, 32, 3) in photo (H, W, 3), found by exact search."""
    p = patches.shape[1]
    rows = np.lib.stride_tricks.sliding_window_view(photo, p, axis=1)       # (H, W-p+1, 3, p)
    rows = rows.reshape(*rows.shape[:2], -1).astype(np.int64)
    w = np.random.default_rng(0).integers(1, 2**40, size=rows.shape[-1])
    keys = rows @ w                                                         # a hash of each 32-px row
    top = keys[:photo.shape[0] - p + 1].ravel()
    order = np.argsort(top, kind="stable")
    top_sorted = top[order]
    out = []
    for patch in patches:
        k = patch[0].T.reshape(-1).astype(np.int64) @ w
        lo, hi = np.searchsorted(top_sorted, [k, k + 1])
        hits = [divmod(int(i), keys.shape[1]) for i in order[lo:hi]]
        hits = [(y, x) for y, x in hits if np.array_equal(photo[y:y + p, x:x + p], patch)]
        assert len(hits) >= 1
        out.append(hits[0])
    return out


def test_patches_are_cut_from_the_photos_and_test_regions_do_not_touch_train(cache, capsys):
    from sklearn.datasets import load_sample_images

    train, test = load_split("patches", "train"), load_split("patches", "test")
    assert train.images.shape == (5400, 3, 32, 32) and test.images.shape == (600, 3, 32, 32)
    assert train.num_classes == 2 and train.classes == ("china", "flower")
    assert torch.bincount(train.labels).tolist() == [2700, 2700]
    assert torch.bincount(test.labels).tolist() == [300, 300]
    bunch = load_sample_images()
    photos = dict(zip((Path(f).name for f in bunch.filenames), bunch.images))
    for label, name in enumerate(("china.jpg", "flower.jpg")):
        covered = {}
        for split, d in (("train", train), ("test", test)):
            patches = d.images[d.labels == label].permute(0, 2, 3, 1).numpy()
            mask = np.zeros(photos[name].shape[:2], dtype=bool)
            for y, x in _locate(photos[name], patches):    # every patch is a crop of its photo
                mask[y:y + 32, x:x + 32] = True
            covered[split] = mask
        assert not (covered["train"] & covered["test"]).any()       # no shared pixel
        assert covered["test"].sum() > 6 * 32 * 32                  # several separate regions
    # a second preparation elsewhere gives the same arrays (fixed seed)
    again = load_split("patches", "test", root=cache / "again")
    assert torch.equal(again.images, test.images)
    assert main(["data", "list"]) == 0
    listing = capsys.readouterr().out
    line = next(line for line in listing.splitlines() if line.startswith("patches"))
    assert "smoke test" in line and "not a benchmark" in line
    assert "cifar10" in listing and "folder:PATH" in listing


# ---------------------------------------------------------------------------------------------
# folder:PATH


def _save(path: Path, array: np.ndarray, mode: str | None = None, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode).save(path, **kwargs)
    return path


def _solid(h: int, w: int, rgb) -> np.ndarray:
    return np.broadcast_to(np.array(rgb, dtype=np.uint8), (h, w, 3)).copy()


def _labelled_folder(root: Path) -> dict:
    """Two classes of images in every format and a few broken files; returns what each readable
    file must become at 32x32 RGB (an (3, 32, 32) array, or a per-pixel predicate)."""
    expect = {}
    # a wide photo: centre square red, side bars blue -> centre crop keeps only the red
    wide = _solid(48, 96, (0, 0, 255))
    wide[:, 24:72] = (200, 30, 30)
    _save(root / "cat" / "wide.jpg", wide, quality=95, subsampling=0)   # 4:4:4: no colour bleed
    expect["cat/wide.jpg"] = ("close", (200, 30, 30))
    _save(root / "cat" / "solid.png", _solid(40, 40, (10, 200, 60)))
    expect["cat/solid.png"] = ("exact", (10, 200, 60))
    _save(root / "cat" / "sub" / "deep.webp", _solid(64, 64, (90, 90, 250)), lossless=True)
    expect["cat/sub/deep.webp"] = ("exact", (90, 90, 250))
    clear = np.zeros((32, 32, 4), dtype=np.uint8)             # fully transparent black
    _save(root / "dog" / "clear.png", clear, "RGBA")
    expect["dog/clear.png"] = ("exact", (255, 255, 255))      # composited onto white
    _save(root / "dog" / "gray.png", np.full((33, 33), 77, dtype=np.uint8), "L")
    expect["dog/gray.png"] = ("exact", (77, 77, 77))
    deep16 = np.full((32, 32), 257 * 140, dtype=np.uint16)    # a 16-bit grayscale PNG
    Image.fromarray(deep16).save(root / "dog" / "gray16.png")
    expect["dog/gray16.png"] = ("exact", (140, 140, 140))
    upside = _solid(32, 32, (0, 0, 0))
    upside[16:] = 255                                          # stored: top black, bottom white
    exif = Image.Exif()
    exif[0x0112] = 3                                           # orientation: rotate 180 to display
    _save(root / "dog" / "rotated.png", upside, exif=exif.tobytes())
    expect["dog/rotated.png"] = ("top-white", None)
    # broken files: a cut PNG, text named .jpg, an empty .webp; ignored: other suffixes, hidden
    whole = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(whole, "PNG")
    (root / "dog" / "cut.png").write_bytes(whole.getvalue()[:len(whole.getvalue()) // 2])
    (root / "cat" / "notes.jpg").write_text("not an image")
    (root / "dog" / "empty.webp").write_bytes(b"")
    (root / "cat" / "readme.txt").write_text("ignored")
    _save(root / "cat" / ".hidden.png", _solid(8, 8, (0, 0, 0)))
    _save(root / ".thumbs" / "x.png", _solid(8, 8, (0, 0, 0)))
    return expect


def test_folder_with_class_subfolders(tmp_path, cache, capsys):
    expect = _labelled_folder(tmp_path / "pics")
    name = data.folder_name(tmp_path / "pics")
    assert name == f"folder:{(tmp_path / 'pics').resolve()}"
    train, test = load_split(name, "train"), load_split(name, "test")
    assert train.classes == ("cat", "dog") and train.num_classes == 2 and train.name == name
    assert len(train) + len(test) == len(expect) == 7 and len(test) == 1     # round(0.7) -> at least 1
    assert train.images.dtype == torch.uint8 and train.shape == (3, 32, 32)
    # one warning for the three broken files, naming them, however many splits are loaded
    err = capsys.readouterr().err
    assert err.count("warning") == 1 and "skipped 3 unreadable" in err
    assert all(f in err for f in ("dog/cut.png", "cat/notes.jpg", "dog/empty.webp"))
    # which file went where is not exposed; match every loaded image to its expectation
    files = sorted(expect)
    labels = {f: 0 if f.startswith("cat/") else 1 for f in files}
    images = torch.cat([train.images, test.images]).numpy().astype(int)
    loaded_labels = torch.cat([train.labels, test.labels]).tolist()
    matched = []
    for f in files:
        kind, rgb = expect[f]
        for i, img in enumerate(images):
            if i in matched or loaded_labels[i] != labels[f]:
                continue
            if kind == "exact":
                ok = (img == np.array(rgb)[:, None, None]).all()
            elif kind == "close":      # JPEG: within a few levels everywhere, so no blue bar survived
                ok = np.abs(img - np.array(rgb)[:, None, None]).max() <= 12
            else:                      # rotated 180 for display: top rows white, bottom rows black
                ok = (img[:, :12] == 255).all() and (img[:, -12:] == 0).all()
            if ok:
                matched.append(i)
                break
        else:
            raise AssertionError(f"no loaded image matches {f} ({kind} {rgb})")
    # grayscale at another size: the options travel in the name
    gray = load_split(data.folder_name(tmp_path / "pics", image_size=16, channels=1), "train")
    assert gray.shape == (1, 16, 16) and gray.name.startswith("folder[size=16,channels=1]:")


def test_unlabelled_folder_split_cache_and_errors(tmp_path, cache, monkeypatch, capsys):
    folder = tmp_path / "flat"
    rng = np.random.default_rng(0)
    for i in range(25):
        _save(folder / f"im{i:02d}.png", rng.integers(0, 256, size=(20 + i, 30, 3), dtype=np.uint8))
    name = f"folder:{folder}"
    train, test = load_split(name, "train"), load_split(name, "test")
    assert train.num_classes == 0 and set(train.labels.tolist()) == {-1} and train.classes == ()
    assert (len(train), len(test)) == (22, 3)                  # 10% of 25, rounded half up
    both = torch.cat([train.images, test.images])
    assert len({bytes(x.numpy()) for x in both}) == 25         # disjoint splits, every image once
    cached = list((cache / "folders").glob("*.npz"))
    assert len(cached) == 1

    # the second run reads the cache: no image is decoded
    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")
    data._FOLDER_MEMO.clear()
    with monkeypatch.context() as m:
        m.setattr(data.folder, "_decode_image", no_decoding)
        again = load_split(name, "test")
    assert torch.equal(again.images, test.images)
    # a changed file changes the key: converted again, into a new cache file
    _save(folder / "im00.png", np.zeros((8, 8, 3), dtype=np.uint8))
    data._FOLDER_MEMO.clear()
    load_split(name, "train")
    assert len(list((cache / "folders").glob("*.npz"))) == 2

    empty = tmp_path / "empty"
    empty.mkdir()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (broken / "b.jpg").write_bytes(b"")
    single = tmp_path / "single"
    _save(single / "one.png", _solid(8, 8, (1, 1, 1)))
    mixed = tmp_path / "mixed"
    _save(mixed / "loose.png", _solid(8, 8, (1, 1, 1)))
    _save(mixed / "cls" / "x.png", _solid(8, 8, (1, 1, 1)))
    for path, message in ((empty, "holds no PNG, JPEG or WebP"), (tmp_path / "missing", "is not a folder"),
                          (broken, "None of the 2 image files"), (single, "at least 2"),
                          (mixed, "both images")):
        with pytest.raises(GenzooError, match=message) as err:
            load_split(f"folder:{path}", "train")
        assert str(path) in str(err.value)
    with pytest.raises(GenzooError, match="channels"):
        load_split(f"folder[size=32,channels=2]:{folder}")


# ---------------------------------------------------------------------------------------------
# every registered model on colour data, configured by the data set


def _resolve(name: str, data_name: str, tmp_path: Path, *extra: str):
    # what `genzoo train NAME --data DATA ...` does before training: the data name, then the configs
    from genzoo.cli.training import _data_name, _resolve_configs
    args = build_parser().parse_args(["train", name, "--data", data_name, *tiny_args(name), *extra])
    args.data = _data_name(args)
    return _resolve_configs(args, tmp_path / "run")


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    # one cache and a small unlabelled colour folder for the per-model tests: patches prepared once
    root = tmp_path_factory.mktemp("shared-cache")
    rng = np.random.default_rng(1)
    for i in range(8):
        _save(root / "unlabelled" / f"{i}.png", rng.integers(0, 256, size=(40, 40, 3), dtype=np.uint8))
    with pytest.MonkeyPatch.context() as m:
        m.setenv("GENZOO_DATA", str(root))
        prepare("patches", progress=False)
        yield root




@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_trains_and_samples_on_colour_data_configured_by_the_data_set(name, shared_cache, tmp_path,
                                                                                  one_thread):
    # trains: one step of every phase at 3x32x32 on patches, with the config `genzoo train` resolves
    model_cfg, _ = _resolve(name, "patches", tmp_path)
    assert (model_cfg.channels, model_cfg.image_size, model_cfg.num_classes) == (3, 32, 2)
    assert getattr(model_cfg, "binarize", False) is False          # colour data are 8-bit, never binarized
    torch.manual_seed(0)
    model = build_model(name, model_cfg)
    patches = load_split("patches", "train")
    idx = torch.tensor([0, 1, 2, 5397, 5398, 5399])                   # both photos (labels 0 and 1)
    batch = {"x": patches.images[idx].float() / 255, "y": patches.labels[idx]}
    for phase in model.phases:
        model.zero_grad(set_to_none=True)
        out = model(batch, phase=phase)
        assert torch.isfinite(out["loss"])
        out["loss"].backward()
        grads = [p.grad for p in model.phase_parameters(phase)]
        assert all(g is None or torch.isfinite(g).all() for g in grads) and any(
            g is not None and g.abs().sum() > 0 for g in grads), phase

    # samples: 3x32x32 colour (8-bit) images from the same config
    model.eval()
    x = model.sample(2, generator=torch.Generator().manual_seed(0))
    assert x.shape == (2, 3, 32, 32) and x.min() >= 0 and x.max() <= 1

    # unlabelled colour data: num_classes 0, and a class-conditional model refuses with a reason
    unlabelled = f"folder:{shared_cache / 'unlabelled'}"
    if model.conditional:
        with pytest.raises(GenzooError, match="class-conditional|labelled") as err:
            _resolve(name, unlabelled, tmp_path, "--image-size", "8")
        assert "no class labels" in str(err.value)
    else:
        cfg, _ = _resolve(name, unlabelled, tmp_path, "--image-size", "8")
        assert (cfg.channels, cfg.image_size, cfg.num_classes) == (3, 8, 0)


# ---------------------------------------------------------------------------------------------
# evaluation of colour runs


def test_vae_on_patches_reports_bits_per_dim_and_refuses_classifier_metrics(tmp_path, cache, capsys, one_thread):
    run = tmp_path / "vae"
    assert main(["train", "vae", "--data", "patches", "--steps", "80", "--out", str(run), "--no-progress",
                 "--set", "batch_size=32", "--set", "lr=0.003", *tiny_args("vae")]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["data"] == "patches" and config["model"]["binarize"] is False
    assert config["model"]["channels"] == 3
    out = tmp_path / "eval.json"
    assert main(["eval", str(run), "--metrics", "fid,kid,pr,score,nll", "--iwae-k", "4", "--n", "50",
                 "--no-progress", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    bpd = res["metrics"]["bpd"]
    # 8-bit colour: a density over [0, 1]^3072; a uniform one is exactly 8 bits/dim and 80 steps of
    # training on smooth photo patches must already beat it
    assert math.isfinite(bpd) and 0 < bpd < 8 and res["metrics"]["iwae_k"] == 4
    assert "nll_nats" not in res["metrics"] and "fid" not in res["metrics"]
    for m in ("fid", "kid", "pr"):
        assert "--feature-net" in res["refused"][m] and "inception_fid" in res["refused"][m]
        assert "\n" not in res["refused"][m]
    assert "frozen classifier" in res["refused"]["score"]
    printed = capsys.readouterr().out
    assert "refused: genzoo ships no frozen classifier for patches" in printed
    # the same bound from the library: the test split dequantized once with the eval seed
    from genzoo import load
    from genzoo.likelihood import bits_per_dim, mean_bound
    model = load(run)
    test = load_split("patches", "test")
    nll = -mean_bound(model, test.images, "iwae", k=4, batch_size=20, seed=0, progress=False)
    assert bits_per_dim(nll, 3 * 32 * 32) == pytest.approx(bpd, abs=1e-5)


def test_gan_on_a_folder_scored_in_a_user_feature_network(tmp_path, cache, capsys, one_thread):
    from torch import nn

    from genzoo import load, metrics
    from genzoo.sampling import sample_batches
    from genzoo.feature_net import load_feature_net, save_feature_net

    folder = tmp_path / "photos"
    rng = np.random.default_rng(0)
    folder.mkdir()
    for i in range(70):                  # smooth random colour gradients, unlabelled; 7 held out
        corners = rng.integers(0, 256, size=(2, 2, 3), dtype=np.uint8)
        Image.fromarray(corners).resize((24, 20), Image.Resampling.BILINEAR).save(folder / f"{i}.png")
    run = tmp_path / "run"
    assert main(["train", "dcgan", "--data", f"folder:{folder}", "--image-size", "16", "--steps", "3",
                 "--out", str(run), "--no-progress", "--set", "batch_size=8", *tiny_args("dcgan")]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["data"] == f"folder[size=16,channels=3]:{folder.resolve()}"
    assert (config["model"]["channels"], config["model"]["image_size"], config["model"]["num_classes"]) == (3, 16, 0)
    # a conditional model on the same unlabelled folder is refused before anything is written
    assert main(["train", "cgan", "--data", f"folder:{folder}", "--out", str(tmp_path / "c"), "--no-progress"]) == 2
    err = _err(capsys)
    assert "no class labels" in err and "one subfolder per class" in err and not (tmp_path / "c").exists()

    # a tiny feature network, declared and saved by the library
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.GELU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                        nn.Linear(32, 6)).eval()
    weights, declaration = save_feature_net(net, tmp_path / "feats", channels=3, image_size=16, mean=0.5, std=0.25)
    out = tmp_path / "eval.json"
    assert main(["eval", str(run), "--metrics", "fid,kid,pr,score", "--feature-net", str(weights), "--n", "24",
                 "--batch-size", "10", "--no-progress", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    m = res["metrics"]
    for key in ("fid", "fid_ref", "kid_mean", "kid_std", "precision", "recall", "density", "coverage"):
        assert key in m and math.isfinite(m[key]), key
    assert "frozen classifier" in res["refused"]["score"]
    assert res["ref_train_images"] == 63                               # the whole train split: 70 - 7
    record = res["feature_network"]
    assert record["name"] == "user feature network" and record["feature_dim"] == 6
    assert record["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert "user feature network feats.safetensors" in capsys.readouterr().out
    # the same FID by hand: the 24 seeded samples and the 7 held-out images in the network's features
    model = load(run)
    chunks = []
    sample_batches(model, 24, 0, 10, progress=False, on_batch=lambda x, _: chunks.append(x))
    scaled = lambda x: net((x - 0.5) / 0.25).detach()
    test = load_split(config["data"], "test")
    assert len(test) == 7
    assert m["fid"] == pytest.approx(metrics.fid(scaled(torch.cat(chunks)), scaled(test.images.float() / 255)),
                                     rel=1e-4, abs=1e-5)
    # a network for other images, or one whose weights do not match its declaration, stops before sampling
    save_feature_net(nn.Sequential(*net[:2], nn.Flatten()), tmp_path / "other", channels=3, image_size=32)
    assert main(["eval", str(run), "--metrics", "fid", "--feature-net", str(tmp_path / "other.safetensors"),
                 "--no-progress", "--out", str(out)]) == 2
    assert "declared for 3x32x32 images, but the data are 3x16x16" in _err(capsys)
    spec = json.loads(declaration.read_text())
    spec["layers"][-1]["out_features"] = 7
    declaration.write_text(json.dumps(spec))
    with pytest.raises(GenzooError, match="does not hold the weights"):
        load_feature_net(weights)
    spec["layers"][-1] = {"type": "python", "code": "import os"}
    declaration.write_text(json.dumps(spec))
    with pytest.raises(GenzooError, match="unknown layer type 'python'"):
        load_feature_net(weights)
