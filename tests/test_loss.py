"""detector.glue.loss.LeanDetectionLoss: Ultralytics' detection loss with the same values and gradients, computed in
chunks without dense per-anchor tensors; its assignment (detector.glue.assigner) against Ultralytics' assigner."""

import copy
from types import SimpleNamespace

import pytest
import torch
from conftest import ROOT
from ultralytics.cfg import get_cfg
from ultralytics.nn.tasks import DetectionModel
from ultralytics.utils.loss import v8DetectionLoss
from ultralytics.utils.tal import make_anchors

import detector  # noqa: F401  (registers our layers and heads)
from detector import bench
from detector.glue import assigner as lean_assigner
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
    """Several class-loss chunks and assigner passes (small CHUNK_ELEMENTS, CANDIDATES_PER_PASS); the loss and every
    gradient to fp32 rounding (the sums run in another order; most gradients come out bit for bit the same)."""
    monkeypatch.setattr(lean_loss, "CHUNK_ELEMENTS", 1 << 15)
    monkeypatch.setattr(lean_assigner, "CANDIDATES_PER_PASS", 1 << 10)
    monkeypatch.setattr(lean_assigner, "DECODE_SLOTS", 1 << 8)
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


@pytest.mark.parametrize("yaml", [DEFAULT, "yolo11n.yaml"], ids=["default", "YOLO11n"])
@pytest.mark.parametrize("per_pass, per_decode", [(1 << 22, 1 << 22), (1 << 22, 1 << 8), (1 << 9, 1 << 22)],
                         ids=["one pass", "one pass, decoded in parts", "a pass per image"])
def test_assignment_is_ultralytics_assigners(yaml, per_pass, per_decode, monkeypatch):
    """Every anchor's foreground flag, box index, target box, score and (foreground) label as Ultralytics'
    TaskAlignedAssigner gives them, over the model's own predictions (many anchors of metric zero, boxes sharing
    anchors); the (b, anchors, nc) one-hot scores' one nonzero per anchor as a (b, anchors) score."""
    monkeypatch.setattr(lean_assigner, "CANDIDATES_PER_PASS", per_pass)
    monkeypatch.setattr(lean_assigner, "DECODE_SLOTS", per_decode)
    model, batch = model_and_batch(yaml, images=6)
    criterion = v8DetectionLoss(model)
    with torch.no_grad():
        preds = model(batch["img"])
    captured = {}
    call = criterion.assigner.forward
    criterion.assigner.forward = lambda *a, **k: captured.setdefault("stock", call(*a, **k))
    criterion(preds, batch)
    labels, boxes, scores, fg, idx = captured["stock"]

    anchor_points, stride_tensor = make_anchors(preds["feats"], criterion.stride, 0.5)
    imgsz = torch.tensor(preds["feats"][0].shape[2:], dtype=torch.float32) * criterion.stride[0]
    targets = torch.cat((batch["batch_idx"].view(-1, 1), batch["cls"].view(-1, 1), batch["bboxes"]), 1)
    gt_labels, gt_bboxes = criterion.preprocess(targets, 6, scale_tensor=imgsz[[1, 0, 1, 0]]).split((1, 4), 2)
    mask_gt = gt_bboxes.sum(2, keepdim=True).gt_(0.0)
    levels = [tuple(f.shape[2:]) for f in preds["feats"]]
    labels2, boxes2, scores2, fg2, idx2 = lean_assigner.assign(
        criterion.assigner, criterion.bbox_decode, preds["scores"].permute(0, 2, 1), preds["boxes"].permute(0, 2, 1),
        anchor_points, stride_tensor, levels, criterion.stride.tolist(), gt_labels, gt_bboxes, mask_gt, gt_bboxes)
    assert fg.sum() > 50 and torch.equal(fg, fg2) and torch.equal(idx, idx2) and torch.equal(boxes, boxes2)
    assert torch.equal(labels[fg], labels2[fg]) and torch.equal(scores.sum(2), scores2)
    assert torch.equal(scores.argmax(2)[scores2 > 0], labels2[scores2 > 0])
    assert (scores.sum(2) > 0).sum() > 50


def test_assignment_without_boxes_and_with_padding_rows():
    """A batch without boxes: every anchor background with label nc, as Ultralytics; an image without boxes beside
    others (padding rows): background there too."""
    model, batch = model_and_batch(nc=3, images=3, boxes=False)
    with torch.no_grad():
        preds = model(batch["img"])
    criterion = lean_loss.LeanDetectionLoss(model)
    (fg, *_), loss, _ = criterion.get_assigned_targets_and_loss(preds, batch)
    assert not fg.any() and loss[0] == 0 and loss[1] > 0
    model2, batch2 = model_and_batch(nc=3, images=3)
    keep = batch2["batch_idx"] < 2  # image 2 has no boxes
    batch2.update(batch_idx=batch2["batch_idx"][keep], cls=batch2["cls"][keep], bboxes=batch2["bboxes"][keep])
    with torch.no_grad():
        preds2 = model2(batch2["img"])
    (fg2, *_), _, _ = lean_loss.LeanDetectionLoss(model2).get_assigned_targets_and_loss(preds2, batch2)
    assert fg2[:2].any() and not fg2[2].any()


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


