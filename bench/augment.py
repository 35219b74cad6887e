"""Benchmark driver of the augmentation-gain experiment (docs/metrics.md): for each n, train a class-conditional
model on the seeded class-balanced subset of n real train images (`genzoo train MODEL --set train_subset=N`), then run
`genzoo augment RUN --n-real N` (the fixed classifier recipe on the n real images vs the n real + n generated, mean
+- std over the seeds, and CAS). Writes bench/results/augment-MODEL-DATA[-VARIANT].json (one row per n) and the
plot of accuracy against n beside it.

    python bench/augment.py cvae --data mnist                        # n = 100, 1000, 60000; seeds 0,1,2
    python bench/augment.py glow --data mnist --set conditional=true --variant glow-cond
    python bench/augment.py cvae --data digits --n 100,1497 --steps 30 --set width=8 --classifier-steps 20 \
        --cas-n 100 --runs /tmp/aug --results /tmp/aug/results        # a smoke test in a minute
    python bench/augment.py ddpm-cfg --data mnist --device cuda --jobs 3 --batch-size 2500 --variant gpu

--device cuda trains (genzoo train takes a GPU when one is there) and samples on the GPU; the classifiers train on
the CPU. --jobs J runs J of the n side by side, each with its own log (RUNS/bench-augment-TAG-nN.log), so that one
GPU serves all of them; their train and augment wall times are then each one's share.

A run folder that already finished (summary.json says so) is not trained again, and an experiment whose report is
there from the same augment command is not run again; the result still lists the commands that made them. The
batch size is min(the model's, n): with n = 100 every step sees all of them. --keep-rows keeps each row of the
committed result whose n the same two commands made, so a later call (on a GPU, say) adds the n an earlier one
could not finish without running the others again.
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import genzoo_cmd, repo_path, run  # noqa: E402

from genzoo.apps.augment import plot_gain  # noqa: E402
from genzoo.config import TrainConfig  # noqa: E402
from genzoo.data import short_name  # noqa: E402
from genzoo.models import default_train_overrides  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="a class-conditional preset (cvae, cgan, acgan, ddpm-cfg), or any model with "
                   "--set conditional=true")
    p.add_argument("--data", required=True)
    p.add_argument("--n", default="100,1000,60000", help="real image counts (default 100,1000,60000)")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--steps", type=int, help="training steps of the generative model (default: the preset's)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config key of the generative "
                   "model's training (repeatable)")
    p.add_argument("--gen-ratio", type=float, default=1.0, help="generated images per real image (default 1)")
    p.add_argument("--classifier-steps", type=int, default=4000, help="the classifier recipe's steps (default 4000)")
    p.add_argument("--cas-n", type=int, default=60_000)
    p.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE", help="a sampling option")
    p.add_argument("--device", default="cpu", help="where the models sample: cpu (default), cuda or cuda:N")
    p.add_argument("--batch-size", type=int, default=500, help="images per sampling batch (default 500)")
    p.add_argument("--jobs", type=int, default=1, help="how many n run side by side (default 1)")
    p.add_argument("--note", help="a sentence the result carries (e.g. how the runs shared the machine)")
    p.add_argument("--variant", help="suffix of the result name")
    p.add_argument("--runs", default="runs", help="where the run folders go (default runs/)")
    p.add_argument("--results", help="results folder (default bench/results)")
    p.add_argument("--keep-rows", action="store_true", help="keep each row of the committed result whose n the same "
                   "two commands made (marked kept), instead of running it again: a later call adds the n an "
                   "earlier one could not finish")
    args = p.parse_args()
    if args.results:
        common.RESULTS = Path(args.results)
    ns = [int(v) for v in args.n.split(",")]
    tag = f"{args.model}-{short_name(args.data)}" + (f"-{args.variant}" if args.variant else "")
    report_dir = Path(args.runs) / f"bench-augment-{tag}"
    batch = TrainConfig(**{k: v for k, v in default_train_overrides(args.model).items()
                           if k == "batch_size"}).batch_size
    user_batch = any(s.startswith(("batch_size=", "train.batch_size=")) for s in args.set)
    if args.jobs < 1:
        p.error("--jobs must be at least 1")

    earlier = {}        # --keep-rows: the committed result's rows, by n, with the commands that made them
    if args.keep_rows and (common.RESULTS / f"augment-{tag}.json").exists():
        prev = json.loads((common.RESULTS / f"augment-{tag}.json").read_text())
        earlier = {row["n_real"]: (row, set(prev.get("commands", []))) for row in prev["rows"]}

    def one(n: int) -> tuple[list[str], dict]:
        """Train the model on n real images (unless a finished run is there) and run the experiment on it."""
        run_dir = Path(args.runs) / f"bench-augment-{tag}-n{n}"
        summary = run_dir / "summary.json"
        done = ("finished", "early_stopped", "time_limit")
        quiet = ["--no-progress"] if args.jobs > 1 else []
        log = run_dir.parent / f"{run_dir.name}.log" if args.jobs > 1 else None
        train = genzoo_cmd() + ["train", args.model, "--data", args.data, "--out", str(run_dir), "--overwrite",
                                "--set", f"train_subset={n}"]
        if args.steps:
            train += ["--steps", str(args.steps)]
        if not user_batch and n < batch:
            train += ["--set", f"batch_size={n}"]
        for kv in args.set:
            train += ["--set", kv]
        cmd = genzoo_cmd() + ["augment", str(run_dir), "--n-real", str(n), "--seeds", args.seeds,
                              "--gen-ratio", str(args.gen_ratio), "--classifier-steps", str(args.classifier_steps),
                              "--cas-n", str(args.cas_n), "--out", str(report_dir)]
        if args.batch_size != 500:
            cmd += ["--batch-size", str(args.batch_size)]
        if args.device != "cpu":
            cmd += ["--device", args.device]
        for kv in args.opt:
            cmd += ["--opt", kv]
        # also when an earlier call trained it: how it was made
        commands = [" ".join(["genzoo"] + train[3:]), " ".join(["genzoo"] + cmd[3:])]
        if n in earlier and set(commands) <= earlier[n][1]:
            print(f"n = {n}: kept from the committed result (the same commands made it)", flush=True)
            return commands, {**earlier[n][0], "kept": True}
        if not (summary.exists() and json.loads(summary.read_text()).get("status") in done):
            launch(train + quiet, log)
        report = report_dir / f"augment-n{n}.json"
        if not (report.exists() and json.loads(report.read_text()).get("command", "").replace(" --no-progress", "")
                == commands[-1]):
            launch(cmd + quiet, log)
        rep = json.loads(report.read_text())
        train_summary = json.loads(summary.read_text())
        return commands, {"n_real": n, "run": str(run_dir), "n_generated": rep["n_generated"],
                          "train_steps": train_summary.get("step"), "train_wall_s": train_summary.get("train_wall_s"),
                          "augment_wall_s": rep["wall_s"], "device": rep.get("device", "cpu"), "real": rep["real"],
                          "real_gen": rep["real_gen"], "metrics": rep["metrics"], "refused": rep["refused"]}

    with ThreadPoolExecutor(args.jobs) as pool:
        done_ns = list(pool.map(one, ns))             # started in the order of --n (the longest first, with
    done_ns.sort(key=lambda d: d[1]["n_real"])        # --jobs); the first failure stops the run; rows by n
    commands = [c for cmds, _ in done_ns for c in cmds]
    rows = [row for _, row in done_ns]
    common.RESULTS.mkdir(parents=True, exist_ok=True)
    png = common.RESULTS / f"augment-{tag}.png"
    seeds = [int(v) for v in args.seeds.split(",")]
    plot_gain([{"model": args.model, "dataset": args.data, "gen_ratio": args.gen_ratio, "seeds": seeds, **row}
               if row.get("kept") else json.loads((report_dir / f"augment-n{row['n_real']}.json").read_text())
               for row in rows], png)
    common.write_result(f"augment-{tag}", {
        "model": args.model, "dataset": args.data, "variant": args.variant or "augmentation-gain",
        "command": shlex.join(["python", "bench/augment.py", *sys.argv[1:]]), "commands": commands,
        "seeds": seeds, "gen_ratio": args.gen_ratio,
        "classifier_steps": args.classifier_steps, "cas_n": args.cas_n, "device": rows[0]["device"],
        **({"jobs": args.jobs} if args.jobs > 1 else {}), **({"note": args.note} if args.note else {}),
        "plot": repo_path(png), "rows": rows})


def launch(cmd: list[str], log: Path | None) -> None:
    """Run a genzoo command; with ``log``, its output goes there (side-by-side runs) and a failure shows its tail."""
    if log is None:
        run(cmd)
        return
    print("+", " ".join(cmd), f"> {log}", flush=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f:
        code = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT).returncode
    if code:
        tail = log.read_text().splitlines()[-20:]
        raise SystemExit(f"{' '.join(cmd)} failed ({code}); the end of {log}:\n" + "\n".join(tail))


if __name__ == "__main__":
    main()
