"""The multi-GPU profiling probes of scripts/ddp_scaling.py (issue 14), on CPU: the per-step timer that runs inside
train.py's training processes, the DDP-settings override it carries, and the summaries the scaling script computes.
The GPU runs themselves are summarised in docs/benchmarks.md (multi-GPU) and research/notes/benchmarks-log.md."""

import json
import subprocess
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "research/scripts"))
import ddp_scaling  # noqa: E402
import step_timer  # noqa: E402


def test_step_timer_records_every_step_of_a_real_training_run(tmp_path):
    out = tmp_path / "steps"
    r = subprocess.run([sys.executable, "research/scripts/step_timer.py", str(out), "--model", "yolo11n-an.yaml",
                        "--data", "coco8.yaml", "--epochs", "2", "--imgsz", "64", "--batch", "2", "--device", "cpu",
                        "--workers", "0", "--project", str(tmp_path / "runs"), "val=False", "plots=False"],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    lines = [json.loads(x) for x in (out / "rank-1.jsonl").read_text().splitlines()]
    assert [d["epoch"] for d in lines] == [1, 2]
    for d in lines:  # coco8: 4 training images, batch 2 -> 2 steps per epoch
        assert d["steps"] == 2 and len(d["step_ms"]) == 2 and len(d["wait_ms"]) == 2
        assert all(s > 0 for s in d["step_ms"]) and all(w >= 0 for w in d["wait_ms"])
        assert d["step_s"] == pytest.approx(sum(d["step_ms"]) / 1e3, abs=1e-3)
    summary = ddp_scaling.step_summary(out)  # epochs 2.. only
    assert list(summary) == ["rank-1_ep2"] and summary["rank-1_ep2"]["steps"] == 2


def test_ddp_kwargs_reach_the_distributed_wrapper(monkeypatch):
    import torch.distributed as dist
    from torch import nn
    from ultralytics.utils.dist import find_free_network_port
    from ultralytics.utils.torch_utils import is_parallel, unwrap_model

    monkeypatch.setenv("DDP_KWARGS", json.dumps({"static_graph": True, "gradient_as_bucket_view": True}))
    monkeypatch.setattr(nn.parallel, "DistributedDataParallel", nn.parallel.DistributedDataParallel)  # restored after
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(find_free_network_port()))
    dist.init_process_group("gloo", rank=0, world_size=1)
    try:
        step_timer.on_pretrain_routine_start(None)
        layer = nn.Linear(3, 3)
        model = nn.parallel.DistributedDataParallel(layer, find_unused_parameters=True)  # as Ultralytics calls it
        assert model.static_graph and model.gradient_as_bucket_view
        assert is_parallel(model) and unwrap_model(model) is layer  # Ultralytics still sees a DDP model
    finally:
        dist.destroy_process_group()


def test_ddp_kwargs_unset_leaves_ddp_alone(monkeypatch):
    from torch import nn

    monkeypatch.delenv("DDP_KWARGS", raising=False)
    before = nn.parallel.DistributedDataParallel
    step_timer.on_pretrain_routine_start(None)
    assert nn.parallel.DistributedDataParallel is before


def test_cpu_window_reports_cores_used_between_two_times():
    samples = [dict(t=t, busy=50.0, ranks_cpu_s=1.0 * t, workers_cpu_s=4.0 * t, other_cpu_s=0.0, n_ranks=4,
                    n_workers=48) for t in range(0, 21)]
    w = ddp_scaling.cpu_window(samples, 5, 15)
    assert w["window_s"] == 10 and w["ranks_cores"] == 1.0 and w["workers_cores"] == 4.0
    assert w["machine_busy_pct"] == 50.0 and w["n_ranks"] == 4
    assert ddp_scaling.cpu_window(samples, 30, 40) == {}  # no samples in the window


@pytest.mark.parametrize("args, expected", [
    (["--ddp-kwargs", '{"static_graph": true}'], "--ddp-kwargs: the ranks read it through research/scripts/step_timer.py"),
    (["--step-timer", "--ddp-kwargs", "static_graph"], "--ddp-kwargs: not a JSON object"),
    (["--py-spy", "/nonexistent/py-spy"], "--py-spy: '/nonexistent/py-spy' is not an executable file"),
])
def test_bad_profiling_arguments_get_one_line(args, expected, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        ddp_scaling.main(["--data-root", str(tmp_path), "--out", str(tmp_path / "out"), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and expected in err[-1] and "Traceback" not in "\n".join(err)


def test_cpu_sampling_finds_the_training_process_of_a_real_run(tmp_path):
    """One process, no DDP, no py-spy: the launched train.py is itself the training process (and was once missed)."""
    from shutil import copyfile, copytree

    root = copytree(ROOT / "data/coco8", tmp_path / "coco8")  # labels caches go next to this copy, not the repo's
    copyfile(ROOT / "data/coco8.yaml", root / "coco8.yaml")  # the class names, which the script reads from it
    out = tmp_path / "out"
    assert ddp_scaling.main(["--data-root", str(root), "--out", str(out), "--cpu", "--gpus", "1", "--models",
                             "yolo11n-an.yaml", "--epochs", "3", "--repeat", "64", "--imgsz", "64", "--batch-per-gpu",
                             "8", "--workers", "0", "--sample-cpu", "--deadline", "500"]) == 0
    # --repeat 64: epochs 2-3 last about 3.6 s on 2 cores, 3-4 of the one-per-second CPU samples (at 32, about 1.9 s:
    # sometimes one sample, and no CPU summary)
    cpu = json.loads((out / "scaling.json").read_text())["results"][0]["cpu"]
    assert cpu["n_ranks"] == 1 and cpu["ranks_cores"] > 0.3
