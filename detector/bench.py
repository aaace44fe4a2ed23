"""Side-by-side benchmark: our models next to stock Ultralytics YOLO11n / YOLO12n / YOLO26n, in one run.

    python -m detector.bench                 # full size on a GPU (H100: a few minutes)
    python -m detector.bench --small         # reduced sizes, minutes on a 2-core CPU (what CI smoke-tests)
    python -m detector.bench --only attention,cpu --json out.json

Sections (each prints a markdown table; --json writes all rows):
  attention  the attention op alone at the real shapes of our n/s models, forward+backward, every kernel that runs
             and YOLO12's own matmul way (the baseline)
  train      whole-model training step (forward, backward, SGD step, AMP fp16 on GPU), time and peak memory
  infer      whole-model inference, fused, fp16 on GPU: batch-1 latency and large-batch throughput
  cpu        CPU, 2 threads, batch 1: PyTorch fp32 latency, ONNX Runtime latency of the exported model, and OpenVINO
             (with the openvino extra) fp32, at its default precision (bf16 on CPUs with bf16 units) and int8
Random weights throughout. Ratios are against YOLO11n measured in the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from . import kernels
from .assets import MODELS_DIR
from .glue.inference import set_export_mode
from .glue.registry import stock_ultralytics

MODELS = {  # label -> (YAML, build with stock Ultralytics layers?)
    "YOLO11n": ("yolo11n.yaml", True),
    "YOLO12n (stock, matmul)": ("yolo12n.yaml", True),
    "YOLO26n": ("yolo26n.yaml", True),
    "YOLO12n (ours, SDPA)": ("yolo12n.yaml", False),
    "yolo11n-an (ours)": (str(MODELS_DIR / "yolo11n-an.yaml"), False),
    "yolo11n-an-v1 (ours, earlier)": (str(MODELS_DIR / "yolo11n-an-v1.yaml"), False),
}
BASELINE = "YOLO11n"


def build(label: str, device: torch.device) -> torch.nn.Module:
    from ultralytics.nn.tasks import DetectionModel

    yaml, stock = MODELS[label]
    with stock_ultralytics() if stock else contextlib.nullcontext():
        return DetectionModel(yaml, verbose=False).to(device)


def tensors(out) -> list[torch.Tensor]:
    """Every tensor in a model output (heads return tensors, lists or dicts: YOLO26's end-to-end head)."""
    if isinstance(out, torch.Tensor):
        return [out]
    items = out.values() if isinstance(out, dict) else out if isinstance(out, (list, tuple)) else []
    return [t for item in items for t in tensors(item)]


def timed(fn, device: torch.device, iters: int, warmup: int = 3) -> float:
    """Median milliseconds of fn() over `iters` runs after `warmup` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def peak_mib(fn, device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - base) / 2**20


def yolo12_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """YOLO12's attention as Ultralytics' AAttn computes it, under the autocast its AMP training runs in: fp16
    products, the softmax promoted to fp32 by autocast, cast back to fp16 for the second product. The baseline of the
    speed-up column. (Our own `matmul` fallback is not it: that one computes in fp32 throughout, for safety, see
    kernels.matmul_attention, and is slower.) q, k, v: (B, heads, L, head_dim)."""
    with torch.autocast(q.device.type, dtype=q.dtype, enabled=q.dtype in kernels.HALF_DTYPES):
        attn = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5  # (B, heads, L, L)
        return attn.softmax(dim=-1) @ v


def bench_attention(device, small: bool, iters: int) -> list[dict]:
    """The op alone: (batch*areas, heads, tokens, 32) shapes of our n and s neck at 640/1280."""
    shapes = []
    for scale, heads_p4, heads_p5 in (("n", 2, 4), ("s", 4, 8)):
        for imgsz, batch in ((640, 64), (1280, 16)):
            if small:
                imgsz, batch = imgsz // 4, 2
            p4, p5 = (imgsz // 16) ** 2, (imgsz // 32) ** 2
            shapes.append((f"{scale} P4 @{imgsz} b{batch}", (batch * 4, heads_p4, p4 // 4, 32)))
            shapes.append((f"{scale} P5 @{imgsz} b{batch}", (batch, heads_p5, p5, 32)))
    dtypes = (torch.float16, torch.float32) if device.type == "cuda" else (torch.float32,)
    rows = []
    for name, shape in shapes:
        for dtype in dtypes:
            q, k, v = (torch.randn(shape, device=device, dtype=dtype, requires_grad=True) for _ in range(3))
            g = torch.randn(shape, device=device, dtype=dtype)
            auto = kernels.select(device, dtype, shape[-1], shape[-2]).kernel
            for kernel in (*kernels.KERNELS[1:], "yolo12"):
                if kernel != "yolo12" and not kernels.kernel_runs(kernel, device, dtype, shape[-1], shape[-2])[0]:
                    continue

                def step(kernel=kernel):
                    q.grad = k.grad = v.grad = None
                    out = yolo12_attention(q, k, v) if kernel == "yolo12" else kernels._run(kernel, q, k, v)
                    out.backward(g)

                rows.append(dict(section="attention", shape=name, dims=list(shape), dtype=str(dtype)[6:], kernel=kernel,
                                 auto=kernel == auto, ms=timed(step, device, iters), mib=peak_mib(step, device)))
    return rows


def bench_train(device, small: bool, iters: int) -> list[dict]:
    sizes = ((160, 4),) if small else ((640, 64), (1280, 16))
    amp = device.type == "cuda"
    rows = []
    for imgsz, batch in sizes:
        for label in MODELS:
            model = build(label, device).train()
            opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
            x = torch.randn(batch, 3, imgsz, imgsz, device=device)

            def step():
                opt.zero_grad(set_to_none=True)
                with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                    loss = sum(t.float().mean() for t in tensors(model(x)))  # synthetic loss over every output
                loss.backward()
                opt.step()

            rows.append(dict(section="train", model=label, imgsz=imgsz, batch=batch, amp=amp,
                             ms=timed(step, device, iters), mib=peak_mib(step, device)))
            del model, opt
    return rows


def bench_infer(device, small: bool, iters: int) -> list[dict]:
    imgsz = 160 if small else 640
    big = 4 if small else 64
    half = device.type == "cuda"
    rows = []
    for label in MODELS:
        model = build(label, device).fuse(verbose=False).eval()
        model = model.half() if half else model
        for batch in (1, big):
            x = torch.randn(batch, 3, imgsz, imgsz, device=device, dtype=torch.float16 if half else torch.float32)
            with torch.inference_mode():
                ms = timed(lambda: model(x), device, iters)
            rows.append(dict(section="infer", model=label, imgsz=imgsz, batch=batch, half=half, ms=ms,
                             img_per_s=batch / ms * 1e3))
    return rows


def openvino_runners(model: torch.nn.Module, x: torch.Tensor, calibration: list[torch.Tensor]) -> dict:
    """OpenVINO versions of `model` (in export mode), converted as `detector.export` converts them (Ultralytics'
    conversion, detector.glue.exporter.openvino_model; int8: NNCF with the head kept in float), compiled for 2
    threads. Keys: "fp32" pinned to f32, "auto" with OpenVINO's own precision choice (bf16 on CPUs with bf16 units),
    "int8" (its unquantized parts at OpenVINO's choice, as deployed). Empty without the openvino extra."""
    try:
        import nncf
        import openvino as ov
    except ImportError:
        return {}
    from .export import quiet
    from .glue.exporter import openvino_model

    with quiet(int8=True):
        graph = openvino_model(model, x)
        int8 = openvino_model(model, x, calibration=nncf.Dataset(calibration))
    core = ov.Core()
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": 2}
    compiled = {"fp32": core.compile_model(graph, "CPU", config | {"INFERENCE_PRECISION_HINT": "f32"}),
                "auto": core.compile_model(graph, "CPU", config), "int8": core.compile_model(int8, "CPU", config)}
    feed = x.numpy()
    return {key: lambda c=c: c(feed) for key, c in compiled.items()}


def openvino_default_precision() -> str | None:
    """The precision OpenVINO's CPU plugin runs fp32 graphs in by default here (bf16 where the CPU has bf16 units)."""
    try:
        import openvino as ov
    except ImportError:
        return None
    return ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()


def bench_cpu(small: bool, iters: int, rounds: int = 5) -> list[dict]:
    """Batch-1 latency on 2 CPU threads: PyTorch, ONNX Runtime, OpenVINO fp32 / default precision / int8. A shared
    CPU's speed drifts over minutes, so the models are timed in interleaved rounds (every model and runtime, then
    again) and each gets the median over all rounds. Not call by call: ONNX Runtime's threads keep spinning for a while
    after a call, which slowed an OpenVINO call right after it by 1.3-1.5x (docs/benchmarks.md); each round's first
    call, not timed, absorbs that."""
    import numpy as np

    from .export import DEFAULT_IMAGES, load_images

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    imgsz = 320 if small else 640
    cpu = torch.device("cpu")
    try:
        import onnxruntime as ort
    except ImportError:
        ort = None
    x = torch.randn(1, 3, imgsz, imgsz)
    calibration = list(load_images(DEFAULT_IMAGES, imgsz)[1].split(1))  # int8 ranges from real images (coco8 val)
    runners = {}  # (label, "torch"|"onnx"|"fp32"|"auto"|"int8") -> a function running one forward pass
    with tempfile.TemporaryDirectory() as tmp:
        for i, label in enumerate(MODELS):
            model = build(label, cpu).fuse(verbose=False).eval()

            def run_torch(model=model):
                with torch.no_grad():  # not inference_mode: the head caches anchors that the ONNX trace then reuses
                    return model(x)

            runners[label, "torch"] = run_torch
            set_export_mode(model, True)
            if ort is not None:
                path = Path(tmp) / f"m{i}.onnx"
                torch.onnx.export(model, x, str(path), opset_version=17, dynamo=False, input_names=["images"])
                opts = ort.SessionOptions()
                opts.intra_op_num_threads, opts.inter_op_num_threads = 2, 1
                sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
                feed = {"images": x.numpy().astype(np.float32)}
                runners[label, "onnx"] = lambda sess=sess, feed=feed: sess.run(None, feed)
            for key, fn in openvino_runners(model, x, calibration).items():
                runners[label, key] = fn
            set_export_mode(model, False)
        times = {key: [] for key in runners}
        per_round = max(1, iters // rounds)
        for _ in range(rounds):
            for key, fn in runners.items():
                times[key].append(timed(fn, cpu, per_round, warmup=1))
    torch.set_num_threads(threads)
    ms = {key: statistics.median(t) for key, t in times.items()}
    precision = openvino_default_precision()
    return [dict(section="cpu", model=label, imgsz=imgsz, threads=2, torch_ms=ms[label, "torch"],
                 onnx_ms=ms.get((label, "onnx")), openvino_fp32_ms=ms.get((label, "fp32")),
                 openvino_auto_ms=ms.get((label, "auto")), openvino_auto_precision=precision,
                 openvino_int8_ms=ms.get((label, "int8"))) for label in MODELS]


def ratio(rows, key, row):
    base = next((r for r in rows if r.get("model") == BASELINE and all(r.get(k) == row.get(k) for k in
                                                                        ("section", "imgsz", "batch"))), None)
    return f"{row[key] / base[key]:.2f}x" if base and base.get(key) and row.get(key) else "-"


def share(row: dict, key: str, base: str) -> str:
    """row[key] as a multiple of row[base] (two timings of the same model), or '-'."""
    return f"{row[key] / row[base]:.2f}x" if row.get(key) and row.get(base) else "-"


def fmt(x, digits=1):
    return "-" if x is None else f"{x:.{digits}f}"


def table(title: str, columns: list[str], lines: list[str]) -> list[str]:
    """A markdown table with a heading and a blank line after it."""
    return [f"### {title}", "", "| " + " | ".join(columns) + " |", "|---" * len(columns) + "|", *lines, ""]


def markdown(rows: list[dict]) -> str:
    out = []
    att = [r for r in rows if r["section"] == "attention"]
    if att:
        lines = []
        for r in att:
            same = [a for a in att if a["shape"] == r["shape"] and a["dtype"] == r["dtype"]]
            base = next(a for a in same if a["kernel"] == "yolo12")
            fastest = min(a["ms"] for a in same if a["kernel"] not in ("matmul", "yolo12"))
            name = f"{r['shape']} {tuple(r['dims'])}"
            lines.append(f"| {name} | {r['dtype']} | {r['kernel']}{' (auto)' if r['auto'] else ''} | {fmt(r['ms'], 2)} "
                         f"| {fmt(r['mib'], 0)} | {base['ms'] / r['ms']:.2f}x | {r['ms'] / fastest:.2f}x |")
        out += table("Attention op, forward+backward", ["shape (B·areas, heads, tokens, hd)", "dtype", "kernel", "ms",
                                                         "MiB", "speed-up vs YOLO12's", "vs fastest SDPA"], lines)
    train = [r for r in rows if r["section"] == "train"]
    if train:
        out += table("Training step (AMP fp16 on GPU)",
                     ["model", "imgsz", "batch", "ms", "vs YOLO11n", "peak MiB", "vs YOLO11n"],
                     [f"| {r['model']} | {r['imgsz']} | {r['batch']} | {fmt(r['ms'])} | {ratio(train, 'ms', r)} | "
                      f"{fmt(r['mib'], 0)} | {ratio(train, 'mib', r)} |" for r in train])
    infer = [r for r in rows if r["section"] == "infer"]
    if infer:
        out += table("Inference (fused; fp16 on GPU)",
                     ["model", "batch", "ms", "img/s", "latency vs YOLO11n", "throughput vs YOLO11n"],
                     [f"| {r['model']} | {r['batch']} | {fmt(r['ms'], 2)} | {fmt(r['img_per_s'], 0)} | "
                      f"{ratio(infer, 'ms', r)} | {ratio(infer, 'img_per_s', r)} |" for r in infer])
    cpu = [r for r in rows if r["section"] == "cpu"]
    if cpu:
        auto = cpu[0].get("openvino_auto_precision") or "default"
        out += table("CPU, batch 1, 2 threads (OpenVINO: fp32 pinned to f32; auto = its default, here " + auto + ")",
                     ["model", "imgsz", "PyTorch ms", "vs YOLO11n", "ONNX Runtime ms", "vs YOLO11n", "OpenVINO fp32 ms",
                      "vs YOLO11n", f"OpenVINO auto ({auto}) ms", "vs YOLO11n", "OpenVINO int8 ms", "vs YOLO11n"],
                     [f"| {r['model']} | {r['imgsz']} | " + " | ".join(
                         f"{fmt(r.get(key))} | {ratio(cpu, key, r)}" for key in
                         ("torch_ms", "onnx_ms", "openvino_fp32_ms", "openvino_auto_ms", "openvino_int8_ms")) + " |"
                      for r in cpu])
        out += table("CPU, each model against itself: OpenVINO vs ONNX Runtime, int8 vs fp32",
                     ["model", "OpenVINO fp32 / ORT", f"OpenVINO auto ({auto}) / ORT", "int8 / OpenVINO fp32",
                      f"int8 / OpenVINO auto ({auto})"],
                     [f"| {r['model']} | {share(r, 'openvino_fp32_ms', 'onnx_ms')} | "
                      f"{share(r, 'openvino_auto_ms', 'onnx_ms')} | {share(r, 'openvino_int8_ms', 'openvino_fp32_ms')} | "
                      f"{share(r, 'openvino_int8_ms', 'openvino_auto_ms')} |" for r in cpu])
    return "\n".join(out)


def machine() -> str:
    import platform

    import ultralytics

    gpu = f"{torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "no GPU"
    return (f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, {gpu}; torch {torch.__version__}, "
            f"CUDA {torch.version.cuda}, ultralytics {ultralytics.__version__}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--small", action="store_true", help="reduced sizes (CPU, CI)")
    p.add_argument("--only", default="attention,train,infer,cpu", help="comma-separated sections")
    p.add_argument("--iters", type=int, default=None, help="timed iterations per measurement")
    p.add_argument("--json", default=None, help="also write every row to this JSON file")
    args = p.parse_args(argv)
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(sections) - {"attention", "train", "infer", "cpu"}
    if unknown:
        p.error(f"--only: unknown section(s) {', '.join(sorted(unknown))}")
    device = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    iters = args.iters or (3 if args.small else 20)
    print(f"machine: {machine()}", flush=True)
    rows = []
    for section in sections:
        if section == "cpu":
            rows += bench_cpu(args.small, iters)
        else:
            rows += {"attention": bench_attention, "train": bench_train, "infer": bench_infer}[section](device, args.small, iters)
        print(markdown([r for r in rows if r["section"] == section]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine(), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
