"""scripts/yolo12_cost.py: YOLO12n per attention kernel and with its attention layers' work removed, in one table."""

import subprocess
import sys

from conftest import ROOT

SCRIPT = ROOT / "research/scripts/yolo12_cost.py"


def test_prints_every_variant_with_ratios():
    r = subprocess.run([sys.executable, str(SCRIPT), "--small", "--rounds", "1", "--iters", "1"], capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    rows = [line for line in r.stdout.splitlines() if line.startswith("| YOLO")]
    names = [row.split("|")[1].strip() for row in rows]
    assert names == ["YOLO11n", "YOLO12n stock", "YOLO12n ours, flash", "YOLO12n ours, matmul",
                     "YOLO12n ours, attention layers removed"]
    assert rows[0].count("1.00x") == 3 and rows[1].count("1.000x") == 3  # each baseline against itself


def test_removing_attention_returns_the_input_and_the_switch_restores_the_kernel(monkeypatch):
    sys.path.insert(0, str(ROOT / "research/scripts"))
    import torch

    import yolo12_cost
    from detector import attention, kernels

    monkeypatch.setattr(attention.AreaAttention, "forward", attention.AreaAttention.forward)  # undone after the test
    monkeypatch.delenv(kernels.ENV_VAR, raising=False)
    layer = attention.AreaAttention(64, 2, 4).eval()
    x = torch.randn(1, 64, 8, 8)
    yolo12_cost.Switch.forward = attention.AreaAttention.forward
    yolo12_cost.Switch.install()
    yolo12_cost.Switch.set(yolo12_cost.REMOVED)
    assert layer(x) is x
    yolo12_cost.Switch.set("matmul")
    assert kernels.requested_kernel() == ("matmul", kernels.ENV_VAR) and not torch.equal(layer(x), x)
    yolo12_cost.Switch.set("")
    assert kernels.requested_kernel()[0] == "auto"
