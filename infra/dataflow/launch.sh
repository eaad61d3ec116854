#!/usr/bin/env bash
# Run `coclabel label` on Dataflow with the teacher on GPU workers. See docs/ENGINES.md.
#
#   infra/dataflow/launch.sh images     # build and push the worker and launcher images
#   infra/dataflow/launch.sh template   # write the Flex Template spec to gs://$BUCKET/templates/
#   infra/dataflow/launch.sh run        # launch the Flex Template for $LOGS -> $OUT
#   infra/dataflow/launch.sh direct     # or run from this machine (writes _manifest.json, _SUCCESS)
#
# Settings (environment): PROJECT, REGION (us-central1), BUCKET, GPU (nvidia-tesla-t4),
# TAG (git short hash), TEACHER (tiny | alpamayo-r1:gs://...), DATE (today, UTC: the output
# partition), LOGS (gs://$BUCKET/logs/$DATE), OUT (gs://$BUCKET/labelled/$DATE).
set -euo pipefail
cd "$(dirname "$0")/../.."

: "${PROJECT:?set PROJECT}" "${BUCKET:?set BUCKET}"
REGION="${REGION:-us-central1}"
GPU="${GPU:-nvidia-tesla-t4}"
TAG="${TAG:-$(git rev-parse --short HEAD 2>/dev/null || echo latest)}"
TEACHER="${TEACHER:-tiny}"
DATE="${DATE:-$(date -u +%F)}"
LOGS="${LOGS:-gs://$BUCKET/logs/$DATE}"
OUT="${OUT:-gs://$BUCKET/labelled/$DATE}"
REPO="$REGION-docker.pkg.dev/$PROJECT/coclabel"
WORKER="$REPO/worker:$TAG"
LAUNCHER="$REPO/launcher:$TAG"
TEMPLATE="gs://$BUCKET/templates/coclabel-label-$TAG.json"
ACCELERATOR="type:$GPU;count:1;install-nvidia-driver"
# Only the teacher step carries the accelerator hint; the other steps run on CPU workers.
BEAM_OPTIONS=(--runner DataflowRunner --project "$PROJECT" --region "$REGION"
              --temp_location "gs://$BUCKET/tmp" --sdk_container_image "$WORKER"
              --experiments use_runner_v2 --sdk_location container)

case "${1:-}" in
  images)
    docker build -f infra/dataflow/Dockerfile --target worker -t "$WORKER" .
    docker build -f infra/dataflow/Dockerfile --target launcher -t "$LAUNCHER" .
    docker push "$WORKER"
    docker push "$LAUNCHER"
    ;;
  template)
    gcloud dataflow flex-template build "$TEMPLATE" --project "$PROJECT" \
      --image "$LAUNCHER" --sdk-language PYTHON --metadata-file infra/dataflow/metadata.json
    echo "$TEMPLATE"
    ;;
  run)
    gcloud dataflow flex-template run "coclabel-label-${DATE//-/}-$(date -u +%H%M%S)" \
      --project "$PROJECT" --region "$REGION" --template-file-gcs-location "$TEMPLATE" \
      --temp-location "gs://$BUCKET/tmp" \
      --additional-experiments use_runner_v2 \
      --parameters "logs=$LOGS,out=$OUT,teacher=$TEACHER,device=cuda,accelerator=$ACCELERATOR" \
      --parameters "sdk_container_image=$WORKER,sdk_location=container"
    ;;
  direct)
    coclabel label --logs "$LOGS" --out "$OUT" --teacher "$TEACHER" --device cuda \
      --accelerator "$ACCELERATOR" "${BEAM_OPTIONS[@]}"
    ;;
  *)
    sed -n '2,12p' "$0"
    exit 2
    ;;
esac
