#!/usr/bin/env bash
# Everything a GPU session carries, built here from the repository alone (about 10 minutes on
# 2 cores): the vLLM site folder and nixl parts (prepare-vllm.sh), the LMCache part
# (prepare-lmcache.sh), the stripped release binary, and the carried parts q1, q2, ... (as
# few as fit beside the working tree: bundle.sh)
# (bundle.sh; with GPU_DIR/compile-cache.tar.xz if an earlier machine's `gpu-apply.sh
# save-cache` left one there). Parts already built are kept; the binary is always rebuilt.
# Usage: prepare.sh [GPU_DIR]   (default .gpu, which .git/info/exclude should list)
set -euo pipefail
cd "$(dirname "$0")/../.."
gpu=${1:-.gpu}
here=benches/gpu
if [ ! -d "$gpu/p1" ] || [ ! -d "$gpu/p4" ]; then
  "$here/prepare-vllm.sh" "$gpu"
fi
if [ ! -d "$gpu/p5" ]; then
  "$here/prepare-lmcache.sh" "$gpu"
fi
cargo build --release --locked
strip -o "$gpu/vbench-strip" target/release/vbench
"$here/bundle.sh" "$gpu" "$gpu/vbench-strip"
