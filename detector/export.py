"""Export a checkpoint to ONNX or OpenVINO and verify it against PyTorch on real images.

    python -m detector.export runs/detect/train/weights/best.pt    # ONNX at the training size, static, fp32, opset 17
    python -m detector.export best.pt --imgsz 320 --dynamic --half
    python -m detector.export best.pt --format openvino                    # -> best_openvino_model/ (CPU)
    python -m detector.export best.pt --format openvino --int8 --data my.yaml   # -> best_int8_openvino_model/

The export itself is Ultralytics' exporter (metadata with class names, stride and imgsz embedded: in the .onnx, or
as metadata.yaml and the IR's rt_info in an OpenVINO folder). Attention is exported as plain MatMul/Softmax
(`detector.kernels.attention` switches to it while exporting), not the opset-23 `Attention` op: ONNX Runtime,
TensorRT and OpenVINO all run the decomposed form, while support for `Attention` is still uneven. Opset 17
(LayerNorm-era, runs on ONNX Runtime >= 1.13 and TensorRT 8.6+) is the default. The OpenVINO export does not go
through ONNX: Ultralytics traces the model with torch.jit.trace (our attention takes the same MatMul/Softmax form
under a trace) and converts the trace with openvino.convert_model, whose passes fuse our area attention's
MatMul/Softmax/MatMul into OpenVINO's own ScaledDotProductAttention op.

After export the model is checked. fp32/fp16: PyTorch and the exported model (ONNX Runtime, or OpenVINO compiled in
f32) run the same letterboxed coco8 val images, the maximum absolute difference of the raw outputs is reported, and
the final detections (after NMS) must match. int8 (OpenVINO, calibrated by NNCF on the --data YAML's train split):
PyTorch fp32 and the int8 model are validated on its val split with Ultralytics' validator, and the mAP50-95 drop
must be at most --max-drop. The exit code is non-zero if a check fails.

The .onnx (or OpenVINO folder) is written under a temporary name and takes its real name only once exported and
checked: a failed export, or one that fails its check, never replaces one already there. Every argument is checked
before anything is loaded (one line `export: error: ...`, exit status 2).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import logging
import sys
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from . import assets, datasets
from .utils import (ArgumentParser, HelpFormatter, check_free_space, first_line, number, round_up_to_stride,
                    writable_problem)

if TYPE_CHECKING:  # imported where used: --help runs without torch
    import torch

DEFAULT_IMAGES = assets.DATA_DIR / "coco8/images/val"
FORMATS = ("onnx", "openvino")
# What Ultralytics' exporter and our check import, per format: pyproject's `export` and `openvino` extras (int8 adds
# nncf). Without them Ultralytics would try to pip-install them mid-export (an advert, then a traceback offline).
EXPORT_PACKAGES = {"onnx": ("onnx", "onnxslim", "onnxruntime"), "openvino": ("openvino",), "int8": ("nncf",)}
EXTRA = {"onnx": "export", "openvino": "openvino"}
INT8_MAX_MAP_DROP = 0.01  # mAP50-95 (0..1) an int8 model may lose against fp32 on the val split
CALIBRATION_IMAGES = 300  # at most, from the train split (NNCF's own default subset size)
# Raw outputs are boxes in pixels (0..imgsz) and class scores (0..1); fp32 graphs agree to ~1e-3 px, fp16 ones less.
BOX_TOLERANCE_PX = {False: 0.05, True: 2.0}
SCORE_TOLERANCE = {False: 1e-3, True: 2e-2}
DEFAULT_IMGSZ = 640  # for weights that do not record their training size
OPSET = 17  # ONNX Runtime >= 1.13 and TensorRT 8.6+ run it; attention stays MatMul/Softmax (not opset 23's Attention)
MIN_OPSET = 9  # Ultralytics' minimum for a detection graph without NMS
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


class Disagree(Exception):
    """The exported model and PyTorch disagree (fp32/fp16), or int8 lost more accuracy than allowed."""


def load_images(folder: Path, imgsz: int) -> tuple[list[Path], torch.Tensor]:
    """Letterbox each image to imgsz x imgsz as Ultralytics does: (N, 3, imgsz, imgsz) float in [0, 1], RGB."""
    import cv2
    import numpy as np
    import torch
    from ultralytics.data.augment import LetterBox

    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    letterbox = LetterBox((imgsz, imgsz), auto=False)
    batch = [letterbox(image=cv2.imread(str(p)))[..., ::-1].transpose(2, 0, 1) for p in paths]  # BGR->RGB, HWC->CHW
    return paths, torch.from_numpy(np.ascontiguousarray(np.stack(batch))).float() / 255


def detections(raw: torch.Tensor, conf: float = 0.25, iou: float = 0.7) -> list[torch.Tensor]:
    """Raw head output (N, 4 + nc, anchors) -> per image (n, 6) [x1, y1, x2, y2, conf, cls] after NMS."""
    from ultralytics.utils.nms import non_max_suppression

    return non_max_suppression(raw, conf, iou)


def same_detections(a: torch.Tensor, b: torch.Tensor, sure: float, box_px: float = 1.0) -> bool:
    """Every detection scoring above `sure` in either list has a twin in the other: same class, box within
    `box_px`. Boxes within the score tolerance of the threshold may legitimately appear on one side only."""
    for x, y in ((a, b), (b, a)):
        for det in x[x[:, 4] > sure]:
            twins = (y[:, 5] == det[5]) & ((y[:, :4] - det[:4]).abs().amax(1) <= box_px)
            if not bool(twins.any()):
                return False
    return True


def openvino_xml(folder: str | Path) -> Path:
    """The .xml graph inside an OpenVINO model folder (Ultralytics writes one, named after the weights)."""
    found = sorted(Path(folder).glob("*.xml"))
    if not found:
        raise FileNotFoundError(f"'{folder}': no OpenVINO .xml model in this folder")
    return found[0]


def runtime(path: str | Path, half: bool = False, precision: str | None = "f32"):
    """The exported model at `path` (.onnx file or OpenVINO folder) as a function: (N, 3, H, W) float tensor in
    [0, 1] -> raw head output (N, 4 + nc, anchors), float32, on the CPU. Returns (function, what runs it).

    OpenVINO by default runs fp32 graphs in bf16 on CPUs with bf16 units (its INFERENCE_PRECISION_HINT; Ultralytics'
    predictor keeps that default); `precision="f32"` pins fp32, so that the graph itself is checked, and None keeps
    the runtime's choice."""
    import numpy as np
    import torch

    if Path(path).is_dir():
        import openvino as ov

        core = ov.Core()
        config = {"PERFORMANCE_HINT": "LATENCY"} | ({"INFERENCE_PRECISION_HINT": precision} if precision else {})
        compiled = core.compile_model(core.read_model(openvino_xml(path)), "CPU", config)
        chosen = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()  # f32, bf16, f16
        return (lambda x: torch.from_numpy(compiled(x.numpy())[0]).float()), f"OpenVINO {chosen}"
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name, dtype = sess.get_inputs()[0].name, np.float16 if half else np.float32
    return (lambda x: torch.from_numpy(sess.run(None, {name: x.numpy().astype(dtype)})[0]).float()), "ONNX Runtime"


