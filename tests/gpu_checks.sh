#!/usr/bin/env bash
# The GPU half of the test suite and the GPU benchmark, in one go, for a machine with a CUDA GPU (the device
# machine: see ../shared/docs/GPU.md for carrying Ultralytics there as wheels). Writes into ${OUT:-runs/gpu_checks}:
#   gpu_tests.log   pytest -m gpu (GPU-marked tests: fused kernels in training, bf16 training, numerics)
#   bench.md/json   python -m detector.bench --only attention,train,infer (H100-size shapes)
#     bash tests/gpu_checks.sh            # both, about 6-8 minutes on an H100
#     bash tests/gpu_checks.sh tests      # or only one of them: tests | bench
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-runs/gpu_checks}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 YOLO_OFFLINE=1
what=${1:-all}
status=0
if [[ $what == all || $what == tests ]]; then
  python3 -m pytest -q -m gpu -p no:cacheprovider -rfxX tests 2>&1 | tail -60 > "$out/gpu_tests.log"
  status=${PIPESTATUS[0]}
  tail -25 "$out/gpu_tests.log"
fi
if [[ $what == all || $what == bench ]]; then
  python3 -m detector.bench --only attention,train,infer --iters 15 --json "$out/bench.json" > "$out/bench.md" 2>&1 \
    || status=1
  grep -A 40 "Training step" "$out/bench.md" | head -60
fi
exit $status
