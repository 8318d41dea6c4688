"""Weights with NaN in valid files: refused with a one-line error naming the file, and no
NaN or Infinity is ever written into JSON (which cannot hold them)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_clean_failure, invoke

from seqchat.io.tables import OutputError
from seqchat.io.writers import ANNOTATION_COLUMNS, open_writer

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def poison_safetensors(path: Path, name: str | None = None) -> str:
    """Set one value of a tensor (`name`, else the first floating one) to NaN; its name."""
    from safetensors.torch import load_file, save_file

    state = load_file(str(path))
    name = name or next(n for n, t in sorted(state.items()) if t.is_floating_point())
    state[name].view(-1)[0] = math.nan
    save_file(state, str(path), metadata={"format": "pt"})
    return name


def poison_gguf(path: Path, tensor: str) -> None:
    """Set one value of an F32 tensor of a GGUF, in place, to NaN."""
    import gguf

    reader = gguf.GGUFReader(str(path), "r+")
    (found,) = [t for t in reader.tensors if t.name == tensor]
    found.data.reshape(-1)[0] = np.nan
    found.data.flush()  # type: ignore[attr-defined]


def annotate_json(bundle: Path, fasta: Path, out: Path):
    return invoke(
        ["annotate", str(fasta), "-m", str(bundle), "-f", "json", "-o", str(out), "-q",
         "-t", "1", "--device", "cpu"]
    )


def test_nan_in_the_projector_weights_is_refused(
    bundle_copy, small_fasta: Path, tmp_path: Path
) -> None:
    bundle = bundle_copy()
    name = poison_safetensors(bundle / "projector.safetensors")
    out = tmp_path / "out.json"
    result = annotate_json(bundle, small_fasta, out)
    assert_clean_failure(
        result.exit_code, result.stderr, "projector.safetensors", name, "NaN or infinity"
    )
    assert not out.exists()


def test_nan_in_the_encoder_weights_is_refused(
    bundle_copy, small_fasta: Path, tmp_path: Path
) -> None:
    bundle = bundle_copy()
    poison_safetensors(bundle / "encoder" / "model.safetensors", "embeddings.layer_norm.bias")
    result = annotate_json(bundle, small_fasta, tmp_path / "out.json")
    assert_clean_failure(
        result.exit_code, result.stderr, str((bundle / "encoder").resolve()), "not finite"
    )


def test_nan_logits_are_refused(bundle_copy, small_fasta: Path, tmp_path: Path) -> None:
    bundle = bundle_copy()
    poison_gguf(bundle / "llm.gguf", "output.weight")
    result = annotate_json(bundle, small_fasta, tmp_path / "out.json")
    assert_clean_failure(result.exit_code, result.stderr, "llm.gguf", "logits", "not finite")


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_json_writers_never_write_nan_or_infinity(tmp_path: Path, fmt: str, value: float) -> None:
    row = {"id": "s1", "length": 4, "description": "x", "n_tokens": 1, "mean_logprob": value,
           "truncated": False}
    out = tmp_path / f"out.{fmt}"
    with (
        pytest.raises(OutputError, match="NaN or infinity") as caught,
        open_writer(out, fmt, ANNOTATION_COLUMNS, {"seqchat": "x"}) as writer,
    ):
        writer.write(row)
    assert "\n" not in str(caught.value)
    assert not out.exists()
