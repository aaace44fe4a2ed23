"""DDP training-throughput scaling (issue 14): train.py (our DetectorTrainer) on 1, 2, 4 GPUs, ours vs YOLO11n.

    python research/scripts/ddp_scaling.py --data-root /tmp/hardhat --out /tmp/scaling --gpus 1 2 4 \
        --models yolo11n-an.yaml yolo11n.yaml --resume-check --deadline 540 --json $OUT/scaling.json

Data: the train images listed `--repeat` times in a .txt file (so an epoch is long enough to time), val = the val
folder. Each run: `python train.py --model M --data D --epochs E --imgsz 640 --batch 32*G --device 0..G-1
--workers 8 cache=ram val=False plots=False` (Ultralytics' `batch` is the total under DDP). Every line and progress
frame train.py prints (rank 0 under DDP) is time-stamped here, relative to the launch of train.py.

Timers (results.csv's `time` is cumulative seconds from the start of the epoch loop, written after validation and
before the checkpoint save, so the last epoch's row includes the final-epoch validation; it is not used for the
last epoch):
  steady   = end of epoch E's training loop - end of epoch 1's loop (wrapper time stamps of the 100% progress
             frames): epochs 2..E, each with its per-epoch bookkeeping (checkpoint save), no validation
             (val=False; the final validation comes after the last loop ends). Throughput = (E-1) * images / steady.
  tqdm     = the sum of the progress bar's own elapsed times for epochs 2..E (training loops only), cross-check.
  csv_ep2  = results.csv time[2] - time[1] (epoch 2 incl. bookkeeping), cross-check.
  startup  = launch of train.py -> first progress frame of epoch 1 (printed after the first training step), and
             launch -> "Starting training" (set-up done: DDP spawn, model, dataset scan and RAM caching).

Profiling (issue 14: where the time goes; research/notes/benchmarks-log.md, "Where the cap is"):
  --step-timer   run train.py through research/scripts/step_timer.py: per rank and step, the wait for the next batch and the
                 step itself (results' step_timer: per rank and epoch 2..E, sums and medians)
  --sample-cpu   every second, the machine's busy share and the CPU used by the training processes and by their
                 loader workers (results' cpu: mean busy %, cores' worth used over epochs 2..E)
  --py-spy BIN   sample every process of the run with py-spy (idle included, non-blocking) into runs/<name>.pyspy.txt
  --ddp-kwargs   extra DistributedDataParallel arguments for every rank, JSON (with --step-timer): A/B of DDP settings

--resume-check: a 2-GPU run of --resume-model for 4 epochs is SIGKILLed (its process group and every descendant:
torch.distributed.run starts its workers in their own sessions) once weights/last.pt is saved after epoch 2, then
`train.py --resume <run>/weights/last.pt` runs; results.csv must end with exactly 4 epoch rows.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
T_START = time.time()
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# a progress frame: "  2/3   3.1G   1.234 ... : 45% ━━━─── 46/103 20.1it/s 2.3s<2.8s"
FRAME = re.compile(r"^\s*(\d+)/(\d+)\s+\S+G\s.*?:\s+(\d+)%\s+\S+\s+(\d+)/(\d+)\s+(.*)$")


def elapsed_s(text: str) -> float | None:
    """The progress bar's elapsed field: '5.0s', '1:05' or '1:01:05' (first token of the rest after the rate)."""
    for tok in text.split():
        tok = tok.split("<")[0]
        if re.fullmatch(r"\d+(\.\d+)?s", tok):
            return float(tok[:-1])
        if re.fullmatch(r"\d+(:\d\d){1,2}", tok):
            parts = [int(p) for p in tok.split(":")]
            return float(sum(p * 60 ** i for i, p in enumerate(reversed(parts))))
    return None


