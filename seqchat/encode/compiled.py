"""Soft tokens from a bundle's encoder and projector compiled to ONNX (`seqchat models
compile`), run by onnxruntime.

Importing torch, transformers and multimolecule takes 6 of the 8 s a one-sequence run needs
with the PyTorch path; this path imports none of them. The compiled encoder reads token ids
from a table of one id per nucleotide letter, written at compile time, which fits the
character-level tokenizers of RNA-FM and the other multimolecule nucleotide models.

Both graphs run on one onnxruntime thread: the encoder runs beside busy llama.cpp contexts,
and a single thread keeps each state independent of how the work was split.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from seqchat.encode.specs import Alphabet, ProjectorConfig, pooling_stride
from seqchat.encode.windows import states_by_window
from seqchat.errors import SeqchatError

if TYPE_CHECKING:
    import onnxruntime

METADATA_KEY = "seqchat"
"""The key, in the encoder graph's metadata, of how to feed it and what it was compiled from."""


class CompiledModelError(SeqchatError):
    """A compiled encoder or projector is missing, unreadable or out of date."""


@dataclass(frozen=True)
class CompiledEncoderInfo:
    """How to feed the compiled encoder, and the sha256 of the weights it was compiled from
    (by bundle file name)."""

    alphabet: Alphabet
    window: int
    batch_size: int
    letter_ids: Mapping[str, int]
    prefix_ids: tuple[int, ...]
    suffix_ids: tuple[int, ...]
    sources: Mapping[str, str]

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> CompiledEncoderInfo:
        data = json.loads(text)
        ids = {name: tuple(data[name]) for name in ("prefix_ids", "suffix_ids")}
        return cls(**{**data, **ids})


def mean_pool(states: np.ndarray, stride: int) -> np.ndarray:
    """Mean over consecutive groups of `stride` rows; the last group may be shorter (the
    numpy twin of `seqchat.encode.projector.mean_pool`)."""
    n_positions, width = states.shape
    n_groups = -(-n_positions // stride)
    padded = np.zeros((n_groups * stride, width), dtype=np.float32)
    padded[:n_positions] = states
    counts = np.full((n_groups, 1), stride, dtype=np.float32)
    counts[-1] = n_positions - (n_groups - 1) * stride
    return padded.reshape(n_groups, stride, width).sum(axis=1) / counts


def _session(path: Path) -> onnxruntime.InferenceSession:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return onnxruntime.InferenceSession(
            str(path), options, providers=["CPUExecutionProvider"]
        )
    except Exception as error:  # onnxruntime raises its own, unexported exception types
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise CompiledModelError(f"{path}: onnxruntime cannot load it ({first_line})") from error


class CompiledSoftTokenizer:
    """Sequences -> soft-token matrices with the compiled encoder and projector."""

    device_type = "cpu"

    def __init__(
        self, encoder_path: Path, projector_path: Path, projector_config: ProjectorConfig
    ) -> None:
        import onnxruntime

        self.runtime_name = f"onnxruntime {onnxruntime.__version__}"
        self._encoder = _session(encoder_path)
        self._projector = _session(projector_path)
        self.projector_config = projector_config
        metadata = self._encoder.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in metadata:
            raise CompiledModelError(
                f"{encoder_path}: not compiled by seqchat (run 'seqchat models compile')"
            )
        self.info = CompiledEncoderInfo.from_json(metadata[METADATA_KEY])
        self._id_of = np.full(128, -1, dtype=np.int64)
        for letter, token_id in self.info.letter_ids.items():
            self._id_of[ord(letter)] = token_id

    def check_sources(self, digests: Mapping[str, str], bundle_root: Path) -> None:
        """Refuse graphs compiled from other weights than the bundle's `digests` hold."""
        for name, digest in self.info.sources.items():
            if digests.get(name) != digest:
                raise CompiledModelError(
                    f"{bundle_root}: the compiled encoder and projector are older than "
                    f"{name}; run 'seqchat models compile {bundle_root}' again"
                )

    def use_threads(self, threads: int) -> None:
        """The graphs always run on one thread (see the module's docstring)."""

    def _token_ids(self, windows: Sequence[str]) -> np.ndarray:
        """Token ids of equal-length windows: the prefix, one id a letter (-1 for a letter
        the table lacks), the suffix."""
        codes = np.frombuffer("".join(windows).encode("ascii"), dtype=np.uint8)
        letters = self._id_of[codes].reshape(len(windows), -1)
        prefix = np.tile(np.array(self.info.prefix_ids, dtype=np.int64), (len(windows), 1))
        suffix = np.tile(np.array(self.info.suffix_ids, dtype=np.int64), (len(windows), 1))
        return np.concatenate([prefix, letters, suffix], axis=1)

    def _encode_windows(self, windows: list[str]) -> list[np.ndarray]:
        """States of equal-length windows, the special positions removed."""
        input_ids = self._token_ids(windows)
        if (input_ids < 0).any():
            unknown = sorted({c for w in windows for c in w if c not in self.info.letter_ids})
            raise CompiledModelError(
                f"the compiled encoder has no token for {', '.join(map(repr, unknown))}"
            )
        (hidden,) = self._encoder.run(
            None, {"input_ids": input_ids, "attention_mask": np.ones_like(input_ids)}
        )
        start = len(self.info.prefix_ids)
        length = len(windows[0])
        return [hidden[i, start : start + length] for i in range(len(windows))]

    def states(self, sequences: Sequence[str]) -> list[np.ndarray]:
        return states_by_window(
            sequences,
            alphabet=self.info.alphabet,
            window=self.info.window,
            batch_size=self.info.batch_size,
            encode_batch=self._encode_windows,
            concatenate=lambda parts: np.concatenate(parts, axis=0),
        )

    def project(self, states: np.ndarray) -> np.ndarray:
        config = self.projector_config
        stride = pooling_stride(states.shape[0], config.pool_stride, config.max_soft_tokens)
        (soft_tokens,) = self._projector.run(None, {"states": mean_pool(states, stride)})
        return soft_tokens

    def __call__(self, sequences: list[str]) -> list[np.ndarray]:
        return [self.project(states) for states in self.states(sequences)]
