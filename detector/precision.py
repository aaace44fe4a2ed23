"""Training precision and the device it runs on: what `--precision` and `--device` mean before training starts; and
the memory format prediction and validation run in on a device (`predicts_channels_last`).

Ultralytics' `amp` setting already has a bf16 mode: BaseTrainer._do_train wraps the forward pass in
`ultralytics.utils.torch_utils.autocast(torch.bfloat16 if args.amp == "bf16" else self.amp, ...)`, and
`_setup_train` builds the GradScaler disabled for "bf16" (bfloat16 has float32's exponent range: no loss scaling)
and skips the fp16 AMP check. So `--precision bf16` only has to set `amp="bf16"`; nothing is overridden. DDP
workers get it with the rest of the trainer's args. Ultralytics' autocast refuses bfloat16 off CUDA, or on a GPU
without native bf16 (before sm80), after the run folder exists: `check_precision` refuses those first.
(detector.glue.trainer checks that BaseTrainer still reads "bf16" this way.)
"""

from __future__ import annotations

import torch

from .choices import PRECISIONS  # our --precision -> Ultralytics' `amp` value

AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def precision_of(amp) -> str:
    """Our precision name for an Ultralytics `amp` value (True/'fp16', 'bf16', False/'fp32'), e.g. a checkpoint's."""
    return {"bf16": "bf16", "False": "fp32", "fp32": "fp32"}.get(str(amp), "fp16")


def check_precision(precision: str, device: torch.device) -> None:
    """Raise ValueError if training in `precision` cannot run on `device` (only bf16 has requirements)."""
    if precision != "bf16":
        return
    if device.type != "cuda":
        raise ValueError(f"--precision bf16 needs a CUDA GPU (sm80 or newer); this run is on {device.type}, "
                         "which trains in float32")
    major, minor = torch.cuda.get_device_capability(device)
    if major < 8:
        raise ValueError(f"--precision bf16 needs a GPU with native bfloat16 (sm80 or newer); {device} is "
                         f"sm{major}{minor}: use --precision fp16")


def resolve_device(device: str | None) -> torch.device:
    """The device Ultralytics will use for `device` as it reads it ('' or None: GPU 0 if there is one, else CPU; 'cpu',
    '0', '0,1' (DDP, first GPU returned), 'cuda', 'cuda:1', 'mps'). Raises ValueError naming --device for GPUs that
    are not there and for what is no device at all. (Ultralytics' own select_device would do this, but also sets
    CUDA_VISIBLE_DEVICES for the whole process.)"""
    spec = str(device or "").strip().lower().removeprefix("cuda:")
    if spec == "cpu" or (not spec and not torch.cuda.is_available()):
        return torch.device("cpu")
    if spec in ("", "cuda") or spec.replace(",", "").isdigit():
        indices = [int(i) for i in spec.split(",") if i.strip().isdigit()] or [0]
        if not torch.cuda.is_available():
            raise ValueError(f"--device {device}: no CUDA GPU is available here; use --device cpu")
        if max(indices) >= torch.cuda.device_count():
            raise ValueError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
        return torch.device("cuda", indices[0])
    if spec == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ValueError(f"--device {device}: no Apple GPU (MPS) is available here; use --device cpu")
        return torch.device("mps")
    raise ValueError(f"--device {device}: expected cpu, a CUDA GPU index (0), indices (0,1), cuda or mps")


def training_device(device: str | None, precision: str) -> tuple[torch.device, torch.dtype]:
    """The device training will use (see resolve_device), and the dtype attention runs in there (autocast's on CUDA,
    else float32). Raises ValueError for devices that are not there."""
    torch_device = resolve_device(device)
    return torch_device, AUTOCAST_DTYPES[precision] if torch_device.type == "cuda" else torch.float32


def predicts_channels_last(device: torch.device) -> bool:
    """Whether `detector predict`, `detector val` and predict.py run a PyTorch model channels-last (Ultralytics'
    `channels_last=True`): on CUDA. Ultralytics' default turns it on for x86 CPUs only and leaves CUDA models NCHW,
    where cuDNN converts every convolution's input and output between layouts. On one H100 (2026-12-06,
    research/scripts/infer_cost.py, b64@640 fp16) channels-last took YOLO11n's forward from 13.96 to 12.44 ms and the
    default's from 15.86 to 13.31 ms; Ultralytics' trainer trains channels-last on CUDA already."""
    return device.type == "cuda"
