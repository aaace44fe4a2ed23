"""Smoke test of the benchmark at a tiny size: it runs every section and reports every model."""

import json
from importlib.util import find_spec
import subprocess
import sys

from conftest import ROOT
import pytest
import torch

from detector import bench, kernels
from detector.bench import MODELS, interleaved, pick_models, yolo12_attention
from detector.export import missing_packages


def run_bench(tmp_path, *args) -> tuple[list[dict], str]:
    out = tmp_path / "bench.json"
    r = subprocess.run([sys.executable, "-m", "detector.bench", "--small", "--iters", "1", "--rounds", "1", "--json",
                        str(out), *args], capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(out.read_text())["rows"], r.stdout


def test_bench_small_reports_every_summary_row(tmp_path):
    """The default sections (train with every loss, infer, end-to-end predict) at a tiny size, for YOLO11n and the
    default: every row of the summary table, each a ratio to YOLO11n."""
    rows, stdout = run_bench(tmp_path, "--models", "yolo11n-an")
    models = {"YOLO11n", "yolo11n-an (ours)"}
    train = [row for row in rows if row["section"] == "train"]
    assert {(row["model"], row["loss"]) for row in train} == {(m, loss) for m in models for loss in bench.LOSSES}
    assert {row["model"] for row in rows if row["section"] == "infer"} == models
    predict = [row for row in rows if row["section"] == "predict"]
    assert {row["model"] for row in predict} == models
    assert all(row["ms"] > 0 for row in rows if "ms" in row)
    runtimes = ["torch"] + [f for f in ("onnx", "openvino") if not missing_packages(f)]
    for runtime in runtimes:  # ONNX Runtime and OpenVINO where their extras are installed
        assert all(row[f"{runtime}_ms"] > 0 for row in predict), runtime
    summary = stdout[stdout.index("### Summary"):].splitlines()
    measured = [line for line in summary if line.startswith("| ") and "x |" in line]
    # peak memory is measured on a GPU, and `detector predict` differs from `yolo predict` there only
    gpu_only = 0 if torch.cuda.is_available() else sum(row[3] == "mib" or "`detector predict`" in row[0]
                                                        for row in bench.SUMMARY)
    assert len(measured) == len(bench.SUMMARY) - (3 - len(runtimes)) - gpu_only  # one per measurement
    # YOLO11n's own column (but where it is YOLO11n run by detector over YOLO11n run by Ultralytics)
    assert all(line.split(" | ")[1] == "1.00x" for line in measured if "`detector " not in line)
    if not torch.cuda.is_available():  # sections say where they ran: no GPU/fp16 titles on a CPU
        titles = [line for line in stdout.splitlines() if line.startswith("### ")]
        assert all("GPU" not in t and "fp16" not in t for t in titles), titles


@pytest.mark.slow
def test_bench_small_runs_every_section_and_model(tmp_path):
    """Every section, the summary's six models (minutes on a 2-core CPU)."""
    rows, stdout = run_bench(tmp_path, "--only", ",".join(bench.SECTIONS))
    for section in ("train", "infer", "predict", "cpu", "ops"):
        assert {row["model"] for row in rows if row["section"] == section} == set(bench.DEFAULT_MODELS), section
    openvino = ("openvino_fp32_ms", "openvino_auto_ms", "openvino_int8_ms") if find_spec("openvino") else ()
    for key in ("onnx_ms", *openvino):  # OpenVINO's columns need the .[openvino] extra
        assert all(row[key] > 0 for row in rows if row["section"] == "cpu"), key
    attention = [row for row in rows if row["section"] == "attention"]
    assert {row["kernel"] for row in attention} >= {"flash", "math", "matmul", "yolo12"}
    ops = {row["model"]: row["ops"] for row in rows if row["section"] == "ops"}
    assert ops["YOLO12n (ours, SDPA)"] == ops["YOLO12n (stock, matmul)"] > ops["YOLO11n"] > 0  # calls, not kernels
    assert "| YOLO11n |" in stdout and "int8 / OpenVINO fp32" in stdout


def test_summary_is_each_row_over_yolo11n():
    rows = [dict(section="train", model=m, loss=loss, imgsz=640, batch=64, ms=ms, mib=mib)
            for m, loss, ms, mib in (("YOLO11n", "ultralytics", 100.0, 8000.0), ("B", "ultralytics", 110.0, 10000.0),
                                     ("YOLO11n", "synthetic", 80.0, 7000.0), ("B", "synthetic", 84.0, 7000.0),
                                     ("YOLO11n", "detector", 98.0, 7600.0), ("B", "detector", 103.0, 8400.0))]
    rows += [dict(section="infer", model=m, runs=runs, imgsz=640, batch=b, ms=ms, img_per_s=b / ms * 1e3)
             for m, runs, b, ms in (("YOLO11n", "yolo predict", 1, 5.0), ("B", "yolo predict", 1, 6.0),
                                    ("YOLO11n", "yolo predict", 64, 14.0), ("B", "yolo predict", 64, 17.5),
                                    ("YOLO11n", "detector predict", 64, 12.5), ("B", "detector predict", 64, 14.0))]
    lines = {line.split(" | ")[0][2:]: line.split(" | ")[1:] for line in bench.summary(rows).splitlines()
             if line.startswith("| ") and "x |" in line}
    assert lines == {"train step, Ultralytics' loss (640, b64)": ["1.00x", "1.10x |"],
                     "train step, `detector train` vs YOLO11n's `yolo train` (640, b64)": ["0.98x", "1.03x |"],
                     "train step, synthetic loss (640, b64)": ["1.00x", "1.05x |"],
                     "peak train memory, Ultralytics' loss (640, b64)": ["1.00x", "1.25x |"],
                     "peak train memory, `detector train` vs YOLO11n's `yolo train` (640, b64)": ["0.95x", "1.05x |"],
                     "inference latency (640, b1)": ["1.00x", "1.20x |"],
                     "inference throughput (640, b64)": ["1.00x", "0.80x |"],
                     "inference throughput, `detector predict` vs YOLO11n's `yolo predict` (640, b64)":
                         ["1.12x", "1.00x |"]}


def test_random_targets_feed_ultralytics_loss():
    """The train section's random boxes are a valid Ultralytics batch: 16 per image, inside the image, every class
    index below nc, the same every run; the default's loss takes them."""
    from ultralytics.cfg import get_cfg

    t = bench.random_targets(2, 3, torch.device("cpu"))
    assert t["bboxes"].shape == (32, 4) and t["batch_idx"].tolist() == [0.0] * 16 + [1.0] * 16
    xy, wh = t["bboxes"][:, :2], t["bboxes"][:, 2:]
    assert ((xy - wh / 2) >= 0).all() and ((xy + wh / 2) <= 1).all() and t["cls"].max() < 3
    assert torch.equal(t["bboxes"], bench.random_targets(2, 3, torch.device("cpu"))["bboxes"])
    model = bench.build("yolo11n-an (ours)", torch.device("cpu")).train()
    model.args = get_cfg()
    loss, _ = model.loss({"img": torch.rand(2, 3, 64, 64), **t})
    assert torch.isfinite(loss).all() and loss.sum() > 0


def test_interleaved_rounds_time_every_runner_alike():
    """Each runner runs once per round, in turn, after its warm-up; per_round = iters // rounds."""
    calls = []
    result = interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, torch.device("cpu"),
                         iters=6, rounds=3, warmup=1)
    assert calls == ["a", "b"] + ["a", "a", "b", "b"] * 3
    assert set(result) == {"a", "b"} and all(ms >= 0 and spread >= 0 for ms, spread in result.values())


