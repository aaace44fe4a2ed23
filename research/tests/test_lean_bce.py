"""research/scripts/lean_bce.py: the class loss that keeps its low-precision inputs gives Ultralytics' values and
gradients bit for bit, and autograd keeps fewer bytes for it."""

import sys

import pytest
import torch
from torch import nn

from conftest import ROOT

sys.path.insert(0, str(ROOT / "research/scripts"))
import lean_bce  # noqa: E402


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_same_loss_and_gradient_with_fewer_saved_bytes(dtype):
    torch.manual_seed(0)
    logits = (torch.randn(2, 300, 80) * 4).to(dtype)
    target = torch.rand(2, 300, 80).to(dtype) * (torch.rand(2, 300, 80) < 0.05)  # mostly zeros, as assigned scores
    results = []
    for bce in (nn.BCEWithLogitsLoss(reduction="none"), lean_bce.LeanBCE()):
        x = logits.clone().requires_grad_()

        def loss(bce=bce, x=x):  # as v8DetectionLoss: low-precision inputs, fp32 op (what autocast does to this op)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return bce(x, target).sum()

        value, saved = lean_bce.saved_bytes(loss)
        value.backward()
        results.append((value, x.grad, saved))
    (ref, ref_grad, ref_saved), (got, got_grad, got_saved) = results
    assert torch.equal(ref, got) and ref_grad.dtype == got_grad.dtype == dtype and torch.equal(ref_grad, got_grad)
    assert got_saved * 2 == ref_saved  # the two inputs in 2 bytes a number instead of 4
