"""The encoder and projector compiled to ONNX: what `seqchat models compile` writes, its
agreement with PyTorch, and annotation without importing torch."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import (
    NEEDS_TRAIN,
    assert_clean_failure,
    invoke,
    random_sequence,
    subprocess_env,
)

from seqchat.bundle import CONFIG_NAME, load_bundle
from seqchat.encode.compiled import CompiledModelError
from seqchat.io.tables import read_table
from seqchat.loading import load_soft_tokenizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")

WINDOW = 64  # the tiny encoder's 68 positions less the reserve


def sequences(lengths: list[int], seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [random_sequence(rng, n) for n in lengths]


def test_compile_names_the_graphs_in_the_bundle(compiled_bundle: Path) -> None:
    bundle = load_bundle(str(compiled_bundle))
    assert bundle.compiled_encoder == (compiled_bundle / "compiled" / "encoder.onnx").resolve()
    assert bundle.compiled_projector == (compiled_bundle / "compiled" / "projector.onnx").resolve()
    digests = bundle.sha256s()
    assert {"compiled/encoder.onnx", "compiled/projector.onnx"} <= set(digests)


@pytest.mark.parametrize("projector_type", ["linear", "mlp"])
def test_compiled_soft_tokens_match_pytorch(
    tiny_bundle: Path, tmp_path: Path, projector_type: str
) -> None:
    bundle_dir = tmp_path / "b"
    shutil.copytree(tiny_bundle, bundle_dir)
    if projector_type == "mlp":
        from seqchat.encode.projector import build_projector, save_projector
        from seqchat.encode.specs import ProjectorConfig

        config = ProjectorConfig("mlp", 32, 64, pool_stride=4, max_soft_tokens=16, hidden_dim=48)
        save_projector(build_projector(config), bundle_dir / "projector.safetensors")
        text = (bundle_dir / CONFIG_NAME).read_text().replace("type: linear", "type: mlp")
        text = text.replace("  weights:", "  hidden_dim: 48\n  weights:")
        (bundle_dir / CONFIG_NAME).write_text(text)
    assert invoke(["models", "compile", str(bundle_dir)]).exit_code == 0
    bundle = load_bundle(str(bundle_dir))
    assert bundle.projector.type == projector_type
    # one letter, within a window, exactly one, one more, several windows, over the cap
    inputs = sequences([1, 7, WINDOW, WINDOW + 1, 3 * WINDOW + 5, 1000])
    compiled = load_soft_tokenizer(bundle, "cpu", compiled=True)(inputs)
    expected = load_soft_tokenizer(bundle, "cpu", compiled=False)(inputs)
    for got, want in zip(compiled, expected):
        assert got.shape == want.shape
        assert float(np.abs(got - want).max()) < 1e-5


def test_compiled_soft_tokens_do_not_depend_on_neighbours(compiled_bundle: Path) -> None:
    soft_tokenizer = load_soft_tokenizer(load_bundle(str(compiled_bundle)), "cpu", compiled=True)
    inputs = sequences([WINDOW] * 5 + [30, 2 * WINDOW, 30], seed=3)
    together = soft_tokenizer(inputs)
    for sequence, matrix in zip(inputs, together):
        assert np.array_equal(soft_tokenizer([sequence])[0], matrix)


def test_compiled_tokens_cover_every_accepted_letter(compiled_bundle: Path) -> None:
    soft_tokenizer = load_soft_tokenizer(load_bundle(str(compiled_bundle)), "cpu", compiled=True)
    assert set(soft_tokenizer.info.letter_ids) == set("ACGURYSWKMBDHVN")
    assert len(soft_tokenizer(["ACGTRYSWKMBDHVN"])[0]) == 4  # 15 positions, pool stride 4


def test_annotate_with_a_compiled_bundle_imports_no_torch(
    compiled_bundle: Path, small_fasta: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.tsv"
    args = ["annotate", str(small_fasta), "-m", str(compiled_bundle), "-o", str(out), "-q", "-t", "1"]
    program = (
        "import sys\n"
        "from seqchat.cli import cli\n"
        f"cli.main(args={args!r}, standalone_mode=False)\n"
        "print(sorted(m for m in ('torch', 'transformers', 'multimolecule') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, env=subprocess_env(), timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
    provenance, rows = read_table(out)
    assert len(rows) == 8
    assert "sha256_compiled/encoder.onnx" in provenance


def test_stale_graphs_are_refused(compiled_bundle: Path, small_fasta: Path, tmp_path: Path) -> None:
    from seqchat.encode.projector import build_projector, save_projector

    stale = tmp_path / "stale"
    shutil.copytree(compiled_bundle, stale)
    save_projector(build_projector(load_bundle(str(stale)).projector), stale / "projector.safetensors")
    result = invoke(["annotate", str(small_fasta), "-m", str(stale), "-q", "-t", "1"])
    assert_clean_failure(
        result.exit_code, result.stderr, "older than projector", "seqchat models compile"
    )


def test_a_failed_compile_leaves_the_bundle_as_it_was(
    tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import seqchat.encode.export

    bundle_dir = tmp_path / "b"
    shutil.copytree(tiny_bundle, bundle_dir)
    config_before = (bundle_dir / CONFIG_NAME).read_text()
    monkeypatch.setattr(seqchat.encode.export, "TOLERANCE", -1.0)
    result = invoke(["models", "compile", str(bundle_dir)])
    assert_clean_failure(result.exit_code, result.stderr, "differs from PyTorch", "unchanged")
    assert (bundle_dir / CONFIG_NAME).read_text() == config_before
    assert list((bundle_dir / "compiled").iterdir()) == []


class _MergingTokenizer:
    """A BPE-like tokenizer: 'AC' is one token."""

    def __call__(self, text: str, return_special_tokens_mask: bool) -> dict[str, list[int]]:
        ids = [1]
        i = 0
        while i < len(text):
            if text.startswith("AC", i):
                ids.append(99)
                i += 2
            else:
                ids.append(10 + ord(text[i]) - ord("A"))
                i += 1
        ids.append(2)
        return {"input_ids": ids, "special_tokens_mask": [1] + [0] * (len(ids) - 2) + [1]}


@NEEDS_TRAIN
def test_a_tokenizer_that_merges_letters_does_not_compile() -> None:
    from seqchat.encode.export import token_table

    encoder = SimpleNamespace(
        tokenizer=_MergingTokenizer(), window=64, spec=SimpleNamespace(alphabet="dna", source="bpe")
    )
    with pytest.raises(CompiledModelError, match="not one token per nucleotide"):
        token_table(encoder)  # type: ignore[arg-type]


def test_metadata_records_the_source_weights(compiled_bundle: Path) -> None:
    import onnx

    model = onnx.load(str(compiled_bundle / "compiled" / "encoder.onnx"))
    info = json.loads({p.key: p.value for p in model.metadata_props}["seqchat"])
    bundle = load_bundle(str(compiled_bundle))
    digests = bundle.sha256s()
    assert info["sources"] == {name: digests[name] for name in info["sources"]}
    assert "projector" in info["sources"] and "encoder/model.safetensors" in info["sources"]
    assert info["window"] == WINDOW


@pytest.mark.parametrize("path", ["compiled", "pytorch"])
def test_answers_are_bit_identical_whatever_parallel_and_threads(
    tiny_bundle: Path, compiled_bundle: Path, path: str
) -> None:
    """At full float precision, before any rounding, on the tiny F32 bundle; answers stop at
    different lengths, so slots are refilled and steps shrink to one sequence."""
    from seqchat.annotate import Annotator
    from seqchat.io.sequences import SequenceRecord
    from seqchat.llm.runtime import DecodingSettings

    bundle = compiled_bundle if path == "compiled" else tiny_bundle
    records = [
        SequenceRecord(f"r{i}", "", text, "test", i)
        for i, text in enumerate(sequences([5, 200, 17, 64, 90, 33, 1, 150, 48, 65, 12, 120] * 2))
    ]
    answers = {}
    for parallel, threads in [(1, 1), (3, 1), (16, 1), (4, 2)]:
        with Annotator.load(str(bundle), threads=threads, parallel=parallel,
                            decoding=DecodingSettings(max_new_tokens=12)) as annotator:
            runtime_name = annotator.soft_tokenizer.runtime_name
            assert runtime_name.startswith("onnxruntime" if path == "compiled" else "torch")
            answers[parallel, threads] = [
                (a.description, a.n_tokens, a.mean_logprob) for a in annotator.annotate(records)
            ]
    assert len({n for _d, n, _l in answers[1, 1]}) > 1  # early stops happened
    for key, found in answers.items():
        assert found == answers[1, 1], key
