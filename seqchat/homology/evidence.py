"""The evidence of a run: the reference sets it searches, the hits of each record of a
stream, and the columns every output row shows of them."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from seqchat.homology.reference import Reference, load_reference
from seqchat.homology.search import Hit, search
from seqchat.io.sequences import SequenceRecord

__all__ = ["EVIDENCE_COLUMNS", "Evidence", "evidence_cells"]

EVIDENCE_COLUMNS = ("top_hit", "identity", "coverage", "evalue")
"""What each output row shows of its best hit; empty when no hit passes the E-value cut-off."""

DEFAULT_EVALUE = 1e-3
DEFAULT_MAX_HITS = 5


def evidence_cells(hits: Sequence[Hit]) -> dict[str, object]:
    """The evidence columns of one row: the best hit's reference id, percent identity, query
    coverage and E-value (None for each when there is no hit)."""
    if not hits:
        return dict.fromkeys(EVIDENCE_COLUMNS)
    best = hits[0]
    return {
        "top_hit": best.reference_id,
        "identity": round(best.identity, 1),
        "coverage": round(best.query_coverage, 3),
        "evalue": float(f"{best.evalue:.3g}"),
    }


@dataclass(frozen=True)
class Evidence:
    """Reference sets searched with one set of settings; safe to use from one thread at a
    time per stream (`searched`)."""

    references: tuple[Reference, ...]
    max_hits: int = DEFAULT_MAX_HITS
    evalue: float = DEFAULT_EVALUE
    threads: int = 1
    chunk_size: int = 64

    @classmethod
    def load(
        cls, directories: Iterable[str | Path], *, max_hits: int = DEFAULT_MAX_HITS,
        evalue: float = DEFAULT_EVALUE, threads: int = 1,
    ) -> Evidence | None:
        """The reference sets in `directories` (None when there are none), each named once."""
        unique = list(dict.fromkeys(Path(directory).resolve() for directory in directories))
        if not unique:
            return None
        references = tuple(load_reference(directory) for directory in unique)
        return cls(references, max_hits=max_hits, evalue=evalue, threads=threads)

    def provenance(self) -> dict[str, str]:
        """What decides the hits: every set's content hash and the search settings."""
        items = {f"reference {ref.name}": ref.content_sha256 for ref in self.references}
        items["search"] = f"max_hits={self.max_hits} evalue={self.evalue:g}"
        return items

    def searched(
        self, records: Iterable[SequenceRecord]
    ) -> Iterator[tuple[SequenceRecord, tuple[Hit, ...]]]:
        """Each record with its hits, in input order, searched a chunk at a time."""
        iterator = iter(records)
        while chunk := list(itertools.islice(iterator, self.chunk_size)):
            found = search(
                chunk, self.references, max_hits=self.max_hits, evalue=self.evalue,
                threads=self.threads,
            )
            for record, (_query_id, hits) in zip(chunk, found):
                yield record, tuple(hits)