class Run:
    """train.py in a child process (its own process session), every output segment time-stamped from launch."""

    def __init__(self, cmd: list[str], log: Path, env: dict | None = None, sample_cpu: bool = False):
        self.cmd, self.log = cmd, log
        self.t0 = time.time()
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     start_new_session=True, env=env)
        self.segments: list[tuple[float, str]] = []
        self.cpu_samples: list[dict] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        if sample_cpu:
            threading.Thread(target=self._sample_cpu, daemon=True).start()

    def _sample_cpu(self, every: float = 1.0):
        """Every second: the machine's busy CPU share and the CPU seconds used so far by each process of the run,
        grouped as the training processes (train.py alone, or each DDP rank) and their DataLoader workers."""
        import psutil

        psutil.cpu_percent()
        while self.proc.poll() is None:
            time.sleep(every)
            try:  # the launched process itself (train.py, unless py-spy wraps it) and everything under it
                root = psutil.Process(self.proc.pid)
                procs = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                break
            info = {}
            for p in procs:
                try:
                    ct = p.cpu_times()
                    info[p.pid] = (p.ppid(), " ".join(p.cmdline()), ct.user + ct.system)
                except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                    continue
            # The training processes: the DDP ranks (Ultralytics' _temp_ file, children of torch.distributed.run), or
            # without DDP the train.py process itself; their children (forked, same command line) are the DataLoader
            # workers.
            parent_line = lambda pid: info.get(info[pid][0], (0, "", 0))[1]  # noqa: E731
            trainers = {pid for pid, (_, line, _) in info.items()
                        if "_temp_" in line and "distributed.run" not in line and "distributed.run" in parent_line(pid)}
            if not trainers:
                script = lambda line: "train.py" in line or "step_timer.py" in line  # noqa: E731
                trainers = {pid for pid, (_, line, _) in info.items() if script(line) and not script(parent_line(pid))}
            workers = {pid for pid, (ppid, _, _) in info.items() if ppid in trainers and pid not in trainers}
            ranks_s = sum(info[pid][2] for pid in trainers)
            workers_s = sum(info[pid][2] for pid in workers)
            other_s = sum(u for _, _, u in info.values()) - ranks_s - workers_s
            self.cpu_samples.append(dict(t=round(time.time() - self.t0, 2), busy=psutil.cpu_percent(),
                                         ranks_cpu_s=round(ranks_s, 2), workers_cpu_s=round(workers_s, 2),
                                         other_cpu_s=round(other_s, 2), n_ranks=len(trainers), n_workers=len(workers)))

    def _read(self):
        buf = b""
        with open(self.log, "w", encoding="utf-8") as f:
            f.write("# " + " ".join(self.cmd) + "\n")
            while True:
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                t = time.time() - self.t0
                if not chunk:
                    break
                buf += chunk
                parts = re.split(rb"[\r\n]", buf)
                buf = parts.pop()
                for p in parts:
                    text = ANSI.sub("", p.decode("utf-8", "replace")).rstrip()
                    if text:
                        self.segments.append((t, text))
                        f.write(f"{t:9.3f}\t{text}\n")
                f.flush()
            if buf:
                text = ANSI.sub("", buf.decode("utf-8", "replace")).rstrip()
                self.segments.append((time.time() - self.t0, text))
                f.write(f"{time.time() - self.t0:9.3f}\t{text}\n")

    def wait(self, timeout: float) -> int | None:
        try:
            rc = self.proc.wait(timeout=max(1.0, timeout))
        except subprocess.TimeoutExpired:
            kill_tree(self.proc.pid)
            rc = None
        self.thread.join(timeout=10)
        return rc


def kill_tree(pid: int) -> list[int]:
    """SIGKILL the process group of `pid` and every descendant of `pid` (DDP workers sit in their own sessions)."""
    import psutil

    try:
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        procs = []
    try:
        os.killpg(os.getpgid(pid), signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    for p in procs:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=15)
    return [p.pid for p in procs]


def leftover_pids() -> list[int]:
    """Processes still running train.py or an Ultralytics DDP temp file (none should survive a kill)."""
    import psutil

    found = []
    for p in psutil.process_iter():
        try:
            line = " ".join(p.cmdline() or [])
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        if p.pid != os.getpid() and ("train.py" in line or "_temp_" in line):
            found.append(p.pid)
    return found


