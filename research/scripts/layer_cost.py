"""Where a training step's GPU time goes, layer by layer: forward and backward of each top-level layer, the loss, the
optimizer, for YOLO11n and the default (or --models), b64@640 AMP fp16 channels-last, as Ultralytics' trainer runs.

    python research/scripts/layer_cost.py                    # a GPU
    python research/scripts/layer_cost.py --small --iters 2  # the CPU, reduced sizes (a smoke test)

Timing is by CUDA events recorded on the stream (no synchronisation between them): a layer's forward is the time
between the events before and after it; its backward, between the moments the gradient of its output and of the
previous layer's output arrive (a skip connection makes that attribution approximate: a layer's backward also
holds whatever autograd ran in between). The loss is `detector train`'s (detector.glue.loss). Medians over --iters.
"""

from __future__ import annotations

import argparse
import statistics

import torch


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--small", action="store_true", help="160 px, batch 4")
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--models", default="YOLO11n;yolo11n-an (ours)")
    p.add_argument("--chunk-elements", type=int, default=None,
                   help="detector.glue.loss.CHUNK_ELEMENTS (the class loss's chunk: fewer, larger chunks launch "
                        "fewer kernels and keep more memory)")
    p.add_argument("--deterministic", action="store_true", help="as Ultralytics' trainer runs by default "
                                                                   "(detector.bench.deterministic_as_ultralytics_trains)")
    p.add_argument("--kernels", default=None, help="also profile 3 steps per model and write every GPU kernel's "
                                                   "calls and time to this JSON file")
    a = p.parse_args(argv)

    from ultralytics.cfg import get_cfg

    from detector import bench
    from detector.glue import loss as lean_loss
    from detector.glue.loss import HOST_TARGETS, TARGET_KEYS, keep_host_targets, use_lean_loss

    if a.chunk_elements:
        lean_loss.CHUNK_ELEMENTS = a.chunk_elements
    if a.deterministic:
        bench.deterministic_as_ultralytics_trains()

    device = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    cuda = device.type == "cuda"
    imgsz, batch = (160, 4) if a.small else (640, 64)
    kernels = {}
    for label in a.models.split(";"):
        model = bench.as_ultralytics_runs(bench.build(label, device).train(), device, training=True)
        model.args = get_cfg()
        use_lean_loss(model)
        opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        on_host = bench.random_targets(batch, model.model[-1].nc, torch.device("cpu"))
        keep_host_targets(on_host)  # as DetectorTrainer keeps them
        targets = {"img": torch.randn(batch, 3, imgsz, imgsz, device=device),
                   **{k: v.to(device) for k, v in on_host.items() if k in TARGET_KEYS},
                   HOST_TARGETS: on_host[HOST_TARGETS]}
        marks: dict[str, list] = {}

        def mark(name):
            if cuda:
                e = torch.cuda.Event(enable_timing=True)
                e.record()
                marks.setdefault(name, []).append(e)

        def before(m, args):
            mark(f"f{m.i}<")

        def after(m, args, out):
            mark(f"f{m.i}>")
            for t in bench.tensors(out):
                if t.requires_grad:
                    t.register_hook(lambda g, i=m.i: mark(f"b{i}"))
                    break

        hooks = [m.register_forward_pre_hook(before) for m in model.model]
        hooks += [m.register_forward_hook(after) for m in model.model]

        def step():
            opt.zero_grad(set_to_none=True)
            mark("start")
            with torch.autocast(device.type, dtype=torch.float16, enabled=cuda):
                preds = model(targets["img"])
                mark("forward")
                loss = model.loss(targets, preds)[0].sum()
            mark("loss")
            loss.backward()
            mark("backward")
            opt.step()
            mark("step")

        for _ in range(3):
            step()
        marks.clear()
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        for _ in range(a.iters):
            step()
        for h in hooks:
            h.remove()
        if cuda:
            print_table(label, model, marks, device, batch, imgsz)
        else:
            print(f"{label}: ran (CPU: no CUDA events to time)")
        if a.kernels:  # after the table: these steps record marks too
            from torch.profiler import ProfilerActivity, profile

            with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])) as prof:
                for _ in range(3):
                    step()
                if cuda:
                    torch.cuda.synchronize()
            kernels[label] = [dict(name=e.key, calls=e.count, device_ms=e.device_time_total / 1e3 / 3,
                                   cpu_ms=e.cpu_time_total / 1e3 / 3) for e in prof.key_averages()]
    if a.kernels:
        import json

        with open(a.kernels, "w") as f:
            json.dump(kernels, f)
    return 0


def print_table(label, model, marks, device, batch, imgsz) -> None:
    """The step's phases and each top-level layer's forward and (approximate) backward, medians over the steps."""
    from detector import bench

    torch.cuda.synchronize()

    def ms(a_, b_):
        return statistics.median(x.elapsed_time(y) for x, y in zip(marks[a_], marks[b_]))

    n = len(model.model)
    print(f"\n### {label}, {bench.where(device)}, b{batch}@{imgsz}, AMP fp16, channels-last\n")
    print(f"forward {ms('start', 'forward'):.2f} ms, loss {ms('forward', 'loss'):.2f}, "
          f"backward {ms('loss', 'backward'):.2f}, optimizer {ms('backward', 'step'):.2f}, "
          f"step {ms('start', 'step'):.2f}; peak {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB\n")
    print("| layer | type | forward ms | backward ms (approx.) |\n|---|---|---|---|")
    for i, m in enumerate(model.model):
        # backward of layer i: from its output's gradient to the previous layer's (the head: from the loss's end)
        start = f"b{i}" if i < n - 1 else "loss"
        end = f"b{i - 1}" if i > 0 else "backward"
        back = ms(start, end) if start in marks and end in marks else float("nan")
        print(f"| {i} | {type(m).__name__} | {ms(f'f{i}<', f'f{i}>'):.2f} | {back:.2f} |")


if __name__ == "__main__":
    raise SystemExit(main())
