#!/usr/bin/env bash
# Train on every GPU of this host (MirroredStrategy), mixed precision and XLA on.
#   launch/train.sh RECORDS_DIR MODEL_DIR [cellseg-train flags...] [--dry_run]
# Later flags win: add --nomixed_precision or --nojit_compile to switch one off.
set -euo pipefail
source "$(dirname "$0")/_common.sh"
set -- "${ARGS[@]+"${ARGS[@]}"}"
[[ $# -ge 2 && "$1" != -* && "$2" != -* ]] || usage "$0 RECORDS_DIR MODEL_DIR [cellseg-train flags...] [--dry_run]"
records="$1"; model_dir="$2"; shift 2
run "${CELLSEG_BIN}cellseg-train" --records_dir="$records" --model_dir="$model_dir" \
  --strategy=mirrored --mixed_precision --jit_compile "$@"
