"""What predict.py does: sources in, Ultralytics' predictor over them, one line per input, a summary, an exit status.

The contract (inputs, outputs, error lines, exit codes) is predict.py's docstring. The predictor is the one
`YOLO(weights).predict(...)` builds, with the same arguments (detector.glue.inference.setup_predictor): the same
image size (the checkpoint's unless --imgsz is given), letterbox and thresholds as the Python API and the `detector
predict` command. What predict.py adds is around it: arguments checked before any work (detector.predict_args), weights
checked before anything is written (`load_predictor`), result files written atomically (detector.predict_outputs),
a line per input and the summary (detector.predict_report), and the two ways inputs are fed (`predict_files` for
images and videos through our loader, which skips a file that does not decode and goes on; `predict_stream` for
webcams and stream URLs, which Ultralytics opens).
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from pathlib import Path

from torch import nn
from ultralytics.utils import LOGGER

from . import allocator, assets, kernels, precision, reach, sources
from . import weights as weights_io
from .glue import inference, rundirs
from .glue.loader import Loader
from .predict_args import check_args, check_model_args, error, parse_args, saving, warning
from .predict_outputs import CannotSave, Outputs
from .predict_report import Report
from .utils import first_line, interrupted_status, sigterm_as_interrupt

__all__ = ["load_predictor", "main", "parse_args"]


def describe_weights(yolo, weights: Path, imgsz) -> str:
    """Say which weights run, how they were trained (from the checkpoint's own record, when it has one) and at what
    size they predict."""
    ckpt = getattr(yolo, "ckpt", None) or {}
    args = ckpt.get("train_args") or {}
    card = f"; see {ckpt['card']}" if ckpt.get("card") else ""
    # Shipped weights record the epochs of all the runs that made them; train_args has only the last run's.
    epochs = ckpt.get("epochs") or args.get("epochs", "?")
    size = f"predicting at imgsz {imgsz[0] if isinstance(imgsz, (list, tuple)) and len(set(imgsz)) == 1 else imgsz}"
    if args:
        return (f"weights: {weights} (trained by {Path(str(args.get('model', '?'))).name} on "
                f"{Path(str(args.get('data', '?'))).name}, {epochs} epochs, imgsz {args.get('imgsz', '?')}{card}); "
                f"{size}")
    return f"weights: {weights}; {size}"


def load_predictor(args, weights: Path, yolo=None):
    """The predictor `YOLO(weights).predict` builds for these arguments, its model set up, nothing written yet; raises
    if the weights don't load (NonFiniteWeights if they hold NaN or infinities). It saves nothing: `Outputs` does."""
    yolo = yolo or weights_io.load(weights)  # restricted loading (refuses code), onto our SDPA layers
    if isinstance(yolo.model, nn.Module) and (problem := inference.nonfinite_problem(yolo.model)):
        raise inference.NonFiniteWeights(f"weights '{weights}': {problem}")
    overrides = dict(conf=args.conf, iou=args.iou, classes=args.classes, max_det=args.max_det, device=args.device,
                     quantize=16 if args.half else None, show=args.show, compile=args.compile or False,
                     save=False, verbose=False)
    if args.imgsz:
        overrides["imgsz"] = args.imgsz  # else the checkpoint's, as YOLO.predict (an export: its own, when fixed)
    device = precision.resolve_device(args.device)
    if isinstance(yolo.model, nn.Module) and precision.predicts_channels_last(device):
        overrides["channels_last"] = True
    if device.type == "cpu":
        allocator.keep_freed_memory()  # no page faults in every forward pass
    return inference.setup_predictor(yolo, **overrides)  # an .onnx or OpenVINO model is opened here, by AutoBackend


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


def main(argv=None, description: str | None = None, args=None) -> int:
    """predict.py (`args`: already parsed). SIGTERM ends it as Ctrl-C does: the summary, and the results of what was
    predicted."""
    args = args or parse_args(argv, description)
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
        yolo = weights_io.load(weights)
        predictor = load_predictor(args, weights, yolo)
    except weights_io.UnsafeCheckpoint as e:  # refused before any of its code ran; the line says how to opt in
        error(str(e))
        return 2
    except inference.NonFiniteWeights as e:  # predicting would find nothing, silently
        error(str(e))
        return 2
    except Exception as e:  # a corrupt checkpoint raises many kinds of errors; one line is what the user needs
        error(f"weights '{weights}': cannot load it ({first_line(e, with_type=True)})")
        return 2
    if problem := check_model_args(args, predictor, weights):
        error(problem)
        return 2
    announce(yolo, predictor, weights)
    with contextlib.ExitStack() as stack:
        folder = existed = None
        if saving(args):
            project = rundirs.planned(args.project, args.name).parent
            existed = next(p for p in (project, *project.parents) if p.exists())
            try:
                folder = rundirs.claim(args.project, args.name)  # ours alone, even against a run started with it
            except OSError as e:
                error(f"--project '{args.project or project}': cannot create the run folder ({first_line(e)})")
                return 2
        report.outputs = Outputs(folder, args.save, args.save_txt, args.save_json, existed, warn=warning)
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


def announce(yolo, predictor, weights: Path) -> None:
    """The weights line, and reach's warning where the size exceeds what the head can predict at."""
    fixed = getattr(predictor.model, "imgsz", None)
    imgsz = fixed if fixed and not predictor.model.dynamic else predictor.args.imgsz
    print(describe_weights(yolo, weights, imgsz))
    if isinstance(yolo.model, nn.Module):  # a .pt (an exported graph does not say how far its head reaches)
        trained = ((getattr(yolo, "ckpt", None) or {}).get("train_args") or {}).get("imgsz")
        size = max(imgsz) if isinstance(imgsz, (list, tuple)) else int(imgsz)
        if note := reach.predict_warning(yolo.model, trained if isinstance(trained, int) else None, size):
            warning(f"weights '{weights}': {note}")


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
