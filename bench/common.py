"""What every benchmark result records (docs/metrics.md, "Results files")."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

import genzoo
from genzoo.checkpoint import device_name
from genzoo.hardware import machine

RESULTS = Path(__file__).resolve().parent / "results"


def run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def write_result(name: str, result: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{name}.json"
    result = {"genzoo_version": genzoo.__version__, "machine": machine(),
              "device": device_name("cuda") if torch.cuda.is_available() else "cpu", **result}
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return out


def genzoo_cmd() -> list[str]:
    return [sys.executable, "-m", "genzoo"]


def has_feature_network(data: str) -> bool:
    """Whether genzoo ships a frozen classifier for the data set (the feature space of FID/KID/PR/score)."""
    from genzoo.classifier import load_frozen
    from genzoo.errors import GenzooError
    try:
        load_frozen(data)
    except GenzooError:
        return False
    return True


def repo_path(path: Path) -> str:
    """``path`` relative to the repository root when it lies inside it (results name their files that way)."""
    root, path = Path(__file__).resolve().parent.parent, Path(path).resolve()
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
