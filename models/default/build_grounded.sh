#!/usr/bin/env bash
# The grounded bundle (not shipped yet; see the model card): stage 2 from the stage-1
# default bundle, every example shown its closest hits in the training set's own reference.
#   bash models/default/build_grounded.sh [../shared/data]
set -euo pipefail
cd "$(dirname "$0")/../.."
data=${1:-../shared/data}
python models/default/prepare_data.py "$data" runs/default/data
[ -f runs/default/grounded-reference/manifest.json ] || \
  seqchat reference build -s runs/default/data/grounded_reference.jsonl -o runs/default/grounded-reference --name grounded-train
python models/default/grounded_base.py models/default runs/default/grounded-base
seqchat finetune instruct --config models/default/grounded.yaml --resume
# then: bash models/default/evaluate.sh runs/default/grounded 100 runs/default/eval100-grounded
