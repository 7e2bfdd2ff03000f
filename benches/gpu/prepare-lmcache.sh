#!/usr/bin/env bash
# On a machine with registry access: download the LMCache 0.5.6 wheel and the few wheels its
# vLLM path needs that the GPU machine lacks, into OUTDIR/p5 (one carried part, next to the
# vLLM site folder parts p1..p3 and the nixl part p4 that prepare-vllm.sh builds).
# On the GPU machine `gpu-apply.sh lmcache PART_DIR` installs them into /tmp/vsite.
#
# What the path needs (LMCacheConnectorV1, kv_producer / kv_consumer, enable_pd with the nixl
# transfer channel, pd_backend_mode async, local_cpu false), found by reading the import graph
# from vLLM's lmcache_connector and lmcache.integration.vllm.vllm_v1_adapter and importing it:
#   - lmcache itself, installed with --no-deps: most of its Requires-Dist are for other paths
#     (redis, awscrt, cufile-python, google-cloud-bigtable, opentelemetry-exporter-prometheus,
#     setuptools_scm, ...) and are never imported on this one;
#   - aiofile (imported at module level by lmcache.v1.storage_backend.gds_backend, which the
#     storage_backend package always imports) and its dependency caio (pure Python, aiofile
#     pins caio~=0.12.0);
#   - everything else comes from the GPU machine's torch environment (numpy, numba, cupy-cuda13x,
#     cuda-bindings, aiofiles, sortedcontainers, prometheus_client, transformers, pyyaml, psutil,
#     ...) or from the vLLM site folder (msgspec, pyzmq, blake3, nvtx, opentelemetry-*, fastapi,
#     uvicorn, cachetools, cryptography) or from the nixl part (nixl, nixl-cu13).
# Everything is --no-deps and pinned, so nothing the GPU machine already has (numpy above all)
# is replaced.
# Usage: prepare-lmcache.sh OUTDIR   (writes OUTDIR/p5; PYTHON defaults to python3)
set -euo pipefail
out=${1:?usage: prepare-lmcache.sh OUTDIR}
PYTHON=${PYTHON:-python3}
part="$out/p5"
mkdir -p "$part"
# cp312 wheels for manylinux x86_64, whatever this machine is
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: \
  --python-version 3.12 --implementation cp --abi cp312 \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$part" \
  lmcache==0.5.6 aiofile==3.12.3 caio==0.12.10
ls -l "$part"
# one carried transfer holds at most 64 MiB; this part is about 18 MB
total=$(du -cb "$part"/*.whl | tail -1 | cut -f1)
echo "p5: $total bytes"
if [ "$total" -gt $((60 * 1000 * 1000)) ]; then
  echo "p5 is over 60 MB: split it" >&2
  exit 1
fi
