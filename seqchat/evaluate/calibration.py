"""Fitting a bundle's confidence model and checking its calibration.

`fit_confidence` fits the logistic model of `seqchat.llm.confidence` on answers whose
entity is known to be right or wrong: maximum likelihood with the weights pulled towards
the built-in prior's (a Gaussian prior; Newton steps: a few features and a few hundred
answers need nothing more). Fit it on data the bundle is then not evaluated on.

`reliability` bins answers by confidence and compares each bin's mean confidence with its
entity accuracy; `ece` is the bins' gaps weighted by their share of answers. A model that
says 0.02 to every answer of a split where 2 % are right has ECE 0 but separates nothing,
so the table also gives the Brier score and the AUC (the chance that a right answer gets
more confidence than a wrong one).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seqchat.errors import SeqchatError
from seqchat.evaluate.entity import entity_name
from seqchat.evaluate.predictions import load_texts
from seqchat.io.tables import read_table
from seqchat.llm.confidence import FEATURES, PRIOR, ConfidenceModel

__all__ = [
    "DEFAULT_BINS",
    "DEFAULT_L2",
    "CalibrationError",
    "Reliability",
    "ReliabilityBin",
    "auc",
    "entity_right",
    "fit_confidence",
    "format_reliability",
    "load_scored",
    "plot_reliability",
    "reliability",
]

DEFAULT_L2 = 1.0
"""The penalty on the weights' distance from the prior's (not on the intercept): right
answers can be few (a weak bundle names the right entity a few times in a hundred), and
unpenalised weights then diverge."""
DEFAULT_BINS = 10


class CalibrationError(SeqchatError, ValueError):
    """Answers that cannot be fitted or scored (none, one class only, no confidence)."""


def entity_right(reference: str, prediction: str) -> bool:
    """Whether a prediction names the reference's entity (the `entity` metric of one pair)."""
    name = entity_name(reference)
    return bool(name) and name == entity_name(prediction)


def fit_confidence(
    values: Sequence[Mapping[str, float]], right: Sequence[bool], *,
    l2: float = DEFAULT_L2, prior: ConfidenceModel = PRIOR, note: str = "",
) -> ConfidenceModel:
    """The confidence model that best predicts `right` from the answers' `values`, its
    weights pulled towards `prior`'s: a feature the answers never show (no calibration
    answer of a weak bundle names a hit) keeps the prior's weight rather than 0, which
    would say that naming a hit means nothing."""
    if len(values) != len(right) or not values:
        raise CalibrationError("need as many answers as right/wrong labels, and at least one")
    if len(set(right)) < 2:
        raise CalibrationError("every answer is right, or every one wrong: nothing to fit")
    x = np.array([[float(v[name]) for name in FEATURES] for v in values])
    y = np.array(right, dtype=float)
    centre = np.array([0.0, *(prior.weights.get(name, 0.0) for name in FEATURES)])
    coefficients = _newton(np.column_stack([np.ones(len(x)), x]), y, l2, centre)
    weights = dict(zip(FEATURES, map(float, coefficients[1:])))
    return ConfidenceModel(float(coefficients[0]), weights, note)


def _newton(x: np.ndarray, y: np.ndarray, l2: float, centre: np.ndarray, steps: int = 100) -> np.ndarray:
    """argmax of the log-likelihood minus l2/2 |w - centre|^2 (the intercept, column 0,
    unpenalised), by Newton steps halved until the objective rises: it is strictly concave,
    but a full step from far away can overshoot."""
    penalty = np.full(x.shape[1], l2)
    penalty[0] = 0.0

    def objective(beta: np.ndarray) -> float:
        logits = x @ beta
        return float(y @ logits - np.logaddexp(0.0, logits).sum()
                     - 0.5 * penalty @ (beta - centre) ** 2)

    beta = centre.copy()
    current = objective(beta)
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(x @ beta)))
        gradient = x.T @ (y - p) - penalty * (beta - centre)
        hessian = (x * (p * (1 - p))[:, None]).T @ x + np.diag(penalty)
        step = np.linalg.solve(hessian, gradient)
        while objective(beta + step) < current and np.max(np.abs(step)) > 1e-12:
            step /= 2
        beta = beta + step
        current = objective(beta)
        if np.max(np.abs(step)) < 1e-10:
            break
    return beta


@dataclass(frozen=True)
class ReliabilityBin:
    low: float
    high: float
    n: int
    mean_confidence: float
    accuracy: float


@dataclass(frozen=True)
class Reliability:
    bins: tuple[ReliabilityBin, ...]
    """The non-empty bins, lowest first."""
    n: int
    accuracy: float
    mean_confidence: float
    ece: float
    brier: float
    auc: float | None
    """None when every answer is right or every one wrong."""