def compare(weights: str, exported: str, images: Path, imgsz: int, half: bool, conf: float = 0.01,
            precision: str | None = "f32") -> dict:
    """Run PyTorch and the exported model (.onnx or OpenVINO folder, see `runtime`) on the same images; returns the
    differences and whether detections match. A low `conf` compares many boxes, not only the confident few."""
    import torch

    from detector import weights as weights_io
    from detector.glue.inference import set_export_mode

    paths, x = load_images(images, imgsz)
    model = weights_io.load(weights).model.float().eval()
    set_export_mode(model, True)  # PyTorch in the layout the export has (SubgridDetect orders its anchors differently)
    with torch.no_grad():
        ref = model(x)  # (N, 4 + nc, anchors)
    run, ran = runtime(exported, half, precision)
    got = torch.cat([run(x[i : i + 1]) for i in range(len(x))])  # one by one: a static export has batch 1
    if got.shape != ref.shape:
        raise RuntimeError(f"{ran} output shape {tuple(got.shape)} differs from PyTorch {tuple(ref.shape)}")
    box_diff = (got[:, :4] - ref[:, :4]).abs().max().item()
    score_diff = (got[:, 4:] - ref[:, 4:]).abs().max().item()
    det_ref, det_got = detections(ref, conf), detections(got, conf)  # NMS once per side
    same = all(same_detections(a, b, conf + SCORE_TOLERANCE[half]) for a, b in zip(det_ref, det_got))
    return dict(runtime=ran, images=len(paths), max_abs_diff_boxes=box_diff, max_abs_diff_scores=score_diff,
                detections=sum(len(d) for d in det_ref), detections_match=same,
                within_tolerance=box_diff <= BOX_TOLERANCE_PX[half] and score_diff <= SCORE_TOLERANCE[half])


