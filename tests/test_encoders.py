"""The nucleotide encoder: windows over long sequences, the alphabet, batching."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from seqchat.encode.encoders import EncoderError, NucleotideEncoder, resolve_device
from seqchat.encode.specs import EncoderSpec
from seqchat.encode.windows import split_windows, to_alphabet

pytestmark = pytest.mark.usefixtures("one_torch_thread")


HIDDEN = 32  # tinymodels.write_tiny_encoder


@pytest.fixture(scope="module")
def encoder(tiny_bundle: Path) -> NucleotideEncoder:
    return NucleotideEncoder.load(EncoderSpec(source=str(tiny_bundle / "encoder")), "cpu")


def sequence(length: int, seed: int = 0) -> str:
    generator = torch.Generator().manual_seed(seed)
    return "".join("ACGT"[i] for i in torch.randint(0, 4, (length,), generator=generator).tolist())


class RecordingTokenizer:
    """Wraps the real tokenizer and remembers the text it was given."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.seen: list[str] = []

    def __call__(self, texts, **kwargs):
        self.seen.extend(texts)
        return self.tokenizer(texts, **kwargs)


def test_window_comes_from_the_model(encoder: NucleotideEncoder) -> None:
    # max_position_embeddings 68, minus room for special tokens.
    assert encoder.window == 64
    assert encoder.hidden_size == HIDDEN


@pytest.mark.parametrize("length", [1, 2, 63, 64, 65, 128, 129, 300])
def test_one_state_per_nucleotide(encoder: NucleotideEncoder, length: int) -> None:
    with torch.no_grad():
        (states,) = encoder.states([sequence(length)])
    assert states.shape == (length, HIDDEN)
    assert torch.isfinite(states).all()


def test_long_sequence_is_encoded_window_by_window(encoder: NucleotideEncoder) -> None:
    text = sequence(150, seed=1)
    with torch.no_grad():
        (whole,) = encoder.states([text])
        parts = [encoder.states([piece])[0] for piece in (text[:64], text[64:128], text[128:])]
    assert [p.shape[0] for p in parts] == [64, 64, 22]
    assert torch.allclose(whole, torch.cat(parts), atol=1e-5)
    # Each window is encoded on its own: the first window does not see the rest.
    with torch.no_grad():
        (changed_tail,) = encoder.states([text[:64] + sequence(86, seed=2)])
    assert torch.allclose(changed_tail[:64], whole[:64], atol=1e-5)
    assert not torch.allclose(changed_tail[64:], whole[64:], atol=1e-3)


def test_windows_are_cut_at_the_window_length(encoder: NucleotideEncoder) -> None:
    recorder = RecordingTokenizer(encoder.tokenizer)
    encoder.tokenizer = recorder
    try:
        with torch.no_grad():
            encoder.states([sequence(150), sequence(10)])
    finally:
        encoder.tokenizer = recorder.tokenizer
    assert sorted(len(text) for text in recorder.seen) == [10, 22, 64, 64]


def test_rna_encoder_reads_u(encoder: NucleotideEncoder) -> None:
    recorder = RecordingTokenizer(encoder.tokenizer)
    encoder.tokenizer = recorder
    try:
        with torch.no_grad():
            (dna,) = encoder.states(["ACGTTGCA" * 10])
    finally:
        encoder.tokenizer = recorder.tokenizer
    assert recorder.seen and all("T" not in text and "U" in text for text in recorder.seen)
    with torch.no_grad():
        (rna,) = encoder.states(["ACGUUGCA" * 10])
    assert torch.equal(dna, rna)


def test_to_alphabet() -> None:
    assert to_alphabet("ACGTN", "rna") == "ACGUN"
    assert to_alphabet("ACGUN", "dna") == "ACGTN"
    assert to_alphabet("ACGTU", "dna") == "ACGTT"


def test_split_windows() -> None:
    assert split_windows("ABCDEFG", 3) == ["ABC", "DEF", "G"]
    assert split_windows("ABCDEF", 3) == ["ABC", "DEF"]
    assert split_windows("", 3) == [""]


def test_batched_states_match_one_by_one_in_input_order(tiny_bundle: Path) -> None:
    spec = EncoderSpec(source=str(tiny_bundle / "encoder"), batch_size=3)
    encoder = NucleotideEncoder.load(spec, "cpu")
    texts = [sequence(n, seed=n) for n in (70, 5, 40, 130, 12, 64)]
    with torch.no_grad():
        together = encoder.states(texts)
        alone = [encoder.states([t])[0] for t in texts]
    assert [s.shape[0] for s in together] == [70, 5, 40, 130, 12, 64]
    for a, b in zip(together, alone):
        assert torch.allclose(a, b, atol=1e-5)


def test_window_from_the_spec(tiny_bundle: Path) -> None:
    encoder = NucleotideEncoder.load(EncoderSpec(source=str(tiny_bundle / "encoder"), window=10), "cpu")
    assert encoder.window == 10
    with torch.no_grad():
        (states,) = encoder.states([sequence(25)])
    assert states.shape == (25, HIDDEN)


def test_missing_encoder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(EncoderError, match=f"encoder {tmp_path / 'nothing'}: cannot load"):
        NucleotideEncoder.load(EncoderSpec(source=str(tmp_path / "nothing")), "cpu")


def test_unknown_encoder_kind() -> None:
    with pytest.raises(EncoderError, match="encoder kind 'esm' is unknown"):
        NucleotideEncoder.load(EncoderSpec(source="x", kind="esm"), "cpu")  # type: ignore[arg-type]


def test_devices() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")
    if not torch.cuda.is_available():
        with pytest.raises(EncoderError, match="no CUDA device"):
            resolve_device("cuda:0")
