"""The predict tools as a user meets them: --help instant and with defaults; sources that are no regular file (a FIFO,
a symlink to /dev/zero) refused with one line while the next source runs; weights holding NaN refused in every predict
path; run folders claimed atomically by the `detector` command (two runs given one name= get name and name-2);
annotated videos as .mp4 (odd sizes padded, .avi with one warning line without an MP4 encoder)."""

import math
import os
import re
import subprocess
import sys
import time
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from conftest import ROOT, video_props, write_clip
from detector import assets, cli, kernels, predict_args, predict_outputs, predicting
from detector.glue import inference, rundirs
from test_predict_errors import restore_opencv_logging  # noqa: F401  (autouse: predict.main silences OpenCV)
from test_reliability import RACE, start_together

WEIGHTS = assets.DEFAULT_WEIGHTS
IMAGE = ROOT / "data/coco8/images/val/000000000042.jpg"
FAST = ["--weights", str(WEIGHTS), "--imgsz", "64", "--device", "cpu"]
HELP_S = 0.5  # the target for --help on the 2-core machine (torch alone takes 1-3 s to import there)
HEAVY = ("torch", "ultralytics", "cv2")
SHOW_HELP = """
import runpy, sys
sys.argv = sys.argv[1:]
try:
    runpy.run_path(sys.argv[0], run_name="__main__") if sys.argv[0].endswith(".py") else runpy.run_module(
        sys.argv[0], run_name="__main__", alter_sys=True)
except SystemExit:
    pass
print("imported:", *sorted(m for m in {HEAVY} if m in sys.modules), file=sys.stderr)
""".format(HEAVY=HEAVY)


# --- --help ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("tool, shows", [("predict.py", ["(default: 0.25)", "(default: predict)", "runs/detect",
                                                           "yolo11n-an-coco128.pt", "data/coco8/images/val"]),
                                         ("detector", ["weights/yolo11n-an-coco128.pt", "coco8 val images",
                                                       "runs/<task>/<name>"])])
def test_help_is_instant_imports_nothing_heavy_and_shows_defaults(tool, shows):
    target = str(ROOT / "predict.py") if tool == "predict.py" else "detector"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    r = subprocess.run([sys.executable, "-c", SHOW_HELP, target, "--help"], capture_output=True, text=True,
                       cwd=ROOT, env=env, timeout=60)
    imported = re.search(r"imported:(.*)", r.stderr)[1].split()
    start = time.perf_counter()  # the whole command, Python's own start included
    subprocess.run([sys.executable, *([target] if tool == "predict.py" else ["-m", target]), "--help"],
                   capture_output=True, cwd=ROOT, env=env, timeout=60, check=True)
    seconds = time.perf_counter() - start
    print(f"{tool} --help: {seconds:.3f} s")
    assert imported == [], imported  # torch, Ultralytics and OpenCV wait for real work
    assert all(s in r.stdout for s in shows), r.stdout
    assert seconds < HELP_S


def test_light_copy_of_the_kernel_names_matches_the_kernels():
    assert set(predict_args.KERNELS) == set(kernels.KERNELS)


