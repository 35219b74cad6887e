"""A regression guard over the orchestration layer: for every preset at tiny size, the seeded losses of
its first 20 training steps, its end-of-run likelihood, and a seeded sample of its EMA weights must equal
the values recorded in tests/golden/steps.json.

Record them again only when a change is meant to alter the numbers:
    python tests/test_golden.py --record
On the kind of CPU that recorded them (the file names it) with the same torch, the values agree to the last
bit: GENZOO_GOLDEN_EXACT=1 demands that, and by default they must agree to 1e-5 relative. Another CPU runs
other float32 kernels (AVX2 instead of AVX-512, another summation order), and 20 Adam steps can carry that
rounding into the fourth digit, so there they must agree to 2e-3 relative (1e-3 absolute): far tighter than
any change of behaviour, which moves these numbers at the first or second digit.
"""
from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from helpers import tiny_args  # noqa: E402

from genzoo import load  # noqa: E402
from genzoo.cli import main  # noqa: E402
from genzoo.models import MODELS  # noqa: E402

GOLDEN = Path(__file__).parent / "golden" / "steps.json"
STEPS = 20


def _tolerance(recorded_on: dict) -> tuple[float, float]:
    """(relative, absolute) tolerance for values recorded on ``recorded_on`` (see the module docstring)."""
    from genzoo.hardware import describe_cpu
    if os.environ.get("GENZOO_GOLDEN_EXACT") == "1":
        return 0.0, 0.0
    if recorded_on == {"cpu": describe_cpu(), "torch": torch.__version__}:
        return 1e-5, 1e-7
    return 2e-3, 1e-3


def _record_one(name: str, out: Path) -> dict:
    """Train ``name`` tiny on digits for 20 steps (float32, one thread) and return its numbers."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        code = main(["train", name, "--data", "digits", "--steps", str(STEPS), "--out", str(out), "--no-progress",
                     "--set", "log_every_steps=1", "--set", "batch_size=16", "--set", "bf16=false",
                     "--set", "sample_every_steps=0", "--set", "coverage_every_steps=0",
                     "--set", "sample_grid_n=4", *tiny_args(name)])
        assert code == 0, f"{name}: train exited {code}"
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        keys = sorted({k for r in rows for k in r} - {"step", "img_per_s"})
        losses = {k: [r[k] for r in rows if k in r] for k in keys}     # every logged loss, KL, grad norm
        summary = json.loads((out / "summary.json").read_text())
        final = {k: v for k, v in summary.items() if isinstance(v, float) and not k.endswith(("wall_s", "_per_s"))}
        model = load(out)
        labels = torch.arange(4) % model.config.num_classes if model.conditional else None
        x = model.sample(4, labels=labels, generator=torch.Generator().manual_seed(0))
        sample = {"mean": x.double().mean().item(), "std": x.double().std().item(),
                  "first": x.flatten()[:8].tolist()}
        return {"losses": losses, "final": final, "sample": sample}
    finally:
        torch.set_num_threads(threads)


def _close(a, b, where: str, tol: tuple[float, float]):
    if isinstance(a, dict):
        assert sorted(a) == sorted(b), f"{where}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            _close(a[k], b[k], f"{where}.{k}", tol)
    elif isinstance(a, list):
        assert len(a) == len(b), f"{where}: {len(a)} values, expected {len(b)}"
        for i, (u, v) in enumerate(zip(a, b)):
            _close(u, v, f"{where}[{i}]", tol)
    else:
        assert math.isclose(a, b, rel_tol=tol[0], abs_tol=tol[1]), f"{where}: {a!r} != expected {b!r}"


@pytest.mark.parametrize("name", sorted(MODELS))
def test_seeded_losses_likelihood_and_sample_match_the_recorded_values(name, tmp_path):
    golden = json.loads(GOLDEN.read_text())
    expected = golden["presets"]
    assert name in expected, f"{name} has no recorded values: run python tests/test_golden.py --record"
    _close(_record_one(name, tmp_path / name), expected[name], name, _tolerance(golden["recorded_on"]))


if __name__ == "__main__" and sys.argv[1:] == ["--record"]:
    import tempfile
    os.environ["TQDM_DISABLE"] = "1"
    with tempfile.TemporaryDirectory() as tmp:
        values = {name: _record_one(name, Path(tmp) / name) for name in sorted(MODELS)}
    GOLDEN.parent.mkdir(exist_ok=True)
    from genzoo.hardware import describe_cpu
    recorded_on = {"cpu": describe_cpu(), "torch": torch.__version__}
    GOLDEN.write_text(json.dumps({"recorded_on": recorded_on, "presets": values}, indent=1) + "\n")
    print(f"wrote {GOLDEN} ({len(values)} presets)")
