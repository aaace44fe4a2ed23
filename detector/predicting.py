"""What predict.py does: sources in, Ultralytics' predictor over them, one line per input, a summary, an exit status.

The contract (inputs, outputs, error lines, exit codes) is predict.py's docstring. Here: `parse_args` and `check_args`
(every argument checked before any work), `load_predictor` (weights checked and loaded before anything is written),
`Outputs` (every result file, written atomically, kept only for a source that was predicted), `Report` (counts,
per-input lines), and the two ways inputs are fed (`predict_files` for images and videos through our loader,
`predict_stream` for webcams and stream URLs, which Ultralytics opens).
"""


from __future__ import annotations

import argparse
import contextlib
import json
import logging
import shutil
import sys
import tempfile
from pathlib import Path

import cv2
import torch
from ultralytics.utils import LOGGER, TQDM

from . import assets, kernels, precision, reach, sources
from . import weights as weights_io
from .glue import inference
from .glue.loader import Loader
from .utils import (ArgumentParser, AtomicFile, atomic_path, atomic_write, claim_folder, first_line, folder_name,
                    interrupted_status, number, round_up_to_stride, sigterm_as_interrupt, writable_problem)

DEFAULT_IMGSZ = 640
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune-no-cudagraphs")  # torch.compile modes Ultralytics takes
STREAM_FPS = 30  # annotated webcam and stream videos, as Ultralytics writes them


def default_weights() -> Path | None:
    """The weights this project ships, or None in a copy without them. Never a file the user did not name
    otherwise."""
    return assets.DEFAULT_WEIGHTS if assets.DEFAULT_WEIGHTS.is_file() else None


