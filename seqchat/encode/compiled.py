"""Soft tokens from a bundle's encoder and projector compiled to ONNX (`seqchat models
compile`), run by onnxruntime.

Importing torch, transformers and multimolecule takes 6 of the 8 s a one-sequence run needs
with the PyTorch path; this path imports none of them. The compiled encoder reads token ids
from a table of one id per nucleotide letter, written at compile time, which fits the
character-level tokenizers of RNA-FM and the other multimolecule nucleotide models.

Both graphs run on one onnxruntime thread: the encoder runs beside busy llama.cpp contexts,
and a single thread keeps each state independent of how the work was split.

What a graph computes is decided by the graph alone, so loading checks it is the graph that
was compiled (its sha256), that it was compiled for the bundle's settings (its metadata) and
from the bundle's weights (their sha256, in the metadata); states and soft tokens must be
finite.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, get_args

import numpy as np

from seqchat.encode.specs import Alphabet, EncoderSpec, ProjectorConfig, pooling_stride
from seqchat.encode.windows import states_by_window
from seqchat.errors import SeqchatError
from seqchat.io.digest import sha256_file

if TYPE_CHECKING:
    import onnxruntime

METADATA_KEY = "seqchat"
"""The key, in each graph's metadata, of what seqchat compiled it from and how to feed it."""
CHECKSUMS_NAME = "SHA256SUMS"
"""Beside the graphs, their sha256 as `sha256sum` writes them: the graphs cannot record
their own hashes, and a graph changed after compiling (NaN initializers, say) is refused."""
RECOMPILE = "run 'seqchat models compile' on the bundle again"


class CompiledModelError(SeqchatError):
    """A compiled encoder or projector is missing, unreadable or out of date."""


class NonFiniteError(SeqchatError):
    """An encoder, a projector or an LLM computed NaN or infinity (corrupt weights)."""


def require_finite(values: np.ndarray, source: object, what: str) -> None:
    """Refuse NaN and infinity, which would otherwise reach the output as invalid JSON."""
    if not np.isfinite(values).all():
        raise NonFiniteError(
            f"{source}: {what} are not finite (NaN or infinity); its weights are corrupt"
        )


@dataclass(frozen=True)
class CompiledEncoderInfo:
    """How to feed the compiled encoder, the sha256 of the weights it was compiled from (by
    bundle file name), and the bundle's `encoder` settings it stands for."""

    alphabet: Alphabet
    window: int
    batch_size: int
    letter_ids: Mapping[str, int]
    prefix_ids: tuple[int, ...]
    suffix_ids: tuple[int, ...]
    sources: Mapping[str, str]
    encoder: Mapping[str, object]

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, allow_nan=False)

    @classmethod
    def from_metadata(cls, data: Mapping[str, Any]) -> CompiledEncoderInfo:
        """From metadata checked against `ENCODER_FIELDS`."""
        ids = {name: tuple(data[name]) for name in ("prefix_ids", "suffix_ids")}
        return cls(**{**data, **ids})


