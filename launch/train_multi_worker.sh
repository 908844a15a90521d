#!/usr/bin/env bash
# One worker of a multi-host run (MultiWorkerMirroredStrategy): start it on every host with its own index.
#   launch/train_multi_worker.sh HOSTS INDEX RECORDS_DIR MODEL_DIR [cellseg-train flags...] [--dry_run]
# HOSTS: host:port of every worker, comma separated, the same list and order on every host;
# INDEX: this host's place in it (0 is the chief, which writes the run folder). RECORDS_DIR may be
# on gs:// or s3://; MODEL_DIR must be the same folder on every host (a shared network filesystem).
set -euo pipefail
source "$(dirname "$0")/_common.sh"
set -- "${ARGS[@]+"${ARGS[@]}"}"
[[ $# -ge 4 && "$2" =~ ^[0-9]+$ ]] || usage "$0 HOST:PORT,HOST:PORT,... INDEX RECORDS_DIR MODEL_DIR [flags...] [--dry_run]"
hosts="$1"; index="$2"; records="$3"; model_dir="$4"; shift 4
workers="\"${hosts//,/\",\"}\""
export TF_CONFIG="{\"cluster\": {\"worker\": [$workers]}, \"task\": {\"type\": \"worker\", \"index\": $index}}"
echo "TF_CONFIG='$TF_CONFIG'"
run "${CELLSEG_BIN}cellseg-train" --records_dir="$records" --model_dir="$model_dir" \
  --strategy=multi_worker --mixed_precision --jit_compile "$@"
