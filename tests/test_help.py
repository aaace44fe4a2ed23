"""--help is instant and shows the defaults: `import detector` loads neither torch nor Ultralytics, and our hooks go
into Ultralytics when it is imported (before or after us)."""

import re
import subprocess
import sys

import pytest

from conftest import ROOT
import detector


def run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, cwd=ROOT, timeout=120)


@pytest.mark.parametrize("command", [["train.py"], ["-m", "detector.export"]], ids=" ".join)
def test_help_loads_neither_torch_nor_ultralytics(command):
    """What makes --help instant (about 0.1 s on the 2-core machine, against 2 s with torch and Ultralytics)."""
    r = run("-X", "importtime", *command, "--help")
    imported = {line.split("|")[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}
    assert r.returncode == 0 and "usage:" in r.stdout, r.stderr[-2000:]
    assert not {"torch", "ultralytics", "numpy"} & imported, sorted({"torch", "ultralytics", "numpy"} & imported)


def test_train_help_shows_the_defaults():
    out = " ".join(run("train.py", "--help").stdout.split())  # argparse wraps lines
    for option, default in [("--epochs", "10"), ("--imgsz", "640"), ("--batch", "16"), ("--workers", "8"),
                            ("--precision", "fp16"), ("--name", "train"),
                            ("--data", "coco8.yaml"), ("--seed", "0")]:
        assert re.search(rf"{option} .*?\(default: {re.escape(default)}\)", out), (option, out)
    assert re.search(r"--project PROJECT .*?default runs/detect", out), out


def test_import_detector_hooks_ultralytics_when_it_is_imported_later():
    code = ("import sys, detector; assert 'torch' not in sys.modules and 'ultralytics' not in sys.modules; "
            "from ultralytics import YOLO; from ultralytics.nn import tasks; from detector.glue import registry; "
            "assert tasks.parse_model is registry._parse_model; "
            "print(type(YOLO('yolo11n-an.yaml').model.model[-1]).__name__)")
    r = run("-c", code)
    assert r.returncode == 0 and r.stdout.strip() == "SubgridThinDetect", r.stderr[-2000:]


@pytest.mark.parametrize("name", sorted(detector.WITHOUT_ULTRALYTICS))
def test_modules_said_to_import_without_ultralytics_do(name):
    """Those are imported before our hooks are in; any other of our modules, after (see detector/__init__.py)."""
    r = run("-c", f"import sys, detector.{name}; assert 'ultralytics' not in sys.modules, 'imports ultralytics'")
    assert r.returncode == 0, r.stderr[-2000:]
