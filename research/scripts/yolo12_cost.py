"""Where YOLO12n's cost over YOLO11n is, on our kernels: per attention kernel, and with the attention layers removed.

    python research/scripts/yolo12_cost.py              # a GPU (H100: about a minute)
    python research/scripts/yolo12_cost.py --small      # reduced sizes, a CPU (what the test runs)

Prints one markdown table: YOLO11n, stock YOLO12n (Ultralytics' matmul attention), YOLO12n on our layers with each
attention kernel the policy can force (`DETECTOR_ATTN`), and YOLO12n with every area-attention layer's work removed
(the layer returns its input: no qkv, attention, pe or proj; a lower bound for any attention implementation), for
batch-1 and large-batch inference (fused, fp16 on a GPU) and a training step (AMP on a GPU), each in the memory format
Ultralytics runs it in (detector.bench.as_ultralytics_runs). Timed in interleaved rounds with the bench's own
`interleaved` (medians; "spread" as there). Random weights; ratios to YOLO11n and to stock YOLO12n in the same run.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from detector import attention, bench, kernels  # noqa: E402

OURS, STOCK = "YOLO12n (ours, SDPA)", "YOLO12n (stock, matmul)"
REMOVED = "removed"  # the variant with the attention layers' work removed


def variants(device: torch.device) -> dict[str, tuple[str, str]]:
    """name -> (bench model label, kernel: a DETECTOR_ATTN value, "" for the model's own, or REMOVED)."""
    forced = ("cudnn", "flash", "efficient", "matmul") if device.type == "cuda" else ("flash", "matmul")
    return {"YOLO11n": ("YOLO11n", ""), "YOLO12n stock": (STOCK, ""),
            **{f"YOLO12n ours, {k}": (OURS, k) for k in forced},
            "YOLO12n ours, attention layers removed": (OURS, REMOVED)}


class Switch:
    """Sets, before each timed call, what that call runs: the kernel the policy is forced to, or no attention work."""

    removed = False
    forward = attention.AreaAttention.forward

    @classmethod
    def install(cls) -> None:
        attention.AreaAttention.forward = lambda self, x: x if cls.removed else cls.forward(self, x)

    @classmethod
    def uninstall(cls) -> None:
        attention.AreaAttention.forward = cls.forward

    @classmethod
    def set(cls, kernel: str) -> None:
        cls.removed = kernel == REMOVED
        kernels.set_kernel(kernel if kernel and kernel != REMOVED else None)


def runners(device: torch.device, small: bool) -> dict[tuple[str, str], callable]:
    half = device.type == "cuda"
    imgsz, big, train_batch = (160, 4, 2) if small else (640, 64, 64)
    built = {}
    for label in {label for label, _ in variants(device).values()}:
        model = bench.build(label, device).fuse(verbose=False).eval()
        built[label, "infer"] = bench.as_ultralytics_runs(model.half() if half else model, device, training=False)
        built[label, "train"] = bench.as_ultralytics_runs(bench.build(label, device).train(), device, training=True)
    out = {}
    for name, (label, kernel) in variants(device).items():
        for batch in (1, big):
            x = torch.randn(batch, 3, imgsz, imgsz, device=device, dtype=torch.float16 if half else torch.float32)

            def infer(model=built[label, "infer"], x=x, kernel=kernel):
                Switch.set(kernel)
                with torch.inference_mode():
                    return model(x)

            out[name, f"infer b{batch}"] = infer
        model = built[label, "train"]
        opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        x = torch.randn(train_batch, 3, imgsz, imgsz, device=device)

        def step(model=model, opt=opt, x=x, kernel=kernel):
            Switch.set(kernel)
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=torch.float16, enabled=half):
                loss = sum(t.float().mean() for t in bench.tensors(model(x)))  # synthetic loss over every output
            loss.backward()
            opt.step()

        out[name, f"train b{train_batch}"] = step
    return out


def table(times: dict, device: torch.device) -> str:
    cases = list(dict.fromkeys(case for _, case in times))
    lines = [f"### YOLO12n's cost, {bench.where(device)} (inference fused, fp16 on a GPU; training AMP on a GPU)", "",
             "| variant | " + " | ".join(f"{c} ms | vs YOLO11n | vs stock YOLO12n" for c in cases) + " | spread |",
             "|---" * (3 * len(cases) + 2) + "|"]
    for name in dict.fromkeys(name for name, _ in times):
        cells, spread = [], 0.0
        for case in cases:
            ms, s = times[name, case]
            spread = max(spread, s or 0.0)
            base, stock = times["YOLO11n", case][0], times["YOLO12n stock", case][0]
            cells += [f"{ms:.2f}", f"{ms / base:.2f}x", f"{ms / stock:.3f}x"]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {spread:.0%} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--small", action="store_true", help="reduced sizes (CPU)")
    p.add_argument("--iters", type=int, default=None, help="timed iterations per measurement (default 80, --small 2)")
    p.add_argument("--rounds", type=int, default=8, help="interleaved rounds")
    args = p.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(bench.machine())
    Switch.install()
    before = os.environ.get(kernels.ENV_VAR)
    try:
        times = bench.interleaved(runners(device, args.small), device, args.iters or (2 if args.small else 80),
                                  args.rounds)
    finally:
        Switch.set(before or "")
        Switch.uninstall()
    print(table(times, device))
    return 0


if __name__ == "__main__":
    sys.exit(main())
