"""Nothing lost on a full disk, a crash or a concurrent run; inputs are what they say (issue 13).

- outputs: predict.py and train.py on a full disk (a small tmpfs where root may mount one, else stubbed writes), a
  video failing midway, SIGTERM, a read-only runs/, two runs racing for one --name, a failed export;
- inputs: odd file names, a symlink loop, a URL next to a local file of the same name, corrupted weights, resuming a
  copy of a run folder and a multi-page TIFF (a video of odd size: test_predict_cli.py).
Bad arguments of the three tools: tests/test_arguments.py.
"""

import errno
import functools
import http.server
import json
import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import ROOT
from detector import assets, export, utils
from detector import predicting as predict
from detector.utils import AtomicFile
from test_predict_errors import restore_opencv_logging  # noqa: F401  (autouse: predict.main silences OpenCV)

WEIGHTS = assets.DEFAULT_WEIGHTS  # shipped, weights-only: loads in a second
COCO8_VAL = ROOT / "data/coco8/images/val"
COCO128 = ROOT / "data/coco128/images/train2017"
TINY_TRAIN = ["--data", "coco8.yaml", "--imgsz", "64", "--batch", "4", "--workers", "0", "--device", "cpu",
              "plots=False"]


def run_predict(argv, capsys):
    """predict.main in this process: (exit status, stdout, stderr)."""
    code = predict.main([*map(str, argv), "--weights", str(WEIGHTS), "--imgsz", "64", "--device", "cpu"])
    out, err = capsys.readouterr()
    return code, out, err


def leftovers(folder: Path) -> list[Path]:
    return sorted(folder.rglob(".*.tmp*"))  # any temporary name, files or staged folders, at any depth


@pytest.fixture
def tmpfs(tmp_path):
    """mount(size) -> a fresh tmpfs of that size (root only; skipped where mounting is not possible)."""
    mounted = []

    def mount(size: str, options: str = "") -> Path:
        point = tmp_path / f"disk{len(mounted)}"
        point.mkdir()
        if os.geteuid() != 0 or not shutil.which("mount"):
            pytest.skip("mounting a tmpfs needs root")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}{options}", "tmpfs", str(point)],
                           capture_output=True, text=True)
        if r.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", str(point)], check=False)


# --- predict.py: a full disk ---------------------------------------------------------------------------------------
def assert_saved_results_are_whole(folder: Path, out: str, err: str) -> None:
    """A run stopped by a full disk: one error line; the summary counts exactly the images whose files are all there,
    each whole; detections.json is valid and covers them; no empty label file, no temporary file left."""
    assert "Traceback" not in err
    [line] = [x for x in err.splitlines() if "error" in x]
    assert line.startswith("predict.py: error: cannot write ") and "No space left on device" in line, err
    ok = int(re.search(r"^summary: (\d+) ok, 1 failed \(stopped\); (\d+) detections", out, re.M)[1])
    detections = int(re.search(r"^summary: .*; (\d+) detections", out, re.M)[1])
    annotated = sorted(folder.glob("*.jpg"))
    assert ok >= 1 and len(annotated) == ok, (out, annotated)
    assert all(cv2.imread(str(p)) is not None for p in annotated)
    labels = list((folder / "labels").glob("*.txt"))
    assert all(p.stat().st_size > 0 for p in labels) and {p.stem for p in labels} <= {p.stem for p in annotated}
    records = json.loads((folder / "detections.json").read_text())
    assert len(records) == detections and {Path(r["image"]).stem for r in records} <= {p.stem for p in annotated}
    assert not leftovers(folder)


def test_predict_on_a_full_tmpfs_keeps_what_it_saved(tmpfs, capsys):
    disk = tmpfs("400k")
    code, out, err = run_predict([COCO128, "--save-txt", "--save-json", "--conf", "0.01", "--project", disk], capsys)
    assert code == 1, out + err
    assert_saved_results_are_whole(disk / "predict", out, err)


def test_predict_when_writes_fail_with_enospc_keeps_what_it_saved(tmp_path, capsys, monkeypatch):
    """The same without a mount: the fourth file write fails as on a full disk."""
    write_bytes, calls = Path.write_bytes, []

    def full_after_three(self, data):
        calls.append(self)
        if len(calls) > 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return write_bytes(self, data)

    monkeypatch.setattr(Path, "write_bytes", full_after_three)
    code, out, err = run_predict([COCO8_VAL, "--save-txt", "--save-json", "--conf", "0.01", "--project", tmp_path],
                                 capsys)
    assert code == 1, out + err
    assert_saved_results_are_whole(tmp_path / "predict", out, err)


