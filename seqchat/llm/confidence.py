"""The `confidence` of an answer: a logistic model of the probability that its entity (the
name it gives, `seqchat.evaluate.entity`) is right, from the evidence and the LLM's own
log-probabilities.

`mean_logprob` alone is not that probability: a small LLM is surest of the phrases it has
seen most, right or wrong. What predicts a right name is mostly the evidence: whether the
answer names one of the sequence's reference hits, and how strong that hit is. The model
reads a handful of features of one answer (`FEATURES`), each about 0 to 1 except
`mean_logprob`, and gives sigmoid(intercept + sum of weight x feature).

Its coefficients are a bundle's (`confidence:` in seqchat.yaml, fitted by
`seqchat.evaluate.calibration` on data the bundle is not evaluated on); a bundle without
them gets `PRIOR`. Nothing here knows what a hit is: the pipeline turns its hits into
`HitStrength`s (`seqchat.annotate.answer_features`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from seqchat.errors import SeqchatError

__all__ = [
    "FEATURES",
    "PRIOR",
    "ConfidenceConfigError",
    "ConfidenceModel",
    "HitStrength",
    "evalue_strength",
    "features",
]

FEATURES = (
    "named",
    "named_identity",
    "named_evalue",
    "best_identity",
    "best_coverage",
    "best_evalue",
    "mean_logprob",
)
"""named: 1 when the answer's entity is one of its hits' (for a grounded bundle: it copies
the hit). named_*: that hit's identity (fraction) and E-value strength, 0 without one. best_*: the best hit's identity, query
coverage and E-value strength, 0 without a hit. mean_logprob: the LLM's, as generated.
The best hit counts on its own because a strong hit that the answer does not name is
evidence against the answer."""

EVALUE_CAP = 50.0
"""-log10 E-values above this all count as certain (E-values of long alignments reach 0)."""

DIGITS = 4


class ConfidenceConfigError(SeqchatError, ValueError):
    """A bundle's `confidence:` mapping cannot be used."""


@dataclass(frozen=True)
class HitStrength:
    """What the confidence reads of one hit: percent identity, query coverage (0-1),
    E-value."""

    identity: float
    coverage: float
    evalue: float


def evalue_strength(evalue: float) -> float:
    """-log10(E) scaled to 0-1: 0 for E >= 1, 1 for E <= 1e-50."""
    if evalue <= 0:
        return 1.0
    return min(max(-math.log10(evalue), 0.0), EVALUE_CAP) / EVALUE_CAP


def features(
    named: HitStrength | None, best: HitStrength | None, mean_logprob: float
) -> dict[str, float]:
    """The model's inputs for one answer: the hit it names (None when it names none), the
    best hit (None when there is none) and its mean log-probability."""
    values = dict.fromkeys(FEATURES, 0.0)
    if named is not None:
        values["named"] = 1.0
        values["named_identity"] = named.identity / 100
        values["named_evalue"] = evalue_strength(named.evalue)
    if best is not None:
        values["best_identity"] = best.identity / 100
        values["best_coverage"] = best.coverage
        values["best_evalue"] = evalue_strength(best.evalue)
    values["mean_logprob"] = mean_logprob
    return values


@dataclass(frozen=True)
class ConfidenceModel:
    """sigmoid(intercept + sum of weights[name] x feature[name]); a feature without a
    weight counts 0. `note` says where the coefficients come from."""

    intercept: float
    weights: Mapping[str, float] = field(default_factory=dict)
    note: str = ""

    def __post_init__(self) -> None:
        unknown = sorted(set(self.weights) - set(FEATURES))
        if unknown:
            raise ConfidenceConfigError(
                f"confidence.weights: unknown feature {', '.join(unknown)} "
                f"(known: {', '.join(FEATURES)})"
            )

    def score(self, values: Mapping[str, float]) -> float:
        """The probability, rounded to DIGITS decimals as the output shows it."""
        logit = self.intercept + sum(w * values[name] for name, w in self.weights.items())
        return round(_sigmoid(logit), DIGITS)

    @classmethod
    def from_config(cls, mapping: object) -> ConfidenceModel:
        """A bundle's `confidence:` mapping (`as_config`'s layout); PRIOR when absent."""
        if mapping is None:
            return PRIOR
        if not isinstance(mapping, Mapping):
            raise ConfidenceConfigError("confidence: expected a mapping")
        unknown = sorted(set(mapping) - {"intercept", "weights", "note"})
        if unknown:
            raise ConfidenceConfigError(f"confidence: unknown key {', '.join(unknown)}")
        weights = mapping.get("weights") or {}
        if not isinstance(weights, Mapping):
            raise ConfidenceConfigError("confidence.weights: expected a mapping")
        note = mapping.get("note", "")
        if not isinstance(note, str):
            raise ConfidenceConfigError("confidence.note: expected text")
        return cls(
            _number(mapping.get("intercept"), "confidence.intercept"),
            {str(name): _number(value, f"confidence.weights.{name}") for name, value in weights.items()},
            note,
        )

    def as_config(self) -> dict[str, object]:
        """The `confidence:` mapping of seqchat.yaml for these coefficients."""
        config: dict[str, object] = {
            "intercept": round(self.intercept, DIGITS),
            "weights": {name: round(self.weights[name], DIGITS) for name in FEATURES if name in self.weights},
        }
        if self.note:
            config["note"] = self.note
        return config


def _number(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfidenceConfigError(f"{where}: expected a finite number, not {value!r}")
    return float(value)


def _sigmoid(logit: float) -> float:
    if logit >= 0:
        return 1.0 / (1.0 + math.exp(-logit))
    exp = math.exp(logit)
    return exp / (1.0 + exp)


PRIOR = ConfidenceModel(
    intercept=-4.0,
    weights={
        "named": 1.5,
        "named_identity": 2.0,
        "named_evalue": 1.5,
        "best_identity": 0.5,
        "best_coverage": 0.5,
        "mean_logprob": 0.5,
    },
    note="built-in prior, not fitted: a named hit is as right as it is strong; a generated name rarely is",
)
"""For a bundle without fitted coefficients: set by hand, not calibrated. With mean_logprob
-0.5, an answer that names a hit of 100 % identity, full coverage and E <= 1e-50 gets 0.85;
one that names nothing beside such a hit 0.04; one without any hit 0.01."""
