#!/usr/bin/env bash
# Device check on a GPU machine: the validation package's own commands, run from this checkout's source
# (validation/src): gpu-doctor, mnist-benchmark (jax and torch backends, synthetic data, both modes, the
# batch-size sweep, GPU and CPU) and gpu-propagation (numpy and the GPU), in under 8 minutes; JSON, PNG and
# one log land in $OUT (8 files at most come back).
#
#   on the GPU machine (device tool): bash tests/device/run_device_check.sh
#       with carry [".cache/device-wheels"] filled by tests/device/fetch_wheels.sh (make device-wheels)
#   here, on a CPU, as a smoke test:  PYTHON=/path/to/venv/bin/python tests/device/run_device_check.sh --quick
#       (BACKENDS="tensorflow" where the Python has TensorFlow but neither jax nor torch)
#
# Exit 0 when every step exited 0, else 1 (the files are written either way).
set -uo pipefail

QUICK=0
if [[ "${1:-}" == "--quick" ]]; then QUICK=1; elif [[ $# -gt 0 ]]; then
    echo "usage: $0 [--quick]" >&2; exit 2
fi
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="${OUT:-$(mktemp -d /tmp/device-check.XXXXXX)}"
WHEELS="${DEVICE_WHEELS:-$ROOT/.cache/device-wheels}"
PY="${PYTHON:-python3}"
read -r -a BACKEND_LIST <<< "${BACKENDS:-jax torch}"
export PYTHONUNBUFFERED=1
# The package from source: the benchmark's worker processes inherit it
export PYTHONPATH="$ROOT/validation/src${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT"
LOG="$OUT/device_check.log"
exec > >(tee -a "$LOG") 2>&1
cd "$ROOT" || exit 2

# Step limits: 40 + 2 x 170 + 80 = 460 s at most, under the 8-minute goal with the install; each
# benchmark gives each of its two device workers 80 s so that it always finishes and writes its JSON.
if [[ $QUICK == 1 ]]; then
    DEVICE=auto
    BENCH_ARGS=(--quick)
    PROP_ARGS=(--quick)
else
    DEVICE=both   # a GPU machine: a GPU the backend does not see is a failure, not a CPU run
    BENCH_ARGS=()
    PROP_ARGS=()
fi
T_DOCTOR=40 T_BENCH=170 T_PROP=80 T_WORKER=80
START=$SECONDS
declare -a SUMMARY=()
FAILED=0

step() {  # step NAME LIMIT CMD... : run with a time limit, record the exit code
    local name=$1 limit=$2 t0=$SECONDS rc
    shift 2
    echo "=== $name (limit ${limit}s): $*"
    timeout --kill-after=10 "$limit" "$@"
    rc=$?
    echo "=== $name: exit $rc after $((SECONDS - t0)) s"
    SUMMARY+=("$name: exit $rc, $((SECONDS - t0)) s")
    [[ $rc == 0 ]] || FAILED=1
}

echo "=== device check $(date -u +%FT%TZ) on $(hostname), quick=$QUICK, backends=${BACKEND_LIST[*]}, OUT=$OUT"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version,pci.bus_id --format=csv
"$PY" -c 'import sys; print("python", sys.version.split()[0], sys.executable)'

# keras, namex, optree and nvidia-ml-py travel as wheels; install them aside, without touching the image.
if ! "$PY" -c 'import keras, pynvml' 2>/dev/null; then
    if compgen -G "$WHEELS/*.whl" >/dev/null; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/device-site "$WHEELS"/*.whl || { echo "wheel install failed"; exit 2; }
        export PYTHONPATH="$PYTHONPATH:/tmp/device-site"
    else
        echo "keras or nvidia-ml-py is not importable and $WHEELS holds no wheels:" \
             "run tests/device/fetch_wheels.sh and carry .cache/device-wheels" >&2
        exit 2
    fi
fi
"$PY" - <<'PYEOF'
import importlib
for name in ("gpu_stack_validation", "pynvml", "keras", "numpy", "jax", "torch", "cupy", "matplotlib",
             "tensorflow"):
    try:
        module = importlib.import_module(name)
        print(f"{name:<21}", getattr(module, "__version__", "present"))
    except Exception as exc:  # absent is information here, not an error
        print(f"{name:<21} absent ({type(exc).__name__})")
PYEOF

# The doctor exits 1 on a machine without TensorFlow's CUDA 12 libraries: its JSON is what counts here
step doctor "$T_DOCTOR" bash -c '"$1" -m gpu_stack_validation.doctor.cli --json --output "$2" > /dev/null; rc=$?; \
    "$1" -c "import json,sys; r=json.load(open(sys.argv[1])); print(r[\"verdict\"]); \
[print(\"  -\", f[\"check\"], f[\"message\"][:160]) for f in r[\"failures\"]]" "$2"; exit $rc' \
    _ "$PY" "$OUT/doctor.json"

for backend in "${BACKEND_LIST[@]}"; do
    step "benchmark-$backend" "$T_BENCH" "$PY" -m gpu_stack_validation.benchmark.cli --backend "$backend" \
        --data synthetic --device "$DEVICE" --mode both "${BENCH_ARGS[@]}" \
        --timeout "$T_WORKER" --output "$OUT/bench_$backend.json" --plot "$OUT/bench_$backend.png"
done

step propagation "$T_PROP" "$PY" -m gpu_stack_validation.propagation.cli --gpu auto "${PROP_ARGS[@]}" \
    --output "$OUT/propagation.json" --plot "$OUT/propagation.png"

echo "=== summary ($((SECONDS - START)) s in all)"
printf '  %s\n' "${SUMMARY[@]}"
ls -l "$OUT"
exit $FAILED
