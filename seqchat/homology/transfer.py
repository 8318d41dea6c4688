"""The alignment-transfer baseline: say what the best reference hit says."""

from __future__ import annotations

from collections.abc import Sequence

from seqchat.homology.search import Hit, hit_order

__all__ = ["transfer_description"]


def transfer_description(hits: Sequence[Hit], evalue: float = 1e-3) -> str | None:
    """The description of the best hit (by bit score) if its E-value is at most ``evalue``."""
    if not hits:
        return None
    best = min(hits, key=hit_order)
    return best.description if best.evalue <= evalue else None
