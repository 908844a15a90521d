#!/usr/bin/env bash
# Convert a CTC dataset on this machine: Beam's DirectRunner, one worker process per core.
#   launch/convert_local.sh INPUT_DIR [OUTPUT_DIR] [cellseg-convert flags...] [--dry_run]
set -euo pipefail
source "$(dirname "$0")/_common.sh"
set -- "${ARGS[@]+"${ARGS[@]}"}"
[[ $# -ge 1 && "$1" != -* ]] || usage "$0 INPUT_DIR [OUTPUT_DIR] [cellseg-convert flags...] [--dry_run]"
input="$1"; shift
output="records/$(basename "${input%/}")"
if [[ $# -ge 1 && "$1" != -* ]]; then output="$1"; shift; fi
run "${CELLSEG_BIN}cellseg-convert" --input_dir="$input" --output_dir="$output" \
  --runner=DirectRunner --direct_running_mode=multi_processing --direct_num_workers="$(nproc)" "$@"
