#!/usr/bin/env bash
# GPU checks for a machine with an NVIDIA GPU (the `run` device tool), prepared on a machine without one.
# Read-only towards the GPU: it never changes MIG mode, clocks, power limits or ECC, and never resets a GPU.
#
# It runs, against the real NVML:
#   1. tests/test_gpu.py and tests/test_gpu_component.py with MLSCOPE_TEST_REAL_NVML=1 (invariants, the real
#      exporter process), and tests/test_gpu_dcgm.py's real test (--names both: DCGM values equal MLScope's);
#   2. `python -m bench gpu` in every naming mode (mlscope, dcgm, both);
#   3. one scrape of each mode saved under $OUT, with the GPU's MIG and NVLink state (nvidia-smi, read-only).
#
# Python: $PYTHON if set, else .venv/bin/python if it runs, else a venv made here from wheels carried in
# .gpu-wheels/ (the device machine has no network). Prepare those here with
#   python3 -m pip download -d .gpu-wheels -c constraints.txt prometheus-client nvidia-ml-py psutil PyYAML bcrypt \
#       pytest requests
# (the wheels must match the device machine's Python: PyYAML's are per version) and run with carry [".gpu-wheels"]
# and a timeout of about 420 s:
#   bash bench/gpu_device_check.sh
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/mlscope-gpu-check}
mkdir -p "$OUT"
log() { echo "== $* ($(date -u +%T))"; }

PY=${PYTHON:-}
if [ -z "$PY" ] && .venv/bin/python -c "import prometheus_client, pynvml, yaml" 2>/dev/null; then
  PY=.venv/bin/python
fi
if [ -z "$PY" ]; then
  log "venv from .gpu-wheels"
  python3 -m venv /tmp/mlscope-gpu-venv && /tmp/mlscope-gpu-venv/bin/pip install -q --no-index \
    --find-links .gpu-wheels prometheus-client nvidia-ml-py psutil PyYAML bcrypt pytest requests || exit 2
  PY=/tmp/mlscope-gpu-venv/bin/python
fi
# `mlscope` is the code in exporters/ (pyproject's package-dir); without an install, a symlink does the same
SHIM=$(mktemp -d)
ln -s "$PWD/exporters" "$SHIM/mlscope"
export PYTHONPATH="$SHIM:$PWD:$PWD/tests${PYTHONPATH:+:$PYTHONPATH}"

log "GPUs"
nvidia-smi -L | tee "$OUT/gpus.txt"
nvidia-smi --query-gpu=index,name,driver_version,mig.mode.current,memory.total --format=csv | tee -a "$OUT/gpus.txt"
nvidia-smi nvlink -s > "$OUT/nvlink.txt" 2>&1 || true
"$PY" -c "import importlib.metadata as m; print('nvidia-ml-py', m.version('nvidia-ml-py'))" | tee -a "$OUT/gpus.txt"

log "tests against the real NVML"
MLSCOPE_TEST_REAL_NVML=1 MLSCOPE_TEST_SAVE_PROCESS_SCRAPE="$OUT/scrape-mlscope.txt" \
  MLSCOPE_TEST_SAVE_DCGM_SCRAPE="$OUT/scrape-both.txt" \
  timeout 240 "$PY" -m pytest -q -p no:cacheprovider -m "not integration" tests/test_gpu.py \
  tests/test_gpu_component.py tests/test_gpu_dcgm.py tests/test_gpu_nvml_api.py 2>&1 | tee "$OUT/tests.txt" | tail -25
tests_rc=${PIPESTATUS[0]}

log "bench, every naming mode"
MLSCOPE_BENCH_SCRAPES=${MLSCOPE_BENCH_SCRAPES:-150} MLSCOPE_BENCH_NAMES=mlscope,dcgm,both \
  timeout 200 "$PY" -m bench gpu 2>&1 | tee "$OUT/bench-gpu.txt"
bench_rc=${PIPESTATUS[0]}

log "done: tests rc=$tests_rc, bench rc=$bench_rc; files in $OUT"
[ "$tests_rc" = 0 ] && [ "$bench_rc" = 0 ]
