"""Fit a bundle's `confidence:` coefficients on calibration sequences that no evaluation reads.

    python models/default/calibrate.py [--bundle default] [--n 100] [--out runs/default/calibration]

From each validation split of `prepare_data.py`, N sequences that `evaluate.sh` never scores
(it takes a split's first rows, at most EVALUATED of them):
- yeast: genes of chromosome XIII (evaluate.sh reads chromosome XII; XIV-XVI are never read);
- ncRNA random: rows after the first EVALUATED;
- ncRNA family-held-out: rows after the first EVALUATED whose family has no sequence among
  them, so that no evaluated family is calibrated on.
Each is annotated with evidence from its split's training part only (the reference
`evaluate.sh` builds), and marked right when its entity matches its reference text. The
answers' features are kept in OUT/calibration.jsonl (a rerun refits from it); the fitted
mapping is printed and written to OUT/confidence.yaml, for the bundle's seqchat.yaml.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
from pathlib import Path

import yaml

from seqchat.annotate import Annotator, answer_features
from seqchat.evaluate.calibration import (
    DEFAULT_L2,
    entity_right,
    fit_confidence,
    format_reliability,
    reliability,
)
from seqchat.io.sequences import read_records

SPLITS = ("yeast", "rfam", "rfam_family")
EVALUATED = 150
"""evaluate.sh's default N: calibration never draws from a split's first EVALUATED rows."""
SEED = 7


def calibration_rows(split: str, rows: list[dict], n: int) -> list[dict]:
    """N rows of the split that no evaluation reads (see the module docstring)."""
    evaluated = rows[:EVALUATED]
    if split == "yeast":
        chromosomes = {row["chrom"] for row in evaluated}
        pool = [row for row in rows if row["chrom"] not in chromosomes]
    elif split == "rfam_family":
        families = {row["rfam_acc"] for row in evaluated}
        pool = [row for row in rows[EVALUATED:] if row["rfam_acc"] not in families]
    else:
        pool = rows[EVALUATED:]
    return random.Random(SEED).sample(pool, min(n, len(pool)))


def annotate_split(split: str, bundle: str, n: int, data: Path, out: Path, threads: int) -> list[dict]:
    """The split's calibration answers: id, whether the entity is right, the features."""
    rows = [json.loads(line) for line in (data / f"{split}_val.jsonl").read_text().splitlines()]
    chosen = calibration_rows(split, rows, n)
    fasta = out / f"{split}-calibration.fa"
    fasta.write_text("".join(f">{row['id']}\n{row['sequence']}\n" for row in chosen))
    reference = out.parent / "eval" / f"ref-{split}"
    if not (reference / "manifest.json").is_file():
        subprocess.run(
            ["seqchat", "reference", "build", "-s", str(data / f"{split}_train.jsonl"),
             "-o", str(reference), "--name", f"{split}-train"], check=True,
        )
    gold = {row["id"]: row["text"] for row in chosen}
    answers = []
    with Annotator.load(bundle, threads=threads, references=[reference], bundle_reference=False) as annotator:
        for annotation in annotator.annotate(read_records([str(fasta)])):
            answers.append({
                "split": split,
                "id": annotation.id,
                "right": entity_right(gold[annotation.id], annotation.description),
                "features": answer_features(annotation),
                "description": annotation.description,
            })
    return answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", default="default")
    parser.add_argument("--n", type=int, default=100, help="calibration sequences per split")
    parser.add_argument("--data", type=Path, default=Path("runs/default/data"))
    parser.add_argument("--out", type=Path, default=Path("runs/default/calibration"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--l2", type=float, default=DEFAULT_L2)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    store = args.out / "calibration.jsonl"
    answers = [json.loads(line) for line in store.read_text().splitlines()] if store.is_file() else []
    for split in SPLITS:
        if not any(answer["split"] == split for answer in answers):
            answers += annotate_split(split, args.bundle, args.n, args.data, args.out, args.threads)
            store.write_text("".join(json.dumps(answer) + "\n" for answer in answers))
    note = (f"fitted by models/default/calibrate.py on {len(answers)} validation sequences "
            f"that evaluate.sh does not score (l2 {args.l2:g} towards the built-in prior)")
    model = fit_confidence(
        [a["features"] for a in answers], [a["right"] for a in answers], l2=args.l2, note=note
    )
    text = yaml.safe_dump({"confidence": model.as_config()}, sort_keys=False)
    (args.out / "confidence.yaml").write_text(text)
    print(text)
    for split in SPLITS:
        mine = [a for a in answers if a["split"] == split]
        table = reliability([model.score(a["features"]) for a in mine], [a["right"] for a in mine])
        print(format_reliability(table, f"{split}, calibration set (in-sample)") + "\n")


if __name__ == "__main__":
    main()
