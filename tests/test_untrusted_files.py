"""No YAML, dataset or checkpoint runs code unless the user trusts the files (DETECTOR_TRUST_PICKLE=1, detector.trust).

- a model YAML's `activation:` string and a row naming something that is not a layer class (Ultralytics evaluates the
  one and calls the other): refused through YOLO(), train.py (a YAML, a checkpoint's `yaml` for fine-tuning and for
  resuming) and the `detector` command, with one line;
- a dataset YAML's `download:` script, for a missing split: never run, through train.py, `detector train`,
  `detector val` (any `split=`); a dataset YAML that is not UTF-8 refused;
- the trainer's own loads: the final strip of best.pt/last.pt, and a resumed run's best.pt.
Pickles given directly to each tool: tests/test_native.py. The marker files these write would exist on code that
evaluated what the files hold.
"""

import contextlib
import shutil

import pytest
import torch

from conftest import ROOT
from detector import assets, cli, datasets, training
from detector.glue import trainer as glue
from test_run_folder_writes import resumable

WEIGHTS = assets.DEFAULT_WEIGHTS
TINY = ["--data", "coco8.yaml", "--epochs", "1", "--imgsz", "64", "--batch", "4", "--workers", "0", "--device", "cpu",
        "plots=False"]


def creates(marker) -> str:
    """Python that creates `marker`, as an expression."""
    return f"__import__('pathlib').Path({str(marker)!r}).touch()"


