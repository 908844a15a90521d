#!/usr/bin/env bash
# Segment and track every sequence under INPUT through Beam's portable job API: any job server that speaks it
# (Flink's or Spark's job server, or Beam's local job service).
#   launch/predict_portable.sh MODEL INPUT OUTPUT [--job_endpoint=HOST:8099] [more flags...] [--dry_run]
# JOB_ENDPOINT (default localhost:8099) names the job server; ENVIRONMENT_TYPE (default DOCKER) and
# ENVIRONMENT_CONFIG say where SDK workers run (EXTERNAL with HOST:PORT of a running worker pool).
# MODEL, INPUT and OUTPUT must be on a filesystem the SDK workers reach.
set -euo pipefail
source "$(dirname "$0")/_common.sh"
source "$(dirname "$0")/_cluster.sh"
set -- "${ARGS[@]+"${ARGS[@]}"}"
model_paths_and_wheel "$0 MODEL INPUT OUTPUT [--job_endpoint=HOST:8099] [flags...] [--dry_run]" "$@"
environment=(--environment_type="${ENVIRONMENT_TYPE:-DOCKER}")
[[ -z "${ENVIRONMENT_CONFIG:-}" ]] || environment+=(--environment_config="$ENVIRONMENT_CONFIG")
run "${CELLSEG_BIN}cellseg-predict" --model="$MODEL" --input="$INPUT" --output_dir="$OUTPUT" \
  --runner=PortableRunner --job_endpoint="${JOB_ENDPOINT:-localhost:8099}" "${environment[@]}" \
  --extra_package="$WHEEL" "${REQUIREMENTS[@]}" "${REST[@]+"${REST[@]}"}"