# --- predict.py: a source's outcome and its outputs agree; SIGTERM; read-only runs/ --------------------------------
def make_video(path: Path, frames: int = 12, size=(160, 96), fps: float = 12) -> Path:
    image = cv2.resize(cv2.imread(str(next(COCO8_VAL.glob("*.jpg")))), size)
    writer = cv2.VideoWriter(str(path), cv2.CAP_OPENCV_MJPEG, cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    for i in range(frames):
        writer.write(np.roll(image, 8 * i, axis=1))
    writer.release()
    return path


def test_a_video_failing_midway_leaves_no_outputs(tmp_path, capsys, monkeypatch):
    from ultralytics.models.yolo.detect import DetectionPredictor

    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(next(COCO8_VAL.glob("*.jpg")), folder / "a.jpg")
    make_video(folder / "clip.avi")
    postprocess = DetectionPredictor.postprocess

    def explode_in_frame_6(self, preds, img, orig_imgs):
        if self.dataset.mode == "video" and self.dataset.frame == 6:
            raise RuntimeError("kaboom")
        return postprocess(self, preds, img, orig_imgs)

    monkeypatch.setattr(DetectionPredictor, "postprocess", explode_in_frame_6)
    code, out, err = run_predict([folder, "--conf", "1e-5", "--save-txt", "--save-json", "--project", tmp_path],
                                 capsys)
    assert code == 1 and err.splitlines() == [f"predict.py: error: source '{folder / 'clip.avi'}': prediction failed "
                                              "(RuntimeError: kaboom); skipped"], err
    assert re.search(r"^summary: 1 ok, 1 failed; (\d+) detections", out, re.M)
    run = tmp_path / "predict"
    assert sorted(p.name for p in run.rglob("*") if p.is_file()) == ["a.jpg", "a.txt", "detections.json"]
    assert {Path(r["image"]).name for r in json.loads((run / "detections.json").read_text())} == {"a.jpg"}


@pytest.mark.slow
def test_sigterm_finishes_like_ctrl_c(tmp_path):
    """Exit 143 (128 + SIGTERM), the summary, and a valid detections.json for the images reported done."""
    cmd = [sys.executable, str(ROOT / "predict.py"), str(COCO128), "--weights", str(WEIGHTS), "--imgsz", "64",
           "--device", "cpu", "--conf", "0.01", "--save-json", "--project", str(tmp_path)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    lines = []
    while len([x for x in lines if ".jpg: " in x]) < 3:
        line = p.stdout.readline()
        assert line, p.stderr.read()[-3000:]
        lines.append(line)
    p.send_signal(signal.SIGTERM)
    rest, err = p.communicate(timeout=120)
    lines += rest.splitlines(keepends=True)
    assert p.returncode == 143 and "Traceback" not in err, err[-3000:]
    done = [x.split(": ")[0] for x in lines if ".jpg: " in x]
    summary = lines[-1]
    assert summary.startswith(f"summary: {len(done)} ok, 0 failed (terminated); ") and len(done) < 128, summary
    records = json.loads((tmp_path / "predict/detections.json").read_text())
    assert {Path(r["image"]).name for r in records} <= {Path(d).name for d in done}


def read_only_folder(tmp_path, tmpfs) -> Path:
    """A folder nothing can be created in: a read-only tmpfs for root (who writes anywhere), else chmod 555."""
    if os.geteuid() == 0:
        return tmpfs("64k", ",ro")
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    return folder


def test_read_only_runs_folder_is_refused_before_predicting(tmp_path, tmpfs, capsys):
    runs = read_only_folder(tmp_path, tmpfs)
    code, out, err = run_predict([COCO8_VAL, "--no-save", "--save-json", "--project", runs / "predict"], capsys)
    assert code == 2 and not out, out
    assert err.splitlines() == [f"predict.py: error: --project '{runs / 'predict'}': cannot create files in '{runs}' "
                                f"({'read-only file system' if os.geteuid() == 0 else 'permission denied'})"]


# --- Concurrent runs: one folder each ------------------------------------------------------------------------------
RACE = r"""
import os, runpy, sys, time
from pathlib import Path
from ultralytics.models.yolo.detect import DetectionPredictor

barrier, script = Path(sys.argv[1]), sys.argv[2]
init = DetectionPredictor.__init__

def wait_for_the_other(self, *args, **kwargs):  # Ultralytics picks the run folder here (today's code)
    (barrier / f"ready-{os.getpid()}").touch()
    while not (barrier / "go").exists():
        time.sleep(0.001)
    init(self, *args, **kwargs)

DetectionPredictor.__init__ = wait_for_the_other
sys.argv = sys.argv[2:]
runpy.run_path(script, run_name="__main__")
"""


def start_together(cmd: list[str], barrier: Path, n: int = 2) -> list[tuple[str, str]]:
    """Start `cmd` (a RACE) n times, let all go at once when each waits at the barrier; their (stdout, stderr),
    each having exited 0."""
    runs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
            for _ in range(n)]
    deadline = time.time() + 300
    while len(list(barrier.glob("ready-*"))) < n:
        assert time.time() < deadline and all(r.poll() is None for r in runs), [r.communicate() for r in runs]
        time.sleep(0.01)
    (barrier / "go").touch()
    outs = [r.communicate(timeout=300) for r in runs]
    assert [r.returncode for r in runs] == [0] * n, outs
    return outs


@pytest.mark.slow
def test_two_predict_runs_started_together_get_two_folders(tmp_path):
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    cmd = [sys.executable, "-c", RACE, str(barrier), str(ROOT / "predict.py"), str(COCO8_VAL), "--weights",
           str(WEIGHTS), "--imgsz", "64", "--device", "cpu", "--conf", "0.01", "--save-txt", "--save-json",
           "--project", str(tmp_path / "runs"), "--name", "same"]
    outs = start_together(cmd, barrier)
    folders = sorted({re.search(r"results in (\S+)", out)[1] for out, _ in outs})
    assert [Path(f).name for f in folders] == ["same", "same-2"], outs
    for f in folders:
        assert len(list(Path(f).glob("*.jpg"))) == 4
        assert {Path(r["image"]).name for r in json.loads((Path(f) / "detections.json").read_text())} <= {
            p.name for p in COCO8_VAL.glob("*.jpg")}
        assert len(json.loads((Path(f) / "detections.json").read_text())) == int(
            re.search(r"(\d+) detections", next(o for o, _ in outs if f in o))[1])


def _claim_after(barrier, parent, queue):
    barrier.wait()
    queue.put(str(utils.claim_folder(parent, "run")))


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")
def test_claim_folder_gives_racing_processes_distinct_folders(tmp_path):
    ctx = multiprocessing.get_context("fork")
    barrier, queue = ctx.Barrier(6), ctx.Queue()
    workers = [ctx.Process(target=_claim_after, args=(barrier, tmp_path, queue)) for _ in range(6)]
    for w in workers:
        w.start()
    claimed = sorted(Path(queue.get(timeout=60)).name for _ in workers)
    for w in workers:
        w.join()
    assert claimed == sorted(["run", *(f"run-{n}" for n in range(2, 7))])


# --- train.py: a full disk, and resuming a copy ---------------------------------------------------------------------
FULL_AFTER_FIRST_SAVE = r"""
import shutil, sys
from detector import training, utils

real, checks = shutil.disk_usage, []

def disk_usage(path):  # asked before each checkpoint write: from the second save on, the disk is full
    checks.append(path)
    usage = real(path)
    return usage._replace(free=1000) if len(checks) > 1 else usage

utils.shutil.disk_usage = disk_usage
sys.exit(training.main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory):
    """Two epochs on coco8, the disk (said to be) full at the second checkpoint: (run folder, completed process)."""
    project = tmp_path_factory.mktemp("runs")
    cmd = [sys.executable, "-c", FULL_AFTER_FIRST_SAVE, "--epochs", "2", *TINY_TRAIN, "--project", str(project),
           "--name", "full"]
    return project / "full", subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)


@pytest.mark.slow
def test_training_on_a_full_disk_stops_with_one_line_and_a_loadable_last_pt(stopped_run):
    run, r = stopped_run
    last = run / "weights/last.pt"
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert re.fullmatch(rf"train\.py: error: cannot write '{re.escape(str(last))}': No space left on device \(0\.0 MB "
                        rf"free, [\d.]+ MB needed\); training stopped: {re.escape(str(last))} holds epoch 1; make room "
                        rf"and continue with python train\.py --resume {re.escape(str(last))}",
                        r.stderr.splitlines()[-1]), r.stderr[-2000:]
    assert torch.load(last, map_location="cpu", weights_only=False)["epoch"] == 0
    assert sorted(os.listdir(run / "weights")) == ["best.pt", "last.pt"]  # no temporary file left


@pytest.mark.slow
def test_resume_on_a_copy_of_a_run_folder_writes_into_the_copy(stopped_run, tmp_path):
    run, _ = stopped_run
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*")}
    r = subprocess.run([sys.executable, str(ROOT / "train.py"), "--resume", str(copy / "weights/last.pt")],
                       capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert [row.split(",")[0] for row in (copy / "results.csv").read_text().splitlines()[1:]] == ["1", "2"]
    assert torch.load(copy / "weights/last.pt", map_location="cpu", weights_only=False)["epoch"] == -1  # finished
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*")} == before  # the original is untouched


BALLAST_AFTER_FIRST_SAVE = r"""
import os, sys
from pathlib import Path
from detector import training
from detector.glue import trainer

room = float(sys.argv[1])
save = trainer.DetectorTrainer.save_model

def save_then_fill_the_disk(self):  # after the first save, leave `room` checkpoints' worth of free space
    result = save(self)
    if not (ballast := self.save_dir.parent / "ballast").exists():
        free = os.statvfs(ballast.parent).f_bavail * os.statvfs(ballast.parent).f_frsize
        with open(ballast, "wb") as f:
            os.posix_fallocate(f.fileno(), 0, free - int(room * self.last.stat().st_size))
    return result

trainer.DetectorTrainer.save_model = save_then_fill_the_disk
sys.exit(training.main(sys.argv[2:]))
"""


@pytest.mark.slow
@pytest.mark.parametrize("room", [1.05, 0.5])
def test_training_on_a_real_full_disk(room, tmpfs):
    """A tmpfs left with room for one more checkpoint after the first save: training ends (Ultralytics' in-place
    writes need that much too; staging a whole set of checkpoints needed twice as much). With room for half of one,
    it stops cleanly with one line, last.pt whole."""
    disk = tmpfs("160m")
    cmd = [sys.executable, "-c", BALLAST_AFTER_FIRST_SAVE, str(room), "--epochs", "2", *TINY_TRAIN, "--project",
           str(disk), "--name", "run"]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    last = disk / "run/weights/last.pt"
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    if room > 1:
        assert r.returncode == 0, r.stderr[-3000:]
        assert torch.load(last, map_location="cpu", weights_only=False)["epoch"] == -1  # finished, stripped
    else:
        assert r.returncode == 1 and "No space left on device" in r.stderr.splitlines()[-1], r.stderr[-2000:]
        assert torch.load(last, map_location="cpu", weights_only=False)["epoch"] == 0
    assert sorted(os.listdir(disk / "run/weights")) == ["best.pt", "last.pt"]


# --- export: a failed export never replaces a good .onnx ------------------------------------------------------------
@pytest.mark.parametrize("failure", ["exporter", "verification"])
def test_failed_export_leaves_the_onnx_there_untouched(failure, tmp_path, monkeypatch):
    from ultralytics.utils.export import engine

    weights = tmp_path / "m.pt"
    shutil.copy(WEIGHTS, weights)
    (tmp_path / "m.onnx").write_bytes(b"the good export")

    def half_then_fail(model, im, f, **kwargs):
        Path(f).write_bytes(b"half an onnx")
        raise RuntimeError("exporter died")

    def disagree(path, imgsz):
        assert Path(path).read_bytes()[:4] != b"the "  # the new file, under its temporary name
        raise export.Disagree()

    if failure == "exporter":
        monkeypatch.setattr(engine, "torch2onnx", half_then_fail)
    with pytest.raises(RuntimeError if failure == "exporter" else export.Disagree):
        export.export(str(weights), imgsz=64, check=None if failure == "exporter" else disagree)
    assert (tmp_path / "m.onnx").read_bytes() == b"the good export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.pt"]


# --- Inputs are what they say ---------------------------------------------------------------------------------------
def test_an_existing_path_is_that_file_whatever_its_name(tmp_path, capsys, monkeypatch):
    image = next(COCO8_VAL.glob("*.jpg"))
    for name in ("b*c.jpg", "bxc.jpg", "a[1].jpg", "0/q?.jpg"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        shutil.copy(image, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    code, out, err = run_predict(["b*c.jpg", "a[1].jpg", "0", "--project", tmp_path / "runs"], capsys)
    assert code == 0 and not err, err  # "0" is the folder, not webcam 0
    assert sorted(line.split(": ")[0] for line in out.splitlines() if ".jpg: " in line) == ["0/q?.jpg", "a[1].jpg",
                                                                                             "b*c.jpg"]
    assert "summary: 3 ok, 0 failed" in out


def test_a_symlink_loop_does_not_predict_a_file_twice(tmp_path, capsys):
    shutil.copy(next(COCO8_VAL.glob("*.jpg")), tmp_path / "a.jpg")
    (tmp_path / "loop").symlink_to(tmp_path, target_is_directory=True)
    code, out, err = run_predict([f"{tmp_path}/**/*.jpg", "--no-save"], capsys)
    assert code == 0 and "summary: 1 ok, 0 failed" in out, out + err


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_a_url_is_downloaded_into_the_run_folder_not_replaced_by_a_local_file(tmp_path, capsys, monkeypatch):
    served, cwd = tmp_path / "served", tmp_path / "cwd"
    served.mkdir(), cwd.mkdir()
    cv2.imwrite(str(served / "bus.jpg"), cv2.resize(cv2.imread(str(next(COCO8_VAL.glob("*.jpg")))), (200, 120)))
    cv2.imwrite(str(cwd / "bus.jpg"), np.zeros((50, 70, 3), np.uint8))  # an unrelated local file of the same name
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(served)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.chdir(cwd)
    url = f"http://127.0.0.1:{server.server_address[1]}/bus.jpg"
    try:
        code, out, err = run_predict([url, "--save-json", "--project", tmp_path / "runs"], capsys)
    finally:
        server.shutdown()
    assert code == 0 and f"{url}: 200x120, " in out, out + err
    assert sorted(os.listdir(cwd)) == ["bus.jpg"] and cv2.imread(str(cwd / "bus.jpg")).shape == (50, 70, 3)
    run = tmp_path / "runs/predict"
    assert (run / "downloads/bus.jpg").read_bytes() == (served / "bus.jpg").read_bytes()


def test_corrupted_weights_are_refused_not_run(tmp_path, capsys):
    """Eight zeroed bytes inside the shipped weights: the zip's CRC tells, before anything runs or is written."""
    data = bytearray(WEIGHTS.read_bytes())
    with zipfile.ZipFile(WEIGHTS) as archive:
        member = max(archive.infolist(), key=lambda i: i.file_size)
    start = member.header_offset + 30 + len(member.filename.encode()) + len(member.extra) + member.file_size // 2
    data[start:start + 8] = bytes(8)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(bytes(data))
    code = predict.main([str(COCO8_VAL), "--weights", str(bad), "--project", str(tmp_path / "runs")])
    out, err = capsys.readouterr()
    assert code == 2 and err.splitlines() == [f"predict.py: error: weights '{bad}': corrupt: '{member.filename}' in "
                                              "it does not match its checksum (CRC); refusing to load it"]
    assert not (tmp_path / "runs").exists()


def test_a_multi_page_tiff_says_only_the_first_page_is_predicted(tmp_path, capsys):
    from PIL import Image

    pages = [Image.open(p).convert("RGB") for p in sorted(COCO8_VAL.glob("*.jpg"))[:3]]
    pages[0].save(tmp_path / "scan.tif", save_all=True, append_images=pages[1:])
    code, out, err = run_predict([tmp_path / "scan.tif", "--project", tmp_path / "runs"], capsys)
    assert code == 0 and "summary: 1 ok, 0 failed" in out, out + err
    assert err.splitlines() == [f"predict.py: warning: source '{tmp_path / 'scan.tif'}': a TIFF of 3 pages; only the "
                                "first page is predicted"]


def test_results_csv_row_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    """DetectorTrainer.save_metrics: Ultralytics' rows, but a write that fails midway (a full disk, a kill) leaves the
    previous results.csv as it was, not a half row."""
    from ultralytics.engine import trainer as trainer_module
    from ultralytics.engine.trainer import BaseTrainer

    from detector.glue.trainer import DetectorTrainer

    def bare(cls, csv):  # the three attributes save_metrics reads, without building a whole trainer
        t = object.__new__(cls)
        t.csv, t.epoch, t.train_time_start = csv, 0, time.time()
        return t

    ours, stock = bare(DetectorTrainer, tmp_path / "ours/results.csv"), bare(BaseTrainer, tmp_path / "stock.csv")
    for epoch, loss in enumerate((1.5, 1.25)):
        for t in (ours, stock):
            t.epoch = epoch
            t.save_metrics({"train/box_loss": loss, "metrics/mAP50-95(B)": 0.1 * epoch})
    text = ours.csv.read_text()
    header = "epoch,time,train/box_loss,metrics/mAP50-95(B)"
    assert text.splitlines()[0] == stock.csv.read_text().splitlines()[0] == header
    assert [r.split(",")[2] for r in text.splitlines()[1:]] == ["1.5", "1.25"]  # Ultralytics' rows, appended

    real_open = open

    def half_then_full_disk(path, *args, **kwargs):
        f = real_open(path, *args, **kwargs)
        write_some = f.write

        def write(s):
            write_some(s[: len(s) // 2])
            f.flush()
            raise OSError(errno.ENOSPC, "No space left on device")

        f.write = write
        return f

    monkeypatch.setattr(trainer_module, "open", half_then_full_disk, raising=False)
    ours.epoch = 2
    with pytest.raises(OSError):
        ours.save_metrics({"train/box_loss": 1.0, "metrics/mAP50-95(B)": 0.2})
    assert ours.csv.read_text() == text and ours.csv == tmp_path / "ours/results.csv"
    assert sorted(p.name for p in ours.csv.parent.iterdir()) == ["results.csv"]  # no temporary file left


def test_a_killed_results_csv_write_leaves_nothing_for_the_next_trainer(tmp_path, monkeypatch):
    """A kill while save_metrics writes leaves results.csv's hidden temporary copy in the run folder; the next trainer
    there (a resume) removes it, as it removes a half-written checkpoint, and nothing else."""
    from ultralytics.models.yolo.detect import DetectionTrainer

    from detector.glue.trainer import DetectorTrainer

    run = tmp_path / "run"
    (run / "weights").mkdir(parents=True)
    (run / "results.csv").write_text("epoch,time\n1,2.0\n")
    kept = ["results.csv", "args.yaml", ".notes.tmp.txt", ".results.csv.tmp", "results.0123abcd.tmp.csv",
            ".other.0123abcd.tmp.csv"]  # not results.csv's temporaries: the user's, or another file's
    for name in kept[1:]:
        (run / name).write_text("keep")
    dead = [AtomicFile(run / "results.csv").tmp, AtomicFile(run / "weights/last.pt").tmp]  # as a kill leaves them
    dead[0].write_text("epoch,time\n1,2.0\n2,4")

    def parent_init(self, *args, **kwargs):  # what Ultralytics' __init__ sets that ours reads: a resumed run's paths
        self.save_dir, self.wdir, self.csv = run, run / "weights", run / "results.csv"
        self.last, self.best = self.wdir / "last.pt", self.wdir / "best.pt"

    monkeypatch.setattr(DetectionTrainer, "__init__", parent_init)
    DetectorTrainer()
    assert not any(p.exists() for p in dead)
    assert sorted(p.name for p in run.iterdir()) == sorted([*kept, "weights"]) and not any((run / "weights").iterdir())
    assert (run / "results.csv").read_text() == "epoch,time\n1,2.0\n"


def test_atomic_leftovers_are_only_atomic_temporaries(tmp_path):
    """The sweep of a run's weights folder deletes what AtomicFile left, never a user's hidden file or a staged export
    folder (unlinking that one would also raise IsADirectoryError in the trainer)."""
    dead = AtomicFile(tmp_path / "last.pt").tmp  # as a kill leaves it
    (tmp_path / ".best_openvino_model.0123abcd.tmp").mkdir()  # staged_folder's temporary name, a folder
    (tmp_path / ".mine.tmp").write_text("keep")
    (tmp_path / ".notes.tmp.txt").write_text("keep")
    assert AtomicFile.leftovers(tmp_path) == [dead]
    assert AtomicFile.leftovers(tmp_path, "best.pt") == [] and AtomicFile.leftovers(tmp_path, "last.pt") == [dead]