def int8_accuracy(weights: str, int8_model: str, data: str, imgsz: int) -> dict:
    """mAP50-95 of the fp32 PyTorch model and of its int8 OpenVINO export on `data`'s val split, with Ultralytics'
    validator: same images, same square letterbox (rect=False, as the validator runs a static export), batch 1."""
    from ultralytics import YOLO

    from detector import weights as weights_io

    with tempfile.TemporaryDirectory() as project, quiet():
        args = dict(data=data, imgsz=imgsz, batch=1, rect=False, device="cpu", plots=False, verbose=False,
                    project=project)
        fp32 = weights_io.load(weights).val(**args).box.map
        int8 = YOLO(str(int8_model), task="detect").val(**args).box.map
    return dict(fp32=fp32, int8=int8, drop=fp32 - int8)


@contextlib.contextmanager
def quiet(int8: bool = False):
    """Ultralytics' and NNCF's progress lines down to warnings (ours say what was written), torch.jit's deprecation
    warnings off (Ultralytics' OpenVINO export traces with it)."""
    from ultralytics.utils import LOGGER

    if int8:
        import nncf  # noqa: F401  its import sets its logger to INFO: import it before turning that down

    loggers = [LOGGER, logging.getLogger("nncf"), logging.getLogger("torch.utils.cpp_extension")]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(logging.ERROR if log.name.startswith("torch") else logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning, module="torch.jit")
            yield
    finally:
        for log, level in zip(loggers, levels):
            log.setLevel(level)


def missing_packages(format: str = "onnx", int8: bool = False) -> list[str]:
    """Which packages exporting to `format` needs and are not installed."""
    needed = EXPORT_PACKAGES[format] + (EXPORT_PACKAGES["int8"] if int8 else ())
    return [name for name in needed if importlib.util.find_spec(name) is None]


def missing_message(format: str, missing: list[str], what: str = "export") -> str:
    """One line: what is missing and the extra that installs it."""
    name = "ONNX" if format == "onnx" else "OpenVINO"
    return (f"{name} {what} needs {', '.join(missing)}, not installed: pip install -e '.[{EXTRA[format]}]' "
            f"(detector's {EXTRA[format]} extra)")


def destination(weights: str | Path, format: str = "onnx", int8: bool = False) -> Path:
    """Where the export of `weights` goes, as Ultralytics names it: best.onnx, best_openvino_model/,
    best_int8_openvino_model/ (next to the weights)."""
    weights = Path(weights)
    if format == "onnx":
        return weights.with_suffix(".onnx")
    return weights.with_name(f"{weights.stem}_{'int8_' if int8 else ''}openvino_model")


