#!/usr/bin/env bash
# Pack everything a GPU run needs into carried parts of equal size: the vLLM site folder
# (p1..p3 of prepare-vllm.sh), the nixl wheels (p4), the LMCache wheels (p5,
# prepare-lmcache.sh) and the vbench binary. A call carries at most 64 MiB INCLUDING the
# working tree (about 15 MB), so p4 (59 MB) and p5 no longer fit beside it one per call; equal
# parts that leave room for the tree do (four while the tree is under about 14.5 MiB, then
# five; the wheels travel as their xz-packed contents). On the GPU machine: `gpu-apply.sh stage .gpu/qN` per call, then
# `gpu-apply.sh unbundle`. GPU_DIR/compile-cache.tar.xz, if there (`gpu-apply.sh save-cache`
# of an earlier machine), goes into the bundle too: unbundle seeds vbench's compile cache with
# it, which saves about two minutes per cold vLLM start of a shape it holds (STARTUP.md).
# Usage: bundle.sh GPU_DIR VBENCH_BINARY   (reads GPU_DIR/p1..p5, writes GPU_DIR/q1..)
set -euo pipefail
gpu=${1:?usage: bundle.sh GPU_DIR VBENCH_BINARY}
bin=${2:?usage: bundle.sh GPU_DIR VBENCH_BINARY}
w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
mkdir "$w/b"
cat "$gpu"/p1/vsite.part.* "$gpu"/p2/vsite.part.* "$gpu"/p3/vsite.part.* > "$w/b/vsite.tar.xz"
# The wheels (nixl, LMCache) are zips that barely compress; xz of their contents is far
# smaller (nixl: 59 MB -> 23 MB): one part fewer.
# unzip keeps each file's mode, tar carries it, `gpu-apply.sh unbundle` zips them back.
mkdir "$w/wheels"
for whl in "$gpu"/p4/*.whl "$gpu"/p5/*.whl; do
  d="$w/wheels/$(basename "$whl")"
  mkdir "$d" && unzip -q "$whl" -d "$d"
done
tar -C "$w/wheels" -cf - . | xz -9e -T0 > "$w/b/wheels.tar.xz"
rm -rf "$w/wheels"
xz -T0 -c "$bin" > "$w/b/vbench.xz"
if [ -f "$gpu/compile-cache.tar.xz" ]; then cp "$gpu/compile-cache.tar.xz" "$w/b/"; fi
tar -cf "$w/bundle.tar" -C "$w" b
rm -rf "$gpu"/q[0-9]*
# Equal parts, each small enough to travel beside the working tree (tracked and untracked files
# that git does not ignore: what a call carries) within 64 MiB, 1 MiB kept spare.
size=$(stat -c %s "$w/bundle.tar")
tree=$(cd "$(dirname "$0")/../.." && git ls-files -z --cached --others --exclude-standard \
  | xargs -0 stat -c %s 2>/dev/null | awk '{ s += $1 } END { print s + 0 }')
max=$(( (63 * 1024 * 1024) - tree ))
parts=$(( (size + max - 1) / max ))
(cd "$w" && split -b $(( (size + parts - 1) / parts )) -d bundle.tar bundle.part.)
n=0
for part in "$w"/bundle.part.*; do
  n=$((n + 1))
  mkdir -p "$gpu/q$n"
  mv "$part" "$gpu/q$n/"
done
du -sh "$gpu"/q*
