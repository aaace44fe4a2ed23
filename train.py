"""Train a detector with the Ultralytics trainer.

    python train.py                                   # n-scale attention-neck model on the bundled coco8
    python train.py --model yolo11s-an.yaml --data coco128.yaml --epochs 100 --device 0,1
    python train.py --model yolo12n.yaml --attn flash lr0=0.005 mosaic=0.5   # YOLO12 on SDPA; extra key=value
    python train.py --resume runs/detect/train/weights/last.pt

Any Ultralytics training setting not listed in --help can be passed as key=value, as with the `yolo` CLI.
"""

from __future__ import annotations

import argparse
import ast
import sys

import torch

import detector
from detector import assets, kernels


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=assets.DEFAULT_MODEL, help="model YAML (models/ or Ultralytics') or .pt")
    p.add_argument("--data", default=assets.DEFAULT_DATA, help="dataset YAML (data/ or a path)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--batch", type=float, default=16, help="batch size; -1 or a fraction for Ultralytics AutoBatch")
    p.add_argument("--device", default=None, help="'' or omitted for GPU if present, 'cpu', '0', or '0,1' for DDP")
    p.add_argument("--workers", type=int, default=8, help="dataloader workers per process")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True, help="mixed precision on GPU")
    p.add_argument("--resume", nargs="?", const=True, default=False,
                   help="resume an interrupted run: give its last.pt (or nothing, with --model last.pt)")
    p.add_argument("--project", default="runs/detect", help="parent folder of runs")
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

    unknown = sorted(set(extra) - set(DEFAULT_CFG_DICT))
    if unknown:
        p.error(f"unknown Ultralytics setting(s): {', '.join(unknown)} (see 'yolo cfg' for the valid keys)")
    return args, extra


def training_device(device: str | None, amp: bool) -> tuple[torch.device, torch.dtype]:
    """The device and attention dtype the trainer will use (Ultralytics runs AMP as fp16 on CUDA)."""
    spec = str(device or "").strip().lower()
    if spec == "cpu" or (not spec and not torch.cuda.is_available()):
        return torch.device("cpu"), torch.float32
    if spec in ("", "cuda") or spec[0].isdigit():
        index = int(spec.split(",")[0]) if spec and spec[0].isdigit() else 0
        return torch.device("cuda", index), torch.float16 if amp else torch.float32
    return torch.device(spec), torch.float32


def main(argv: list[str] | None = None) -> int:
    args, extra = parse_args(argv)
    from ultralytics import YOLO
    from ultralytics.utils import LOGGER

    try:
        if args.attn:
            kernels.set_kernel(args.attn)
        if args.resume:
            weights = args.model if args.resume is True else args.resume
            model, train_args = YOLO(assets.resolve_model(weights)), {"resume": True}
        else:
            model = YOLO(assets.resolve_model(args.model))
            train_args = dict(data=assets.resolve_data(args.data), epochs=args.epochs, imgsz=args.imgsz,
                              batch=int(args.batch) if args.batch >= 1 or args.batch == -1 else args.batch,
                              device=args.device, workers=args.workers, amp=args.amp, project=args.project,
                              name=args.name, seed=args.seed, **extra)
        p4_area_tokens = (args.imgsz // 16) ** 2 // 4  # a typical call site: P4 with 4 areas
        LOGGER.info(kernels.describe(*training_device(args.device, args.amp), tokens=p4_area_tokens))
    except (FileNotFoundError, ValueError, kernels.KernelUnavailable, RuntimeError) as e:
        print(f"train.py: error: {e}", file=sys.stderr)
        return 2

    model.train(trainer=detector.ultralytics_glue.DetectorTrainer, **train_args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
