"""A resumed run writes into its own run folder and never through a symbolic link planted there; results.csv rows that
are not rows do not stop a resume.

A run folder someone hands you can hold links (args.yaml -> a file of yours, weights -> another folder): Ultralytics
writes args.yaml, plots and results through them. The checkpoint records the save_dir it was trained in, anywhere:
Ultralytics' own resume writes there. Both refused or corrected up front, through train.py and the `detector`
command. Fresh runs get a folder claimed new (tests/test_reliability.py).
"""

from pathlib import Path

import pytest
import torch

from detector import assets, cli, training
from detector.glue import trainer as glue

WEIGHTS = assets.DEFAULT_WEIGHTS


def resumable(tmp_path, **train_args) -> Path:
    """<tmp_path>/run/weights/last.pt: the shipped weights as an interrupted run's checkpoint (epoch 1 of 3 on coco8
    at imgsz 64 on the CPU). Good enough for everything a resume checks before training."""
    ckpt = torch.load(WEIGHTS, map_location="cpu", weights_only=False)  # ours: trusted
    ckpt.update(epoch=0, optimizer={"state": {}, "param_groups": []})
    ckpt["train_args"] = {**ckpt["train_args"], "data": "coco8.yaml", "epochs": 3, "imgsz": 64, "batch": 4,
                          "workers": 0, "device": "cpu", "plots": False, **train_args}
    last = tmp_path / "run" / "weights" / "last.pt"
    last.parent.mkdir(parents=True)
    torch.save(ckpt, last)
    return last


@pytest.fixture(params=["args.yaml", "weights"])
def planted(request, tmp_path):
    """(a resumable last.pt, the link planted in its run folder, what the link points at, its content)."""
    last = resumable(tmp_path)
    run = last.parent.parent
    if request.param == "args.yaml":
        target = tmp_path / "yours.txt"
        target.write_text("precious\n")
        (run / "args.yaml").symlink_to(target)
    else:  # the weights folder itself moved elsewhere and linked: every checkpoint would be written there
        target = tmp_path / "elsewhere"
        (run / "weights").rename(target)
        (run / "weights").symlink_to(target)
    return last, run / request.param, target


def contents(path) -> dict:
    return {p.name: p.read_bytes() for p in path.iterdir()} if path.is_dir() else {path.name: path.read_bytes()}


def test_train_py_refuses_to_resume_into_a_folder_with_a_planted_link(planted, capsys):
    last, link, target = planted
    before = contents(target)
    code = training.main(["--resume", str(last)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and f"'{link}' is a symbolic link" in err, err
    assert contents(target) == before


def test_the_detector_command_refuses_it_too(planted, capsys):
    last, link, target = planted
    before = contents(target)
    code = cli.main(["train", "resume", f"model={last}"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and f"'{link}' is a symbolic link" in err, err
    assert contents(target) == before


def test_a_resume_writes_into_the_checkpoints_run_folder_not_the_save_dir_it_records(tmp_path):
    """What `detector train resume model=...` builds: the recorded save_dir (which could be anywhere) is not used."""
    recorded = tmp_path / "recorded"
    last = resumable(tmp_path, save_dir=str(recorded))
    trainer = glue.DetectorTrainer(overrides={"model": str(last), "resume": str(last)})
    assert trainer.save_dir == last.parent.parent and (last.parent.parent / "args.yaml").is_file()
    assert not recorded.exists()


def test_results_csv_lines_that_are_not_rows_are_dropped_with_their_numbers(tmp_path):
    csv = tmp_path / "results.csv"
    header = "epoch,time,train/box_loss\n"
    csv.write_bytes((header + "1,2.5,1.9\ngarbage\n2,5.0,1.8\n").encode() + b"\xff\xfe,1,2\n3,7.5,1.7\n")
    assert glue._keep_epochs(csv, 2) == [3, 5]
    assert csv.read_text() == header + "1,2.5,1.9\n2,5.0,1.8\n"
    assert glue._keep_epochs(csv, 2) == []  # and nothing else changes
