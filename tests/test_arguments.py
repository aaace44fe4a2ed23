"""Every bad argument of train.py, predict.py and detector.export: one stderr line naming the argument and what it
accepts, exit status 2, no traceback, before any work (nothing loaded, nothing written); a value that is adjusted
gets a warning line.

The tables call each tool's main() in this process (an interpreter start costs seconds); one case per tool runs
the real command.
"""

import subprocess
import sys

import pytest
import torch

from conftest import ROOT
from detector import assets, export
from detector import predicting as predict
from detector import training as train
from test_predict_errors import restore_opencv_logging  # noqa: F401  (autouse: predict.main silences OpenCV)

WEIGHTS = assets.DEFAULT_WEIGHTS
IMAGE = ROOT / "data/coco8/images/val/000000000042.jpg"
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")


def one_line_exit_2(main, argv, capsys) -> str:
    """Run a tool's main; assert exit status 2 and exactly one stderr line; return it."""
    try:
        code = main(argv)
    except SystemExit as e:  # argparse
        code = e.code
    out, err = capsys.readouterr()
    assert code == 2, (code, out, err)
    assert err.count("\n") == 1 and err.endswith("\n"), err
    return err.strip()


@pytest.fixture
def files(tmp_path):
    """Bad files to pass: an empty .pt, a non-checkpoint .pt, an existing file of another kind, an empty folder."""
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "text.pt").write_text("not a checkpoint\n")
    (tmp_path / "model.onnx").write_bytes(b"onnx?")
    (tmp_path / "no_images").mkdir()
    return tmp_path


PREDICT = [
    (["--conf", "1.5"], "argument --conf: 1.5: expected a number in [0, 1]"),
    (["--conf", "high"], "argument --conf: 'high': expected a number in [0, 1]"),
    (["--iou", "-0.1"], "argument --iou: -0.1: expected a number in [0, 1]"),
    (["--imgsz", "0"], "argument --imgsz: 0: expected an integer >= 32"),
    (["--max-det", "0"], "argument --max-det: 0: expected an integer >= 1"),
    (["--classes", "-1"], "argument --classes: -1: expected an integer >= 0"),
    (["--classes", "0", "999"], "argument --classes: 999: expected class ids from 0 to 79 (weights '"),
    (["--name", ""], "argument --name: '': expected a folder name"),
    (["--device", "gpu"], "--device gpu: expected cpu, a CUDA GPU index (0), indices (0,1), cuda or mps"),
    pytest.param(["--device", "cuda"], "--device cuda: no CUDA GPU is available here; use --device cpu", marks=NO_CUDA),
    (["--weights", "{files}/empty.pt"], "weights '{files}/empty.pt': empty file (0 bytes)"),
    (["--weights", "{files}/text.pt"], "weights '{files}/text.pt': not a PyTorch checkpoint, or truncated"),
    (["--weights", "{files}/nope.pt"], "weights '{files}/nope.pt': expected an existing .pt or .onnx file"),
    (["--project", "{files}/empty.pt/runs"], "--project '{files}/empty.pt/runs': '{files}/empty.pt' is a file"),
    (["--attn", "fastest"], "argument --attn: invalid choice: 'fastest'"),
    (["--compile", "fast"], "argument --compile: invalid choice: 'fast'"),
    (["--compile", "default", "--weights", "{files}/model.onnx"],
     "--compile: compiles PyTorch models only (.pt weights), not '{files}/model.onnx'"),
]


@pytest.mark.parametrize("args, expected", PREDICT, ids=lambda a: " ".join(a) if isinstance(a, list) else "")
def test_predict_bad_arguments(args, expected, files, capsys):
    argv = [str(IMAGE), "--device", "cpu", "--project", str(files / "runs"),
            *[a.format(files=files) for a in args]]
    line = one_line_exit_2(predict.main, argv, capsys)
    assert line.startswith("predict.py: error: ") and expected.format(files=files) in line, line
    assert not (files / "runs").exists()


