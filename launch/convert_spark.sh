#!/usr/bin/env bash
# Convert a CTC dataset on an Apache Spark cluster (Beam's portable SparkRunner).
#   launch/convert_spark.sh INPUT OUTPUT [--spark_master_url=spark://HOST:7077] [more flags...] [--dry_run]
# INPUT and OUTPUT must be on a filesystem the Spark executors reach (s3://, gs://, hdfs://, a shared mount).
set -euo pipefail
source "$(dirname "$0")/_common.sh"
source "$(dirname "$0")/_cluster.sh"
set -- "${ARGS[@]+"${ARGS[@]}"}"
paths_and_wheel "$0 INPUT OUTPUT [--spark_master_url=spark://HOST:7077] [flags...] [--dry_run]" "$@"
run "${CELLSEG_BIN}cellseg-convert" --input_dir="$INPUT" --output_dir="$OUTPUT" \
  --runner=SparkRunner --spark_master_url="${SPARK_MASTER:-spark://localhost:7077}" --environment_type=DOCKER \
  --extra_package="$WHEEL" "${REQUIREMENTS[@]}" "${REST[@]+"${REST[@]}"}"