def write_data(root: Path, out: Path, repeat: int) -> tuple[Path, int]:
    from ultralytics.data.utils import IMG_FORMATS

    out.mkdir(parents=True, exist_ok=True)
    images = sorted(str(p.resolve()) for p in (root / "images/train").iterdir()
                    if p.suffix[1:].lower() in IMG_FORMATS)
    listing = out / f"train{repeat}x.txt"
    listing.write_text("\n".join(images * repeat) + "\n")
    names = {0: "head", 1: "helmet", 2: "person"} if "hardhat" in root.name else None
    if names is None:
        import yaml

        names = yaml.safe_load(next(root.glob("*.yaml")).read_text())["names"]
    val = "images/val" if (root / "images/val").exists() else "images/train"
    data = out / f"{root.name}{repeat}x.yaml"
    data.write_text(f"path: {root.resolve()}\ntrain: {listing}\nval: {val}\nnames: {json.dumps(names)}\n")
    return data, len(images) * repeat


def train_cmd(a, model: str, data: Path, gpus: int, name: str, epochs: int, profile: bool = False) -> list[str]:
    """train.py's command line; with `profile` (--step-timer / --py-spy), run through research/scripts/step_timer.py and/or
    under py-spy (every process of the run sampled, idle time included, one raw file of stacks)."""
    device = "cpu" if a.cpu else ",".join(str(i) for i in range(gpus))
    script = ["train.py"]
    if profile and a.step_timer:
        script = ["research/scripts/step_timer.py", str(a.out / "runs" / f"{name}.steps")]
    wrap = []
    if profile and a.py_spy:
        wrap = [a.py_spy, "record", "--subprocesses", "--idle", "--threads", "--nonblocking", "-r", str(a.py_spy_rate),
                "--format", "raw", "-o", str(a.out / "runs" / f"{name}.pyspy.txt"), "--"]
    return [*wrap, sys.executable, *script, "--model", model, "--data", str(data), "--epochs", str(epochs),
            "--imgsz", str(a.imgsz), "--batch", str(a.batch_per_gpu * max(gpus, 1)), "--device", device,
            "--workers", str(a.workers), "--project", str(a.out / "runs"), "--name", name, "--seed", "0",
            f"cache={a.cache}", "val=False", "plots=False", "exist_ok=True", *a.train_arg]


def csv_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path) as f:
        return [{k.strip(): v.strip() for k, v in r.items()} for r in csv.DictReader(f)]


def analyse(run: Run, rc, run_dir: Path, images: int, epochs: int) -> dict:
    frames = {}  # epoch -> list of (t, n, total, elapsed)
    t_setup = None
    for t, text in run.segments:
        if t_setup is None and "Starting training for" in text:
            t_setup = t
        m = FRAME.match(text)
        if m and int(m[2]) == epochs:
            frames.setdefault(int(m[1]), []).append((t, int(m[4]), int(m[5]), elapsed_s(m[6])))
    ends = {e: next((f for f in fs if f[1] >= f[2]), None) for e, fs in frames.items()}
    first = frames.get(1, [None])[0]
    rows = csv_rows(run_dir / "results.csv")
    times = [float(r["time"]) for r in rows]
    res = dict(rc=rc, wall_s=round(time.time() - run.t0, 1), csv_epochs=[int(float(r["epoch"])) for r in rows],
               csv_time=times, setup_s=t_setup, first_step_s=first[0] if first else None,
               loop_end_s={e: f[0] for e, f in ends.items() if f}, tqdm_elapsed_s={e: f[3] for e, f in ends.items() if f},
               batches_per_epoch=ends[1][2] if ends.get(1) else None, images_per_epoch=images)
    if ends.get(1) and ends.get(epochs):
        steady = ends[epochs][0] - ends[1][0]
        res["steady_s"] = round(steady, 3)
        res["img_per_s"] = round((epochs - 1) * images / steady, 1)
    tq = [ends[e][3] for e in range(2, epochs + 1) if ends.get(e) and ends[e][3] is not None]
    if len(tq) == epochs - 1:
        res["tqdm_img_per_s"] = round((epochs - 1) * images / sum(tq), 1)
    if len(times) >= 2:
        res["csv_ep2_s"] = round(times[1] - times[0], 3)
        res["csv_ep2_img_per_s"] = round(images / (times[1] - times[0]), 1)
    if first and ends.get(1):  # launch -> end of epoch 1, minus epoch 1's training loop
        res["startup_alt_s"] = round(ends[1][0] - (ends[1][3] or 0), 2)
    if run.cpu_samples and ends.get(1) and ends.get(epochs):
        res["cpu"] = cpu_window(run.cpu_samples, ends[1][0], ends[epochs][0])
    steps = run_dir.parent / f"{run_dir.name}.steps"
    if steps.is_dir():
        res["step_timer"] = step_summary(steps)
    return res


