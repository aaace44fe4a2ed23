"""The speed-accuracy picture: mAP50-95 against batch-1 latency, one point per model, from research/speed_accuracy.csv.

    python research/scripts/speed_accuracy.py                          # research/speed_accuracy.csv -> research/speed_accuracy.png
    python research/scripts/speed_accuracy.py --table my.csv --out my.png

Two panels: GPU fp16 batch-1 latency (eager, as predict.py runs it) and CPU ONNX Runtime batch-1 latency at 640.
The y value is the mean mAP50-95 over seeds with a +-1 sd bar (none for a single seed). Each point carries its row
number; the key under the panels names the rows. A model with an empty cell is left out of that panel and named under
it, so a half-filled table still draws.

The table (CSV, one row per model, a header line, empty cell = not measured yet):
    model         name on the plot; names starting "YOLO" are drawn as stock Ultralytics (grey squares); the first
                  row starting "YOLO11n" gives the top axes' ratio (a model may have rows from several studies)
    seeds         how many seeds map_mean / map_sd are over
    map_mean      mean mAP50-95 (hard-hat dev val, research/notes/accuracy-log.md's recipe); compare rows of one study only
    map_sd        sample standard deviation over the seeds (empty for one seed)
    gpu_b1_ms     GPU batch-1 fp16 latency, ms, fused model, eager
    cpu_onnx_ms   CPU ONNX Runtime batch-1 latency at 640, ms (the targets' setting is 2 threads, wall time; on a
                  shared machine `--threads 1 --clock cpu`: say which in source)
    source        where each number comes from, with dates and machines
Latencies are only comparable within one run on one machine: fill each latency column from a single run of
`python -m detector.bench` (or medians over repeats of one command on one machine); the top axes then read as ratios
to YOLO11n.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # detector.utils, when run from a checkout without installing

from detector.utils import atomic_path  # noqa: E402

COLUMNS = ("model", "seeds", "map_mean", "map_sd", "gpu_b1_ms", "cpu_onnx_ms", "source")
PANELS = (("gpu_b1_ms", "GPU batch-1 latency, fp16, eager (ms)"),
          ("cpu_onnx_ms", "CPU ONNX Runtime batch-1 latency at 640 (ms; threads and clock: the table's source)"))
BASELINE = "YOLO11n"


def number(text: str) -> float | None:
    text = (text or "").strip()
    return float(text) if text else None


def read_table(path: Path) -> list[dict]:
    """Rows of the table with numbers parsed (None where a cell is empty); raises ValueError naming a bad header."""
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(COLUMNS)}")
        rows = list(reader)
    for row in rows:
        for key in COLUMNS[1:-1]:
            row[key] = number(row[key])
    return rows


def draw(rows: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Each point is labelled with its row number; the key under the panels names them (the n models crowd around
    # 1.00x, where names drawn beside the points overlapped each other and drifted away from their points).
    number = {r["model"]: i for i, r in enumerate(rows, 1)}
    fig, axes = plt.subplots(1, len(PANELS), figsize=(6 * len(PANELS), 5.5), sharey=True)
    for ax, (key, label) in zip(axes, PANELS):
        shown = [r for r in rows if r["map_mean"] is not None and r[key] is not None]
        left_out = [r["model"] for r in rows if r not in shown]
        for r in shown:
            stock = r["model"].startswith("YOLO")
            ax.errorbar(r[key], r["map_mean"], yerr=r["map_sd"] or 0, fmt="s" if stock else "o", capsize=3,
                        color="0.45" if stock else "tab:red", markersize=6)
            ax.annotate(str(number[r["model"]]), (r[key], r["map_mean"]), xytext=(4, 3), textcoords="offset points",
                        fontsize=7, color="0.25" if stock else "darkred")
        base = next((r[key] for r in rows if r["model"].startswith(BASELINE) and r[key]), None)
        if base:
            ax.axvline(base, color="0.8", lw=0.8, zorder=0)
            top = ax.secondary_xaxis("top", functions=(lambda x, b=base: x / b, lambda x, b=base: x * b))
            top.set_xlabel(f"x {BASELINE}")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
        if left_out:
            ax.text(0.0, -0.16, "not drawn (empty cell): " + ", ".join(left_out), transform=ax.transAxes,
                    fontsize=7, va="top", wrap=True)
    key_lines = [f"{i} {r['model']}" + (f" ({int(r['seeds'])} seed{'s' if r['seeds'] != 1 else ''})" if r["seeds"]
                                        else "") for i, r in enumerate(rows, 1)]
    per_column = (len(key_lines) + 2) // 3
    for c in range(3):
        fig.text(0.02 + c * 0.33, -0.02, "\n".join(key_lines[c * per_column:(c + 1) * per_column]), fontsize=8,
                 va="top", family="monospace")
    axes[0].set_ylabel("mAP50-95, hard-hat dev val (mean ± sd over seeds)")
    fig.suptitle("Speed-accuracy: up and to the left is better")
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--table", default=str(ROOT / "research/speed_accuracy.csv"))
    p.add_argument("--out", default=None, help="PNG to write (default: the table's name with .png)")
    args = p.parse_args(argv)
    table = Path(args.table)
    try:
        rows = read_table(table)
    except (OSError, ValueError) as e:
        print(f"speed_accuracy: error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else table.with_suffix(".png")
    draw(rows, out)
    print(f"wrote {out} ({len(rows)} models)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
