"""How sequences meet an encoder: in its alphabet, cut into windows it can read, and batched
only with windows of the same length. The PyTorch and the ONNX encoders share this."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from seqchat.encode.specs import Alphabet

States = TypeVar("States")


def to_alphabet(sequence: str, alphabet: Alphabet) -> str:
    """Sequences arrive in the DNA alphabet (T); an RNA encoder reads U."""
    return sequence.replace("T", "U") if alphabet == "rna" else sequence.replace("U", "T")


def split_windows(sequence: str, window: int) -> list[str]:
    return [sequence[i : i + window] for i in range(0, len(sequence), window)] or [""]


def states_by_window(
    sequences: Sequence[str],
    *,
    alphabet: Alphabet,
    window: int,
    batch_size: int,
    encode_batch: Callable[[list[str]], list[States]],
    concatenate: Callable[[list[States]], States],
) -> list[States]:
    """One state matrix per sequence, in the order given: `encode_batch` gives the states
    of a batch of windows, `concatenate` joins a sequence's windows.

    Only windows of equal length share a batch: padding changes the shapes of the
    attention, and with them the last bits of every state, so a sequence's states would
    depend on its neighbours in the input."""
    windows: list[tuple[int, str]] = []
    for owner, sequence in enumerate(sequences):
        converted = to_alphabet(sequence, alphabet)
        windows.extend((owner, text) for text in split_windows(converted, window))
    by_length: dict[int, list[int]] = {}
    for index, (_owner, text) in enumerate(windows):
        by_length.setdefault(len(text), []).append(index)
    encoded: dict[int, States] = {}
    size = max(1, batch_size)
    for indices in by_length.values():
        for start in range(0, len(indices), size):
            chunk = indices[start : start + size]
            encoded.update(zip(chunk, encode_batch([windows[i][1] for i in chunk])))
    per_sequence: list[list[States]] = [[] for _ in sequences]
    for index, (owner, _text) in enumerate(windows):
        per_sequence[owner].append(encoded[index])
    return [concatenate(parts) for parts in per_sequence]
