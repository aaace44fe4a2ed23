"""detector.glue.loss.LeanDetectionLoss: Ultralytics' detection loss with the same values and gradients, computed in
chunks without dense per-anchor tensors; and DetectorTrainer training with it."""

import pytest
import torch
from conftest import ROOT
from ultralytics.cfg import get_cfg
from ultralytics.nn.tasks import DetectionModel
from ultralytics.utils.loss import v8DetectionLoss

import detector  # noqa: F401  (registers our layers and heads)
from detector import bench
from detector.glue import loss as lean_loss

DEFAULT = str(ROOT / "models/yolo11n-an.yaml")


def model_and_batch(yaml=DEFAULT, nc=80, images=4, imgsz=192, device="cpu", boxes=True):
    torch.manual_seed(0)
    model = DetectionModel(yaml, nc=nc, verbose=False).to(device).train()
    model.args = get_cfg()
    batch = {"img": torch.randn(images, 3, imgsz, imgsz, device=device),
             **bench.random_targets(images, nc, torch.device(device))}
    if not boxes:
        batch.update(batch_idx=batch["batch_idx"][:0], cls=batch["cls"][:0], bboxes=batch["bboxes"][:0])
    return model, batch


def loss_and_grads(model, batch, criterion, dtype=None):
    model.criterion = criterion
    model.zero_grad(set_to_none=True)
    device = batch["img"].device.type
    with torch.autocast(device, dtype=dtype or torch.float32, enabled=dtype is not None):
        loss = model.loss(batch)[0]
    loss.sum().backward()
    return loss.detach(), [p.grad for p in model.parameters()]


def compare(model, batch, dtype=None):
    stock, stock_grads = loss_and_grads(model, batch, v8DetectionLoss(model), dtype)
    lean, lean_grads = loss_and_grads(model, batch, lean_loss.LeanDetectionLoss(model), dtype)
    return stock, lean, stock_grads, lean_grads


@pytest.mark.parametrize("yaml", [DEFAULT, "yolo11n.yaml"], ids=["default", "YOLO11n"])
@pytest.mark.parametrize("dtype", [None, torch.bfloat16], ids=["fp32", "bf16 autocast"])
def test_same_loss_and_gradients_as_ultralytics(yaml, dtype, monkeypatch):
    """Several assigner chunks (a small CHUNK_ELEMENTS); the loss and every gradient to fp32 rounding (the sums run
    in another order; most gradients come out bit for bit the same)."""
    monkeypatch.setattr(lean_loss, "CHUNK_ELEMENTS", 1 << 15)
    model, batch = model_and_batch(yaml)
    stock, lean, stock_grads, lean_grads = compare(model, batch, dtype)
    assert stock.shape == lean.shape == (3,) and (stock > 0).all()
    torch.testing.assert_close(lean, stock, rtol=2e-5, atol=0)
    assert sum(g is not None for g in stock_grads) > 200
    for g, h in zip(stock_grads, lean_grads):
        assert (g is None) == (h is None)
        if g is not None:
            assert close(g, h)


def close(g, h, rel=1e-4, floor=1e-7):
    """h equals g up to rel of g's largest magnitude, or to `floor` for a gradient that is rounding noise about zero
    (gradients here are 1e-3 to 10): a sum's rounding, not a different loss."""
    return bool((g - h).abs().max() <= rel * g.abs().max() + floor)


def test_assigner_gives_ultralytics_assignment_with_a_score_per_anchor():
    """Labels, boxes, foreground and assigned box of every anchor as Ultralytics' assigner gives them; its
    (b, anchors, nc) scores' one nonzero per anchor as a (b, anchors, 1) score."""
    model, batch = model_and_batch()
    stock = v8DetectionLoss(model)
    with torch.no_grad():
        preds = model(batch["img"])
    captured = {}
    for name, criterion in (("stock", stock), ("lean", lean_loss.LeanDetectionLoss(model))):
        call = criterion.assigner.forward
        criterion.assigner.forward = lambda *a, call=call, name=name, **k: captured.setdefault(name, call(*a, **k))
        criterion(preds, batch)
    (labels, boxes, scores, fg, idx), (labels2, boxes2, scores2, fg2, idx2) = captured["stock"], captured["lean"]
    assert fg.sum() > 50 and torch.equal(fg, fg2) and torch.equal(idx, idx2) and torch.equal(boxes, boxes2)
    assert torch.equal(labels[fg], labels2[fg])
    assert scores2.shape == (*fg.shape, 1) and torch.equal(scores.sum(2, keepdim=True), scores2)
    assert torch.equal(scores.argmax(2)[fg & (scores.sum(2) > 0)], labels2[fg & (scores.sum(2) > 0)])


