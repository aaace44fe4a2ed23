"""predict.py's arguments: parsed (`parse_args`, instant: no torch, Ultralytics or OpenCV is imported, so --help shows
at once), then checked before any work (`check_args`, before the model loads; `check_model_args`, once it has).

Defaults are Ultralytics' (`YOLO(w).predict`): the checkpoint's own imgsz, conf 0.25, iou 0.7, 300 detections, and
the run folder Ultralytics' `predict` uses (runs/detect/predict, then predict-2, ...).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .choices import KERNELS
from .utils import ArgumentParser, HelpFormatter, folder_name, number

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune-no-cudagraphs")  # torch.compile modes Ultralytics takes
RUNS = "runs/detect"  # where a run folder goes without --project: Ultralytics' runs_dir setting (./runs) + the task


def parse_args(argv=None, description: str | None = None) -> argparse.Namespace:
    p = ArgumentParser(prog="predict.py", description=description, formatter_class=HelpFormatter)
    p.add_argument("sources", nargs="*", default=[],
                   help="images, folders, globs, videos, webcam index, URL or .txt list (default: the bundled "
                        "data/coco8/images/val)")
    p.add_argument("--weights", default=None,
                   help=".pt (ours or Ultralytics YOLO12/11), .onnx, or an OpenVINO model folder (*_openvino_model/); "
                        "default: the shipped weights/yolo11n-an-coco128.pt")
    p.add_argument("--conf", type=number(float, 0, 1), default=0.25, help="confidence threshold, in [0, 1]")
    p.add_argument("--iou", type=number(float, 0, 1), default=0.7, help="NMS IoU threshold, in [0, 1]")
    p.add_argument("--imgsz", type=number(int, 32), default=None,
                   help="inference size, >= 32, rounded up to the model's stride (default: the size the weights were "
                        "trained or exported at; a fixed-size export always runs at its own size)")
    p.add_argument("--classes", type=number(int, 0), nargs="+", default=None,
                   help="keep only these class ids (from 0 to the model's class count - 1)")
    p.add_argument("--max-det", type=number(int, 1), default=300, help="most detections per image, >= 1")
    p.add_argument("--device", default=None, help="'' for GPU if present, 'cpu', '0'")
    p.add_argument("--half", action="store_true", help="fp16 inference (CUDA GPU; fp32 on CPU, with a warning)")
    p.add_argument("--attn", default=None, choices=KERNELS, help="attention kernel (default auto)")
    p.add_argument("--compile", default=None, choices=COMPILE_MODES,
                   help="torch.compile the model (.pt only; Ultralytics' compile=): reduce-overhead is CUDA graphs, "
                        "for batch-1 GPU serving; the first images pay the compilation")
    p.add_argument("--save", action=argparse.BooleanOptionalAction, default=True, help="annotated images/videos")
    p.add_argument("--save-txt", action="store_true", help="YOLO-format labels with confidences")
    p.add_argument("--save-json", action="store_true", help="detections.json with boxes in pixels")
    p.add_argument("--show", action="store_true", help="show results in a window")
    p.add_argument("--project", default=None,
                   help=f"parent folder of run folders (must be writable when saving); default {RUNS}; a relative "
                        "path goes under Ultralytics' runs_dir/detect, as its project= does (runs_dir: ./runs unless "
                        "`yolo settings` changed it)")
    p.add_argument("--name", type=folder_name, default="predict", help="run folder name (numbered -2, -3 if taken)")
    return p.parse_args(argv)


def error(message: str) -> None:
    print(f"predict.py: error: {message}", file=sys.stderr, flush=True)


def warning(message: str) -> None:
    print(f"predict.py: warning: {message}", file=sys.stderr, flush=True)


def saving(args) -> bool:
    return args.save or args.save_txt or args.save_json


def check_args(args) -> tuple[Path | None, str | None]:
    """The checks on arguments that need more than their text: (weights to load, None) or (None, the error line)."""
    from . import assets, precision, sources
    from . import weights as weights_io
    from .glue import rundirs
    from .utils import writable_problem

    if args.weights and Path(args.weights).is_dir():
        if problem := openvino_problem(Path(args.weights), args.device):
            return None, problem
    try:
        device = precision.resolve_device(args.device)
    except ValueError as e:
        return None, str(e)
    if args.half and device.type != "cuda":
        warning(f"--half: fp16 inference needs a CUDA GPU; predicting in fp32 on {device.type}")
    if args.compile and args.weights and Path(args.weights).suffix != ".pt":
        return None, f"--compile: compiles PyTorch models only (.pt weights), not '{args.weights}'"
    if saving(args) and (problem := writable_problem(rundirs.planned(args.project, args.name).parent)):
        return None, f"--project '{args.project or RUNS}': {problem}"
    weights = Path(args.weights) if args.weights else assets.DEFAULT_WEIGHTS
    if not args.weights and not weights.is_file():
        return None, (f"no --weights given and no shipped weights at {assets.DEFAULT_WEIGHTS}: pass --weights (e.g. "
                      "runs/detect/train/weights/best.pt from train.py)")
    if problem := sources.special_problem(weights):
        return None, f"weights '{weights}': {problem}"
    if not weights.is_dir() and (problem := weights_io.problem(weights)):
        return None, f"weights '{weights}': {problem}"
    return weights, None


def openvino_problem(folder: Path, device: str | None) -> str | None:
    """Why the folder `folder` cannot be run as an OpenVINO model here, as an error line (None: it can)."""
    from .export import missing_message, missing_packages

    if not folder.name.endswith("_openvino_model"):  # how Ultralytics tells the format
        return (f"weights '{folder}': a folder: expected an existing .pt or .onnx file, or an OpenVINO model folder "
                "(*_openvino_model/)")
    if not any(folder.glob("*.xml")):
        return f"weights '{folder}': no OpenVINO .xml model in this folder"
    if device not in (None, "", "cpu"):
        return f"--device {device}: OpenVINO models run on the CPU here; pass --device cpu or leave --device out"
    if missing := missing_packages("openvino"):
        return f"weights '{folder}': {missing_message('openvino', missing, 'inference')}"
    return None


def check_model_args(args, predictor, weights: Path) -> str | None:
    """The arguments that depend on the model, checked once it is loaded and before anything is predicted: the error
    line for --classes beyond its classes (None if fine); --imgsz rounded up to its stride, or replaced by the fixed
    size of an export, with a warning."""
    from .utils import round_up_to_stride

    classes = len(predictor.model.names)
    if args.classes and max(args.classes) >= classes:
        return (f"argument --classes: {max(args.classes)}: expected class ids from 0 to {classes - 1} "
                f"(weights '{weights}' have {classes} classes)")
    fixed = getattr(predictor.model, "imgsz", None)
    if fixed and not predictor.model.dynamic:
        if args.imgsz and list(fixed) != [args.imgsz] * 2:
            warning(f"weights '{weights}': exported for a fixed input of {fixed[0]}x{fixed[1]}; predicting at that "
                    f"size, not --imgsz {args.imgsz}")
    elif args.imgsz:
        predictor.args.imgsz = round_up_to_stride("predict.py", args.imgsz, int(predictor.model.stride))
    return None