class CreatesAFile:
    """Unpickling this calls open(path, 'w'): any code could run there instead."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def run_train(capsys, *argv) -> tuple[int, str]:
    code = training.main([*map(str, argv)])
    return code, capsys.readouterr().err


def run_detector(capsys, *argv) -> tuple[int, str]:
    code = cli.main([*map(str, argv)])
    return code, capsys.readouterr().err


# --- Model YAMLs and the YAML a checkpoint carries -----------------------------------------------------------------
@pytest.fixture(params=["activation", "row"])
def hostile_yaml(request, tmp_path):
    """(a model YAML that would create a file if built by Ultralytics alone, that file). `activation`: evaluated;
    `row`: a row naming a function (Ultralytics' checkpoint loader, told to unpickle in full) that it would call."""
    marker = tmp_path / f"created-by-{request.param}"
    head = "head:\n  - [[0], 1, Detect, [nc]]\n"
    if request.param == "activation":
        text = f'nc: 2\nactivation: "{creates(marker)} or nn.SiLU()"\nbackbone:\n  - [-1, 1, Conv, [16, 3, 2]]\n'
    else:
        pickle = tmp_path / "hostile.pt"
        torch.save({"model": CreatesAFile(marker)}, pickle)
        # parse_model reads a string argument as a Python literal: the path quoted twice reaches the call as a str
        row = f"[-1, 1, torch_safe_load, [\"'{pickle}'\", False]]"
        text = f"nc: 2\nbackbone:\n  - [-1, 1, Conv, [16, 3, 2]]\n  - {row}\n"
    path = tmp_path / f"{request.param}.yaml"
    path.write_text(text + head)
    return path, marker


def test_python_api_builds_no_yaml_that_runs_code(hostile_yaml, monkeypatch):
    from ultralytics import YOLO

    path, marker = hostile_yaml
    with pytest.raises(TypeError, match="refused: a model YAML's activation .*DETECTOR_TRUST_PICKLE=1"):
        YOLO(path)
    assert not marker.exists()
    monkeypatch.setenv("DETECTOR_TRUST_PICKLE", "1")  # the one opt-in: built as Ultralytics alone builds it
    with contextlib.suppress(Exception):  # the row's call returns no layer
        YOLO(path)
    assert marker.exists()


def test_train_py_refuses_a_yaml_that_runs_code(hostile_yaml, tmp_path, capsys):
    path, marker = hostile_yaml
    code, err = run_train(capsys, "--model", path, *TINY, "--project", tmp_path / "runs")
    assert not marker.exists()
    assert code == 2 and err.count("\n") == 1 and err.startswith(f"train.py: error: model '{path}': cannot build"), err
    assert "cannot build it: refused: a model YAML's activation" in err and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("mode", ["train", "predict"])
def test_the_detector_command_refuses_a_yaml_that_runs_code(hostile_yaml, mode, tmp_path, capsys):
    path, marker = hostile_yaml
    code, err = run_detector(capsys, mode, f"model={path}", "data=coco8.yaml", "imgsz=64", "epochs=1", "device=cpu",
                             f"source={ROOT / 'data/coco8/images/val'}", f"project={tmp_path / 'runs'}")
    assert not marker.exists()
    assert code == 2 and err.startswith("detector: error: refused: a model YAML's activation") and err.count("\n") == 1


def checkpoint_carrying(tmp_path, marker, resumable_run: bool = False):
    """A checkpoint that passes the restricted loader (only model classes, plain data) whose `yaml` would create
    `marker` when the trainer rebuilds the model from it; resumable or a finished one's weights."""
    path = resumable(tmp_path) if resumable_run else tmp_path / "hostile.pt"
    ckpt = torch.load(path if resumable_run else WEIGHTS, map_location="cpu", weights_only=False)  # ours: trusted
    ckpt["model"].yaml["activation"] = f"{creates(marker)} or nn.SiLU()"
    torch.save(ckpt, path)
    return path


@pytest.mark.parametrize("option", ["--model", "--resume"])
def test_a_checkpoint_whose_yaml_runs_code_is_refused_before_training(option, tmp_path, capsys):
    marker = tmp_path / "created-by-the-checkpoint's-yaml"
    path = checkpoint_carrying(tmp_path, marker, resumable_run=option == "--resume")
    code, err = run_train(capsys, option, path, *(TINY if option == "--model" else []), "--project", tmp_path / "runs")
    assert not marker.exists()
    assert code == 2 and err.count("\n") == 1 and "the architecture it records (its 'yaml') does not build: refused: " \
        "a model YAML's activation" in err, err


# --- Dataset YAMLs --------------------------------------------------------------------------------------------------
@pytest.fixture(params=["python", "bash"])
def downloading_dataset(request, tmp_path):
    """(a dataset YAML whose val split is missing and whose download script would create a file, that file, the
    missing folder). Its test split is missing too; its train split is coco8's."""
    marker = tmp_path / f"created-by-{request.param}-download"
    script = creates(marker)
    if request.param == "bash":  # Ultralytics runs `bash <args>` split at spaces
        (tmp_path / "get.sh").write_text(f"touch '{marker}'\n")
        script = f"bash {tmp_path / 'get.sh'}"
    missing = tmp_path / "not-downloaded"
    coco8 = ROOT / "data/coco8/images"
    path = tmp_path / "downloads.yaml"
    path.write_text(f"path: {tmp_path}\ntrain: {coco8 / 'train'}\nval: {missing}\ntest: {missing}\nnames: [person]\n"
                    f"download: \"{script}\"\n")
    return path, marker, missing


def test_no_download_script_runs_in_ultralytics_dataset_check(downloading_dataset, monkeypatch):
    from ultralytics.data.utils import check_det_dataset

    path, marker, missing = downloading_dataset
    for split in ("", "val", "test"):
        with pytest.raises(FileNotFoundError, match=f"missing path '{missing}'"):
            check_det_dataset(path, split=split)
    assert not marker.exists()
    monkeypatch.setenv("DETECTOR_TRUST_PICKLE", "1")  # the one opt-in runs it, as Ultralytics alone would
    check_det_dataset(path)
    assert marker.exists()


@pytest.mark.parametrize("argv", [["train", "epochs=1"], ["val"], ["val", "split=test"]], ids=" ".join)
def test_the_detector_command_runs_no_download_script(argv, downloading_dataset, tmp_path, capsys):
    path, marker, missing = downloading_dataset
    code, err = run_detector(capsys, *argv, f"model={WEIGHTS}", f"data={path}", "imgsz=64", "device=cpu",
                             f"project={tmp_path / 'runs'}")
    assert not marker.exists()
    assert code == 2 and err.count("\n") == 1 and f"missing path '{missing}'" in err, err


def test_train_py_runs_no_download_script(downloading_dataset, tmp_path, capsys):
    path, marker, missing = downloading_dataset
    code, err = run_train(capsys, "--data", path, "--device", "cpu", "--project", tmp_path / "runs")
    assert not marker.exists()
    assert code == 2 and err.count("\n") == 1 and f"val images not found at {missing}" in err, err


def test_a_dataset_yaml_that_is_not_utf8_is_refused(tmp_path, capsys):
    """Ultralytics reads it ignoring what does not decode: 'café' would silently be the class 'caf'."""
    coco8 = ROOT / "data/coco8"
    path = tmp_path / "latin1.yaml"
    path.write_bytes(f"path: {coco8}\ntrain: images/train\nval: images/val\nnames: [café]\n".encode("latin-1"))
    expected = f"'{path}': not UTF-8 text (byte 0xe9 at offset "
    with pytest.raises(ValueError, match=expected.replace("(", r"\(")):
        datasets.load(str(path))
    code, err = run_train(capsys, "--data", path, "--device", "cpu", "--project", tmp_path / "runs")
    assert code == 2 and err.count("\n") == 1 and expected in err, err
    assert not (tmp_path / "runs").exists()
    for mode in ("train", "val"):
        code, err = run_detector(capsys, mode, f"model={WEIGHTS}", f"data={path}", "imgsz=64", "device=cpu",
                                 f"project={tmp_path / 'runs'}")
        assert code == 2 and err.count("\n") == 1 and expected in err, err


# --- The trainer's own loads ----------------------------------------------------------------------------------------
def test_the_final_strip_loads_through_the_restricted_loader(tmp_path):
    """final_eval strips best.pt and last.pt in place: Ultralytics' strip_optimizer unpickles them in full."""
    marker = tmp_path / "created-by-unpickling"
    best = tmp_path / "best.pt"
    torch.save({"model": CreatesAFile(marker), "epoch": 3}, best)
    assert glue.strip_atomically(best) == {}  # skipped with Ultralytics' warning, as a file that does not load
    assert not marker.exists() and best.read_bytes()  # not run, and left as it was
    good = tmp_path / "good.pt"
    shutil.copy(WEIGHTS, good)
    assert glue.strip_atomically(good)["epoch"] == -1  # a checkpoint of model classes strips as before


def test_resuming_a_run_whose_best_pt_runs_code_is_refused_up_front(tmp_path, capsys):
    """The run's final validation would load best.pt: refused before anything is written."""
    last = resumable(tmp_path)
    marker = tmp_path / "created-by-unpickling"
    torch.save({"model": CreatesAFile(marker), "epoch": 0}, last.parent / "best.pt")
    before = sorted(p.name for p in last.parent.parent.rglob("*"))
    code, err = run_train(capsys, "--resume", last)
    assert not marker.exists()
    assert code == 2 and err.count("\n") == 1 and "best.pt': refused" in err and "DETECTOR_TRUST_PICKLE=1" in err, err
    assert sorted(p.name for p in last.parent.parent.rglob("*")) == before