def parse_args(argv=None, description: str | None = None) -> argparse.Namespace:
    p = ArgumentParser(prog="predict.py", description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sources", nargs="*", help="images, folders, globs, videos, webcam index, URL or .txt list")
    p.add_argument("--weights", default=None,
                   help=".pt (ours or Ultralytics YOLO12/11), .onnx, or an OpenVINO model folder (*_openvino_model/)")
    p.add_argument("--conf", type=number(float, 0, 1), default=0.25, help="confidence threshold, in [0, 1]")
    p.add_argument("--iou", type=number(float, 0, 1), default=0.7, help="NMS IoU threshold, in [0, 1]")
    p.add_argument("--imgsz", type=number(int, 32), default=None,
                   help=f"inference size, >= 32, rounded up to the model's stride (default {DEFAULT_IMGSZ}; a "
                        "fixed-size .onnx always runs at its own size)")
    p.add_argument("--classes", type=number(int, 0), nargs="+", default=None,
                   help="keep only these class ids (from 0 to the model's class count - 1)")
    p.add_argument("--max-det", type=number(int, 1), default=300, help="most detections per image, >= 1")
    p.add_argument("--device", default=None, help="'' for GPU if present, 'cpu', '0'")
    p.add_argument("--half", action="store_true", help="fp16 inference (CUDA GPU; fp32 on CPU, with a warning)")
    p.add_argument("--attn", default=None, choices=kernels.KERNELS, help="attention kernel (default auto)")
    p.add_argument("--compile", default=None, choices=COMPILE_MODES,
                   help="torch.compile the model (.pt only; Ultralytics' compile=): reduce-overhead is CUDA graphs, "
                        "for batch-1 GPU serving; the first images pay the compilation")
    p.add_argument("--save", action=argparse.BooleanOptionalAction, default=True, help="annotated images/videos")
    p.add_argument("--save-txt", action="store_true", help="YOLO-format labels with confidences")
    p.add_argument("--save-json", action="store_true", help="detections.json with boxes in pixels")
    p.add_argument("--show", action="store_true", help="show results in a window")
    p.add_argument("--project", default="runs/predict", help="parent folder of runs (must be writable when saving)")
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
    if saving(args) and (problem := writable_problem(args.project)):
        return None, f"--project '{args.project}': {problem}"
    weights = Path(args.weights) if args.weights else default_weights()
    if weights is None:
        return None, (f"no --weights given and no shipped weights at {assets.DEFAULT_WEIGHTS}: pass --weights (e.g. "
                      "runs/detect/train/weights/best.pt from train.py)")
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
    """Ultralytics' detection predictor, model loaded, nothing written yet; raises if the weights don't load. It
    writes nothing itself: `Outputs` saves what it predicts."""
    from ultralytics.models.yolo.detect import DetectionPredictor

    model = weights_io.load(weights)  # restricted loading (refuses code), onto our SDPA layers (stock YOLO12 too)
    predictor = DetectionPredictor(overrides=dict(
        mode="predict", task="detect", conf=args.conf, iou=args.iou, imgsz=args.imgsz or DEFAULT_IMGSZ,
        classes=args.classes, max_det=args.max_det, device=args.device, quantize=16 if args.half else None,
        save=False, save_txt=False, show=args.show, verbose=False, batch=1, compile=args.compile or False))
    predictor.setup_model(model.model, verbose=False)  # an .onnx is opened here, by AutoBackend
    print(describe_weights(model, weights))
    if isinstance(model.model, torch.nn.Module):  # a .pt (an exported graph does not say how far its head reaches)
        trained = ((getattr(model, "ckpt", None) or {}).get("train_args") or {}).get("imgsz")
        if note := reach.predict_warning(model.model, trained if isinstance(trained, int) else None,
                                         args.imgsz or DEFAULT_IMGSZ):
            warning(f"weights '{weights}': {note}")
    return predictor


def check_model_args(args, predictor, weights: Path) -> str | None:
    """The arguments that depend on the model, checked once it is loaded and before anything is predicted: the error
    line for --classes beyond its classes (None if fine); --imgsz rounded up to its stride, or replaced by the fixed
    size of an .onnx, with a warning."""
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


class CannotSave(Exception):
    """A result file could not be written (a full disk, a folder gone read-only): the run stops there; everything
    saved before stays valid."""

    def __init__(self, path: Path, error: BaseException | str):
        super().__init__(f"cannot write '{path}': {error if isinstance(error, str) else first_line(error)}")


class Outputs:
    """predict.py's result files in the run folder: annotated copies (--save), YOLO labels with confidences
    (--save-txt), detections.json (--save-json). Named as Ultralytics names them (a second file of the same stem gets
    -2, a video's labels <stem>_<frame>.txt), so nothing but the writing differs:

    - every file is written atomically (detector.utils.atomic_path): under its real name it is complete or absent;
    - a source's files are kept only if the source is: `drop_source` removes what a video that failed midway wrote;
    - a write that fails raises CannotSave after removing the files of the source in hand;
    - detections.json is written as sources finish, into its temporary file (so that a disk filling up late in the run
      needs no room for all of it at once), and renamed at `close`: after a failure it holds every source saved.
    `folder` None: nothing is saved."""

    def __init__(self, folder: Path | None, save: bool, save_txt: bool, save_json: bool, existed: Path | None = None):
        self.folder, self.existed = folder, existed  # existed: the part of the folder's path there before the run
        self.save, self.save_txt = bool(folder and save), bool(folder and save_txt)
        self.bases = set()
        self.files = []  # written so far for the source in hand
        self.video = None  # [base, AtomicFile | None, cv2.VideoWriter | None, frames written] of the one in hand
        self.json = self.json_file = None
        if folder and save_json:
            self.json = AtomicFile(folder / "detections.json")
            self.json_file = open(self.json.tmp, "wb", buffering=0)  # unbuffered: what is written is on file
            self.json_size, self.json_records = 0, 0
            self._append_json(b"[")

    def _base(self, path: str) -> str:
        stem, base, n = Path(path).stem, Path(path).stem, 1
        while base in self.bases:
            n += 1
            base = f"{stem}-{n}"
        self.bases.add(base)
        return base

    def _write(self, dst: Path, data: bytes | None = None, result=None) -> None:
        """Write `data`, or the label lines of `result` (none: no file, as Ultralytics), to `dst`; CannotSave names
        `dst` (not its temporary name) if that fails."""
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            if data is not None:
                atomic_write(dst, data)
            elif len(result.boxes):
                with atomic_path(dst) as tmp:
                    result.save_txt(tmp, save_conf=True)
            else:
                return
        except OSError as e:
            raise CannotSave(dst, e) from None
        self.files.append(dst)

    def _append_json(self, data: bytes) -> None:
        """Append to detections.json's temporary file; on failure cut it back to where it was, so that it always
        ends after a whole record."""
        view = memoryview(data)
        try:
            while view:
                view = view[self.json_file.write(view):]
        except BaseException:  # a full disk, or Ctrl-C / SIGTERM between two writes
            self.json_file.truncate(self.json_size)
            raise
        self.json_size += len(data)

    def _records(self, records: list[dict]) -> None:
        if self.json and records:
            text = ",\n".join(json.dumps(r) for r in records)
            self._append_json(f"{',' if self.json_records else ''}\n{text}".encode())
            self.json_records += len(records)

    def image(self, r, records: list[dict]) -> None:
        """Save one predicted image: all its files and records, or none of them (CannotSave)."""
        with self._source(r.path):
            base = self._base(r.path)
            if self.save:
                ok, jpg = cv2.imencode(".jpg", r.plot())
                if not ok:
                    raise OSError(f"OpenCV cannot encode the annotated image ({r.orig_shape[1]}x{r.orig_shape[0]})")
                self._write(self.folder / f"{base}.jpg", jpg.tobytes())
            if self.save_txt:
                self._write(self.folder / "labels" / f"{base}.txt", result=r)
            self._records(records)
        self.files = []

    def frame(self, r, frame: int, fps: float) -> None:
        """Save one frame of the video or stream in hand: into its annotated video, and its labels."""
        with self._source(r.path):
            if self.video is None:
                base = self._base(r.path)
                self.video = [base, None, None, 0]
                if self.save:
                    h, w = r.orig_shape
                    self.video[1] = AtomicFile(self.folder / f"{base}.avi")
                    # OpenCV's own MJPEG writer: FFmpeg's encoder rounds odd sizes down to even (321x241 -> 320x240)
                    self.video[2] = cv2.VideoWriter(str(self.video[1].tmp), cv2.CAP_OPENCV_MJPEG,
                                                    cv2.VideoWriter_fourcc(*"MJPG"), fps or STREAM_FPS, (w, h))
            if self.save:
                self.video[2].write(r.plot())
                self.video[3] += 1
            if self.save_txt:
                self._write(self.folder / "labels" / f"{self.video[0]}_{frame}.txt", result=r)

    def end_source(self, records: list[dict]) -> None:
        """The video or stream in hand was predicted (in full or not): keep its files and records."""
        if self.video is None:
            return
        base, file, writer, frames = self.video
        with self._source(base):
            if writer:
                writer.release()
                written = _frame_count(file.tmp)
                if written != frames:  # OpenCV's writer reports no error: a full disk shows as missing frames
                    reason = "No space left on device" if shutil.disk_usage(self.folder).free < 1 << 20 else \
                        "the video writer failed"
                    raise CannotSave(file.dst, f"{written} of {frames} frames written: {reason}")
                self.files.append(file.commit())
            self._records(records)
        self.video, self.files = None, []

    def drop_source(self) -> None:
        """The source in hand failed: remove every file it wrote."""
        if self.video:
            if self.video[2]:
                self.video[2].release()
                self.video[1].discard()
            self.video = None
        for f in self.files:
            f.unlink(missing_ok=True)
        self.files = []

    @contextlib.contextmanager
    def _source(self, path: str):
        """Writing for one source: any failure removes what it wrote and becomes CannotSave, naming the file."""
        try:
            yield
        except CannotSave:
            self.drop_source()
            raise
        except OSError as e:
            self.drop_source()
            raise CannotSave(Path(e.filename or path), e) from None
        except KeyboardInterrupt:
            if self.video is None:  # an image half saved: its files go (a video keeps its frames: Report.finish)
                self.drop_source()
            raise

    def close(self, keep: bool) -> None:
        """End detections.json and put it under its name (`keep` False: nothing was predicted, no file)."""
        if not self.json:
            return
        try:
            if keep:
                self._append_json(b"\n]\n")
            self.json_file.close()
        except OSError as e:
            self.abandon()
            raise CannotSave(self.json.dst, e) from None
        self.json.commit() if keep else self.json.discard()
        self.json = None

    def abandon(self) -> None:
        """Remove whatever is unfinished (after an unforeseen error): detections.json's temporary file, the source's."""
        self.drop_source()
        if self.json:
            self.json_file.close()
            self.json.discard()
            self.json = None


def _frame_count(video: Path) -> int:
    cap = cv2.VideoCapture(str(video))
    try:
        return int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
    finally:
        cap.release()


class Report:
    """Counts inputs as ok, incomplete or failed, prints one line for each, and hands each predicted source's results
    to `Outputs` (a source counts as predicted once they are saved).

    `add` records each input's name as the user wrote it (keyed by the absolute path Ultralytics reports), and for
    videos the frame count and fps their header declares (to tell a truncated video, and to write the annotated one)."""

    def __init__(self):
        self.names, self.declared, self.fps = {}, {}, {}
        self.outputs = Outputs(None, False, False, False)
        self.ok = self.incomplete = self.failed = self.detections = 0
        self.video = None  # [path, frames, records] of the video or stream being predicted
        self.bar = TQDM(disable=True)  # until start(): the model loads first

    def add(self, inputs: list[sources.Input]) -> None:
        for i in inputs:
            key = i.path if i.kind in ("stream", "url") else str(Path(i.path).absolute())
            self.names[key], self.declared[key], self.fps[key] = i.name, i.frames, i.fps

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
        """One predicted image, video frame or stream frame. original_size: the image was decoded reduced.
        Raises CannotSave if its results cannot be written (the image, or the video it belongs to, then failed)."""
        if self.video and (mode == "image" or self.video[0] != r.path):
            self.end_video()
        h, w = r.orig_shape
        scale = [original_size[0] / w, original_size[1] / h] * 2 if original_size else [1] * 4
        records = [dict(image=r.path, frame=frame, class_id=int(cls), class_name=r.names[int(cls)],
                        confidence=round(conf, 5), box_xyxy=[round(v * k, 2) for v, k in zip(box, scale)])
                   for box, conf, cls in zip(r.boxes.xyxy.tolist(), r.boxes.conf.tolist(), r.boxes.cls.tolist())]
        if mode == "image":
            try:
                self.outputs.image(r, records)
            except CannotSave:
                self.failed += 1
                raise
            self.ok += 1
            self.detections += len(records)
            size = f"{original_size[0]}x{original_size[1]} (read at {w}x{h})" if original_size else f"{w}x{h}"
            found = r.verbose().rstrip(", ")
            self.say(f"{self.names.get(r.path, r.path)}: {size}, {found}, {r.speed['inference']:.1f}ms")
        else:
            self.video = self.video or [r.path, 0, []]
            try:
                self.outputs.frame(r, frame, self.fps.get(r.path, 0))
            except CannotSave:
                self.video = None
                self.failed += 1
                raise
            self.video[1] += 1
            self.video[2] += records
        self.bar.update(1)

    def drop_video(self) -> None:
        """The video or stream being predicted failed midway: its files go, and it gets the error line."""
        self.outputs.drop_source()
        self.video = None

    def end_video(self, interrupted: bool = False) -> None:
        """The video or stream being predicted ended (or the run was interrupted in it): its results are saved, and it
        gets one line, with a warning if it ended early."""
        if not self.video:
            return
        path, frames, records = self.video
        self.video = None
        try:
            self.outputs.end_source(records)
        except CannotSave:
            self.failed += 1
            raise
        self.detections += len(records)
        name, declared = self.names.get(path, path), self.declared.get(path, 0)
        # Some containers' headers hold an estimate (duration x fps): a frame, or 1%, short is not called truncated.
        if interrupted and declared - frames > 0:
            self.incomplete += 1
            self.say(f"predict.py: warning: source '{name}': interrupted after frame {frames} of {declared}; "
                     "results cover those", sys.stderr)
        elif declared - frames > max(1, declared // 100):
            self.incomplete += 1
            self.say(f"predict.py: warning: source '{name}': truncated or corrupt after frame {frames}: "
                     f"{frames} of {declared} frames decode; predicted those", sys.stderr)
        else:
            self.ok += 1
        self.say(f"{name}: {frames} frames, {len(records)} detections")

    def finish(self, interrupt: KeyboardInterrupt | None = None, stopped: bool = False) -> int:
        """Save what is in hand, end detections.json, print the summary, return the exit status (see predict.py)."""
        try:
            self.end_video(interrupted=interrupt is not None)
        except CannotSave as e:
            error(f"{e}; stopped")
            stopped = True
        self.bar.close()
        done = self.ok + self.incomplete
        try:
            self.outputs.close(keep=done > 0)
        except CannotSave as e:
            error(f"{e}; detections.json not written")
        folder = self.outputs.folder
        if folder:
            _remove_if_empty(folder, self.outputs.existed)
        incomplete = f"{self.incomplete} incomplete, " if self.incomplete else ""
        counts = f"{self.ok} ok, {incomplete}{self.failed} failed"
        status = interrupted_status(interrupt) if interrupt else None
        how = " (terminated)" if status == 143 else " (interrupted)" if status else " (stopped)" if stopped else ""
        if not done:
            outcome = "nothing predicted"
        else:
            outcome = f"{self.detections} detections" + (f"; results in {folder}" if folder and folder.exists() else "")
        print(f"summary: {counts}{how}; {outcome}", flush=True)
        if interrupt:
            return interrupted_status(interrupt)
        return 0 if done and not (self.incomplete or self.failed) else 1 if done else 2


def _remove_if_empty(folder: Path, existed: Path) -> None:
    """A run folder claimed for results that never came: remove it, its empty labels/ and downloads/, and the parents
    made for it (up to `existed`, there before)."""
    for path in (folder / "labels", folder / "downloads", folder, *folder.parents):
        if path == existed:
            return
        with contextlib.suppress(OSError):
            path.rmdir()


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
        except (kernels.KernelUnavailable, CannotSave):
            raise  # the model cannot run at all, or results cannot be saved: not one file's fault
        except Exception as e:
            failed = inference.batch_path(predictor)
            if failed is None:
                raise  # before any file was read
            report.fail(failed, f"prediction failed ({first_line(e, with_type=True)})")
            files = loader.files[loader.files.index(failed) + 1:]


def predict_stream(predictor, source: str, report: Report) -> None:
    """A webcam or stream URL, opened by Ultralytics; it fails as a whole, with one line."""
    try:
        for r in predictor(source, stream=True):
            report.result(r, "stream", predictor.seen, None)
        report.end_video()
    except (kernels.KernelUnavailable, CannotSave):
        raise
    except Exception as e:
        report.drop_video()  # Ultralytics may name a stream's frames other than `source`
        report.fail(source, f"cannot predict on it ({first_line(e, with_type=True)})")


def main(argv=None, description: str | None = None) -> int:
    """predict.py. SIGTERM ends it as Ctrl-C does: the summary, and the results of what was predicted."""
    args = parse_args(argv, description)
    with sigterm_as_interrupt():
        try:
            return run(args)
        except KeyboardInterrupt as e:  # before predicting started (run reports one during prediction itself)
            error("interrupted")
            return interrupted_status(e)


def run(args) -> int:
    sources.quiet_opencv()
    weights, problem = check_args(args)
    if problem:
        error(problem)
        return 2
    inputs, problems = sources.expand(args.sources or [str(assets.DATA_DIR / "coco8/images/val")])
    report = Report()
    report.add(inputs)
    for path, reason in problems:
        report.fail(path, reason)
    if not inputs:
        return report.finish()

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
    if problem := check_model_args(args, predictor, weights):
        error(problem)
        return 2
    with contextlib.ExitStack() as stack:
        folder = existed = None
        if saving(args):
            existed = next(p for p in (Path(args.project).absolute(), *Path(args.project).absolute().parents)
                           if p.exists())
            try:
                folder = claim_folder(args.project, args.name)  # ours alone, even against a run started with it
            except OSError as e:
                error(f"--project '{args.project}': cannot create the run folder ({first_line(e)})")
                return 2
        report.outputs = Outputs(folder, args.save, args.save_txt, args.save_json, existed)
        stack.callback(report.outputs.abandon)  # nothing left half-done if an unforeseen error ends the run
        for i in [i for i in inputs if i.kind == "url"]:  # into the run's folder, never the current one
            inputs.remove(i)
            space = folder / "downloads" if folder else Path(stack.enter_context(tempfile.TemporaryDirectory()))
            try:
                inputs.append(sources.download(i.path, space))
                report.add(inputs[-1:])
            except sources.BadInput as e:
                report.fail(i.path, str(e))
        for i in inputs:
            if i.pages > 1:
                warning(f"source '{i.name}': a TIFF of {i.pages} pages; only the first page is predicted")
        return predict(predictor, inputs, report)


def predict(predictor, inputs: list[sources.Input], report: Report) -> int:
    level = LOGGER.level
    LOGGER.setLevel(logging.WARNING)  # our lines replace Ultralytics' ("Results saved to ..." once per stream)
    report.start(total=sum(1 if i.kind == "image" else i.frames for i in inputs))
    try:
        files = [i.path for i in inputs if i.kind in ("image", "video")]
        if files:
            predict_files(predictor, files, report)
        for i in inputs:
            if i.kind == "stream":
                predict_stream(predictor, i.path, report)
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (see main)
        return report.finish(interrupt=e)
    except CannotSave as e:
        error(f"{e}; stopped (what was saved before is complete)")
        return report.finish(stopped=True)
    except kernels.KernelUnavailable as e:
        error(str(e))
        return 2
    finally:
        LOGGER.setLevel(level)
    return report.finish()