def export(weights: str, imgsz: int | None = None, dynamic: bool = False, half: bool = False, opset: int = OPSET,
           simplify: bool = True, check=None, format: str = "onnx", int8: bool = False, data: str | None = None) -> str:
    """Ultralytics' export of `weights` to `format` ("onnx" or "openvino"), to `destination(weights, format, int8)`;
    returns its path. `int8` (OpenVINO): NNCF post-training quantization calibrated on the train split of the
    dataset YAML `data` (its first CALIBRATION_IMAGES; the val split is left to measure it); Ultralytics keeps the
    head's decoding (DFL, box decoding, sigmoid) in floating point. Written atomically: if the export fails, or
    `check(path, imgsz)` (run on the new export before it takes the name) raises, an export already there is left as
    it was."""
    import torch

    from detector import weights as weights_io
    from detector.glue import exporter

    # Ultralytics exports fp16 ONNX only on a GPU: refuse --half without one rather than silently export fp32
    if half and format == "onnx" and not torch.cuda.is_available():
        raise ValueError("--half: Ultralytics exports fp16 ONNX only on a CUDA device; none is available here")
    if int8 and (format != "openvino" or half or not data):
        raise ValueError("int8: OpenVINO only, not with half, and with a dataset YAML (data) to calibrate on")
    model = weights_io.load(weights)  # restricted loading; on our SDPA layers (exported as MatMul/Softmax)
    trained = model.overrides.get("imgsz")  # the checkpoint's training size: what `yolo export` uses by default
    imgsz = imgsz or (max(trained) if isinstance(trained, (list, tuple)) else trained) or DEFAULT_IMGSZ
    imgsz = round_up_to_stride("export", imgsz, int(max(model.model.stride)))
    quantize = 8 if int8 else 16 if half else None
    if format == "onnx":
        settings = dict(opset=opset, simplify=simplify, device=0 if half else "cpu")
    elif int8:  # calibrate on the train split, so that the val split measures the int8 model on unseen images
        data = datasets.resolve(data)
        train = len(datasets.split_images(datasets.load(data)["train"]))
        settings = dict(device="cpu", data=data, split="train", fraction=min(1.0, CALIBRATION_IMAGES / train))
    else:
        settings = dict(device="cpu")
    dst = destination(weights, format, int8)
    # The weights alone take this much in the export (fp32 unless half or int8): say so now if the disk has less
    needed = sum(p.numel() for p in model.model.parameters()) * (1 if int8 else 2 if half else 4)
    check_free_space(dst.parent, needed, dst)
    with exporter.exporting_to(model, dst) as written:
        with quiet(int8) if format == "openvino" else contextlib.nullcontext():  # NNCF's hundreds of lines
            try:
                path = written(model.export(format=format, imgsz=imgsz, dynamic=dynamic, quantize=quantize,
                                            **settings))
            except RuntimeError:  # how OpenVINO's writer reports a full disk ("basic_ios::clear: iostream error")
                check_free_space(dst.parent, needed, dst)  # ENOSPC, if the disk filled up while writing
                raise
        if check:
            check(str(path), imgsz)
    return str(dst)


def opset(text: str) -> int:
    """An argparse type for --opset: an integer from MIN_OPSET to the installed onnx's newest (onnx is imported only
    when --opset is given: --help stays instant)."""
    try:
        import onnx

        newest = onnx.defs.onnx_opset_version()
    except ImportError:
        newest = None
    return number(int, MIN_OPSET, newest)(text)


