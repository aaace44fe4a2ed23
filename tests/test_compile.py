"""torch.compile (Ultralytics' `compile=` argument) traces our layers and the kernel policy in one graph: no graph
breaks from detector's code, for training and for prediction, and the compiled graph computes what eager does."""

import pytest
import torch
import torch._dynamo as dynamo
from ultralytics.nn.tasks import DetectionModel

from conftest import ROOT
from detector import kernels
from detector.attention import AreaAttention, PSAttention


def explain(fn, *args, dynamic=False):
    dynamo.reset()
    if dynamic:  # what automatic dynamic shapes make of a recompile after a size change
        for a in args:
            for dim in (0, 2, 3):
                dynamo.mark_dynamic(a, dim)
    return dynamo.explain(fn)(*args)


def where(e) -> list[str]:
    return [f"{frame.filename}:{frame.lineno}: {str(b.reason).splitlines()[0]}" for b in e.break_reasons
            for frame in b.user_stack[-1:]]


LAYERS = {
    "area attention, 4 areas": lambda: (AreaAttention(64, 2, 4), torch.randn(2, 64, 20, 20)),
    "area attention, H*W not divisible": lambda: (AreaAttention(64, 2, 4), torch.randn(2, 64, 13, 13)),
    "YOLO11 attention": lambda: (PSAttention(128, 2, 0.5), torch.randn(2, 128, 20, 20)),
}


# (train, dynamic shapes, kernel): prediction and training; a forced kernel (its trial run must not be traced).
MODES = [(False, False, "auto"), (True, True, "auto"), (False, True, "flash"), (True, False, "matmul")]


@pytest.mark.parametrize(("train", "dynamic", "kernel"), MODES, ids=["-".join(map(str, m)) for m in MODES])
@pytest.mark.parametrize("layer", LAYERS)
def test_layers_trace_as_one_graph(layer, train, dynamic, kernel):
    """The policy reads DETECTOR_ATTN and a cached decision per call; under torch.compile both must trace (the log
    line and a forced kernel's trial run would each break the graph)."""
    m, x = LAYERS[layer]()
    kernels.set_kernel(kernel)
    with torch.set_grad_enabled(train):  # prediction runs without gradients (YOLO11's attention may then take
        e = explain(m.train(train), x, dynamic=dynamic)  # Ultralytics' own forward: that must trace too)
    assert (e.graph_count, e.graph_break_count) == (1, 0), where(e)


@pytest.mark.slow
@pytest.mark.parametrize("layer", LAYERS)
def test_compiled_layer_computes_what_eager_does(layer):
    """Forward and backward through a compiled graph (aot_eager: dynamo + autograd tracing, no C++ compiler)."""
    m, x = LAYERS[layer]()
    m.train()
    compiled = torch.compile(m, backend="aot_eager", fullgraph=True)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    y1, y2 = compiled(x1), m(x2)
    y1.square().sum().backward()
    y2.square().sum().backward()
    torch.testing.assert_close(y1, y2, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize(("cfg", "layers"), [("yolo11n-an-v1.yaml", {"AreaAttention", "PSAttention"}),
                                             ("yolo11n-an.yaml", {"AreaAttention", "SubgridThinDetect"})])
def test_whole_model_traces_as_one_graph_for_training_and_prediction(cfg, layers):
    """yolo11n-an-v1 (our P5 area attention and YOLO11's C2PSA on our kernels), and the default (our sub-grid head).
    Prediction: once the Detect head has its anchors for the size (its first call computes them with a data-dependent
    op, Ultralytics' code), one graph."""
    model = DetectionModel(str(ROOT / "models" / cfg), verbose=False)
    assert {type(m).__name__ for m in model.modules()} >= layers
    e = explain(model.train(), torch.randn(2, 3, 64, 64))
    assert (e.graph_count, e.graph_break_count) == (1, 0), where(e)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        model.eval()(x)
        e = explain(model, x)
    assert (e.graph_count, e.graph_break_count) == (1, 0), where(e)


def test_predict_compile_option_reaches_ultralytics_predictor():
    """predict.py --compile MODE is Ultralytics' own compile= (its predictor wraps the model with torch.compile when
    it sets the model up; compilation itself waits for the first image, so this costs no compile)."""
    try:  # Ultralytics leaves the model uncompiled where inductor has no host C++ compiler
        pytest.importorskip("torch._inductor.cpp_builder").get_cpp_compiler()
    except Exception as e:  # noqa: BLE001  (torch raises its own error types for a missing compiler)
        pytest.skip(f"no C++ compiler for torch.compile on this CPU: {e}")
    from detector import assets, predicting

    args = predicting.parse_args([str(ROOT / "data/coco8/images/val/000000000042.jpg"), "--device", "cpu",
                                  "--compile", "reduce-overhead", "--no-save"])
    predictor = predicting.load_predictor(args, assets.DEFAULT_WEIGHTS)
    assert predictor.args.compile == "reduce-overhead"
    assert isinstance(predictor.model, torch._dynamo.eval_frame.OptimizedModule)
    eager = predicting.load_predictor(predicting.parse_args(["--device", "cpu"]), assets.DEFAULT_WEIGHTS)
    assert not isinstance(eager.model, torch._dynamo.eval_frame.OptimizedModule)
