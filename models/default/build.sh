#!/usr/bin/env bash
# Rebuild the default bundle from scratch with seqchat's own commands (about 1.5 hours on
# 2 CPU cores): split the data, stage 1 (align), stage 2 (instruct), install into models/default,
# compile to ONNX.
#   bash models/default/build.sh [../shared/data]
set -euo pipefail
cd "$(dirname "$0")/../.."
data=${1:-../shared/data}
python models/default/prepare_data.py "$data" runs/default/data
python models/default/pack_reference.py "$data" models/default/reference.jsonl.xz
[ -f runs/default/align/seqchat.yaml ] || seqchat finetune align --config models/default/align.yaml --resume
[ -f runs/default/instruct/seqchat.yaml ] || seqchat finetune instruct --config models/default/instruct.yaml --resume
# default: the stage-1 bundle (it describes sequences best on the validation split);
# default-instruct: the stage-2 bundle with its LoRA (answers questions; used by the REPL).
install() {  # install RUN_DIR TARGET_DIR NAME
  rm -rf "$2/encoder"
  mkdir -p "$2"
  cp -r "$1/encoder" "$1/projector.safetensors" "$2/"
  [ ! -f "$1/lora.gguf" ] || cp "$1/lora.gguf" "$2/"
  cp "$1/loss.png" "$2/loss.png"
  sed -e "s/^name: .*/name: $3/" -e 's#^  base: .*#  base: (see the recipe in models/default)#' "$1/seqchat.yaml" > "$2/seqchat.yaml"
}
install runs/default/align models/default default
install runs/default/instruct models/default-instruct default-instruct
# ONNX graphs of the encoder and projector: annotate starts without PyTorch on a CPU.
seqchat models compile models/default
seqchat models compile models/default-instruct
echo "installed the bundles default and default-instruct under models/"
