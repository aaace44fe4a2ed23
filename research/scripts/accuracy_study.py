"""Architecture study: train every model from scratch with ONE recipe and several seeds; tabulate val accuracy.

    python research/scripts/accuracy_study.py --data-root ../shared/datasets/hardhat --seeds 0 1 --devices 0,1 --parallel 6
    python research/scripts/accuracy_study.py --report runs/study            # table from finished runs only
    python research/scripts/accuracy_study.py --data data/coco128.yaml --models yolo11n.yaml yolo11n-an.yaml \
        --seeds 0 --epochs 300 --imgsz 640 --no-val --out runs/fit        # coco128 fitting check (train = val)

Reproduces research/notes/accuracy-log.md. Each (model, seed) trains in its own process (`--one`), so runs can share GPUs; the
parent keeps `--parallel` of them going, spread round-robin over `--devices`. Stock Ultralytics models (yolo11n,
yolo12n, yolo26n) are built with Ultralytics' own layers (YOLO12's matmul attention); ours with `import detector`.
Every run writes summary.json next to its results.csv: final val mAP50-95 / mAP50 of best.pt, wall time, peak GPU
memory, and whether every logged loss stayed finite. Runs that share a GPU slow each other down: compare wall
times only within one batch, and use `python -m detector.bench` for clean per-step cost.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STUDY_STOCK = ("yolo11n.yaml", "yolo12n.yaml", "yolo26n.yaml")  # the stock peers of the default study
STOCK = (*STUDY_STOCK, "yolo11s.yaml")  # built with Ultralytics' own layers (YOLO11s: run by --jobs only)
OURS = ("yolo11n-an.yaml", "yolo11n-an-lite.yaml", "yolo11n-an-v1.yaml", "yolo11n-an-nofuse.yaml", "yolo11n-an-p4.yaml",
        "yolo11n-an-p4p5.yaml", "yolo11n-an-p4p5-nopsa.yaml")
# The recipe of ../shared/docs/GPU.md's stock baselines, so those numbers stay a cross-check.
RECIPE = dict(epochs=60, imgsz=320, batch=32, workers=4, cache="ram", optimizer="auto", amp=True, plots=True)


def write_data_yaml(root: Path, out: Path) -> Path:
    """A data YAML with an absolute `path:` (Ultralytics resolves a relative one against its own datasets dir)."""
    names = {0: "head", 1: "helmet", 2: "person"} if "hardhat" in root.name else None
    if names is None:  # any other Ultralytics-layout dataset: take the names from a YAML next to it
        import yaml

        names = yaml.safe_load(next(root.glob("*.yaml")).read_text())["names"]
    val = "images/val" if (root / "images/val").exists() else "images/train"  # coco128: train = val
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"path: {root.resolve()}\ntrain: images/train\nval: {val}\nnames: {json.dumps(names)}\n")
    return out


def run_one(model: str, seed: int, data: str, device: str, project: Path, name: str, epochs: int,
            imgsz: int = RECIPE["imgsz"], val: bool = True, workers: int = RECIPE["workers"],
            trainer: str = "ultralytics") -> dict:
    """Train one model in this process and write <project>/<name>/summary.json. `trainer`: Ultralytics' own
    DetectionTrainer (what `YOLO.train` uses; its v8DetectionLoss) or "detector" (DetectorTrainer, what train.py and
    `detector train` use: LeanDetectionLoss)."""
    import torch

    import detector  # noqa: F401  (registers our layers)
    from detector import assets
    from detector.glue.registry import stock_ultralytics
    from detector.glue.trainer import DetectorTrainer
    from ultralytics import YOLO

    # val=False skips the per-epoch validation; Ultralytics still validates the last epoch and best.pt.
    recipe = {**RECIPE, "epochs": epochs, "imgsz": imgsz, "val": val, "workers": workers}
    stock = model in STOCK
    start = time.time()
    # Stock models keep Ultralytics' own layers, also in the model the trainer rebuilds inside train().
    with stock_ultralytics() if stock else contextlib.nullcontext():
        variant = ROOT / "research/models" / assets.scaleless(model)  # a study YAML, by its bare name
        yolo = YOLO(model if stock else str(variant.with_name(model)) if variant.is_file() else
                    assets.resolve_model(model))
        metrics = yolo.train(data=data, device=device, project=str(project), name=name, seed=seed,
                             deterministic=False, exist_ok=True, **recipe,
                             **({"trainer": DetectorTrainer} if trainer == "detector" else {}))
    wall = time.time() - start  # metrics: Ultralytics' DetMetrics of best.pt on the val split
    run = project / name
    with open(run / "results.csv") as f:
        rows = list(csv.DictReader(f))
    losses = [float(v) for r in rows for k, v in r.items() if "loss" in k]
    summary = dict(model=model, seed=seed, trainer=trainer, epochs=len(rows), map50_95=round(float(metrics.box.map), 4),
                   map50=round(float(metrics.box.map50), 4), wall_s=round(wall, 1),
                   peak_gib=round(torch.cuda.max_memory_reserved() / 2**30, 2) if torch.cuda.is_available() else None,
                   finite=all(math.isfinite(x) for x in losses),
                   params=sum(p.numel() for p in yolo.model.parameters()))
    (run / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def launch(models, seeds, data, devices, parallel, project: Path, epochs: int, imgsz: int, val: bool,
           jobs=None, workers: int = RECIPE["workers"], trainer: str = "ultralytics") -> None:
    """Keep `parallel` child processes training, round-robin over `devices`; logs go to <run>/train.log.
    `jobs`: explicit (model, seed) pairs, in launch order, instead of the cross product of models x seeds."""
    jobs = jobs or [(m, s) for s in seeds for m in models]
    running = []
    for i, (model, seed) in enumerate(jobs):
        while len(running) >= parallel:
            running = [p for p in running if p.poll() is None]
            time.sleep(2)
        name = f"{Path(model).stem}-s{seed}"
        (project / name).mkdir(parents=True, exist_ok=True)
        log = open(project / name / "train.log", "w")
        cmd = [sys.executable, __file__, "--one", model, "--seed", str(seed), "--data", data,
               "--devices", devices[i % len(devices)], "--out", str(project), "--epochs", str(epochs),
               "--imgsz", str(imgsz), "--workers", str(workers), "--trainer", trainer, *([] if val else ["--no-val"])]
        running.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT))
        print(f"started {name} on device {devices[i % len(devices)]}", flush=True)
    for p in running:
        p.wait()


def report(project: Path) -> str:
    """Markdown table, one row per finished run, then mean ± spread (half the range) per model."""
    runs = sorted((json.loads(p.read_text()) for p in project.glob("*/summary.json")),
                  key=lambda r: (r["model"], r["seed"]))
    lines = ["| model | seed | mAP50-95 | mAP50 | wall s | peak GiB | losses finite |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['seed']} | {r['map50_95']:.4f} | {r['map50']:.4f} | {r['wall_s']:.0f} | "
              f"{r['peak_gib']} | {r['finite']} |" for r in runs]
    lines += ["", "| model | seeds | mAP50-95 mean ± half-range | mAP50 mean ± half-range | wall s mean | mAP50-95 sd |",
              "|---|---|---|---|---|---|"]
    for model in dict.fromkeys(r["model"] for r in runs):
        rs = [r for r in runs if r["model"] == model]

        def stat(key):
            xs = [r[key] for r in rs]
            return f"{sum(xs) / len(xs):.4f} ± {(max(xs) - min(xs)) / 2:.4f}"

        def sd(key):  # sample standard deviation
            xs = [r[key] for r in rs]
            m = sum(xs) / len(xs)
            return f"{math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)):.4f}" if len(xs) > 1 else "-"

        lines.append(f"| {model} | {len(rs)} | {stat('map50_95')} | {stat('map50')} | "
                     f"{sum(r['wall_s'] for r in rs) / len(rs):.0f} | {sd('map50_95')} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", type=Path, help="dataset folder (images/, labels/), e.g. ../shared/datasets/hardhat")
    p.add_argument("--data", help="a data YAML instead of --data-root")
    p.add_argument("--models", nargs="+", default=[*STUDY_STOCK, *OURS])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--jobs", nargs="+", metavar="MODEL:SEED",
                   help="explicit (model, seed) runs in launch order, instead of --models x --seeds")
    p.add_argument("--epochs", type=int, default=RECIPE["epochs"])
    p.add_argument("--imgsz", type=int, default=RECIPE["imgsz"])
    p.add_argument("--workers", type=int, default=RECIPE["workers"],
                   help="data-loader workers per run (GPU.md: 2 when 6 runs share 16 cores)")
    p.add_argument("--no-val", dest="val", action="store_false", help="validate only the last epoch and best.pt")
    p.add_argument("--devices", default="0", help="comma-separated GPU ids to spread runs over")
    p.add_argument("--parallel", type=int, default=1, help="runs at once (small models leave a GPU mostly idle)")
    p.add_argument("--out", type=Path, default=ROOT / "runs/study")
    p.add_argument("--report", type=Path, help="only print the table of the finished runs under this folder")
    p.add_argument("--one", help=argparse.SUPPRESS)  # child process: train this model
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--trainer", choices=("ultralytics", "detector"), default="ultralytics",
                   help="Ultralytics' DetectionTrainer (YOLO.train's) or DetectorTrainer (train.py's: the lean loss)")
    a = p.parse_args(argv)

    if a.report:
        print(report(a.report))
        return 0
    if a.one:
        run_one(a.one, a.seed, a.data, a.devices, a.out.resolve(), f"{Path(a.one).stem}-s{a.seed}", a.epochs,
                a.imgsz, a.val, a.workers, a.trainer)
        return 0
    if not a.data and not a.data_root:
        p.error("give --data-root (a dataset folder) or --data (a data YAML)")
    data = a.data or str(write_data_yaml(a.data_root, a.out / f"{a.data_root.name}.yaml"))
    os.environ.setdefault("YOLO_OFFLINE", "1")
    jobs = [(j.rpartition(":")[0], int(j.rpartition(":")[2])) for j in a.jobs] if a.jobs else None
    launch(a.models, a.seeds, data, a.devices.split(","), a.parallel, a.out.resolve(), a.epochs, a.imgsz, a.val, jobs,
           a.workers, a.trainer)
    print(report(a.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
