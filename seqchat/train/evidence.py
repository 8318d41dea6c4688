"""The evidence a training example is shown: hits of the training set's own reference, as
serving shows them, but never of the example itself.

- The example's own entry (same id) and identical sequences are dropped: at serving time a
  query is not in the reference, and copying oneself teaches nothing.
- For a share of the examples, chosen by a hash of the id so that it does not change
  between runs, the whole relationship is left out: its Rfam family for an RNA, every
  significant hit (its similarity cluster) for a gene. The model then learns what to say
  when nothing close is known, which is where copying fails.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from seqchat.annotate import evidence_text
from seqchat.homology.evidence import DEFAULT_MAX_HITS, Evidence
from seqchat.homology.search import Hit
from seqchat.io.sequences import SequenceRecord
from seqchat.llm.prompt import PromptSpec, Tokenize
from seqchat.train.examples import Example, TrainingError

LEFT_OUT_SHARE = 0.25
"""Share of examples whose family or similarity cluster is left out of their evidence."""

_IDENTICAL = 99.95


def leaves_out_relatives(example: Example, share: float = LEFT_OUT_SHARE) -> bool:
    """Whether this example's family or cluster is hidden from it (stable across runs)."""
    key = example.id or example.sequence
    return zlib.crc32(key.encode()) % 10_000 < share * 10_000


def shown_hits(example: Example, hits: Sequence[Hit], share: float = LEFT_OUT_SHARE) -> tuple[Hit, ...]:
    """The hits of `example` that training shows it."""
    kept = [
        hit for hit in hits
        if hit.reference_id != example.id
        and not (hit.identity >= _IDENTICAL and min(hit.query_coverage, hit.target_coverage) >= 0.999)
    ]
    if leaves_out_relatives(example, share):
        kept = [hit for hit in kept if example.family and hit.family != example.family]
    return tuple(kept)


def with_evidence(
    examples: Sequence[Example], reference: Path | None, spec: PromptSpec, tokenize: Tokenize,
    *, max_hits: int = DEFAULT_MAX_HITS, threads: int = 1, share: float = LEFT_OUT_SHARE,
) -> list[Example]:
    """The examples with the evidence text their prompts show, rendered as serving renders
    it (`seqchat.annotate.evidence_text`). One extra hit is searched for, since the
    example's own entry is dropped."""
    if reference is None:
        raise TrainingError("the bundle's prompt shows evidence ({evidence}): give --reference DIR")
    evidence = Evidence.load([reference], max_hits=max_hits + 1, threads=threads)
    assert evidence is not None
    records = (
        SequenceRecord(example.id or f"example_{i}", "", example.sequence, "", i)
        for i, example in enumerate(examples)
    )
    return [
        replace(example, evidence=evidence_text(shown_hits(example, hits, share)[:max_hits], spec, tokenize))
        for example, (_record, hits) in zip(examples, evidence.searched(records))
    ]
