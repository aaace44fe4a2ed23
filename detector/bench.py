"""Side-by-side cost of our models and stock Ultralytics YOLO11n / YOLO12n / YOLO26n, ratios to YOLO11n in one run.

    python -m detector.bench                 # train, infer, predict: every row of the summary (H100: minutes)
    python -m detector.bench --small         # reduced sizes, on a 2-core CPU too (what CI smoke-tests)
    python -m detector.bench --only predict --models 'yolo11n-an' --nc 3 --json out.json

Sections (default: train, infer, predict; each prints a table titled with where it ran):
  train      training step b64@640 (forward, backward, SGD; AMP fp16 on a GPU), with Ultralytics' detection loss
             (task-aligned assigner, DFL; random boxes) as `yolo train` and as `detector train` compute it, and with
             a synthetic loss; time and peak memory
  infer      fused inference (fp16 on a GPU): batch-1 latency, batch-64 throughput
  predict    CPU, end to end through Ultralytics' predictor (pre-process, inference, NMS), batch 1: PyTorch, ONNX
             Runtime and OpenVINO (each where installed)
  cpu        CPU forward pass alone: PyTorch, ONNX Runtime, OpenVINO fp32 / its default precision / int8
  attention  the attention op alone at our n/s shapes, every kernel that runs and YOLO12's matmul way
  ops        operator calls that compute or copy per batch-1 forward (what batch-1 GPU latency pays for)
  graphs     GPU: batch-1 latency eager against torch.compile's CUDA graphs (Ultralytics' compile=reduce-overhead)
Random weights. Candidates are timed in interleaved rounds and get the median over all rounds ("spread": the range of
per-round medians over their median; a difference smaller than it is noise). Each model runs in the memory format
Ultralytics runs it in (channels-last for CUDA training and x86 CPU prediction, NCHW for CUDA prediction).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from . import kernels
from .assets import MODELS_DIR, scaleless
from .glue.exporter import prepare_for_export
from .glue.inference import set_export_mode
from .glue.registry import stock_ultralytics

MODELS = {  # label -> (YAML, build with stock Ultralytics layers?); --models also takes a YAML path (a variant)
    "YOLO11n": ("yolo11n.yaml", True),
    "YOLO11n (C2PSA on our kernels)": ("yolo11n.yaml", False),
    "YOLO12n (stock, matmul)": ("yolo12n.yaml", True),
    "YOLO12n (ours, SDPA)": ("yolo12n.yaml", False),
    "YOLO26n": ("yolo26n.yaml", True),
    "yolo11n-an (ours)": (str(MODELS_DIR / "yolo11n-an.yaml"), False),
    "yolo11n-an-v2 (ours)": (str(MODELS_DIR / "yolo11n-an-v2.yaml"), False),
    "yolo11n-an-p2t-r8 (ours)": (str(MODELS_DIR / "yolo11n-an-p2t-r8.yaml"), False),
    "YOLO11s": ("yolo11s.yaml", True),  # the next YOLO11 scale: where a costlier candidate must beat YOLO11's frontier
}
BASELINE = "YOLO11n"
DEFAULT_MODELS = ("YOLO11n", "yolo11n-an (ours)", "yolo11n-an-v2 (ours)", "YOLO12n (ours, SDPA)",
                  "YOLO12n (stock, matmul)", "YOLO26n")  # the summary's columns; the others with --models
# Classes every model is built with; None keeps each YAML's (80, COCO's). A head's cost grows with the class count
# (Ultralytics' Detect makes its class branch max(channels, classes) wide), and a detection level at stride 4 makes
# that width cost 4x per level: `--nc 3` measures what a few-class model (the hard-hat split's) costs.
NUM_CLASSES: int | None = None


def build(label: str, device: torch.device) -> torch.nn.Module:
    from ultralytics.nn.tasks import DetectionModel

    yaml, stock = MODELS[label]
    with stock_ultralytics() if stock else contextlib.nullcontext():
        return DetectionModel(yaml, nc=NUM_CLASSES, verbose=False).to(device)


def as_ultralytics_runs(model: torch.nn.Module, device: torch.device, training: bool) -> torch.nn.Module:
    """`model` in the memory format Ultralytics 8.4 runs it in, so a timing measures what users run: its trainer moves
    the model to channels-last on CUDA (its `channels_last` argument, on by default except on Windows), its predictor
    (AutoBackend) on x86 CPUs with oneDNN and not on CUDA. On an H100 a channels-last training step of YOLO11n took
    about 0.7x the NCHW one (docs/benchmarks.md): timing NCHW there timed a program no Ultralytics run executes."""
    if training:
        channels_last = device.type == "cuda" and platform.system() != "Windows"
    else:
        channels_last = (device.type == "cpu" and platform.machine() in {"AMD64", "x86_64"}
                         and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled
                         and platform.system() in {"Linux", "Windows"})
    return model.to(memory_format=torch.channels_last) if channels_last else model


def tensors(out) -> list[torch.Tensor]:
    """Every tensor in a model output (heads return tensors, lists or dicts: YOLO26's end-to-end head)."""
    if isinstance(out, torch.Tensor):
        return [out]
    items = out.values() if isinstance(out, dict) else out if isinstance(out, (list, tuple)) else []
    return [t for item in items for t in tensors(item)]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def interleaved(runners: dict, device: torch.device, iters: int, rounds: int, warmup: int = 3, settle: int = 0,
                clock: str = "wall") -> dict:
    """Time every runner (a function of no arguments) in `rounds` interleaved rounds: each round runs every runner
    max(1, iters // rounds) times in turn, after `settle` untimed calls of its own (they absorb what the previous
    runner left behind, e.g. ONNX Runtime's spinning threads). After `warmup` untimed runs of each. Returns per key
    (median ms over the per-round medians, spread: (max - min) / median of the per-round medians, None for a single
    round). clock "cpu" counts this process's CPU time instead of wall time: on a shared CPU at one thread it leaves
    out the time other jobs hold the core (see bench_cpu)."""
    now = CLOCKS[clock]
    for fn in runners.values():
        for _ in range(warmup):
            fn()
    sync(device)
    per_round, medians = max(1, iters // rounds), {key: [] for key in runners}
    for _ in range(max(1, min(rounds, iters))):
        for key, fn in runners.items():
            for _ in range(settle):
                fn()
            times = []
            for _ in range(per_round):
                sync(device)
                t = now()
                fn()
                sync(device)
                times.append((now() - t) * 1e3)
            medians[key].append(statistics.median(times))
    return {key: (statistics.median(m), (max(m) - min(m)) / statistics.median(m) if len(m) > 1 else None)
            for key, m in medians.items()}


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


def where(device: torch.device, threads: int | None = None) -> str:
    """The device a section ran on, in words, for its title: 'NVIDIA H100 80GB HBM3 (cuda:0)', 'CPU, 2 threads'."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} ({device})"
    threads = threads or torch.get_num_threads()
    return f"CPU, {threads} thread{'s' if threads > 1 else ''}"


def yolo12_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """YOLO12's attention as Ultralytics' AAttn computes it, under the autocast its AMP training runs in: fp16
    products, the softmax promoted to fp32 by autocast, cast back to fp16 for the second product. The baseline of the
    speed-up column. (Our own `matmul` fallback is not it: that one computes in fp32 throughout, for safety, see
    kernels.matmul_attention, and is slower.) q, k, v: (B, heads, L, head_dim)."""
    with torch.autocast(q.device.type, dtype=q.dtype, enabled=q.dtype in kernels.HALF_DTYPES):
        attn = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5  # (B, heads, L, L)
        return attn.softmax(dim=-1) @ v


def bench_attention(device, small: bool, iters: int, rounds: int, models=None) -> list[dict]:
    """The op alone: (batch*areas, heads, tokens, 32) shapes of our n and s neck at 640/1280, every kernel that runs
    there and YOLO12's own way, interleaved per shape."""
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
            runners = {}
            for kernel in (*kernels.KERNELS[1:], "yolo12"):
                if kernel != "yolo12" and not kernels.kernel_runs(kernel, device, dtype, shape[-1], shape[-2])[0]:
                    continue

                def step(kernel=kernel):
                    q.grad = k.grad = v.grad = None
                    out = yolo12_attention(q, k, v) if kernel == "yolo12" else kernels._run(kernel, q, k, v)
                    out.backward(g)

                runners[kernel] = step
            for kernel, (ms, spread) in interleaved(runners, device, iters, rounds).items():
                rows.append(dict(section="attention", device=where(device), shape=name, dims=list(shape),
                                 dtype=str(dtype)[6:], kernel=kernel, auto=kernel == auto, ms=ms, spread=spread,
                                 mib=peak_mib(runners[kernel], device)))
    return rows


BOXES_PER_IMAGE = 16  # random targets for Ultralytics' loss (the assigner's work grows with boxes x anchors)


def random_targets(batch: int, nc: int, device: torch.device) -> dict:
    """Ultralytics' training batch fields for BOXES_PER_IMAGE random boxes per image (normalized xywh, 2-40% of a
    side), the same in every run."""
    g = torch.Generator().manual_seed(0)
    n = batch * BOXES_PER_IMAGE
    boxes = torch.cat((torch.rand(n, 2, generator=g) * 0.6 + 0.2, torch.rand(n, 2, generator=g) * 0.38 + 0.02), 1)
    return {"batch_idx": torch.arange(batch).repeat_interleave(BOXES_PER_IMAGE).float().to(device),
            "cls": torch.randint(0, nc, (n, 1), generator=g).float().to(device), "bboxes": boxes.to(device)}


# "ultralytics": its v8DetectionLoss, what `yolo train` uses; "detector": the same loss as `detector train` computes
# it (detector.glue.loss.LeanDetectionLoss, same values and gradients; the batch carries its targets' host copies, as
# DetectorTrainer's does, so the loss never waits for the GPU); "synthetic": the network alone.
LOSSES = ("ultralytics", "detector", "synthetic")


def bench_train(device, small: bool, iters: int, rounds: int, models) -> list[dict]:
    """A training step as Ultralytics' trainer takes it (forward and loss under autocast, backward, SGD step), with
    its own detection loss (`model.loss`: the task-aligned assigner, DFL and BCE over every anchor) or a synthetic
    one (the mean of every output: the network alone); each loss's peak memory."""
    from ultralytics.cfg import get_cfg

    from .glue.loss import HOST_TARGETS, keep_host_targets, use_lean_loss

    imgsz, batch = (160, 4) if small else (640, 64)
    amp = device.type == "cuda"
    runners = {}
    for label in models:
        model = as_ultralytics_runs(build(label, device).train(), device, training=True)
        model.args = get_cfg()  # the loss gains (box, cls, dfl) at Ultralytics' defaults
        opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        x = torch.randn(batch, 3, imgsz, imgsz, device=device)  # NCHW, as the trainer passes its images
        on_host = random_targets(batch, model.model[-1].nc, torch.device("cpu"))
        targets = {"img": x, **{k: v.to(device) for k, v in on_host.items()}}
        keep_host_targets(on_host)  # as DetectorTrainer keeps them for `detector train`'s loss
        stock = model.init_criterion()
        lean = model.criterion if use_lean_loss(model) else stock  # (YOLO26n's end-to-end loss: Ultralytics' own)
        for loss_kind in LOSSES:

            def step(model=model, opt=opt, x=x, loss_kind=loss_kind,
                     targets=targets if loss_kind != "detector" else {**targets, HOST_TARGETS: on_host[HOST_TARGETS]},
                     criterion={"ultralytics": stock, "detector": lean}.get(loss_kind)):
                opt.zero_grad(set_to_none=True)
                with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                    if criterion is not None:
                        model.criterion = criterion
                        loss = model.loss(targets)[0].sum()
                    else:
                        loss = sum(t.float().mean() for t in tensors(model(x)))
                loss.backward()
                opt.step()

            runners[label, loss_kind] = step
    timed = interleaved(runners, device, iters, rounds)
    return [dict(section="train", device=where(device), precision="AMP fp16" if amp else "fp32", model=label,
                 loss=loss_kind, imgsz=imgsz, batch=batch, amp=amp, ms=ms, spread=spread,
                 mib=peak_mib(runners[label, loss_kind], device))
            for (label, loss_kind), (ms, spread) in timed.items()]


# How each model predicts: "yolo predict" in the memory format Ultralytics' predictor gives it (NCHW on CUDA),
# "detector predict" as `detector predict` and predict.py run it (channels-last on CUDA: precision.predicts_channels_last;
# elsewhere the same program, not timed twice).
INFER_RUNS = ("yolo predict", "detector predict")


def bench_infer(device, small: bool, iters: int, rounds: int, models) -> list[dict]:
    from .precision import predicts_channels_last

    imgsz = 160 if small else 640
    big = 4 if small else 64
    half = device.type == "cuda"
    runners = {}
    for label in models:
        model = build(label, device).fuse(verbose=False).eval()
        model = model.half() if half else model
        ours = copy.deepcopy(model) if predicts_channels_last(device) else None  # (copied before the format moves)
        variants = {"yolo predict": as_ultralytics_runs(model, device, training=False)}
        if ours is not None:
            variants["detector predict"] = ours.to(memory_format=torch.channels_last)
        for runs, variant in variants.items():
            for batch in (1, big):
                x = torch.randn(batch, 3, imgsz, imgsz, device=device, dtype=torch.float16 if half else torch.float32)

                def run(model=variant, x=x):
                    with torch.inference_mode():
                        return model(x)

                runners[label, runs, batch] = run
    return [dict(section="infer", device=where(device), precision="fp16" if half else "fp32", model=label, runs=runs,
                 imgsz=imgsz, batch=batch, half=half, ms=ms, spread=spread, img_per_s=batch / ms * 1e3)
            for (label, runs, batch), (ms, spread) in interleaved(runners, device, iters, rounds).items()]


PREDICT_RUNTIMES = ("torch", "onnx", "openvino")


def bench_predict(small: bool, iters: int, rounds: int, models, threads: int = 2, clock: str = "wall") -> list[dict]:
    """Batch 1 on the CPU, end to end through Ultralytics' predictor (`YOLO(file).predict`: letterbox, inference,
    NMS, results) on one coco8 photo, from each model's checkpoint (PyTorch, `threads` threads) and its exports by
    detector.export (ONNX Runtime, OpenVINO; each where its packages are installed, at its own default threads).
    clock "cpu": the process's CPU time, all its threads (robust where other jobs share the cores). glibc keeps freed
    memory for the next forward pass, as `detector predict` sets it on the CPU (detector.allocator): without it,
    whether the default's buffers are faulted in again at every call depends on what else the process holds (here:
    every model and runtime; research/scripts/page_faults.py times each setting in a process of its own)."""
    import cv2
    from ultralytics import YOLO

    from .allocator import keep_freed_memory
    from .export import DEFAULT_IMAGES, export, missing_packages, quiet

    kept = keep_freed_memory()

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    imgsz = 320 if small else 640
    cpu = torch.device("cpu")
    image = cv2.imread(str(sorted(DEFAULT_IMAGES.glob("*.jpg"))[0]))
    formats = [f for f in PREDICT_RUNTIMES[1:] if not missing_packages(f)]
    runners = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, label in enumerate(models):
            pt = Path(tmp) / f"m{i}.pt"
            torch.save({"model": build(label, cpu).half(), "train_args": {"imgsz": imgsz}}, pt)
            with quiet():
                files = {"torch": str(pt), **{f: export(str(pt), imgsz=imgsz, format=f) for f in formats}}
            for runtime, file in files.items():
                yolo = YOLO(file, task="detect")

                def run(yolo=yolo):
                    return yolo.predict(image, imgsz=imgsz, device="cpu", verbose=False)

                with quiet():  # the first call sets the predictor up (its "Loading ..." lines)
                    run()
                runners[label, runtime] = run
        times = interleaved(runners, cpu, iters, rounds, warmup=3, settle=1, clock=clock)
    torch.set_num_threads(before)
    rows = []
    for label in models:
        row = dict(section="predict", device=f"{where(cpu, threads)} (PyTorch)", precision="fp32", model=label,
                   imgsz=imgsz, batch=1, threads=threads, clock=clock, freed_memory_kept=kept)
        for runtime in PREDICT_RUNTIMES:
            row[f"{runtime}_ms"], row[f"{runtime}_spread"] = times.get((label, runtime), (None, None))
        rows.append(row)
    return rows


def bench_graphs(device, small: bool, iters: int, rounds: int, models) -> list[dict]:
    """Batch-1 GPU latency, eager against CUDA graphs: `torch.compile(mode="reduce-overhead")`, what Ultralytics'
    `compile=reduce-overhead` argument does to the model in predict (an opt-in for batch-1 serving: one graph replay
    instead of hundreds of kernel launches). Fused fp16 models, 640 (320 with --small). GPU only: `main` skips it on
    a CPU, where there are no CUDA graphs to measure."""
    imgsz = 320 if small else 640
    runners = {}
    for label in models:
        model = build(label, device).fuse(verbose=False).eval().half()
        x = torch.randn(1, 3, imgsz, imgsz, device=device, dtype=torch.float16)
        for how, m in (("eager", model), ("CUDA graphs", torch.compile(model, mode="reduce-overhead"))):

            def run(m=m, x=x):
                with torch.inference_mode():
                    return m(x)

            runners[label, how] = run
    # Compilation and graph capture happen in the first calls: a longer warm-up keeps them out of the timings.
    timed = interleaved(runners, device, iters, rounds, warmup=10)
    return [dict(section="graphs", device=where(device), precision="fp16", model=label, how=how, imgsz=imgsz, batch=1,
                 ms=ms, spread=spread) for (label, how), (ms, spread) in timed.items()]


def openvino_runners(model: torch.nn.Module, x: torch.Tensor, calibration: list[torch.Tensor], threads: int = 2
                     ) -> dict:
    """OpenVINO versions of `model` (in export mode), converted as `detector.export` converts them (Ultralytics'
    conversion, detector.glue.exporter.openvino_model; int8: NNCF with the head kept in float), compiled for
    `threads` threads. Keys: "fp32" pinned to f32, "auto" with OpenVINO's own precision choice (bf16 on CPUs with bf16 units),
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
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
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


def bench_cpu(small: bool, iters: int, rounds: int, models, threads: int = 2, clock: str = "wall") -> list[dict]:
    """Batch-1 latency on `threads` CPU threads: PyTorch, ONNX Runtime, OpenVINO fp32 / default precision / int8. A
    shared CPU's speed drifts over minutes, so the models are timed in interleaved rounds (every model and runtime,
    then again) and each gets the median over all rounds. Not call by call: ONNX Runtime's threads keep spinning for a
    while after a call, which slowed an OpenVINO call right after it by 1.3-1.5x (docs/benchmarks.md); each round's
    first call, not timed, absorbs that. Where other jobs share the cores, wall time measures them too (the spread
    column shows it: tens to hundreds of percent); `threads=1, clock="cpu"` then measures the process's own CPU time,
    which they barely touch. glibc keeps freed memory, as `detector predict` sets it on the CPU (see bench_predict)."""
    import numpy as np

    from .allocator import keep_freed_memory
    from .export import DEFAULT_IMAGES, load_images

    kept = keep_freed_memory()

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
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
        for i, label in enumerate(models):
            model = build(label, cpu).fuse(verbose=False).eval()
            predicting = as_ultralytics_runs(build(label, cpu).fuse(verbose=False).eval(), cpu, training=False)

            def run_torch(model=predicting):
                with torch.no_grad():
                    return model(x)

            runners[label, "torch"] = run_torch
            set_export_mode(model, True)
            if ort is not None:
                prepare_for_export(model, False)  # a static-size export, prepared as Ultralytics' exporter's copy is
                path = Path(tmp) / f"m{i}.onnx"
                torch.onnx.export(model, x, str(path), opset_version=17, dynamo=False, input_names=["images"])
                opts = ort.SessionOptions()
                opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
                sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
                feed = {"images": x.numpy().astype(np.float32)}
                runners[label, "onnx"] = lambda sess=sess, feed=feed: sess.run(None, feed)
            for key, fn in openvino_runners(model, x, calibration, threads).items():
                runners[label, key] = fn
            set_export_mode(model, False)
        times = interleaved(runners, cpu, iters, rounds, warmup=3, settle=1, clock=clock)
    torch.set_num_threads(before)
    precision = openvino_default_precision()
    rows = []
    for label in models:
        row = dict(section="cpu", device=where(cpu, threads), precision="fp32", clock=clock, model=label,
                   imgsz=imgsz, threads=threads, openvino_auto_precision=precision, freed_memory_kept=kept)
        for key, runtime in (("torch", "torch"), ("onnx", "onnx"), ("openvino_fp32", "fp32"),
                             ("openvino_auto", "auto"), ("openvino_int8", "int8")):
            row[f"{key}_ms"], row[f"{key}_spread"] = times.get((label, runtime), (None, None))
        rows.append(row)
    return rows


# Operators that only make a view (no kernel runs); reshape/contiguous/flatten count only where they copy.
VIEW_OPS = {"view", "_reshape_alias", "alias", "transpose", "permute", "expand", "unsqueeze", "squeeze", "slice",
            "select", "split", "split_with_sizes", "chunk", "narrow", "detach", "t", "unflatten", "_unsafe_view",
            "view_as", "unbind", "as_strided"}
MAYBE_VIEW_OPS = {"reshape", "contiguous", "flatten"}


def operator_calls(model: torch.nn.Module, x: torch.Tensor) -> int:
    """Operator calls that compute or copy in one forward (top-level ATen ops, views left out): on a GPU at batch 1
    each is at least one kernel launch, and launches, not arithmetic, set an n model's latency there."""
    from torch.profiler import ProfilerActivity, profile

    def copies(event) -> bool:
        return event.name in ("aten::copy_", "aten::clone") or any(copies(c) for c in event.cpu_children)

    with torch.no_grad():
        model(x)  # the head caches its anchors on the first call
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            model(x)
    top = [e for e in prof.events() if e.cpu_parent is None and e.name.startswith("aten::")]
    return sum(1 for e in top if e.name[6:] not in VIEW_OPS and (e.name[6:] not in MAYBE_VIEW_OPS or copies(e)))


def bench_ops(small: bool, models) -> list[dict]:
    imgsz = 320 if small else 640
    rows = []
    for label in models:
        model = build(label, torch.device("cpu")).fuse(verbose=False).eval()
        rows.append(dict(section="ops", device="CPU", precision="fp32", model=label, imgsz=imgsz, batch=1,
                         ops=operator_calls(model, torch.randn(1, 3, imgsz, imgsz))))
    return rows


def ratio(rows, key, row, base_variant: str | None = None):
    """row[key] over YOLO11n's in the same section, size and batch, run the same way (the training loss, the way
    inference runs), or YOLO11n's run the `base_variant` way."""
    way = "loss" if "loss" in row else "runs"
    base = next((r for r in rows if r.get("model") == BASELINE and all(r.get(k) == row.get(k) for k in
                                                                        ("section", "imgsz", "batch"))
                 and r.get(way) == (base_variant or row.get(way))), None)
    return f"{row[key] / base[key]:.2f}x" if base and base.get(key) and row.get(key) else "-"


def share(row: dict, key: str, base: str) -> str:
    """row[key] as a multiple of row[base] (two timings of the same model), or '-'."""
    return f"{row[key] / row[base]:.2f}x" if row.get(key) and row.get(base) else "-"


def fmt(x, digits=1):
    return "-" if x is None else f"{x:.{digits}f}"


def pct(x):
    return "-" if x is None else f"{100 * x:.0f}%"


def table(title: str, columns: list[str], lines: list[str]) -> list[str]:
    """A markdown table with a heading and a blank line after it. The heading names the class count where --nc set
    one other than the YAMLs' 80: a head's cost depends on it, so such tables compare only with each other."""
    if NUM_CLASSES not in (None, 80):
        title += f" ({NUM_CLASSES} classes)"
    return [f"### {title}", "", "| " + " | ".join(columns) + " |", "|---" * len(columns) + "|", *lines, ""]


NOISY = 0.5  # a spread above this (50%) is flagged under the tables


def cpu_timing_note(row: dict) -> str:
    """How a CPU section was timed, for its table's title."""
    note = ", process CPU time (not wall time)" if row["clock"] == "cpu" else ""
    return note + (", freed memory kept as `detector predict` keeps it" if row.get("freed_memory_kept") else "")


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
                         f"| {pct(r['spread'])} | {fmt(r['mib'], 0)} | {base['ms'] / r['ms']:.2f}x | "
                         f"{r['ms'] / fastest:.2f}x |")
        out += table(f"Attention op, forward+backward, {att[0]['device']}",
                     ["shape (B·areas, heads, tokens, hd)", "dtype", "kernel", "ms", "spread", "MiB",
                      "speed-up vs YOLO12's", "vs fastest SDPA"], lines)
    train = [r for r in rows if r["section"] == "train"]
    if train:
        out += table(f"Training step, {train[0]['device']}, {train[0]['precision']}",
                     ["model", "loss", "imgsz", "batch", "ms", "spread", "vs YOLO11n", "peak MiB", "vs YOLO11n"],
                     [f"| {r['model']} | {r['loss']} | {r['imgsz']} | {r['batch']} | {fmt(r['ms'])} | "
                      f"{pct(r['spread'])} | {ratio(train, 'ms', r)} | {fmt(r['mib'], 0)} | {ratio(train, 'mib', r)} |"
                      for r in train])
    infer = [r for r in rows if r["section"] == "infer"]
    if infer:
        out += table(f"Inference (fused), {infer[0]['device']}, {infer[0]['precision']}",
                     ["model", "runs as", "batch", "ms", "spread", "img/s", "latency vs YOLO11n",
                      "throughput vs YOLO11n"],
                     [f"| {r['model']} | {r.get('runs', '-')} | {r['batch']} | {fmt(r['ms'], 2)} | {pct(r['spread'])} | "
                      f"{fmt(r['img_per_s'], 0)} | {ratio(infer, 'ms', r)} | {ratio(infer, 'img_per_s', r)} |"
                      for r in infer])
    cpu = [r for r in rows if r["section"] == "cpu"]
    if cpu:
        auto = cpu[0].get("openvino_auto_precision") or "default"
        keys = ("torch_ms", "onnx_ms", "openvino_fp32_ms", "openvino_auto_ms", "openvino_int8_ms")
        clock = cpu_timing_note(cpu[0])
        out += table(f"{cpu[0]['device']}, batch 1{clock} (OpenVINO: fp32 pinned to f32; auto = its default, here "
                     f"{auto})",
                     ["model", "imgsz", "PyTorch ms", "vs YOLO11n", "ONNX Runtime ms", "vs YOLO11n", "OpenVINO fp32 ms",
                      "vs YOLO11n", f"OpenVINO auto ({auto}) ms", "vs YOLO11n", "OpenVINO int8 ms", "vs YOLO11n",
                      "spread (largest)"],
                     [f"| {r['model']} | {r['imgsz']} | " + " | ".join(
                         f"{fmt(r.get(key))} | {ratio(cpu, key, r)}" for key in keys) + " | "
                      + pct(max((r[k] for k in r if k.endswith("_spread") and r[k] is not None), default=None)) + " |"
                      for r in cpu])
        out += table("CPU, each model against itself: OpenVINO vs ONNX Runtime, int8 vs fp32",
                     ["model", "OpenVINO fp32 / ORT", f"OpenVINO auto ({auto}) / ORT", "int8 / OpenVINO fp32",
                      f"int8 / OpenVINO auto ({auto})"],
                     [f"| {r['model']} | {share(r, 'openvino_fp32_ms', 'onnx_ms')} | "
                      f"{share(r, 'openvino_auto_ms', 'onnx_ms')} | {share(r, 'openvino_int8_ms', 'openvino_fp32_ms')} | "
                      f"{share(r, 'openvino_int8_ms', 'openvino_auto_ms')} |" for r in cpu])
    predict = [r for r in rows if r["section"] == "predict"]
    if predict:
        keys = [f"{runtime}_ms" for runtime in PREDICT_RUNTIMES]
        clock = cpu_timing_note(predict[0])
        out += table(f"End-to-end predict (Ultralytics' predictor: pre-process, inference, NMS), {predict[0]['device']}, "
                     f"batch 1, {predict[0]['imgsz']}{clock}",
                     ["model", "PyTorch ms", "vs YOLO11n", "ONNX Runtime ms", "vs YOLO11n", "OpenVINO ms", "vs YOLO11n",
                      "spread (largest)"],
                     [f"| {r['model']} | " + " | ".join(f"{fmt(r.get(key))} | {ratio(predict, key, r)}" for key in keys)
                      + " | " + pct(max((r[k] for k in r if k.endswith("_spread") and r[k] is not None), default=None))
                      + " |" for r in predict])
    graphs = [r for r in rows if r["section"] == "graphs"]
    if graphs:
        eager = {r["model"]: r["ms"] for r in graphs if r["how"] == "eager"}
        out += table(f"Batch-1 latency, eager vs CUDA graphs (torch.compile reduce-overhead), {graphs[0]['device']}, "
                     f"fp16, {graphs[0]['imgsz']}",
                     ["model", "how", "ms", "spread", "vs YOLO11n eager", "vs its own eager"],
                     [f"| {r['model']} | {r['how']} | {fmt(r['ms'], 2)} | {pct(r['spread'])} | "
                      f"{r['ms'] / eager[BASELINE]:.2f}x | {r['ms'] / eager[r['model']]:.2f}x |" for r in graphs])
    ops = [r for r in rows if r["section"] == "ops"]
    if ops:
        out += table("Operator calls that compute or copy, per batch-1 forward (fused, eval; PyTorch profiler, CPU)",
                     ["model", "imgsz", "operator calls", "vs YOLO11n"],
                     [f"| {r['model']} | {r['imgsz']} | {r['ops']} | {ratio(ops, 'ops', r)} |" for r in ops])
    spreads = [r[k] for r in rows for k in r if k.endswith("spread") and r.get(k) is not None]
    if spreads and max(spreads) > NOISY:
        out.append(f"Spread up to {100 * max(spreads):.0f}%: the machine's speed changed between rounds (other jobs on "
                   "these cores?); differences smaller than the spread are noise. On a shared CPU, `--only cpu "
                   "--threads 1 --clock cpu` measures this process's own CPU time.\n")
    return "\n".join(out)


