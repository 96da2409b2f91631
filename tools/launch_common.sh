#!/usr/bin/env bash
# Shared by tools/dist_{train,test}.sh and tools/slurm_{train,test}.sh:
# sourced, not run. Each launcher checks its arguments with these functions
# and hands tools/train.py or tools/test.py to torchrun or srun.

TOOLS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PYTHON=${PYTHON:-python}
# The checkout this script lives in comes first on the import path.
export PYTHONPATH="$TOOLS_DIR/..${PYTHONPATH:+:$PYTHONPATH}"

# need_args MIN "USAGE" ARGS...: exit 2 with the usage when fewer than MIN.
need_args() {
    local min=$1 usage=$2
    shift 2
    if [ $# -lt "$min" ]; then
        echo "usage: $(basename "$0") $usage" >&2
        exit 2
    fi
}

# need_process_count VALUE "USAGE": exit 2 unless VALUE is a positive integer.
need_process_count() {
    if ! [[ "$1" =~ ^[0-9]+$ ]] || [ "$1" -lt 1 ]; then
        echo "error: GPUS (processes per node) must be a positive integer, got '$1'" >&2
        echo "usage: $(basename "$0") $2" >&2
        exit 2
    fi
}

# run_torchrun NPROC SCRIPT ARGS...: NPROC processes of tools/SCRIPT on this
# node (CPU processes over gloo without CUDA). Several nodes: run it on each
# with NNODES, NODE_RANK, MASTER_ADDR and PORT set.
run_torchrun() {
    local nproc=$1 script=$2
    shift 2
    exec "$PYTHON" -m torch.distributed.run \
        --nnodes="${NNODES:-1}" \
        --node_rank="${NODE_RANK:-0}" \
        --master_addr="${MASTER_ADDR:-127.0.0.1}" \
        --nproc_per_node="$nproc" \
        --master_port="${PORT:-29500}" \
        "$TOOLS_DIR/$script" "$@"
}

# run_srun PARTITION JOB_NAME SCRIPT ARGS...: one Slurm task per GPU, sized
# by GPUS, GPUS_PER_NODE, CPUS_PER_TASK; SRUN_ARGS is passed on verbatim.
run_srun() {
    local partition=$1 job_name=$2 script=$3
    shift 3
    set -x
    # SRUN_ARGS is split into words on purpose.
    # shellcheck disable=SC2086
    exec srun -p "$partition" \
        --job-name="$job_name" \
        --gres=gpu:"${GPUS_PER_NODE:-8}" \
        --ntasks="${GPUS:-8}" \
        --ntasks-per-node="${GPUS_PER_NODE:-8}" \
        --cpus-per-task="${CPUS_PER_TASK:-5}" \
        --kill-on-bad-exit=1 \
        ${SRUN_ARGS:-} \
        "$PYTHON" -u "$TOOLS_DIR/$script" "$@"
}
