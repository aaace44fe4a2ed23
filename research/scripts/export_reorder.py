"""The default's export with level 0 as built (a transpose into the sub-cell-major layout) and reordered for export
(`SubgridDetect.reorder_level0_for_export`: a reshape), compiled in OpenVINO and ONNX Runtime, next to YOLO11n's, on
the CPU. Prints each graph's median time and the per-round ratios reordered / as built.

    python research/scripts/export_reorder.py                       # the 2-core machine: about two minutes
    python research/scripts/export_reorder.py --imgsz 320 --rounds 2   # a smoke test

Batch 1, `--threads` threads (OpenVINO: LATENCY hint), random weights, 80 classes. Each round runs every graph once
untimed, then `--calls` timed calls, so the graphs share the machine's drift; the ratio column pairs each round's
reordered time with the as-built time of the same round. Both exports' outputs are compared first (they are equal bit
for bit: the reorder moves conv channels, it rounds nothing).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def graphs(imgsz: int, threads: int, tmp: Path) -> dict[str, callable]:
    """name -> a function running one forward pass of that compiled graph on a fixed input."""
    import onnxruntime as ort
    import openvino as ov

    from detector import bench
    from detector.glue.exporter import mark_dynamic, openvino_model, prepare_for_export
    from detector.glue.inference import set_export_mode

    x = torch.randn(1, 3, imgsz, imgsz)
    feed = x.numpy()
    core = ov.Core()
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    runners = {}
    built = {name: bench.build(name, torch.device("cpu")).fuse(verbose=False).eval()
             for name in ("YOLO11n", "yolo11n-an (ours)")}
    for label, reorder in (("YOLO11n", True), ("default, as built", False), ("default, reordered", True)):
        model = copy.deepcopy(built["YOLO11n" if label == "YOLO11n" else "yolo11n-an (ours)"])  # the same weights
        set_export_mode(model, True)
        if reorder:
            prepare_for_export(model, False)
        else:
            mark_dynamic(model, False)
        onnx_path = tmp / f"{len(runners)}.onnx"
        torch.onnx.export(copy.deepcopy(model), x, str(onnx_path), opset_version=17, dynamo=False,
                          input_names=["images"])
        session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        compiled = core.compile_model(openvino_model(model, x), "CPU", config)  # (format "openvino": its DFL form)
        runners[f"OpenVINO, {label}"] = lambda c=compiled: c(feed)[0]
        runners[f"ONNX Runtime, {label}"] = lambda s=session: s.run(None, {"images": feed})[0]
    return runners


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=60)
    p.add_argument("--calls", type=int, default=3, help="timed calls per graph per round")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    with tempfile.TemporaryDirectory() as tmp:
        runners = graphs(a.imgsz, a.threads, Path(tmp))
        for runtime in ("OpenVINO", "ONNX Runtime"):
            same = np.array_equal(runners[f"{runtime}, default, as built"](), runners[f"{runtime}, default, reordered"]())
            print(f"{runtime}: reordered outputs {'equal' if same else 'DIFFER from'} the as-built export's")
        times = {name: [] for name in runners}
        for _ in range(a.rounds):
            for name, run in runners.items():
                run()
                start = time.perf_counter()
                for _ in range(a.calls):
                    run()
                times[name].append((time.perf_counter() - start) / a.calls * 1e3)
    print(f"\n| graph ({a.imgsz} px, batch 1, {a.threads} threads, {a.rounds} rounds) | ms | vs YOLO11n | "
          "reordered / as built, paired by round (median, quartiles) |")
    print("|---|---|---|---|")
    for name, ms in times.items():
        runtime = name.split(",")[0]
        base = statistics.median(times[f"{runtime}, YOLO11n"])
        paired = ""
        if name.endswith("reordered"):
            r = [x / y for x, y in zip(ms, times[f"{runtime}, default, as built"])]
            paired = f"{statistics.median(r):.3f} ({np.percentile(r, 25):.3f}-{np.percentile(r, 75):.3f})"
        print(f"| {name} | {statistics.median(ms):.2f} | {statistics.median(ms) / base:.3f}x | {paired} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
