"""Training examples: annotated sequences (JSONL, or FASTA + TSV) and question/answer pairs,
every row checked before training starts, and the validation split."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from seqchat.errors import SeqchatError
from seqchat.io.sequences import SequenceInputError, canonical_sequence

Stage = Literal["align", "instruct"]


class TrainingError(SeqchatError):
    """Bad training data or settings, reported before any training starts."""


@dataclass(frozen=True)
class Example:
    sequence: str
    answer: str
    question: str | None = None
    id: str = ""
    family: str = ""
    """The row's Rfam family (`family` or `rfam_acc`), for leaving whole families out."""
    evidence: str | None = None
    """The evidence text its prompt shows, when the bundle's prompt is grounded."""


def _json_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open() as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise TrainingError(f"{path}:{number}: not valid JSON ({error.msg})") from error
            if not isinstance(row, dict):
                raise TrainingError(f"{path}:{number}: expected a JSON object")
            yield number, row


def _fasta_tsv_rows(fasta: Path, table: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    from seqchat.io.sequences import read_records

    descriptions: dict[str, str] = {}
    with table.open() as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip() or line.startswith("#"):
                continue
            identifier, sep, text = line.rstrip("\n").partition("\t")
            if not sep:
                raise TrainingError(f"{table}:{number}: expected id<TAB>description")
            descriptions[identifier] = text
    for record in read_records([str(fasta)]):
        if record.id not in descriptions:
            raise TrainingError(f"{fasta}: record {record.id!r} has no description in {table}")
        yield record.index + 1, {"sequence": record.sequence, "text": descriptions[record.id]}


def load_examples(paths: Sequence[str], stage: Stage) -> list[Example]:
    """Read training data, checking every row before training starts.

    align: JSONL with `sequence` and `text`, or a FASTA file followed by an id<TAB>text TSV.
    instruct: JSONL with `sequence`, `question` and `answer`."""
    fields = ("sequence", "text") if stage == "align" else ("sequence", "question", "answer")
    examples: list[Example] = []
    items = list(paths)
    while items:
        path = Path(items.pop(0))
        if not path.is_file():
            raise TrainingError(f"{path}: no such file")
        if path.suffix in (".fa", ".fasta", ".fna", ".gz") and stage == "align":
            if not items:
                raise TrainingError(f"{path}: a FASTA file needs a TSV of descriptions after it")
            rows = _fasta_tsv_rows(path, Path(items.pop(0)))
        else:
            rows = _json_rows(path)
        for number, row in rows:
            missing = [name for name in fields if not str(row.get(name, "")).strip()]
            if missing:
                raise TrainingError(f"{path}:{number}: missing or empty {', '.join(missing)}")
            try:
                sequence = canonical_sequence(str(row["sequence"]))
            except SequenceInputError as error:
                raise TrainingError(f"{path}:{number}: {error}") from error
            identity = str(row.get("id", "")), str(row.get("family") or row.get("rfam_acc") or "")
            if stage == "align":
                examples.append(Example(sequence, str(row["text"]).strip(), None, *identity))
            else:
                examples.append(Example(
                    sequence, str(row["answer"]).strip(), str(row["question"]).strip(), *identity
                ))
    if not examples:
        raise TrainingError(f"{', '.join(paths)}: no training examples")
    return examples


def split_validation(
    examples: list[Example], fraction: float, seed: int
) -> tuple[list[Example], list[Example]]:
    """A seeded random split. Data with near-duplicates (paralogs) should come with its own
    validation file (`val_data`), split by chromosome or cluster, instead."""
    if fraction <= 0:
        return examples, []
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_val = max(1, int(len(examples) * fraction))
    val = {i for i in order[:n_val]}
    return [e for i, e in enumerate(examples) if i not in val], [examples[i] for i in sorted(val)]
