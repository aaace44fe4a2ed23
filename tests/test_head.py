"""detector.head.SubgridDetect: the finest level predicts on a grid of half its stride, through Ultralytics' own
anchors, decode and loss; and the registry builds it from a YAML without touching other models."""

import io
import math

import onnx
import pytest
import torch
from ultralytics.nn import tasks
from ultralytics.nn.modules.block import DFL
from ultralytics.nn.modules.head import Detect
from ultralytics.nn.tasks import DetectionModel
from ultralytics.utils import DEFAULT_CFG
from ultralytics.utils.loss import v8DetectionLoss

import detector  # noqa: F401  (registers our layers and heads)
from conftest import ROOT
from detector import head as head_module
from detector.glue.loss import LeanDetectionLoss
from detector.head import CELLS, SUBGRID, LastAxisDFL, SubgridDetect, SubgridThinDetect, flatten_levels

DEFAULT = str(ROOT / "models/yolo11n-an.yaml")  # SubgridThinDetect, a SubgridDetect


def build(nc=3, yaml=DEFAULT):
    torch.manual_seed(0)
    return DetectionModel(yaml, nc=nc, verbose=False)


def test_finest_level_predicts_at_half_its_stride():
    model = build().eval()
    head = model.model[-1]
    assert isinstance(head, SubgridDetect) and head.cv3[0][-1].out_channels == 3 * SUBGRID**2
    assert head.stride.tolist() == [4.0, 16.0, 32.0]
    with torch.no_grad():
        y, _ = model(torch.zeros(1, 3, 320, 320))
    assert y.shape == (1, 4 + 3, (320 // 4) ** 2 + (320 // 16) ** 2 + (320 // 32) ** 2)


@pytest.mark.parametrize("loaded", [False, True], ids=["built", "fine-tuned from 80 classes"])
def test_subcell_outputs_land_on_their_anchor_points(loaded):
    """Channel s * nc + k of the level's last conv is class k at sub-cell s = i * 2 + j (row i, column j): raise
    one sub-cell's logit for class 0 and its decoded boxes must sit on that sub-cell's 4-px anchor points. Also after
    Ultralytics' load() from an 80-class model, which rebuilds the class branches for the new class count."""
    model = build()
    if loaded:
        model.load(build(nc=80), verbose=False)
    model.eval()
    head = model.model[-1]
    last = head.cv3[0][-1]
    i, j = 1, 0  # lower-left sub-cell
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(-10.0)
        last.bias[(i * SUBGRID + j) * 3 + 0] = 10.0  # sub-cell s = i * SUBGRID + j, class 0 (of 3)
        for level in (1, 2):  # other levels silent
            head.cv3[level][-1].weight.zero_()
            head.cv3[level][-1].bias.fill_(-10.0)
        y, _ = model(torch.rand(1, 3, 128, 128))
    boxes, scores = y[0, :4], y[0, 4]
    hot = scores > 0.5
    assert hot.sum().item() == (128 // 8) ** 2  # one per stride-8 cell
    cx, cy = boxes[0, hot], boxes[1, hot]  # xywh centres, in pixels
    col, row = (cx - 2) / 4, (cy - 2) / 4  # index on the stride-4 grid (anchor centres at 2, 6, 10, ...)
    assert torch.allclose(col, col.round(), atol=0.5) and torch.allclose(row, row.round(), atol=0.5)
    assert set((row.round() % 2).tolist()) == {float(i)} and set((col.round() % 2).tolist()) == {float(j)}


def test_class_prior_covers_every_subcell():
    """Detect's bias_init sets only the first nc channels of a branch's last conv; here the level has 4 x nc."""
    head = build(nc=5).model[-1]
    prior = math.log(5 / 5 / (640 / 4) ** 2)
    bias = head.cv3[0][-1].bias
    assert bias.numel() == 5 * SUBGRID**2
    assert torch.allclose(bias, torch.full_like(bias, prior))


def test_ultralytics_loss_trains_the_subgrid_level():
    model = build().train()
    model.args = DEFAULT_CFG
    imgs = torch.rand(2, 3, 128, 128)
    batch = {"img": imgs, "batch_idx": torch.tensor([0.0, 1.0]), "cls": torch.tensor([[0.0], [2.0]]),
             "bboxes": torch.tensor([[0.3, 0.3, 0.08, 0.08], [0.6, 0.5, 0.1, 0.12]])}  # small boxes: finest level
    loss, _ = model.loss(batch)
    assert torch.isfinite(loss).all() and loss.sum() > 0
    loss.sum().backward()
    for branch in (model.model[-1].cv2, model.model[-1].cv3):
        grad = branch[0][-1].weight.grad
        assert grad is not None and grad.abs().sum() > 0


def test_checkpoint_loads_through_the_restricted_loader(tmp_path):
    """A -sub checkpoint names our head's classes; Ultralytics' loader (restricted by default here) must load it, or
    the trainer's final validation of best.pt fails (it did, once, when LastAxisDFL was not on the allow-list)."""
    model = build().eval()
    path = tmp_path / "sub.pt"
    torch.save({"model": model.half(), "train_args": {}}, path)
    loaded, _ = tasks.load_checkpoint(str(path), device="cpu")
    head = loaded.model[-1]
    assert isinstance(head, SubgridDetect) and type(head.dfl) is LastAxisDFL
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded.float()(x)[0], model.float()(x)[0])


def test_registry_builds_stock_detect_elsewhere_and_restores_the_name():
    build()
    assert tasks.Detect is Detect
    assert type(DetectionModel("yolo11n.yaml", nc=3, verbose=False).model[-1]) is Detect
    bad = {"nc": 3, "scales": {"n": [0.5, 0.25, 1024]}, "backbone": [[-1, 1, "Conv", [16, 3, 2]]],
           "head": [[[0], 1, "SubgridDetect", ["nc", "not-a-number", 3]]]}
    with pytest.raises(Exception):
        DetectionModel(bad, verbose=False)
    assert tasks.Detect is Detect


# (k, dtype): a sub-cell row of SUBGRID * k values is 48 bytes (moved as 8-byte words from channels-last maps), or 12
WORDS_OR_NOT = [(6, torch.float32), (3, torch.float16)]


@pytest.mark.parametrize("k, dtype", WORDS_OR_NOT, ids=["as words", "element by element"])
@pytest.mark.parametrize("pixels_first", [None, True, False], ids=["as the maps", "pixels first", "rows"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["NCHW", "channels-last"])
def test_flatten_levels_layout(channels_last, pixels_first, k, dtype):
    """Level 0's channel s * k + o lands at (2y + i, 2x + j), s = i * 2 + j, row-major on the finer grid, then the
    other levels row-major, from either memory format; the result's memory follows the maps' (no transposing copy)
    unless pixels_first says otherwise."""
    h, w = 3, 4
    ys = [torch.randn(2, CELLS * k, h, w, dtype=dtype), torch.randn(2, k, 2, 2, dtype=dtype),
          torch.randn(2, k, 1, 1, dtype=dtype)]
    if channels_last:
        ys = [y.contiguous(memory_format=torch.channels_last) for y in ys]
    out = flatten_levels(ys, k, pixels_first)
    n0 = CELLS * h * w
    assert out.shape == (2, k, n0 + 4 + 1)
    # channels-last: (b, anchors, k) memory, as Ultralytics' loss reads it; NCHW: (b, k, anchors), as Detect's cat
    assert (out.stride(1) == 1) if (channels_last if pixels_first is None else pixels_first) else out.is_contiguous()
    fine = out[..., :n0].reshape(2, k, SUBGRID * h, SUBGRID * w)
    for i in range(SUBGRID):
        for j in range(SUBGRID):
            s = i * SUBGRID + j
            assert torch.equal(fine[:, :, i::SUBGRID, j::SUBGRID], ys[0][:, s * k:(s + 1) * k])
    assert torch.equal(out[..., n0:], torch.cat([ys[1].flatten(2), ys[2].flatten(2)], 2))


# (k, dtype, room): rows of k + room values, as the output's (4 box values, then the k class scores): each anchor's
# k values as words (16 fp16 values, 4 to spare: words aligned), or element by element (6 fp16 values)
ROWS_WITH_ROOM = [(16, torch.float16, 4), (6, torch.float16, 4), (4, torch.float32, 2)]


@pytest.mark.parametrize("k, dtype, room", ROWS_WITH_ROOM, ids=["anchor words", "elements", "fp32 anchor words"])
def test_flatten_into_rows_with_room(k, dtype, room):
    """Into the last k columns of (b, anchors, room + k) rows (inference's output): the values flatten_levels
    gives, and the other columns untouched."""
    h, w = 3, 4
    torch.manual_seed(0)
    ys = [torch.randn(2, c * k, a, b, dtype=dtype).contiguous(memory_format=torch.channels_last)
          for c, a, b in ((CELLS, h, w), (1, 2, 2), (1, 1, 1))]
    n = CELLS * h * w + 4 + 1
    rows = torch.full((2, n, room + k), 7.0, dtype=dtype)
    out = head_module._flatten_into(ys, k, pixels_first=True, out=rows[..., room:].transpose(1, 2))
    assert torch.equal(out, flatten_levels(ys, k)) and out.data_ptr() == rows[..., room:].data_ptr()
    assert (rows[..., :room] == 7).all()


@pytest.mark.parametrize("nc", [80, 4, 3])
def test_inference_takes_the_sigmoid_of_the_output_rows(nc):
    """Inference from channels-last maps flattens the class logits straight into the output's rows and takes one
    contiguous sigmoid over them: the output `_inference` gives from the flattened logits alone (to the last bit: the
    CPU's vectorized and scalar exp round apart), and the scores handed on (the validator's loss reads them) are
    still the logits."""
    model = build(nc=nc).eval().to(memory_format=torch.channels_last)
    x = torch.rand(2, 3, 96, 128).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        y, preds = model(x)
        assert "output_rows" in preds and preds["scores"].stride(1) == 1
        logits = preds["scores"].transpose(1, 2).contiguous().transpose(1, 2)  # (b, anchors, nc) memory of their own
        plain = {"boxes": preds["boxes"], "scores": logits, "feats": preds["feats"]}
        torch.testing.assert_close(y, model.model[-1]._inference(plain), rtol=2e-7, atol=1e-7)
        assert (logits < 0).any() and y.shape == (2, 4 + nc, logits.shape[2])
        model.args = DEFAULT_CFG  # the validator's loss during training, on these preds and on the logits' copy
        batch = {"img": x, "batch_idx": torch.tensor([0.0, 1.0]), "cls": torch.tensor([[0.0], [1.0]]),
                 "bboxes": torch.tensor([[0.3, 0.4, 0.2, 0.3], [0.6, 0.5, 0.4, 0.2]])}
        for criterion in (LeanDetectionLoss(model), v8DetectionLoss(model)):
            torch.testing.assert_close(criterion(preds, batch)[0], criterion(plain, batch)[0], rtol=1e-6, atol=0)
        _, nchw = model.to(memory_format=torch.contiguous_format)(x.contiguous())
    assert "output_rows" not in nchw
    torch.testing.assert_close(logits, nchw["scores"], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("k, dtype", WORDS_OR_NOT, ids=["as words", "element by element"])
@pytest.mark.parametrize("pixels_first", [False, True], ids=["rows", "pixels first"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["NCHW", "channels-last"])
def test_flatten_levels_backward_is_autograds(channels_last, pixels_first, k, dtype):
    """Training's flatten_levels (its own backward: one copy of level 0's gradient) gives the values and gradients
    of autograd through the copies, in the maps' own memory format, for either layout of the result."""
    h, w = 3, 4
    torch.manual_seed(0)
    maps = [torch.randn(2, CELLS * k, h, w, dtype=dtype), torch.randn(2, k, 2, 2, dtype=dtype),
            torch.randn(2, k, 1, 1, dtype=dtype)]
    if channels_last:
        maps = [y.contiguous(memory_format=torch.channels_last) for y in maps]
    n = CELLS * h * w + 4 + 1  # the gradient in the result's layout, as the loss gives it
    weight = torch.randn(2, n, k, dtype=dtype).transpose(1, 2) if pixels_first else torch.randn(2, k, n, dtype=dtype)
    results = []
    for flatten in (flatten_levels, head_module._flatten_into):  # the second: autograd through in-place copies
        ys = [y.clone().requires_grad_() for y in maps]
        out = flatten(ys, k, pixels_first)
        (out * weight).sum().backward()
        results.append((out.detach(), [y.grad for y in ys]))
    (out, grads), (ref, ref_grads) = results
    assert torch.equal(out, ref)
    for g, r in zip(grads, ref_grads):
        assert torch.equal(g, r)
    assert grads[0].is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


@pytest.mark.parametrize("bins_contiguous", [False, True], ids=["(b, 64, a) memory", "(b, a, 64) memory"])
def test_last_axis_dfl_is_ultralytics_dfl(bins_contiguous):
    """From (b, 4 * 16, a) memory (NCHW maps, an export) and from (b, a, 4 * 16) memory (channels-last maps) alike,
    along either axis."""
    x = torch.randn(2, 4 * 16, 300) * 3
    ref = DFL(16)(x)
    if bins_contiguous:
        x = x.transpose(1, 2).contiguous().transpose(1, 2)
    dfl = LastAxisDFL(16)
    for got in (dfl(x), dfl.over_last_axis(x), dfl.over_middle_axis(x)):
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


def test_channels_last_inference_matches_nchw():
    """Ultralytics predicts in channels-last on x86 CPUs: the same outputs as from NCHW maps."""
    model = build().eval()
    x = torch.rand(1, 3, 128, 96)
    with torch.no_grad():
        ref, _ = model(x)
        got, _ = model.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize(("scale", "width"), [("n", 32), ("s", 32), ("m", 64)])
def test_thin_box_branch_keeps_16_bins(scale, width):
    """SubgridThinDetect: the box branch's 3x3 convs are as wide as Detect makes them for 8 bins, its last conv still
    gives 16 bins per side at each sub-cell (so the box cap stays 15 strides), and Ultralytics' loss trains it."""
    model = build(yaml=DEFAULT.replace("11n", f"11{scale}"))
    head = model.model[-1]
    assert type(head) is SubgridThinDetect and head.reg_max == 16
    for level, branch in enumerate(head.cv2):
        assert [m.conv.out_channels for m in branch[:2]] == [width, width]
        assert branch[-1].in_channels == width and branch[-1].out_channels == 4 * 16 * (CELLS if level == 0 else 1)
    model.eval()
    with torch.no_grad():
        y, _ = model(torch.rand(1, 3, 64, 64))
    assert y.shape == (1, 4 + 3, 16 * 16 + 4 * 4 + 2 * 2)
    model.train()
    model.args = DEFAULT_CFG
    batch = {"img": torch.rand(1, 3, 128, 128), "batch_idx": torch.tensor([0.0]), "cls": torch.tensor([[1.0]]),
             "bboxes": torch.tensor([[0.4, 0.5, 0.9, 0.8]])}  # a box wider than 8 bins at P5 reach
    loss, _ = model.loss(batch)
    loss.sum().backward()
    assert head.cv2[0][0].conv.weight.grad.abs().sum() > 0 and head.cv3[0][-1].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["NCHW", "channels-last"])
def test_export_order_decodes_the_same_boxes(channels_last, fmt):
    """An export lays level 0 out sub-cell-major with its own anchors, through Detect's concatenation and decode: the
    same predictions as evaluation (either memory layout of its maps; either DFL form an export format takes), each
    at the anchor it belongs to (export index s * h * w + y * w + x is evaluation's (2y + i) * 2w + 2x + j)."""
    model = build().eval()
    head = model.model[-1]
    head.format = fmt
    x = torch.rand(2, 3, 96, 128)
    with torch.no_grad():
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        ref, _ = model(x)
        head.export = True
        try:
            got = model(x)
        finally:
            head.export = False
    h, w = 96 // 8, 128 // 8
    s, gy, gx = torch.meshgrid(torch.arange(CELLS), torch.arange(h), torch.arange(w), indexing="ij")
    row_major = ((SUBGRID * gy + s // SUBGRID) * SUBGRID * w + SUBGRID * gx + s % SUBGRID).reshape(-1)
    n0 = CELLS * h * w
    torch.testing.assert_close(got[..., :n0], ref[..., row_major], rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(got[..., n0:], ref[..., n0:], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("reordered", [False, True], ids=["as-built", "reordered"])
@pytest.mark.parametrize("fmt, transposes", [("onnx", 2), ("openvino", 0)])
def test_openvino_export_reads_the_dfl_bins_in_place(fmt, transposes, reordered):
    """What the exported graph holds: for ONNX Runtime the DFL's two transposes (into and out of its last-axis
    softmax), none for OpenVINO's DFL, which reads the bins where they lie; and level 0's sub-cell-major layout costs
    two more (boxes, scores) unless the head was reordered for the export, as the exporter's copy is."""
    model = build().eval()
    head = model.model[-1]
    head.export, head.format = True, fmt
    if reordered:
        head.reorder_level0_for_export()
    else:
        transposes += 2
    feats = [torch.rand(1, c, 64 // s, 64 // s) for c, s in zip((64, 128, 256), (8, 16, 32))]
    out = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(_Levels(head), tuple(feats), out, opset_version=17, dynamo=False)
    graph = onnx.load_from_string(out.getvalue()).graph
    on_data, ops = {i.name for i in graph.input}, []  # the ops that run on the maps (the anchors' are constants)
    for node in graph.node:  # in topological order
        if on_data.intersection(node.input):
            on_data.update(node.output)
            ops.append(node.op_type)
    assert ops.count("Transpose") == transposes, ops


@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
def test_reordered_export_computes_the_same_outputs(fmt):
    """reorder_level0_for_export changes level 0's channel order and the export's reshape together: the exported
    outputs are the as-built head's, bit for bit (a permutation of conv channels moves values, it rounds nothing);
    the reordered head then refuses to compute anything but export outputs, and reordering twice is once."""
    import copy

    model = build().eval()
    head = model.model[-1]
    head.export, head.format = True, fmt
    x = torch.rand(2, 3, 96, 128)
    reordered = copy.deepcopy(model)
    reordered.model[-1].reorder_level0_for_export()
    reordered.model[-1].reorder_level0_for_export()
    assert not torch.equal(reordered.model[-1].cv3[0][-1].weight, head.cv3[0][-1].weight)
    with torch.no_grad():
        assert torch.equal(reordered(x), model(x))
        reordered.model[-1].export = False
        with pytest.raises(RuntimeError, match="reordered for an export"):
            reordered(x)


def test_exporter_reorders_its_copy_only(tmp_path):
    """Ultralytics' exporter (after `import detector`) exports a reordered copy: the ONNX graph has no level-0
    transpose, and the model the user exported from still predicts."""
    from ultralytics import YOLO

    yolo = YOLO(str(DEFAULT))
    yolo.model.pt_path = str(tmp_path / "m.pt")  # where the exporter writes the .onnx
    path = yolo.export(format="onnx", imgsz=64, simplify=False, device="cpu", verbose=False)
    head_ops = [n.op_type for n in onnx.load(path).graph.node if n.name.startswith("/model.23/")]
    assert head_ops.count("Transpose") == 2, head_ops  # the DFL's two; none for level 0
    assert not yolo.model.model[-1].level0_output_major
    with torch.no_grad():
        yolo.model.eval()(torch.rand(1, 3, 64, 64))


class _Levels(torch.nn.Module):
    """A head called on its levels as separate inputs (what torch.onnx.export traces)."""

    def __init__(self, head):
        super().__init__()
        self.head = head

    def forward(self, *feats):
        return self.head(list(feats))


@pytest.mark.gpu
def test_cuda_channels_last_amp_matches_cpu():
    """On a GPU as Ultralytics runs it: an AMP training step in channels-last gives a finite loss with gradients in
    the sub-grid convs, and fp16 inference (NCHW) matches fp32 CPU inference."""
    device = torch.device("cuda", 0)
    model = build()
    ref_model = build().eval()
    model = model.to(device).to(memory_format=torch.channels_last).train()
    model.args = DEFAULT_CFG
    batch = {"img": torch.rand(4, 3, 256, 256, device=device).contiguous(memory_format=torch.channels_last),
             "batch_idx": torch.tensor([0.0, 1.0, 2.0, 3.0]), "cls": torch.tensor([[0.0], [1.0], [2.0], [0.0]]),
             "bboxes": torch.tensor([[0.3, 0.3, 0.05, 0.06], [0.6, 0.5, 0.1, 0.12], [0.5, 0.5, 0.4, 0.3],
                                     [0.2, 0.7, 0.04, 0.04]])}
    with torch.autocast("cuda", dtype=torch.float16):
        loss, _ = model.loss(batch)
    assert torch.isfinite(loss).all()
    loss.sum().backward()
    assert model.model[-1].cv2[0][-1].weight.grad.abs().sum() > 0
    ref_model.load_state_dict(model.state_dict())
    x = torch.rand(2, 3, 256, 256)
    with torch.no_grad():
        ref, _ = ref_model.float().eval()(x)
        got, _ = model.eval().half()(x.to(device).half())
    got = got.float().cpu()
    torch.testing.assert_close(got[:, :4], ref[:, :4], rtol=1e-2, atol=1.0)  # boxes, pixels
    torch.testing.assert_close(got[:, 4:], ref[:, 4:], rtol=0, atol=0.01)  # scores, 0..1


def test_onnx_export_matches_pytorch(tmp_path):
    """`detector export`'s path (Ultralytics' exporter) and its check: ONNX Runtime gives PyTorch's outputs anchor for
    anchor (the check runs PyTorch in export mode, whose anchor order the export has) and the same detections."""
    from detector import export

    model = build()
    model.names = {0: "head", 1: "helmet", 2: "person"}
    model.args = {"imgsz": 64, "task": "detect"}
    path = tmp_path / "sub.pt"
    torch.save({"model": model.half(), "train_args": {"imgsz": 64}}, path)
    onnx_file = export.export(str(path), imgsz=64)
    r = export.compare(str(path), onnx_file, ROOT / "data/coco8/images/val", imgsz=64, half=False, conf=1e-5)
    assert r["within_tolerance"] and r["detections_match"], r
