#!/usr/bin/env bash
# Distributed testing on one or more nodes with torchrun.
#
#   tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py args...]
#
# GPUS processes are started on this node (one per GPU; on a machine
# without CUDA they are CPU processes talking over gloo). For several nodes,
# run it on every node with NNODES, NODE_RANK, MASTER_ADDR and PORT set.
set -euo pipefail

usage="usage: $(basename "$0") CONFIG CHECKPOINT GPUS [extra args for tools/test.py]"
if [ $# -lt 3 ]; then
    echo "$usage" >&2
    exit 2
fi

CONFIG=$1
CHECKPOINT=$2
GPUS=$3
if ! [[ "$GPUS" =~ ^[0-9]+$ ]] || [ "$GPUS" -lt 1 ]; then
    echo "error: GPUS (processes per node) must be a positive integer, got '$GPUS'" >&2
    echo "$usage" >&2
    exit 2
fi
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
PYTHON=${PYTHON:-python}
TOOLS_DIR=$(cd "$(dirname "$0")" && pwd)

PYTHONPATH="$TOOLS_DIR/..${PYTHONPATH:+:$PYTHONPATH}" \
exec "$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" \
    --master_port="$PORT" \
    "$TOOLS_DIR/test.py" \
    "$CONFIG" \
    "$CHECKPOINT" \
    --launcher pytorch "${@:4}"
