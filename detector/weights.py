"""Weights files: loading a checkpoint safely, and writing one fit to share.

Our checkpoints are Ultralytics checkpoints. `train.py` writes them recording Ultralytics' own layer classes, so
plain `ultralytics.YOLO(path)` and the `yolo` command load them without `detector` (on Ultralytics' matmul attention;
a sub-grid head, the default's, has no Ultralytics class and stays ours: unpickling imports detector.head)
and, after `import detector`, they load onto our SDPA layers. After `import detector` every .pt loads through
Ultralytics' restricted loader (`torch.load(weights_only=True)` against an allow-list of model classes): a file that
would run code when unpickled is refused, unless you trust it and set DETECTOR_TRUST_PICKLE=1
(detector.trust, detector.glue.checkpoints).

A checkpoint straight from training holds this machine's paths (dataset, run folder, the git checkout) and the
optimizer state. `python -m detector.weights` writes a copy fit to share, as the shipped `weights/*.pt` are:

    python -m detector.weights runs/detect/train/weights/best.pt weights/mine.pt --card docs/mine.md

fp16 weights, Ultralytics' layer classes (but a sub-grid head), no optimizer, no absolute path (a setting that held
one keeps just its file name, data=coco128.yaml, or is dropped if it named a folder), and the metadata predict.py
reports (--card, --epochs).
It also converts detector 0.1's weights-only files (format detector-weights/1) into checkpoints.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path, PurePosixPath, PureWindowsPath

import torch

from .attention import use_stock
from .glue.checkpoints import LEGACY_FORMAT, UnsafeCheckpoint
from .integrity import problem
from .utils import atomic_path, first_line

__all__ = ["UnsafeCheckpoint", "load", "problem", "publish"]


def load(path: str | Path):
    """An `ultralytics.YOLO` for a .pt or .onnx file. A .pt goes through Ultralytics' restricted loader onto our SDPA
    layers (raising UnsafeCheckpoint for a file that needs arbitrary unpickling), as every load after `import
    detector` does."""
    from ultralytics import YOLO

    return YOLO(str(path), task="detect")


def _portable(value):
    """A setting without this machine's paths: an absolute file path keeps its file name, a folder becomes None."""
    text = str(value)
    if not isinstance(value, (str, Path)) or not any(p(text).is_absolute() for p in (PurePosixPath, PureWindowsPath)):
        return value
    name = PureWindowsPath(text).name  # splits at / and \\
    return name if Path(name).suffix else None


def _read_legacy(path: str | Path) -> dict | None:
    """The record of a detector 0.1 weights-only file (a plain dict, read without unpickling anything), else None."""
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # an Ultralytics checkpoint (refers to classes), or not a checkpoint: for load() to say
        return None
    return record if isinstance(record, dict) and record.get("format") == LEGACY_FORMAT else None


def _legacy_model(record: dict):
    """The model of a detector 0.1 weights-only file: built from its YAML, its state dict loaded."""
    from ultralytics.nn.tasks import DetectionModel

    model = DetectionModel(dict(record["yaml"]), nc=len(record["names"]), verbose=False)
    model.load_state_dict(record["state_dict"])
    model.names = {int(k): v for k, v in record["names"].items()}
    model.task = "detect"
    return model


def publish(src: str | Path, dst: str | Path, **extra) -> Path:
    """Write `src` (a checkpoint, or a detector 0.1 weights-only file) to `dst` as a checkpoint fit to share (see the
    module docstring), atomically. `extra` (e.g. card=, epochs=) is stored as top-level metadata."""
    from ultralytics import YOLO

    record = _read_legacy(src)
    if record is None:
        yolo = load(src)  # restricted loading
        kept = ("train_metrics", "card", "epochs", "training", "metrics")
        meta = {k: yolo.ckpt[k] for k in kept if yolo.ckpt.get(k) is not None}
        args = yolo.ckpt.get("train_args") or {}
    else:
        yolo = YOLO("yolo11n-an.yaml")  # a holder for Ultralytics' writer; its model is replaced
        yolo.model = _legacy_model(record)
        meta = {k: v for k, v in record.items() if k not in ("format", "yaml", "state_dict", "names", "train_args")}
        args = record["train_args"]
    args = {k: _portable(v) for k, v in args.items()}
    model = yolo.model
    use_stock(model)  # the file records Ultralytics' classes: it loads without detector
    model.args = args  # the model object carries the settings too
    model.yaml["yaml_file"] = _portable(model.yaml.get("yaml_file", ""))
    model.__dict__.pop("pt_path", None)  # where it was loaded from, on this machine
    yolo.ckpt = {"epoch": -1, "train_args": args, **meta, **extra}
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dst) as tmp:  # never a half-written file under the real name
        yolo.save(tmp)  # Ultralytics' own writer: an fp16 copy of the model, with date, version and licence
    return dst


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m detector.weights", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", help="a checkpoint from train.py or Ultralytics (.pt), or a detector 0.1 weights-only file")
    p.add_argument("dst", help="the checkpoint to write")
    p.add_argument("--card", help="where the model is described (predict.py prints it), e.g. docs/weights.md")
    p.add_argument("--epochs", type=int, help="total epochs of training, if more than the last run's (predict.py "
                                              "prints it)")
    a = p.parse_args(argv)
    if not Path(a.src).is_file():
        print(f"detector.weights: error: '{a.src}': no such file", file=sys.stderr)
        return 2
    extra = {k: v for k, v in (("card", a.card), ("epochs", a.epochs)) if v is not None}
    try:
        print(f"wrote {publish(a.src, a.dst, **extra)}")
    except Exception as e:  # refused, truncated, not a checkpoint: one line
        print(f"detector.weights: error: {first_line(e, with_type=not isinstance(e, ValueError))}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
