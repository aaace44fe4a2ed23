"""CPU prediction end to end, with glibc's malloc thresholds as it sets them and as `detector predict` sets them
(detector.allocator), each in a process of its own: whether a forward pass faults its buffers in depends on what else
the process holds, so the two settings cannot share one.

    python research/scripts/page_faults.py                 # the 2-core machine: a few minutes
    python research/scripts/page_faults.py --repeats 1 --rounds 2 --imgsz 320   # a smoke test

Each process times Ultralytics' predictor (`YOLO(checkpoint).predict`, PyTorch, batch 1, 2 threads, one coco8 photo)
for every model in interleaved rounds (3 predictions each per round, after one untimed), and counts the minor page
faults per prediction. The settings alternate over --repeats pairs of processes. Random weights, 80 classes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CHILD = r"""
import json, resource, statistics, sys, tempfile, time
from pathlib import Path
import cv2, torch
torch.set_num_threads(2)
kept = False
if sys.argv[1] == "kept":
    from detector.allocator import keep_freed_memory
    kept = keep_freed_memory()
from detector.bench import build
from detector.export import DEFAULT_IMAGES, quiet
from ultralytics import YOLO
labels, imgsz, rounds = json.loads(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
image = cv2.imread(str(sorted(DEFAULT_IMAGES.glob("*.jpg"))[0]))
tmp, models = tempfile.mkdtemp(), {}
for i, label in enumerate(labels):
    pt = Path(tmp) / f"m{i}.pt"
    torch.save({"model": build(label, torch.device("cpu")).half(), "train_args": {"imgsz": imgsz}}, pt)
    models[label] = YOLO(str(pt), task="detect")
    with quiet():
        models[label].predict(image, imgsz=imgsz, device="cpu", verbose=False)
times, faults = {k: [] for k in models}, {k: [] for k in models}
for _ in range(rounds):
    for label, yolo in models.items():
        yolo.predict(image, imgsz=imgsz, device="cpu", verbose=False)
        start, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(3):
            yolo.predict(image, imgsz=imgsz, device="cpu", verbose=False)
        times[label].append((time.perf_counter() - start) / 3 * 1e3)
        faults[label].append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 3)
print(json.dumps({"kept": kept, **{k: [statistics.median(times[k]), statistics.median(faults[k])] for k in models}}))
"""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="YOLO11n;yolo11n-an (ours);YOLO26n")
    p.add_argument("--repeats", type=int, default=2, help="pairs of processes (glibc's setting, then ours)")
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--imgsz", type=int, default=640)
    a = p.parse_args(argv)
    labels = a.models.split(";")
    if "YOLO11n" not in labels:
        labels.insert(0, "YOLO11n")
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"):
        env.pop(k, None)  # glibc's own setting in the "glibc" processes
    runs = {"glibc": [], "kept": []}
    for _ in range(a.repeats):
        for setting, results in runs.items():
            out = subprocess.run([sys.executable, "-c", CHILD, setting, json.dumps(labels), str(a.imgsz),
                                  str(a.rounds)], capture_output=True, text=True, env=env, check=False)
            if out.returncode:
                print(out.stderr[-3000:], file=sys.stderr)
                return 1
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"\n### End-to-end PyTorch predict, batch 1 at {a.imgsz}, 2 threads, wall ms (ratio to YOLO11n in the same "
          f"process), page faults per prediction; one column per process\n")
    print("| setting | model | " + " | ".join(f"process {i + 1}" for i in range(a.repeats)) + " |")
    print("|---|---|" + "---|" * a.repeats)
    for setting, results in runs.items():
        name = "glibc's defaults" if setting == "glibc" else (
            "freed memory kept (detector.allocator)" if all(r["kept"] for r in results) else "kept: NOT APPLIED here")
        for label in labels:
            cells = [f"{r[label][0]:.1f} ({r[label][0] / r['YOLO11n'][0]:.2f}x), {r[label][1]:.0f} faults"
                     for r in results]
            print(f"| {name} | {label} | " + " | ".join(cells) + " |")
    medians = {s: statistics.median(r["yolo11n-an (ours)"][0] / r["YOLO11n"][0] for r in rs)
               for s, rs in runs.items() if "yolo11n-an (ours)" in labels}
    if medians:
        print("\nthe default against YOLO11n, median over processes: "
              + ", ".join(f"{s} {m:.2f}x" for s, m in medians.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
