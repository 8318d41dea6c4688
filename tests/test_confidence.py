"""The `confidence` column: a logistic model of "the entity is right" from the evidence and
the LLM's log-probabilities, its coefficients read from the bundle, fitted and checked by
`seqchat.evaluate.calibration`."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import NEEDS_EVAL, assert_clean_failure, invoke, write_fasta

from seqchat.annotate import Annotation, answer_features, named_hit
from seqchat.evaluate.calibration import (
    CalibrationError,
    entity_right,
    fit_confidence,
    format_reliability,
    load_scored,
    plot_reliability,
    reliability,
)
from seqchat.homology.search import Hit
from seqchat.io.tables import read_table
from seqchat.llm.confidence import (
    FEATURES,
    PRIOR,
    ConfidenceConfigError,
    ConfidenceModel,
    HitStrength,
    evalue_strength,
    features,
)

ROOT = Path(__file__).resolve().parents[1]


def hit(reference_id: str, description: str, identity: float = 99.0, evalue: float = 1e-30) -> Hit:
    return Hit(reference_id, description, None, None, (), identity, 0.9, 0.9, 80.0, evalue,
               "+", "nucleotide", "lab", "abc")


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


# --- the model -----------------------------------------------------------------------------


def test_confidence_is_a_probability_at_any_extreme() -> None:
    strong = HitStrength(100.0, 1.0, 0.0)
    for model in (PRIOR, ConfidenceModel(40.0, {"named": 40.0}), ConfidenceModel(-40.0, {"mean_logprob": 40.0})):
        for values in (features(strong, strong, 0.0), features(None, None, -30.0), features(None, strong, -1.0)):
            assert 0.0 <= model.score(values) <= 1.0


def test_confidence_rises_with_the_named_hits_identity() -> None:
    """With everything else fixed, a closer hit that the answer names is more likely right."""
    scores = []
    for identity in (30.0, 50.0, 70.0, 90.0, 100.0):
        best = hit("r1", "5S ribosomal RNA. Rfam text.", identity)
        answer = Annotation("q", 120, "5S ribosomal RNA", 5, -0.8, (best,))
        assert named_hit(answer) is best
        scores.append(PRIOR.score(answer_features(answer)))
    assert scores == sorted(scores) and len(set(scores)) == len(scores)


def test_naming_a_hit_counts_and_a_copy_names_the_hit_it_expands() -> None:
    hits = (hit("r1", "5S ribosomal RNA. Text.", 99.0), hit("r2", "5S ribosomal RNA. Text.", 60.0))
    copied = Annotation("q", 120, "5S ribosomal RNA. Text.", 3, -0.5, hits, source="hit:r2")
    assert named_hit(copied) is hits[1]
    values = answer_features(copied)
    assert values["named"] == 1.0 and values["named_identity"] == pytest.approx(0.6)
    assert values["best_identity"] == pytest.approx(0.99)
    other = Annotation("q", 120, "A tRNA for proline", 5, -0.5, hits, source="generated")
    assert named_hit(other) is None
    assert PRIOR.score(answer_features(copied)) > PRIOR.score(answer_features(other))
    alone = Annotation("q", 120, "A tRNA for proline", 5, -0.5, ())
    assert answer_features(alone) == dict.fromkeys(FEATURES, 0.0) | {"mean_logprob": -0.5}


def test_evalue_strength() -> None:
    assert evalue_strength(1.0) == 0.0 and evalue_strength(5.0) == 0.0
    assert evalue_strength(1e-25) == pytest.approx(0.5)
    assert evalue_strength(1e-50) == 1.0 and evalue_strength(1e-200) == 1.0 and evalue_strength(0.0) == 1.0


def test_the_bundle_mapping_reads_back_and_is_checked() -> None:
    model = ConfidenceModel(-2.5, {"named": 1.25, "mean_logprob": 0.5}, "fitted here")
    assert ConfidenceModel.from_config(model.as_config()) == model
    assert ConfidenceModel.from_config(None) is PRIOR
    for bad, words in [
        ({"intercept": -1, "weights": {"named_ident": 1}}, "unknown feature named_ident"),
        ({"intercept": "high"}, "confidence.intercept"),
        ({"intercept": -1, "weights": {"named": True}}, "confidence.weights.named"),
        ({"intercept": -1, "bias": 2}, "unknown key bias"),
        ({"weights": {}}, "confidence.intercept"),
        ([1, 2], "expected a mapping"),
    ]:
        with pytest.raises(ConfidenceConfigError, match=words):
            ConfidenceModel.from_config(bad)


def test_the_default_bundle_carries_fitted_coefficients() -> None:
    config = yaml.safe_load((ROOT / "models" / "default" / "seqchat.yaml").read_text())
    model = ConfidenceModel.from_config(config["confidence"])
    assert model != PRIOR and "calibrate.py" in model.note


# --- fitting and reliability -----------------------------------------------------------------


def synthetic(n: int, seed: int) -> tuple[list[dict[str, float]], list[bool], ConfidenceModel]:
    """Answers drawn from a known confidence model: named hits right when close."""
    truth = ConfidenceModel(-3.0, {"named": 1.0, "named_identity": 3.0, "mean_logprob": 1.0})
    rng = np.random.default_rng(seed)
    values, right = [], []
    for _ in range(n):
        strength = HitStrength(float(rng.uniform(30, 100)), float(rng.uniform(0.2, 1)), 10.0 ** -rng.uniform(3, 60))
        named = strength if rng.random() < 0.5 else None
        v = features(named, strength, float(-rng.exponential(1.0)))
        values.append(v)
        right.append(bool(rng.random() < truth.score(v)))
    return values, right, truth


def test_a_fit_recovers_a_known_model_and_is_calibrated_on_fresh_answers() -> None:
    values, right, truth = synthetic(4000, seed=1)
    fitted = fit_confidence(values, right, l2=0.1)
    held_values, held_right, _ = synthetic(4000, seed=2)
    fitted_scores = [fitted.score(v) for v in held_values]
    table = reliability(fitted_scores, held_right)
    assert table.ece < 0.03
    assert table.auc is not None and table.auc > 0.75
    true_scores = np.array([truth.score(v) for v in held_values])
    assert np.max(np.abs(np.array(fitted_scores) - true_scores)) < 0.12
    # a constant at the base rate is calibrated on average but separates nothing
    constant = reliability([float(np.mean(right))] * len(held_right), held_right)
    assert constant.auc == 0.5 and table.brier < constant.brier


def test_a_feature_the_answers_never_show_keeps_the_priors_weight() -> None:
    """A weak bundle's calibration answers may never name a hit: that must not teach the
    model that naming one means nothing."""
    values, right, _ = synthetic(400, seed=4)
    unnamed = [v | {"named": 0.0, "named_identity": 0.0, "named_evalue": 0.0} for v in values]
    fitted = fit_confidence(unnamed, right)
    for name in ("named", "named_identity", "named_evalue"):
        assert fitted.weights[name] == pytest.approx(PRIOR.weights[name])
    towards_zero = fit_confidence(unnamed, right, prior=ConfidenceModel(0.0))
    assert towards_zero.weights["named"] == 0.0


def test_a_fit_needs_both_outcomes() -> None:
    values, _, _ = synthetic(20, seed=3)
    with pytest.raises(CalibrationError, match="nothing to fit"):
        fit_confidence(values, [False] * 20)


def test_reliability_bins_by_hand() -> None:
    table = reliability([0.1, 0.12, 0.9, 0.95, 1.0], [False, True, True, True, True])
    assert [(b.low, b.n) for b in table.bins] == [(0.1, 2), (0.9, 3)]
    low, high = table.bins
    assert low.mean_confidence == pytest.approx(0.11) and low.accuracy == 0.5
    assert high.accuracy == 1.0
    assert table.ece == pytest.approx(0.4 * 0.39 + 0.6 * (1 - 0.95))
    assert table.auc == 1.0
    text = format_reliability(table, "by hand")
    assert "ECE 0.186" in text and "| 0.1-0.2 | 2 | 0.110 | 0.500 |" in text


def test_entity_right_compares_first_clauses() -> None:
    assert entity_right("5S ribosomal RNA. Rfam RNA type: Gene.", "5S Ribosomal RNA; a long text")
    assert not entity_right("5S ribosomal RNA. Rfam RNA type: Gene.", "5.8S ribosomal RNA.")
    assert not entity_right("", "")


@NEEDS_EVAL
def test_reliability_from_a_predictions_file(tmp_path: Path) -> None:
    refs = tmp_path / "refs.jsonl"
    refs.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in
                            [("a", "tRNA. Text."), ("b", "5S ribosomal RNA. Text."), ("c", "Unused.")]))
    predictions = tmp_path / "pred.tsv"
    predictions.write_text("# seqchat: test\nid\tdescription\tconfidence\n"
                           "a\ttRNA; a guess\t0.8\nb\tsnoRNA\t0.3\nz\tnot in the references\t0.5\n")
    assert load_scored(predictions, refs) == ([0.8, 0.3], [True, False])
    no_column = tmp_path / "old.tsv"
    no_column.write_text("id\tdescription\na\ttRNA\n")
    with pytest.raises(CalibrationError, match="no confidence column"):
        load_scored(no_column, refs)
    png = plot_reliability({"split": reliability([0.8, 0.3], [True, False])}, tmp_path / "r.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- in the output -----------------------------------------------------------------------------


@pytest.fixture
def evidence_bundle(bundle_copy, tmp_path: Path) -> tuple[Path, Path, Path]:
    """The tiny bundle with a reference holding the first query, and a confidence mapping
    that reads only the best hit's identity."""
    rng = random.Random(8)
    references = [{"id": f"ref{i}", "sequence": "".join(rng.choice("ACGT") for _ in range(180)),
                   "description": f"family {i} RNA. Rfam RNA type: Gene."} for i in range(10)]
    bundle = bundle_copy()
    (bundle / "refs.jsonl").write_text("".join(json.dumps(row) + "\n" for row in references))
    config = yaml.safe_load((bundle / "seqchat.yaml").read_text())
    config["reference"] = "refs.jsonl"
    config["confidence"] = {"intercept": -2.0, "weights": {"best_identity": 4.0}}
    (bundle / "seqchat.yaml").write_text(yaml.safe_dump(config))
    fasta = write_fasta(tmp_path / "q.fa", [("own", references[3]["sequence"]), ("none", "ACGT" * 30)])
    return bundle, fasta, tmp_path