SUMMARY = (  # (row title, section, which of its rows, key[, how YOLO11n ran to compare with: loss, predictor])
    ("train step, Ultralytics' loss", "train", lambda r: r["loss"] == "ultralytics", "ms"),
    ("train step, `detector train` vs YOLO11n's `yolo train`", "train", lambda r: r["loss"] == "detector", "ms",
     "ultralytics"),
    ("train step, synthetic loss", "train", lambda r: r["loss"] == "synthetic", "ms"),
    ("peak train memory, Ultralytics' loss", "train", lambda r: r["loss"] == "ultralytics", "mib"),
    ("peak train memory, `detector train` vs YOLO11n's `yolo train`", "train", lambda r: r["loss"] == "detector",
     "mib", "ultralytics"),
    ("inference latency", "infer", lambda r: r["batch"] == 1 and r.get("runs") == "yolo predict", "ms"),
    ("inference throughput", "infer", lambda r: r["batch"] > 1 and r.get("runs") == "yolo predict", "img_per_s"),
    ("inference latency, `detector predict` vs YOLO11n's `yolo predict`", "infer",
     lambda r: r["batch"] == 1 and r.get("runs") == "detector predict", "ms", "yolo predict"),
    ("inference throughput, `detector predict` vs YOLO11n's `yolo predict`", "infer",
     lambda r: r["batch"] > 1 and r.get("runs") == "detector predict", "img_per_s", "yolo predict"),
    ("CPU predict end to end, PyTorch", "predict", lambda r: True, "torch_ms"),
    ("CPU predict end to end, ONNX Runtime", "predict", lambda r: True, "onnx_ms"),
    ("CPU predict end to end, OpenVINO", "predict", lambda r: True, "openvino_ms"),
)