def _is_int(value: object, least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def _is_ids(value: object) -> bool:
    return isinstance(value, list) and all(_is_int(v, 0) for v in value)


def _is_letter_ids(value: object) -> bool:
    return isinstance(value, dict) and bool(value) and all(
        len(k) == 1 and k.isascii() and _is_int(v, 0) for k, v in value.items()
    )


def _is_digests(value: object) -> bool:
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


Fields = Mapping[str, tuple[Callable[[object], bool], str]]

ENCODER_FIELDS: Fields = {
    "alphabet": (lambda v: v in get_args(Alphabet), "'rna' or 'dna'"),
    "window": (lambda v: _is_int(v, 1), "a positive integer"),
    "batch_size": (lambda v: _is_int(v, 1), "a positive integer"),
    "letter_ids": (_is_letter_ids, "a map of letters to token ids"),
    "prefix_ids": (_is_ids, "a list of token ids"),
    "suffix_ids": (_is_ids, "a list of token ids"),
    "sources": (_is_digests, "a map of file names to sha256 digests"),
    "encoder": (lambda v: isinstance(v, dict), "a map of encoder settings"),
}
"""The compiled encoder's metadata: each key, a check of its value and what it must be."""
PROJECTOR_FIELDS: Fields = {
    "type": (lambda v: isinstance(v, str), "a projector type"),
    "in_dim": (lambda v: _is_int(v, 1), "a positive integer"),
    "out_dim": (lambda v: _is_int(v, 1), "a positive integer"),
    "hidden_dim": (lambda v: v is None or _is_int(v, 1), "a positive integer or null"),
}


def encoder_settings(spec: EncoderSpec, bundle_root: Path) -> dict[str, object]:
    """The bundle's `encoder` settings a compiled encoder stands for; a local encoder's
    directory is relative to the bundle, so that a moved bundle still matches."""
    settings: dict[str, object] = {
        "kind": spec.kind, "alphabet": spec.alphabet, "window": spec.window,
        "batch_size": spec.batch_size,
    }
    source, root = Path(spec.source), bundle_root.resolve()
    if not source.is_absolute():
        settings["hub_id"] = spec.source
    elif (source := source.resolve()).is_relative_to(root):
        settings["path"] = source.relative_to(root).as_posix()
    else:
        settings["path"] = spec.source
    return settings


def projector_settings(config: ProjectorConfig) -> dict[str, object]:
    """The projector settings its graph is compiled for (pooling is not in the graph)."""
    return {
        "type": config.type, "in_dim": config.in_dim, "out_dim": config.out_dim,
        "hidden_dim": config.hidden_dim,
    }


def read_metadata(
    session: onnxruntime.InferenceSession, path: Path, fields: Fields
) -> dict[str, Any]:
    """A graph's seqchat metadata, every key of `fields` present, known and valid."""
    text = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    if text is None:
        raise CompiledModelError(f"{path}: not compiled by seqchat; {RECOMPILE}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise CompiledModelError(f"{path}: its seqchat metadata is not JSON ({error})") from error
    if not isinstance(data, dict):
        raise CompiledModelError(f"{path}: its seqchat metadata is not a JSON object")
    missing = [key for key in fields if key not in data]
    unknown = sorted(key for key in data if key not in fields)
    if missing or unknown:
        what = "lacks" if missing else "has unknown keys"
        raise CompiledModelError(
            f"{path}: its seqchat metadata {what} {', '.join(missing or unknown)} "
            f"(compiled by another version of seqchat?); {RECOMPILE}"
        )
    for key, (valid, expected) in fields.items():
        if not valid(data[key]):
            shown = json.dumps(data[key])[:60]
            raise CompiledModelError(
                f"{path}: seqchat metadata key {key!r} must be {expected}, not {shown}"
            )
    return data


def compare_settings(
    compiled: Mapping[str, object], bundle: Mapping[str, object], section: str, graph: Path
) -> None:
    """Refuse a bundle whose `section` settings differ from those the graph was compiled for."""

    def shown(value: object) -> str:
        return "unset" if value is None else json.dumps(value)

    for key in sorted(set(compiled) | set(bundle)):
        if compiled.get(key) != bundle.get(key):
            raise CompiledModelError(
                f"{graph}: compiled for {section}.{key} {shown(compiled.get(key))}, but the "
                f"bundle's seqchat.yaml has {shown(bundle.get(key))}; {RECOMPILE}"
            )


def checksums_text(paths: Sequence[Path]) -> str:
    """The `CHECKSUMS_NAME` file for graphs in one directory."""
    return "".join(f"{sha256_file(path)}  {path.name}\n" for path in paths)


def verify_checksums(paths: Sequence[Path]) -> None:
    """Refuse graphs that differ from what `seqchat models compile` wrote beside them."""
    for path in paths:
        record = path.with_name(CHECKSUMS_NAME)
        if record.is_symlink() or not record.is_file():
            raise CompiledModelError(f"{record}: missing or not a regular file; {RECOMPILE}")
        try:
            lines = record.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise CompiledModelError(
                f"{record}: cannot read the graphs' sha256 ({type(error).__name__}); {RECOMPILE}"
            ) from error
        pairs = (line.split("  ", 1) for line in lines if "  " in line)
        recorded = {name: digest for digest, name in pairs}
        if path.name not in recorded:
            raise CompiledModelError(f"{record}: has no sha256 of {path.name}; {RECOMPILE}")
        if recorded[path.name] != sha256_file(path):
            raise CompiledModelError(
                f"{path}: changed since 'seqchat models compile' wrote it (its sha256 is not "
                f"the one in {CHECKSUMS_NAME}); {RECOMPILE}"
            )


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


def import_onnxruntime() -> ModuleType:
    """onnxruntime with its telemetry off.

    On Linux, onnxruntime (1.2x) starts a telemetry uploader when it is imported: it writes a
    device id and an event database under ~/.cache/Microsoft/DeveloperTools/.onnxruntime and
    later looks up Microsoft's endpoint. Only ORT_DISABLE_TELEMETRY=1 in the environment
    before the import stops it; `disable_telemetry_events()` afterwards mutes the events
    only. seqchat makes no network call of any kind, so the variable is forced."""
    os.environ["ORT_DISABLE_TELEMETRY"] = "1"
    import onnxruntime

    onnxruntime.disable_telemetry_events()
    return onnxruntime


def _session(path: Path) -> onnxruntime.InferenceSession:
    onnxruntime = import_onnxruntime()
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
    """Sequences -> soft-token matrices with the compiled encoder and projector.

    Loading refuses graphs changed since they were compiled (`CHECKSUMS_NAME`), metadata it
    does not know, and a projector compiled for other settings than `projector_config`."""

    device_type = "cpu"

    def __init__(
        self, encoder_path: Path, projector_path: Path, projector_config: ProjectorConfig
    ) -> None:
        verify_checksums([encoder_path, projector_path])
        self.runtime_name = f"onnxruntime {import_onnxruntime().__version__}"
        self.encoder_path, self.projector_path = encoder_path, projector_path
        self._encoder = _session(encoder_path)
        self._projector = _session(projector_path)
        self.projector_config = projector_config
        self.info = CompiledEncoderInfo.from_metadata(
            read_metadata(self._encoder, encoder_path, ENCODER_FIELDS)
        )
        compare_settings(
            read_metadata(self._projector, projector_path, PROJECTOR_FIELDS),
            projector_settings(projector_config), "projector", projector_path,
        )
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

    def check_encoder(self, spec: EncoderSpec, bundle_root: Path) -> None:
        """Refuse a bundle whose `encoder` settings differ from those the graph stands for
        (the compiled path reads its window and alphabet from the graph, not the bundle)."""
        compare_settings(
            self.info.encoder, encoder_settings(spec, bundle_root), "encoder", self.encoder_path
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
        require_finite(hidden, self.encoder_path, "the states it computed")
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
        require_finite(soft_tokens, self.projector_path, "the soft tokens it computed")
        return soft_tokens

    def __call__(self, sequences: list[str]) -> list[np.ndarray]:
        return [self.project(states) for states in self.states(sequences)]
