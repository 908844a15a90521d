#!/usr/bin/env bash
# Convert a CTC dataset on an Apache Flink cluster (Beam's portable FlinkRunner).
#   launch/convert_flink.sh INPUT OUTPUT [--flink_master=HOST:8081] [more flags...] [--dry_run]
# INPUT and OUTPUT must be on a filesystem the Flink task managers reach (s3://, gs://, hdfs://, a shared mount).
set -euo pipefail
source "$(dirname "$0")/_common.sh"
source "$(dirname "$0")/_cluster.sh"
set -- "${ARGS[@]+"${ARGS[@]}"}"
paths_and_wheel "$0 INPUT OUTPUT [--flink_master=HOST:8081] [flags...] [--dry_run]" "$@"
run "${CELLSEG_BIN}cellseg-convert" --input_dir="$INPUT" --output_dir="$OUTPUT" \
  --runner=FlinkRunner --flink_master="${FLINK_MASTER:-localhost:8081}" --environment_type=DOCKER \
  --extra_package="$WHEEL" "${REQUIREMENTS[@]}" "${REST[@]+"${REST[@]}"}"
