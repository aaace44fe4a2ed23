"""Export a checkpoint to ONNX and verify it against PyTorch on real images.

    python -m detector.export runs/detect/train/weights/best.pt            # 640, static shape, fp32, opset 17
    python -m detector.export best.pt --imgsz 320 --dynamic --half

The export itself is Ultralytics' exporter (simplified graph, metadata with class names, stride and imgsz embedded).
Attention is exported as plain MatMul/Softmax (`detector.kernels.attention` switches to it while exporting), not
the opset-23 `Attention` op: ONNX Runtime, TensorRT and OpenVINO all run the decomposed form, while support for
`Attention` is still uneven. Opset 17 (LayerNorm-era, runs on ONNX Runtime >= 1.13 and TensorRT 8.6+) is the default.

After export the file is checked: PyTorch and ONNX Runtime run the same letterboxed coco8 val images, the maximum
absolute difference of the raw outputs is reported, and the final detections (after NMS) must match. The exit code
is non-zero if they don't.

The .onnx is written under a temporary name and takes its real name only once exported and checked: a failed export,
or one that disagrees with PyTorch, never replaces an .onnx already there. Every argument is checked before anything
is loaded (one line `export: error: ...`, exit status 2).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np
import torch

from . import assets
from .utils import ArgumentParser, first_line, number, round_up_to_stride, writable_problem

DEFAULT_IMAGES = assets.DATA_DIR / "coco8/images/val"
# What Ultralytics' ONNX exporter and our check import: pyproject's `export` extra. Without them Ultralytics would try
# to pip-install them mid-export (an advert, then a traceback offline).
EXPORT_PACKAGES = ("onnx", "onnxslim", "onnxruntime")
MISSING_HINT = "not installed: pip install -e '.[export]' (detector's export extra)"
# Raw outputs are boxes in pixels (0..imgsz) and class scores (0..1); fp32 graphs agree to ~1e-3 px, fp16 ones less.
BOX_TOLERANCE_PX = {False: 0.05, True: 2.0}
SCORE_TOLERANCE = {False: 1e-3, True: 2e-2}
MIN_OPSET = 9  # Ultralytics' minimum for a detection graph without NMS
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


class Disagree(Exception):
    """ONNX Runtime and PyTorch disagree on the exported graph."""


def load_images(folder: Path, imgsz: int) -> tuple[list[Path], torch.Tensor]:
    """Letterbox each image to imgsz x imgsz as Ultralytics does: (N, 3, imgsz, imgsz) float in [0, 1], RGB."""
    import cv2
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


def compare(weights: str, onnx_path: str, images: Path, imgsz: int, half: bool, conf: float = 0.01) -> dict:
    """Run PyTorch and ONNX Runtime on the same images; returns the differences and whether detections match.
    A low `conf` compares many boxes, not only the confident few."""
    import onnxruntime as ort

    from detector import weights as weights_io

    paths, x = load_images(images, imgsz)
    model = weights_io.load(weights).model.float().eval()
    with torch.no_grad():
        ref = model(x)[0]
    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    outs = [sess.run(None, {inp.name: x[i : i + 1].numpy().astype(np.float16 if half else np.float32)})[0]
            for i in range(len(x))]  # one by one: a static export has batch 1
    got = torch.from_numpy(np.concatenate(outs)).float()
    if got.shape != ref.shape:
        raise RuntimeError(f"ONNX output shape {tuple(got.shape)} differs from PyTorch {tuple(ref.shape)}")
    box_diff = (got[:, :4] - ref[:, :4]).abs().max().item()
    score_diff = (got[:, 4:] - ref[:, 4:]).abs().max().item()
    det_ref, det_onnx = detections(ref, conf), detections(got, conf)  # NMS once per side
    same = all(same_detections(a, b, conf + SCORE_TOLERANCE[half]) for a, b in zip(det_ref, det_onnx))
    return dict(images=len(paths), max_abs_diff_boxes=box_diff, max_abs_diff_scores=score_diff,
                detections=sum(len(d) for d in det_ref), detections_match=same,
                within_tolerance=box_diff <= BOX_TOLERANCE_PX[half] and score_diff <= SCORE_TOLERANCE[half])


def missing_packages() -> list[str]:
    """Which of the export extra's packages are not installed."""
    return [name for name in EXPORT_PACKAGES if importlib.util.find_spec(name) is None]


