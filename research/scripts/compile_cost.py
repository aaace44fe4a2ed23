"""Does torch.compile (Ultralytics' `compile=True` in train) change the training step's cost ratio to YOLO11n?

    python research/scripts/compile_cost.py                     # a GPU: b64@640, AMP fp16
    python research/scripts/compile_cost.py --small --iters 4   # the CPU, reduced sizes (a smoke test)

Times the training step of `detector.bench` (forward and Ultralytics' loss under autocast, backward, SGD step) eager
and compiled the way Ultralytics 8.4's trainer compiles (`attempt_compile(model, mode=True)`; then the compiled model
runs on the images and the loss runs eagerly: compiling the loss fails on CUDA, Triton has no int8 atomic add for the
assigner's scatter_add), for YOLO11n (stock), YOLO12n on our SDPA layers and the default, interleaved, ratios to
eager YOLO11n. Prints each model's compile time (its first three compiled steps).
"""

from __future__ import annotations

import argparse
import time

import torch


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--small", action="store_true", help="160 px, batch 4")
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--models", default="YOLO11n;YOLO12n (ours, SDPA);yolo11n-an (ours)")
    p.add_argument("--loss", choices=("ultralytics", "detector"), default="ultralytics",
                   help="Ultralytics' v8DetectionLoss, or the same loss as `detector train` computes it")
    a = p.parse_args(argv)

    from ultralytics.cfg import get_cfg
    from ultralytics.utils.torch_utils import attempt_compile

    from detector import bench
    from detector.glue.loss import use_lean_loss

    device = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    imgsz, batch = (160, 4) if a.small else (640, 64)
    amp = device.type == "cuda"
    runners, compile_s = {}, {}
    for label in a.models.split(";"):
        for how in ("eager", "compiled"):
            model = bench.as_ultralytics_runs(bench.build(label, device).train(), device, training=True)
            model.args = get_cfg()
            if a.loss == "detector":
                use_lean_loss(model)
            run = attempt_compile(model, device=device, mode=True) if how == "compiled" else model
            opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
            targets = {"img": torch.randn(batch, 3, imgsz, imgsz, device=device),
                       **bench.random_targets(batch, model.model[-1].nc, device)}

            def step(model=model, run=run, opt=opt, targets=targets, compiled=how == "compiled"):
                opt.zero_grad(set_to_none=True)
                with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                    if compiled:  # the trainer's way: the compiled model on the images, the loss eager
                        loss = model.loss(targets, run(targets["img"]))[0].sum()
                    else:
                        loss = model(targets)[0].sum()  # DetectionModel.forward(dict) -> the loss
                loss.backward()
                opt.step()

            start = time.perf_counter()
            for _ in range(3):  # compiles the forward and backward graphs
                step()
            bench.sync(device)
            compile_s[label, how] = time.perf_counter() - start
            runners[label, how] = step
    timed = bench.interleaved(runners, device, a.iters, a.rounds, warmup=1)
    base = timed[bench.BASELINE, "eager"][0]
    print(f"{bench.where(device)}, training step b{batch}@{imgsz}, loss: {a.loss}, {'AMP fp16' if amp else 'fp32'}")
    print("| model | how | ms | spread | vs eager YOLO11n | first 3 steps s | peak MiB |\n|---|---|---|---|---|---|---|")
    for (label, how), (ms, spread) in timed.items():
        print(f"| {label} | {how} | {ms:.1f} | {spread or 0:.0%} | {ms / base:.2f}x | {compile_s[label, how]:.1f} | "
              f"{bench.peak_mib(runners[label, how], device) or '-'} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
