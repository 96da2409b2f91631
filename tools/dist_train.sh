#!/usr/bin/env bash
# Distributed training on one or more nodes with torchrun.
#
#   tools/dist_train.sh CONFIG GPUS [train.py args...]
#
# GPUS processes are started on this node (one per GPU; on a machine
# without CUDA they are CPU processes talking over gloo). For several nodes,
# run it on every node with NNODES, NODE_RANK, MASTER_ADDR and PORT set.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/launch_common.sh"

usage="CONFIG GPUS [extra args for tools/train.py]"
need_args 2 "$usage" "$@"
need_process_count "$2" "$usage"
run_torchrun "$2" train.py "$1" --launcher pytorch "${@:3}"
