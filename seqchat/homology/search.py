"""Homology search: the reference hits of each query sequence, streamed in input order.

Each query goes through two paths. The protein path, when the query has a coding ORF,
searches the proteins of the coding references that share protein k-mers with its
translation; the nucleotide path then searches both strands of the references that
share nucleotide k-mers with the query, except those the protein path already found, and
except all coding references once the protein path has found ``max_hits`` (large gene
families would otherwise send dozens of long genes to the costly nucleotide alignment).
Proteins go first because they find coding homologs more sensitively (synonymous changes
do not count) and about ten times cheaper: HMMER's cost grows with the product of the
lengths, and most of it is building and calibrating the query's model, which a coding
query then rarely needs in nucleotides.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from seqchat.homology import kmers
from seqchat.homology.align import Aligner, Alignment
from seqchat.homology.orf import find_orf
from seqchat.homology.parallel import ordered_map
from seqchat.homology.reference import Reference, ReferenceEntry
from seqchat.io.sequences import SequenceInputError, SequenceRecord, canonical_sequence

__all__ = ["Hit", "Query", "hit_order", "search"]

Query = SequenceRecord | tuple[str, str] | str
"""A record, an (id, sequence) pair, or a bare sequence (named ``sequence_<n>``)."""

DEFAULT_CANDIDATES = 20
MIN_SHARED_KMERS = 2
"""A single shared k-mer is as likely chance as homology."""
MIN_SHARED_NUCLEOTIDE_FRACTION = 0.05
"""Of the smaller sequence's k-mers. 13-mers survive 85% identity 12% of the time, while
unrelated sequences of similar composition share a handful of 13-mers, whatever their
length; this keeps the (costly) nucleotide alignments for likely homologs."""


@dataclass(frozen=True)
class Hit:
    """One reference aligned to a query."""

    reference_id: str
    description: str
    product: str | None
    family: str | None
    go: tuple[str, ...]
    identity: float
    """Percent identical columns among the aligned columns."""
    query_coverage: float
    """Fraction of the query covered (of its protein on the protein path)."""
    target_coverage: float
    """Fraction of the reference covered (of its protein on the protein path)."""
    bit_score: float
    evalue: float
    """Expected chance hits this good in the whole of the reference sets searched."""
    strand: str
    """"+" if the reference aligns as given, "-" if its reverse complement does."""
    path: str
    """"nucleotide" or "protein"."""
    reference_set: str
    reference_sha256: str


def hit_order(hit: Hit) -> tuple[float, float, str, str]:
    """Sort key: best bit score first, then E-value, then names for a stable order."""
    return (-hit.bit_score, hit.evalue, hit.reference_set, hit.reference_id)


def search(
    records_or_sequences: Iterable[Query],
    references: Sequence[Reference],
    *,
    max_hits: int = 5,
    evalue: float = 1e-3,
    threads: int = 1,
    candidates: int = DEFAULT_CANDIDATES,
) -> Iterator[tuple[str, list[Hit]]]:
    """Yield ``(query id, hits)`` for each query, in input order, as they are found.

    Hits from all ``references`` are merged: at most ``max_hits``, with E-value at most
    ``evalue``, best bit score first. ``candidates`` references per path and reference
    set pass the k-mer prefilter to be aligned. ``threads`` queries are searched at
    once; the results do not depend on it.
    """
    searcher = _Searcher(list(references), max_hits, evalue, candidates)
    queries = (_query(number, item) for number, item in enumerate(records_or_sequences, 1))
    yield from ordered_map(searcher.search_one, queries, threads)


def _query(number: int, item: Query) -> tuple[str, str]:
    if isinstance(item, SequenceRecord):
        return item.id, item.sequence
    query_id, raw = (f"sequence_{number}", item) if isinstance(item, str) else item
    try:
        return query_id, canonical_sequence(raw)
    except SequenceInputError as error:
        raise SequenceInputError(f"query {query_id!r}: {error}") from None


_WORDS = {"nucleotide": kmers.nucleotide_kmers, "protein": kmers.protein_kmers}
_MIN_FRACTION = {"nucleotide": MIN_SHARED_NUCLEOTIDE_FRACTION, "protein": 0.0}


@dataclass(frozen=True)
class _Candidate:
    set_number: int
    """The position of its reference set among those searched."""
    reference: Reference
    entry: ReferenceEntry


class _Searcher:
    def __init__(
        self, references: list[Reference], max_hits: int, evalue: float, candidates: int
    ) -> None:
        self.references = references
        self.max_hits = max_hits
        self.evalue = evalue
        self.candidates = candidates
        self.megabases = sum(r.counts["nucleotides"] for r in references) / 1e6
        self.proteins = sum(r.counts["coding"] for r in references)
        self._local = threading.local()

    def search_one(self, query: tuple[str, str]) -> tuple[str, list[Hit]]:
        query_id, sequence = query
        orf = find_orf(sequence)
        aligner = self._aligner()
        hits: list[Hit] = []
        found: set[tuple[int, int]] = set()
        if orf is not None:
            protein = self._candidates("protein", orf.protein, found)
            alignments = aligner.protein(
                orf.protein, [c.entry.protein or "" for c in protein], self.proteins,
                self.evalue,
            )
            for candidate, aligned in _paired(protein, alignments):
                strand = "+" if candidate.entry.orf_strand == orf.strand else "-"
                hits.append(self._hit(candidate, aligned, "protein", strand))
                found.add((candidate.set_number, candidate.entry.index))
        enough = orf is not None and len(hits) >= self.max_hits
        nucleotide = self._candidates("nucleotide", sequence, found, skip_coding=enough)
        alignments = aligner.nucleotide(
            sequence, [c.entry.sequence for c in nucleotide], self.megabases, self.evalue
        )
        for candidate, aligned in _paired(nucleotide, alignments):
            hits.append(self._hit(candidate, aligned, "nucleotide", aligned.strand))
        return query_id, _best(hits, self.max_hits)

    def _candidates(
        self, path: str, text: str, found: set[tuple[int, int]], *, skip_coding: bool = False
    ) -> list[_Candidate]:
        """The references of every set worth aligning on this path, best first per set,
        leaving out those already hit (``found`` holds (set number, reference number))
        and, if ``skip_coding``, all coding references."""
        candidates: list[_Candidate] = []
        for set_number, reference in enumerate(self.references):
            if path == "protein" and not reference.counts["coding"]:
                continue
            parameters = reference.parameters
            words = _WORDS[path](text, parameters[f"{path}_k"])
            words = words[kmers.sampled(words, parameters[f"{path}_sampling"])]
            numbers = reference.indexes[path].candidates(
                words, self.candidates, MIN_SHARED_KMERS, _MIN_FRACTION[path],
                excluded=[index for number, index in found if number == set_number],
                excluded_mask=reference.coding if skip_coding else None,
            )
            candidates += [
                _Candidate(set_number, reference, entry) for entry in reference.entries(numbers)
            ]
        return candidates

    def _hit(self, candidate: _Candidate, aligned: Alignment, path: str, strand: str) -> Hit:
        entry = candidate.entry
        return Hit(
            reference_id=entry.id,
            description=entry.description,
            product=entry.product or None,
            family=entry.family or None,
            go=entry.go,
            identity=aligned.identity,
            query_coverage=aligned.query_coverage,
            target_coverage=aligned.target_coverage,
            bit_score=aligned.bit_score,
            evalue=aligned.evalue,
            strand=strand,
            path=path,
            reference_set=candidate.reference.name,
            reference_sha256=candidate.reference.content_sha256,
        )

    def _aligner(self) -> Aligner:
        aligner = getattr(self._local, "aligner", None)
        if aligner is None:
            aligner = self._local.aligner = Aligner()
        return aligner


def _paired(
    candidates: list[_Candidate], alignments: list[Alignment]
) -> Iterator[tuple[_Candidate, Alignment]]:
    for aligned in alignments:
        yield candidates[aligned.target], aligned


def _best(hits: list[Hit], max_hits: int) -> list[Hit]:
    """One hit per reference (the one with the lowest E-value), best first."""
    kept: dict[tuple[str, str], Hit] = {}
    for hit in sorted(hits, key=lambda h: (h.evalue, -h.bit_score)):
        kept.setdefault((hit.reference_sha256, hit.reference_id), hit)
    return sorted(kept.values(), key=hit_order)[:max_hits]
