#!/usr/bin/env bash
# Segment and track every sequence under INPUT on an Apache Spark cluster (Beam's portable SparkRunner).
#   launch/predict_spark.sh MODEL INPUT OUTPUT [--spark_master_url=spark://HOST:7077] [more flags...] [--dry_run]
# MODEL, INPUT and OUTPUT must be on a filesystem the Spark executors reach (s3://, gs://, a shared mount).
set -euo pipefail
source "$(dirname "$0")/_common.sh"
source "$(dirname "$0")/_cluster.sh"
set -- "${ARGS[@]+"${ARGS[@]}"}"
model_paths_and_wheel "$0 MODEL INPUT OUTPUT [--spark_master_url=spark://HOST:7077] [flags...] [--dry_run]" "$@"
run "${CELLSEG_BIN}cellseg-predict" --model="$MODEL" --input="$INPUT" --output_dir="$OUTPUT" \
  --runner=SparkRunner --spark_master_url="${SPARK_MASTER:-spark://localhost:7077}" --environment_type=DOCKER \
  --extra_package="$WHEEL" "${REQUIREMENTS[@]}" "${REST[@]+"${REST[@]}"}"
