#!/usr/bin/env bash
# Reproduce the release model detector/models/lae-v1.* from ../shared/data (what `task train` runs):
# aligned crops with the product's own ingest code (lae crops), then the training protocol.
# Env: DATA (default ../shared/data), RUN (default detector/training/runs/release), VERSION.
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${DATA:-../shared/data}
RUN=${RUN:-detector/training/runs/release}
VERSION=${VERSION:-1.1.0}
PY=/usr/bin/python3
mkdir -p "$RUN/crops"
$PY -m detector.training.inputs --data "$DATA" --out "$RUN"
go build -o "$RUN/lae" ./cmd/lae
# index.jsonl is appended to, so a finished crop step is not repeated
if [ ! -s "$RUN/crops/photos/index.jsonl" ]; then
  xargs -a "$RUN/photos.txt" -d '\n' "$RUN/lae" crops --out "$RUN/crops/photos" --max-faces 1
fi
if [ ! -s "$RUN/crops/videos/index.jsonl" ]; then
  xargs -a "$RUN/videos.txt" -d '\n' "$RUN/lae" crops --out "$RUN/crops/videos" --max-faces 3 --fps 5
fi
# The settings of the shipped model (see its card's "training" block).
TRAIN_ARGS=${TRAIN_ARGS:---n-train 1500 --n-val 300 --n-test 450 --test-fakes-per-family 100 --widths 24,32,48 --stem residual --warm-epochs 8 --rounds 3 --round-epochs 4 --release-arm lae_all}
$PY -m detector.training.train --crops "$RUN/crops/photos" --crops "$RUN/crops/videos" \
  --work "$RUN" --version "$VERSION" $TRAIN_ARGS
# The release is judged on video too: forged copies of the real clips, scanned by the product with
# the new model; the results go into the card's eval.video block.
$PY -m detector.training.videoeval --lae "$RUN/lae" --videos "$DATA/videos/asl" \
  --donor-photo "$DATA/faces/lfw/Aaron_Eckhart_0001.jpg" --out "$RUN/videoeval" \
  --card detector/models/lae-v1.card.json >/dev/null
