#!/usr/bin/env bash
# Testing on a Slurm cluster, one task per GPU.
#
#   [GPUS=8] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] [SRUN_ARGS="..."] \
#   tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py args...]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/launch_common.sh"

need_args 4 "PARTITION JOB_NAME CONFIG CHECKPOINT [extra args for tools/test.py]" "$@"
run_srun "$1" "$2" test.py "$3" "$4" --launcher=slurm "${@:5}"
