"""Every model YAML builds at every scale with its strides (8/16/32 unless STRIDES says otherwise); YOLO12's own
YAMLs build on our attention."""

from pathlib import Path

import pytest
import torch
import yaml
from ultralytics.nn.tasks import DetectionModel

from detector.assets import MODELS_DIR
from detector.attention import A2C2f, AreaAttention

YAMLS = sorted(MODELS_DIR.glob("*.yaml"))
# Every (YAML, scale) the YAML declares.
SCALED = [(p, s) for p in YAMLS for s in yaml.safe_load(p.read_text())["scales"]]


# Designs whose detection levels are not YOLO11's P3/P4/P5 (the rest: strides 8/16/32)
STRIDES = {
    "yolo11-an-p2t-r8": [4.0, 8.0, 16.0],  # levels shifted down one octave: P2/P3/P4
    "yolo11-an": [4.0, 16.0, 32.0],  # the default: P3 predicting on a stride-4 sub-grid (SubgridThinDetect)
}


def scaled_name(path: Path, scale: str) -> Path:
    stem = path.stem  # yolo11-an -> yolo11n-an
    head, sep, tail = stem.partition("-")
    return path.with_name(f"{head}{scale}{sep}{tail}{path.suffix}")


def build(cfg) -> DetectionModel:
    return DetectionModel(str(cfg), verbose=False)


@pytest.mark.parametrize(("yaml_path", "scale"), SCALED, ids=[f"{p.stem}-{s}" for p, s in SCALED])
def test_our_yamls_build_at_every_scale(yaml_path, scale):
    model = build(scaled_name(yaml_path, scale))
    assert model.yaml["scale"] == scale
    strides = STRIDES.get(yaml_path.stem, [8.0, 16.0, 32.0])
    assert model.stride.tolist() == strides
    n_params = sum(p.numel() for p in model.parameters())
    n_attn = sum(isinstance(m, AreaAttention) for m in model.modules())
    print(f"{yaml_path.stem} scale {scale}: {n_params:,} parameters, {n_attn} SDPA attention layers")
    assert n_attn > 0 and not any(type(m).__name__ in ("AAttn", "Attention") for m in model.modules())  # all ours
    with torch.no_grad():
        model.eval()
        preds = model(torch.zeros(1, 3, 96, 128))[0]
    assert preds.shape[1] == 4 + model.yaml["nc"]


def test_scales_grow():
    sizes = [sum(p.numel() for p in build(scaled_name(YAMLS[0], s)).parameters()) for s in "nsm"]
    assert sizes[0] < sizes[1] < sizes[2]


@pytest.mark.parametrize("name", ["yolo12n.yaml", "yolo12s.yaml"])
def test_yolo12_yamls_build_with_sdpa_attention(name):
    model = build(name)
    assert model.stride.tolist() == [8.0, 16.0, 32.0]
    assert sum(isinstance(m, A2C2f) for m in model.modules()) == 5  # 2 in the backbone, 3 in the head
    assert sum(isinstance(m, AreaAttention) for m in model.modules()) == 8
