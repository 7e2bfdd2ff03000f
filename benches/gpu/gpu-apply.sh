#!/usr/bin/env bash
# On the GPU machine of the device tool: stage the vLLM site folder built as docs/real-vllm.md
# ("Staging") describes (carried in parts, one per call), assemble it in /tmp/vsite, install the
# nixl wheels (and, for the LMCache variants, the LMCache wheels) into it, and run `vbench apply`.
# APP is the carried folder that mirrors the repo: vbench.xz, experiments/, benches/gpu/.
# Usage (from the repository root, APP=.gpu/app):
#   gpu-apply.sh stage PART_DIR            copy one carried part into /root/stage
#   gpu-apply.sh assemble                  unpack /root/stage/vsite.part.* into /tmp/vsite
#   gpu-apply.sh nixl PART_DIR             install the nixl wheels of PART_DIR into /tmp/vsite
#   gpu-apply.sh lmcache PART_DIR          install the LMCache wheels of PART_DIR (prepare-lmcache.sh)
#                                          into /tmp/vsite, then import lmcache and its vLLM
#                                          adapter (fails if they do not import) and say whether
#                                          lmcache.cuda_ops loads (it need not: torch fallback)
#   gpu-apply.sh unbundle                  the parts of bundle.sh instead: join /root/stage/
#                                          bundle.part.*, unpack the site folder into /tmp/vsite,
#                                          install the nixl and LMCache wheels, check the
#                                          nixl and LMCache imports as `lmcache` does, put vbench at
#                                          /tmp/vbench (then APP=. runs the repo's manifests);
#                                          a compile cache in the bundle (bundle.sh) is unpacked
#                                          into $CACHE first, so the first vLLM start is warm
#   gpu-apply.sh save-cache                $CACHE (vbench's compile cache, `auto`) as
#                                          $OUT/compile-cache.tar.xz, for bundle.sh next time
#   gpu-apply.sh apply TAG VBENCH_ARGS...  vbench apply into /root/results; logs and a tarball of
#                                          the run folder into $OUT (TAG names them); the manifest
#                                          is $MANIFEST (default experiments/h200-distserve.toml);
#                                          APPLY_TIMEOUT_S (default 560) interrupts it (SIGINT:
#                                          teardown, results kept) before the call's limit
set -u
APP=${APP:-.gpu/app}
MANIFEST=${MANIFEST:-experiments/h200-distserve.toml}
STAGE=/root/stage
# target.compile_cache = "auto" on this machine (HOME=/root): see docs/real-vllm.md
CACHE=/root/.cache/vbench/compile
cmd=$1; shift
case $cmd in
stage)
  mkdir -p "$STAGE" && cp -a "$1"/. "$STAGE"/ && ls -la "$STAGE" && df -h /tmp | tail -1 ;;
assemble)
  t0=$SECONDS
  cat "$STAGE"/vsite.part.* > /tmp/vsite.tar.xz && python3 -c "import tarfile; tarfile.open('/tmp/vsite.tar.xz').extractall('/tmp')" || { echo "assemble failed"; exit 1; }
  rm -f /tmp/vsite.tar.xz
  echo "assembled in $((SECONDS-t0)) s" ;;
nixl)
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/vsite "$1"/nixl*.whl && echo "nixl installed" ;;
unbundle)
  t0=$SECONDS
  cat "$STAGE"/bundle.part.* > /root/bundle.tar && tar -xf /root/bundle.tar -C /root && rm -f /root/bundle.tar || { echo "unbundle failed"; exit 1; }
  python3 -c "import tarfile; tarfile.open('/root/b/vsite.tar.xz').extractall('/tmp')" || { echo "site folder failed"; exit 1; }
  python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open('/tmp/vbench','wb'))" /root/b/vbench.xz && chmod +x /tmp/vbench
  # The wheels travel unpacked and xz-packed (bundle.sh): zip each back, modes kept, for pip.
  if [ -f /root/b/wheels.tar.xz ]; then
    mkdir -p /root/b/wheels && tar -xJf /root/b/wheels.tar.xz -C /root/b/wheels \
      && python3 "$(dirname "$0")/rezip-wheels.py" /root/b/wheels /root/b || { echo "wheels failed"; exit 1; }
  fi
  if [ -f /root/b/compile-cache.tar.xz ]; then
    mkdir -p "$CACHE" && tar -xJf /root/b/compile-cache.tar.xz -C "$CACHE" \
      && echo "compile cache seeded: $(du -sh "$CACHE" | cut -f1) in $CACHE" || { echo "compile cache failed"; exit 1; }
  fi
  echo "unpacked in $((SECONDS-t0)) s"
  exec "$0" lmcache /root/b ;;
save-cache)
  [ -d "$CACHE" ] || { echo "no compile cache at $CACHE"; exit 1; }
  du -sh "$CACHE"/* && tar -C "$CACHE" -cJf "$OUT/compile-cache.tar.xz" . && ls -la "$OUT/compile-cache.tar.xz" ;;
lmcache)
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/vsite "$1"/*.whl && echo "wheels installed: $(cd "$1" && echo *.whl)" || exit 1
  # the compiled lmcache.cuda_ops was built against another torch: report, do not fail
  PYTHONPATH=/tmp/vsite python3 -c "
import importlib, sys
ok = True
for m in ('nixl._api', 'lmcache', 'lmcache.integration.vllm.vllm_v1_adapter', 'lmcache.lmcache_native', 'lmcache.cuda_ops'):
    try:
        mod = importlib.import_module(m)
        print('import', m, 'ok', getattr(mod, '__version__', ''), flush=True)
    except Exception as e:
        print('import', m, 'FAILED', type(e).__name__, str(e)[:300], flush=True)
        ok = ok and m in ('lmcache.lmcache_native', 'lmcache.cuda_ops')
sys.exit(0 if ok else 1)" ;;
apply)
  tag=$1; shift
  export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 UCX_NET_DEVICES=all
  export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1 VLLM_HOST_IP=127.0.0.1
  export PYTHONUNBUFFERED=1
  [ -x /tmp/vbench ] || python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open('/tmp/vbench','wb'))" "$APP/vbench.xz"
  chmod +x /tmp/vbench
  { date -u; nvidia-smi; nvidia-smi --query-compute-apps=gpu_uuid,pid,used_memory --format=csv; } > "$OUT/$tag-nvidia-smi-before.txt" 2>&1
  t0=$SECONDS
  (cd "$APP" && timeout -s INT -k 30 "${APPLY_TIMEOUT_S:-560}" \
     /tmp/vbench apply "$MANIFEST" --results /root/results "$@") > "$OUT/$tag-apply.log" 2>&1
  rc=$?
  echo "vbench apply rc=$rc after $((SECONDS-t0)) s" | tee -a "$OUT/$tag-apply.log"
  { date -u; nvidia-smi; echo "compute apps:"; nvidia-smi --query-compute-apps=gpu_uuid,pid,used_memory --format=csv; echo "vllm/vbench processes left:"; ps -eo pid,pgid,etime,args | grep -E "vllm|vbench" | grep -v grep; } > "$OUT/$tag-nvidia-smi-after.txt" 2>&1
  tar -C /root/results -cJf "$OUT/$tag-run.tar.xz" . 2>/dev/null
  cat "$OUT/$tag-apply.log"; cat "$OUT/$tag-nvidia-smi-after.txt"
  exit $rc ;;
esac
