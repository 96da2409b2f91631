#!/usr/bin/env bash
# Distributed testing on one or more nodes with torchrun.
#
#   tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py args...]
#
# GPUS processes are started on this node (one per GPU; on a machine
# without CUDA they are CPU processes talking over gloo). For several nodes,
# run it on every node with NNODES, NODE_RANK, MASTER_ADDR and PORT set.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/launch_common.sh"

usage="CONFIG CHECKPOINT GPUS [extra args for tools/test.py]"
need_args 3 "$usage" "$@"
need_process_count "$3" "$usage"
run_torchrun "$3" test.py "$1" "$2" --launcher pytorch "${@:4}"
