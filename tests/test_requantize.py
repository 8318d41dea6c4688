"""`llm.requantize`: a bundle's GGUF requantized once into $SEQCHAT_HOME, and then used by
the runtime and by training alike."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import assert_clean_failure, invoke, write_fasta
from seqchat.bundle import load_bundle
from seqchat.io.tables import read_table


def requantized_bundle(bundle_copy) -> Path:
    bundle = bundle_copy()
    config = yaml.safe_load((bundle / "seqchat.yaml").read_text())
    config["llm"]["requantize"] = "q8_0"
    (bundle / "seqchat.yaml").write_text(yaml.safe_dump(config))
    return bundle


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("SEQCHAT_HOME", str(home))
    return home


def tensor_types(path: Path) -> dict[str, str]:
    import gguf

    return {t.name: t.tensor_type.name for t in gguf.GGUFReader(str(path)).tensors}


def test_the_bundle_runs_a_q8_0_copy_made_once(bundle_copy, home: Path) -> None:
    bundle_dir = requantized_bundle(bundle_copy)
    bundle = load_bundle(str(bundle_dir))
    source = (bundle_dir / "llm.gguf").resolve()
    assert bundle.llm_source == source
    assert bundle.llm_path.parent == home / "cache" / "gguf"
    matrices = {name: kind for name, kind in tensor_types(bundle.llm_path).items() if not name.endswith("norm.weight")}
    assert set(tensor_types(source).values()) == {"F32"}
    assert matrices and set(matrices.values()) == {"Q8_0"}
    assert list(bundle.llm_path.parent.iterdir()) == [bundle.llm_path]  # no partial file left
    written = bundle.llm_path.stat().st_mtime_ns
    assert load_bundle(str(bundle_dir)).llm_path.stat().st_mtime_ns == written  # reused
    os.utime(source, ns=(written + 10**9, written + 10**9))  # a replaced source: a new copy
    assert load_bundle(str(bundle_dir)).llm_path != bundle.llm_path


def test_annotate_records_the_requantized_weights(bundle_copy, home: Path, tmp_path: Path) -> None:
    bundle_dir = requantized_bundle(bundle_copy)
    fasta = write_fasta(tmp_path / "in.fa", [("a", "ACGUAGCUAGCUAGGCUAACG"), ("b", "GGGCUAGCAUCGAUCGAUUA")])
    out = tmp_path / "out.tsv"
    result = invoke(["annotate", str(fasta), "-m", str(bundle_dir), "-o", str(out), "-q"])
    assert result.exit_code == 0, result.stderr
    provenance, rows = read_table(out)
    derived = load_bundle(str(bundle_dir)).llm_path
    assert provenance["sha256_llm"] == hashlib.sha256(derived.read_bytes()).hexdigest()
    assert [row["id"] for row in rows] == ["a", "b"]


def test_training_loads_the_weights_the_runtime_runs(bundle_copy, home: Path) -> None:
    """PyTorch sees the Q8_0 values, not the F32 source's: training and serving agree."""
    import gguf

    from seqchat.train.chain import chain_from_bundle

    bundle = load_bundle(str(requantized_bundle(bundle_copy)))
    chain, vocabulary = chain_from_bundle(bundle)
    vocabulary.close()
    trained_on = chain.llm.model.layers[0].mlp.down_proj.weight.detach().numpy()

    def down_proj(path: Path) -> np.ndarray:
        tensor = next(t for t in gguf.GGUFReader(str(path)).tensors if t.name == "blk.0.ffn_down.weight")
        return gguf.quants.dequantize(tensor.data, tensor.tensor_type)

    np.testing.assert_array_equal(trained_on, down_proj(bundle.llm_path))
    assert not np.array_equal(trained_on, down_proj(bundle.llm_source))


def test_an_unknown_type_is_a_one_line_error(bundle_copy, home: Path, tmp_path: Path) -> None:
    bundle_dir = requantized_bundle(bundle_copy)
    config = yaml.safe_load((bundle_dir / "seqchat.yaml").read_text())
    config["llm"]["requantize"] = "q2_k"
    (bundle_dir / "seqchat.yaml").write_text(yaml.safe_dump(config))
    result = invoke(["models", "info", str(bundle_dir)])
    assert_clean_failure(result.exit_code, result.stderr, "llm.requantize", "q8_0", "q2_k")


def test_an_unwritable_home_is_a_one_line_error(bundle_copy, tmp_path: Path, monkeypatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("SEQCHAT_HOME", str(blocker / "home"))
    result = invoke(["models", "info", str(requantized_bundle(bundle_copy))])
    assert_clean_failure(result.exit_code, result.stderr, "requantized LLM", "SEQCHAT_HOME")
