#!/usr/bin/env bash
# Convert a CTC dataset through Beam's portable job API: any job server that speaks it
# (Flink's or Spark's job server, or Beam's local job service).
#   launch/convert_portable.sh INPUT OUTPUT [--job_endpoint=HOST:8099] [more flags...] [--dry_run]
# JOB_ENDPOINT (default localhost:8099) names the job server; ENVIRONMENT_TYPE (default DOCKER) and
# ENVIRONMENT_CONFIG say where SDK workers run: EXTERNAL with HOST:PORT of a running
# `python -m apache_beam.runners.worker.worker_pool_main --service_port=PORT` uses that pool.
# INPUT and OUTPUT must be on a filesystem the SDK workers reach.
set -euo pipefail
source "$(dirname "$0")/_common.sh"
source "$(dirname "$0")/_cluster.sh"
set -- "${ARGS[@]+"${ARGS[@]}"}"
paths_and_wheel "$0 INPUT OUTPUT [--job_endpoint=HOST:8099] [flags...] [--dry_run]" "$@"
environment=(--environment_type="${ENVIRONMENT_TYPE:-DOCKER}")
[[ -z "${ENVIRONMENT_CONFIG:-}" ]] || environment+=(--environment_config="$ENVIRONMENT_CONFIG")
run "${CELLSEG_BIN}cellseg-convert" --input_dir="$INPUT" --output_dir="$OUTPUT" \
  --runner=PortableRunner --job_endpoint="${JOB_ENDPOINT:-localhost:8099}" "${environment[@]}" \
  --extra_package="$WHEEL" "${REQUIREMENTS[@]}" "${REST[@]+"${REST[@]}"}"
