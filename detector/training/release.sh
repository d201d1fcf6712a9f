#!/usr/bin/env bash
# Reproduce the release model detector/models/lae-v2.* from ../shared/data (what `task train` runs).
# Every step is resumable: finished steps are skipped, training resumes from its checkpoints.
#   1. real crops through the product's own ingest (lae crops: YuNet, alignment, Face Mesh), with
#      the training videos re-encoded at several H.264 qualities and sizes (realdata.py);
#   2. the LAE on MobileNetV2 with on-the-fly forgeries: warm start, baseline and active-learning
#      arms over two seeds, export (trainv2.py);
#   3. ONNX Runtime throughput on one CPU core (Go benchmark), then the field evaluation through
#      lae scan (FF++ dev, every real clip, the photo clips), which also chooses the operating
#      threshold on validation persons + FF++ dev and writes the card's eval.video (fieldeval.py).
# Env: DATA (default ../shared/data), RUN (default detector/training/runs/v2), VERSION, TRAIN_ARGS.
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${DATA:-../shared/data}
RUN=${RUN:-detector/training/runs/v2}
VERSION=${VERSION:-2.0.0}
PY=/usr/bin/python3
mkdir -p "$RUN"
go build -o "$RUN/lae" ./cmd/lae
$PY -m detector.training.realdata --data "$DATA" --lae "$RUN/lae" --out "$RUN/real"
# shellcheck disable=SC2086
$PY -m detector.training.trainv2 --real "$RUN/real" --work "$RUN/train" --version "$VERSION" ${TRAIN_ARGS:-}
rate=$(LAE_BENCH_THREADS=1 go test -run '^$' -bench 'BenchmarkPredict/batch8$' -benchtime 64x ./detector/model/ |
  awk '/crops\/cpu-s/ {for (i = 1; i < NF; i++) if ($(i+1) == "crops/cpu-s") print $i}')
$PY -m detector.training.fieldeval --lae "$RUN/lae" --model detector/models/lae-v2.onnx --data "$DATA" \
  --out "$RUN/fieldeval" --choose-threshold --card detector/models/lae-v2.card.json --crops-per-cpu-second "${rate:-0}"
