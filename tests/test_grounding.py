"""Grounded prompts: each sequence's evidence in its prompt suffix, copies of a hit expanded
to the hit's whole description, repetition control and answers cut at a clause end."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import invoke, write_fasta

from seqchat.annotate import cut_at_clause
from seqchat.bundle import load_bundle
from seqchat.homology.evidence import NO_EVIDENCE, copied_hit, evidence_lines, hit_name
from seqchat.homology.search import Hit
from seqchat.io.tables import read_table
from seqchat.llm.prompt import PromptError, PromptSpec, build_layout, fit_evidence, layout_for
from seqchat.llm.runtime import DecodingSettings, GgufRuntime, SoftPrompt, repeated_ngram_ends
from seqchat.llm.vocabulary import GgufVocabulary

TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def words(text: str, add_bos: bool) -> list[int]:
    """A stand-in tokenizer: one id per whitespace-separated word (and 1 for BOS)."""
    return ([1] if add_bos else []) + [len(word) + 10 for word in text.split()]


def hit(reference_id: str, description: str, identity: float = 99.0) -> Hit:
    return Hit(reference_id, description, None, None, (), identity, 0.95, 0.9, 80.0, 1e-30,
               "+", "nucleotide", "lab", "abc")


def test_evidence_sits_in_the_suffix_and_the_prefix_stays_shared() -> None:
    plain = build_layout(TEMPLATE, PromptSpec(user="{sequence}\nHits:"), words)
    grounded = build_layout(TEMPLATE, PromptSpec(user="{sequence}\nHits: {evidence} end"), words)
    assert grounded.prefix_ids == plain.prefix_ids
    between, after = grounded.evidence_texts
    assert between == "\nHits: " and after.startswith(" end<|end|>")
    assert grounded.suffix_for("two words", words) == tuple(words(between + "two words" + after, False))
    assert grounded.suffix_for("", words) == grounded.suffix_ids
    assert plain.suffix_for("ignored", words) == plain.suffix_ids
    with pytest.raises(PromptError, match="after"):
        build_layout(TEMPLATE, PromptSpec(user="{evidence} {sequence}"), words)


def test_fit_evidence_keeps_whole_lines_within_the_budget() -> None:
    lines = ["one two three", "four five", "six"]
    assert fit_evidence(lines, words, 10) == "one two three\nfour five\nsix"
    assert fit_evidence(lines, words, 5) == "one two three\nfour five"
    assert fit_evidence(lines, words, 2) == "one two"  # the best line, cut at a word
    assert fit_evidence([], words, 5) == ""


def test_evidence_lines_name_identity_coverage_and_evalue() -> None:
    hits = [hit("r1", "5S ribosomal RNA. Rfam RNA type: Gene, rRNA. Long text."),
            hit("r2", "Protein of unknown function; found in the nucleus", 41.3)]
    assert evidence_lines(hits) == [
        "Hit 1: 5S ribosomal RNA (99% identity, 95% coverage, E-value 1e-30)",
        "Hit 2: Protein of unknown function (41% identity, 95% coverage, E-value 1e-30)",
    ]
    assert evidence_lines([]) == [NO_EVIDENCE]
    assert hit_name("S. cerevisiae gene. More.") == "S. cerevisiae gene"


def test_a_copy_of_a_hit_is_found_by_pointer_or_by_name() -> None:
    hits = [hit("r1", "5S ribosomal RNA. Rfam text."), hit("r2", "Cobalamin riboswitch. Text.")]
    assert copied_hit("Hit 2.", hits) is hits[1]
    assert copied_hit("Same as hit 1", hits) is hits[0]
    assert copied_hit("Hit 3", hits) is None
    assert copied_hit("cobalamin riboswitch, a cis-regulatory element", hits) is hits[1]
    assert copied_hit("5S ribosomal", hits) is None
    assert copied_hit("A ribosomal RNA of the large subunit", hits) is None


def test_repeated_ngram_ends() -> None:
    assert repeated_ngram_ends([5, 6, 7, 5, 6], 3) == [7]
    assert repeated_ngram_ends([5, 6, 7, 5, 6], 2) == [7]
    assert repeated_ngram_ends([5, 6, 7], 0) == []
    assert repeated_ngram_ends([5], 3) == []


def test_cut_at_clause() -> None:
    assert cut_at_clause("A tRNA. It carries proline; it is enc") == "A tRNA. It carries proline."
    assert cut_at_clause("no end at all") == "no end at all"
    assert cut_at_clause("version 1.2 of a gene") == "version 1.2 of a gene"


def test_no_repeat_ngram_generation_never_repeats(tiny_bundle: Path) -> None:
    bundle = load_bundle(str(tiny_bundle))
    vocabulary = GgufVocabulary.load(bundle.llm_path)
    try:
        layout = layout_for(vocabulary, bundle.prompt)
    finally:
        vocabulary.close()
    rng = np.random.default_rng(1)
    prompts = [SoftPrompt(f"p{i}", (rng.standard_normal((4, 64)) * 0.5).astype(np.float32),
                          layout.suffix_ids) for i in range(6)]

    def generated(settings: DecodingSettings) -> list[tuple[int, ...]]:
        with GgufRuntime(bundle.llm_path, n_parallel=3, n_ctx_per_slot=256, n_threads=1) as rt:
            return [g.token_ids for g in rt.generate(layout.prefix_ids, prompts, settings)]

    def has_repeat(ids: tuple[int, ...], n: int) -> bool:
        grams = [ids[i:i + n] for i in range(len(ids) - n + 1)]
        return len(grams) != len(set(grams))

    free = generated(DecodingSettings(max_new_tokens=40, ignore_eos=True))
    assert any(has_repeat(ids, 3) for ids in free)  # a tiny random model loops
    controlled = generated(DecodingSettings(max_new_tokens=40, ignore_eos=True, no_repeat_ngram=3))
    assert not any(has_repeat(ids, 3) for ids in controlled)


@pytest.fixture
def grounded_bundle(bundle_copy, tmp_path: Path) -> tuple[Path, Path, Path]:
    """The tiny bundle with {evidence} in its prompt and a reference holding the query."""
    rng = random.Random(3)
    references = [{"id": f"ref{i}", "sequence": "".join(rng.choice("ACGT") for _ in range(200)),
                   "description": f"family {i} RNA. Rfam RNA type: Gene."} for i in range(12)]
    packed = tmp_path / "refs.jsonl"
    packed.write_text("".join(json.dumps(row) + "\n" for row in references))
    bundle = bundle_copy()
    config = yaml.safe_load((bundle / "seqchat.yaml").read_text())
    config["prompt"]["user"] = "{sequence}\n{evidence}\n{question}"
    config["prompt"]["question"] = "Describe this sequence."
    config["prompt"]["evidence_tokens"] = 48
    config["reference"] = "refs.jsonl"
    (bundle / "refs.jsonl").write_text(packed.read_text())
    (bundle / "seqchat.yaml").write_text(yaml.safe_dump(config))
    fasta = write_fasta(tmp_path / "q.fa", [("q1", references[4]["sequence"]), ("q2", "ACGT" * 30)])
    return bundle, fasta, tmp_path


def test_grounded_annotation_writes_the_source(
    grounded_bundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle, fasta, tmp_path = grounded_bundle
    monkeypatch.setenv("SEQCHAT_HOME", str(tmp_path / "home"))
    out = tmp_path / "out.jsonl"
    result = invoke(["annotate", str(fasta), "-m", str(bundle), "-o", str(out), "-f", "jsonl",
                     "--max-new-tokens", "3", "-t", "1"])
    assert result.exit_code == 0, result.stderr
    _, rows = read_table(out)
    assert list(rows[0])[-7:] == ["truncated", "top_hit", "identity", "coverage", "evalue", "source",
                                  "confidence"]
    assert rows[0]["top_hit"] == "ref4" and rows[1]["top_hit"] is None
    for row in rows:
        assert row["source"] == "generated" or row["source"].startswith("hit:")
        assert row["truncated"] is (row["n_tokens"] == 3)
        assert 0.0 <= row["confidence"] <= 1.0


def test_training_shows_the_evidence_serving_shows(grounded_bundle, monkeypatch: pytest.MonkeyPatch) -> None:
    """The suffix a training example is laid out with is the one annotate decodes for the
    same sequence and reference; an example never sees its own entry, and a left-out one
    sees no relative of its family."""
    from seqchat.annotate import Annotator
    from seqchat.homology.build import build_reference
    from seqchat.io.sequences import SequenceRecord, read_records
    from seqchat.train.evidence import leaves_out_relatives
    from seqchat.train.trainer import Trainer, TrainSettings

    bundle, fasta, tmp_path = grounded_bundle
    monkeypatch.setenv("SEQCHAT_HOME", str(tmp_path / "home"))
    reference = tmp_path / "ref"
    build_reference([bundle / "refs.jsonl"], [], reference)
    own = next(iter(read_records([str(fasta)])))  # ref4's sequence
    rng = random.Random(5)
    relative = "".join(rng.choice("ACGT".replace(b, "")) if rng.random() < 0.1 else b for b in own.sequence)
    query = SequenceRecord("q1", "", relative, "", 0)
    rows = [json.loads(line) for line in (bundle / "refs.jsonl").read_text().splitlines()]
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in [
        {"id": "q1", "sequence": query.sequence, "question": "Describe this sequence.", "answer": "x",
         "family": "RFQ"},  # no reference is of its family: left out or not, it sees them all
        {"id": "ref4", "sequence": own.sequence, "question": "Describe this sequence.", "answer": "x"},
        *({"id": row["id"], "sequence": row["sequence"], "question": "Describe this sequence.",
           "answer": row["description"], "family": "RFX"} for row in rows),
    ]))
    trainer = Trainer(TrainSettings(
        stage="instruct", data=[str(data)], model=str(bundle), out=str(tmp_path / "run"),
        val_fraction=0.0, reference=str(reference), threads=1,
    ), log=lambda _line: None)
    by_id = {example.id: example for example in trainer.train_examples}
    with Annotator.load(str(bundle), threads=1, parallel=1, references=[reference],
                        bundle_reference=False) as annotator:
        [(_record, hits)] = list(annotator.evidence.searched([query]))
        served = annotator._suffix(hits)
    # q1 is not in the reference: it is shown what annotate shows; the other (ref4) is.
    assert "family 4 RNA" in by_id["q1"].evidence
    assert trainer.example_layout(by_id["q1"]).suffix_ids == served
    assert "ref4" not in by_id["ref4"].evidence and "family 4 RNA" not in by_id["ref4"].evidence
    left_out = [e for e in trainer.train_examples if e.family == "RFX" and leaves_out_relatives(e)]
    assert left_out and all(e.evidence == NO_EVIDENCE for e in left_out)
