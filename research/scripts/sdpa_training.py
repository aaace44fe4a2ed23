"""Which SDPA kernel trains fastest at our area-attention shapes: forward + backward of the op alone, in our layer's
memory layout, and the whole training step of YOLO12n on our layers and of the default with each kernel forced.
Ratios are paired by round against cuDNN (what `auto` picks on Hopper).

    python research/scripts/sdpa_training.py             # a GPU (H100: about a minute)
    python research/scripts/sdpa_training.py --rounds 4  # quicker, noisier

The op: q, k, v as the strided slices of one (B', tokens, heads, 3 * 32) tensor that `AreaAttention` hands SDPA, fp16,
at YOLO12n's b64@640 shapes (P4: 256 area-batches x 2 heads x 400 tokens; P5: 64 x 4 x 400). The step: b64@640, AMP
fp16, channels-last (as Ultralytics trains), random boxes, `detector train`'s loss (LeanDetectionLoss), SGD; 5 steps a
round per runner, interleaved.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

KERNELS = ("cudnn", "flash", "efficient")
MODELS = ("YOLO12n (ours, SDPA)", "yolo11n-an (ours)", "YOLO11n")
OP_SHAPES = ((256, 400, 2, 96), (64, 400, 4, 96))  # (B', tokens, heads, 3 * head dim)


def paired(times: list[float], base: list[float]) -> str:
    """Median and quartiles of the per-round ratios times / base."""
    r = sorted(a / b for a, b in zip(times, base))
    return f"{r[len(r) // 2]:.3f} ({r[len(r) // 4]:.3f}-{r[3 * len(r) // 4]:.3f})"


def op_alone(device: torch.device, rounds: int) -> None:
    from torch.nn.attention import sdpa_kernel

    from detector.kernels import SDPA_BACKENDS

    print("| op shape (B', tokens, heads, 3 * head dim) | cuDNN fwd+bwd us | flash / cuDNN | memory-efficient / cuDNN |")
    print("|---|---|---|---|")
    for shape in OP_SHAPES:
        tokens = torch.randn(*shape, device=device, dtype=torch.float16, requires_grad=True)
        grad = torch.randn(*shape[:3], shape[3] // 3, device=device, dtype=torch.float16)

        def step(kernel, tokens=tokens, grad=grad):
            q, k, v = tokens.transpose(1, 2).chunk(3, dim=-1)  # (B', heads, tokens, 32), stride 1 in head dim
            with sdpa_kernel(SDPA_BACKENDS[kernel]):
                out = F.scaled_dot_product_attention(q, k, v)
            out.transpose(1, 2).backward(grad)

        times = {k: [] for k in KERNELS}
        for kernel in KERNELS:
            for _ in range(5):
                step(kernel)
        for _ in range(rounds):
            for kernel in KERNELS:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                for _ in range(20):
                    step(kernel)
                end.record()
                torch.cuda.synchronize()
                times[kernel].append(start.elapsed_time(end) / 20 * 1e3)
        base = times["cudnn"]
        print(f"| {shape} | {statistics.median(base):.0f} | {paired(times['flash'], base)} | "
              f"{paired(times['efficient'], base)} |")


def training_steps(device: torch.device, rounds: int) -> None:
    from ultralytics.cfg import get_cfg

    from detector import bench, kernels
    from detector.glue.loss import HOST_TARGETS, keep_host_targets, use_lean_loss

    runners = {}
    for label in MODELS:
        model = bench.as_ultralytics_runs(bench.build(label, device).train(), device, training=True)
        model.args = get_cfg()
        opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        on_host = bench.random_targets(64, model.model[-1].nc, torch.device("cpu"))
        targets = {"img": torch.randn(64, 3, 640, 640, device=device),
                   **{k: v.to(device) for k, v in on_host.items()}}
        keep_host_targets(on_host)
        targets[HOST_TARGETS] = on_host[HOST_TARGETS]
        use_lean_loss(model)
        for kernel in KERNELS if label != "YOLO11n" else ("cudnn",):  # (YOLO11n's C2PSA: the baseline only)

            def step(model=model, opt=opt, targets=targets, kernel=kernel):
                kernels.set_kernel(kernel)
                opt.zero_grad(set_to_none=True)
                with torch.autocast("cuda", dtype=torch.float16):
                    loss = model.loss(targets)[0].sum()
                loss.backward()
                opt.step()

            runners[label, kernel] = step
    for step in runners.values():
        for _ in range(3):
            step()
    times = {key: [] for key in runners}
    for _ in range(rounds):
        for key, step in runners.items():
            torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(5):
                step()
            torch.cuda.synchronize()
            times[key].append((time.perf_counter() - start) / 5 * 1e3)
    kernels.set_kernel(None)
    yolo11n = times["YOLO11n", "cudnn"]
    print(f"\n| model (training step, YOLO11n {statistics.median(yolo11n):.1f} ms) | cuDNN ms | flash / cuDNN | "
          "memory-efficient / cuDNN | cuDNN / YOLO11n |")
    print("|---|---|---|---|---|")
    for label in MODELS[:2]:
        base = times[label, "cudnn"]
        print(f"| {label} | {statistics.median(base):.2f} | {paired(times[label, 'flash'], base)} | "
              f"{paired(times[label, 'efficient'], base)} | {paired(base, yolo11n)} |")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=12, help="rounds of training steps")
    p.add_argument("--op-rounds", type=int, default=30, help="rounds of the op alone (20 calls each)")
    a = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("sdpa_training.py compares CUDA kernels: it needs a GPU")
        return 0
    device = torch.device("cuda")
    op_alone(device, a.op_rounds)
    training_steps(device, a.rounds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
