#!/usr/bin/env bash
# Compare the default bundle with the baselines on the validation split (yeast chromosomes
# XII-XIII, 10 % of the nRC families' sequences), 150 sequences of each kind.
#   bash models/default/evaluate.sh [BUNDLE] [N] [OUT]
set -euo pipefail
cd "$(dirname "$0")/../.."
bundle=${1:-default}
n=${2:-150}
out=${3:-runs/default/eval}
threads=${THREADS:-1}
mkdir -p "$out"
for kind in yeast rfam; do
  python - "$kind" "$n" "$out" <<'PY'
import json, sys
kind, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rows = [json.loads(l) for l in open(f"runs/default/data/{kind}_val.jsonl")][:n]
with open(f"{out}/{kind}.fa", "w") as fa, open(f"{out}/{kind}_refs.jsonl", "w") as refs:
    for r in rows:
        fa.write(f">{r['id']}\n{r['sequence']}\n")
        refs.write(json.dumps({"id": r["id"], "text": r["text"]}) + "\n")
PY
  seqchat annotate -q -t "$threads" -m "$bundle" "$out/$kind.fa" -o "$out/$kind-seqchat.tsv" --force
  seqchat baseline nearest "$out/$kind.fa" --reference "runs/default/data/${kind}_train.jsonl" -o "$out/$kind-nearest.tsv" --force
  seqchat baseline most-common "$out/$kind.fa" --reference "runs/default/data/${kind}_train.jsonl" -o "$out/$kind-most-common.tsv" --force
  seqchat baseline llm-only -t "$threads" -m "$bundle" "$out/$kind.fa" --max-nucleotides 500 -o "$out/$kind-llm-only.tsv" --force
  seqchat eval --references "$out/${kind}_refs.jsonl" \
    --predictions "$out/$kind-seqchat.tsv" "$out/$kind-nearest.tsv" "$out/$kind-most-common.tsv" "$out/$kind-llm-only.tsv" \
    -o "$out/$kind-report.json" --plot "$out/$kind-metrics.png"
done
