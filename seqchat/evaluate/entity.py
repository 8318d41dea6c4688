"""The entity-level metric: is the thing a description names the thing the reference
names? N-gram metrics reward long generic text ("a ribosomal RNA that ... ribosomal RNA");
this one asks only for the name.

The name of a description is its first clause: the text before the first sentence end,
semicolon or colon, compared case- and punctuation-insensitively. For an Rfam text that is
the family name ("5S ribosomal RNA. Rfam RNA type: ..."), for an SGD gene description the
product or "protein of unknown function" ("Protein of unknown function; ...").
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["entity_name", "entity_scores"]

_CLAUSE_END = re.compile(r"(?<=[^\s.]{2})\.(?:\s|$)|[;:]|\n")
_NOT_WORD = re.compile(r"[^\w]+")


def entity_name(text: str) -> str:
    """The normalised name of a description: its first clause, lower-case, words only."""
    clause = _CLAUSE_END.split(text.strip(), maxsplit=1)[0]
    return " ".join(_NOT_WORD.sub(" ", clause.casefold()).split())


def entity_scores(references: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
    """`entity`: the share of pairs whose names are equal (an empty name matches nothing)."""
    matches = 0
    for reference, prediction in zip(references, predictions):
        name = entity_name(reference)
        matches += bool(name) and name == entity_name(prediction)
    return {"entity": matches / len(references) if references else 0.0}
