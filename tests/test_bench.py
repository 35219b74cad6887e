"""The committed benchmark record: every result file says how it was made, and BENCHMARKS.md is what the
summary script builds from those files (so no figure in it is typed by hand or left stale)."""
import importlib.util
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RESULTS = sorted((ROOT / "bench" / "results").glob("*.json"))


def _summarize():
    spec = importlib.util.spec_from_file_location("summarize", ROOT / "bench" / "summarize.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmarks_md_is_built_from_the_results():
    text = _summarize().render()
    assert (ROOT / "BENCHMARKS.md").read_text() == text, "BENCHMARKS.md is stale: run python bench/summarize.py"


@pytest.mark.parametrize("path", RESULTS, ids=[p.stem for p in RESULTS])
def test_result_records_its_command_machine_and_files(path):
    r = json.loads(path.read_text())
    for key in ("genzoo_version", "machine", "device", "command"):
        assert r.get(key), f"{path.name} lacks {key!r}"
    script = re.match(r"python (bench/\S+\.py)( |$)", r["command"])
    assert script and (ROOT / script.group(1)).is_file(), f"{path.name}: command {r['command']!r} names no bench script"
    measured = r.get("metrics") or r.get("rows")
    assert measured or (r.get("refused") and r.get("train_wall_s")), \
        f"{path.name} records no measurement (nor why none applies)"
    for key, value in r.items():             # every figure a result points to is committed beside it
        if isinstance(value, str) and value.endswith(".png"):
            assert not Path(value).is_absolute(), f"{path.name}: {key} -> {value} is not relative to the repository"
            assert (ROOT / value).is_file(), f"{path.name}: {key} -> {value} is missing"
