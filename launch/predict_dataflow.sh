#!/usr/bin/env bash
# Segment and track every sequence under INPUT on Google Cloud Dataflow; model, input and output on Cloud Storage.
#   launch/predict_dataflow.sh gs://BUCKET/runs/R gs://BUCKET/plates gs://BUCKET/results \
#       --project=PROJECT --region=REGION [more flags...] [--dry_run]
# GPU workers: ACCELERATOR="type:nvidia-l4;count:1;install-nvidia-driver" asks Dataflow for them
# (--dataflow_service_options=worker_accelerator=...), and CONTAINER names an SDK container image with
# cellseg's TensorFlow and CUDA (see launch/README.md: "Prediction on GPU workers").
# Needs the gcp extra (pip install -e '.[gcp]') and gcloud credentials.
set -euo pipefail
source "$(dirname "$0")/_common.sh"
source "$(dirname "$0")/_cluster.sh"
set -- "${ARGS[@]+"${ARGS[@]}"}"
model_paths_and_wheel "$0 gs://MODEL gs://INPUT gs://OUTPUT --project=P --region=R [flags...] [--dry_run]" "$@"
gpu=()
[[ -z "${ACCELERATOR:-}" ]] || gpu+=(--dataflow_service_options="worker_accelerator=$ACCELERATOR")
[[ -z "${CONTAINER:-}" ]] || gpu+=(--sdk_container_image="$CONTAINER")
run "${CELLSEG_BIN}cellseg-predict" --model="$MODEL" --input="$INPUT" --output_dir="$OUTPUT" \
  --runner=DataflowRunner --temp_location="${OUTPUT%/}/tmp" --extra_package="$WHEEL" "${REQUIREMENTS[@]}" \
  "${gpu[@]+"${gpu[@]}"}" "${REST[@]+"${REST[@]}"}"