def cpu_window(samples: list[dict], t0: float, t1: float) -> dict:
    """CPU use between two times of a run (epochs 2..E): the machine's mean busy share, and cores' worth of CPU
    used by the training processes (ranks) and by their DataLoader workers."""
    inside = [s for s in samples if t0 <= s["t"] <= t1]
    if len(inside) < 2:
        return {}
    a, b = inside[0], inside[-1]
    dt = b["t"] - a["t"]
    return dict(window_s=round(dt, 1), machine_busy_pct=round(sum(s["busy"] for s in inside[1:]) / (len(inside) - 1), 1),
                ranks_cores=round((b["ranks_cpu_s"] - a["ranks_cpu_s"]) / dt, 2), n_ranks=b["n_ranks"],
                workers_cores=round((b["workers_cpu_s"] - a["workers_cpu_s"]) / dt, 2), n_workers=b["n_workers"],
                other_cores=round((b["other_cpu_s"] - a["other_cpu_s"]) / dt, 2))


def step_summary(folder: Path) -> dict:
    """research/scripts/step_timer.py's per-rank files: per rank and epoch (2..E), steps, seconds waiting for batches and in
    steps, and the median of each in ms."""
    import statistics

    out = {}
    for f in sorted(folder.glob("rank*.jsonl")):
        for line in f.read_text().splitlines():
            d = json.loads(line)
            if d["epoch"] < 2 or not d["steps"]:
                continue
            out[f"rank{d['rank']}_ep{d['epoch']}"] = dict(
                steps=d["steps"], wait_s=d["wait_s"], step_s=d["step_s"],
                wait_med_ms=round(statistics.median(d["wait_ms"]), 2) if d["wait_ms"] else None,
                step_med_ms=round(statistics.median(d["step_ms"]), 2),
                wait_p90_ms=round(sorted(d["wait_ms"])[int(0.9 * (len(d["wait_ms"]) - 1))], 2) if d["wait_ms"] else None)
    return out


def table(results: list[dict]) -> str:
    lines = ["| model | GPUs | batch total | images/s (steady, epochs 2-E) | speed-up vs 1 GPU | efficiency | "
             "start-up s (launch -> first step) | set-up s (launch -> 'Starting training') | images/s (tqdm) | "
             "images/s (csv epoch 2) | wall s | rc |", "|---" * 12 + "|"]
    for r in results:
        base = next((b for b in results if b["model"] == r["model"] and b["gpus"] == 1 and b.get("img_per_s")), None)
        sp = r.get("img_per_s") / base["img_per_s"] if base and r.get("img_per_s") else None
        f = lambda x, d=1: "-" if x is None else f"{x:.{d}f}"  # noqa: E731
        lines.append(f"| {r['model']} | {r['gpus']} | {r['batch']} | {f(r.get('img_per_s'))} | "
                     f"{f(sp, 2)}{'x' if sp else ''} | {f(sp / r['gpus'] if sp else None, 2)} | "
                     f"{f(r.get('first_step_s'))} | {f(r.get('setup_s'))} | {f(r.get('tqdm_img_per_s'))} | "
                     f"{f(r.get('csv_ep2_img_per_s'))} | {f(r.get('wall_s'))} | {r.get('rc')} |")
    return "\n".join(lines)


def left() -> float:
    return ARGS.deadline - (time.time() - T_START)


def save(results, resume, extra=None):
    doc = dict(results=results, resume=resume, **(extra or {}))
    text = json.dumps(doc, indent=1, default=str)
    (ARGS.out / "scaling.json").write_text(text)
    md = "### DDP scaling\n\n" + table(results) + "\n\n### Resume check\n\n```\n" + json.dumps(resume, indent=1, default=str) + "\n```\n"
    (ARGS.out / "scaling.md").write_text(md)
    if ARGS.json:
        Path(ARGS.json).write_text(text)
        Path(ARGS.json).with_suffix(".md").write_text(md)


