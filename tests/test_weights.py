"""The shipped weights: weights-only files (no pickle), loading offline, predicting, and .pt vs .onnx through
predict.py giving the same detections."""

import json
import shutil
import socket
import subprocess
import sys

import pytest
import torch

from conftest import ROOT
from detector import assets, weights

COCO8_VAL = ROOT / "data/coco8/images/val"
SHIPPED = [assets.WEIGHTS_DIR / "yolo11n-an-coco128.pt", assets.WEIGHTS_DIR / "yolo11n-an-hardhat.pt"]


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_weights_load_without_pickle(path):
    record = torch.load(path, map_location="cpu", weights_only=True)  # raises if the file needs unpickling
    assert record["format"] == weights.FORMAT
    assert record["train_args"]["model"].endswith("yolo11n-an.yaml")
    assert record["card"] == "docs/weights.md" and (ROOT / record["card"]).exists()
    assert all(v.dtype == torch.float16 for v in record["state_dict"].values() if v.is_floating_point())


def test_coco128_weights_detect_people_offline(no_network):
    model = weights.load(assets.DEFAULT_WEIGHTS)
    assert len(model.names) == 80
    [r] = model.predict(str(COCO8_VAL / "000000000036.jpg"), imgsz=640, conf=0.25, device="cpu", verbose=False)
    found = [r.names[int(c)] for c in r.boxes.cls]
    assert "person" in found, found  # random or mis-loaded weights find nothing at conf 0.25


def test_hardhat_weights_load_offline(no_network):
    model = weights.load(SHIPPED[1])
    assert model.names == {0: "head", 1: "helmet", 2: "person"}
    [r] = model.predict(str(COCO8_VAL / "000000000036.jpg"), imgsz=320, conf=0.05, device="cpu", verbose=False)
    assert r.boxes.cls.numel() == 0 or set(r.boxes.cls.int().tolist()) <= {0, 1, 2}


def test_weights_only_round_trip_predicts_like_the_checkpoint(trained_run, tmp_path):
    from ultralytics import YOLO

    best = trained_run[0] / "weights/best.pt"
    out = weights.save_weights_only(best, tmp_path / "w.pt")
    assert weights.read_weights_only(best) is None  # an Ultralytics checkpoint: needs pickle, not read as ours
    x = torch.rand(2, 3, 64, 64)
    ref = YOLO(str(best)).model.float().eval()
    got = weights.load(out).model.float().eval()
    with torch.no_grad():
        a, b = ref(x)[0], got(x)[0]
    assert torch.allclose(a, b, atol=5e-2, rtol=1e-2)  # weights stored in fp16: same as Ultralytics' own strip


def test_predict_defaults_to_the_shipped_weights(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "predict.py"), "--no-save", "--project", str(tmp_path)],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"weights: {assets.DEFAULT_WEIGHTS}" in r.stdout
    assert "see docs/weights.md" in r.stdout and "coco128" in r.stdout
    assert "summary: 4 ok, 0 failed" in r.stdout


def test_predict_pt_and_onnx_give_the_same_detections(tmp_path):
    """predict.py on coco8 val with the shipped .pt and with its ONNX export: same boxes, classes and scores."""
    pt = tmp_path / "model.pt"
    shutil.copy(assets.DEFAULT_WEIGHTS, pt)
    r = subprocess.run([sys.executable, "-m", "detector.export", str(pt), "--imgsz", "640"], capture_output=True,
                       text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    onnx = tmp_path / "model.onnx"
    assert onnx.exists()

    found = {}
    for w in (pt, onnx):
        cmd = [sys.executable, str(ROOT / "predict.py"), str(COCO8_VAL), "--weights", str(w), "--imgsz", "640",
               "--conf", "0.05", "--save-json", "--no-save", "--device", "cpu", "--project", str(tmp_path),
               "--name", w.suffix[1:]]
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        found[w.suffix] = json.loads((tmp_path / w.suffix[1:] / "detections.json").read_text())

    def key(d):
        return (d["image"], -d["confidence"])

    a, b = sorted(found[".pt"], key=key), sorted(found[".onnx"], key=key)
    assert len(a) == len(b) > 0
    for x, y in zip(a, b):
        assert x["image"] == y["image"] and x["class_id"] == y["class_id"]
        assert abs(x["confidence"] - y["confidence"]) < 1e-3
        assert max(abs(u - v) for u, v in zip(x["box_xyxy"], y["box_xyxy"])) < 0.5  # pixels
