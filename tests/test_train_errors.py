"""Bad input to train.py: a clear one-line error before anything is written, or a warning naming file and line.

Most cases call `train.main()` in this process (an interpreter start costs seconds on 2 cores); one runs the real
CLI to check the exit status and that nothing but the one line reaches stderr.
"""

import shutil
import subprocess
import sys

import pytest
import torch
import yaml

from detector import training as train
from conftest import ROOT
from detector import datasets, labels
from detector.glue import trainer as glue

COCO8 = ROOT / "data/coco8"


def run_main(capsys, *args: str) -> tuple[int, str]:
    rc = train.main([*args])
    return rc, capsys.readouterr().err


# --- label lines, one by one ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("line, problem", [
    ("0 0.5 0.5 0.2 0.2", None),
    ("2.0 0.5 0.5 0.2 0.2", None),  # Ultralytics accepts an integer written as a float
    ("0 0.1 0.1 0.4 0.1 0.4 0.4", None),  # a polygon: Ultralytics trains on its box
    ("0 1.005 0.5 0.2 0.2", None),  # within Ultralytics' 1% rounding tolerance
    ("0 0.5 0.5 0.2", "4 values, expected 5"),
    ("0 0.5 0.5 0.2 0.2 0.3", "6 values, expected 5"),
    ("3 0.5 0.5 0.2 0.2", "class id 3 outside names (0-2)"),
    ("-1 0.5 0.5 0.2 0.2", "class id '-1' is not a non-negative integer"),
    ("1.5 0.5 0.5 0.2 0.2", "class id '1.5' is not a non-negative integer"),
    ("0 1.5 0.5 0.2 0.2", "coordinate 1.5 outside [0, 1]"),
    ("0 0.5 -0.2 0.2 0.2", "coordinate -0.2 outside [0, 1]"),
    ("0 0.5 0.5 -0.005 0.2", "negative width or height"),
    ("person 0.5 0.5 0.2 0.2", "'person' is not a finite number"),
    ("0 nan 0.5 0.2 0.2", "'nan' is not a finite number"),
])
def test_each_label_line_is_judged_on_its_own(line, problem):
    kept, problems = labels.check_label_text(f"{line}\n", nc=3)
    if problem is None:
        assert kept == [line] and not problems
    else:
        assert not kept and len(problems) == 1
        assert problems[0][0] == 1 and problems[0][1].startswith(problem), problems


def test_line_numbers_count_blank_lines_and_kinds_do_not_mix():
    text = "\n0 0.5 0.5 0.1 0.1\n\n0 0.1 0.1 0.4 0.1 0.4 0.4\n1 0.2 0.2 0.1 0.1\n"
    kept, problems = labels.check_label_text(text, nc=3)
    assert kept == ["0 0.5 0.5 0.1 0.1", "1 0.2 0.2 0.1 0.1"]
    assert problems == [(4, "a polygon in a file of boxes")]  # Ultralytics rejects files that mix the two