def test_host_targets_give_the_same_loss():
    """The trainer keeps the batch's target tensors on the host (keep_host_targets) before moving it; the loss read
    from them is the loss read from the batch, and DetectorTrainer.preprocess_batch keeps them."""
    from detector.glue.trainer import DetectorTrainer

    model, batch = model_and_batch()
    criterion = lean_loss.LeanDetectionLoss(model)
    with torch.no_grad():
        preds = model(batch["img"])
        plain = criterion(preds, batch)[0]
        kept = dict(batch)
        lean_loss.keep_host_targets(kept)
        assert kept[lean_loss.HOST_TARGETS][2] is batch["bboxes"]
        kept[lean_loss.HOST_TARGETS] = tuple(t.clone() for t in kept[lean_loss.HOST_TARGETS])
        for k in lean_loss.TARGET_KEYS:  # the loss reads the host copies: spoil the others' image indices
            kept[k] = kept[k].clone()
        kept["batch_idx"].zero_()
        assert torch.equal(criterion(preds, kept)[0], plain)

    trainer = object.__new__(DetectorTrainer)
    trainer.device, trainer.args = torch.device("cpu"), get_cfg(overrides={"multi_scale": 0.0})
    batch["img"] = (batch["img"] * 0).byte()
    out = trainer.preprocess_batch(dict(batch))
    assert lean_loss.HOST_TARGETS in out and out[lean_loss.HOST_TARGETS][0] is batch["batch_idx"]


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
    model.criterion, model.model[-1].reg_max = None, 1  # a head without DFL: Ultralytics' L1 box loss stays
    assert not lean_loss.use_lean_loss(model) and model.criterion is None


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


@pytest.mark.gpu
def test_runs_under_strict_deterministic_algorithms_on_the_gpu():
    """Ultralytics' trainer turns on deterministic algorithms by default (warn_only); with them strict, no op of the
    loss raises, and two runs give the same loss and gradients."""
    model, batch = model_and_batch(images=8, imgsz=320, device="cuda")
    torch.use_deterministic_algorithms(True)
    try:
        runs = [loss_and_grads(model, batch, lean_loss.LeanDetectionLoss(model), torch.float16) for _ in range(2)]
    finally:
        torch.use_deterministic_algorithms(False)
    (first, first_grads), (second, second_grads) = runs
    assert torch.equal(first, second) and (first > 0).all()
    assert all(g is None and h is None or torch.equal(g, h) for g, h in zip(first_grads, second_grads))


@pytest.mark.gpu
def test_loss_forward_does_not_wait_for_the_gpu():
    """With the targets' host copies (as DetectorTrainer gives them), the loss's forward makes no call that waits for
    the GPU (CUDA's sync debug mode raises on one), so the host queues it while the GPU still runs the network, and
    gives what it gives without them; Ultralytics' loss waits (its target padding reads a size from the GPU). The
    backward is reported."""
    model, batch = model_and_batch(images=8, imgsz=320, device="cuda")
    cpu = {k: batch[k].cpu() for k in lean_loss.TARGET_KEYS}
    lean_loss.keep_host_targets(cpu)
    batch[lean_loss.HOST_TARGETS] = cpu[lean_loss.HOST_TARGETS]
    model.criterion = lean_loss.LeanDetectionLoss(model)
    with torch.autocast("cuda", dtype=torch.float16):
        preds = model(batch["img"])
        plain = model.loss({k: v for k, v in batch.items() if k != lean_loss.HOST_TARGETS}, preds)[0]  # (and waits)
        torch.cuda.set_sync_debug_mode("error")
        try:
            loss = model.loss(batch, preds)[0].sum()
        finally:
            torch.cuda.set_sync_debug_mode(0)
        assert torch.equal(loss, plain.sum())
        stock = v8DetectionLoss(model)
        torch.cuda.set_sync_debug_mode("error")
        try:
            with pytest.raises(RuntimeError):
                stock(preds, batch)
        finally:
            torch.cuda.set_sync_debug_mode(0)
    torch.cuda.set_sync_debug_mode("warn")
    try:
        import warnings

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            loss.backward()
        print(f"calls waiting for the GPU in the backward: {sum('synchroniz' in str(w.message) for w in caught)}")
    finally:
        torch.cuda.set_sync_debug_mode(0)


def test_import_gives_every_trainer_the_lean_loss_where_ultralytics_builds_v8DetectionLoss():
    from ultralytics.utils import callbacks

    assert lean_loss.lean_loss_for_training in callbacks.get_default_callbacks()["on_pretrain_routine_end"]
    model = DetectionModel(DEFAULT, nc=2, verbose=False)
    model.args = get_cfg()  # what a trainer's set-up leaves for its callbacks: the model with its args, an EMA
    trainer = SimpleNamespace(model=model, ema=SimpleNamespace(ema=copy.deepcopy(model)))
    lean_loss.lean_loss_for_training(trainer)
    assert type(trainer.model.criterion) is lean_loss.LeanDetectionLoss
    assert type(trainer.ema.ema.criterion) is lean_loss.LeanDetectionLoss  # the validation loss's model
    assert trainer.model.criterion.hyp is trainer.model.args  # the trainer's loss gains


def test_ultralytics_own_trainer_trains_with_the_lean_loss(tmp_path):
    """`model.train()` without `trainer=`: Ultralytics' DetectionTrainer, whose loss is LeanDetectionLoss after its
    set-up, computed (its anchors cache fills on the first step) to finite losses."""
    from ultralytics.models.yolo.detect import DetectionTrainer

    trainer = DetectionTrainer(overrides=dict(
        model=DEFAULT, data=str(ROOT / "data/coco8.yaml"), epochs=1, imgsz=32, batch=2,
        workers=0, device="cpu", project=str(tmp_path), name="stock", plots=False, val=False))
    trainer.train()
    criterion = trainer.model.criterion
    assert type(criterion) is lean_loss.LeanDetectionLoss and criterion._anchors  # it ran
    assert type(trainer.ema.ema.criterion) is lean_loss.LeanDetectionLoss
    losses = torch.tensor([float(v) for v in trainer.tloss.values()])  # the epoch's mean (box, cls, dfl) losses
    assert len(losses) == 3 and torch.isfinite(losses).all() and (losses > 0).all(), trainer.tloss
