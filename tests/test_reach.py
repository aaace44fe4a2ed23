"""detector.reach: how large a box each model's head can predict, and train.py's warning when a dataset's boxes are
larger (Ultralytics trains them toward their clamped size without a word)."""

import os
import subprocess
import sys

import pytest
import yaml
from PIL import Image

from conftest import ROOT
from detector import assets, reach
from detector import training as train

MODELS = ROOT / "models"


def build(name: str):
    from ultralytics import YOLO

    return YOLO(assets.resolve_model(name))


@pytest.mark.parametrize("name, side", [("yolo11n-an.yaml", 960.0),
                                        ("yolo11n-an-p2t-r8.yaml", 224.0), ("yolo11n.yaml", 960.0),
                                        ("yolo26n.yaml", None)])
def test_longest_box_follows_the_heads_bins_and_coarsest_stride(name, side):
    """2 (reg_max - 1) strides of the coarsest level; no cap with direct regression (YOLO26's one bin)."""
    assert reach.longest_box(build(name)) == side


def test_the_cap_is_ultralytics_own():
    """The limit is the clamp in Ultralytics' loss: targets of reg_max - 1 strides at most (bbox2dist)."""
    import torch
    from ultralytics.utils.tal import bbox2dist

    anchor = torch.tensor([[10.0, 10.0]])
    box = torch.tensor([[0.0, 0.0, 30.0, 30.0]])  # 10-20 strides from the anchor
    assert bbox2dist(anchor, box, 8 - 1).max().item() < 7


@pytest.fixture
def dataset(tmp_path):
    """Two 640x480 images: one with a 320 px wide box (out of reach of a 224 px head at imgsz 640), one with three
    64 px boxes; and a portrait photo stored landscape with EXIF orientation 6 whose box is 0.9 of its (upright)
    height: 576 px at imgsz 640 only if the orientation is applied (else 0.9 * 480 * 640/640 = 432)."""
    (tmp_path / "images/train").mkdir(parents=True)
    (tmp_path / "labels/train").mkdir(parents=True)
    for stem, text in (("big", "0 0.5 0.5 0.5 0.2\n"), ("small", "0 0.2 0.2 0.1 0.1\n" * 3)):
        Image.new("RGB", (640, 480)).save(tmp_path / f"images/train/{stem}.jpg")
        (tmp_path / f"labels/train/{stem}.txt").write_text(text)
    exif = Image.Exif()
    exif[reach.EXIF_ORIENTATION] = 6
    Image.new("RGB", (640, 480)).save(tmp_path / "images/train/turned.jpg", exif=exif)
    (tmp_path / "labels/train/turned.txt").write_text("0 0.5 0.5 0.05 0.9\n")
    spec = {"path": str(tmp_path), "train": "images/train", "val": "images/train", "names": {0: "a"}}
    (tmp_path / "data.yaml").write_text(yaml.safe_dump(spec))
    return tmp_path


def test_reach_counts_boxes_larger_than_the_limit_at_imgsz(dataset):
    images = sorted(str(p) for p in (dataset / "images/train").iterdir())
    labels = [p.replace("/images/", "/labels/").replace(".jpg", ".txt") for p in images]
    assert reach.image_size(images[2]) == (480, 640)  # turned.jpg, upright
    r = reach.reach(images, labels, 640, 224.0, nc=1)
    assert (r.boxes, r.larger) == (5, 2)  # big (320 px) and turned (576 px)
    assert (reach.reach(images, labels, 320, 224.0, nc=1).larger) == 1  # at 320: only turned (288 px)
    assert reach.reach(images, labels, 640, 960.0, nc=1).larger == 0
    assert reach.reach(images, labels, 640, 224.0, nc=1, sample=2).sampled


def test_train_py_warns_before_training_only_where_boxes_are_out_of_reach(dataset, tmp_path):
    args = ["--data", str(dataset / "data.yaml"), "--project", str(tmp_path / "runs"), "--imgsz", "640"]
    capped = train.plan(*train.parse_args(["--model", "yolo11n-an-p2t-r8.yaml", *args]))
    assert capped.warnings == [
        "model 'yolo11n-an-p2t-r8.yaml' predicts boxes up to 224 px a side at imgsz 640; 40.0% of the train boxes "
        "(2 of 5) are larger and will be learned and predicted too small: train at a smaller imgsz, or pick a model "
        "whose head reaches further (16 DFL bins and a stride-32 level, as yolo11n-an.yaml: 960 px)"]
    assert train.plan(*train.parse_args(["--model", "yolo11n-an.yaml", *args])).warnings == []
    assert not (tmp_path / "runs").exists()  # a plan writes nothing
    # Said once per process: the trainer's own check (DetectorTrainer, at set-up) does not repeat train.py's line.
    assert reach.check(capped.model, "yolo11n-an-p2t-r8.yaml", capped.train_args["data"], 640) is None


@pytest.mark.slow
def test_the_detector_command_warns_once_at_set_up(dataset, tmp_path):
    """`detector train` (Ultralytics' CLI with our trainer) gets the same warning, from DetectorTrainer."""
    code = "import sys; from detector.cli import main; sys.exit(main())"
    r = subprocess.run([sys.executable, "-c", code, "train", f"model={MODELS / 'yolo11n-an-p2t-r8.yaml'}",
                        f"data={dataset / 'data.yaml'}", "imgsz=640", "epochs=1", "batch=2", "workers=0", "device=cpu",
                        "val=False", "plots=False", f"project={tmp_path / 'runs'}"],
                       capture_output=True, text=True, cwd=tmp_path, timeout=600,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert out.count("predicts boxes up to 224 px a side at imgsz 640; 40.0% of the train boxes (2 of 5)") == 1, out


def test_predict_warning_where_weights_run_larger_than_they_were_trained():
    capped, default = build("yolo11n-an-p2t-r8.yaml"), build("yolo11n-an.yaml")
    assert reach.predict_warning(capped, 320, 640) == (
        "predicts boxes up to 224 px a side; at imgsz 640 larger objects come out too small (trained at imgsz 320: "
        "predict at --imgsz 320)")
    assert reach.predict_warning(capped, None, 640).endswith("come out too small")  # training size unknown
    assert reach.predict_warning(capped, 320, 320) is None  # as trained
    assert reach.predict_warning(capped, 640, 640) is None  # trained at that size: train.py warned then
    assert reach.predict_warning(capped, 160, 224) is None  # nothing in a 224 px input is larger than 224 px
    assert reach.predict_warning(default, 320, 640) is None  # 960 px


def test_predict_py_warns_for_the_shipped_stride4_weights_above_their_training_size(tmp_path, capsys):
    from detector import predicting

    weights = ROOT / "weights/yolo11n-an-p2t-r8-hardhat.pt"
    image = ROOT / "data/coco8/images/val/000000000036.jpg"
    for extra, warned in ((["--imgsz", "640"], True), ([], False)):  # by default at their own imgsz, 320
        rc = predicting.main([str(image), "--weights", str(weights), "--project", str(tmp_path), *extra])
        err = capsys.readouterr().err
        assert rc == 0, err
        line = f"predict.py: warning: weights '{weights}': predicts boxes up to 224 px a side; at imgsz 640"
        assert (line in err) == warned and err.count("predicts boxes up to") == int(warned), err
