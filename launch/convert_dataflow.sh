#!/usr/bin/env bash
# Convert a CTC dataset on Google Cloud Dataflow; input and output on Cloud Storage.
#   launch/convert_dataflow.sh gs://BUCKET/Fluo-N2DH-GOWT1 gs://BUCKET/records/Fluo-N2DH-GOWT1 \
#       --project=PROJECT --region=REGION [--temp_location=gs://BUCKET/tmp] [more flags...] [--dry_run]
# Needs the gcp extra (pip install -e '.[gcp]') and gcloud credentials.
set -euo pipefail
source "$(dirname "$0")/_common.sh"
source "$(dirname "$0")/_cluster.sh"
set -- "${ARGS[@]+"${ARGS[@]}"}"
[[ $# -ge 2 && "$1" != -* && "$2" != -* ]] || usage "$0 gs://INPUT gs://OUTPUT --project=P --region=R [flags...] [--dry_run]"
input="$1"; output="$2"; shift 2
wheel
run "${CELLSEG_BIN}cellseg-convert" --input_dir="$input" --output_dir="$output" \
  --runner=DataflowRunner --temp_location="${output%/}/tmp" --extra_package="$WHEEL" "$@"
