"""Interrupted training, for real: SIGKILL mid-epoch and mid-checkpoint-write, then `train.py --resume`.

Each test starts CPU trainings in subprocesses at imgsz 64. The mid-epoch kill uses coco128 (32 batches of 4, about
2 s of training per epoch on 2 cores) so that there is an epoch to land in; coco8's is a single batch.
"""

import csv
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from detector import training as train
from conftest import ROOT
from detector.glue import trainer as glue
from detector.utils import AtomicFile

TRAIN = [sys.executable, str(ROOT / "train.py")]
TINY = ["--imgsz", "64", "--batch", "4", "--workers", "0", "--device", "cpu", "plots=False"]


def load(path):
    return torch.load(path, map_location="cpu", weights_only=False)  # our own checkpoints: trusted


def epochs_in(results_csv) -> list[int]:
    return [int(float(row["epoch"])) for row in csv.DictReader(open(results_csv))]


def resume(last_pt, timeout=600) -> subprocess.CompletedProcess:
    r = subprocess.run([*TRAIN, "--resume", str(last_pt)], capture_output=True, text=True, cwd=ROOT, timeout=timeout)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return r


@pytest.fixture(scope="module")
def killed_and_resumed(tmp_path_factory):
    """3 epochs on coco128, SIGKILLed in epoch 2 (soon after epoch 1's last.pt appears), then resumed."""
    project = tmp_path_factory.mktemp("runs")
    run = project / "r"
    last = run / "weights/last.pt"
    cmd = [*TRAIN, "--data", "coco128.yaml", "--epochs", "3", *TINY, "--project", str(project), "--name", "r"]
    log = open(project / "first.log", "w")
    p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    deadline = time.time() + 300
    while not last.exists():  # written atomically: it exists only complete
        assert p.poll() is None, (project / "first.log").read_text()[-3000:]
        assert time.time() < deadline, "no last.pt after 5 minutes"
        time.sleep(0.02)
    time.sleep(0.5)  # into epoch 2's batches
    p.send_signal(signal.SIGKILL)
    p.wait()
    killed = load(last)
    assert p.returncode == -signal.SIGKILL and killed["epoch"] in (0, 1), "the run ended before it was killed"
    # Simulate the worst moment to die: epoch 2's row is in results.csv but its checkpoint never got written
    # (BaseTrainer appends the row, then saves). Resume must not count that epoch twice.
    rows = (run / "results.csv").read_text().splitlines(keepends=True)
    if len(rows) - 1 == killed["epoch"] + 1:  # header + one row per saved epoch: add the next epoch's row
        next_row = f"{killed['epoch'] + 2}," + rows[-1].split(",", 1)[1]
        (run / "results.csv").write_text("".join(rows) + next_row)
    r = resume(last)
    return run, killed, r.stdout + r.stderr


@pytest.mark.slow
def test_resumed_run_has_exactly_the_requested_epochs(killed_and_resumed):
    run, killed, log = killed_and_resumed
    assert f"Resuming training {run / 'weights/last.pt'} from epoch {killed['epoch'] + 2} to 3 total epochs" in log
    assert epochs_in(run / "results.csv") == [1, 2, 3]


def test_final_checkpoints_are_consistent(killed_and_resumed):
    run, _, _ = killed_and_resumed
    for name in ("last.pt", "best.pt"):
        ckpt = load(run / "weights" / name)
        assert ckpt["epoch"] == -1 and ckpt["optimizer"] is None  # finished and stripped, as Ultralytics does
        assert ckpt["train_args"]["epochs"] == 3
        assert [int(e) for e in ckpt["train_results"]["epoch"]] == [1, 2, 3]
    assert sorted(os.listdir(run / "weights")) == ["best.pt", "last.pt"]  # no temporary file left


def test_resuming_a_finished_run_is_refused(killed_and_resumed, capsys):
    run, _, _ = killed_and_resumed
    assert train.main(["--resume", str(run / "weights/last.pt")]) == 2
    assert "is not a resumable checkpoint" in capsys.readouterr().err


KILL_DURING_SECOND_SAVE = r"""
import os, pathlib, signal, sys
from ultralytics import YOLO
from detector.glue import trainer as glue
from detector.utils import AtomicFile

def die_in_next_write(trainer):
    # Epoch 1's checkpoints are written. From now on the first checkpoint write gets half its bytes out, then the
    # process dies as under SIGKILL: no exception handler, no finally block runs.
    def half_then_die(path, data):
        with open(path, "wb") as f:
            f.write(data[: len(data) // 2])
        os.kill(os.getpid(), signal.SIGKILL)
    pathlib.Path.write_bytes = half_then_die

model = YOLO("models/yolo11n-an.yaml")
model.add_callback("on_model_save", die_in_next_write)
model.train(trainer=glue.DetectorTrainer, data="data/coco8.yaml", epochs=2, imgsz=64, batch=4, workers=0,
            device="cpu", plots=False, project=sys.argv[1], name="a")
"""


@pytest.mark.slow
def test_kill_during_a_checkpoint_write_keeps_the_previous_one(tmp_path):
    r = subprocess.run([sys.executable, "-c", KILL_DURING_SECOND_SAVE, str(tmp_path)], capture_output=True, text=True,
                       cwd=ROOT, timeout=600)
    assert r.returncode == -signal.SIGKILL, r.stderr[-3000:]
    weights = tmp_path / "a/weights"
    [partial] = AtomicFile.leftovers(weights)  # last.pt's temporary file, next to it
    assert partial.name.startswith(".last.") and partial.stat().st_size < (weights / "last.pt").stat().st_size
    with pytest.raises(Exception):
        load(partial)
    assert load(weights / "last.pt")["epoch"] == 0  # epoch 1's checkpoint, whole
    assert load(weights / "best.pt")["epoch"] == 0
    # ... and it resumes: the next trainer removes the dead run's temporary file.
    resume(weights / "last.pt")
    assert sorted(os.listdir(weights)) == ["best.pt", "last.pt"]
    assert epochs_in(tmp_path / "a/results.csv") == [1, 2]


def test_results_rows_beyond_the_checkpoint_are_dropped(tmp_path):
    f = tmp_path / "results.csv"
    f.write_text("epoch,time,loss\n1,2.0,0.5\n2,4.0,0.4\n3,6.0,0.3\n")
    glue._keep_epochs(f, 2)
    assert f.read_text() == "epoch,time,loss\n1,2.0,0.5\n2,4.0,0.4\n"


def test_trainer_contract_holds():
    glue.check_contract()  # raises, naming what broke, after an incompatible Ultralytics upgrade
