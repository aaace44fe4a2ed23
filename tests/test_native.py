"""Our weights, models and data where an Ultralytics user reaches for them: plain Ultralytics loads our checkpoints
(and, after `import detector`, they run on our SDPA layers with the same outputs); restricted loading refuses a
pickle that would run code, in every tool; bare model and dataset names resolve offline from any folder; the
`detector` command; the first `python train.py` shows something."""

import csv
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from conftest import ROOT
from detector import assets

IMAGES = ROOT / "data/coco8/images/val"
IMAGE = IMAGES / "000000000036.jpg"  # a person with an umbrella
SHIPPED = {p.stem: p for p in sorted(assets.WEIGHTS_DIR.glob("*.pt"))}
FROM_ANYWHERE = {**os.environ, "PYTHONPATH": str(ROOT)}  # the project importable from any folder, as installed
DETECTOR = "import sys; from detector.cli import main; sys.exit(main())"  # what the `detector` console script runs


def run(args, cwd, env=None, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          env=env or FROM_ANYWHERE, timeout=timeout)


def pickle_names_detector(path, module: bytes = b"detector.attention") -> bool:
    """Does the checkpoint record one of our classes from `module` (detector.attention.* by default)?"""
    with zipfile.ZipFile(path) as z:
        return module in z.read(next(n for n in z.namelist() if n.endswith("/data.pkl")))


# The sub-grid head (the default's) has no Ultralytics class: a checkpoint of it records ours, and unpickling it
# imports detector.head (so plain Ultralytics loads it where this package is installed).
HEAD_CLASSES = {"detector.head.SubgridThinDetect", "detector.head.LastAxisDFL"}


# --- Checkpoints: Ultralytics alone, then on our layers ------------------------------------------------------------
OUTPUTS = """
import sys, torch
{prelude}
from ultralytics import YOLO
path, image, imgsz, conf, out = sys.argv[1:]
model = YOLO(path)
classes = {{type(m).__module__ + "." + type(m).__name__ for m in model.model.modules()}}
x = torch.rand(1, 3, 256, 320, generator=torch.Generator().manual_seed(0))
with torch.no_grad():
    raw = model.model.float().eval()(x)[0]  # decoded boxes and class scores for every anchor
[r] = model.predict(image, imgsz=int(imgsz), conf=float(conf), device="cpu", verbose=False)
torch.save(dict(classes=classes, raw=raw, boxes=r.boxes.data, detector="detector" in sys.modules), out)
"""


@pytest.fixture(params=["train.py", *SHIPPED], scope="module")
def checkpoint(request, trained_run):
    """(path, image, conf): a checkpoint train.py wrote (from scratch, 1 epoch: boxes only at conf 0), and the shipped
    ones on an image where they find something."""
    if request.param == "train.py":
        return trained_run[0] / "weights/best.pt", IMAGE, 0.0
    if "hardhat" in request.param:  # no hard hats in coco8: its "helmets" at 640 score low (0.1-0.6)
        return SHIPPED[request.param], IMAGES / "000000000049.jpg", 0.1
    return SHIPPED[request.param], IMAGE, 0.25


@pytest.mark.slow
def test_checkpoint_loads_in_plain_ultralytics_and_on_our_layers_with_the_same_outputs(checkpoint, tmp_path):
    path, image, conf = checkpoint
    results = {}
    for name, prelude in (("ultralytics", ""), ("detector", "import detector")):
        out = tmp_path / f"{name}.pt"
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} if name == "ultralytics" else None
        r = run(["-c", OUTPUTS.format(prelude=prelude), path, image, 640, conf, out], cwd=tmp_path, env=env)
        assert r.returncode == 0, r.stderr[-3000:]
        results[name] = torch.load(out, weights_only=False)
    stock, ours = results["ultralytics"], results["detector"]
    sub_grid = pickle_names_detector(path, b"detector.head")
    # Ultralytics' classes only, except the sub-grid head: unpickling imports detector for that alone
    assert stock["detector"] == sub_grid
    assert "ultralytics.nn.modules.block.AAttn" in stock["classes"]  # the attention runs as Ultralytics' own
    assert {c for c in stock["classes"] if c.startswith("detector.")} == (HEAD_CLASSES if sub_grid else set())
    assert {"detector.attention.AreaAttention", "detector.attention.A2C2f"} <= ours["classes"]
    assert "ultralytics.nn.modules.block.AAttn" not in ours["classes"]
    torch.testing.assert_close(ours["raw"], stock["raw"], rtol=1e-3, atol=1e-2)  # boxes in pixels, scores in 0..1
    assert len(stock["boxes"]) > 0
    if conf > 0:  # trained weights: the same detections (at conf 0 an untrained model's near-ties may reorder)
        torch.testing.assert_close(ours["boxes"], stock["boxes"], rtol=1e-3, atol=1e-2)