@pytest.mark.parametrize("fmt", ["tsv", "jsonl", "json"])
def test_every_format_has_the_confidence_the_bundle_asks_for(
    evidence_bundle, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    bundle, fasta, tmp_path = evidence_bundle
    monkeypatch.setenv("SEQCHAT_HOME", str(tmp_path / "home"))
    out = tmp_path / f"out.{fmt}"
    result = invoke(["annotate", str(fasta), "-m", str(bundle), "-o", str(out), "-f", fmt,
                     "--max-new-tokens", "3", "-t", "1", "-q"])
    assert result.exit_code == 0, result.stderr
    _, rows = read_table(out)
    assert list(rows[0])[-2:] == ["evalue", "confidence"]
    by_id = {row["id"]: row for row in rows}
    assert float(by_id["own"]["identity"]) == 100.0
    assert float(by_id["own"]["confidence"]) == round(sigmoid(-2.0 + 4.0), 4)
    assert float(by_id["none"]["confidence"]) == round(sigmoid(-2.0), 4)


def test_a_bad_confidence_mapping_fails_cleanly(evidence_bundle, monkeypatch: pytest.MonkeyPatch) -> None:
    bundle, fasta, tmp_path = evidence_bundle
    monkeypatch.setenv("SEQCHAT_HOME", str(tmp_path / "home"))
    config = yaml.safe_load((bundle / "seqchat.yaml").read_text())
    config["confidence"]["weights"] = {"identity": 1.0}
    (bundle / "seqchat.yaml").write_text(yaml.safe_dump(config))
    result = invoke(["annotate", str(fasta), "-m", str(bundle), "-o", str(tmp_path / "x.tsv"), "-t", "1"])
    # Refused when the bundle is read, naming the file and the key.
    assert_clean_failure(result.exit_code, result.stderr, "seqchat.yaml", "confidence.weights.identity", "'named'")