def summary(rows: list[dict]) -> str:
    """One table, a row per measurement and a column per model: its ratio to YOLO11n in this run, '-' where not
    measured (throughput: above 1 is better; every other row: below 1)."""
    models = list(dict.fromkeys(r["model"] for r in rows if "model" in r))
    lines = []
    for title, section, which, key, *base_way in SUMMARY:
        picked = [r for r in rows if r["section"] == section and r.get(key) and which(r)]
        if picked:
            pool = [r for r in rows if r["section"] == section and r.get(key)]
            cells = [next((ratio(pool, key, r, *base_way) for r in picked if r["model"] == label), "-")
                     for label in models]
            lines.append(f"| {title} ({picked[0]['imgsz']}, b{picked[0]['batch']}) | " + " | ".join(cells) + " |")
    return "\n".join(table("Summary: ratios to YOLO11n (throughput: higher is better; the rest: lower is better)",
                            ["measurement", *models], lines)) if lines else ""


def machine() -> str:
    import ultralytics

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), cpu)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{time.strftime('%Y-%m-%d')}; {cpu}, {os.cpu_count()} cores; {gpu}; torch {torch.__version__}, "
            f"CUDA {torch.version.cuda}, ultralytics {ultralytics.__version__}")


def pick_models(names: str | None) -> list[str]:
    """MODELS' labels named in a ';'-separated list (labels hold commas), each a full label or its part before ' ('
    (which picks every label that starts so), or the path of a model YAML (a variant, added to MODELS under its file
    name); DEFAULT_MODELS without a list. YOLO11n always first: every ratio is to it."""
    if not names:
        return list(DEFAULT_MODELS)
    wanted = {n.strip() for n in names.split(";") if n.strip()}
    for path in [n for n in wanted if n.endswith((".yaml", ".yml")) and Path(scaleless(n)).is_file()]:
        MODELS.setdefault(Path(path).stem, (path, False))
        wanted = wanted - {path} | {Path(path).stem}
    picked = [label for label in MODELS if label in wanted or label.split(" (")[0] in wanted]
    unknown = wanted - set(picked) - {label.split(" (")[0] for label in picked}
    if unknown:
        raise ValueError(f"--models: unknown {', '.join(sorted(unknown))}; choose from {', '.join(MODELS)}")
    return [BASELINE] + [label for label in picked if label != BASELINE]


