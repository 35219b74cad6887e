"""Training curves from a run's metrics.jsonl, one panel per logged quantity."""
from __future__ import annotations

import json
import math
from pathlib import Path


def read_metrics(path: str | Path) -> list[dict]:
    rows = []
    for line in Path(path).read_text().splitlines():
        if line.strip():
            rows.append(json.loads(line))
    return rows


def plot_curves(metrics_path: str | Path, out: str | Path) -> Path | None:
    """Plot every numeric key of metrics.jsonl against step; returns the PNG path (None if nothing logged)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(metrics_path)
    keys = sorted({k for r in rows for k, v in r.items() if k != "step" and isinstance(v, (int, float))})
    if not keys:
        return None
    cols = min(3, len(keys))
    nrows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3 * nrows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        pts = [(r["step"], r[key]) for r in rows if key in r and math.isfinite(r[key])]
        ys = [p[1] for p in pts]
        ax.plot([p[0] for p in pts], ys, lw=1.2)
        tail = sorted(ys[len(ys) // 20:])          # the first 5% (warm-up spike) sets no limit
        if len(tail) > 10:
            lo, hi = tail[0], tail[int(0.99 * (len(tail) - 1))]
            pad = 0.05 * (hi - lo) or 0.05 * abs(hi) or 1.0
            ax.set_ylim(lo - pad, hi + pad)
        ax.set_title(key, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return Path(out)