def test_predict_warns_where_it_adjusts_a_value(tmp_path, capsys):
    code = predict.main([str(IMAGE), "--weights", str(WEIGHTS), "--imgsz", "100", "--half", "--device", "cpu",
                         "--project", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert err.splitlines() == [
        "predict.py: warning: --half: fp16 inference needs a CUDA GPU; predicting in fp32 on cpu",
        "predict.py: warning: --imgsz 100 is not a multiple of the model's stride 32: using 128"]


TRAIN = [
    (["--epochs", "0"], "argument --epochs: 0: expected an integer >= 1"),
    (["--epochs", "ten"], "argument --epochs: 'ten': expected an integer >= 1"),
    (["--imgsz", "0"], "argument --imgsz: 0: expected an integer in [32, 4096]"),
    (["--imgsz", "99999"], "argument --imgsz: 99999: expected an integer in [32, 4096]"),
    (["--batch", "0"], "argument --batch: 0: expected an integer >= 1, -1 (AutoBatch) or a fraction in (0, 1)"),
    (["--batch", "2.5"], "argument --batch: 2.5: expected an integer >= 1"),
    (["--workers", "-1"], "argument --workers: -1: expected an integer >= 0"),
    (["--seed", "-1"], "argument --seed: -1: expected an integer in [0, 4294967295]"),
    (["--name", "a/b"], "argument --name: 'a/b': expected a folder name"),
    (["lr0=fast"], "argument 'lr0=fast' is of invalid type str"),
    (["lr0=5"], "argument 'lr0=5' is an invalid value. Valid 'lr0' values are between 0.0 and 1.0"),
    (["patience=-3"], "argument 'patience=-3' is an invalid value. 'patience' must be >= 0"),
    (["plots=maybe"], "argument 'plots=maybe' is of invalid type str. 'plots' must be a bool"),
    (["optimizer=Nope"], "argument 'optimizer=Nope': expected one of Adam, AdamW"),
    (["epochs=3"], "'epochs=...': use --epochs"),
    (["--model", "{files}/model.onnx"], "model '{files}/model.onnx': expected a .yaml architecture or a .pt"),
    (["--model", "{files}/empty.pt"], "model '{files}/empty.pt': empty file (0 bytes)"),
    (["--project", "{files}/empty.pt/runs"], "--project '{files}/empty.pt/runs': '{files}/empty.pt' is a file"),
    (["--device", "gpu"], "--device gpu: expected cpu, a CUDA GPU index (0), indices (0,1), cuda or mps"),
    pytest.param(["--device", "cuda"], "--device cuda: no CUDA GPU is available here; use --device cpu", marks=NO_CUDA),
]


@pytest.mark.parametrize("args, expected", TRAIN, ids=lambda a: " ".join(a) if isinstance(a, list) else "")
def test_train_bad_arguments(args, expected, files, capsys):
    argv = ["--project", str(files / "runs"), *[a.format(files=files) for a in args]]
    line = one_line_exit_2(train.main, argv, capsys)
    assert line.startswith("train.py: error: ") and expected.format(files=files) in line, line
    assert not (files / "runs").exists()


def test_train_warns_where_it_adjusts_a_value(tmp_path, capsys):
    args, extra = train.parse_args(["--batch", "-1", "--imgsz", "100", "--device", "cpu", "--project", str(tmp_path)])
    plan = train.plan(args, extra)
    assert (plan.train_args["batch"], plan.train_args["imgsz"]) == (16, 128)
    assert capsys.readouterr().err.splitlines() == [
        "train.py: warning: --imgsz 100 is not a multiple of the model's stride 32: using 128",
        "train.py: warning: --batch -1: AutoBatch needs a CUDA GPU; training with batch 16 on cpu"]


EXPORT = [
    (["{files}/empty.pt"], "weights '{files}/empty.pt': empty file (0 bytes)"),
    (["{files}/model.onnx"], "weights '{files}/model.onnx': expected an existing .pt file"),
    (["{files}/nope.pt"], "weights '{files}/nope.pt': expected an existing .pt file"),
    (["{weights}", "--imgsz", "0"], "argument --imgsz: 0: expected an integer >= 32"),
    (["{weights}", "--opset", "5"], "argument --opset: 5: expected an integer in [9, "),
    (["{weights}", "--opset", "99"], "argument --opset: 99: expected an integer in [9, "),
    (["{weights}", "--images", "{files}/no_images"], "--images '{files}/no_images': expected a folder with .jpg"),
    pytest.param(["{weights}", "--half"], "--half: Ultralytics exports fp16 ONNX only on a CUDA device", marks=NO_CUDA),
]


@pytest.mark.parametrize("args, expected", EXPORT, ids=lambda a: " ".join(a) if isinstance(a, list) else "")
def test_export_bad_arguments(args, expected, files, capsys):
    argv = [a.format(files=files, weights=WEIGHTS) for a in args]
    line = one_line_exit_2(export.main, argv, capsys)
    assert line.startswith("export: error: ") and expected.format(files=files) in line, line
    assert not list(files.glob("*.onnx*")) or sorted(p.name for p in files.glob("*.onnx")) == ["model.onnx"]


@pytest.mark.parametrize("command", [
    ["predict.py", str(IMAGE), "--conf", "1.5"],
    ["train.py", "--epochs", "0"],
    ["-m", "detector.export", str(WEIGHTS), "--opset", "5"],
])
def test_real_commands_give_one_line_and_exit_2(command):
    if command[0].endswith(".py"):
        command = [str(ROOT / command[0]), *command[1:]]
    r = subprocess.run([sys.executable, *command], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "error: argument" in r.stderr, r.stderr
    assert not r.stdout
