"""`python -m detector.check`: what this machine can run, and which attention kernel the policy picks where.

Prints torch/CUDA/cuDNN/Ultralytics versions, each device with its compute capability, and for every device and
dtype a row saying which kernels run (tried for real, forward and backward) and what `auto` chooses.
"""

from __future__ import annotations

import sys

import torch

from . import kernels
from .utils import dtype_name


def devices() -> list[torch.device]:
    found = [torch.device("cpu")]
    if torch.cuda.is_available():
        found += [torch.device("cuda", i) for i in range(torch.cuda.device_count())]
    return found


def dtypes(device: torch.device) -> list[torch.dtype]:
    return [torch.float16, torch.bfloat16, torch.float32] if device.type == "cuda" else [torch.float32]


def report(head_dim: int = 32, tokens: int = 400) -> str:
    import ultralytics

    from . import __version__

    lines = [
        f"detector {__version__}, ultralytics {ultralytics.__version__}, torch {torch.__version__}, "
        f"CUDA {torch.version.cuda or 'none'}, cuDNN {torch.backends.cudnn.version() if torch.cuda.is_available() else 'n/a'}",
    ]
    for d in devices():
        if d.type == "cuda":
            major, minor = torch.cuda.get_device_capability(d)
            lines.append(f"{d}: {torch.cuda.get_device_name(d)}, compute capability {major}.{minor}")
        else:
            lines.append(f"cpu: {torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()}")
    name, source = kernels.requested_kernel()
    lines += [f"requested kernel: {name} (from {source}); shape checked: head_dim={head_dim}, {tokens} tokens", "",
              "| device | dtype | " + " | ".join(k for k in kernels.KERNELS[1:]) + " | chosen | why |",
              "|---" * (len(kernels.KERNELS) + 3) + "|"]
    for d in devices():
        for dt in dtypes(d):
            cells = []
            for k in kernels.KERNELS[1:]:
                ok, why = kernels.kernel_runs(k, d, dt, head_dim, tokens)
                cells.append("yes" if ok else f"no: {why}")
            try:
                choice = kernels.select(d, dt, head_dim, tokens)
                chosen, why = choice.kernel, choice.reason
            except kernels.KernelUnavailable as e:
                chosen, why = "ERROR", str(e)
            lines.append(f"| {d} | {dtype_name(dt)} | " + " | ".join(cells) + f" | {chosen} | {why} |")
    return "\n".join(lines)


def main() -> int:
    try:
        kernels.requested_kernel()
    except ValueError as e:
        print(f"detector.check: error: {e}", file=sys.stderr)
        return 2
    print(report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
