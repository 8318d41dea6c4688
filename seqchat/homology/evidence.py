"""The evidence of a run: the reference sets it searches, the hits of each record of a
stream, and the columns every output row shows of them."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from seqchat.homology.reference import Reference, load_reference
from seqchat.homology.search import Hit, search
from seqchat.io.sequences import SequenceRecord

__all__ = ["EVIDENCE_COLUMNS", "NO_EVIDENCE", "Evidence", "copied_hit", "evidence_cells",
           "evidence_lines", "hit_name"]

EVIDENCE_COLUMNS = ("top_hit", "identity", "coverage", "evalue")
"""What each output row shows of its best hit; empty when no hit passes the E-value cut-off."""

DEFAULT_EVALUE = 1e-3
DEFAULT_MAX_HITS = 5

NO_EVIDENCE = "No similar annotated sequence is known."
"""The evidence text of a sequence without hits: a fixed sentence, the same in training."""

_NAME_END = re.compile(r"(?<=[^\s.]{2})\.(?:\s|$)|[;:]|\n")
_MAX_NAME_CHARACTERS = 120


def hit_name(description: str) -> str:
    """What a hit is called: the first clause of its description (an Rfam family name, an
    SGD product summary), at most 120 characters."""
    name = _NAME_END.split(description.strip(), maxsplit=1)[0].strip()
    return name if len(name) <= _MAX_NAME_CHARACTERS else name[:_MAX_NAME_CHARACTERS].rsplit(" ", 1)[0]


_HIT_MARKER = re.compile(r"^\W*(?:same as |as )?hit (\d+)\b", re.IGNORECASE)
_NOT_WORD = re.compile(r"[^\w]+")


def _words(text: str) -> str:
    return " ".join(_NOT_WORD.sub(" ", text.casefold()).split())


def copied_hit(answer: str, hits: Sequence[Hit]) -> Hit | None:
    """The hit an answer copies: one it points at ("Hit 2", "Same as hit 1"), or the first
    whose name the answer starts with (case- and punctuation-insensitive). The writer then
    gives that hit's whole description, which a small model would drift away from if it
    had to write it out token by token."""
    marker = _HIT_MARKER.match(answer)
    if marker is not None:
        number = int(marker.group(1))
        return hits[number - 1] if 1 <= number <= len(hits) else None
    said = _words(answer)
    for hit in hits:
        name = _words(hit_name(hit.description))
        if name and (said == name or said.startswith(name + " ")):
            return hit
    return None


def evidence_lines(hits: Sequence[Hit]) -> list[str]:
    """One compact line per hit, best first: its number, name, identity, coverage and
    E-value; the fixed NO_EVIDENCE sentence when there is none."""
    if not hits:
        return [NO_EVIDENCE]
    return [
        f"Hit {number}: {hit_name(hit.description)} ({hit.identity:.0f}% identity, "
        f"{hit.query_coverage:.0%} coverage, E-value {hit.evalue:.0e})"
        for number, hit in enumerate(hits, 1)
    ]


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
        items = {f"reference_{ref.name}": ref.content_sha256 for ref in self.references}
        items["search"] = f"max_hits={self.max_hits} evalue={self.evalue:g}"
        return items

    def searched(
        self, records: Iterable[SequenceRecord]
    ) -> Iterator[tuple[SequenceRecord, tuple[Hit, ...]]]:
        """Each record with its hits, in input order, searched a chunk at a time: the next
        chunk is searched in a worker thread while the caller works on this one (HMMER
        releases the GIL), so that search overlaps encoding and generation."""
        iterator = iter(records)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="seqchat-search") as worker:
            pending: Future[list[tuple[SequenceRecord, tuple[Hit, ...]]]] | None = None
            while True:
                chunk = list(itertools.islice(iterator, self.chunk_size))
                ahead = worker.submit(self._search_chunk, chunk) if chunk else None
                if pending is not None:
                    yield from pending.result()
                if ahead is None:
                    return
                pending = ahead

    def _search_chunk(
        self, chunk: list[SequenceRecord]
    ) -> list[tuple[SequenceRecord, tuple[Hit, ...]]]:
        found = search(
            chunk, self.references, max_hits=self.max_hits, evalue=self.evalue,
            threads=self.threads,
        )
        return [(record, tuple(hits)) for record, (_query_id, hits) in zip(chunk, found)]
