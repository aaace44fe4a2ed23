"""predict.py on images, folders and video; ONNX export that round-trips through ONNX Runtime."""

import json
import shutil
import subprocess
import sys

import cv2
import pytest

from conftest import ROOT, video_props, write_clip
from detector import export

VAL = ROOT / "data/coco8/images/val"


@pytest.fixture(scope="module")
def weights(trained_run, tmp_path_factory):
    folder = tmp_path_factory.mktemp("w")
    pt = folder / "model.pt"
    shutil.copy(trained_run[0] / "weights/best.pt", pt)
    return pt


@pytest.fixture(scope="module")
def onnx_file(weights):
    return export.export(str(weights), imgsz=64)


def predict(args, tmp_path, name):
    cmd = [sys.executable, str(ROOT / "predict.py"), *map(str, args), "--imgsz", "64", "--device", "cpu",
           "--project", str(tmp_path), "--name", name]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return tmp_path / name, r.stdout + r.stderr


def test_onnx_matches_pytorch_on_coco8_val(weights, onnx_file):
    r = export.compare(str(weights), onnx_file, VAL, imgsz=64, half=False, conf=1e-5)
    print(r)
    assert r["images"] == 4 and r["detections"] > 0
    assert r["within_tolerance"] and r["detections_match"], r


def test_onnx_graph_has_plain_attention_and_metadata(onnx_file):
    import onnx

    m = onnx.load(onnx_file)
    ops = {n.op_type for n in m.graph.node}
    assert "Attention" not in ops and {"MatMul", "Softmax"} <= ops
    meta = {p.key: p.value for p in m.metadata_props}
    assert "names" in meta and "stride" in meta and "imgsz" in meta


@pytest.mark.slow
def test_folder_with_mixed_formats_and_saved_labels_parse_back(weights, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    images = sorted(VAL.glob("*.jpg"))
    shutil.copy(images[0], folder / "a.jpg")
    cv2.imwrite(str(folder / "b.png"), cv2.imread(str(images[1])))
    cv2.imwrite(str(folder / "c.bmp"), cv2.cvtColor(cv2.imread(str(images[2])), cv2.COLOR_BGR2GRAY))
    out, log = predict([folder, "--weights", weights, "--conf", "1e-5", "--save-txt", "--save-json"], tmp_path, "out_mixed")
    assert {p.stem for p in out.glob("*.*") if p.suffix != ".json"} == {"a", "b", "c"}  # annotated copies
    records = json.loads((out / "detections.json").read_text())
    assert records and {r["image"].rsplit("/", 1)[-1] for r in records} <= {"a.jpg", "b.png", "c.bmp"}
    for r in records:
        h, w = cv2.imread(r["image"]).shape[:2]
        x1, y1, x2, y2 = r["box_xyxy"]
        assert 0 <= x1 <= x2 <= w and 0 <= y1 <= y2 <= h and 0 < r["confidence"] <= 1
        assert r["class_name"] and 0 <= r["class_id"] < 80
    n_lines = 0
    for label in (out / "labels").glob("*.txt"):
        for line in label.read_text().splitlines():
            cls, *xywh, conf = line.split()
            assert 0 <= int(cls) < 80 and all(0 <= float(v) <= 1 for v in xywh) and 0 < float(conf) <= 1
            n_lines += 1
    assert n_lines == len(records)


@pytest.mark.slow
def test_video_keeps_frames_fps_size_and_writes_per_frame_labels(weights, tmp_path):
    video = write_clip(tmp_path / "clip.mp4")
    out, log = predict([video, "--weights", weights, "--conf", "1e-5", "--save-txt"], tmp_path, "video")
    assert video_props(out) == (9, 12, (160, 96))
    labels = sorted((out / "labels").glob("clip_*.txt"))
    assert len(labels) == 9, [p.name for p in labels]


@pytest.mark.slow
def test_predict_rejects_missing_source_and_weights(weights, tmp_path):
    for args, expected in [([tmp_path / "nope.jpg", "--weights", weights], "source"),
                           (["--weights", tmp_path / "nope.pt"], "weights")]:
        r = subprocess.run([sys.executable, str(ROOT / "predict.py"), *map(str, args)], capture_output=True, text=True)
        assert r.returncode == 2 and f"predict.py: error: {expected}" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["onnx", "openvino"])
