#!/usr/bin/env bash
# Serve TensorBoard for a folder of runs (default runs/) on localhost:6006.
#   launch/tensorboard.sh [RUNS_DIR] [--host=0.0.0.0] [--port=6006] [--dry_run]
# Reach it from another machine through an SSH tunnel (ssh -L 6006:localhost:6006 host)
# rather than --host=0.0.0.0, which serves it to the whole network.
set -euo pipefail
source "$(dirname "$0")/_common.sh"
set -- "${ARGS[@]+"${ARGS[@]}"}"
runs="runs"
if [[ $# -ge 1 && "$1" != -* ]]; then runs="$1"; shift; fi
run "${CELLSEG_BIN}tensorboard" --logdir="$runs" --host=localhost --port=6006 "$@"
