"""Where fused fp16 inference's GPU time goes: the whole forward and the Detect head's share (CUDA events, median of
10 runs), then the largest GPU kernels (torch.profiler, 3 runs), for YOLO11n and the default (or --models), b64@640
NCHW, as Ultralytics predicts on a GPU.

    python research/scripts/infer_cost.py                      # a GPU
    python research/scripts/infer_cost.py --batch 1 --top 20
"""

from __future__ import annotations

import argparse
import statistics

import torch


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="YOLO11n;yolo11n-an (ours)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--top", type=int, default=14, help="kernels listed per model")
    p.add_argument("--channels-last", action="store_true", help="model and input channels-last (Ultralytics: NCHW)")
    a = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("infer_cost.py times CUDA kernels: it needs a GPU")
        return 0
    from torch.profiler import ProfilerActivity, profile

    from detector import bench

    device = torch.device("cuda", 0)
    marks = {}

    def mark(name):
        marks[name] = torch.cuda.Event(enable_timing=True)
        marks[name].record()

    for label in a.models.split(";"):
        model = bench.build(label, device).fuse(verbose=False).eval().half()
        model = bench.as_ultralytics_runs(model, device, training=False)
        x = torch.randn(a.batch, 3, 640, 640, device=device, dtype=torch.float16)
        if a.channels_last:
            model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
        head = model.model[-1]
        hooks = [head.register_forward_pre_hook(lambda m, args: mark("head<")),
                 head.register_forward_hook(lambda m, args, out: mark("head>"))]
        times = []
        with torch.inference_mode():
            for i in range(15):
                mark("start")
                model(x)
                mark("end")
                torch.cuda.synchronize()
                if i >= 5:  # after a warm-up
                    times.append((marks["start"].elapsed_time(marks["end"]), marks["head<"].elapsed_time(marks["head>"])))
            for h in hooks:
                h.remove()
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                for _ in range(3):
                    model(x)
                torch.cuda.synchronize()
        print(f"\n### {label}, {bench.where(device)}, b{a.batch}@640 fp16"
              f"{', channels-last' if a.channels_last else ''}: forward "
              f"{statistics.median(t for t, _ in times):.2f} ms, head {statistics.median(h for _, h in times):.2f} ms\n")
        print("| kernel | calls | ms per forward |\n|---|---|---|")
        kernels = sorted((e for e in prof.key_averages() if e.device_time_total > 0),
                         key=lambda e: e.device_time_total, reverse=True)[:a.top]
        for e in kernels:
            print(f"| {e.key[:100]} | {e.count // 3} | {e.device_time_total / 3e3:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
