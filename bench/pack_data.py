"""Compressed copies of prepared data sets, small enough to carry to a GPU machine (MNIST: 55 MB of arrays
-> about 11 MB), checked to load back to the same arrays. Point GENZOO_DATA at --out there.

    python bench/pack_data.py mnist fashion-mnist --out .gpu/data
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from genzoo.data import prepare


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("datasets", nargs="+", help="prepared data sets (genzoo data prepare NAME)")
    p.add_argument("--out", default=".gpu/data", help="folder to write (default .gpu/data)")
    args = p.parse_args()
    for name in args.datasets:
        src, dst = prepare(name).resolve(), Path(args.out).resolve() / name     # prepared on first use, or it says how
        if src == dst:
            raise SystemExit(f"--out {args.out} is the data cache itself; choose another folder")
        dst.mkdir(parents=True, exist_ok=True)
        for f in sorted(src.glob("*.npz")):
            with np.load(f) as z:
                arrays = {k: z[k] for k in z.files}
            np.savez_compressed(dst / f.name, **arrays)
            with np.load(dst / f.name) as z:
                assert set(z.files) == set(arrays) and all(np.array_equal(z[k], v) for k, v in arrays.items())
            print(f"{dst / f.name}: {(dst / f.name).stat().st_size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
