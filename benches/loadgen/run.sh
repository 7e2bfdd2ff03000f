#!/usr/bin/env bash
# Accuracy and capacity benchmark of vbench's load generator (and of `vllm bench serve`, when
# installed) against a server whose timing is known: fixed TTFT, fixed inter-token gap, and a
# log of what it really did per request. Client and server are pinned to separate cores.
#
# usage: benches/loadgen/run.sh [OUTDIR]
# env:   RATES="100 1000 2000 5000"   DURATION_S=10   TTFT_MS=20 GAP_MS=5 TOKENS=64
#        MAX_N=30000 (cap per rate)  MEMORY_N=100000 (0 skips the memory run)  MEMORY_RATE=1000
#        VLLM_BENCH=/path/to/vllm (default: $VLLM_CPU_ROOT/venv/bin/vllm, or `vllm` on PATH)
#        VLLM_RATES="100 1000"  CLIENT_CORE=0 SERVER_CORE=1  PORT=8199
#        NOSTAMP_RATES="1000" (also run vbench with --no-rx-timestamps at these rates, named
#        vbench+nostamps-RATE, to show what the kernel's receive stamps are worth)
#        NICE=-10 (as root, client and server run at this niceness so other tenants of a shared
#        machine disturb the measurement less; 0 disables)
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-/tmp/vbench-loadgen-$(date +%Y%m%d_%H%M%S)}
RATES=${RATES:-"100 1000 2000 3000 5000"}
VLLM_RATES=${VLLM_RATES-"100 1000"}
DURATION_S=${DURATION_S:-10}
TTFT_MS=${TTFT_MS:-20}; GAP_MS=${GAP_MS:-5}; TOKENS=${TOKENS:-64}
MAX_N=${MAX_N:-30000}; MEMORY_N=${MEMORY_N:-100000}; MEMORY_RATE=${MEMORY_RATE:-1000}
CLIENT_CORE=${CLIENT_CORE:-0}; SERVER_CORE=${SERVER_CORE:-1}; PORT=${PORT:-8199}
TOK=tests/fixtures/tiny-model
NICE=${NICE:--10}
NICEP=(); if [[ $(id -u) == 0 && "$NICE" != 0 ]]; then NICEP=(nice -n "$NICE"); fi
URL=http://127.0.0.1:$PORT
mkdir -p "$OUT"

cargo build --release --quiet --bin vbench --example fixed_server
BIN=target/release/vbench
SRV=target/release/examples/fixed_server

VLLM=${VLLM_BENCH:-}
if [[ -z "$VLLM" ]]; then
  if [[ -n "${VLLM_CPU_ROOT:-}" && -x "$VLLM_CPU_ROOT/venv/bin/vllm" ]]; then VLLM=$VLLM_CPU_ROOT/venv/bin/vllm
  elif command -v vllm >/dev/null; then VLLM=$(command -v vllm); fi
fi

setsid "${NICEP[@]}" taskset -c "$SERVER_CORE" "$SRV" "$PORT" "$TTFT_MS" "$GAP_MS" 2>"$OUT/server.log" &
SPID=$!
trap 'kill -INT -- -$SPID 2>/dev/null || true; sleep 0.5; kill -KILL -- -$SPID 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf "$URL/health" >/dev/null && break; sleep 0.1; done

run_vbench() { # NAME RATE N [EXTRA ARGS...]
  curl -sf "$URL/log?reset=true" >/dev/null
  /usr/bin/time -v -o "$OUT/$1.time" "${NICEP[@]}" taskset -c "$CLIENT_CORE" "$BIN" bench --base-url "$URL" \
    --model m --tokenizer "$TOK" --dataset random --input-len 32 --output-len "$TOKENS" \
    --num-prompts "$3" --rate "$2" --seed 0 --warmup 1 --threads 1 --timeout-s 60 \
    "${@:4}" --out "$OUT/$1.json" >"$OUT/$1.txt" 2>&1 || echo "vbench at $2 req/s exited $?"
  curl -sf "$URL/log?reset=true" >"$OUT/$1.server.jsonl"
}

run_vllm() { # NAME RATE N
  curl -sf "$URL/log?reset=true" >/dev/null
  /usr/bin/time -v -o "$OUT/$1.time" "${NICEP[@]}" taskset -c "$CLIENT_CORE" "$VLLM" bench serve \
    --backend vllm --base-url "$URL" --endpoint /v1/completions --model m --tokenizer "$TOK" \
    --dataset-name random --random-input-len 32 --random-output-len "$TOKENS" \
    --num-prompts "$3" --request-rate "$2" --seed 0 --ignore-eos --request-id-prefix vllm- \
    --save-result --save-detailed --result-dir "$OUT" --result-filename "$1.json" \
    >"$OUT/$1.txt" 2>&1 || echo "vllm bench serve at $2 req/s exited $?"
  curl -sf "$URL/log?reset=true" >"$OUT/$1.server.jsonl"
}

n_for() { local n; n=$(python3 -c "print(min($MAX_N, max(200, int($1 * $DURATION_S))))"); echo "$n"; }

for r in $RATES; do
  echo "vbench at $r req/s ($(n_for "$r") requests)"
  run_vbench "vbench-$r" "$r" "$(n_for "$r")"
done
for r in ${NOSTAMP_RATES:-}; do
  echo "vbench --no-rx-timestamps at $r req/s"
  run_vbench "vbench+nostamps-$r" "$r" "$(n_for "$r")" --no-rx-timestamps
done
if [[ -n "$VLLM" ]]; then
  for r in $VLLM_RATES; do
    echo "vllm bench serve at $r req/s ($(n_for "$r") requests)"
    run_vllm "vllm-$r" "$r" "$(n_for "$r")"
  done
else
  echo "vllm bench serve not found: vbench only (set VLLM_BENCH or VLLM_CPU_ROOT)"
fi

echo "load average before analysis: $(cut -d" " -f1-3 /proc/loadavg)" | tee "$OUT/load.txt"
python3 benches/loadgen/analyze.py "$OUT" | tee "$OUT/table.md"

if [[ "$MEMORY_N" -gt 0 ]]; then
  echo; echo "memory run: $MEMORY_N requests at $MEMORY_RATE req/s"
  mkdir -p "$OUT/memory"
  curl -sf "$URL/log?reset=true" >/dev/null
  /usr/bin/time -v -o "$OUT/memory/time" "${NICEP[@]}" taskset -c "$CLIENT_CORE" "$BIN" bench --base-url "$URL" \
    --model m --tokenizer "$TOK" --dataset random --input-len 32 --output-len "$TOKENS" \
    --num-prompts "$MEMORY_N" --rate "$MEMORY_RATE" --seed 0 --threads 1 --timeout-s 60 \
    --out "$OUT/memory/result.json" >"$OUT/memory/summary.txt" 2>&1 || echo "memory run exited $?"
  curl -sf "$URL/log?reset=true" >/dev/null
  grep -E "Maximum resident|Elapsed|User time|System time" "$OUT/memory/time" | tee "$OUT/memory.txt"
  grep -E "Successful|Failed|lag" "$OUT/memory/summary.txt" | tee -a "$OUT/memory.txt"
fi
echo "outputs in $OUT"
