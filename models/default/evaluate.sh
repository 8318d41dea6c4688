#!/usr/bin/env bash
# Compare a bundle with the baselines on the three validation splits of prepare_data.py,
# N sequences of each: yeast (chromosome XII, the first of XII-XIII), ncRNA random (10 % of
# the nRC sequences, same families as training) and ncRNA family-held-out (whole families
# absent from the reference). Every baseline searches or copies only the split's training part.
#   bash models/default/evaluate.sh [BUNDLE] [N] [OUT]
set -euo pipefail
cd "$(dirname "$0")/../.."
bundle=${1:-default}
n=${2:-150}
out=${3:-runs/default/eval}
threads=${THREADS:-1}
data=runs/default/data
mkdir -p "$out"
for split in yeast rfam rfam_family; do
  python - "$split" "$n" "$out" "$data" <<'PY'
import json, sys
split, n, out, data = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
rows = [json.loads(l) for l in open(f"{data}/{split}_val.jsonl")][:n]
with open(f"{out}/{split}.fa", "w") as fa, open(f"{out}/{split}_refs.jsonl", "w") as refs:
    for r in rows:
        fa.write(f">{r['id']}\n{r['sequence']}\n")
        refs.write(json.dumps({"id": r["id"], "text": r["text"]}) + "\n")
PY
  train="$data/${split}_train.jsonl"
  # The bundle's own reference holds the validation sequences: search the split's training part.
  [ -f "$out/ref-$split/manifest.json" ] || seqchat reference build -s "$train" -o "$out/ref-$split" --name "$split-train"
  seqchat annotate -q -t "$threads" -m "$bundle" --no-bundle-reference -r "$out/ref-$split" "$out/$split.fa" -o "$out/$split-seqchat.tsv" --force
  seqchat baseline nearest "$out/$split.fa" --reference "$train" -o "$out/$split-nearest.tsv" --force
  seqchat baseline nearest --method align -t "$threads" "$out/$split.fa" --reference "$train" -o "$out/$split-align.tsv" --force
  seqchat baseline most-common "$out/$split.fa" --reference "$train" -o "$out/$split-most-common.tsv" --force
  seqchat eval --references "$out/${split}_refs.jsonl" \
    --predictions "$out/$split-seqchat.tsv" "$out/$split-nearest.tsv" "$out/$split-align.tsv" "$out/$split-most-common.tsv" \
    -o "$out/$split-report.json" --plot "$out/$split-metrics.png"
done
