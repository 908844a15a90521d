#!/usr/bin/env bash
# Convert a CTC dataset on an Apache Spark cluster (Beam's portable SparkRunner).
#   launch/convert_spark.sh INPUT OUTPUT [--spark_master_url=spark://HOST:7077] [more flags...] [--dry_run]
# INPUT and OUTPUT must be on a filesystem the Spark executors reach (s3://, gs://, hdfs://, a shared mount).
set -euo pipefail
source "$(dirname "$0")/_common.sh"
source "$(dirname "$0")/_cluster.sh"
set -- "${ARGS[@]+"${ARGS[@]}"}"
[[ $# -ge 2 && "$1" != -* && "$2" != -* ]] || usage "$0 INPUT OUTPUT [--spark_master_url=spark://HOST:7077] [flags...] [--dry_run]"
input="$1"; output="$2"; shift 2
wheel
run "${CELLSEG_BIN}cellseg-convert" --input_dir="$input" --output_dir="$output" \
  --runner=SparkRunner --spark_master_url="${SPARK_MASTER:-spark://localhost:7077}" --environment_type=DOCKER \
  --extra_package="$WHEEL" "$@"
