"""The restricted unpickler, the only unpickling in genzoo: it builds numpy arrays (inside
tuples, lists and dicts) and refuses every other global. It decodes the packaged MNIST pickle
(mnist.py) and the CIFAR-10 batches (cifar.py), each only once its checksum is checked or the
user trusts the archive."""
from __future__ import annotations

import pickle

import numpy as np


def _numpy_reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


class _NumpyOnlyUnpickler(pickle.Unpickler):
    # The only unpickling in genzoo. It runs only on the checksum-verified mnist.pkl.gz and on the
    # batches of a CIFAR-10 archive whose MD5 is the published one or that the user trusts by name.
    # Both name exactly three globals (pickletools.genops): numpy.core.multiarray._reconstruct,
    # numpy.ndarray and numpy.dtype; numpy >= 2 writes numpy._core for the first. Dicts, lists,
    # ints and bytes are pickle opcodes, not globals. Anything else (os.system, builtins.eval,
    # _codecs.encode, ...) is refused before it can be called.
    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct(),
        ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct(),
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }

    def find_class(self, module, name):
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}") from None

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("refusing persistent ids")


def _restricted_unpickle(f, encoding: str = "latin1") -> object:
    # numpy arrays in tuples/lists/dicts from binary file f; any other global raises
    # UnpicklingError. encoding: how Python 2 str objects come back ("bytes" keeps them bytes)
    return _NumpyOnlyUnpickler(f, encoding=encoding).load()
