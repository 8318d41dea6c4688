#!/usr/bin/env bash
# Rebuild the default bundle from scratch with seqchat's own commands (about 1.5 hours on
# 2 CPU cores): split the data, stage 1 (align), stage 2 (instruct), install into models/default.
#   bash models/default/build.sh [../shared/data]
set -euo pipefail
cd "$(dirname "$0")/../.."
data=${1:-../shared/data}
python models/default/prepare_data.py "$data" runs/default/data
[ -f runs/default/align/seqchat.yaml ] || seqchat finetune align --config models/default/align.yaml --resume
[ -f runs/default/instruct/seqchat.yaml ] || seqchat finetune instruct --config models/default/instruct.yaml --resume
rm -rf models/default/encoder
cp -r runs/default/instruct/encoder runs/default/instruct/projector.safetensors runs/default/instruct/lora.gguf models/default/
sed -e 's/^name: .*/name: default/' -e 's#^  base: .*#  base: runs/default/align#' runs/default/instruct/seqchat.yaml > models/default/seqchat.yaml
cp runs/default/align/loss.png models/default/loss-align.png
cp runs/default/instruct/loss.png models/default/loss-instruct.png
echo "installed the default bundle in models/default"
