"""`rep: true` model YAMLs (detector.reparam): 3x3 convs trained with branches that fuse() folds away."""

import copy
import subprocess
import sys

import pytest
import torch
from ultralytics.nn.modules.conv import Conv, RepConv
from ultralytics.nn.tasks import DetectionModel, yaml_model_load

from conftest import ROOT
from detector.assets import MODELS_DIR
from detector.attention import use_stock
from detector.glue import checkpoints


def _rep_model(seed=0):
    torch.manual_seed(seed)
    model = DetectionModel(str(MODELS_DIR / "yolo11n-an-rep.yaml"), nc=3, verbose=False)
    # Every branch its own non-trivial BatchNorm state, so a wrong fold would show.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def test_every_plain_3x3_conv_is_reparameterized():
    model = _rep_model()
    reps = [m for m in model.modules() if isinstance(m, RepConv)]
    assert len(reps) == 31  # n scale: backbone, neck and the Detect head's box branches
    assert sum(m.bn is not None for m in reps) == 12  # identity branch where input and output shapes match
    plain_3x3 = [m for m in model.modules() if type(m) is Conv and m.conv.kernel_size == (3, 3) and m.conv.groups == 1
                 and not any(m is r.conv1 for r in reps)]
    assert not plain_3x3
    assert all(hasattr(model.model[i], "f") and hasattr(model.model[i], "i") for i in (0, 1, 3))  # top-level layers


def test_fuse_folds_the_branches_into_the_default_graph_exactly():
    model = _rep_model()
    x = torch.rand(1, 3, 160, 224)
    with torch.no_grad():
        trained_form = model(x)[0]
        fused = copy.deepcopy(model).fuse(verbose=False)
        torch.testing.assert_close(fused(x)[0], trained_form, rtol=1e-4, atol=1e-3)
    default = DetectionModel(str(MODELS_DIR / "yolo11n-an.yaml"), nc=3, verbose=False).fuse(verbose=False)
    convs = lambda m: [tuple(c.weight.shape) for c in m.modules() if isinstance(c, torch.nn.Conv2d)]  # noqa: E731
    assert convs(fused) == convs(default)  # the deployed model: the default's convolutions, one for one


def test_checkpoint_loads_restricted_and_in_ultralytics_alone(tmp_path):
    """The checkpoint names Ultralytics' classes only: our restricted loader takes it, and so does Ultralytics with
    `detector` not imported. (Copying nn.Module's `type` method onto a RepConv pickled a getattr the loader refuses.)"""
    path = tmp_path / "rep.pt"
    model = copy.deepcopy(_rep_model()).half()
    use_stock(model)  # as our trainer and detector.weights write checkpoints
    torch.save({"model": model, "train_args": {}}, path)
    ckpt, _ = checkpoints.safe_load(str(path), safe_only=True)
    assert sum(isinstance(m, RepConv) for m in ckpt["model"].modules()) == 31
    code = ("import sys; from ultralytics import YOLO; m = YOLO(sys.argv[1]); "
            "assert 'detector' not in sys.modules; m.model.float().fuse(verbose=False); print('ok')")
    r = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, cwd=tmp_path,
                       timeout=300, env={"YOLO_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-2000:]


def test_rep_must_be_true_or_false():
    cfg = yaml_model_load(MODELS_DIR / "yolo11n-an-rep.yaml")
    cfg["rep"] = "yes"
    with pytest.raises(ValueError, match="'rep' must be true or false, not 'yes'"):
        DetectionModel(cfg, nc=3, verbose=False)


def test_train_py_rejects_a_bad_rep_in_one_line(tmp_path):
    bad = tmp_path / "yolo11n-bad.yaml"
    bad.write_text((MODELS_DIR / "yolo11-an-rep.yaml").read_text().replace("rep: true", "rep: 2"))
    r = subprocess.run([sys.executable, str(ROOT / "train.py"), "--model", str(bad), "--epochs", "1",
                        "--project", str(tmp_path / "runs")], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "Traceback" not in r.stderr and "'rep' must be true or false" in r.stderr
    assert not (tmp_path / "runs").exists()
