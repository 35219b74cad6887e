"""The GAN presets through bench/family.py (kept so that the commands recorded in earlier GAN results rerun):

    python bench/gan_family.py --data mnist [--presets gan,dcgan,...] [--steps N]
is `python bench/family.py PRESETS --data mnist [--steps N]`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import family  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--data", default="mnist")
p.add_argument("--presets", default="gans")
p.add_argument("--steps", type=int)
args = p.parse_args()
sys.argv = [sys.argv[0], args.presets, "--data", args.data] + (["--steps", str(args.steps)] if args.steps else [])
family.main()
