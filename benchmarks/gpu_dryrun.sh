#!/usr/bin/env bash
# The GPU run rehearsed on this CPU machine (issue 24): gpu_prepare.sh in a copy of this checkout,
# then the device calls it wrote (.gpu/COMMANDS), in order, in a second copy made as the device
# tool makes it (tracked and untracked-not-ignored files, plus each call's carried paths), with
# ONNXSTYLE_GPU_DRYRUN=1: CPU provider, small sizes. Nothing is sent anywhere.
#
#   bash benchmarks/gpu_dryrun.sh [all]     # default: the part calls and the one that unpacks and
#                                           # runs quick; all: every call, each later section too
#
# The onnxruntime packed is this machine's own (its CPU parts, for this Python), put in pack.sh's
# cache under the name of the GPU build, so the pack, the checksums, the unpack and env.sh are the
# real ones without a download. /tmp/gpu (unpack.sh's fixed folder) is emptied first.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-quick}
PY=${PYTHON:-python3}
shared=../shared/gpu  # beside the checkout; from a git worktree, beside its main checkout
[[ -d $shared ]] || shared=$(git rev-parse --path-format=absolute --git-common-dir)/../../shared/gpu
PACK=$(cd "${GPU_PACK_DIR:-$shared}" && pwd)/pack.sh
say() { printf '[gpu_dryrun] %s\n' "$*"; }
STAGE=$(mktemp -d /tmp/onnxstyle-gpu-dryrun.XXXXXX)
trap 'rm -rf "$STAGE"' EXIT
copy_tree() {  # the checkout as the device tool sends it: tracked and untracked-not-ignored files
  (git ls-files -z; git ls-files -z -o --exclude-standard) | xargs -0 -r -I{} sh -c '[ ! -e "$1" ] || echo "$1"' _ {} \
    | tar -cf - -T - | tar -xf - -C "$1"
}

# 1. The preparing checkout: a copy made a repository of its own (pack.sh records .gpu/ in its
#    .git folder), with the graphs already made here (ignored: they go to prepare, not the device).
mkdir -p "$STAGE/src/models" "$STAGE/dev" "$STAGE/cache"
copy_tree "$STAGE/src"
(cd "$STAGE/src" && git init -q && git add -A && git -c user.name=dryrun -c user.email=dryrun@localhost \
   commit -qm "dry run" --no-verify)
shopt -s nullglob  # a fresh clone (CI) has none: gpu_prepare.sh exports them
for f in models/vgg19_gatys.*; do [[ $f == *.static-* ]] || cp -P "$f" "$STAGE/src/models/"; done
shopt -u nullglob
ver=$("$PY" -c "import onnxruntime as o; print(o.__version__)")
site=$("$PY" -c "import onnxruntime as o, os; print(os.path.dirname(os.path.dirname(o.__file__)))")
say "packing this machine's onnxruntime $ver (CPU parts) under the GPU build's name"
(cd "$site" && tar -cf - --exclude='libonnxruntime_providers_cuda.so' --exclude='libonnxruntime_providers_tensorrt.so' \
   onnxruntime onnxruntime*.dist-info | xz -T1 -0 > "$STAGE/cache/ort-$ver-cp312.tar.xz")
(cd "$STAGE/src" && ONNXSTYLE_COMMIT=dryrun GPU_PACK="$PACK" GPU_PACK_CACHE="$STAGE/cache" ORT_VERSION=$ver \
   PYTHON="$PY" bash benchmarks/gpu_prepare.sh)

# 2. The device: a bare copy of the tree; each call gets its carried paths, then runs its command.
(cd "$STAGE/src" && copy_tree "$STAGE/dev")
rm -rf /tmp/gpu
n=0
while IFS=$'\t' read -r carry cmd; do
  n=$((n + 1))
  [[ $MODE != all && $cmd == *gpu_check.sh* && $cmd != *unpack.sh* ]] && continue
  rm -rf "$STAGE/dev/.gpu"
  IFS=, read -ra paths <<< "${carry#-}"
  for p in "${paths[@]}"; do mkdir -p "$STAGE/dev/$(dirname "$p")"; cp -P "$STAGE/src/$p" "$STAGE/dev/$p"; done
  say "call $n: carry [$carry] command: $cmd"
  (cd "$STAGE/dev" && OUT="$STAGE/out$n" ONNXSTYLE_GPU_DRYRUN=1 PYTHON="$PY" bash -c "mkdir -p \$OUT; $cmd")
  last=$STAGE/out$n
done < "$STAGE/src/.gpu/COMMANDS"
results=$last/bench_cuda_cpu_dry_run.json  # what the last call's $OUT brings back
"$PY" - "$results" <<'EOF'
import json, sys
res = json.load(open(sys.argv[1]))
assert res["provider"][0]["provider"] == "CPUExecutionProvider", res["provider"]
print("[gpu_dryrun] ok: steps", [k for k in res if isinstance(res[k], list)], "errors", res["errors"])
sys.exit(1 if res["errors"] else 0)
EOF
rm -rf /tmp/gpu
