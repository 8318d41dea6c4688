"""GeneChat's configuration end to end: a DNABERT-2-architecture encoder (multimolecule
`DnaBert2`, random weights) reading 512-nt windows, trained with `finetune align`, then
`annotate` with the bundle it wrote."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from conftest import invoke, random_sequence, write_fasta
from tinymodels import DNABERT2_WINDOW, write_tiny_bundle

from seqchat.bundle import load_bundle
from seqchat.encode.encoders import NucleotideEncoder
from seqchat.io.tables import read_table


@pytest.fixture(scope="module")
def dnabert2_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_bundle(tmp_path_factory.mktemp("genechat") / "dnabert2", encoder="dnabert2")


def test_the_encoder_reads_512_nt_windows_one_state_a_nucleotide(dnabert2_bundle: Path) -> None:
    bundle = load_bundle(str(dnabert2_bundle))
    encoder = NucleotideEncoder.load(bundle.encoder)
    assert type(encoder.model).__name__ == "DnaBert2Model"
    assert encoder.window == DNABERT2_WINDOW
    rng = random.Random(0)
    lengths = [DNABERT2_WINDOW, DNABERT2_WINDOW + 1, 1300, 7]
    states = encoder.states([random_sequence(rng, n) for n in lengths])
    assert [s.shape for s in states] == [(n, encoder.hidden_size) for n in lengths]


def test_finetune_align_then_annotate(dnabert2_bundle: Path, tmp_path: Path) -> None:
    rng = random.Random(1)
    texts = ["a protein kinase", "a ribosomal protein of the large subunit"]
    rows = [{"sequence": random_sequence(rng, rng.randint(100, 1200)), "text": texts[i % 2]}
            for i in range(8)]
    data = tmp_path / "genes.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    trained = tmp_path / "trained"
    result = invoke(["finetune", "align", "--data", str(data), "-m", str(dnabert2_bundle),
                     "--out", str(trained), "--max-steps", "2", "--batch-size", "4",
                     "--val-fraction", "0", "--warmup-steps", "1", "--threads", "1",
                     "--device", "cpu"])
    assert result.exit_code == 0, result.stderr
    assert load_bundle(str(trained)).encoder.window == DNABERT2_WINDOW

    fasta = write_fasta(tmp_path / "genes.fa", [("g1", random_sequence(rng, 1100)), ("g2", random_sequence(rng, 90))])
    out = tmp_path / "out.tsv"
    result = invoke(["annotate", str(fasta), "-m", str(trained), "-o", str(out), "-q", "-t", "1",
                     "--max-new-tokens", "4"])
    assert result.exit_code == 0, result.stderr
    header, table = read_table(out)
    assert [row["id"] for row in table] == ["g1", "g2"]
    assert [int(row["length"]) for row in table] == [1100, 90]
    assert all(int(row["n_tokens"]) >= 1 for row in table)