@pytest.mark.slow
def test_yolo_command_predicts_with_the_shipped_weights(tmp_path):
    yolo = shutil.which("yolo", path=str(Path(sys.executable).parent)) or shutil.which("yolo")
    if yolo is None:
        pytest.skip("Ultralytics' yolo command is not on PATH")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([yolo, "predict", f"model={assets.DEFAULT_WEIGHTS}", f"source={IMAGE}", f"project={tmp_path}",
                        "device=cpu"], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "1 person" in r.stdout + r.stderr


def test_checkpoint_that_pickles_our_classes_still_loads(trained_run, tmp_path):
    """Checkpoints of detector 0.1 recorded detector.attention.* classes; restricted loading allows them."""
    from ultralytics import YOLO

    from detector import use_sdpa

    ckpt = torch.load(trained_run[0] / "weights/best.pt", map_location="cpu", weights_only=False)  # ours: trusted
    use_sdpa(ckpt["model"])
    torch.save(ckpt, tmp_path / "old.pt")
    assert pickle_names_detector(tmp_path / "old.pt")
    model = YOLO(tmp_path / "old.pt")
    assert any(type(m).__name__ == "AreaAttention" for m in model.model.modules())


# --- Restricted loading --------------------------------------------------------------------------------------------
class CreatesAFile:
    """Unpickling this calls open(path, 'w'): any code could run there instead."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


@pytest.fixture
def hostile(tmp_path):
    """(a .pt whose unpickling would create a file, that file)."""
    marker = tmp_path / "created-by-unpickling"
    path = tmp_path / "hostile.pt"
    torch.save({"model": CreatesAFile(marker), "train_args": {}, "epoch": 0, "optimizer": {}}, path)
    return path, marker


@pytest.mark.parametrize("tool", ["predict.py --weights", "train.py --model", "train.py --resume", "detector.export",
                                  "detector predict"])
def test_pickle_that_would_run_code_is_refused_before_it_runs(tool, hostile, tmp_path):
    path, marker = hostile
    runs = tmp_path / "runs"
    args = {
        "predict.py --weights": [ROOT / "predict.py", IMAGES, "--weights", path, "--project", runs],
        "train.py --model": [ROOT / "train.py", "--model", path, "--project", runs],
        "train.py --resume": [ROOT / "train.py", "--resume", path, "--project", runs],
        "detector.export": ["-m", "detector.export", path],
        "detector predict": ["-c", DETECTOR, "predict", f"model={path}", f"project={runs}"],
    }[tool]
    r = run(args, cwd=tmp_path)
    assert not marker.exists(), "the pickle's code ran"
    assert r.returncode == 2 and not runs.exists(), r.stdout[-2000:] + r.stderr[-2000:]
    [line] = r.stderr.strip().splitlines()
    assert "refused" in line and "DETECTOR_TRUST_PICKLE=1" in line and "io.open" in line, line


def test_python_api_refuses_it_too_unless_the_user_trusts_the_file(hostile, monkeypatch):
    from ultralytics import YOLO

    from detector.weights import UnsafeCheckpoint

    path, marker = hostile
    with pytest.raises(UnsafeCheckpoint, match="refused"):
        YOLO(path)
    assert not marker.exists()
    monkeypatch.setenv("DETECTOR_TRUST_PICKLE", "1")
    with pytest.raises(TypeError):  # unpickled (the opt-in works), then not an Ultralytics model
        YOLO(path)
    assert marker.exists()


# --- Names, offline, from any folder -------------------------------------------------------------------------------
BLOCK_NETWORK = """
import os, socket, traceback

def refuse(what):
    def blocked(*args, **kwargs):
        frames = [f.name for f in traceback.extract_stack() if "ultralytics" in f.filename]
        with open(os.environ["NETWORK_LOG"], "a") as log:
            log.write(f"{what} {args[0] if args else ''} from {'>'.join(frames)}\\n")
        raise OSError("network blocked")
    return blocked

socket.getaddrinfo = refuse("getaddrinfo")
socket.socket.connect = refuse("connect")
socket.create_connection = refuse("create_connection")
"""

NAMES = """
import sys
import detector
from ultralytics import YOLO
from ultralytics.data.utils import check_det_dataset
from detector.assets import DATA_DIR

n = YOLO("yolo11n-an.yaml")
assert n.model.yaml["scale"] == "n" and type(n.model.model[-2]).__name__ == "A2C2f", n.model.yaml
assert type(n.model.model[-2]).__module__ == "detector.attention"
s = YOLO("yolo12s.yaml")
assert s.model.yaml["scale"] == "s" and any(type(m).__name__ == "AreaAttention" for m in s.model.modules())
assert check_det_dataset("coco128.yaml")["train"].startswith(str(DATA_DIR)), check_det_dataset("coco128.yaml")
try:
    YOLO("yolo11n-nope.yaml")
except FileNotFoundError as e:
    print("missing:", e)
YOLO("yolo12n.yaml").train(data="coco8.yaml", epochs=1, imgsz=64, device="cpu", project=sys.argv[1])
"""


@pytest.mark.slow
def test_bare_names_resolve_offline_from_any_folder(tmp_path):
    (tmp_path / "site").mkdir()
    (tmp_path / "site/sitecustomize.py").write_text(BLOCK_NETWORK)
    log = tmp_path / "network.log"
    env = {**FROM_ANYWHERE, "PYTHONPATH": f"{tmp_path / 'site'}{os.pathsep}{ROOT}", "NETWORK_LOG": str(log),
           "YOLO_CONFIG_DIR": str(tmp_path / "config")}  # a user's fresh Ultralytics settings
    r = run(["-c", NAMES, tmp_path / "runs"], cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    [missing] = [line for line in r.stdout.splitlines() if line.startswith("missing:")]
    assert "'yolo11-nope.yaml' not found" in missing and str(assets.MODELS_DIR) in missing, missing
    assert "nothing is downloaded" in missing
    assert list((tmp_path / "runs").glob("train*/weights/best.pt"))
    # Ultralytics' own probes, not about our names: is_online() when it is imported, and the Arial font it fetches
    # for plots when a dataset is checked (offline it falls back to PIL's font). Nothing else may touch the network.
    attempts = log.read_text().splitlines() if log.exists() else []
    chains = [a.rpartition(" from ")[2].split(">") for a in attempts]
    assert all(c[-1] == "is_online" or "check_font" in c for c in chains), attempts


# --- The detector command ------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_detector_command_predicts(tmp_path):
    r = run(["-c", DETECTOR, "predict", f"model={assets.DEFAULT_WEIGHTS}", f"source={IMAGE}", f"project={tmp_path}",
             "device=cpu"], cwd=tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert "attention kernel: " in out and "1 person" in out
    assert list(tmp_path.glob("predict*/000000000036.jpg"))


@pytest.mark.slow
def test_detector_command_trains_with_our_trainer(tmp_path):
    r = run(["-c", DETECTOR, "train", "model=yolo11n-an.yaml", "data=coco8.yaml", "epochs=1", "imgsz=64", "batch=4",
             "workers=0", "device=cpu", f"project={tmp_path}", "plots=False"], cwd=tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert "attention kernel: matmul on cpu" in out
    [best] = tmp_path.glob("train*/weights/best.pt")
    assert not pickle_names_detector(best)  # DetectorTrainer's save_model (the stock trainer pickles our classes)


@pytest.mark.slow
def test_detector_command_errors_are_one_line(tmp_path):
    for args, expected in [(["predict", "model=missing.pt"], "model 'missing.pt': no such file"),
                           (["val", "attn=bogus"], "unknown kernel 'bogus'"),
                           (["train", "model=yolo11n-nope.yaml"], "'yolo11-nope.yaml' not found")]:
        r = run(["-m", "detector", *args], cwd=tmp_path)
        [line] = r.stderr.strip().splitlines()
        assert r.returncode == 2 and line.startswith("detector: error: ") and expected in line, r.stderr


def test_export_without_onnx_names_the_extra(tmp_path):
    code = ("import sys; sys.modules['onnx'] = None\n"  # as if not installed: find_spec and import both fail
            "from detector.export import main; sys.exit(main(sys.argv[1:]))")
    r = run(["-c", code, assets.DEFAULT_WEIGHTS], cwd=tmp_path)
    [line] = r.stderr.strip().splitlines()
    assert r.returncode == 2 and "onnx" in line and ".[export]" in line, line


# --- The first command ---------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_default_train_fine_tunes_the_shipped_weights_and_finds_objects(tmp_path):
    """python train.py with no arguments (43-68 s on 2 shared CPU cores): mAP above 0.2, validation images drawn."""
    r = run([ROOT / "train.py", "--project", tmp_path], cwd=ROOT, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    run_dir = tmp_path / "train"
    assert str(assets.DEFAULT_WEIGHTS) in (run_dir / "args.yaml").read_text()
    rows = list(csv.DictReader(open(run_dir / "results.csv")))
    final = {k.strip(): float(v) for k, v in rows[-1].items()}
    assert final["metrics/mAP50-95(B)"] > 0.2, final
    assert (run_dir / "val_batch0_pred.jpg").exists()