def test_import_detector_still_hooks_ultralytics():
    """`import detector` imports nothing heavy, yet Ultralytics imported after it builds our layers."""
    code = ("import sys, detector\nassert 'torch' not in sys.modules and 'ultralytics' not in sys.modules\n"
            "from ultralytics import YOLO\nm = YOLO('yolo11n-an.yaml')\n"
            "print(type(m.model.model[-2]).__module__, type(m.model.model[-1]).__name__)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0 and r.stdout.split() == ["detector.attention", "SubgridThinDetect"], r.stderr[-2000:]


ONE_COPY = """
import importlib, sys
import detector
first = importlib.import_module(sys.argv[1])
ours = {n: m for n, m in sys.modules.items() if n.startswith("detector")}
copies = [(n, a) for n, m in ours.items() for a, v in vars(m).items()
          if type(v) is type(sys) and v.__name__.startswith("detector.") and v is not sys.modules[v.__name__]]
assert not copies, copies  # a module of ours holding a second copy of another
assert first is sys.modules[sys.argv[1]] and first.__spec__.origin.endswith(".py"), first.__spec__
from ultralytics.nn import tasks
assert tasks.A2C2f.__module__ == "detector.attention"  # installed
"""


@pytest.mark.slow
@pytest.mark.parametrize("first", ["detector.kernels", "detector.attention", "detector.glue.registry",
                                   "detector.weights"])
def test_each_module_of_ours_is_imported_once_whichever_comes_first(first):
    """The hook imports Ultralytics (and so our layers) while the first heavy module of ours is looked up: a module
    that install() imported on the way is the one the import then returns, not a second copy."""
    r = subprocess.run([sys.executable, "-c", ONE_COPY, first], capture_output=True, text=True, cwd=ROOT,
                       timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr[-2000:]


# --- Sources that are no regular file -----------------------------------------------------------------------------
@pytest.mark.slow
def test_fifo_and_link_to_a_device_are_refused_and_the_next_source_runs(tmp_path):
    """A FIFO once hung predict.py forever; /dev/zero behind a .jpg symlink gave a traceback."""
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    (tmp_path / "zero.jpg").symlink_to("/dev/zero")
    folder = tmp_path / "folder"
    folder.mkdir()
    os.mkfifo(folder / "inner.mp4")
    (folder / "good.jpg").write_bytes(IMAGE.read_bytes())
    list_fifo = tmp_path / "list.txt"
    os.mkfifo(list_fifo)
    cmd = [sys.executable, str(ROOT / "predict.py"), fifo, tmp_path / "zero.jpg", list_fifo, folder, IMAGE, *FAST,
           "--project", tmp_path / "runs"]
    r = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stderr.splitlines() == [
        f"predict.py: error: source '{fifo}': not a regular file: a FIFO (named pipe); refusing to read it; skipped",
        f"predict.py: error: source '{tmp_path / 'zero.jpg'}': not a regular file: a character device (a symlink to "
        "/dev/zero); refusing to read it; skipped",
        f"predict.py: error: source '{list_fifo}': not a regular file: a FIFO (named pipe); refusing to read it; "
        "skipped",
        f"predict.py: error: source '{folder / 'inner.mp4'}': not a regular file: a FIFO (named pipe); refusing to "
        "read it; skipped"]
    assert "summary: 2 ok, 4 failed" in r.stdout, r.stdout


@pytest.mark.slow
def test_detector_command_refuses_a_fifo_source_with_one_line(tmp_path):
    os.mkfifo(tmp_path / "pipe.jpg")
    for source in (tmp_path / "pipe.jpg", tmp_path):
        r = subprocess.run([sys.executable, "-m", "detector", "predict", f"source={source}", "device=cpu",
                            f"project={tmp_path / 'runs'}"], capture_output=True, text=True, cwd=ROOT, timeout=300)
        assert r.returncode == 2 and r.stderr.splitlines() == [
            f"detector: error: source '{tmp_path / 'pipe.jpg'}': not a regular file: a FIFO (named pipe); refusing to "
            "read it"], r.stderr
    assert not (tmp_path / "runs").exists()


# --- Weights holding NaN ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def nan_weights(tmp_path_factory):
    """The shipped weights with one NaN and one infinity in the first convolution."""
    from ultralytics import YOLO

    yolo = YOLO(str(WEIGHTS))
    weight = next(yolo.model.parameters())
    with torch.no_grad():
        weight.view(-1)[:2] = torch.tensor([math.nan, math.inf])
    path = tmp_path_factory.mktemp("nan") / "nan.pt"
    yolo.save(path)
    return path


NAN_LINE = "weights '{}': 2 of its {} weights are NaN or infinite (the first in model.0.conv.weight; a diverged " \
           "training run?): it would predict nothing"


def test_nan_weights_are_refused_by_predict_py_before_anything_is_written(nan_weights, tmp_path, capsys):
    code = predicting.main([str(IMAGE), "--weights", str(nan_weights), "--device", "cpu", "--project",
                            str(tmp_path / "runs")])
    out, err = capsys.readouterr()
    [line] = err.splitlines()
    assert code == 2 and re.fullmatch(re.escape(NAN_LINE.format(nan_weights, "@")).replace("@", r"[\d,]+"),
                                      line.removeprefix("predict.py: error: ")), err
    assert not (tmp_path / "runs").exists()


def test_nan_weights_are_refused_by_the_command_and_the_python_api(nan_weights, tmp_path, capsys):
    from ultralytics import YOLO

    code = cli.main(["predict", f"model={nan_weights}", f"source={IMAGE}", "device=cpu", f"project={tmp_path}"])
    err = capsys.readouterr().err
    assert code == 2 and err.strip().startswith(f"detector: error: weights '{nan_weights}': 2 of its "), err
    assert "are NaN or infinite" in err and os.listdir(tmp_path) == []  # the run folder it claimed is gone
    with pytest.raises(inference.NonFiniteWeights, match="2 of its .* weights are NaN or infinite"):
        YOLO(str(nan_weights)).predict(str(IMAGE), device="cpu", verbose=False)


# --- Run folders ----------------------------------------------------------------------------------------------------
def test_run_folders_are_claimed_as_they_are_chosen(tmp_path):
    from ultralytics.engine import predictor, trainer, validator

    args = SimpleNamespace(project=str(tmp_path), name="x", task="detect", mode="predict", exist_ok=False, save=True)
    assert predictor.get_save_dir(args) == predictor.get_save_dir(args)  # Ultralytics alone: one folder for two runs
    with rundirs.atomic_save_dirs():
        assert predictor.get_save_dir is trainer.get_save_dir is validator.get_save_dir is rundirs.claimed_save_dir
        first, second = predictor.get_save_dir(args), validator.get_save_dir(SimpleNamespace(**{**vars(args),
                                                                                                 "mode": "val"}))
        quiet = predictor.get_save_dir(SimpleNamespace(**{**vars(args), "save": False}))  # saves nothing: no folder
    assert (first.name, second.name, quiet.name) == ("x", "x-2", "x-3") and first.is_dir() and second.is_dir()
    assert not quiet.exists() and predictor.get_save_dir is rundirs._ORIGINAL
    assert rundirs.claim(str(tmp_path), "x") == tmp_path / "x-3"


@pytest.mark.slow
def test_two_detector_predict_runs_given_one_name_get_two_folders(tmp_path):
    barrier, script = tmp_path / "barrier", tmp_path / "detector_command.py"
    barrier.mkdir()
    script.write_text("import sys\nfrom detector.cli import main\nsys.exit(main())\n")  # the console script
    start_together([sys.executable, "-c", RACE, str(barrier), str(script), "predict", f"model={WEIGHTS}",
                    f"source={IMAGE}", "imgsz=64", "device=cpu", f"project={tmp_path / 'runs'}", "name=same"], barrier)
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["same", "same-2"]
    for folder in (tmp_path / "runs").iterdir():
        assert [p.name for p in folder.iterdir()] == [IMAGE.name]


# --- Videos ---------------------------------------------------------------------------------------------------------
def test_video_is_an_mp4_and_an_odd_size_is_padded_not_rescaled(tmp_path, capsys):
    clip = tmp_path / "clip.avi"  # OpenCV's own MJPEG writer keeps an odd size (FFmpeg's would make it 320x240)
    writer = cv2.VideoWriter(str(clip), cv2.CAP_OPENCV_MJPEG, cv2.VideoWriter_fourcc(*"MJPG"), 12, (321, 241))
    for i in range(3):
        writer.write(np.roll(cv2.resize(cv2.imread(str(IMAGE)), (321, 241)), 8 * i, axis=1))
    writer.release()
    code = predicting.main([str(clip), *FAST, "--project", str(tmp_path / "runs")])
    out, err = capsys.readouterr()
    assert code == 0 and not err, out + err
    assert video_props(tmp_path / "runs/predict") == (3, 12, (322, 242))
    cap = cv2.VideoCapture(str(tmp_path / "runs/predict/clip.mp4"))
    ok, frame = cap.read()
    cap.release()
    assert ok and np.abs(frame[:, 321].astype(int) - frame[:, 320]).mean() < 8  # the edge column repeated


def test_without_an_mp4_encoder_videos_are_avi_with_one_warning(tmp_path, capsys, monkeypatch):
    import cv2 as opencv

    no_mp4 = tuple((".mp4", opencv.CAP_FFMPEG, "XXXX") if s == ".mp4" else (s, b, c)
                   for s, b, c in predict_outputs.VIDEO_WRITERS)
    monkeypatch.setattr(predict_outputs, "VIDEO_WRITERS", no_mp4)
    clips = [write_clip(tmp_path / f"{name}.mp4", frames=3) for name in ("a", "b")]
    code = predicting.main([*map(str, clips), *FAST, "--project", str(tmp_path / "runs")])
    out, err = capsys.readouterr()
    assert code == 0 and err.splitlines() == [
        "predict.py: warning: this OpenCV has no MP4 encoder (FFmpeg with avc1 or mp4v): annotated videos are written "
        "as .avi (MJPEG)"], err
    assert sorted(p.name for p in (tmp_path / "runs/predict").iterdir()) == ["a.avi", "b.avi"]
    assert video_props(tmp_path / "runs/predict", "a") == (3, 12, (160, 96))


@pytest.mark.parametrize("given, device, expected", [
    (["predict"], "cuda", True), (["val", "data=coco8.yaml"], "cuda", True), (["predict", "model=m.onnx"], "cuda", False),
    (["predict", "channels_last=False"], "cuda", False), (["train", "data=coco8.yaml"], "cuda", False),
    (["predict"], "cpu", False)])
def test_detector_predicts_channels_last_on_a_gpu(given, device, expected, monkeypatch):
    """`detector predict`/`val` give Ultralytics channels_last=True on CUDA for a PyTorch model (Ultralytics leaves it
    NCHW there), never for an export, never over the user's own channels_last=, never in training (Ultralytics' trainer
    does it already), never on the CPU (Ultralytics' own default decides)."""
    from detector import cli, precision, training

    monkeypatch.setattr(precision, "training_device", lambda d, p: (torch.device(device), torch.float16))
    monkeypatch.setattr(training, "kernel_line", lambda *a: "kernels")
    args, _ = cli.prepare(given)
    assert ("channels_last=True" in args) is expected
    assert sum(a.startswith("channels_last=") for a in args) <= 1
