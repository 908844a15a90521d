#!/usr/bin/env bash
# Convert a CTC dataset on Google Cloud Dataflow; input and output on Cloud Storage.
#   launch/convert_dataflow.sh gs://BUCKET/Fluo-N2DH-GOWT1 gs://BUCKET/records/Fluo-N2DH-GOWT1 \
#       --project=PROJECT --region=REGION [--temp_location=gs://BUCKET/tmp] [more flags...] [--dry_run]
# Needs the gcp extra (pip install -e '.[gcp]') and gcloud credentials.
set -euo pipefail
source "$(dirname "$0")/_common.sh"
source "$(dirname "$0")/_cluster.sh"
set -- "${ARGS[@]+"${ARGS[@]}"}"
paths_and_wheel "$0 gs://INPUT gs://OUTPUT --project=P --region=R [flags...] [--dry_run]" "$@"
run "${CELLSEG_BIN}cellseg-convert" --input_dir="$INPUT" --output_dir="$OUTPUT" \
  --runner=DataflowRunner --temp_location="${OUTPUT%/}/tmp" --extra_package="$WHEEL" "${REQUIREMENTS[@]}" \
  "${REST[@]+"${REST[@]}"}"