def parse_args(argv=None) -> argparse.Namespace:
    p = ArgumentParser(prog="export", description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("weights", help="a .pt checkpoint (ours, or an Ultralytics YOLO12/YOLO11 one)")
    p.add_argument("--format", default="onnx", choices=FORMATS, help="onnx, or openvino (CPU)")
    p.add_argument("--imgsz", type=number(int, 32), default=None,
                   help=f"input size, >= 32, rounded up to the stride (default: the size the weights were trained at, "
                        f"else {DEFAULT_IMGSZ})")
    p.add_argument("--dynamic", action="store_true", help="dynamic batch and image size")
    p.add_argument("--half", action="store_true",
                   help="fp16 weights (ONNX: and activations, needs a GPU to export; OpenVINO: exported on the CPU)")
    p.add_argument("--int8", action="store_true", help="OpenVINO int8, calibrated on --data's train split")
    p.add_argument("--data", default=None, help="--int8: dataset YAML to calibrate on (train) and check on (val)")
    p.add_argument("--max-drop", type=number(float, 0, 1), default=INT8_MAX_MAP_DROP,
                   help="--int8: the largest mAP50-95 drop against fp32 that passes")
    p.add_argument("--opset", type=opset, default=OPSET,
                   help=f"ONNX opset, {MIN_OPSET} to the installed onnx's newest")
    p.add_argument("--no-simplify", dest="simplify", action="store_false", help="ONNX: skip onnxslim")
    p.add_argument("--images", default=str(DEFAULT_IMAGES), help="folder of images to verify fp32/fp16 on")
    p.add_argument("--no-verify", dest="verify", action="store_false", help="skip the check against PyTorch")
    return p.parse_args(argv)


def check_args(args) -> str | None:
    """The error line for arguments that need more than their text (None: all fine); loads nothing."""
    import torch

    from detector import weights as weights_io

    if problem := weights_io.problem(args.weights, (".pt",)):
        return f"weights '{args.weights}': {problem}"
    if problem := writable_problem(Path(args.weights).parent):
        return f"weights '{args.weights}': the {args.format} export goes next to them: {problem}"
    if args.half and args.format == "onnx" and not torch.cuda.is_available():
        return "--half: Ultralytics exports fp16 ONNX only on a CUDA device; none is available here"
    if args.int8 and args.format != "openvino":
        return "--int8: only with --format openvino"
    if args.int8 and args.half:
        return "--int8 and --half: pick one precision"
    if args.int8 and not args.data:
        return "--int8 needs --data, the dataset YAML to calibrate on (its train split) and check on (its val split)"
    if args.int8:
        try:
            datasets.load(datasets.resolve(args.data))
        except (FileNotFoundError, ValueError) as e:
            return str(e)
    images = Path(args.images)
    if args.verify and not args.int8 and not (images.is_dir() and
                                              any(p.suffix.lower() in IMAGE_SUFFIXES for p in images.iterdir())):
        return (f"--images '{args.images}': expected a folder with {', '.join(IMAGE_SUFFIXES)} images "
                "(or --no-verify)")
    if missing := missing_packages(args.format, args.int8):
        return missing_message(args.format, missing)
    return None


def main(argv=None) -> int:
    args = parse_args(argv)
    if problem := check_args(args):
        print(f"export: error: {problem}", file=sys.stderr)
        return 2

    def verify(path: str, imgsz: int) -> None:
        if args.int8:
            r = int8_accuracy(args.weights, path, datasets.resolve(args.data), imgsz)
            print(f"verify on {Path(args.data).name} val: mAP50-95 fp32 {r['fp32']:.4f}, int8 {r['int8']:.4f}, "
                  f"drop {r['drop']:.4f} (at most {args.max_drop})")
            if r["drop"] > args.max_drop:
                raise Disagree(f"the int8 model loses more than --max-drop {args.max_drop} mAP50-95")
            return
        r = compare(args.weights, path, Path(args.images), imgsz, args.half)
        print(f"verify on {r['images']} images, PyTorch vs {r['runtime']}: max |diff| boxes "
              f"{r['max_abs_diff_boxes']:.2e} px, scores {r['max_abs_diff_scores']:.2e}; {r['detections']} "
              f"detections, match: {r['detections_match']}")
        if args.format == "openvino":  # what predict.py will run: OpenVINO's own precision choice for this CPU
            d = compare(args.weights, path, Path(args.images), imgsz, args.half, precision=None)
            if d["runtime"] != r["runtime"]:
                print(f"  as deployed ({d['runtime']}, OpenVINO's default on this CPU): max |diff| boxes "
                      f"{d['max_abs_diff_boxes']:.2e} px, scores {d['max_abs_diff_scores']:.2e}; detections match: "
                      f"{d['detections_match']} (not checked: reduced precision is OpenVINO's choice)")
        if not (r["detections_match"] and r["within_tolerance"]):
            raise Disagree(f"{r['runtime']} and PyTorch disagree (see above)")

    dst = destination(args.weights, args.format, args.int8)
    try:
        path = export(args.weights, args.imgsz, args.dynamic, args.half, args.opset, args.simplify,
                      check=verify if args.verify else None, format=args.format, int8=args.int8, data=args.data)
    except ValueError as e:
        print(f"export: error: {e}", file=sys.stderr)
        return 2
    except Disagree as e:
        print(f"export: error: {e or 'the export and PyTorch disagree'}; {dst} not written", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"export: error: {first_line(e)}; {dst} not written", file=sys.stderr)
        return 1
    print(f"exported {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