@pytest.mark.parametrize("cfg", ["models/yolo11n-an.yaml", "yolo12n.yaml"])
def test_dynamic_export_is_right_at_sizes_other_than_the_export_size(cfg, runtime, tmp_path):
    """A dynamic graph traced at 64 px must cut the same areas as PyTorch at every other size (a trace that froze
    the area length at the export size failed, or attended the wrong tokens, at 416 px after exporting at 320).
    ONNX: torch.onnx's trace; OpenVINO: the trace and conversion Ultralytics' OpenVINO exporter runs."""
    import torch
    from ultralytics.nn.tasks import DetectionModel

    model = DetectionModel(str(ROOT / cfg) if cfg.startswith("models/") else cfg, verbose=False).fuse(verbose=False).eval()
    for m in model.modules():  # Ultralytics' export mode: the head returns one tensor
        if hasattr(m, "export"):
            m.export = True
    x64 = torch.randn(1, 3, 64, 64)
    if runtime == "onnx":
        path = tmp_path / "m.onnx"
        torch.onnx.export(model, x64, str(path), opset_version=17, dynamo=False, input_names=["images"],
                          dynamic_axes={"images": {0: "batch", 2: "height", 3: "width"}})
    else:
        ov = pytest.importorskip("openvino")  # the .[openvino] extra
        from detector.glue.exporter import openvino_model

        path = tmp_path / "m_openvino_model"
        ov.save_model(openvino_model(model, x64, dynamic=True), str(path / "m.xml"))
    run, _ = export.runtime(path)  # OpenVINO pinned to f32: the graph, not bf16 rounding, is under test
    for shape in [(1, 64, 64), (2, 96, 96), (1, 160, 96), (1, 224, 288)]:
        x = torch.rand(shape[0], 3, *shape[1:])
        with torch.no_grad():
            ref = model(x)
        got = run(x)
        assert got.shape == ref.shape, shape
        assert (got - ref).abs().max().item() < 1e-2, shape  # boxes in pixels, scores in 0..1


def op_types(path) -> dict:
    import collections

    import onnx

    return collections.Counter(n.op_type for n in onnx.load(str(path)).graph.node)


@pytest.mark.slow
def test_static_ultralytics_export_is_the_stock_graph(tmp_path):
    """A static-size export of YOLO12n on our layers is Ultralytics' own graph, op for op (so ONNX Runtime runs it as
    fast as stock YOLO12n's); the exporter's on_export_start callback tells our layers the export is static. A
    dynamic-size export keeps the graph that cuts areas right at every size (the test above)."""
    import torch
    from ultralytics import YOLO

    from detector.glue.registry import stock_ultralytics

    torch.manual_seed(0)
    with stock_ultralytics():
        stock = YOLO("yolo12n.yaml")
    ours = YOLO("yolo12n.yaml")
    ours.model.load_state_dict(stock.model.state_dict())
    paths = {}
    for name, yolo in (("stock", stock), ("ours", ours)):
        yolo.model.pt_path = str(tmp_path / f"{name}.pt")  # where the exporter writes the .onnx
        paths[name] = yolo.export(format="onnx", imgsz=64, dynamic=False, simplify=True, device="cpu", verbose=False)
    assert op_types(paths["ours"]) == op_types(paths["stock"])
    assert all(m.dynamic for m in ours.model.modules() if hasattr(m, "dynamic") and hasattr(m, "area"))  # untouched


def test_export_size_flag_reaches_our_layers():
    from types import SimpleNamespace

    from ultralytics.nn.tasks import DetectionModel
    from ultralytics.utils.callbacks import base

    from detector.attention import AreaAttention
    from detector.glue import exporter

    assert exporter.prepare_exporters_copy in base.get_default_callbacks()["on_export_start"]
    model = DetectionModel("yolo12n.yaml", verbose=False)
    layers = [m for m in model.modules() if isinstance(m, AreaAttention)]
    assert len(layers) == 8 and all(m.dynamic for m in layers)  # the safe default
    exporter.prepare_exporters_copy(SimpleNamespace(model=model, args=SimpleNamespace(dynamic=False)))
    assert not any(m.dynamic for m in layers)
    exporter.prepare_exporters_copy(SimpleNamespace(model=model, args=SimpleNamespace(dynamic=True)))
    assert all(m.dynamic for m in layers)