def export(weights: str, imgsz: int = 640, dynamic: bool = False, half: bool = False, opset: int = 17,
           simplify: bool = True, check=None) -> str:
    """Ultralytics' ONNX export of `weights` to the .onnx next to them; returns its path. Written atomically: if the
    export fails, or `check(path, imgsz)` (run on the new file before it takes the name) raises, an .onnx already
    there is left as it was."""
    from detector import weights as weights_io
    from detector.glue import exporter

    # Ultralytics exports fp16 ONNX only on a GPU: refuse --half without one rather than silently export fp32
    if half and not torch.cuda.is_available():
        raise ValueError("--half: Ultralytics exports fp16 ONNX only on a CUDA device; none is available here")
    model = weights_io.load(weights)  # restricted loading; on our SDPA layers (exported as MatMul/Softmax)
    imgsz = round_up_to_stride("export", imgsz, int(max(model.model.stride)))
    dst = Path(weights).with_suffix(".onnx")
    with exporter.exporting_to(model, dst) as written:
        path = written(model.export(format="onnx", imgsz=imgsz, dynamic=dynamic, quantize=16 if half else None,
                                    opset=opset, simplify=simplify, device=0 if half else "cpu"))
        if check:
            check(str(path), imgsz)
    return str(dst)


def parse_args(argv=None) -> argparse.Namespace:
    try:
        import onnx

        max_opset = onnx.defs.onnx_opset_version()
    except ImportError:
        max_opset = None
    p = ArgumentParser(prog="export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("weights", help="a .pt checkpoint (ours, or an Ultralytics YOLO12/YOLO11 one)")
    p.add_argument("--imgsz", type=number(int, 32), default=640, help="input size, >= 32, rounded up to the stride")
    p.add_argument("--dynamic", action="store_true", help="dynamic batch and image size")
    p.add_argument("--half", action="store_true", help="fp16 weights and activations (needs a GPU to export)")
    p.add_argument("--opset", type=number(int, MIN_OPSET, max_opset), default=17,
                   help=f"ONNX opset, {MIN_OPSET} to {max_opset} (the installed onnx's newest)")
    p.add_argument("--no-simplify", dest="simplify", action="store_false")
    p.add_argument("--images", default=str(DEFAULT_IMAGES), help="folder of images to verify on")
    p.add_argument("--no-verify", dest="verify", action="store_false")
    return p.parse_args(argv)


def check_args(args) -> str | None:
    """The error line for arguments that need more than their text (None: all fine); loads nothing."""
    from detector import weights as weights_io

    if problem := weights_io.problem(args.weights, (".pt",)):
        return f"weights '{args.weights}': {problem}"
    if problem := writable_problem(Path(args.weights).parent):
        return f"weights '{args.weights}': the .onnx goes next to them: {problem}"
    if args.half and not torch.cuda.is_available():
        return "--half: Ultralytics exports fp16 ONNX only on a CUDA device; none is available here"
    images = Path(args.images)
    if args.verify and not (images.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in images.iterdir())):
        return (f"--images '{args.images}': expected a folder with {', '.join(IMAGE_SUFFIXES)} images "
                "(or --no-verify)")
    if missing := missing_packages():
        return f"ONNX export needs {', '.join(missing)}, {MISSING_HINT}"
    return None


def main(argv=None) -> int:
    args = parse_args(argv)
    if problem := check_args(args):
        print(f"export: error: {problem}", file=sys.stderr)
        return 2

    def verify(path: str, imgsz: int) -> None:
        r = compare(args.weights, path, Path(args.images), imgsz, args.half)
        print(f"verify on {r['images']} images: max |diff| boxes {r['max_abs_diff_boxes']:.2e} px, scores "
              f"{r['max_abs_diff_scores']:.2e}; {r['detections']} detections, match: {r['detections_match']}")
        if not (r["detections_match"] and r["within_tolerance"]):
            raise Disagree()

    try:
        path = export(args.weights, args.imgsz, args.dynamic, args.half, args.opset, args.simplify,
                      check=verify if args.verify else None)
    except ValueError as e:
        print(f"export: error: {e}", file=sys.stderr)
        return 2
    except Disagree:
        print(f"export: error: ONNX Runtime and PyTorch disagree (see above); "
              f"{Path(args.weights).with_suffix('.onnx')} not written", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"export: error: {first_line(e)}; {Path(args.weights).with_suffix('.onnx')} not written",
              file=sys.stderr)
        return 1
    print(f"exported {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
