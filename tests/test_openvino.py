"""OpenVINO deployment: export (fp32, int8) checked against PyTorch, predict.py on an OpenVINO folder (images and
video), a failed export that leaves the previous one in place, and one-line errors (missing extra, bad arguments).
The dynamic-size check is in test_predict_export.py, next to ONNX's."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ov = pytest.importorskip("openvino")  # the .[openvino] extra (in .[test]); absent e.g. on the GPU machine
import torch

from conftest import ROOT, video_props, write_clip
from detector import assets, export
from detector import weights as weights_io
from detector.glue.inference import set_export_mode

VAL = ROOT / "data/coco8/images/val"


@pytest.fixture(scope="module")
def ov_folder(trained_weights):
    return export.export(str(trained_weights), imgsz=64, format="openvino")


def run(args, timeout=600):
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout)


def test_openvino_matches_pytorch_on_coco8_val(trained_weights, ov_folder):
    """fp32 OpenVINO compiled in f32 against PyTorch: the tolerances of an fp32 ONNX graph (0.05 px in boxes, 1e-3
    in scores) hold, since both compute the same fp32 arithmetic in another order (measured: 3e-4 px, 7e-7 at 320)."""
    r = export.compare(str(trained_weights), ov_folder, VAL, imgsz=64, half=False, conf=1e-5)
    print(r)
    assert r["runtime"] == "OpenVINO f32" and r["images"] == 4 and r["detections"] > 0
    assert r["within_tolerance"] and r["detections_match"], r


@pytest.mark.slow
def test_openvino_folder_has_metadata_and_is_replaced_only_by_a_complete_export(trained_weights, ov_folder, monkeypatch):
    import yaml

    folder = trained_weights.parent / "model_openvino_model"
    assert ov_folder == str(folder) and (folder / "model.xml").is_file() and (folder / "model.bin").is_file()
    meta = yaml.safe_load((folder / "metadata.yaml").read_text())
    assert meta["imgsz"] == [64, 64] and meta["stride"] == 32 and len(meta["names"]) == 80
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def half_then_fail(model, path, *args, **kwargs):  # the exporter dies while writing the IR
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text("<net")
        raise RuntimeError("simulated write failure")

    monkeypatch.setattr(ov, "save_model", half_then_fail)
    with pytest.raises(RuntimeError, match="simulated"):
        export.export(str(trained_weights), imgsz=96, format="openvino")
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # the good export is untouched
    assert sorted(p.name for p in folder.parent.iterdir()) == ["model.pt", "model_openvino_model"]  # nothing left
    monkeypatch.undo()
    assert export.export(str(trained_weights), imgsz=96, format="openvino") == str(folder)  # a good one replaces it
    assert yaml.safe_load((folder / "metadata.yaml").read_text())["imgsz"] == [96, 96]
    assert sorted(p.name for p in folder.parent.iterdir()) == ["model.pt", "model_openvino_model"]


def detections_per_image(records: list[dict]) -> dict[str, torch.Tensor]:
    """detections.json records -> {image: (n, 6) [x1, y1, x2, y2, conf, cls]}, the layout export.same_detections
    compares."""
    out = {}
    for r in records:
        out.setdefault(r["image"], []).append([*r["box_xyxy"], r["confidence"], r["class_id"]])
    return {k: torch.tensor(v) for k, v in out.items()}


@pytest.mark.slow
def test_predict_openvino_images_and_video_match_pt(tmp_path):
    """predict.py with the shipped weights as .pt and as a dynamic-size OpenVINO folder on the coco8 val images: the
    same detections (Ultralytics letterboxes both to the image's own aspect, 640x480; a fixed-size export is padded
    to 640x640, and may differ from the .pt as any other input would). OpenVINO runs at its default precision, bf16 on CPUs with bf16 units (measured there at 640: boxes
    within 3 px of PyTorch's in the worst case, scores within 0.013), hence 4 px and 0.03. A generated video
    goes through the OpenVINO folder too: every frame predicted, same size and fps."""
    pt = tmp_path / "model.pt"
    shutil.copy(assets.DEFAULT_WEIGHTS, pt)
    folder = export.export(str(pt), imgsz=640, format="openvino", dynamic=True)
    video = write_clip(tmp_path / "clip.mp4")

    found, logs = {}, {}
    for name, w, sources in (("pt", pt, [VAL]), ("ov", folder, [VAL, video])):
        r = run([ROOT / "predict.py", *sources, "--weights", w, "--imgsz", "640", "--conf", "0.25", "--save-json",
                 "--device", "cpu", "--project", tmp_path, "--name", name], timeout=300)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        found[name] = json.loads((tmp_path / name / "detections.json").read_text())
        logs[name] = r.stdout
    images = [d for d in found["ov"] if d["frame"] is None]
    a, b = detections_per_image(found["pt"]), detections_per_image(images)
    assert a.keys() == b.keys() and sum(map(len, a.values())) > 0
    for image in a:  # every box scoring above 0.25 + 0.03 on one side has a twin on the other
        assert export.same_detections(a[image], b[image], sure=0.25 + 0.03, box_px=4.0), image

    assert video_props(tmp_path / "ov") == (9, 12, (160, 96))
    assert "clip.mp4: 9 frames" in logs["ov"], logs["ov"]


@pytest.mark.slow
def test_int8_dynamic_export_on_coco8_is_checked_and_predicts(trained_weights, tmp_path):
    """The CLI's int8 path end to end on coco8: NNCF calibration on the train split, the mAP check on val, then
    predict.py at sizes other than the export size (dynamic): the int8 graph keeps the any-size attention."""
    pt = tmp_path / "model.pt"
    shutil.copy(trained_weights, pt)
    r = run(["-m", "detector.export", pt, "--format", "openvino", "--int8", "--data", "coco8.yaml", "--imgsz", "64",
             "--dynamic"])
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "mAP50-95 fp32" in r.stdout and "drop" in r.stdout, r.stdout
    folder = tmp_path / "model_int8_openvino_model"
    graph = ov.Core().read_model(export.openvino_xml(folder))
    assert any(op.get_type_name() == "FakeQuantize" for op in graph.get_ops())  # it is int8
    x = torch.rand(1, 3, 96, 128)  # not the export size
    run_int8, _ = export.runtime(folder, precision=None)
    model = weights_io.load(pt).model.float().eval()
    set_export_mode(model, True)  # PyTorch in the export's layout (a sub-grid head orders its anchors differently)
    with torch.no_grad():
        ref = model(x)
    got = run_int8(x)
    assert got.shape == ref.shape
    # quantization noise, not another model (measured: boxes 0.014 px off on average, score correlation 0.99998)
    assert (got[:, :4] - ref[:, :4]).abs().mean() < 1.0  # pixels
    assert torch.corrcoef(torch.stack([got[:, 4:].flatten(), ref[:, 4:].flatten()]))[0, 1] > 0.99
    r = run([ROOT / "predict.py", VAL, "--weights", folder, "--imgsz", "96", "--conf", "1e-5", "--device", "cpu",
             "--no-save", "--project", tmp_path], timeout=300)  # rectangular letterboxes, e.g. 96x72, at 96
    assert r.returncode == 0 and "summary: 4 ok, 0 failed" in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]


@pytest.mark.parametrize("blocked,tool,args,expected", [
    ("openvino", "export", ["--format", "openvino"], "export: error: OpenVINO export needs openvino"),
    ("nncf", "export", ["--format", "openvino", "--int8", "--data", "coco8.yaml"],
     "export: error: OpenVINO export needs nncf"),
    ("openvino", "predicting", [], "OpenVINO inference needs openvino"),
])
@pytest.mark.slow
def test_missing_openvino_extra_is_one_line(blocked, tool, args, expected, trained_weights, tmp_path):
    """Without the extra (its import blocked, as if not installed): one line naming the extra, exit 2, nothing
    written."""
    pt = tmp_path / "model.pt"
    shutil.copy(trained_weights, pt)
    if tool == "export":
        argv = [pt, *args]
    else:
        folder = tmp_path / "m_openvino_model"
        folder.mkdir()
        (folder / "m.xml").write_text("<net/>")
        argv = [VAL, "--weights", folder, "--project", tmp_path / "runs"]
    code = (f"import sys; sys.modules[{blocked!r}] = None\n"  # find_spec and import both fail
            f"from detector.{tool} import main; sys.exit(main(sys.argv[1:]))")
    r = run(["-c", code, *argv])
    [line] = r.stderr.strip().splitlines()
    assert r.returncode == 2 and expected in line and "pip install -e '.[openvino]'" in line, r.stderr
    made = {"model.pt"} | ({"m_openvino_model"} if tool == "predicting" else set())
    assert {p.name for p in tmp_path.iterdir()} == made  # no export, no runs/ folder


@pytest.mark.parametrize("args,expected", [
    (["--format", "openvino", "--int8"], "--int8 needs --data"),
    (["--int8", "--data", "coco8.yaml"], "--int8: only with --format openvino"),
    (["--format", "openvino", "--int8", "--data", "nope.yaml"], "data 'nope.yaml': no such file"),
])
@pytest.mark.slow
def test_export_rejects_bad_openvino_arguments(args, expected, trained_weights):
    r = run(["-m", "detector.export", trained_weights, *args])
    assert r.returncode == 2 and f"export: error: {expected}" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_predict_openvino_on_a_gpu_is_one_line(ov_folder, tmp_path):
    r = run([ROOT / "predict.py", VAL, "--weights", ov_folder, "--device", "0", "--project", tmp_path])
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip() == ("predict.py: error: --device 0: OpenVINO models run on the CPU here; pass --device cpu "
                                "or leave --device out")
    assert not (tmp_path / "predict").exists()
