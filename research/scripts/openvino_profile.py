"""Where OpenVINO's CPU time goes, per node type, for the default's export against YOLO11n's: OpenVINO's own per-node
counters (PERF_COUNT), summed by node type over `--runs` inferences, then the head's and the neck attention's
non-convolution nodes by name.

    python research/scripts/openvino_profile.py                  # the 2-core machine: about 15 s
    python research/scripts/openvino_profile.py --imgsz 160 --runs 2   # a smoke test

Batch 1, fp32, `--threads` threads (LATENCY hint), random weights, 80 classes, each export as Ultralytics' OpenVINO
exporter makes it (detector.glue.exporter.openvino_model). The counters add a little time to every node; compare the
two columns, not the totals with an unprofiled run.
"""

from __future__ import annotations

import argparse
import collections
import copy
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

MODELS = ("YOLO11n", "yolo11n-an (ours)")


def profile(label: str, imgsz: int, threads: int, runs: int) -> dict[tuple[str, str], float]:
    """(node type, node name) -> ms per inference."""
    import openvino as ov

    from detector import bench
    from detector.glue.exporter import openvino_model
    from detector.glue.inference import set_export_mode

    x = torch.randn(1, 3, imgsz, imgsz)
    model = copy.deepcopy(bench.build(label, torch.device("cpu")).fuse(verbose=False).eval())
    set_export_mode(model, True)
    compiled = ov.Core().compile_model(openvino_model(model, x), "CPU", {
        "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads, "PERF_COUNT": True})
    request, feed = compiled.create_infer_request(), {0: x.numpy()}
    for _ in range(3):
        request.infer(feed)
    times = collections.Counter()
    for _ in range(runs):
        request.infer(feed)
        for node in request.get_profiling_info():
            times[node.node_type, node.node_name] += node.real_time.total_seconds() * 1e3 / runs
    return times


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=40)
    p.add_argument("--top", type=int, default=16, help="head and attention nodes listed per model")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    nodes = {label: profile(label, a.imgsz, a.threads, a.runs) for label in MODELS}
    by_type = {label: collections.Counter() for label in MODELS}
    for label, times in nodes.items():
        for (kind, _), ms in times.items():
            by_type[label][kind] += ms
    base, ours = (by_type[label] for label in MODELS)
    print(f"| node type ({a.imgsz} px, {a.threads} threads, {a.runs} runs) | YOLO11n ms | default ms | difference |")
    print("|---|---|---|---|")
    for kind in sorted(set(base) | set(ours), key=lambda k: base[k] - ours[k]):
        if max(base[kind], ours[kind]) >= 0.05:
            print(f"| {kind} | {base[kind]:.2f} | {ours[kind]:.2f} | {ours[kind] - base[kind]:+.2f} |")
    print(f"| all | {sum(base.values()):.2f} | {sum(ours.values()):.2f} | {sum(ours.values()) - sum(base.values()):+.2f} |")
    for label, times in nodes.items():
        head = model_layers(label)
        rows = [(ms, kind, name) for (kind, name), ms in times.items()
                if kind != "Convolution" and any(f"model.{i}." in name or f"model.{i}/" in name for i in head)]
        print(f"\n{label}: the head's and the attention's other nodes (layers {', '.join(map(str, head))}), ms")
        for ms, kind, name in sorted(rows, reverse=True)[:a.top]:
            print(f"  {ms:.3f} {kind} {name}")
    return 0


def model_layers(label: str) -> tuple[int, ...]:
    """The layer indices of the head and the attention block in each model's YAML."""
    return (10, 23) if label == "YOLO11n" else (22, 23)


if __name__ == "__main__":
    raise SystemExit(main())
