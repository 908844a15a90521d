#!/usr/bin/env bash
# Segment and track every sequence under INPUT on an Apache Flink cluster (Beam's portable FlinkRunner).
#   launch/predict_flink.sh MODEL INPUT OUTPUT [--flink_master=HOST:8081] [more flags...] [--dry_run]
# MODEL, INPUT and OUTPUT must be on a filesystem the Flink task managers reach (s3://, gs://, a shared mount).
set -euo pipefail
source "$(dirname "$0")/_common.sh"
source "$(dirname "$0")/_cluster.sh"
set -- "${ARGS[@]+"${ARGS[@]}"}"
model_paths_and_wheel "$0 MODEL INPUT OUTPUT [--flink_master=HOST:8081] [flags...] [--dry_run]" "$@"
run "${CELLSEG_BIN}cellseg-predict" --model="$MODEL" --input="$INPUT" --output_dir="$OUTPUT" \
  --runner=FlinkRunner --flink_master="${FLINK_MASTER:-localhost:8081}" --environment_type=DOCKER \
  --extra_package="$WHEEL" "${REQUIREMENTS[@]}" "${REST[@]+"${REST[@]}"}"