def reliability(
    confidences: Sequence[float], right: Sequence[bool], n_bins: int = DEFAULT_BINS
) -> Reliability:
    """Equal-width bins over [0, 1] (a confidence of 1 in the last bin)."""
    if len(confidences) != len(right) or not confidences:
        raise CalibrationError("need as many confidences as right/wrong labels, and at least one")
    c = np.array(confidences, dtype=float)
    y = np.array(right, dtype=float)
    index = np.minimum((c * n_bins).astype(int), n_bins - 1)
    bins = []
    ece = 0.0
    for b in range(n_bins):
        inside = index == b
        if not inside.any():
            continue
        mean, accuracy = float(c[inside].mean()), float(y[inside].mean())
        bins.append(ReliabilityBin(b / n_bins, (b + 1) / n_bins, int(inside.sum()), mean, accuracy))
        ece += inside.mean() * abs(mean - accuracy)
    return Reliability(
        tuple(bins), len(c), float(y.mean()), float(c.mean()), float(ece),
        float(np.mean((c - y) ** 2)), auc(c, y),
    )


def auc(scores: Sequence[float] | np.ndarray, right: Sequence[bool] | np.ndarray) -> float | None:
    """Mann-Whitney: P(score of a right answer > of a wrong one), ties counting half; None
    without both right and wrong answers."""
    c, y = np.asarray(scores, dtype=float), np.asarray(right, dtype=float)
    positive, negative = c[y == 1], c[y == 0]
    if not len(positive) or not len(negative):
        return None
    greater = (positive[:, None] > negative[None, :]).sum()
    ties = (positive[:, None] == negative[None, :]).sum()
    return float((greater + ties / 2) / (len(positive) * len(negative)))


def load_scored(
    predictions: str | os.PathLike[str], references: str | os.PathLike[str],
    column: str = "confidence",
) -> tuple[list[float], list[bool]]:
    """(`column`'s value, entity right) of every prediction that has a reference: a seqchat
    output with that column, and references as `seqchat eval` reads them."""
    gold = load_texts(references)
    _provenance, rows = read_table(predictions)
    if rows and column not in rows[0]:
        raise CalibrationError(f"{predictions}: no {column} column")
    confidences, right = [], []
    for row in rows:
        reference = gold.get(str(row["id"]))
        if reference is None:
            continue
        confidences.append(float(row[column]))
        right.append(entity_right(reference, str(row["description"])))
    if not confidences:
        raise CalibrationError(f"{predictions}: no prediction has a reference in {references}")
    return confidences, right


def format_reliability(table: Reliability, title: str) -> str:
    """The table as Markdown (the model card's form)."""
    auc = "n/a" if table.auc is None else f"{table.auc:.3f}"
    lines = [
        f"**{title}**: n {table.n}, entity accuracy {table.accuracy:.3f}, mean confidence "
        f"{table.mean_confidence:.3f}, **ECE {table.ece:.3f}**, Brier {table.brier:.3f}, AUC {auc}",
        "",
        "| confidence | n | mean confidence | entity accuracy |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {b.low:.1f}-{b.high:.1f} | {b.n} | {b.mean_confidence:.3f} | {b.accuracy:.3f} |"
        for b in table.bins
    ]
    return "\n".join(lines)


def plot_reliability(tables: Mapping[str, Reliability], out_png: str | os.PathLike[str]) -> Path:
    """One reliability diagram per table, side by side: each bin's entity accuracy against
    its mean confidence (marker area by, and label with, the bin's size), and the diagonal."""
    from seqchat.home import keep_matplotlib_cache_home

    keep_matplotlib_cache_home()
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4 * len(tables), 4.2))
    axes = fig.subplots(1, len(tables), squeeze=False)[0]
    for ax, (title, table) in zip(axes, tables.items()):
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="calibrated")
        ax.scatter(
            [b.mean_confidence for b in table.bins], [b.accuracy for b in table.bins],
            s=[20 + 300 * b.n / table.n for b in table.bins], zorder=3, label="bins",
        )
        ax.plot([b.mean_confidence for b in table.bins], [b.accuracy for b in table.bins], zorder=2)
        for b in table.bins:
            ax.annotate(f"n={b.n}", (b.mean_confidence, b.accuracy), textcoords="offset points",
                        xytext=(6, -12 if b.accuracy > 0.9 else 6), fontsize="small")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence")
        ax.set_ylabel("entity accuracy")
        ax.set_title(f"{title}\nECE {table.ece:.3f}, n {table.n}", fontsize="medium")
        ax.grid(alpha=0.3)
    axes[0].legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, format="png")
    return out
