"""The model card's validation tables, from the reports `evaluate.sh` writes.

    python models/default/report_table.py runs/default/eval [runs/default/eval-grounded ...]

One table per split; a row per prediction file of every directory given, in order.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

SPLITS = {
    "yeast": "Yeast genes (chromosome XII, by chromosome)",
    "rfam": "ncRNAs, random 10 % (families seen in training)",
    "rfam_family": "ncRNAs, whole families held out",
}
COLUMNS = ("meteor", "rougeL", "emb_f1", "entity", "bleu4", "rouge1")


def main(directories: list[Path]) -> None:
    for split, title in SPLITS.items():
        print(f"\n**{title}**\n")
        print("| system | " + " | ".join(COLUMNS) + " | n |")
        print("|---|" + "---|" * (len(COLUMNS) + 1))
        for directory in directories:
            report = directory / f"{split}-report.json"
            if not report.is_file():
                continue
            for name, scores in json.loads(report.read_text()).items():
                values = " | ".join(f"{scores['scores'][c]:.4f}" for c in COLUMNS)
                label = name.removeprefix(f"{split}-")
                print(f"| {label} ({directory.name}) | {values} | {scores['n_pairs']} |")


if __name__ == "__main__":
    main([Path(argument) for argument in sys.argv[1:]])
