"""Benchmark: out-of-distribution detection with a likelihood model. Runs `genzoo ood RUN --data D1 --ood-data D2`
(AUROC of the raw log-likelihood, of Serra et al. 2020's input-complexity score and of Nalisnick et al. 2019's
typicality test, in-distribution test images as positives) and writes bench/results/ood-<run name>.json with
`ood_auroc`.

    python bench/ood.py runs/bench-glow-fashion-mnist --in fashion-mnist --out mnist --n 2000
    python bench/ood.py runs/bench-pixelcnn-mnist --in mnist --out fashion-mnist
    python bench/ood.py runs/bench-ddpm-fashion-mnist --in fashion-mnist --out mnist --n 500 --bound-steps 50
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import genzoo_cmd, write_result  # noqa: E402

from genzoo.apps import DEFAULT_BOUND_STEPS  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="run folders of models with a likelihood")
    p.add_argument("--in", dest="in_data", required=True, help="in-distribution data set (each run's training data)")
    p.add_argument("--out", dest="out_data", required=True, help="out-of-distribution data set")
    p.add_argument("--n", type=int, default=2000, help="test images of each set (default 2000)")
    p.add_argument("--iwae-k", type=int, default=100, help="importance samples of a VAE's bound (default 100)")
    p.add_argument("--bound-steps", type=int, default=DEFAULT_BOUND_STEPS,
                   help=f"timesteps of a diffusion model's bound estimate (default {DEFAULT_BOUND_STEPS})")
    p.add_argument("--batch-size", type=int, default=100)
    args = p.parse_args()
    failed = []
    for run in args.runs:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "ood.json"
            cmd = genzoo_cmd() + ["ood", str(run), "--data", args.in_data, "--ood-data", args.out_data,
                                  "--n", str(args.n), "--iwae-k", str(args.iwae_k),
                                  "--bound-steps", str(args.bound_steps), "--batch-size", str(args.batch_size),
                                  "--out", str(out)]
            print("+", " ".join(cmd), flush=True)
            if subprocess.run(cmd).returncode != 0:
                failed.append(run)
                continue
            res = json.loads(out.read_text())
        cost = f"--bound-steps {args.bound_steps}" if "bound_steps" in res else f"--iwae-k {args.iwae_k}"
        keep = ("checkpoint", "split", "n_in", "n_out", "n_train_reference", "estimator", "inputs", "scores", "seed",
                "wall_s", "metrics")
        write_result(f"ood-{Path(run).name}", {
            "model": res["model"], "dataset": args.in_data, "variant": f"ood-vs-{args.out_data}", "run": str(run),
            "out_dataset": args.out_data,
            "command": f"python bench/ood.py {run} --in {args.in_data} --out {args.out_data} --n {args.n} "
                       f"{cost}",
            **{k: res[k] for k in keep if k in res}})
    if failed:
        sys.exit(f"refused or failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
