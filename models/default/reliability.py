"""Reliability of the `confidence` column: per predictions file, bins of confidence against
the entity accuracy of their answers, the ECE, and one diagram per file in a PNG.

    python models/default/reliability.py [--plot PNG] [--bins 10] PREDICTIONS REFERENCES [...]

PREDICTIONS is a `seqchat annotate` output (TSV, JSON Lines or JSON) with the confidence
column; REFERENCES the gold texts as `seqchat eval --references` reads them (JSONL of id +
text). Give one pair per split; evaluate.sh writes OUT/SPLIT-seqchat.tsv and
OUT/SPLIT_refs.jsonl. Prints the model card's Markdown tables, and beside each the AUC that
mean_logprob alone reaches (how well the LLM's own surety separates right from wrong).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from report_table import SPLITS

from seqchat.evaluate.calibration import (
    DEFAULT_BINS,
    auc,
    format_reliability,
    load_scored,
    plot_reliability,
    reliability,
)


def title(predictions: Path) -> str:
    """The split's title for evaluate.sh's file names, else the file's name."""
    split = predictions.name.split("-seqchat")[0]
    return SPLITS.get(split, predictions.name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path, help="PREDICTIONS REFERENCES pairs")
    parser.add_argument("--plot", type=Path, default=None, help="reliability diagrams (PNG)")
    parser.add_argument("--bins", type=int, default=DEFAULT_BINS)
    args = parser.parse_args()
    if len(args.files) % 2:
        parser.error("give PREDICTIONS REFERENCES pairs")
    tables = {}
    for predictions, references in zip(args.files[::2], args.files[1::2]):
        confidences, right = load_scored(predictions, references)
        name = title(predictions)
        tables[name] = reliability(confidences, right, args.bins)
        print(format_reliability(tables[name], name))
        logprobs, _right = load_scored(predictions, references, "mean_logprob")
        separation = auc(logprobs, right)
        print(f"\nAUC of mean_logprob alone: {'n/a' if separation is None else f'{separation:.3f}'}\n")
    if args.plot is not None:
        plot_reliability(tables, args.plot)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
