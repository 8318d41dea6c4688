"""`seqchat eval` and `seqchat baseline` through the command line."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import NEEDS_EVAL, assert_clean_failure, invoke, write_fasta

REFERENCES = [
    ("g1", "ACGTACGTTTGACCAGTACGATCGATCGGATC", "transfer RNA for proline"),
    ("g2", "GGGCCCAAATTTGGGCCCAAATTTGGGCCCAA", "ribosomal protein of the large subunit"),
    ("g3", "TTTTAAAACCCCGGGGTTTTAAAACCCCGGGG", "ribosomal protein of the large subunit"),
]


def write_references(path: Path) -> Path:
    path.write_text("".join(json.dumps({"id": i, "sequence": s, "text": t}) + "\n" for i, s, t in REFERENCES))
    return path


@NEEDS_EVAL
def test_nearest_neighbour_copies_the_most_similar_reference(tmp_path: Path) -> None:
    references = write_references(tmp_path / "refs.jsonl")
    query = write_fasta(tmp_path / "q.fa", [("q1", REFERENCES[0][1][:-2] + "AA"), ("q2", REFERENCES[1][1])])
    result = invoke(["baseline", "nearest", str(query), "--reference", str(references), "-k", "4", "-f", "jsonl"])
    assert result.exit_code == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["id"], r["neighbour"], r["description"]) for r in rows] == [
        ("q1", "g1", "transfer RNA for proline"),
        ("q2", "g2", "ribosomal protein of the large subunit"),
    ]


def test_most_common_predicts_the_majority_description(tmp_path: Path) -> None:
    references = write_references(tmp_path / "refs.jsonl")
    query = write_fasta(tmp_path / "q.fa", [("q1", "ACGT" * 10)])
    result = invoke(["baseline", "most-common", str(query), "--reference", str(references)])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[-1].split("\t")[2] == "ribosomal protein of the large subunit"


@NEEDS_EVAL
def test_eval_scores_each_prediction_file_and_writes_report_and_plot(tmp_path: Path) -> None:
    references = write_references(tmp_path / "refs.jsonl")
    perfect = tmp_path / "perfect.jsonl"
    perfect.write_text("".join(json.dumps({"id": i, "description": t}) + "\n" for i, _, t in REFERENCES))
    wrong = tmp_path / "wrong.jsonl"
    wrong.write_text(json.dumps({"id": "g1", "description": "an unrelated kinase"}) + "\n")
    report, plot = tmp_path / "report.json", tmp_path / "plot.png"
    result = invoke(["eval", "--references", str(references), "--predictions", str(perfect), str(wrong),
                     "-o", str(report), "--plot", str(plot), "--no-embedding"])
    assert result.exit_code == 0, result.stderr
    scores = json.loads(report.read_text())
    assert scores["perfect"]["scores"]["rougeL"] > 0.99
    assert scores["perfect"]["scores"]["bleu1"] > 0.99
    assert scores["wrong"]["scores"]["rougeL"] < 0.2
    assert scores["wrong"]["missing_in_predictions"] == ["g2", "g3"]
    assert "2 of 3 reference ids have no prediction" in result.stderr
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_refuses_a_reference_file_without_ids(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "text": "fine"}\n{"text": "no id here"}\n')
    prediction = tmp_path / "p.jsonl"
    prediction.write_text('{"id": "a", "description": "x"}\n')
    result = invoke(["eval", "-r", str(bad), "-p", str(prediction), "--no-embedding"])
    assert_clean_failure(result.exit_code, result.stderr, "bad.jsonl")


def test_eval_refuses_references_with_no_rows(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"provenance": {"seqchat": "0.1.0"}}\n')
    prediction = tmp_path / "p.jsonl"
    prediction.write_text('{"id": "a", "description": "x"}\n')
    result = invoke(["eval", "-r", str(empty), "-p", str(prediction), "--no-embedding"])
    assert_clean_failure(result.exit_code, result.stderr, "empty.jsonl", "no references")