def deterministic_as_ultralytics_trains() -> None:
    """Deterministic algorithms as Ultralytics' trainer sets them by default (deterministic=True in its init_seeds):
    PyTorch's, warning where an op has none, without filling new memory; cuDNN's."""
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.utils.deterministic.fill_uninitialized_memory = False


SECTIONS = ("train", "infer", "predict", "cpu", "attention", "ops", "graphs")
DEFAULT_SECTIONS = SECTIONS[:3]  # every row of the summary


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--small", action="store_true", help="reduced sizes (CPU, CI)")
    p.add_argument("--only", default=",".join(DEFAULT_SECTIONS),
                   help=f"comma-separated sections (default: {','.join(DEFAULT_SECTIONS)}; choose from "
                        f"{', '.join(SECTIONS)})")
    p.add_argument("--models", default=None, help="';'-separated model labels (default: the summary's six); YOLO11n always runs")
    p.add_argument("--iters", type=int, default=None, help="timed iterations per measurement (default 20)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds the iterations are spread over")
    p.add_argument("--threads", type=int, default=2, help="PyTorch's CPU threads in the predict and cpu sections (default 2)")
    p.add_argument("--clock", choices=tuple(CLOCKS), default="wall",
                   help="predict and cpu sections: wall time, or this process's CPU time (robust on a shared CPU)")
    p.add_argument("--nc", type=int, default=None,
                   help="build every model with this many classes (default: the YAMLs' 80; "
                        "e.g. 3 for the hard-hat split)")
    p.add_argument("--deterministic", action="store_true",
                   help="deterministic algorithms, as Ultralytics' trainer runs by default (deterministic=True: "
                        "PyTorch's, warning where there are none, without filling new memory; cuDNN's)")
    p.add_argument("--json", default=None, help="also write every row to this JSON file")
    args = p.parse_args(argv)
    if args.nc is not None and args.nc < 1:
        p.error(f"--nc: must be >= 1, got {args.nc}")
    global NUM_CLASSES
    NUM_CLASSES = args.nc
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        p.error(f"--only: unknown section(s) {', '.join(sorted(unknown))}")
    try:
        models = pick_models(args.models)
    except ValueError as e:
        p.error(str(e))
    device = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    iters = args.iters or 20
    if args.deterministic:
        deterministic_as_ultralytics_trains()
    print(f"machine: {machine()}; classes: {args.nc or 'as in each YAML (80)'}"
          f"{'; deterministic algorithms' if args.deterministic else ''}", flush=True)
    rows = []
    for section in sections:
        if section == "cpu":
            rows += bench_cpu(args.small, iters, args.rounds, models, args.threads, args.clock)
        elif section == "predict":
            rows += bench_predict(args.small, iters, args.rounds, models, args.threads, args.clock)
        elif section == "ops":
            rows += bench_ops(args.small, models)
        else:
            if section == "graphs" and device.type != "cuda":
                print("graphs: skipped, CUDA graphs need a CUDA GPU", flush=True)
                continue
            run = {"attention": bench_attention, "train": bench_train, "infer": bench_infer,
                   "graphs": bench_graphs}[section]
            rows += run(device, args.small, iters, args.rounds, models)
        print(markdown([r for r in rows if r["section"] == section]), flush=True)
    print(summary(rows), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine(), "nc": args.nc, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
