"""The shipped weights: Ultralytics checkpoints that load with its restricted loader, carry no path of the machine
they were trained on, load offline and predict; `python -m detector.weights` writes such files; .pt vs .onnx through
predict.py give the same detections."""

import json
import pickletools
import re
import shutil
import socket
import subprocess
import sys
import zipfile

import pytest
import torch

from conftest import ROOT
from detector import assets, weights
from detector.glue import checkpoints

COCO8_VAL = ROOT / "data/coco8/images/val"
SHIPPED = [assets.WEIGHTS_DIR / "yolo11n-an-coco128.pt", assets.WEIGHTS_DIR / "yolo11n-an-hardhat.pt",
           assets.WEIGHTS_DIR / "yolo11n-an-p2t-r8-hardhat.pt"]
DESIGNS = {"yolo11n-an-coco128": "yolo11n-an-v1.yaml", "yolo11n-an-hardhat": "yolo11n-an.yaml",
           "yolo11n-an-p2t-r8-hardhat": "yolo11n-an-p2t-r8.yaml"}  # docs/weights.md
# The classes of ours a shipped file may record: the default's sub-grid head, which Ultralytics has no class for
# (everything else is Ultralytics' own, so the attention layers load as Ultralytics' without `import detector`).
OUR_CLASSES = {"yolo11n-an-hardhat": {"detector.head SubgridThinDetect", "detector.head LastAxisDFL"}}


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def pickled_strings(path) -> list[str]:
    """Every string in a checkpoint's pickle (keys, settings, attribute values, class paths), read without loading."""
    with zipfile.ZipFile(path) as z:
        data = z.read(next(n for n in z.namelist() if n.endswith("/data.pkl")))
    return [arg for _, arg, _ in pickletools.genops(data) if isinstance(arg, str)]


def our_classes(path) -> set[str]:
    """The classes of ours a checkpoint's pickle records, as "module Class" (pickle's global references)."""
    return {s for s in pickled_strings(path) if s.startswith("detector.") and " " in s}


def machine_paths(path) -> list[str]:
    """Absolute paths (POSIX or Windows) anywhere in a checkpoint: where it was trained, not what it is."""
    return [s for s in pickled_strings(path) if s.startswith("/") or re.match(r"^[A-Za-z]:[\\/]|^\\\\", s)]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_weights_are_ultralytics_checkpoints_without_machine_paths(path):
    ckpt, _ = checkpoints.ULTRALYTICS_LOAD(path, safe_only=True)  # Ultralytics' own restricted loader, unhooked
    model = ckpt["model"]
    design = DESIGNS[path.stem]
    assert type(model).__module__ == "ultralytics.nn.tasks" and ckpt["train_args"]["model"] == design
    assert our_classes(path) == OUR_CLASSES.get(path.stem, set())  # the rest: Ultralytics' classes, no detector needed
    assert machine_paths(path) == []
    assert ckpt["card"] == "docs/weights.md" and (ROOT / ckpt["card"]).exists()
    assert all(v.dtype == torch.float16 for v in model.state_dict().values() if v.is_floating_point())
    assert path.stat().st_size < 6_000_000  # fp16: the repository stays small
    if "coco128" in path.stem:
        assert ckpt["epochs"] == 2390 and ckpt["train_args"]["data"] == "coco128.yaml"


def test_coco128_weights_detect_people_offline(no_network):
    model = weights.load(assets.DEFAULT_WEIGHTS)
    assert len(model.names) == 80
    [r] = model.predict(str(COCO8_VAL / "000000000036.jpg"), imgsz=640, conf=0.25, device="cpu", verbose=False)
    found = [r.names[int(c)] for c in r.boxes.cls]
    assert "person" in found, found  # random or mis-loaded weights find nothing at conf 0.25


@pytest.mark.parametrize("path", SHIPPED[1:], ids=lambda p: p.stem)
def test_hardhat_weights_load_offline(no_network, path):
    model = weights.load(path)
    assert model.names == {0: "head", 1: "helmet", 2: "person"}
    [r] = model.predict(str(COCO8_VAL / "000000000036.jpg"), imgsz=320, conf=0.05, device="cpu", verbose=False)
    assert r.boxes.cls.numel() == 0 or set(r.boxes.cls.int().tolist()) <= {0, 1, 2}


def test_publish_writes_a_shareable_checkpoint_with_the_same_weights(trained_run, tmp_path):
    """python -m detector.weights: a train.py checkpoint (machine paths, optimizer) -> one fit to share."""
    best = trained_run[0] / "weights/best.pt"
    assert machine_paths(best)  # what training records: the dataset, the run folder, the git checkout
    out = tmp_path / "mine.pt"
    r = subprocess.run([sys.executable, "-m", "detector.weights", str(best), str(out), "--card", "docs/mine.md",
                        "--epochs", "7"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == f"wrote {out}", r.stderr[-2000:]
    assert machine_paths(out) == []
    assert our_classes(out) == OUR_CLASSES["yolo11n-an-hardhat"]  # the default's head, as in the shipped file
    ckpt, _ = checkpoints.ULTRALYTICS_LOAD(out, safe_only=True)
    assert (ckpt["card"], ckpt["epochs"], ckpt.get("optimizer")) == ("docs/mine.md", 7, None)
    assert ckpt["train_args"]["data"] == "coco8.yaml" and ckpt["train_args"]["project"] is None
    ref = torch.load(best, map_location="cpu", weights_only=False)["model"].state_dict()  # our own file: trusted
    got = ckpt["model"].state_dict()
    assert set(got) == set(ref) and all(torch.equal(got[k], ref[k].half()) for k in ref if ref[k].is_floating_point())


@pytest.mark.slow
def test_predict_defaults_to_the_shipped_weights(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "predict.py"), "--no-save", "--project", str(tmp_path)],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"weights: {assets.DEFAULT_WEIGHTS}" in r.stdout
    assert "see docs/weights.md" in r.stdout and "coco128" in r.stdout
    assert "summary: 4 ok, 0 failed" in r.stdout


@pytest.mark.slow
def test_predict_pt_and_onnx_give_the_same_detections(tmp_path):
    """predict.py on coco8 val with the shipped .pt and with its ONNX export: same boxes, classes and scores. A
    dynamic-size export, letterboxed as the .pt is (to the image's aspect; a fixed-size one is padded square)."""
    pt = tmp_path / "model.pt"
    shutil.copy(assets.DEFAULT_WEIGHTS, pt)
    r = subprocess.run([sys.executable, "-m", "detector.export", str(pt), "--imgsz", "640", "--dynamic"],
                       capture_output=True, text=True, cwd=ROOT, timeout=600)
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
