"""predict.py on bad input: one line naming each bad file, the good files still predicted, a summary, exit codes 0/1/2.

Every bad input is made here: a missing path, an empty folder, a zero-byte file, text named .jpg, a truncated JPEG, an
unreadable file, grey/RGBA/16-bit PNGs, 1x1, 10000x10000 and 4000x20 images, a truncated video, a video that does
not open, a webcam that does not exist, broken weights and an .onnx of another input size.
"""

import json
import os
import re
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from detector import predicting as predict
from conftest import ROOT
from detector import sources

VAL = ROOT / "data/coco8/images/val"
ROOT_USER = os.geteuid() == 0  # root reads a chmod-0 file: that case cannot fail here
# Runs predict.py and reports its own peak RSS, which getrusage(RUSAGE_CHILDREN) mixes with every earlier child's.
PEAK_RSS = ("import resource, runpy, sys\nsys.argv = sys.argv[1:]\ncode = 0\ntry:\n"
            "    runpy.run_path(sys.argv[0], run_name='__main__')\nexcept SystemExit as e:\n    code = e.code\n"
            "print('peak_rss_kb', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\nsys.exit(code)")


@pytest.fixture(autouse=True)
def restore_opencv_logging(monkeypatch):
    """predict.main silences OpenCV and FFmpeg for its process: give this one its settings back."""
    monkeypatch.setenv("OPENCV_FFMPEG_LOGLEVEL", os.environ.get("OPENCV_FFMPEG_LOGLEVEL", "-8"))
    level = sources.set_log_level(3)  # only to read the level: put back at once
    sources.set_log_level(level)
    yield
    sources.set_log_level(level)


