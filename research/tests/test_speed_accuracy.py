"""scripts/speed_accuracy.py draws the speed-accuracy picture from research/speed_accuracy.csv, missing cells and all."""

import subprocess
import sys

from conftest import ROOT

SCRIPT = ROOT / "research/scripts/speed_accuracy.py"


def run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=120)


def test_draws_a_png_from_a_half_filled_table(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("model,seeds,map_mean,map_sd,gpu_b1_ms,cpu_onnx_ms,source\n"
                     "YOLO11n,6,0.3578,0.0024,5.23,34.4,a\n"
                     "yolo11n-an,6,0.3538,0.0048,6.02,36.4,b\n"
                     "yolo11n-an-lite,,,,,31.0,c (accuracy not measured yet)\n"
                     "YOLO26n,1,0.3303,,7.42,26.4,d\n")
    out = tmp_path / "t.png"
    r = run("--table", table, "--out", out)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    assert not list(tmp_path.glob(".t.png.*"))  # written atomically: no temporary file left behind


def test_the_research_table_is_readable():
    sys.path.insert(0, str(ROOT / "research/scripts"))
    import speed_accuracy

    rows = speed_accuracy.read_table(ROOT / "research/speed_accuracy.csv")
    names = {r["model"] for r in rows}
    assert {"YOLO26n", "yolo11n-an", "yolo11n-an-v2", "yolo11n-an-sub"} <= names
    assert any(n.startswith("YOLO12n") for n in names) and any(n.startswith("YOLO11n") for n in names)
    assert {"yolo11n-an-v1", "yolo11n-an-lite", "yolo11n-an-p2f", "yolo11n-an-deep", "yolo11n-an-ctx",
            "yolo11n-an-ctxp2f", "yolo11n-an-p2", "yolo11n-an-rep", "YOLO11s", "yolo11n-an-p2t-l1", "yolo11n-an-p2t",
            "yolo11n-an-l1"} <= names
    assert all(r["source"] for r in rows)


def test_a_table_without_the_columns_is_refused_in_one_line(tmp_path):
    table = tmp_path / "bad.csv"
    table.write_text("model,map\nYOLO11n,0.35\n")
    r = run("--table", table)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "missing column(s) seeds" in r.stderr
