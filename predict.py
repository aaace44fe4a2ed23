"""Run a detector on images, folders, globs, videos, streams or lists of paths, with a .pt or an .onnx model.

    python predict.py                                   # newest runs/detect/*/weights/best.pt on data/coco8 val images
    python predict.py photo.jpg clips/ "shots/*.png" talk.mp4 --weights best.onnx --save-txt --save-json
    python predict.py 0 --weights best.pt --show        # webcam 0

Output goes to runs/predict/<name> (incremented), as with Ultralytics: annotated images and videos (same fps and
size), optional YOLO-format labels with confidences (--save-txt), and optional detections.json (--save-json).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import detector
from detector import assets, kernels


def default_weights() -> Path | None:
    """The newest best.pt under runs/detect (what train.py writes), or None."""
    found = sorted(Path("runs/detect").glob("*/weights/best.pt"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sources", nargs="*", help="images, folders, globs, videos, webcam index, URL or .txt list")
    p.add_argument("--weights", default=None, help=".pt (ours or Ultralytics YOLO12/11) or .onnx")
    p.add_argument("--conf", type=float, default=0.25)
    p.add_argument("--iou", type=float, default=0.7)
    p.add_argument("--imgsz", type=int, default=640)
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


def describe_weights(model, weights: Path) -> str:
    """Say which weights run and how they were trained (from the checkpoint's own record, when it has one)."""
    args = getattr(model, "ckpt", None) and model.ckpt.get("train_args") or {}
    if args:
        return (f"weights: {weights} (trained by {Path(str(args.get('model', '?'))).name} on "
                f"{Path(str(args.get('data', '?'))).name}, {args.get('epochs', '?')} epochs, imgsz {args.get('imgsz', '?')})")
    return f"weights: {weights}"


def main(argv=None) -> int:
    args = parse_args(argv)
    from ultralytics import YOLO

    weights = Path(args.weights) if args.weights else default_weights()
    if weights is None:
        print("predict.py: error: no --weights given and no runs/detect/*/weights/best.pt here: train first "
              "(python train.py) or pass --weights", file=sys.stderr)
        return 2
    if not weights.is_file() or weights.suffix not in (".pt", ".onnx"):
        print(f"predict.py: error: weights '{weights}': expected an existing .pt or .onnx file", file=sys.stderr)
        return 2
    sources = args.sources or [str(assets.DATA_DIR / "coco8/images/val")]
    for s in sources:
        if not (s.isdigit() or "://" in s or any(c in s for c in "*?[") or Path(s).exists()):
            print(f"predict.py: error: source '{s}': no such file or folder", file=sys.stderr)
            return 2
    try:
        if args.attn:
            kernels.set_kernel(args.attn)
        model = YOLO(str(weights), task="detect")
    except Exception as e:  # a corrupt checkpoint raises many kinds of errors; one line is what the user needs
        print(f"predict.py: error: weights '{weights}': cannot load ({type(e).__name__}: {e})", file=sys.stderr)
        return 2
    if weights.suffix == ".pt":
        detector.use_sdpa(model.model)  # stock YOLO12 checkpoints: their AAttn layers run on SDPA too
    print(describe_weights(model, weights))

    records, save_dir = [], None
    for source in sources:
        options = dict(conf=args.conf, iou=args.iou, imgsz=args.imgsz, classes=args.classes, max_det=args.max_det,
                       device=args.device, quantize=16 if args.half else None, save=args.save, save_txt=args.save_txt,
                       save_conf=args.save_txt, show=args.show, project=args.project, stream=True,
                       name=save_dir.name if save_dir else args.name, exist_ok=save_dir is not None)
        for r in model.predict(int(source) if source.isdigit() else source, **options):
            save_dir = Path(model.predictor.save_dir)
            frame = getattr(model.predictor.dataset, "frame", 0) if model.predictor.dataset.mode == "video" else None
            for box, conf, cls in zip(r.boxes.xyxy.tolist(), r.boxes.conf.tolist(), r.boxes.cls.tolist()):
                records.append(dict(image=r.path, frame=frame, class_id=int(cls), class_name=r.names[int(cls)],
                                    confidence=round(conf, 5), box_xyxy=[round(v, 2) for v in box]))
    if args.save_json and save_dir:
        save_dir.mkdir(parents=True, exist_ok=True)  # Ultralytics makes it only when it saves something
        out = save_dir / "detections.json"
        tmp = out.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(records, indent=1))
        os.replace(tmp, out)  # atomic: never a half-written file
    print(f"{len(records)} detections; results in {save_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
