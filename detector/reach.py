"""How large a box a model can predict, and how many of a dataset's boxes are larger: train.py's warning, and
predict.py's where weights run at a larger size than they were trained at.

Ultralytics' Detect head predicts each box side as a distance from an anchor point, in strides, as the expected value
of a distribution over `reg_max` bins (DFL): 0 to reg_max - 1 strides, and its loss clamps the training targets to
that range (`bbox2dist(..., reg_max - 1)`). So a box can be at most 2 (reg_max - 1) strides of the coarsest level
wide or tall (its anchor at the centre): 960 px for YOLO11's head (16 bins, stride 32), 224 px for
yolo11n-an-p2t-r8 (8 bins, strides 4/8/16). A larger box is still matched to anchors and trained, but toward its
clamped size, and predicted too small. Nothing tells the user; with a model of a small reach on large objects
(COCO-like photos at 640), accuracy drops without a word. Direct-regression heads (reg_max 1, as YOLO26) have no
such cap.

Box sizes are measured as the trainer sees them at `imgsz`: each image letterboxed so its longer side is `imgsz`.
The image sizes come from the file headers (Pillow reads no pixels), the boxes from the label lines
`detector.labels` already judged (polygons by their bounding box). For large datasets an evenly spaced sample of the
images is read. The rule reads the head's `reg_max` and `stride` and rests on the loss's clamp; tests/test_reach.py
checks both against the installed Ultralytics.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import labels

SAMPLE = 2000  # images read at most; evenly spaced over the split
MIN_SHARE = 0.01  # warn from this share of boxes out of reach (hard-hat at 320 has 0.1% over -p2t-r8's 224 px)
EXIF_ORIENTATION = 0x0112  # orientations 5-8 turn the image a quarter: width and height swap, as Ultralytics reads it


def longest_box(model) -> float | None:
    """The largest box side, in pixels of the network input, that `model`'s Detect head can predict; None where it
    has no cap (one bin: direct regression). `model`: an Ultralytics DetectionModel (or a YOLO wrapping one)."""
    head = next((m for m in reversed(list(model.modules())) if hasattr(m, "reg_max")), None)  # Detect and its kin
    reg_max, strides = int(getattr(head, "reg_max", 1) or 1), getattr(head, "stride", None)
    if reg_max <= 1 or strides is None or not len(strides):
        return None
    return 2.0 * (reg_max - 1) * float(max(strides))


@dataclass
class Reach:
    """How many of the sampled boxes are larger than the model can predict."""

    limit: float  # px at imgsz
    imgsz: int
    boxes: int  # boxes looked at
    larger: int  # of those, boxes with a side over `limit`
    sampled: bool  # True: an evenly spaced sample of the split's images, not all of them

    def warning(self, model_name: str, split: str) -> str | None:
        """One line for train.py, or None when fewer than MIN_SHARE of the boxes are out of reach."""
        if not self.boxes or self.larger / self.boxes < MIN_SHARE:
            return None
        share = self.larger / self.boxes
        about = "about " if self.sampled else ""
        return (f"model '{model_name}' predicts boxes up to {self.limit:.0f} px a side at imgsz {self.imgsz}; "
                f"{about}{share:.1%} of the {split} boxes ({self.larger} of {self.boxes}"
                f"{' sampled' if self.sampled else ''}) are larger and will be learned and predicted too small: "
                f"train at a smaller imgsz, or pick a model whose head reaches further (16 DFL bins and a stride-32 "
                f"level, as yolo11n-an.yaml: 960 px)")


def image_size(path: str) -> tuple[int, int] | None:
    """(width, height) as the trainer sees the image (EXIF orientation applied), from its header; None if unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            w, h = im.size
            orientation = im.getexif().get(EXIF_ORIENTATION, 1)
    except Exception:  # an image the trainer will report itself; the warning just leaves it out
        return None
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def box_sides(line: str) -> tuple[float, float]:
    """(width, height), normalised, of one good label line: a box, or a polygon's bounding box."""
    coords = [float(v) for v in line.split()[1:]]
    if len(coords) == 4:
        return coords[2], coords[3]
    xs, ys = coords[0::2], coords[1::2]
    return max(xs) - min(xs), max(ys) - min(ys)


def reach(images: list[str], label_files: list[str], imgsz: int, limit: float, nc: int | None,
          sample: int = SAMPLE) -> Reach:
    """Count the boxes of a split (label files parallel to images) whose side at `imgsz` exceeds `limit` px."""
    step = max(1, -(-len(images) // sample))
    boxes = larger = 0
    for image, label_file in zip(images[::step], label_files[::step]):
        judged = labels.check_label_file(label_file, nc)
        if not judged.kept:
            continue
        size = image_size(image)
        if size is None:
            continue
        scale = imgsz / max(size)  # letterbox: the longer side becomes imgsz
        for line in judged.kept:
            w, h = box_sides(line)
            boxes += 1
            larger += int(max(w * size[0], h * size[1]) * scale > limit)
    return Reach(limit, imgsz, boxes, larger, sampled=step > 1)


_said: set[tuple] = set()  # (data, imgsz, limit, single_cls) already warned about in this process


def check(model, model_name: str, data_path: str, imgsz: int, single_cls: bool = False) -> str | None:
    """The warning line for `model` (an Ultralytics YOLO or DetectionModel) trained at `imgsz` on the dataset YAML at
    `data_path`, or None. Said once per process and dataset: train.py asks before the run folder is made, and
    DetectorTrainer (which the `detector train` command uses too) asks again at set-up."""
    from . import datasets

    limit = longest_box(model)
    if limit is None or limit >= imgsz:  # no side of a letterboxed image is longer than imgsz
        return None
    key = (str(data_path), int(imgsz), limit, bool(single_cls))
    if key in _said:
        return None
    _said.add(key)
    data = datasets.load(data_path)
    images = datasets.split_images(data["train"])
    nc = None if single_cls else len(data["names"])
    return reach(images, datasets.label_paths(images), imgsz, limit, nc).warning(model_name, "train")


def predict_warning(model, trained_imgsz, imgsz: int) -> str | None:
    """predict.py's line where weights whose head cannot reach across the input (a limit under `imgsz`) run at a larger
    size than they were trained at (`trained_imgsz`, from the checkpoint; None if unknown): objects grow with the
    input size, and those past the limit come out too small. None where that cannot happen."""
    limit = longest_box(model)
    if limit is None or limit >= imgsz or (trained_imgsz and imgsz <= int(trained_imgsz)):
        return None
    advice = f" (trained at imgsz {int(trained_imgsz)}: predict at --imgsz {int(trained_imgsz)})" if trained_imgsz else ""
    return (f"predicts boxes up to {limit:.0f} px a side; at imgsz {imgsz} larger objects come out too small"
            f"{advice}")