@pytest.fixture(scope="module")
def weights(trained_run, tmp_path_factory):
    pt = tmp_path_factory.mktemp("w") / "model.pt"
    shutil.copy(trained_run[0] / "weights/best.pt", pt)
    return pt


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Good, odd-but-valid and bad inputs, each a file in one folder (the name says which)."""
    d = tmp_path_factory.mktemp("inputs")
    good = sorted(VAL.glob("*.jpg"))
    shutil.copy(good[0], d / "good_a.jpg")
    shutil.copy(good[1], d / "good_b.jpg")
    im = cv2.imread(str(good[2]))
    cv2.imwrite(str(d / "grey.png"), cv2.cvtColor(im, cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(d / "rgba.png"), cv2.cvtColor(im, cv2.COLOR_BGR2BGRA))
    cv2.imwrite(str(d / "deep16.png"), im.astype(np.uint16) * 257)
    cv2.imwrite(str(d / "one_pixel.png"), im[:1, :1])
    cv2.imwrite(str(d / "wide.jpg"), cv2.resize(im, (4000, 20)))
    cv2.imwrite(str(d / "huge.jpg"), cv2.resize(im, (10000, 10000), interpolation=cv2.INTER_NEAREST))
    (d / "zero.jpg").write_bytes(b"")
    (d / "text.jpg").write_text("not a picture\n")
    jpeg = good[3].read_bytes()
    (d / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    shutil.copy(good[3], d / "unreadable.jpg")
    os.chmod(d / "unreadable.jpg", 0)
    frame = cv2.resize(im, (160, 96))
    writer = cv2.VideoWriter(str(d / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 12, (160, 96))
    for i in range(20):
        writer.write(np.roll(frame, 8 * i, axis=1))
    writer.release()
    video = (d / "clip.avi").read_bytes()
    (d / "clip.avi").write_bytes(video[: len(video) // 2])  # the end cut off: about 10 of its 20 frames decode
    (d / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(500))
    return d


# The problem each bad file must be reported with (a fragment of its one line).
BAD = {"zero.jpg": "empty file", "text.jpg": "not an image", "truncated.jpg": "truncated JPEG",
       "unreadable.jpg": "Permission denied", "broken.mp4": "cannot open it as a video"}
ODD = ["grey.png", "rgba.png", "deep16.png", "one_pixel.png", "wide.jpg", "huge.jpg"]


def skipped(err: str, source, problem: str) -> bool:
    """stderr is exactly the one line saying that `source` is skipped, and why."""
    lines = err.splitlines()
    return (len(lines) == 1 and lines[0].startswith(f"predict.py: error: source '{source}': ") and problem in lines[0]
            and lines[0].endswith("; skipped"))


def run_main(argv, capsys):
    """predict.main in this process (one model load instead of a Python start per case): code, stdout, stderr."""
    code = predict.main([*map(str, argv), "--imgsz", "64", "--device", "cpu"])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("name", sorted(BAD))
def test_each_bad_file_alone_is_one_line_and_exit_2(name, inputs, weights, tmp_path, capsys):
    if name == "unreadable.jpg" and ROOT_USER:
        pytest.skip("root can read a chmod-0 file")
    code, out, err = run_main([inputs / name, "--weights", weights, "--project", tmp_path], capsys)
    assert code == 2, out + err
    assert skipped(err, inputs / name, BAD[name]), err
    assert "summary: 0 ok, 1 failed; nothing predicted" in out


@pytest.mark.parametrize("source, problem", [("missing.jpg", "no such file or folder"), ("empty_dir", "empty folder"),
                                             ("*.nothing", "no file matches"), ("9", "no webcam with index 9"),
                                             ("rtsp://127.0.0.1:1/live", "Failed to open")])
def test_each_bad_source_alone_is_one_line_and_exit_2(source, problem, weights, tmp_path, capsys):
    (tmp_path / "empty_dir").mkdir()
    source = source if source.isdigit() or "://" in source else tmp_path / source
    code, out, err = run_main([source, "--weights", weights, "--project", tmp_path / "runs"], capsys)
    assert code == 2 and skipped(err, source, problem), err
    assert not (tmp_path / "runs").exists()  # nothing to predict: no results folder either


@pytest.mark.parametrize("name", ODD)
def test_odd_but_valid_images_alone_are_predicted(name, inputs, weights, tmp_path, capsys):
    code, out, err = run_main([inputs / name, "--weights", weights, "--project", tmp_path, "--name", "odd",
                               "--save-json", "--conf", "1e-5"], capsys)
    assert code == 0 and not err, err
    assert "summary: 1 ok, 0 failed" in out
    h, w = cv2.imread(str(inputs / name)).shape[:2]
    assert f"{inputs / name}: {w}x{h}" in out
    annotated = cv2.imread(str(next((tmp_path / "odd").glob(name.split(".")[0] + ".*"))))  # PNGs are saved as .jpg
    assert annotated.shape[:2] == ((h, w) if name != "huge.jpg" else (5000, 5000))  # huge: decoded at 1/2
    for r in json.loads((tmp_path / "odd/detections.json").read_text()):  # boxes in the original's pixels
        x1, y1, x2, y2 = r["box_xyxy"]
        assert 0 <= x1 <= x2 <= w and 0 <= y1 <= y2 <= h


def test_truncated_video_alone_predicts_the_frames_that_decode(inputs, weights, tmp_path, capsys):
    code, out, err = run_main([inputs / "clip.avi", "--weights", weights, "--project", tmp_path, "--save-txt",
                               "--conf", "1e-5"], capsys)
    decoded = int(re.search(r"clip.avi: (\d+) frames", out)[1])
    assert code == 1 and 5 <= decoded < 20, out + err
    assert err.splitlines() == [f"predict.py: warning: source '{inputs / 'clip.avi'}': truncated or corrupt after "
                                f"frame {decoded}: {decoded} of 20 frames decode; predicted those"]
    assert "summary: 0 ok, 1 incomplete, 0 failed" in out
    assert len(list((tmp_path / "predict/labels").glob("clip_*.txt"))) == decoded


def test_list_file_entries_relative_to_the_list_and_a_missing_one(inputs, weights, tmp_path, capsys):
    shutil.copy(inputs / "good_a.jpg", tmp_path / "a.jpg")
    (tmp_path / "list.txt").write_text("a.jpg\ngone.jpg\n\n")
    code, out, err = run_main([tmp_path / "list.txt", "--weights", weights, "--project", tmp_path], capsys)
    assert code == 1 and skipped(err, "gone.jpg", "no such file or folder"), err
    assert f"{tmp_path / 'a.jpg'}: " in out and "summary: 1 ok, 1 failed" in out


@pytest.mark.slow
def test_bad_inputs_mixed_with_good_ones_in_one_folder(inputs, weights, tmp_path):
    """The real CLI: a line per bad input, every good file predicted, the summary, exit 1, no traceback."""
    folder = tmp_path / "mixed"
    shutil.copytree(inputs, folder, ignore=shutil.ignore_patterns("unreadable.jpg"))  # not even copyable
    shutil.copy(inputs / "good_a.jpg", folder / "unreadable.jpg")
    os.chmod(folder / "unreadable.jpg", 0)
    (tmp_path / "empty_dir").mkdir()
    extra = [tmp_path / "missing.jpg", tmp_path / "empty_dir", "9"]
    cmd = [sys.executable, str(ROOT / "predict.py"), folder, *extra, "--weights", weights, "--imgsz", "64",
           "--device", "cpu", "--conf", "1e-5", "--save-txt", "--save-json", "--project", tmp_path, "--name", "out"]
    r = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stdout + r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("predict.py: error: source")]
    bad = {k: v for k, v in BAD.items() if not (k == "unreadable.jpg" and ROOT_USER)}
    for name, problem in bad.items():
        assert any(f"'{folder / name}': " in e and problem in e for e in errors), (name, r.stderr)
    for source in extra:
        assert any(f"'{source}': " in e for e in errors), (source, r.stderr)
    assert len(errors) == len(bad) + len(extra), r.stderr
    assert f"'{folder / 'clip.avi'}': truncated" in r.stderr
    good = ["good_a.jpg", "good_b.jpg", *ODD] + (["unreadable.jpg"] if ROOT_USER else [])
    out = tmp_path / "out"
    stems = {p.split(".")[0] for p in [*good, "clip.avi"]}
    assert {p.stem for p in out.iterdir() if p.is_file() and p.suffix != ".json"} == stems  # annotated copies
    assert {p.stem for p in (out / "labels").glob("good_*.txt")} == {"good_a", "good_b"}
    records = json.loads((out / "detections.json").read_text())
    assert {os.path.basename(r["image"]) for r in records} >= {"good_a.jpg", "good_b.jpg", "clip.avi"}
    summary = r.stdout.strip().splitlines()[-1]
    assert summary.startswith(f"summary: {len(good)} ok, 1 incomplete, {len(bad) + len(extra)} failed;"), summary
    for name in good:
        assert re.search(rf"^{re.escape(str(folder / name))}: \d+x\d+", r.stdout, re.M), name  # one line per image


@pytest.mark.slow
def test_huge_image_is_decoded_reduced_so_memory_stays_flat(inputs, weights, tmp_path):
    """A 10000x10000 JPEG (300 MB as pixels) costs about what a 640x480 one does: libjpeg decodes it at 1/2 scale."""
    peaks = {}
    for name in ("good_a.jpg", "huge.jpg"):
        cmd = [sys.executable, "-c", PEAK_RSS, str(ROOT / "predict.py"), str(inputs / name), "--weights",
               str(weights), "--imgsz", "64", "--device", "cpu", "--project", str(tmp_path)]
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
        peaks[name] = int(re.search(r"peak_rss_kb (\d+)", r.stderr)[1]) / 1024
    print(f"peak RSS: {peaks['good_a.jpg']:.0f} MB for a 640x480 JPEG, {peaks['huge.jpg']:.0f} MB for 10000x10000")
    assert peaks["huge.jpg"] - peaks["good_a.jpg"] < 200  # a full decode adds 450 MB (measured on Ultralytics' reader)


@pytest.mark.parametrize("case", ["text", "truncated"])
def test_broken_checkpoint_is_one_line_exit_2_and_nothing_written(case, weights, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint\n" if case == "text" else weights.read_bytes()[:100_000])
    cmd = [sys.executable, str(ROOT / "predict.py"), VAL, "--weights", bad, "--project", tmp_path / "runs"]
    r = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.splitlines() == [f"predict.py: error: weights '{bad}': not a PyTorch checkpoint, or truncated "
                                     "(no zip archive ends this file)"]
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_onnx_of_another_size_runs_at_its_own_size_with_a_warning(weights, tmp_path):
    shutil.copy(weights, tmp_path / "m.pt")
    export = [sys.executable, "-m", "detector.export", str(tmp_path / "m.pt"), "--imgsz", "64"]
    assert subprocess.run(export, capture_output=True, cwd=ROOT, timeout=300).returncode == 0
    cmd = [sys.executable, str(ROOT / "predict.py"), str(VAL), "--weights", str(tmp_path / "m.onnx"), "--imgsz", "96",
           "--project", str(tmp_path), "--name", "onnx", "--save-txt", "--conf", "1e-5"]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stderr.splitlines() == [f"predict.py: warning: weights '{tmp_path / 'm.onnx'}': exported for a fixed "
                                     "input of 64x64; predicting at that size, not --imgsz 96"]
    assert "summary: 4 ok, 0 failed" in r.stdout and len(list((tmp_path / "onnx/labels").glob("*.txt"))) == 4


def test_a_file_that_fails_midway_is_reported_and_the_rest_go_on(inputs, weights, tmp_path, capsys, monkeypatch):
    """Failures nobody foresaw: a decoder raising on one image, the predictor raising on another."""
    from ultralytics.models.yolo.detect import DetectionPredictor

    folder = tmp_path / "three"
    folder.mkdir()
    for name in ("a.jpg", "b.jpg", "c.jpg", "d.jpg"):
        shutil.copy(inputs / "good_a.jpg", folder / name)
    read, postprocess = sources.read_image, DetectionPredictor.postprocess

    def read_image(path):
        if path.endswith("b.jpg"):
            raise cv2.error("decoder exploded")
        return read(path)

    def explode_on_c(self, preds, img, orig_imgs):
        if self.batch[0][0].endswith("c.jpg"):
            raise RuntimeError("kaboom")
        return postprocess(self, preds, img, orig_imgs)

    monkeypatch.setattr(sources, "read_image", read_image)
    monkeypatch.setattr(DetectionPredictor, "postprocess", explode_on_c)
    code, out, err = run_main([folder, "--weights", weights, "--project", tmp_path, "--name", "out"], capsys)
    assert code == 1, out + err
    assert err.splitlines() == [f"predict.py: error: source '{folder / 'b.jpg'}': cannot decode it (error: decoder "
                                "exploded); skipped",
                                f"predict.py: error: source '{folder / 'c.jpg'}': prediction failed (RuntimeError: "
                                "kaboom); skipped"]
    assert "summary: 2 ok, 2 failed" in out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.jpg", "d.jpg"]


def test_truncated_jpeg_is_found_also_where_opencv_fills_it_in(inputs, monkeypatch):
    """OpenCV 4 decodes a truncated JPEG with grey where data is missing; PIL then tells (OpenCV 5 returns None)."""
    monkeypatch.setattr(sources, "OPENCV_FILLS_TRUNCATED_JPEG", True)
    with pytest.raises(sources.BadInput, match="truncated JPEG"):
        sources.read_image(str(inputs / "truncated.jpg"))
    assert sources.read_image(str(inputs / "good_a.jpg"))[0].ndim == 3


def test_large_images_are_decoded_reduced_and_too_large_ones_refused(inputs, monkeypatch):
    """The limits scaled down to a 640x480 image: 1/2 scale above FULL_RES_PIXELS, refused above MAX_PIXELS."""
    path = str(inputs / "good_a.jpg")
    h, w = cv2.imread(path).shape[:2]
    monkeypatch.setattr(sources, "FULL_RES_PIXELS", w * h // 3)
    im, size = sources.read_image(path)
    assert im.shape[:2] == ((h + 1) // 2, (w + 1) // 2) and size == (w, h)
    monkeypatch.setattr(sources, "MAX_PIXELS", w * h - 1)
    with pytest.raises(sources.BadInput, match=rf"too large: {w}x{h} \(0.3 MP\), above the limit"):
        sources.read_image(path)