def test_single_class_accepts_any_class_id(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("7 0.5 0.5 0.1 0.1\n")
    assert labels.check_label_file(f, nc=None).kept == ["7 0.5 0.5 0.1 0.1"]
    assert not labels.check_label_file(f, nc=3).usable  # every line bad: skip the image, not a background


# --- a dataset with bad labels -------------------------------------------------------------------------------------
GOOD, BAD = "0 0.5 0.5 0.2 0.2", "0 0.5 0.5 0.2"


@pytest.fixture(scope="module")
def bad_dataset(tmp_path_factory):
    """coco8's images with: one label file with bad lines among good ones, one with only bad lines, one image without
    a label file, one empty label file (val). Classes: 3 names."""
    root = tmp_path_factory.mktemp("bad")
    for split in ("train", "val"):
        shutil.copytree(COCO8 / "images" / split, root / "images" / split)
        (root / "labels" / split).mkdir(parents=True)
    train_images = sorted(p.stem for p in (root / "images/train").iterdir())
    val_images = sorted(p.stem for p in (root / "images/val").iterdir())
    write = lambda split, stem, text: (root / "labels" / split / f"{stem}.txt").write_text(text)  # noqa: E731
    write("train", train_images[0], f"{GOOD}\n{BAD}\n7 0.5 0.5 0.1 0.1\n\n1 0.3 0.3 0.1 0.1\n0 1.7 0.5 0.1 0.1\n")
    write("train", train_images[1], f"{BAD}\n")  # nothing good left: image skipped
    write("train", train_images[2], f"{GOOD}\n2 0.2 0.2 0.1 0.1\n")
    # train_images[3]: no label file, a background
    for stem in val_images[:-1]:
        write("val", stem, f"{GOOD}\n")
    write("val", val_images[-1], "")  # empty: a background
    spec = {"path": str(root), "train": "images/train", "val": "images/val", "names": {0: "a", 1: "b", 2: "c"}}
    (root / "data.yaml").write_text(yaml.safe_dump(spec))
    return root, train_images


def test_preflight_reports_bad_lines_and_backgrounds(bad_dataset):
    root, images = bad_dataset
    train_report, val_report = datasets.preflight(str(root / "data.yaml"))
    first = root / "labels/train" / f"{images[0]}.txt"
    assert train_report.warnings() == [
        f"{first}:2: 4 values, expected 5 (class x y w h) or a polygon (class x1 y1 x2 y2 x3 y3 ...), line skipped",
        f"{first}:3: class id 7 outside names (0-2), line skipped",
        f"{first}:6: coordinate 1.7 outside [0, 1], line skipped",
        f"{root / 'labels/train' / images[1]}.txt:1: 4 values, expected 5 (class x y w h) or a polygon "
        "(class x1 y1 x2 y2 x3 y3 ...), line skipped",
        f"{root / 'labels/train' / images[1]}.txt: no good label line left, image skipped",
    ]
    assert train_report.info() == ("train: 4 images, 1 background (1 without a label file, 0 with an empty one), "
                                   "4 bad label lines skipped in 2 files, 1 image skipped")
    assert val_report.info() == "val: 4 images, 1 background (0 without a label file, 1 with an empty one)"
    assert not val_report.warnings()


def test_training_keeps_the_good_lines_of_a_file_with_bad_ones(bad_dataset, tmp_path):
    """The dataset DetectorTrainer builds: Ultralytics alone would drop images[0] whole."""
    root, images = bad_dataset
    trainer = glue.DetectorTrainer(overrides=dict(
        model=str(ROOT / "models/yolo11n-an.yaml"), data=str(root / "data.yaml"), imgsz=64, device="cpu",
        project=str(tmp_path), name="ds", plots=False))
    trainer.setup_model()
    dataset = trainer.build_dataset(trainer.data["train"], mode="val", batch=4)
    by_stem = {lb["im_file"].rsplit("/", 1)[-1].split(".")[0]: lb for lb in dataset.labels}
    assert sorted(by_stem) == sorted([images[0], images[2], images[3]])  # images[1] had no good line left
    assert by_stem[images[0]]["cls"].ravel().tolist() == [0, 1]  # lines 1 and 5
    assert by_stem[images[0]]["bboxes"].tolist()[1] == pytest.approx([0.3, 0.3, 0.1, 0.1])
    assert by_stem[images[2]]["cls"].ravel().tolist() == [0, 2]
    assert len(by_stem[images[3]]["cls"]) == 0  # background
    assert type(dataset) is glue.LineFilteredDataset
    from ultralytics.data import build

    assert build.YOLODataset is not glue.LineFilteredDataset  # only our trainer builds it


@pytest.mark.slow
def test_train_py_warns_with_file_and_line_and_trains(bad_dataset, tmp_path):
    """The real CLI on the bad dataset: warnings on stderr, training goes on (1 epoch)."""
    root, images = bad_dataset
    cmd = [sys.executable, str(ROOT / "train.py"), "--data", str(root / "data.yaml"), "--epochs", "1", "--imgsz", "64",
           "--batch", "4", "--workers", "0", "--device", "cpu", "--project", str(tmp_path), "--name", "bad",
           "plots=False"]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    first = root / "labels/train" / f"{images[0]}.txt"
    assert f"train.py: warning: {first}:3: class id 7 outside names (0-2), line skipped\n" in r.stderr
    assert "train.py: train: 4 images, 1 background" in r.stderr
    assert (tmp_path / "bad/weights/best.pt").exists()


# --- errors before anything is written -----------------------------------------------------------------------------
def data_yaml(tmp_path, **spec) -> str:
    spec.setdefault("path", str(COCO8))
    f = tmp_path / "data.yaml"
    f.write_text(yaml.safe_dump({k: v for k, v in spec.items() if v is not None}))
    return str(f)


@pytest.mark.parametrize("spec, expected", [
    (dict(train="images/train", val="images/nowhere", names=["a"]), "val images not found at"),
    (dict(train="images/train", val="images/val"), "missing 'names:' key"),
    (dict(train="images/train", val="images/val", names=["a", "b"], nc=3), "'names' length 2 and 'nc: 3' must match"),
    (dict(val="images/val", names=["a"]), "missing 'train:' key"),
    (dict(train="labels/train", val="images/val", names=["a"]), "no images in the train split"),
])
def test_bad_dataset_yaml_stops_before_anything_is_written(capsys, tmp_path, spec, expected):
    rc, err = run_main(capsys, "--data", data_yaml(tmp_path, **spec), "--project", str(tmp_path / "runs"))
    assert rc == 2 and err.startswith("train.py: error: data ") and expected in err and err.count("\n") == 1, err
    assert not (tmp_path / "runs").exists()


def test_images_without_any_label_file_stop_before_anything_is_written(capsys, tmp_path):
    shutil.copytree(COCO8 / "images", tmp_path / "ds/images")  # labels/ forgotten
    yaml_file = data_yaml(tmp_path, path=str(tmp_path / "ds"), train="images/train", val="images/val", names=["a"])
    rc, err = run_main(capsys, "--data", yaml_file, "--project", str(tmp_path / "runs"))
    assert rc == 2 and "none of the 4 train images has a label file (the first would be " in err, err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("args, expected", [
    (["--data", "missing.yaml"], "data 'missing.yaml': no such file"),
    (["--model", "yolo11q-nope.yaml"], "model 'yolo11q-nope.yaml': no such file"),
    (["--model", "missing.pt"], "model 'missing.pt': weights file not found"),
    (["--model", "weights.bin"], "expected a .yaml architecture or a .pt checkpoint"),
    (["--attn", "efficient", "--device", "cpu"], "attention kernel 'efficient' (from DETECTOR_ATTN) cannot run"),
    (["--precision", "bf16", "--device", "cpu"], "--precision bf16 needs a CUDA GPU"),
    (["--resume", "missing.pt"], "model 'missing.pt': weights file not found"),
])
def test_bad_arguments_stop_before_anything_is_written(capsys, tmp_path, args, expected):
    rc, err = run_main(capsys, *args, "--project", str(tmp_path / "runs"))
    assert rc == 2 and err == f"train.py: error: {err.split('error: ', 1)[1]}" and expected in err, err
    assert err.count("\n") == 1 and not (tmp_path / "runs").exists()


def test_unloadable_checkpoint_or_model_yaml(capsys, tmp_path):
    truncated = tmp_path / "last.pt"
    truncated.write_bytes(b"PK\x03\x04" + bytes(1000))  # the start of a zip archive, as torch.save writes
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("nc: 3\nbackbone: [[-1, 1, NoSuchLayer, [64]]]\nhead: []\n")
    for args, expected in [
        (["--resume", str(truncated)], f"model '{truncated}': not a PyTorch checkpoint, or truncated"),
        (["--model", str(truncated)], f"model '{truncated}': not a PyTorch checkpoint, or truncated"),
        (["--model", str(bad_yaml)], f"model '{bad_yaml}': cannot build it: KeyError: 'NoSuchLayer'"),
    ]:
        rc, err = run_main(capsys, *args, "--device", "cpu", "--project", str(tmp_path / "runs"))
        assert rc == 2 and err.startswith(f"train.py: error: {expected}") and err.count("\n") == 1, err
    assert not (tmp_path / "runs").exists()


def test_unknown_kernel_from_the_environment(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTOR_ATTN", "fastest")
    rc, err = run_main(capsys, "--device", "cpu", "--project", str(tmp_path / "runs"))
    assert rc == 2 and "DETECTOR_ATTN: unknown kernel 'fastest'; choose one of auto, flash" in err, err
    assert not (tmp_path / "runs").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_device_without_a_gpu(capsys, tmp_path):
    rc, err = run_main(capsys, "--device", "0", "--project", str(tmp_path / "runs"))
    assert rc == 2 and err == "train.py: error: --device 0: no CUDA GPU is available here; use --device cpu\n"


@pytest.mark.parametrize("args, expected", [
    (["--attn", "fastest"], "argument --attn: invalid choice: 'fastest'"),
    (["--precision", "fp8"], "argument --precision: invalid choice: 'fp8'"),
    (["epochs=3"], "'epochs=...': use --epochs"),
    (["amp=bf16"], "'amp=...': use --precision"),
])
def test_argument_errors_are_usage_errors(capsys, args, expected):
    with pytest.raises(SystemExit) as e:
        train.parse_args(args)
    assert e.value.code == 2 and expected in capsys.readouterr().err


def test_real_cli_exit_status_and_single_line(tmp_path):
    """Through a real interpreter: exit status 2, one line on stderr, no traceback, no run folder."""
    cmd = [sys.executable, str(ROOT / "train.py"), "--model", "nope.yaml", "--project", str(tmp_path / "r")]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 2 and r.stderr.startswith("train.py: error: model 'nope.yaml'") and r.stderr.count("\n") == 1
    assert not (tmp_path / "r").exists()
