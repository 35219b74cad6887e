"""Benchmark: score each benchmark run with `genzoo eval` (10,000 samples vs the 10,000 test images,
EMA weights, seed 0) and merge the metrics into its result file bench/results/MODEL-DATASET.json.

    python bench/eval_models.py vae-mnist dcgan-mnist [--metrics fid,kid,pr,score]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, genzoo_cmd, run  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("results", nargs="+", help="names of result files, e.g. vae-mnist")
    p.add_argument("--metrics", default="fid,kid,pr,score")
    args = p.parse_args()
    for name in args.results:
        path = RESULTS / f"{name}.json"
        result = json.loads(path.read_text())
        run_dir = result.get("run") or f"runs/bench-{name}"
        out = Path(run_dir) / "eval-bench.json"
        cmd = genzoo_cmd() + ["eval", run_dir, "--metrics", args.metrics, "--n", "10000", "--seed", "0",
                              "--out", str(out), "--no-progress"]
        run(cmd)
        ev = json.loads(out.read_text())
        result["metrics"].update(ev["metrics"])
        result["eval_command"] = " ".join(["genzoo"] + cmd[3:])
        result["feature_eval_wall_s"] = ev["wall_s"]
        result["n_generated"], result["n_real"] = ev["n_generated"], 10000
        result["feature_network"] = ev["feature_network"]
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(f"updated {path}")


if __name__ == "__main__":
    main()