def test_class_weights_and_an_empty_batch():
    """Ultralytics' per-class weights multiply the class loss; a batch without boxes has only the class loss, and
    every box-branch parameter still gets a (zero) gradient, as with Ultralytics' (DDP needs every parameter used)."""
    model, batch = model_and_batch(nc=3)
    model.class_weights = torch.tensor([0.5, 1.0, 2.0])
    stock, lean, g_stock, g_lean = compare(model, batch)
    torch.testing.assert_close(lean, stock, rtol=2e-5, atol=0)
    for g, h in zip(g_stock, g_lean):
        assert (g is None) == (h is None) and (g is None or close(g, h))

    del model.class_weights
    model, batch = model_and_batch(nc=3, boxes=False)
    stock, lean, g_stock, g_lean = compare(model, batch)
    assert stock[0] == lean[0] == 0 and stock[2] == lean[2] == 0
    torch.testing.assert_close(lean, stock, rtol=2e-5, atol=0)
    assert [g is None for g in g_stock] == [g is None for g in g_lean]


def test_keeps_fewer_bytes_for_the_backward():
    """What autograd saves during the loss beyond the network's outputs: Ultralytics' keeps fp32 copies of the
    (b, anchors, classes) logits and targets and every anchor's box softmax; ours keeps per-anchor labels and scores
    and the foreground's boxes (the logits it keeps are the output itself). At least 10x fewer bytes."""
    model, batch = model_and_batch(imgsz=320, images=2)
    with torch.no_grad():
        preds = model(batch["img"])
    logits = preds["scores"].detach().requires_grad_()
    boxes = preds["boxes"].detach().requires_grad_()
    saved = {}
    for name, criterion in (("stock", v8DetectionLoss(model)), ("lean", lean_loss.LeanDetectionLoss(model))):
        storages = {}

        def pack(t, storages=storages):
            storage = t.untyped_storage()
            if storage.data_ptr() not in (logits.data_ptr(), boxes.data_ptr()):
                storages[storage.data_ptr()] = storage.nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.autocast("cpu", dtype=torch.bfloat16):
            criterion({"boxes": boxes, "scores": logits, "feats": preds["feats"]}, batch)[0].sum()
        saved[name] = sum(storages.values())
    assert saved["lean"] * 10 < saved["stock"], saved


def test_used_where_ultralytics_builds_v8_detection_loss():
    model, _ = model_and_batch()
    assert lean_loss.use_lean_loss(model) and isinstance(model.criterion, lean_loss.LeanDetectionLoss)
    end2end = DetectionModel("yolo26n.yaml", verbose=False)
    end2end.args = get_cfg()
    assert not lean_loss.use_lean_loss(end2end) and getattr(end2end, "criterion", None) is None


@pytest.mark.gpu
def test_same_gradients_on_the_gpu_in_fp16():
    """AMP fp16 on CUDA, the trainer's precision: the loss to fp32 rounding, the gradients as close as two CUDA runs
    of one model (cuBLAS may pick another kernel for the foreground-only box decode's matmul)."""
    model, batch = model_and_batch(images=16, imgsz=640, device="cuda")
    model = model.to(memory_format=torch.channels_last)
    stock, lean, stock_grads, lean_grads = compare(model, batch, torch.float16)
    torch.testing.assert_close(lean, stock, rtol=1e-4, atol=0)
    same = 0
    for g, h in zip(stock_grads, lean_grads):
        if g is not None:
            assert close(g, h, rel=1e-3)
            same += torch.equal(g, h)
    print(f"bitwise equal gradients: {same} of {sum(g is not None for g in stock_grads)}")
