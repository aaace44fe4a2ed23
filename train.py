"""Train a detector with the Ultralytics trainer.

    python train.py                                   # n-scale attention-neck model on the bundled coco8
    python train.py --model yolo11s-an.yaml --data coco128.yaml --epochs 100 --device 0,1
    python train.py --model yolo12n.yaml --attn flash lr0=0.005 mosaic=0.5   # YOLO12 on SDPA; extra key=value
    python train.py --resume runs/detect/train/weights/last.pt
    python train.py --device 0 --precision bf16                # bfloat16 autocast, no loss scaling (sm80+ GPUs)

Any Ultralytics training setting not listed in --help can be passed as key=value, as with the `yolo` CLI.

Before anything is written, the model, the attention kernel, the precision and the dataset are checked: a problem
that would stop training stops here, exit status 2, with one line `train.py: error: ...`. Label files are checked
line by line: a bad line is skipped with `train.py: warning: <file>:<line>: <problem>, line skipped` (Ultralytics
alone would drop the whole image), and images without labels are counted as backgrounds.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

import torch

from detector import assets, kernels
from detector import weights as weights_io
from detector import ultralytics_glue as glue

PRECISIONS = tuple(glue.PRECISIONS)  # fp16, bf16, fp32
# Settings with their own option: as key=value they would clash with it (and --precision is Ultralytics' `amp`).
OWN_OPTIONS = {"model": "--model", "data": "--data", "epochs": "--epochs", "imgsz": "--imgsz", "batch": "--batch",
               "device": "--device", "workers": "--workers", "amp": "--precision", "resume": "--resume",
               "project": "--project", "name": "--name", "seed": "--seed"}


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=assets.DEFAULT_MODEL, help="model YAML (models/ or Ultralytics') or .pt")
    p.add_argument("--data", default=assets.DEFAULT_DATA, help="dataset YAML (data/ or a path)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--batch", type=float, default=16, help="batch size; -1 or a fraction for Ultralytics AutoBatch")
    p.add_argument("--device", default=None, help="'' or omitted for GPU if present, 'cpu', '0', or '0,1' for DDP")
    p.add_argument("--workers", type=int, default=8, help="dataloader workers per process")
    p.add_argument("--precision", choices=PRECISIONS, default="fp16",
                   help="GPU training precision: fp16 = Ultralytics AMP (float16 autocast with a GradScaler), bf16 = "
                        "bfloat16 autocast without one (sm80+ GPUs), fp32 = no autocast. CPU training is float32 "
                        "(bf16 is refused there)")
    p.add_argument("--no-amp", dest="precision", action="store_const", const="fp32", help="same as --precision fp32")
    p.add_argument("--amp", dest="precision", action="store_const", const="fp16", help=argparse.SUPPRESS)
    p.add_argument("--resume", nargs="?", const=True, default=False,
                   help="resume an interrupted run: give its last.pt (or nothing, with --model last.pt)")
    p.add_argument("--project", default="runs/detect",
                   help="parent folder of runs, relative to the current folder (Ultralytics alone would put a relative "
                        "one under its settings' runs_dir)")
    p.add_argument("--name", default="train", help="run folder name (incremented if it exists)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--attn", default=None, choices=kernels.KERNELS,
                   help=f"attention kernel (default: ${kernels.ENV_VAR} or auto)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="any other Ultralytics training setting")
    args = p.parse_args(argv)

    extra = {}
    for item in args.overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            p.error(f"argument '{item}': expected key=value")
        try:
            extra[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            extra[key] = value  # a plain string, e.g. optimizer=AdamW
    from ultralytics.cfg import DEFAULT_CFG_DICT

    clashing = sorted(set(extra) & set(OWN_OPTIONS))
    if clashing:
        p.error(", ".join(f"'{k}=...': use {OWN_OPTIONS[k]}" for k in clashing))
    unknown = sorted(set(extra) - set(DEFAULT_CFG_DICT))
    if unknown:
        p.error(f"unknown Ultralytics setting(s): {', '.join(unknown)} (see 'yolo cfg' for the valid keys)")
    return args, extra


def training_device(device: str | None, precision: str) -> tuple[torch.device, torch.dtype]:
    """The device the trainer will use and the dtype attention runs in there (autocast's on CUDA, else float32)."""
    spec = str(device or "").strip().lower()
    if spec == "cpu" or (not spec and not torch.cuda.is_available()):
        return torch.device("cpu"), torch.float32
    if spec in ("", "cuda") or spec[0].isdigit():
        indices = [int(i) for i in spec.split(",") if i.strip().isdigit()] or [0]
        if not torch.cuda.is_available():
            raise ValueError(f"--device {device}: no CUDA GPU is available here; use --device cpu")
        if max(indices) >= torch.cuda.device_count():
            raise ValueError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
        return torch.device("cuda", indices[0]), glue.AUTOCAST_DTYPES[precision]
    return torch.device(spec), torch.float32


def first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def load_model(path: str):
    """ultralytics.YOLO for a YAML or a .pt (weights-only files, e.g. the shipped weights, load without pickle: they
    train as pretrained weights), its failures as one-line ValueErrors (Ultralytics raises TypeError, KeyError, ...)."""
    from ultralytics import YOLO

    try:
        return weights_io.load(path) if path.endswith(".pt") else YOLO(path)
    except Exception as e:
        if path.endswith(".pt"):
            raise ValueError(f"model '{path}': cannot load it: empty, truncated or not a checkpoint "
                             f"({type(e).__name__})") from None
        raise ValueError(f"model '{path}': cannot build it: {type(e).__name__}: {first_line(e)}") from None


def main(argv: list[str] | None = None) -> int:
    args, extra = parse_args(argv)
    from ultralytics.utils import LOGGER

    # Everything that can be wrong with the request is found here, before Ultralytics creates the run folder.
    reports = []
    try:
        if args.attn:
            kernels.set_kernel(args.attn)
        if args.resume:
            weights = assets.resolve_model(args.model if args.resume is True else args.resume)
            model = load_model(weights)
            problem = glue.resume_problem(model.ckpt, weights)
            if problem:
                raise ValueError(problem)
            # The run continues with the settings saved in the checkpoint; --device (and key=value settings
            # Ultralytics allows on resume, e.g. workers=) may change them.
            saved = glue.checkpoint_train_args(model.ckpt)
            if saved.get("data"):
                reports = assets.check_dataset(assets.resolve_data(str(saved["data"])), bool(saved.get("single_cls")))
            train_args = {"resume": True, **extra, **({"device": args.device} if args.device is not None else {})}
            device = train_args.get("device", saved.get("device"))
            precision = glue.precision_of(saved.get("amp", True))
            imgsz = saved.get("imgsz") or args.imgsz
            imgsz = int(max(imgsz) if isinstance(imgsz, (list, tuple)) else imgsz)
        else:
            data = assets.resolve_data(args.data)
            reports = assets.check_dataset(data, single_cls=bool(extra.get("single_cls")))
            model = load_model(assets.resolve_model(args.model))
            train_args = dict(data=data, epochs=args.epochs, imgsz=args.imgsz,
                              batch=int(args.batch) if args.batch >= 1 or args.batch == -1 else args.batch,
                              device=args.device, workers=args.workers, amp=glue.PRECISIONS[args.precision],
                              project=str(Path(args.project).resolve()), name=args.name, seed=args.seed, **extra)
            device, precision, imgsz = args.device, args.precision, args.imgsz
        torch_device, dtype = training_device(device, precision)
        glue.check_precision(precision, torch_device)
        # Tokens per area at the typical call sites: YOLO12's P4 with 4 areas, the same count as yolo11-an's P5 with
        # one area ((imgsz / 32)^2).
        area_tokens = (imgsz // 16) ** 2 // 4
        kernel_line = kernels.describe(torch_device, dtype, tokens=area_tokens)
    except (FileNotFoundError, ValueError, kernels.KernelUnavailable, RuntimeError) as e:
        print(f"train.py: error: {first_line(e)}", file=sys.stderr)
        return 2

    for report in reports:
        for warning in report.warnings():
            print(f"train.py: warning: {warning}", file=sys.stderr)
        print(f"train.py: {report.info()}", file=sys.stderr)
    LOGGER.info(kernel_line)
    model.train(trainer=glue.DetectorTrainer, **train_args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
