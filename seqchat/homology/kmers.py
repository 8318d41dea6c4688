"""The k-mers of the prefilter: integer codes for nucleotide and protein words.

Nucleotide k-mers are canonical over both strands (the smaller code of a k-mer and of its
reverse complement), so a query finds a reference on either strand; protein k-mers are
plain words over the 20 amino acids. A word holding any other letter (IUPAC ambiguity
codes, X) is skipped. Large reference sets keep only the k-mers whose hash falls in a
1/sampling fraction: queries are sampled the same way, so a shared k-mer is either kept
on both sides or on neither (FracMinHash).
"""

from __future__ import annotations

import numpy as np

__all__ = ["AMINO_ACIDS", "MAX_K", "batch_kmers", "nucleotide_kmers", "protein_kmers", "sampled"]

AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"
MAX_K = {"nucleotide": 16, "protein": 6}
"""Largest k whose codes fit in uint32 (2 bits per base, 5 bits per residue)."""

_INVALID = 255
_NUCLEOTIDE_CODES = np.full(256, _INVALID, dtype=np.uint8)
for _code, _letter in enumerate("ACGT"):
    _NUCLEOTIDE_CODES[ord(_letter)] = _code
_NUCLEOTIDE_CODES[ord("U")] = 3
_PROTEIN_CODES = np.full(256, _INVALID, dtype=np.uint8)
for _code, _letter in enumerate(AMINO_ACIDS):
    _PROTEIN_CODES[ord(_letter)] = _code

_HASH_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)


def nucleotide_kmers(sequence: str, k: int) -> np.ndarray:
    """Canonical codes (uint32) of every unambiguous k-mer of ``sequence``, in order."""
    return _words(_NUCLEOTIDE_CODES, sequence, k, 2, canonical=True)[0]


def protein_kmers(protein: str, k: int) -> np.ndarray:
    """Codes (uint32) of every k-mer of ``protein`` made of the 20 amino acids, in order."""
    return _words(_PROTEIN_CODES, protein, k, 5, canonical=False)[0]


def batch_kmers(texts: list[str], k: int, *, protein: bool) -> tuple[np.ndarray, np.ndarray]:
    """The k-mers of many sequences at once: (codes, index in ``texts`` of each code).

    One numpy pass over the texts joined by an invalid letter, which no k-mer spans:
    building a large reference set this way costs a few numpy calls per thousand
    sequences instead of per sequence.
    """
    if not texts:
        return np.empty(0, dtype=np.uint32), np.empty(0, dtype=np.int64)
    table, bits = (_PROTEIN_CODES, 5) if protein else (_NUCLEOTIDE_CODES, 2)
    joined = "\0".join(texts)
    codes, positions = _words(table, joined, k, bits, canonical=not protein)
    starts = np.cumsum([0] + [len(text) + 1 for text in texts[:-1]])
    return codes, np.searchsorted(starts, positions, side="right") - 1


def _words(
    table: np.ndarray, text: str, k: int, bits: int, *, canonical: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(codes, start positions) of the valid k-mers of ``text``; ``bits`` per letter.

    k vectorised shift-and-or passes over the whole text, rather than a (n, k) window
    matrix: a few nanoseconds per k-mer.
    """
    letters = table[np.frombuffer(text.encode("ascii"), dtype=np.uint8)]
    count = len(letters) - k + 1
    if count <= 0:
        return np.empty(0, dtype=np.uint32), np.empty(0, dtype=np.int64)
    invalid = np.concatenate(([0], np.cumsum(letters == _INVALID)))
    positions = np.flatnonzero(invalid[k:] == invalid[:count])
    values = letters.astype(np.uint32) & np.uint32((1 << bits) - 1)
    codes = np.zeros(count, dtype=np.uint32)
    for offset in range(k):
        codes <<= np.uint32(bits)
        codes |= values[offset : offset + count]
    if canonical:
        complement = np.uint32(3) - values
        reverse = np.zeros(count, dtype=np.uint32)
        for offset in range(k):
            reverse |= complement[offset : offset + count] << np.uint32(bits * offset)
        codes = np.minimum(codes, reverse)
    return codes[positions], positions


def sampled(kmers: np.ndarray, sampling: int) -> np.ndarray:
    """Boolean mask of the k-mers whose hash is 0 modulo ``sampling`` (all when it is 1)."""
    if sampling == 1:
        return np.ones(len(kmers), dtype=np.bool_)
    hashed = (kmers.astype(np.uint64) * _HASH_MULTIPLIER) >> np.uint64(40)
    return hashed % np.uint64(sampling) == 0
