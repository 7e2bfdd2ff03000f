#!/usr/bin/env bash
# On the GPU machine, once `gpu-apply.sh unbundle` has run: two applies of the same manifest
# on the same GPU, the second started 20 s after the first (while the first's vLLM is still
# starting). The second must be refused at once by the GPU claim, naming the first; the first
# must run to the end. Records what nvidia-smi showed when the second started (a vLLM that is
# starting holds no GPU memory yet, which is why nvidia-smi alone could not refuse it).
# Usage: OUT=... benches/gpu/claim-check.sh   (from the repository root)
set -u
manifest=experiments/qwen-pd-h200.toml
args=(--only simple-tp1-78a6d3 --set 'load.rates=[20]' --set load.num_prompts=200)
APP=. MANIFEST=$manifest APPLY_TIMEOUT_S=420 benches/gpu/gpu-apply.sh apply claim-first "${args[@]}" \
  > "$OUT/claim-first-call.log" 2>&1 &
first=$!
sleep 20
{
  date -u
  echo "compute apps when the second apply starts:"
  nvidia-smi --query-compute-apps=gpu_uuid,pid,used_memory --format=csv
  nvidia-smi --query-gpu=index,uuid --format=csv,noheader
  echo "vbench/vllm processes:"; ps -eo pid,etime,args | grep -E "vbench|vllm" | grep -v grep | cut -c1-160
} > "$OUT/claim-second.log" 2>&1
t0=$SECONDS
/tmp/vbench apply "$manifest" --results /root/results-second "${args[@]}" >> "$OUT/claim-second.log" 2>&1
echo "second apply rc=$? after $((SECONDS-t0)) s" >> "$OUT/claim-second.log"
ls -la /root/results-second/qwen-pd-h200 >> "$OUT/claim-second.log" 2>&1
wait "$first"
echo "first call rc=$?" >> "$OUT/claim-first-call.log"
cat "$OUT/claim-second.log"; tail -25 "$OUT/claim-first-call.log"
