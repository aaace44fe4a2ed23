"""The package as a user installs it: a wheel built from this checkout, installed into an empty folder, run from a
folder with no checkout on the path. Model YAMLs, bundled data and shipped weights must come with it."""

import importlib.metadata
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow
SOURCES = ("detector", "models", "data", "weights", "pyproject.toml", "README.md", "LICENSE")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(site folder holding only the installed wheel, a working folder outside the checkout)."""
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:  # a copy: the build writes build/ and *.egg-info next to its sources
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy
        copy(ROOT / name, src / name, **({"ignore": shutil.ignore_patterns("__pycache__")} if copy is shutil.copytree
                                         else {}))
    dist, site = tmp_path_factory.mktemp("dist"), tmp_path_factory.mktemp("site")
    # The venv's setuptools where it can build pyproject.toml (77+ reads its SPDX licence string), offline; else pip
    # fetches the build requirement.
    isolation = ["--no-build-isolation"] if setuptools_version() >= (77,) else []
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "--no-deps", *isolation, "-w", str(dist), str(src)],
                   check=True, capture_output=True, text=True, timeout=600)
    wheel = next(dist.glob("detector-*.whl"))
    subprocess.run([*pip, "install", "--no-deps", "--no-index", "--target", str(site), str(wheel)], check=True,
                   capture_output=True, text=True, timeout=600)
    work = tmp_path_factory.mktemp("work")
    shutil.copy(ROOT / "data/coco8/images/val/000000000042.jpg", work / "img.jpg")
    return site, work


def setuptools_version() -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in importlib.metadata.version("setuptools").split(".")[:2])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return ()


def run(installed, *args, timeout=600):
    site, work = installed
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("PYTEST")}  # as a user runs it
    env |= {"PYTHONPATH": str(site), "YOLO_OFFLINE": "1"}
    r = subprocess.run(args, cwd=work, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r.stdout + r.stderr


def test_wheel_holds_models_data_weights_and_glue(installed):
    site, _ = installed
    package = site / "detector"
    assert (package / "glue" / "registry.py").is_file()
    assert {p.name for p in (package / "models").glob("*.yaml")} == {p.name for p in (ROOT / "models").glob("*.yaml")}
    assert {p.name for p in (package / "weights").glob("*.pt")} == {p.name for p in (ROOT / "weights").glob("*.pt")}
    for dataset in ("coco8", "coco128", "hardhat8"):
        assert (package / "data" / f"{dataset}.yaml").is_file()
        images = sorted(p.relative_to(ROOT / "data") for p in (ROOT / "data" / dataset / "images").rglob("*.jpg"))
        assert images and all((package / "data" / p).is_file() for p in images)


def test_python_api_builds_our_yaml_by_bare_name_from_the_installed_package(installed):
    site, _ = installed
    out = run(installed, sys.executable, "-c", "import detector; from ultralytics import YOLO; print(detector.__file__); "
              "print(type(YOLO('yolo11n-an.yaml').model.model[-1]).__name__)")
    assert out.splitlines()[0] == str(site / "detector" / "__init__.py")  # not the checkout
    assert "SubgridThinDetect" in out


def test_detector_command_predicts_trains_and_exports_offline(installed):
    site, work = installed
    command = [str(site / "bin" / "detector")]
    runs = f"project={work / 'runs'}"  # not Ultralytics' settings' runs_dir, which belongs to this machine's user
    out = run(installed, *command, "predict", "source=img.jpg", runs)  # no model=: the shipped default weights
    assert "img.jpg" in out and list((work / "runs").rglob("img.jpg"))
    out = run(installed, *command, "train", "data=coco8.yaml", "epochs=1", "imgsz=64", "batch=4", "workers=0",
              "device=cpu", "plots=False", runs)
    best = next((work / "runs").rglob("best.pt"))
    out = run(installed, *command, "export", f"model={best}", "format=onnx", "imgsz=64")
    assert best.with_suffix(".onnx").is_file(), out
