"""Split ../shared/data into the default bundle's training and validation files.

Yeast: chromosomes I-XI train, XII-XIII validate (split by chromosome: paralogs would leak
through a random split). Chromosomes XIV-XVI are the project's held-out evaluation set and
are never read. Rfam/nRC: a seeded 90/10 split within families, like the nRC test split, and
a family-held-out split (`rfam_family_*`): whole families, drawn at random among those of at
most 100 sequences, until about 10 % of the sequences are held out, so that no validation
sequence has a relative of its own family in training.

    python models/default/prepare_data.py ../shared/data runs/default/data
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

from seqchat.train.qa import qa_pairs

YEAST_VALIDATION = {"chr12", "chr13"}
FAMILY_VALIDATION_SHARE = 0.10
FAMILY_VALIDATION_MAX_SIZE = 100
HELD_OUT = {"chr14", "chr15", "chr16"}


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write(path: Path, items: list[dict]) -> None:
    path.write_text("".join(json.dumps(item) + "\n" for item in items))
    print(f"{path}: {len(items)} rows")


DESCRIBE = "Describe this sequence."


def reference_row(row: dict) -> dict:
    return {"id": row["id"], "sequence": row["sequence"], "text": row["text"],
            "family": row.get("rfam_acc", "")}


def describe_pair(row: dict) -> dict:
    return {"id": row["id"], "sequence": row["sequence"], "question": DESCRIBE,
            "answer": row["text"], "family": row.get("rfam_acc", "")}


def held_out_families(rfam: list[dict], seed: int = 4) -> set[str]:
    """Whole families whose sequences make up about FAMILY_VALIDATION_SHARE of the set."""
    sizes: dict[str, int] = {}
    for row in rfam:
        sizes[row["rfam_acc"]] = sizes.get(row["rfam_acc"], 0) + 1
    families = sorted(family for family, size in sizes.items() if size <= FAMILY_VALIDATION_MAX_SIZE)
    random.Random(seed).shuffle(families)
    chosen, total = set(), 0
    for family in families:
        if total >= FAMILY_VALIDATION_SHARE * len(rfam):
            break
        chosen.add(family)
        total += sizes[family]
    return chosen


def main(data_dir: Path, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    yeast = rows(data_dir / "yeast_sgd" / "train.jsonl")
    if any(row["chrom"] in HELD_OUT for row in yeast):
        raise SystemExit("held-out chromosomes XIV-XVI found in the training file: refusing")
    rfam = rows(data_dir / "rfam_nrc" / "train.jsonl")
    held_out = held_out_families(rfam)
    random.Random(0).shuffle(rfam)
    n_rfam_val = len(rfam) // 10
    splits = {
        "yeast_train": [r for r in yeast if r["chrom"] not in YEAST_VALIDATION],
        "yeast_val": [r for r in yeast if r["chrom"] in YEAST_VALIDATION],
        "rfam_train": rfam[n_rfam_val:],
        "rfam_val": rfam[:n_rfam_val],
        "rfam_family_train": [r for r in rfam if r["rfam_acc"] not in held_out],
        "rfam_family_val": [r for r in rfam if r["rfam_acc"] in held_out],
    }
    for name, items in splits.items():
        write(out_dir / f"{name}.jsonl", items)
    align = splits["yeast_train"] + splits["rfam_train"]
    random.Random(1).shuffle(align)
    write(out_dir / "align_train.jsonl", [{"id": r["id"], "sequence": r["sequence"], "text": r["text"]} for r in align])
    align_val = splits["yeast_val"] + splits["rfam_val"]
    random.Random(3).shuffle(align_val)
    write(out_dir / "align_val.jsonl", [{"id": r["id"], "sequence": r["sequence"], "text": r["text"]} for r in align_val])
    # The grounded bundle trains on neither validation split of the ncRNAs: not on the random
    # 10 %, and not on the held-out families.
    grounded_train = splits["yeast_train"] + [r for r in splits["rfam_train"] if r["rfam_acc"] not in held_out]
    random.Random(5).shuffle(grounded_train)
    write(out_dir / "grounded_reference.jsonl", [reference_row(r) for r in grounded_train])
    write(out_dir / "grounded_train.jsonl", [describe_pair(r) for r in grounded_train])
    write(out_dir / "grounded_train_2k.jsonl", [describe_pair(r) for r in grounded_train[:2000]])
    write(out_dir / "grounded_val.jsonl", [describe_pair(r) for r in align_val])
    for split in ("train", "val"):
        pairs = [p for r in splits[f"yeast_{split}"] + splits[f"rfam_{split}"] for p in qa_pairs(r, max_terms=6)]
        random.Random(2).shuffle(pairs)
        write(out_dir / f"qa_{split}.jsonl", pairs)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
