"""Score a query against its prefilter candidates with pyhmmer.

The query becomes a profile HMM (HMMER's single-sequence builder, as phmmer and nhmmer
do it), searched against the candidates only; E-values still count the whole reference
set, by giving the pipelines its size: ``Z`` sequences for proteins, ``Z`` megabases
(both strands) for nucleotides.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pyhmmer import easel, plan7

__all__ = ["Aligner", "Alignment"]

_CALIBRATION = {"EmN": 50, "EvN": 50, "EfN": 100, "Eft": 0.08}
"""Calibrating the query model (simulating random sequences to fit its score
distributions) is most of the cost of a search. The MSV and Viterbi fits only set filter
thresholds, so they get a quarter of HMMER's samples; the Forward fit, which gives the
E-values, gets half the samples but twice the tail fraction: the same number of tail
scores (8) as HMMER's default."""


@dataclass(frozen=True)
class Alignment:
    """The best alignment of the query with one target."""

    target: int
    """The target's position in the list searched."""
    bit_score: float
    evalue: float
    identity: float
    """Percent identical columns among the aligned columns (gaps included)."""
    query_coverage: float
    target_coverage: float
    strand: str
    """The target strand aligned: "+" or "-" (always "+" for proteins)."""


class Aligner:
    """The pyhmmer state of one thread (pyhmmer objects are not shared across threads)."""

    def __init__(self) -> None:
        self._alphabets = {"nucleotide": easel.Alphabet.dna(), "protein": easel.Alphabet.amino()}
        self._backgrounds = {name: plan7.Background(a) for name, a in self._alphabets.items()}
        self._builders = {
            name: plan7.Builder(a, **_CALIBRATION) for name, a in self._alphabets.items()
        }

    def nucleotide(
        self, query: str, targets: Sequence[str], megabases: float, evalue: float
    ) -> list[Alignment]:
        """Search both strands of DNA targets with an nhmmer-style pipeline."""
        pipeline = plan7.LongTargetsPipeline(
            self._alphabets["nucleotide"], self._backgrounds["nucleotide"],
            Z=megabases, E=evalue,
        )
        return self._search("nucleotide", pipeline, query, targets, evalue)

    def protein(
        self, query: str, targets: Sequence[str], sequences: int, evalue: float
    ) -> list[Alignment]:
        """Search protein targets with a phmmer-style pipeline."""
        pipeline = plan7.Pipeline(
            self._alphabets["protein"], self._backgrounds["protein"], Z=sequences, E=evalue
        )
        return self._search("protein", pipeline, query, targets, evalue)

    def _search(
        self,
        path: str,
        pipeline: plan7.Pipeline,
        query: str,
        targets: Sequence[str],
        evalue: float,
    ) -> list[Alignment]:
        if not targets:
            return []
        alphabet = self._alphabets[path]
        digital = easel.TextSequence(name="query", sequence=query).digitize(alphabet)
        hmm, _, _ = self._builders[path].build(digital, self._backgrounds[path])
        block = easel.DigitalSequenceBlock(alphabet, [
            easel.TextSequence(name=str(i), sequence=text).digitize(alphabet)
            for i, text in enumerate(targets)
        ])
        best: dict[int, Alignment] = {}
        for hit in pipeline.search_hmm(hmm, block):
            if hit.evalue > evalue:
                continue
            found = _alignment(int(hit.name), hit, len(query))
            current = best.get(found.target)
            if current is None or (found.evalue, -found.bit_score) < (
                current.evalue, -current.bit_score
            ):
                best[found.target] = found
        return [best[target] for target in sorted(best)]


def _alignment(target: int, hit: plan7.Hit, query_length: int) -> Alignment:
    domain = hit.best_domain
    aligned = domain.alignment
    columns = list(zip(aligned.hmm_sequence.upper(), aligned.target_sequence.upper()))
    identical = sum(a == b and a.isalpha() for a, b in columns)
    target_span = abs(aligned.target_to - aligned.target_from) + 1
    strand = getattr(domain, "strand", None) or "+"
    return Alignment(
        target=target,
        bit_score=hit.score,
        evalue=hit.evalue,
        identity=100.0 * identical / len(columns),
        query_coverage=(aligned.hmm_to - aligned.hmm_from + 1) / query_length,
        target_coverage=target_span / aligned.target_length,
        strand=strand,
    )