def resume_check(a, data: Path, images: int) -> dict:
    import psutil  # noqa: F401  (fail early if missing)

    name = "resume-g2"
    run_dir = a.out / "runs" / name
    epochs = 4
    out = dict(steps=[])
    gpus = 1 if a.cpu else 2
    run = Run(train_cmd(a, a.resume_model, data, gpus, name, epochs), a.out / "runs" / f"{name}.tlog")
    killed_at = None
    while run.proc.poll() is None and left() > 30:
        rows = csv_rows(run_dir / "results.csv")
        last = run_dir / "weights" / "last.pt"
        if len(rows) >= 2 and last.exists() and last.stat().st_mtime >= (run_dir / "results.csv").stat().st_mtime:
            time.sleep(0.3)  # os.replace of the staged file is atomic; give the fsync'ed rename a moment anyway
            pids = kill_tree(run.proc.pid)
            killed_at = time.time() - run.t0
            out["steps"].append(f"SIGKILL at {killed_at:.1f}s after launch: results.csv had {len(rows)} rows "
                                f"(epochs {[r['epoch'] for r in rows]}), killed {len(pids)} processes")
            break
        time.sleep(0.2)
    rc = run.wait(timeout=30)
    survivors = leftover_pids() if killed_at else []
    out.update(first_rc=rc, killed=killed_at is not None, survivors_after_kill=survivors,
               rows_at_kill=[r["epoch"] for r in csv_rows(run_dir / "results.csv")])
    if killed_at is None:
        out["steps"].append(f"not killed: run ended rc={rc} or deadline ({left():.0f}s left)")
        return out
    try:
        import torch

        ck = torch.load(run_dir / "weights" / "last.pt", map_location="cpu", weights_only=False)
        out["last_pt_epoch_0based"] = ck.get("epoch")
        out["last_pt_has_optimizer"] = ck.get("optimizer") is not None
        del ck
    except Exception as e:  # noqa: BLE001
        out["last_pt_error"] = f"{type(e).__name__}: {e}"
    out["weights_files_at_kill"] = sorted(os.listdir(run_dir / "weights"))
    time.sleep(3)  # let the GPUs release the killed workers' memory
    cmd = [sys.executable, "train.py", "--resume", str(run_dir / "weights" / "last.pt")]
    run2 = Run(cmd, a.out / "runs" / f"{name}-resumed.tlog")
    rc2 = run2.wait(timeout=left() - 5)
    rows = csv_rows(run_dir / "results.csv")
    text = "\n".join(s for _, s in run2.segments)
    epochs_done = [int(float(r["epoch"])) for r in rows]
    out.update(resume_rc=rc2, resume_wall_s=round(time.time() - run2.t0, 1), csv_epochs_after=epochs_done,
               csv_time_after=[r["time"] for r in rows],
               resuming_line=next((s for _, s in run2.segments if "Resuming training" in s), None),
               completed_line=next((s for _, s in run2.segments if "epochs completed" in s), None),
               best_exists=(run_dir / "weights" / "best.pt").exists(),
               weights_files_after=sorted(os.listdir(run_dir / "weights")),
               errors=[s for _, s in run2.segments if re.search(r"Error|Traceback|error:", s)][:10])
    try:
        import torch

        ck = torch.load(run_dir / "weights" / "last.pt", map_location="cpu", weights_only=False)
        out["final_last_pt_epoch"] = ck.get("epoch")
        out["final_last_pt_has_optimizer"] = ck.get("optimizer") is not None
    except Exception as e:  # noqa: BLE001
        out["final_last_pt_error"] = f"{type(e).__name__}: {e}"
    out["ok"] = bool(rc2 == 0 and epochs_done == list(range(1, epochs + 1)) and out["best_exists"])
    out["log_tail"] = text[-1500:]
    return out


