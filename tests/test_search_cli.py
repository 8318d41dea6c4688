"""`seqchat reference`, `seqchat search`, the evidence columns of `annotate` and the
alignment-transfer baseline, from the command line, on small synthetic reference sets."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import NEEDS_EVAL, assert_clean_failure, invoke, write_fasta

from seqchat.io.tables import read_table
from seqchat.io.writers import partial_path

EVIDENCE = ["top_hit", "identity", "coverage", "evalue"]


def random_dna(rng: random.Random, length: int) -> str:
    return "".join(rng.choice("ACGT") for _ in range(length))


def mutated(rng: random.Random, sequence: str, rate: float) -> str:
    return "".join(rng.choice("ACGT".replace(base, "")) if rng.random() < rate else base
                   for base in sequence)


@pytest.fixture(scope="module")
def references() -> list[dict]:
    rng = random.Random(7)
    return [
        {"id": f"ref{i}", "sequence": random_dna(rng, rng.randint(150, 400)),
         "description": f"family {i} RNA", "family": f"RF{i:05d}"}
        for i in range(40)
    ]


@pytest.fixture(scope="module")
def reference_jsonl(tmp_path_factory: pytest.TempPathFactory, references) -> Path:
    path = tmp_path_factory.mktemp("refs") / "refs.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in references))
    return path


@pytest.fixture(scope="module")
def reference_dir(tmp_path_factory: pytest.TempPathFactory, reference_jsonl: Path) -> Path:
    out = tmp_path_factory.mktemp("index") / "lab"
    result = invoke(["reference", "build", "-s", str(reference_jsonl), "-o", str(out), "-t", "1"])
    assert result.exit_code == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def queries(tmp_path_factory: pytest.TempPathFactory, references) -> tuple[Path, list[tuple[str, str]]]:
    """ref3 itself, ref5 at about 88 % identity, and a shuffled sequence with no relative."""
    rng = random.Random(11)
    shuffled = list(references[9]["sequence"])
    rng.shuffle(shuffled)
    records = [
        ("own", references[3]["sequence"]),
        ("mutant", mutated(rng, references[5]["sequence"], 0.12)),
        ("shuffled", "".join(shuffled)),
    ]
    return write_fasta(tmp_path_factory.mktemp("queries") / "q.fa", records), records


def test_reference_info_prints_counts_hash_and_source(reference_dir: Path, reference_jsonl: Path) -> None:
    result = invoke(["reference", "info", str(reference_dir)])
    assert result.exit_code == 0, result.stderr
    assert "references: 40 (0 coding)" in result.stdout
    assert "content sha256: " in result.stdout
    assert f"sequences: {reference_jsonl.name} (sha256 " in result.stdout


def test_reference_build_is_reproducible(reference_dir: Path, reference_jsonl: Path, tmp_path: Path) -> None:
    renamed = tmp_path / "other-name.jsonl"
    renamed.write_text("".join(reversed(reference_jsonl.read_text().splitlines(keepends=True))))
    again = tmp_path / "again"
    assert invoke(["reference", "build", "-s", str(renamed), "-o", str(again)]).exit_code == 0

    def content_hash(directory: Path) -> str:
        return json.loads((directory / "manifest.json").read_text())["content_sha256"]

    assert content_hash(again) == content_hash(reference_dir)


def test_reference_build_refuses_duplicate_ids_in_one_line(tmp_path: Path, references) -> None:
    bad = tmp_path / "dup.jsonl"
    bad.write_text("".join(json.dumps(row) + "\n" for row in [references[0], references[0]]))
    result = invoke(["reference", "build", "-s", str(bad), "-o", str(tmp_path / "out")])
    assert_clean_failure(result.exit_code, result.stderr, str(bad), "ref0")
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["dup.jsonl"]


def test_search_finds_own_and_mutated_but_not_shuffled(reference_dir: Path, queries, tmp_path: Path) -> None:
    out = tmp_path / "hits.tsv"
    result = invoke(["search", str(queries[0]), "-r", str(reference_dir), "-o", str(out), "-t", "1"])
    assert result.exit_code == 0, result.stderr
    provenance, rows = read_table(out)
    assert list(rows[0]) == ["qseqid", "sseqid", "pident", "qcov", "scov", "evalue", "bitscore",
                             "strand", "path", "reference", "description"]
    best = {}
    for row in rows:
        best.setdefault(row["qseqid"], row)
    assert best["own"]["sseqid"] == "ref3" and float(best["own"]["pident"]) == 100.0
    assert best["own"]["description"] == "family 3 RNA"
    assert best["mutant"]["sseqid"] == "ref5" and 80 <= float(best["mutant"]["pident"]) < 95
    assert "shuffled" not in best
    assert all(float(row["evalue"]) <= 1e-3 for row in rows)
    assert provenance["reference_lab"].startswith(
        json.loads((reference_dir / "manifest.json").read_text())["content_sha256"]
    )
    again = invoke(["search", str(queries[0]), "-r", str(reference_dir), "-o", str(out)])
    assert_clean_failure(again.exit_code, again.stderr, str(out), "--force")


def test_search_max_hits_and_jsonl(reference_dir: Path, queries, tmp_path: Path) -> None:
    out = tmp_path / "hits.jsonl"
    result = invoke(["search", str(queries[0]), "-r", str(reference_dir), "-o", str(out),
                     "-f", "jsonl", "--max-hits", "1", "--evalue", "1e-5"])
    assert result.exit_code == 0, result.stderr
    _, rows = read_table(out)
    assert [row["qseqid"] for row in rows] == ["own", "mutant"]
    assert isinstance(rows[0]["evalue"], float) and rows[0]["evalue"] <= 1e-5


@pytest.mark.parametrize("fmt", ["tsv", "jsonl", "json"])
def test_annotate_shows_the_evidence_in_every_format(
    tiny_bundle: Path, reference_dir: Path, queries, tmp_path: Path, fmt: str
) -> None:
    out = tmp_path / f"out.{fmt}"
    result = invoke(["annotate", str(queries[0]), "-m", str(tiny_bundle), "-r", str(reference_dir),
                     "-o", str(out), "-f", fmt, "-t", "1", "--max-new-tokens", "4"])
    assert result.exit_code == 0, result.stderr
    provenance, rows = read_table(out)
    assert list(rows[0])[-5:] == [*EVIDENCE, "confidence"]
    by_id = {row["id"]: row for row in rows}
    assert by_id["own"]["top_hit"] == "ref3" and float(by_id["own"]["identity"]) == 100.0
    assert by_id["mutant"]["top_hit"] == "ref5"
    empty = "" if fmt == "tsv" else None
    assert [by_id["shuffled"][column] for column in EVIDENCE] == [empty] * 4
    assert "reference_lab" in provenance and "search" in provenance


def test_annotate_without_a_reference_keeps_its_columns(tiny_bundle: Path, queries, tmp_path: Path) -> None:
    out = tmp_path / "out.tsv"
    assert invoke(["annotate", str(queries[0]), "-m", str(tiny_bundle), "-o", str(out),
                   "--max-new-tokens", "4"]).exit_code == 0
    provenance, rows = read_table(out)
    assert list(rows[0]) == ["id", "length", "description", "n_tokens", "mean_logprob", "truncated",
                             "confidence"]
    assert not any(key.startswith("reference") for key in provenance)


def test_resume_with_evidence_is_byte_identical(
    tiny_bundle: Path, reference_dir: Path, queries, tmp_path: Path
) -> None:
    complete = tmp_path / "complete.tsv"
    args = [str(queries[0]), "-m", str(tiny_bundle), "-r", str(reference_dir), "--max-new-tokens", "4"]
    assert invoke(["annotate", *args, "-o", str(complete)]).exit_code == 0
    lines = complete.read_text().splitlines(keepends=True)
    n_header = next(i for i, line in enumerate(lines) if not line.startswith("#")) + 1
    resumed = tmp_path / "resumed.tsv"
    partial_path(resumed).write_text("".join(lines[: n_header + 1]) + lines[n_header + 1][:7])
    assert invoke(["annotate", *args, "-o", str(resumed), "--resume"]).exit_code == 0
    assert resumed.read_text().split("\n# command:")[0] == complete.read_text().split("\n# command:")[0]
    assert resumed.read_text().splitlines()[n_header:] == complete.read_text().splitlines()[n_header:]


def test_resume_refuses_another_reference(
    tiny_bundle: Path, reference_dir: Path, queries, tmp_path: Path, references
) -> None:
    other_jsonl = tmp_path / "other.jsonl"
    other_jsonl.write_text("".join(json.dumps(row) + "\n" for row in references[:20]))
    other = tmp_path / "lab"
    assert invoke(["reference", "build", "-s", str(other_jsonl), "-o", str(other)]).exit_code == 0
    out = tmp_path / "out.tsv"
    args = [str(queries[0]), "-m", str(tiny_bundle), "--max-new-tokens", "4", "-o", str(out)]
    assert invoke(["annotate", *args, "-r", str(reference_dir)]).exit_code == 0
    shutil.move(out, partial_path(out))
    result = invoke(["annotate", *args, "-r", str(other), "--resume"])
    assert_clean_failure(result.exit_code, result.stderr, "cannot resume", "reference_lab")


def test_a_bundle_carries_a_packed_reference(
    bundle_copy, reference_jsonl: Path, queries, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEQCHAT_HOME", str(tmp_path / "home"))
    bundle = bundle_copy()
    shutil.copy(reference_jsonl, bundle / "reference.jsonl")
    config = yaml.safe_load((bundle / "seqchat.yaml").read_text())
    config["reference"] = "reference.jsonl"
    (bundle / "seqchat.yaml").write_text(yaml.safe_dump(config))
    out = tmp_path / "out.tsv"
    result = invoke(["annotate", str(queries[0]), "-m", str(bundle), "-o", str(out), "--max-new-tokens", "4"])
    assert result.exit_code == 0, result.stderr
    provenance, rows = read_table(out)
    assert {row["id"]: row["top_hit"] for row in rows} == {"own": "ref3", "mutant": "ref5", "shuffled": ""}
    built = list((tmp_path / "home" / "cache" / "reference").iterdir())
    assert len(built) == 1 and (built[0] / "manifest.json").is_file()
    assert invoke(["annotate", str(queries[0]), "-m", str(bundle), "-o", str(out), "--force",
                   "--max-new-tokens", "4"]).exit_code == 0
    assert list((tmp_path / "home" / "cache" / "reference").iterdir()) == built


@NEEDS_EVAL
def test_alignment_transfer_copies_the_hit_else_the_kmer_neighbour(
    reference_jsonl: Path, queries, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEQCHAT_HOME", str(tmp_path / "home"))
    out = tmp_path / "align.tsv"
    result = invoke(["baseline", "nearest", "--method", "align", str(queries[0]),
                     "--reference", str(reference_jsonl), "-o", str(out), "-t", "1"])
    assert result.exit_code == 0, result.stderr
    _, rows = read_table(out)
    by_id = {row["id"]: row for row in rows}
    assert by_id["own"]["description"] == "family 3 RNA" and by_id["own"]["method"] == "align (nucleotide)"
    assert by_id["mutant"]["neighbour"] == "ref5"
    assert by_id["shuffled"]["method"] == "kmer" and by_id["shuffled"]["evalue"] == ""
    assert list((tmp_path / "home" / "cache").iterdir()) == []  # the run's index is gone
