"""What predict.py does: sources in, Ultralytics' predictor over them, one line per input, a summary, an exit status.

The contract (inputs, outputs, error lines, exit codes) is predict.py's docstring. Here: `load_predictor` (weights
checked and loaded before anything is written), `Report` (counts, per-input lines, detections.json), and the two
ways inputs are fed (`predict_files` for images and videos through our loader, `predict_stream` for webcams and
URLs, which Ultralytics opens).
"""


from __future__ import annotations

import argparse
import json
import logging
import sys
import zipfile
from pathlib import Path

from ultralytics.utils import LOGGER, TQDM

from . import assets, kernels, sources
from . import weights as weights_io
from .glue import inference
from .glue.loader import Loader
from .utils import atomic_write, first_line

DEFAULT_IMGSZ = 640


def default_weights() -> Path | None:
    """The weights this project ships, or None in a copy without them. Never a file the user did not name
    otherwise."""
    return assets.DEFAULT_WEIGHTS if assets.DEFAULT_WEIGHTS.is_file() else None


def parse_args(argv=None, description: str | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="predict.py", description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sources", nargs="*", help="images, folders, globs, videos, webcam index, URL or .txt list")
    p.add_argument("--weights", default=None, help=".pt (ours or Ultralytics YOLO12/11) or .onnx")
    p.add_argument("--conf", type=float, default=0.25)
    p.add_argument("--iou", type=float, default=0.7)
    p.add_argument("--imgsz", type=int, default=None,
                   help=f"inference size (default {DEFAULT_IMGSZ}; a fixed-size .onnx always runs at its own size)")
    p.add_argument("--classes", type=int, nargs="+", default=None, help="keep only these class ids")
    p.add_argument("--max-det", type=int, default=300)
    p.add_argument("--device", default=None, help="'' for GPU if present, 'cpu', '0'")
    p.add_argument("--half", action="store_true", help="fp16 inference (GPU)")
    p.add_argument("--attn", default=None, choices=kernels.KERNELS, help="attention kernel (default auto)")
    p.add_argument("--save", action=argparse.BooleanOptionalAction, default=True, help="annotated images/videos")
    p.add_argument("--save-txt", action="store_true", help="YOLO-format labels with confidences")
    p.add_argument("--save-json", action="store_true", help="detections.json with boxes in pixels")
    p.add_argument("--show", action="store_true", help="show results in a window")
    p.add_argument("--project", default="runs/predict")
    p.add_argument("--name", default="predict")
    return p.parse_args(argv)


def error(message: str) -> None:
    print(f"predict.py: error: {message}", file=sys.stderr, flush=True)


def check_weights(weights: Path) -> str | None:
    """Why these weights cannot be loaded, from cheap checks (None: try loading them)."""
    if not weights.is_file() or weights.suffix not in (".pt", ".onnx"):
        return "expected an existing .pt or .onnx file"
    try:
        with open(weights, "rb") as f:
            f.read(1)
    except OSError as e:
        return f"cannot read it ({e.strerror})"
    if weights.suffix == ".pt" and not zipfile.is_zipfile(weights):  # PyTorch has saved zip archives since 1.6
        return "not a PyTorch checkpoint, or truncated (no zip archive ends this file)"
    return None


def describe_weights(model, weights: Path) -> str:
    """Say which weights run and how they were trained (from the checkpoint's own record, when it has one)."""
    ckpt = getattr(model, "ckpt", None) or {}
    args = ckpt.get("train_args") or {}
    card = f"; see {ckpt['card']}" if ckpt.get("card") else ""
    # Shipped weights record the epochs of all the runs that made them; train_args has only the last run's.
    epochs = ckpt.get("epochs") or args.get("epochs", "?")
    if args:
        return (f"weights: {weights} (trained by {Path(str(args.get('model', '?'))).name} on "
                f"{Path(str(args.get('data', '?'))).name}, {epochs} epochs, imgsz {args.get('imgsz', '?')}{card})")
    return f"weights: {weights}"


def load_predictor(args, weights: Path):
    """Ultralytics' detection predictor, model loaded, nothing written yet; raises if the weights don't load."""
    from ultralytics.models.yolo.detect import DetectionPredictor

    model = weights_io.load(weights)  # restricted loading (refuses code), onto our SDPA layers (stock YOLO12 too)
    predictor = DetectionPredictor(overrides=dict(
        mode="predict", task="detect", conf=args.conf, iou=args.iou, imgsz=args.imgsz or DEFAULT_IMGSZ,
        classes=args.classes, max_det=args.max_det, device=args.device, quantize=16 if args.half else None,
        save=args.save, save_txt=args.save_txt, save_conf=args.save_txt, show=args.show, verbose=False, batch=1,
        project=str(Path(args.project).resolve()),  # a relative project would land under Ultralytics' runs_dir
        name=args.name))
    predictor.setup_model(model.model, verbose=False)  # an .onnx is opened here, by AutoBackend
    print(describe_weights(model, weights))
    fixed = getattr(predictor.model, "imgsz", None)
    if fixed and not predictor.model.dynamic and args.imgsz and list(fixed) != [args.imgsz] * 2:
        print(f"predict.py: warning: weights '{weights}': exported for a fixed input of {fixed[0]}x{fixed[1]}; "
              f"predicting at that size, not --imgsz {args.imgsz}", file=sys.stderr)
    return predictor


class Report:
    """Counts inputs as ok, incomplete or failed, prints one line for each, and keeps detections for --save-json.

    `names` maps the absolute paths Ultralytics reports to the paths as the user wrote them; `declared` holds each
    video's frame count from its header, to tell a truncated video."""

    def __init__(self, names: dict[str, str], declared: dict[str, int]):
        self.names, self.declared = names, declared
        self.ok = self.incomplete = self.failed = self.detections = 0
        self.records = []
        self.video = None  # [path, frames, detections] of the video or stream being predicted
        self.bar = TQDM(disable=True)  # until start(): the model loads first

    def start(self, total: int) -> None:
        """Show the progress bar over `total` images and video frames, if more than one, on a terminal."""
        self.bar = TQDM(total=total, desc="predict", unit="img", file=sys.stderr,
                        disable=total <= 1 or not sys.stderr.isatty())

    def say(self, line: str, file=None) -> None:
        self.bar.clear()  # a line written over the bar would leave half a bar in front of it
        print(line, file=file or sys.stdout, flush=True)
        self.bar.refresh()

    def fail(self, path: str, reason: str) -> None:
        if self.video and self.video[0] == path:
            self.drop_video()
        self.failed += 1
        self.say(f"predict.py: error: source '{self.names.get(path, path)}': {reason}; skipped", sys.stderr)

    def unreadable_image(self, path: str, reason: str) -> None:
        """An image that does not decode, found by the loader: it counted in the progress bar's total."""
        self.fail(path, reason)
        self.bar.update(1)

    def result(self, r, mode: str, frame: int | None, original_size: tuple[int, int] | None) -> None:
        """One predicted image, video frame or stream frame. original_size: the image was decoded reduced."""
        if self.video and (mode == "image" or self.video[0] != r.path):
            self.end_video()
        h, w = r.orig_shape
        scale = [original_size[0] / w, original_size[1] / h] * 2 if original_size else [1] * 4
        n = len(r.boxes)
        for box, conf, cls in zip(r.boxes.xyxy.tolist(), r.boxes.conf.tolist(), r.boxes.cls.tolist()):
            self.records.append(dict(image=r.path, frame=frame, class_id=int(cls), class_name=r.names[int(cls)],
                                     confidence=round(conf, 5), box_xyxy=[round(v * k, 2) for v, k in zip(box, scale)]))
        self.detections += n
        if mode == "image":
            self.ok += 1
            size = f"{original_size[0]}x{original_size[1]} (read at {w}x{h})" if original_size else f"{w}x{h}"
            found = r.verbose().rstrip(", ")
            self.say(f"{self.names.get(r.path, r.path)}: {size}, {found}, {r.speed['inference']:.1f}ms")
        else:
            self.video = self.video or [r.path, 0, 0]
            self.video[1] += 1
            self.video[2] += n
        self.bar.update(1)

    def drop_video(self) -> None:
        """The video or stream being predicted failed midway: it gets the error line, not a line of its own."""
        self.video = None

    def end_video(self) -> None:
        """The video or stream being predicted ended: one line for it, and a warning if it ended early."""
        if not self.video:
            return
        path, frames, found = self.video
        self.video = None
        name, declared = self.names.get(path, path), self.declared.get(path, 0)
        # Some containers' headers hold an estimate (duration x fps): a frame, or 1%, short is not called truncated.
        if declared - frames > max(1, declared // 100):
            self.incomplete += 1
            self.say(f"predict.py: warning: source '{name}': truncated or corrupt after frame {frames}: "
                     f"{frames} of {declared} frames decode; predicted those", sys.stderr)
        else:
            self.ok += 1
        self.say(f"{name}: {frames} frames, {found} detections")

    def finish(self, save_dir: Path | None, save_json: bool, interrupted: bool = False) -> int:
        """Write detections.json, print the summary, return the exit status (see the module docstring)."""
        self.end_video()
        self.bar.close()
        done = self.ok + self.incomplete
        if save_json and done:
            save_dir.mkdir(parents=True, exist_ok=True)  # Ultralytics makes it only when it saves something
            atomic_write(save_dir / "detections.json", json.dumps(self.records, indent=1))
        incomplete = f"{self.incomplete} incomplete, " if self.incomplete else ""
        counts = f"{self.ok} ok, {incomplete}{self.failed} failed"
        if not done:
            outcome = "nothing predicted"
        else:
            outcome = f"{self.detections} detections" + (f"; results in {save_dir}" if save_dir.exists() else "")
        print(f"summary: {counts}{' (interrupted)' if interrupted else ''}; {outcome}", flush=True)
        return 130 if interrupted else 0 if done and not (self.incomplete or self.failed) else 1 if done else 2


def predict_files(predictor, files: list[str], report: Report) -> None:
    """Images and videos through one predictor stream. A file that raises during prediction is reported and the
    stream restarts with the files after it."""
    while files:
        loader = Loader(files, sources.read_image, sources.BadInput, on_error=report.unreadable_image)
        predictor.batch = None  # set by the predictor to the batch in flight: names the file an error belongs to
        try:
            for r in predictor(loader, stream=True):
                mode, frame = inference.frame_of(predictor)
                report.result(r, mode, frame, loader.original_size.get(r.path))
            return
        except kernels.KernelUnavailable:
            raise  # the model cannot run at all: not one file's fault
        except Exception as e:
            failed = inference.batch_path(predictor)
            if failed is None:
                raise  # before any file was read (e.g. the results folder cannot be made)
            report.fail(failed, f"prediction failed ({first_line(e, with_type=True)})")
            files = loader.files[loader.files.index(failed) + 1:]


def predict_stream(predictor, source: str, report: Report) -> None:
    """A webcam or stream URL, opened by Ultralytics; it fails as a whole, with one line."""
    try:
        for r in predictor(source, stream=True):
            report.result(r, "stream", predictor.seen, None)
        report.end_video()
    except kernels.KernelUnavailable:
        raise
    except Exception as e:
        report.drop_video()  # Ultralytics may name a stream's frames other than `source`
        report.fail(source, f"cannot predict on it ({first_line(e, with_type=True)})")


def main(argv=None, description: str | None = None) -> int:
    args = parse_args(argv, description)
    sources.quiet_opencv()
    weights = Path(args.weights) if args.weights else default_weights()
    if weights is None:
        error(f"no --weights given and no shipped weights at {assets.DEFAULT_WEIGHTS}: pass --weights (e.g. "
              "runs/detect/train/weights/best.pt from train.py)")
        return 2
    if problem := check_weights(weights):
        error(f"weights '{weights}': {problem}")
        return 2
    inputs, problems = sources.expand(args.sources or [str(assets.DATA_DIR / "coco8/images/val")])
    names = {str(Path(i.path).absolute()): i.path for i in inputs if i.kind != "stream"}
    declared = {str(Path(i.path).absolute()): i.frames for i in inputs if i.kind == "video"}
    report = Report(names, declared)
    for path, reason in problems:
        report.fail(path, reason)
    if not inputs:
        return report.finish(None, args.save_json)

    if args.attn:
        kernels.set_kernel(args.attn)  # checked when the model first runs: see the KernelUnavailable handlers
    try:
        predictor = load_predictor(args, weights)
    except weights_io.UnsafeCheckpoint as e:  # refused before any of its code ran; the line says how to opt in
        error(str(e))
        return 2
    except Exception as e:  # a corrupt checkpoint raises many kinds of errors; one line is what the user needs
        error(f"weights '{weights}': cannot load it ({first_line(e, with_type=True)})")
        return 2
    level = LOGGER.level
    LOGGER.setLevel(logging.WARNING)  # our lines replace Ultralytics' ("Results saved to ..." once per stream)
    report.start(total=sum(1 if i.kind == "image" else i.frames for i in inputs))
    try:
        files = [i.path for i in inputs if i.kind != "stream"]
        if files:
            predict_files(predictor, files, report)
        for i in inputs:
            if i.kind == "stream":
                predict_stream(predictor, i.path, report)
    except KeyboardInterrupt:
        return report.finish(predictor.save_dir, args.save_json, interrupted=True)
    except (kernels.KernelUnavailable, OSError) as e:  # a kernel the device lacks; a results folder not writable
        error(str(e))
        return 2
    finally:
        LOGGER.setLevel(level)
    return report.finish(predictor.save_dir, args.save_json)
