#!/usr/bin/env bash
# On a machine with registry access: build the parts that let vLLM 0.26.0 run on the GPU
# machine, which has torch 2.11.0+cu130 but no vLLM and no registry access (docs/real-vllm.md,
# "Staging"). Writes OUTDIR/p1..p3 (vsite.part.NN: an xz tarball of a pruned site folder, split
# at 55 MB) and OUTDIR/p4 (the nixl wheels). prepare-lmcache.sh writes p5; bundle.sh packs all
# p5 with the vbench binary into parts small enough to carry.
# Usage: prepare-vllm.sh OUTDIR   (3-4 minutes on 2 cores, mostly xz; needs a Python 3.12 to
# unpack the cp312 wheels: PY312, else pyenv's, else python3.12 on PATH)
set -euo pipefail
out=${1:?usage: prepare-vllm.sh OUTDIR}
here=$(cd "$(dirname "$0")" && pwd)
py312=${PY312:-$(ls -d "$HOME"/.pyenv/versions/3.12*/bin/python3 2>/dev/null | head -1)}
[ -x "${py312:-}" ] || py312=$(command -v python3.12 || true)
[ -x "${py312:-}" ] || { echo "prepare-vllm.sh: need a Python 3.12 (set PY312)" >&2; exit 1; }
w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
site=$w/vsite
# cp312 manylinux x86_64 wheels, whatever this machine is
plat=()
for p in manylinux_2_35 manylinux_2_34 manylinux_2_31 manylinux_2_28 manylinux_2_27 manylinux_2_24 \
  manylinux_2_17 manylinux2014 manylinux1; do
  plat+=(--platform "${p}_x86_64")
done
download() {
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp "${plat[@]}" "$@"
}
download -d "$w/whl" -r "$here/vllm-site-requirements.txt"
"$py312" -m pip install -q --no-deps --no-compile --target "$site" "$w"/whl/*.whl
# Large and unused by an H200 serving a small dense model: the FlashAttention-2 kernels (FA3
# serves sm90), DeepGEMM, the sm100 attention sources, test folders, byte code.
rm -f "$site/vllm/vllm_flash_attn/_vllm_fa2_C.abi3.so"
rm -rf "$site/vllm/third_party/fmha_sm100" "$site/vllm/third_party/deep_gemm"
find "$site" -name '*.pyc' -delete
find "$site" -name tests -type d -prune -exec rm -rf {} +
tar -cf - -C "$w" vsite | xz -9 -T0 > "$w/vsite.tar.xz"
split -b 55M -d "$w/vsite.tar.xz" "$w/vsite.part."
parts=("$w"/vsite.part.*)
if [ "${#parts[@]}" -ne 3 ]; then
  echo "prepare-vllm.sh: the site folder made ${#parts[@]} parts, bundle.sh expects 3" >&2
  exit 1
fi
rm -rf "$out"/p1 "$out"/p2 "$out"/p3 "$out"/p4
for i in 1 2 3; do
  mkdir -p "$out/p$i"
  mv "${parts[$((i - 1))]}" "$out/p$i/"
done
mkdir -p "$out/p4"
download -d "$out/p4" nixl==1.5.1 nixl-cu13==1.5.1
du -sh "$out"/p*
