"""Fails loudly when an Ultralytics upgrade breaks what detector.glue relies on."""

import pickle

import pytest
import ultralytics
from ultralytics.nn import tasks
from ultralytics.nn.modules import block

from detector import glue
from detector.glue import registry, trainer
from detector.attention import A2C2f, C2PSA, AreaAttention, PSAttention


def test_installed_ultralytics_is_in_the_tested_range():
    glue.check_contracts()  # raises with the reason otherwise


def test_parse_model_resolves_a2c2f_from_module_globals():
    assert tasks.A2C2f is A2C2f, "register() did not take effect"
    model = tasks.DetectionModel("yolo12n.yaml", verbose=False)
    layer = next(m for m in model.model if type(m) is A2C2f)
    # channels and repeats were filled in by parse_model, as for Ultralytics' own class
    assert layer.cv1.conv.in_channels == 128 and layer.cv2.conv.out_channels == 128 and len(layer.m) == 2


def test_parse_model_resolves_c2psa_from_module_globals():
    """YOLO11's YAMLs (and ours, whose backbone is YOLO11's) build our C2PSA: its attention on the kernel policy."""
    assert tasks.C2PSA is C2PSA, "register() did not take effect"
    model = tasks.DetectionModel("yolo11n.yaml", verbose=False)
    layer = model.model[10]
    assert type(layer) is C2PSA and [type(b.attn) for b in layer.m] == [PSAttention]
    assert layer.cv1.conv.in_channels == 256 and layer.cv2.conv.out_channels == 256  # parse_model filled them in
    with registry.stock_ultralytics():
        stock = tasks.DetectionModel("yolo11n.yaml", verbose=False)
    assert type(stock.model[10]) is block.C2PSA and type(stock.model[10].m[0].attn) is block.Attention
    assert tasks.C2PSA is C2PSA  # restored on leaving the block


def test_contract_check_notices_a_parent_that_stops_building_our_layer(monkeypatch):
    """If an upgrade made PSABlock build something other than Attention, our C2PSA would silently stay on matmul."""
    class Renamed(block.Attention):
        pass

    monkeypatch.setattr(block, "Attention", Renamed)
    with pytest.raises(RuntimeError, match="block.Attention is not the layer"):
        registry.check_contract()


def test_our_classes_subclass_ultralytics_and_pickle_by_stable_paths():
    assert issubclass(A2C2f, block.A2C2f) and issubclass(AreaAttention, block.AAttn)
    assert (A2C2f.__module__, AreaAttention.__module__) == ("detector.attention", "detector.attention")
    layer = A2C2f(64, 64, 1, True, 4)
    data = pickle.dumps(layer)
    assert b"detector.attention" in data and b"A2C2f" in data and b"AreaAttention" in data
    assert type(pickle.loads(data).m[0][0].attn) is AreaAttention


def test_version_outside_range_is_refused(monkeypatch):
    monkeypatch.setattr(ultralytics, "__version__", "8.5.0")
    with pytest.raises(RuntimeError, match="outside the tested range"):
        registry.check_contract()


def test_ddp_workers_import_our_trainer_module():
    """Ultralytics' DDP launcher re-imports the trainer by module path; ours must register our layers there."""
    assert trainer.DetectorTrainer.__module__ == "detector.glue.trainer"


def test_stock_and_sdpa_classes_share_every_parameter_and_output():
    """Checkpoints record the Ultralytics base of each of our classes (attention.STOCK_BASE); that is only sound if
    ours add no parameters and compute the same function."""
    import torch
    from ultralytics.nn.tasks import DetectionModel

    from detector.attention import STOCK_BASE, use_sdpa, use_stock

    assert all(issubclass(ours, base) for ours, base in STOCK_BASE.items())
    torch.manual_seed(0)
    model = DetectionModel("yolo12n.yaml", verbose=False).eval()
    x = torch.rand(1, 3, 128, 160)
    ours = {k: v.shape for k, v in model.state_dict().items()}
    with torch.no_grad():
        expected = model(x)[0]
        switched = use_stock(model)
        assert switched == 13 and not any(type(m) in STOCK_BASE for m in model.modules())
        assert {k: v.shape for k, v in model.state_dict().items()} == ours
        torch.testing.assert_close(model(x)[0], expected, rtol=1e-4, atol=1e-3)
        assert use_sdpa(model) == switched and type(model.model[6]).__module__ == "detector.attention"


@pytest.mark.parametrize("module, target, name", [
    ("checkpoints", tasks, "load_checkpoint"),  # no longer loads through torch_safe_load
    ("names", "ultralytics.utils.checks", "check_yaml"),  # no longer finds files through check_file
    ("cli", "ultralytics.cfg", "entrypoint"),  # no longer reads ARGV / imports YOLO
    ("trainer", "ultralytics.engine.trainer", "deepcopy"),  # save_model's copy no longer made by this name
    ("registry", "detector.glue.registry", "STOCK_PARSE"),  # parse_model without a restricted, eval-free path
    ("data", "ultralytics.data.utils", "check_det_dataset"),  # no longer reads dataset YAMLs through YAML.load
])
def test_contract_checks_fail_loudly_when_ultralytics_changes(module, target, name, monkeypatch):
    import importlib

    monkeypatch.setattr(importlib.import_module(target) if isinstance(target, str) else target, name,
                        lambda *args, **kwargs: None)
    with pytest.raises(RuntimeError, match=f"detector.glue.{module} must be updated"):
        importlib.import_module(f"detector.glue.{module}").check_contract()


def test_trainer_contract_notices_save_metrics_writing_elsewhere(monkeypatch):
    """DetectorTrainer.save_metrics makes results.csv rows atomic by pointing self.csv at a temporary file while
    Ultralytics' save_metrics appends: a save_metrics that wrote anywhere else would bypass that, silently."""
    from ultralytics.engine.trainer import BaseTrainer

    def save_metrics(self, metrics):
        with open(self.save_dir / "results.csv", "a") as f:  # not through self.csv
            f.write(",".join(map(str, metrics.values())) + "\n")

    monkeypatch.setattr(BaseTrainer, "save_metrics", save_metrics)
    with pytest.raises(RuntimeError, match=r"BaseTrainer\.save_metrics writes results\.csv through self\.csv"):
        trainer.check_contract()


def test_trainer_contract_notices_a_strip_that_no_longer_loads_through_torch_load(monkeypatch):
    """DetectorTrainer's final strip loads through the restricted loader by rebinding torch_utils.torch_load."""
    from ultralytics.utils import torch_utils

    monkeypatch.delattr(torch_utils, "torch_load")
    with pytest.raises(RuntimeError, match="strip_optimizer loads with torch_load"):
        trainer.check_contract()