def test_models_option_keeps_the_baseline():
    variant = str(ROOT / "research/models/yolo11n-an-sub.yaml")
    assert pick_models(variant) == ["YOLO11n", "yolo11n-an-sub"] and MODELS["yolo11n-an-sub"] == (variant, False)
    assert pick_models("yolo11n-an;YOLO12n (ours, SDPA)") == ["YOLO11n", "YOLO12n (ours, SDPA)", "yolo11n-an (ours)"]
    assert pick_models("YOLO12n") == ["YOLO11n", "YOLO12n (stock, matmul)", "YOLO12n (ours, SDPA)"]
    assert pick_models(None) == list(bench.DEFAULT_MODELS) and pick_models(None)[0] == "YOLO11n"


def test_yolo12_baseline_is_attention():
    """The speed-up baseline computes the same attention as our reference (else its timings would mean nothing)."""
    q, k, v = (torch.randn(2, 3, 50, 16) for _ in range(3))
    torch.testing.assert_close(yolo12_attention(q, k, v), kernels.matmul_attention(q, k, v), atol=1e-5, rtol=1e-5)


def test_cpu_clock_counts_this_process_only():
    """--clock cpu: a runner that sleeps (as a job holding the core would make it wait) costs ~0 CPU time."""
    import time

    got = interleaved({"sleep": lambda: time.sleep(0.02)}, torch.device("cpu"), iters=2, rounds=2, warmup=0,
                      clock="cpu")
    assert got["sleep"][0] < 5  # ms, against 20 ms of wall time


