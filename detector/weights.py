"""Weights files: the project's shipped weights, and loading a checkpoint without running pickle where possible.

An Ultralytics `.pt` checkpoint is a pickle of the whole model object: loading one runs whatever code the file names,
so only load checkpoints you trust. The weights this project ships (`weights/*.pt`) are instead "weights-only"
files: a dict of plain values and tensors (the model YAML as a dict, the state dict, class names, how it was trained)
that `torch.load(..., weights_only=True)` reads without executing anything. `load()` tries that first and falls back
to Ultralytics' full unpickling only for files that need it (any `.pt` written by Ultralytics or train.py).

    python -m detector.weights runs/detect/train/weights/best.pt weights/mine.pt   # convert to weights-only
"""

from __future__ import annotations

import argparse
import pickle
import sys
from pathlib import Path

import torch

from .assets import ROOT
from .utils import atomic_path

FORMAT = "detector-weights/1"


def _plain(value):
    """Checkpoint metadata reduced to what weights_only loading accepts (str, numbers, lists, dicts, None)."""
    if isinstance(value, dict):
        return {str(k) if not isinstance(k, int) else k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)  # Path, torch.device, ...


def save_weights_only(src: str | Path, dst: str | Path, **extra) -> Path:
    """Convert a (trusted) Ultralytics checkpoint `src` into a weights-only file `dst` (fp16 tensors, atomic write).
    `extra` (e.g. metrics=...) is stored as plain metadata next to the checkpoint's own train_args."""
    from ultralytics import YOLO

    yolo = YOLO(str(src))  # the one pickle load, of a file we trust
    model, ckpt = yolo.model, yolo.ckpt  # the module, and the checkpoint dict it came from (train_args, metrics)
    record = dict(
        format=FORMAT,
        yaml=_plain(model.yaml),
        state_dict={k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()},
        names=_plain(dict(model.names)),
        train_args=_plain(ckpt.get("train_args") or {}),
        train_metrics=_plain(ckpt.get("train_metrics") or {}),
        **_plain(extra),
    )
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dst) as tmp:  # never a half-written weights file under the real name
        torch.save(record, tmp)
    return dst


def read_weights_only(path: str | Path) -> dict | None:
    """The record of a weights-only file, or None if `path` needs full unpickling (an Ultralytics checkpoint)."""
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # refers to classes: a full checkpoint
        return None
    return record if isinstance(record, dict) and record.get("format") == FORMAT else None


def load(path: str | Path):
    """An `ultralytics.YOLO` for a .pt or .onnx file. Weights-only files load without pickle; other .pt files go
    through Ultralytics' own loader (pickle: trusted files only). Our layers run on SDPA in both cases."""
    from ultralytics import YOLO
    from ultralytics.nn.tasks import DetectionModel

    from .attention import use_sdpa

    path = Path(path)
    record = read_weights_only(path) if path.suffix == ".pt" else None
    if record is None:
        yolo = YOLO(str(path), task="detect")
        if path.suffix == ".pt":
            use_sdpa(yolo.model)  # stock YOLO12 checkpoints pickle Ultralytics' matmul AAttn
        return yolo
    model = DetectionModel(record["yaml"], nc=len(record["names"]), verbose=False)
    model.load_state_dict({k: v.float() for k, v in record["state_dict"].items()})
    model.names = {int(k): v for k, v in record["names"].items()}
    model.args = record["train_args"]
    model.task = "detect"
    model.pt_path = str(path)  # where Ultralytics' exporter puts the .onnx, as for a checkpoint it loaded itself
    model.eval()
    yolo = YOLO(str(ROOT / "models" / "yolo11n-an.yaml"), task="detect")  # a shell; its model is replaced below
    yolo.model, yolo.ckpt, yolo.ckpt_path = model, record, str(path)
    yolo.overrides.update(model=str(path), task="detect")
    return yolo


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", help="a trusted Ultralytics/train.py checkpoint (.pt)")
    p.add_argument("dst", help="the weights-only file to write")
    a = p.parse_args(argv)
    if not Path(a.src).is_file():
        print(f"detector.weights: error: '{a.src}': no such file", file=sys.stderr)
        return 2
    print(f"wrote {save_weights_only(a.src, a.dst)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
