"""predict.py, the `detector predict` command and `YOLO(w).predict` give the same boxes and scores for the same weights
and source, each with its defaults (the image size the weights were trained or exported at, Ultralytics' letterbox
and thresholds): the shipped coco128 weights on coco8 (at 640; predict.py's square letterbox once found a second dog
in 000000000042.jpg) and the hard-hat weights on hardhat8 (trained at 320; predict.py once predicted at 640), as
.pt, as .onnx and as an OpenVINO folder exported with detector.export. Also: both tools' defaults run from any folder,
offline (no weights or source given: the shipped weights on the bundled coco8 images)."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys

import cv2
import pytest
import torch

from conftest import ROOT
from detector import assets, cli, export, predicting
from test_predict_errors import restore_opencv_logging  # noqa: F401  (autouse: predict.main silences OpenCV)

COCO8 = ROOT / "data/coco8/images/val"
HARDHAT8 = ROOT / "data/hardhat8/images/val"
HARDHAT = assets.WEIGHTS_DIR / "yolo11n-an-hardhat.pt"
BOX_PX, SCORE = 0.02, 1e-4  # detections.json keeps 2 decimals of a pixel and 5 of a score; labels 6 digits


def yolo_predict(weights, source, device="cpu", half=False) -> dict[str, torch.Tensor]:
    """{image name: (n, 6) [x1, y1, x2, y2, conf, cls]} from the Python API, all defaults."""
    from ultralytics import YOLO

    return {os.path.basename(r.path): r.boxes.data.cpu().float() for r in YOLO(str(weights)).predict(
        str(source), device=device, half=half, verbose=False)}


def predict_py(weights, source, tmp_path, capsys, device="cpu", half=False) -> tuple[dict[str, torch.Tensor], str]:
    """The same from predict.py (its detections.json), and its stdout."""
    code = predicting.main([str(source), "--weights", str(weights), "--device", device, "--no-save", "--save-json",
                            "--project", str(tmp_path), "--name", "py", *(["--half"] if half else [])])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    found = {p.name: torch.zeros(0, 6) for p in source.glob("*.jpg")}
    for r in json.loads((tmp_path / "py/detections.json").read_text()):
        row = torch.tensor([[*r["box_xyxy"], r["confidence"], r["class_id"]]])
        found[os.path.basename(r["image"])] = torch.cat([found[os.path.basename(r["image"])], row])
    return found, out


def detector_predict(weights, source, tmp_path, capsys, device="cpu", half=False) -> dict[str, torch.Tensor]:
    """The same from the `detector predict` command (its labels with confidences, in pixels of the image)."""
    code = cli.main(["predict", f"model={weights}", f"source={source}", f"device={device}", f"half={half}",
                     "save=False", "save_txt=True", "save_conf=True", f"project={tmp_path}", "name=cmd"])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    found = {}
    for image in source.glob("*.jpg"):
        h, w = cv2.imread(str(image)).shape[:2]
        label = tmp_path / "cmd/labels" / f"{image.stem}.txt"
        rows = [list(map(float, line.split())) for line in label.read_text().splitlines()] if label.exists() else []
        found[image.name] = torch.tensor([[(x - bw / 2) * w, (y - bh / 2) * h, (x + bw / 2) * w, (y + bh / 2) * h,
                                           conf, cls] for cls, x, y, bw, bh, conf in rows]).reshape(-1, 6)
    return found


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """The same detections in any order: sorted by class then score, boxes within BOX_PX, scores within SCORE."""
    if a.shape != b.shape:
        return False
    a, b = (t[torch.argsort(t[:, 4], descending=True, stable=True)] for t in (a, b))
    a, b = (t[torch.argsort(t[:, 5], stable=True)] for t in (a, b))
    return bool(((a[:, :4] - b[:, :4]).abs() <= BOX_PX).all() and ((a[:, 4] - b[:, 4]).abs() <= SCORE).all()
                and (a[:, 5] == b[:, 5]).all())


@pytest.fixture(scope="module")
def hardhat_exports(tmp_path_factory):
    """The hard-hat weights exported, at the size they were trained at (320), to ONNX and (if installed) OpenVINO."""
    folder = tmp_path_factory.mktemp("exports")
    pt = shutil.copy(HARDHAT, folder / "hardhat.pt")
    formats = {"onnx": export.export(str(pt), imgsz=320)}
    if importlib.util.find_spec("openvino"):  # the .[openvino] extra
        formats["openvino"] = export.export(str(pt), imgsz=320, format="openvino")
    return formats


@pytest.mark.parametrize("weights, source, imgsz", [(assets.DEFAULT_WEIGHTS, COCO8, 640), (HARDHAT, HARDHAT8, 320)],
                         ids=["coco128", "hardhat"])
def test_three_tools_agree_on_pt(weights, source, imgsz, tmp_path, capsys):
    api = yolo_predict(weights, source)
    script, out = predict_py(weights, source, tmp_path, capsys)
    command = detector_predict(weights, source, tmp_path, capsys)
    assert f"predicting at imgsz {imgsz}" in out, out
    assert sum(map(len, api.values())) > 0
    for name in api:
        assert same(script[name], api[name]), (name, script[name], api[name])
        assert same(command[name], api[name]), (name, command[name], api[name])
    if source == COCO8:  # the case predict.py's own square letterbox got wrong: one dog (0.99), not two
        assert api["000000000042.jpg"][:, 5].tolist() == [16.0] and api["000000000042.jpg"][0, 4] > 0.95


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["onnx", "openvino"])
def test_three_tools_agree_on_exports(runtime, hardhat_exports, tmp_path, capsys):
    if runtime not in hardhat_exports:
        pytest.skip(f"{runtime} is not installed")
    weights = hardhat_exports[runtime]
    api = yolo_predict(weights, HARDHAT8)
    script, out = predict_py(weights, HARDHAT8, tmp_path, capsys)
    command = detector_predict(weights, HARDHAT8, tmp_path, capsys)
    assert "predicting at imgsz 320" in out, out
    assert sum(map(len, api.values())) > 0
    for name in api:
        assert same(script[name], api[name]), (name, script[name], api[name])
        assert same(command[name], api[name]), (name, command[name], api[name])


@pytest.mark.gpu
def test_three_tools_agree_on_a_gpu_in_fp16(tmp_path, capsys):
    weights, source = assets.DEFAULT_WEIGHTS, COCO8
    api = yolo_predict(weights, source, device="0", half=True)
    script, out = predict_py(weights, source, tmp_path, capsys, device="0", half=True)
    command = detector_predict(weights, source, tmp_path, capsys, device="0", half=True)
    assert sum(map(len, api.values())) > 0
    for name in api:
        assert same(script[name], api[name]), (name, script[name], api[name])
        assert same(command[name], api[name]), (name, command[name], api[name])


@pytest.mark.slow
def test_both_tools_default_to_the_shipped_weights_on_coco8_from_any_folder(tmp_path):
    """No weights, no source: from an empty folder, offline, the shipped coco128 weights on the bundled coco8 val
    images; predict.py and the command find the same things (the 1 dog of 000000000042.jpg)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    runs = tmp_path / "runs"
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    script = subprocess.run([sys.executable, str(ROOT / "predict.py"), "--device", "cpu", "--project", str(runs)],
                            capture_output=True, text=True, cwd=cwd, env=env, timeout=600)
    command = subprocess.run([sys.executable, "-m", "detector", "predict", "device=cpu", f"project={runs}"],
                             capture_output=True, text=True, cwd=cwd, env=env, timeout=600)
    assert script.returncode == 0 and command.returncode == 0, script.stderr[-2000:] + command.stderr[-2000:]
    assert f"weights: {assets.DEFAULT_WEIGHTS}" in script.stdout and "summary: 4 ok, 0 failed" in script.stdout
    assert "000000000042.jpg: 640x478, 1 dog," in script.stdout, script.stdout
    assert "000000000042.jpg: 480x640 1 dog," in command.stdout + command.stderr, command.stdout + command.stderr
    assert sorted(p.name for p in runs.iterdir()) == ["predict", "predict-2"]  # Ultralytics' layout, one each
    assert {p.name for p in (runs / "predict").iterdir()} == {p.name for p in (runs / "predict-2").iterdir()} == {
        p.name for p in COCO8.glob("*.jpg")}
    assert os.listdir(cwd) == []  # nothing written where it ran
