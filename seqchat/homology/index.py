"""The k-mer prefilter index: which references share the most k-mers with a query.

On disk, one path (nucleotide or protein) is two parallel ``.npy`` arrays sorted by
(k-mer, reference): ``<name>_kmers.npy`` (uint32 codes) and ``<name>_refs.npy`` (uint32
reference numbers), one entry per distinct k-mer of each reference, and
``<name>_counts.npy``: how many distinct k-mers each reference has. They are memory-mapped
on load and read by binary search, so opening an index of any size takes milliseconds
and a query touches only the pages of its own k-mers.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["IndexWriter", "KmerIndex", "index_keys"]

_REF_BITS = np.uint64(32)
_REF_MASK = np.uint64(0xFFFFFFFF)


def index_keys(kmers: np.ndarray, refs: np.ndarray) -> np.ndarray:
    """The sorted distinct (k-mer << 32 | reference) keys of these pairs."""
    keys = (kmers.astype(np.uint64) << _REF_BITS) | refs.astype(np.uint64)
    keys.sort()
    # sort + neighbour comparison: much faster than np.unique's hash table here
    return keys[np.concatenate(([True], keys[1:] != keys[:-1]))] if len(keys) else keys


class IndexWriter:
    """Collects (k-mer, reference) pairs chunk by chunk, then writes the sorted arrays."""

    def __init__(self) -> None:
        self._chunks: list[np.ndarray] = []

    def add(self, keys: np.ndarray) -> None:
        """Add the :func:`index_keys` of a chunk of references."""
        self._chunks.append(keys)

    def write(self, directory: Path, name: str, references: int) -> int:
        """Write the arrays of ``<name>`` for ``references`` references; the entry count."""
        keys = np.concatenate(self._chunks) if self._chunks else np.empty(0, np.uint64)
        self._chunks = []
        keys.sort()  # each chunk holds distinct pairs and chunks hold distinct references
        refs = (keys & _REF_MASK).astype(np.uint32)
        np.save(directory / f"{name}_kmers.npy", (keys >> _REF_BITS).astype(np.uint32))
        np.save(directory / f"{name}_refs.npy", refs)
        counts = np.bincount(refs, minlength=references).astype(np.uint32)
        np.save(directory / f"{name}_counts.npy", counts)
        return len(keys)


@dataclass(frozen=True)
class KmerIndex:
    """A memory-mapped index of one path."""

    kmers: np.ndarray
    refs: np.ndarray
    counts: np.ndarray
    """Distinct k-mers per reference."""
    max_postings: int
    """K-mers held by more references than this say nothing and are skipped."""

    @classmethod
    def load(cls, directory: Path, name: str, max_postings: int) -> KmerIndex:
        """Map the arrays written by :meth:`IndexWriter.write` (raises OSError/ValueError)."""
        kmers = np.load(directory / f"{name}_kmers.npy", mmap_mode="r")
        refs = np.load(directory / f"{name}_refs.npy", mmap_mode="r")
        counts = np.load(directory / f"{name}_counts.npy", mmap_mode="r")
        if kmers.dtype != np.uint32 or refs.dtype != np.uint32 or kmers.shape != refs.shape:
            raise ValueError(f"{name} index arrays do not match")
        return cls(kmers, refs, counts, max_postings)

    def __len__(self) -> int:
        return len(self.kmers)

    def candidates(
        self,
        query_kmers: np.ndarray,
        limit: int,
        min_shared: int,
        min_fraction: float = 0.0,
        excluded: Collection[int] = (),
        excluded_mask: np.ndarray | None = None,
    ) -> list[int]:
        """The (at most ``limit``) references sharing the most distinct k-mers with the
        query; ties go to the lower reference number.

        A reference must share at least ``min_shared`` k-mers, and at least
        ``min_fraction`` of the k-mers of the smaller of it and the query: compositional
        bias makes long queries share a few k-mers with many unrelated references.
        ``excluded`` (reference numbers) and ``excluded_mask`` (a boolean array over
        reference numbers) are references to leave out.
        """
        if len(self.kmers) == 0 or len(query_kmers) == 0:
            return []
        distinct = np.unique(query_kmers)
        lows = np.searchsorted(self.kmers, distinct, side="left")
        highs = np.searchsorted(self.kmers, distinct, side="right")
        sizes = highs - lows
        useful = (sizes > 0) & (sizes <= self.max_postings)
        lows, sizes = lows[useful], sizes[useful]
        total = int(sizes.sum())
        if total == 0:
            return []
        # Positions lows[i] .. lows[i] + sizes[i] - 1 for every i, without a Python loop.
        run_starts = np.cumsum(sizes) - sizes
        positions = np.repeat(lows - run_starts, sizes) + np.arange(total)
        found, shared = np.unique(np.asarray(self.refs[positions]), return_counts=True)
        kept = np.ones(len(found), dtype=np.bool_)
        if excluded:
            kept &= ~np.isin(found, np.fromiter(excluded, dtype=np.uint32))
        if excluded_mask is not None:
            kept &= ~excluded_mask[found]
        found, shared = found[kept], shared[kept]
        smaller = np.minimum(self.counts[found], len(distinct))
        keep = (shared >= min_shared) & (shared >= min_fraction * smaller)
        found, shared = found[keep], shared[keep]
        order = np.lexsort((found, -shared))[:limit]
        return [int(ref) for ref in found[order]]
