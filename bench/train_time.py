"""How much of a run's training wall time went to its optimiser steps, and how much to monitoring after them.

A run's summary.json gives train_wall_s, the whole training loop: the steps, plus the sample grids, mode-coverage
checks and validation between them. Runs trained since the trainer records monitor_wall_s split it themselves.
For older runs the TensorBoard event file bounds the split: its name holds the second the writer opened (before
the first step), and the last logged step has its own time stamp, so

    steps_end_s = (wall time of the last logged step) - (writer opened)

is an upper bound on the time from the first step to the last, sample grids between steps included, and
train_wall_s - steps_end_s is the end-of-run monitoring (the last coverage check) and checkpoint.

The split is written into each result JSON given with --result (its "train_split"), where bench/summarize.py
reads it; without --result it is printed.

    python bench/train_time.py runs/bench-ddpm-mnist --result bench/results/ddpm-mnist.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def split(run: Path) -> dict:
    """{"train_wall_s", "steps_end_s", "after_steps_s", "source"} of a run folder."""
    summary = json.loads((run / "summary.json").read_text())
    wall = float(summary["train_wall_s"])
    if "monitor_wall_s" in summary:
        return {"train_wall_s": wall, "steps_end_s": round(wall - summary["monitor_wall_s"], 1),
                "after_steps_s": None, "monitor_wall_s": summary["monitor_wall_s"],
                "source": "the trainer's monitor_wall_s (sample grids, coverage checks, validation)"}
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    files = sorted((run / "tensorboard").glob("events.out.tfevents.*"))
    if len(files) != 1:
        raise SystemExit(f"{run}: expected one TensorBoard event file (a run never resumed), found {len(files)}")
    opened = int(files[0].name.split(".")[3])          # events.out.tfevents.<seconds>.<host>...
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    last = events.Scalars("loss")[-1]
    if last.step != summary["step"]:
        raise SystemExit(f"{run}: the last logged loss is at step {last.step}, the run ended at {summary['step']}")
    steps_end = min(last.wall_time - opened, wall)     # either bounds the steps' time
    return {"train_wall_s": wall, "steps_end_s": round(steps_end, 1),
            "after_steps_s": round(wall - steps_end, 1) + 0.0,       # + 0.0: no -0.0
            "source": "TensorBoard event times: the writer's opening second to the last logged step (an upper "
                      "bound on the steps' time)"}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="a run folder")
    p.add_argument("--result", action="append", default=[], help="a result JSON of this run to annotate")
    args = p.parse_args()
    run = Path(args.run)
    record = split(run)
    record["command"] = " ".join(["python", "bench/train_time.py", *sys.argv[1:]])
    print(json.dumps(record, indent=1))
    for path in map(Path, args.result):
        result = json.loads(path.read_text())
        if Path(result.get("run", "")) != run:
            raise SystemExit(f"{path} is a result of {result.get('run')}, not {run}")
        result["train_split"] = record
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote train_split into {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
