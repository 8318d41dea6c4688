"""Open reading frames: does a nucleotide sequence code for a protein, and which one.

A sequence is coding when it has a complete ORF (ATG ... stop, no internal stop) that
either covers at least 90% of it on the forward strand (a CDS, however short) or is at
least 100 codons long on either strand in any frame (a gene inside a longer transcript
or genomic fragment). Codons holding an ambiguity code are neither starts nor stops and
translate to X. The search is vectorised with numpy: a few tens of microseconds per
kilobase, which matters when a reference set has a million sequences.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Orf", "find_orf", "reverse_complement_dna"]

MIN_CODONS = 100
"""An ORF this long (stop excluded) makes any sequence coding."""
MIN_FORWARD_COVERAGE = 0.9
"""A forward-strand ORF covering this fraction of the sequence makes it coding."""

_GENETIC_CODE = (  # the standard code, codons in TCAG order
    "FFLLSSSSYY**CC*WLLLLPPPPHHQQRRRRIIIMTTTTNNKKSSRRVVVVAAAADDEEGGGG"
)
_AMBIGUOUS = 4
_BASES = np.full(256, _AMBIGUOUS, dtype=np.uint8)
for _code, _base in enumerate("TCAG"):
    _BASES[ord(_base)] = _code
_TRANSLATION = np.frombuffer((_GENETIC_CODE + "X").encode(), dtype=np.uint8)
_AMBIGUOUS_CODON = 64
_IS_STOP = np.array([aa == "*" for aa in _GENETIC_CODE + "X"])
_START = 16 * 2 + 4 * 0 + 3  # ATG
_COMPLEMENT = str.maketrans("ACGTRYKMBVDHSWN", "TGCAYRMKVBHDSWN")


@dataclass(frozen=True)
class Orf:
    """The coding ORF of a sequence, in coordinates of the strand it lies on."""

    strand: str
    """"+" or "-"."""
    start: int
    """0-based offset of the ATG on that strand."""
    end: int
    """0-based offset just past the stop codon on that strand."""
    protein: str
    """The translation, without the stop."""


def reverse_complement_dna(sequence: str) -> str:
    """Reverse complement of canonical (T, IUPAC) DNA."""
    return sequence.translate(_COMPLEMENT)[::-1]


def find_orf(sequence: str) -> Orf | None:
    """The ORF that makes ``sequence`` (canonical DNA) coding, or None if it is not coding."""
    forward_codons = _codons(sequence)
    forward = _longest_orf(forward_codons)
    if forward is not None and forward[1] - forward[0] >= MIN_FORWARD_COVERAGE * len(sequence):
        return _orf("+", forward_codons, forward)
    reverse_codons = _codons(reverse_complement_dna(sequence))
    reverse = _longest_orf(reverse_codons)
    candidates = [(span, strand, codons) for span, strand, codons in (
        (forward, "+", forward_codons), (reverse, "-", reverse_codons)) if span is not None]
    if not candidates:
        return None
    # longest first; on a tie, the forward strand (listed first; max keeps the first)
    span, strand, codons = max(candidates, key=lambda c: c[0][1] - c[0][0])
    if (span[1] - span[0]) // 3 - 1 < MIN_CODONS:
        return None
    return _orf(strand, codons, span)


def _codons(sequence: str) -> np.ndarray:
    """The codon number (0..63, or 64 if ambiguous) starting at every position."""
    bases = _BASES[np.frombuffer(sequence.encode("ascii"), dtype=np.uint8)]
    if len(bases) < 3:
        return np.empty(0, dtype=np.uint8)
    first, second, third = bases[:-2], bases[1:-1], bases[2:]
    codons = 16 * first + 4 * second + third
    ambiguous = (first == _AMBIGUOUS) | (second == _AMBIGUOUS) | (third == _AMBIGUOUS)
    codons[ambiguous] = _AMBIGUOUS_CODON
    return codons


def _longest_orf(codons: np.ndarray) -> tuple[int, int] | None:
    """(start, end) of the longest complete ATG..stop ORF; the first one wins ties."""
    best: tuple[int, int] | None = None
    for frame in range(3):
        in_frame = codons[frame::3]
        stops = np.flatnonzero(_IS_STOP[in_frame])
        starts = np.flatnonzero(in_frame == _START)
        if len(stops) == 0 or len(starts) == 0:
            continue
        # the first ATG after each stop's previous stop (in codons of this frame)
        previous = np.concatenate(([-1], stops[:-1]))
        first = np.searchsorted(starts, previous, side="right")
        orf_starts = starts[np.minimum(first, len(starts) - 1)]
        lengths = np.where((first < len(starts)) & (orf_starts < stops), stops - orf_starts, -1)
        j = int(np.argmax(lengths))  # the first of the longest in this frame
        if lengths[j] < 0:
            continue
        span = (frame + 3 * int(orf_starts[j]), frame + 3 * int(stops[j]) + 3)
        if best is None or (span[1] - span[0], -span[0]) > (best[1] - best[0], -best[0]):
            best = span
    return best


def _orf(strand: str, codons: np.ndarray, span: tuple[int, int]) -> Orf:
    start, end = span
    protein = _TRANSLATION[codons[start : end - 3 : 3]].tobytes().decode("ascii")
    return Orf(strand, start, end, protein)
