"""What train.py does: its arguments, the pre-flight checks, a fresh or resumed run, then Ultralytics' trainer.

Everything that can be wrong with a request (model, dataset, kernel, precision, a checkpoint to resume) is found
before Ultralytics creates the run folder, and reported as one line `train.py: error: ...` with exit status 2.
"""

from __future__ import annotations

import argparse
import ast
import sys
from dataclasses import dataclass, field
from pathlib import Path

from . import assets, datasets, kernels, labels, precision
from . import weights as weights_io
from .utils import first_line

# Settings with their own option: as key=value they would clash with it (and --precision is Ultralytics' `amp`).
OWN_OPTIONS = {"model": "--model", "data": "--data", "epochs": "--epochs", "imgsz": "--imgsz", "batch": "--batch",
               "device": "--device", "workers": "--workers", "amp": "--precision", "resume": "--resume",
               "project": "--project", "name": "--name", "seed": "--seed"}


def parser(description: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="train.py", description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=assets.DEFAULT_MODEL,
                   help="a .pt to fine-tune (default: the shipped coco128 weights), or a model YAML to train from "
                        "scratch (models/ or Ultralytics', e.g. yolo11n-an.yaml)")
    p.add_argument("--data", default=assets.DEFAULT_DATA, help="dataset YAML (data/ or a path)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--batch", type=float, default=16, help="batch size; -1 or a fraction for Ultralytics AutoBatch")
    p.add_argument("--device", default=None, help="'' or omitted for GPU if present, 'cpu', '0', or '0,1' for DDP")
    p.add_argument("--workers", type=int, default=8, help="dataloader workers per process")
    p.add_argument("--precision", choices=tuple(precision.PRECISIONS), default="fp16",
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
    return p


def parse_args(argv: list[str] | None = None, description: str | None = None) -> tuple[argparse.Namespace, dict]:
    """train.py's options, and the key=value Ultralytics settings as a dict (values parsed as Python literals)."""
    p = parser(description)
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


def load_model(path: str):
    """ultralytics.YOLO for a YAML or a .pt, its failures as one-line ValueErrors (Ultralytics raises TypeError,
    KeyError, ...)."""
    from ultralytics import YOLO

    try:
        return weights_io.load(path) if path.endswith(".pt") else YOLO(path)
    except weights_io.UnsafeCheckpoint:
        raise  # its own line says why and how to opt in
    except Exception as e:
        if path.endswith(".pt"):
            raise ValueError(f"model '{path}': cannot load it: empty, truncated or not a checkpoint "
                             f"({type(e).__name__})") from None
        raise ValueError(f"model '{path}': cannot build it: {first_line(e, with_type=True)}") from None


@dataclass
class Plan:
    """A checked training request: the model, Ultralytics' train() arguments, and what to report first."""

    model: object  # ultralytics.YOLO
    train_args: dict
    kernel_line: str
    reports: list[labels.SplitReport] = field(default_factory=list)


def resume_plan(args: argparse.Namespace, extra: dict) -> tuple[object, dict, str | None, str, int, list]:
    """--resume: the checkpoint's model and the settings saved in it; --device (and key=value settings Ultralytics
    allows on resume, e.g. workers=) may change them. Returns (model, train_args, device, precision, imgsz, reports)."""
    from .glue import trainer

    weights = assets.resolve_model(args.model if args.resume is True else args.resume)
    model = load_model(weights)
    problem = trainer.resume_problem(model.ckpt, weights)
    if problem:
        raise ValueError(problem)
    saved = trainer.checkpoint_train_args(model.ckpt)
    reports = []
    if saved.get("data"):
        reports = datasets.preflight(datasets.resolve(str(saved["data"])), bool(saved.get("single_cls")))
    train_args = {"resume": True, **extra, **({"device": args.device} if args.device is not None else {})}
    imgsz = saved.get("imgsz") or args.imgsz
    imgsz = int(max(imgsz) if isinstance(imgsz, (list, tuple)) else imgsz)
    return (model, train_args, train_args.get("device", saved.get("device")),
            precision.precision_of(saved.get("amp", True)), imgsz, reports)


def plan(args: argparse.Namespace, extra: dict) -> Plan:
    """Check everything about the request and build the model; raises one-line errors (see main)."""
    if args.attn:
        kernels.set_kernel(args.attn)
    if args.resume:
        model, train_args, device, prec, imgsz, reports = resume_plan(args, extra)
    else:
        data = datasets.resolve(args.data)
        reports = datasets.preflight(data, single_cls=bool(extra.get("single_cls")))
        model = load_model(assets.resolve_model(args.model))
        train_args = dict(data=data, epochs=args.epochs, imgsz=args.imgsz,
                          batch=int(args.batch) if args.batch >= 1 or args.batch == -1 else args.batch,
                          device=args.device, workers=args.workers, amp=precision.PRECISIONS[args.precision],
                          project=str(Path(args.project).resolve()), name=args.name, seed=args.seed, **extra)
        device, prec, imgsz = args.device, args.precision, args.imgsz
    torch_device, dtype = precision.training_device(device, prec)
    precision.check_precision(prec, torch_device)
    return Plan(model, train_args, kernel_line(torch_device, dtype, imgsz), reports)


def kernel_line(device, dtype, imgsz: int) -> str:
    """The start-up line saying which attention kernel runs, for images of `imgsz`."""
    # Tokens per area at the typical call sites: YOLO12's P4 with 4 areas, the same count as yolo11-an's P5 with one
    # area ((imgsz / 32)^2).
    return kernels.describe(device, dtype, tokens=(imgsz // 16) ** 2 // 4)


def main(argv: list[str] | None = None, description: str | None = None) -> int:
    args, extra = parse_args(argv, description)
    try:
        checked = plan(args, extra)
    except (FileNotFoundError, ValueError, kernels.KernelUnavailable, RuntimeError) as e:
        print(f"train.py: error: {first_line(e)}", file=sys.stderr)
        return 2
    for report in checked.reports:
        for warning in report.warnings():
            print(f"train.py: warning: {warning}", file=sys.stderr)
        print(f"train.py: {report.info()}", file=sys.stderr)
    from ultralytics.utils import LOGGER

    from .glue.trainer import DetectorTrainer

    LOGGER.info(checked.kernel_line)
    checked.model.train(trainer=DetectorTrainer, **checked.train_args)
    return 0