def main(argv=None) -> int:
    global ARGS
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", type=Path, required=True)
    p.add_argument("--out", type=Path, default=ROOT / "runs/scaling")
    p.add_argument("--models", nargs="+", default=["yolo11n-an.yaml", "yolo11n.yaml"])
    p.add_argument("--gpus", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--repeat", type=int, default=4, help="train images listed this many times per epoch")
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--batch-per-gpu", type=int, default=32)
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--cache", default="ram")
    p.add_argument("--deadline", type=float, default=540, help="seconds: skip what would not finish by then")
    p.add_argument("--resume-check", action="store_true")
    p.add_argument("--resume-model", default="yolo11n-an.yaml")
    p.add_argument("--resume-min-s", type=float, default=150, help="time left needed to start the resume check")
    p.add_argument("--only-resume", action="store_true")
    p.add_argument("--cpu", action="store_true", help="CPU smoke test (device cpu, one process)")
    p.add_argument("--json", default=None, help="also write the JSON (and .md beside it) here")
    p.add_argument("--sample-cpu", action="store_true", help="record CPU use each second (machine, ranks, workers)")
    p.add_argument("--step-timer", action="store_true", help="per-step data-wait / step times on every rank "
                   "(research/scripts/step_timer.py)")
    p.add_argument("--py-spy", default=None, help="path of a py-spy binary: sample every process of each run")
    p.add_argument("--py-spy-rate", type=int, default=20, help="py-spy samples per second")
    p.add_argument("--ddp-kwargs", default=None, help="JSON of extra DistributedDataParallel arguments for every "
                   "rank (needs --step-timer), e.g. '{\"static_graph\": true}'")
    p.add_argument("--train-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="an extra Ultralytics setting for every run, e.g. compile=True (repeatable)")
    p.add_argument("--tag", default="", help="suffix for the run names (several configurations in one --out)")
    ARGS = a = p.parse_args(argv)
    if a.ddp_kwargs:
        if not a.step_timer:
            p.error("--ddp-kwargs: the ranks read it through research/scripts/step_timer.py; add --step-timer")
        try:
            if not isinstance(json.loads(a.ddp_kwargs), dict):
                raise ValueError("not an object")
        except ValueError as e:
            p.error(f"--ddp-kwargs: not a JSON object of DistributedDataParallel arguments ({e})")
    if a.py_spy and not (Path(a.py_spy).is_file() and os.access(a.py_spy, os.X_OK)):
        p.error(f"--py-spy: '{a.py_spy}' is not an executable file")
    a.out = a.out.resolve()
    (a.out / "runs").mkdir(parents=True, exist_ok=True)
    data, images = write_data(a.data_root, a.out, a.repeat)
    print(f"data {data}: {images} train images per epoch", flush=True)
    results, resume = [], {"skipped": "not requested"}
    longest = 0.0
    for g in ([] if a.only_resume else a.gpus):
        for model in a.models:
            if longest and left() < longest * 1.3 + 10:
                print(f"skip {model} x{g}: {left():.0f}s left, longest run took {longest:.0f}s", flush=True)
                results.append(dict(model=model, gpus=g, batch=a.batch_per_gpu * g, skipped=True))
                continue
            name = f"{Path(model).stem}-g{g}{a.tag}"
            env = {**os.environ, "DDP_KWARGS": a.ddp_kwargs} if a.ddp_kwargs else None
            run = Run(train_cmd(a, model, data, g, name, a.epochs, profile=True), a.out / "runs" / f"{name}.tlog",
                      env=env, sample_cpu=a.sample_cpu)
            rc = run.wait(timeout=left() - 5)
            r = dict(model=model, gpus=g, batch=a.batch_per_gpu * g, **analyse(run, rc, a.out / "runs" / name,
                                                                                  images, a.epochs))
            longest = max(longest, r["wall_s"])
            results.append(r)
            print(json.dumps(r, default=str), flush=True)
            save(results, resume, dict(images_per_epoch=images, repeat=a.repeat, epochs=a.epochs))
    if a.resume_check:
        if left() >= a.resume_min_s:
            resume = resume_check(a, data, images)
        else:
            resume = {"skipped": f"only {left():.0f}s left before the deadline"}
    save(results, resume, dict(images_per_epoch=images, repeat=a.repeat, epochs=a.epochs))
    print(table(results), flush=True)
    print(json.dumps(resume, indent=1, default=str), flush=True)
    return 0


ARGS = None
if __name__ == "__main__":
    sys.exit(main())
