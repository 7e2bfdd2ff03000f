#!/bin/bash
# vbench inside a Slurm batch job: `sbatch examples/slurm/run.sh [MANIFEST [APPLY OPTIONS...]]`.
#
# The script runs on the allocation's first node (the batch host). vbench sees SLURM_JOB_ID and
# uses this allocation instead of making one: each vLLM instance becomes an `srun` step on the
# node `target.slurm.placement` picks, reached at that node's address; the proxy and the load
# generator run here. Results go under --results (default results/ beside where you submitted).
# Options given to sbatch override the lines below, e.g. `sbatch --nodes=2 --gres=gpu:4 ...`.
#SBATCH --job-name=vbench
#SBATCH --nodes=3
#SBATCH --exclusive
#SBATCH --gres=gpu:8
#SBATCH --time=02:00:00
#SBATCH --output=vbench-%j.out
set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-.}"
manifest=${1:-experiments/slurm-multinode.toml}
shift || true
echo "vbench on $(hostname), job ${SLURM_JOB_ID:?not inside a Slurm job}, nodes ${SLURM_JOB_NODELIST:-?}"
# VBENCH: the vbench executable, when it is not on PATH.
exec "${VBENCH:-vbench}" apply "$manifest" "$@"
