"""What used to be silent warns or refuses with one line; what used to be a traceback is one line; messages name files
that exist.

- label files named `.TXT` (any other letter case): Ultralytics does not read them and trains their images as
  backgrounds; a warning names one and the count (train.py's pre-flight, and the trainer's dataset for `detector
  train`);
- `--resume` with options: those a resume can take (--data, --imgsz, --batch, ...) are honoured, the others refused;
- out of memory during training, OpenVINO export on a full disk: one line;
- the exporter's "Predict: yolo predict model=..." and the final strip's "Optimizer stripped from ..." name the files
  that are there afterwards, not the temporary names they were written under.
(The non-UTF-8 dataset YAML: tests/test_untrusted_files.py; --imgsz above its maximum: tests/test_arguments.py.)
"""

import logging
import re
import shutil
from pathlib import Path

import pytest
import torch

from conftest import ROOT
from detector import assets, datasets, export, training
from detector.glue import trainer as glue
from test_reliability import tmpfs  # noqa: F401  (fixture)
from test_run_folder_writes import resumable

WEIGHTS = assets.DEFAULT_WEIGHTS
COCO8 = ROOT / "data/coco8"


@pytest.fixture
def ultralytics_log():
    """The messages Ultralytics' LOGGER gives while the test runs (it does not propagate to the root logger)."""
    messages = []

    class Keep(logging.Handler):
        def emit(self, record):
            messages.append(record.getMessage())

    keep = Keep()
    logger = logging.getLogger("ultralytics")
    logger.addHandler(keep)
    yield messages
    logger.removeHandler(keep)


# --- Label files of other letter case -------------------------------------------------------------------------------
@pytest.fixture
def upper_case_labels(tmp_path):
    """coco8 with two of the four train label files renamed x.TXT: (data YAML, the first renamed file)."""
    shutil.copytree(COCO8, tmp_path / "ds")
    renamed = sorted((tmp_path / "ds/labels/train").glob("*.txt"))[:2]
    for f in renamed:
        f.rename(f.with_suffix(".TXT"))
    data = tmp_path / "ds.yaml"
    data.write_text(f"path: {tmp_path / 'ds'}\ntrain: images/train\nval: images/val\n"
                    f"names: {list(datasets.load(str(COCO8.parent / 'coco8.yaml'))['names'].values())}\n")
    return str(data), renamed[0].with_suffix(".TXT")


def test_preflight_warns_of_label_files_ultralytics_does_not_read(upper_case_labels):
    data, first = upper_case_labels
    train, _ = datasets.preflight(data)
    [warning] = [w for w in train.warnings() if "letter case" in w]
    assert warning.startswith("train: 2 label files not read: ") and f"e.g. {first} " in warning, warning
    assert f"(it looks for {first.stem}.txt)" in warning and "their images train as backgrounds" in warning


def test_the_trainers_dataset_warns_too(upper_case_labels, ultralytics_log):
    """What `detector train` (no pre-flight) builds."""
    data, first = upper_case_labels
    glue.LineFilteredDataset(img_path=str(Path(first).parents[2] / "images/train"), imgsz=64, augment=True,
                             data=datasets.load(data))
    [warning] = [m for m in ultralytics_log if "letter case" in m]
    assert "2 label files not read" in warning and str(first) in warning, warning


# --- --resume and the options given with it -------------------------------------------------------------------------
@pytest.mark.parametrize("given, named", [
    (["--epochs", "5"], "--epochs"),
    (["--precision", "fp32"], "--precision"),
    (["--name", "other", "lr0=0.1"], "--name, lr0="),
    (["--model", "yolo11n-an.yaml"], "--model"),
])
def test_resume_refuses_options_it_cannot_honour(given, named, tmp_path, capsys):
    last = resumable(tmp_path)
    code = training.main(["--resume", str(last), *given])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith(f"train.py: error: --resume: {named}: "), err
    assert "start a new run with --model" in err


def test_resume_honours_the_options_it_can(tmp_path):
    last = resumable(tmp_path)
    args, extra = training.parse_args(["--resume", str(last), "--data", "coco8.yaml", "--imgsz", "96", "--batch", "2",
                                       "--workers", "1", "close_mosaic=0"])
    plan = training.plan(args, extra)
    assert {k: plan.train_args[k] for k in ("data", "imgsz", "batch", "workers", "close_mosaic")} == {
        "data": str(assets.DATA_DIR / "coco8.yaml"), "imgsz": 96, "batch": 2, "workers": 1, "close_mosaic": 0}
    args, extra = training.parse_args(["--resume", str(last)])
    assert {"data", "imgsz", "batch", "workers"}.isdisjoint(training.plan(args, extra).train_args)  # the run's own


# --- One line instead of a traceback --------------------------------------------------------------------------------
def test_out_of_memory_during_training_is_one_line(tmp_path, capsys, monkeypatch):
    from ultralytics.engine.model import Model

    def out_of_memory(self, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")

    monkeypatch.setattr(Model, "train", out_of_memory)
    code = training.main(["--data", "coco8.yaml", "--imgsz", "64", "--device", "cpu", "--project", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1 and err.splitlines()[-1] == ("train.py: error: out of memory (OutOfMemoryError: CUDA out of "
                                                  "memory. Tried to allocate 80.00 GiB): lower --batch or --imgsz"), err


def test_openvino_export_on_a_full_disk_is_one_line(tmpfs, capsys):  # noqa: F811
    disk = tmpfs(f"{WEIGHTS.stat().st_size // 1024 + 1500}k")  # the weights and 1.5 MB: a fp32 export needs ~10
    weights = disk / "w.pt"
    shutil.copy(WEIGHTS, weights)
    code = export.main([str(weights), "--format", "openvino", "--imgsz", "64", "--no-verify"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err, err
    assert re.fullmatch(rf"export: error: No space left on device \([\d.]+ MB free, [\d.]+ MB needed\); "
                        rf"{re.escape(str(disk / 'w_openvino_model'))} not written", err.splitlines()[-1]), err
    assert sorted(p.name for p in disk.iterdir()) == ["w.pt"]


# --- Messages name files that exist ---------------------------------------------------------------------------------
def named_paths(messages: list[str], pattern: str) -> list[Path]:
    return [Path(m) for line in messages for m in re.findall(pattern, line)]


def test_the_exporters_messages_name_the_exported_file(tmp_path, ultralytics_log):
    weights = tmp_path / "best.pt"
    shutil.copy(WEIGHTS, weights)
    onnx = export.export(str(weights), imgsz=64)
    assert not any(".tmp" in m for m in ultralytics_log), [m for m in ultralytics_log if ".tmp" in m]
    [named] = named_paths(ultralytics_log, r"Predict:\s+yolo predict task=detect model=(\S+)")
    assert named == Path(onnx) and named.is_file()


def test_the_final_strips_message_names_the_stripped_file(tmp_path, ultralytics_log):
    last = tmp_path / "last.pt"
    shutil.copy(WEIGHTS, last)
    glue.strip_atomically(last)
    [line] = [m for m in ultralytics_log if m.startswith("Optimizer stripped from")]
    assert re.fullmatch(rf"Optimizer stripped from {re.escape(str(last))}, [\d.]+MB", line), line