def test_nc_builds_every_model_with_that_many_classes(monkeypatch):
    """--nc N: every model, ours and stock, gets an N-class head (a head's cost depends on it)."""
    from detector import bench

    monkeypatch.setattr(bench, "NUM_CLASSES", 3)
    for label in ("YOLO11n", "yolo11n-an (ours)"):
        head = bench.build(label, torch.device("cpu")).model[-1]
        assert head.nc == 3 and head.cv3[-1][-1].out_channels == 3, label  # the last level: one cell, one anchor
    r = subprocess.run([sys.executable, "-m", "detector.bench", "--nc", "0"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "--nc: must be >= 1" in r.stderr.strip().splitlines()[-1]


def test_nc_option_reaches_every_build_the_json_and_the_titles(tmp_path, monkeypatch, capsys):
    """main() --nc 3 (the cheapest section, the fewest models): they are built with 3 classes, the JSON says so and
    the table titles name it; with the YAMLs' 80 the titles stay as they were."""
    monkeypatch.setattr(bench, "NUM_CLASSES", None)  # restored after the test: main() sets the module global
    built, build = [], bench.build

    def spy(label, device):
        model = build(label, device)
        built.append((label, bench.NUM_CLASSES, model.model[-1].nc))
        return model

    monkeypatch.setattr(bench, "build", spy)
    out = tmp_path / "bench.json"
    assert bench.main(["--nc", "3", "--only", "ops", "--small", "--models", "YOLO11n", "--json", str(out)]) == 0
    models = pick_models("YOLO11n")  # YOLO11n and YOLO11n (C2PSA on our kernels)
    assert built == [(label, 3, 3) for label in models]  # (model, NUM_CLASSES when built, its head's classes)
    result = json.loads(out.read_text())
    assert result["nc"] == 3 and [row["model"] for row in result["rows"]] == models
    titles = [line for line in capsys.readouterr().out.splitlines() if line.startswith("### ")]
    assert titles == ["### Operator calls that compute or copy, per batch-1 forward (fused, eval; PyTorch profiler, "
                      "CPU) (3 classes)"]
    for nc in (None, 80):
        monkeypatch.setattr(bench, "NUM_CLASSES", nc)
        assert bench.table("T", ["a"], [])[0] == "### T"


def test_models_run_in_the_memory_format_ultralytics_runs_them_in():
    """The bench times what Ultralytics executes: its predictor's (AutoBackend's) memory format on this CPU, and its
    trainer's channels-last on CUDA (read from its source: no GPU here)."""
    import inspect

    from ultralytics.engine.trainer import BaseTrainer
    from ultralytics.nn.autobackend import AutoBackend

    cpu = torch.device("cpu")
    theirs = AutoBackend(bench.build("YOLO11n", cpu).eval(), device=cpu, fuse=False, verbose=False).model
    ours = bench.as_ultralytics_runs(bench.build("YOLO11n", cpu).eval(), cpu, training=False)
    layout = [m.conv.weight.is_contiguous(memory_format=torch.channels_last) for m in (theirs.model[0], ours.model[0])]
    assert layout[0] == layout[1]
    assert not bench.as_ultralytics_runs(bench.build("YOLO11n", cpu), cpu, training=True).model[0].conv.weight \
        .is_contiguous(memory_format=torch.channels_last)  # Ultralytics trains NCHW on a CPU
    source = inspect.getsource(BaseTrainer._setup_train)
    assert 'self.device.type == "cuda"' in source and "memory_format=torch.channels_last" in source
