"""Export an encoder and projector to ONNX (`seqchat models compile`), so that annotation
starts without torch (see `seqchat.encode.compiled`).

The export is checked before it is kept: the token table must reproduce the encoder's own
tokenizer, every weight in the graphs must be finite, and onnxruntime's states and soft
tokens must match PyTorch's. The graphs are staged in a directory of their own, with their
sha256 (`CHECKSUMS_NAME`), and moved into place only when all of that holds.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import random
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from seqchat.encode.compiled import (
    CHECKSUMS_NAME,
    METADATA_KEY,
    CompiledEncoderInfo,
    CompiledModelError,
    CompiledSoftTokenizer,
    checksums_text,
    encoder_settings,
    projector_settings,
)
from seqchat.encode.encoders import NucleotideEncoder
from seqchat.encode.projector import Projector, load_projector
from seqchat.encode.specs import EncoderSpec, ProjectorConfig
from seqchat.encode.windows import to_alphabet
from seqchat.io.sequences import NUCLEOTIDE_LETTERS

if TYPE_CHECKING:
    import onnx

COMPILED_DIR = "compiled"
ENCODER_FILE = f"{COMPILED_DIR}/encoder.onnx"
PROJECTOR_FILE = f"{COMPILED_DIR}/projector.onnx"
STAGING_DIR = f"{COMPILED_DIR}/.partial"
TOLERANCE = 1e-4
"""Largest difference allowed between onnxruntime's and PyTorch's states or soft tokens."""


class _EncoderGraph(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def token_table(encoder: NucleotideEncoder) -> tuple[dict[str, int], list[int], list[int]]:
    """(letter -> id, ids before, ids after) that reproduce the encoder's tokenizer on every
    sequence seqchat accepts; an error for a tokenizer that is not one token per letter."""
    tokenizer = encoder.tokenizer
    letters = sorted(set(to_alphabet(NUCLEOTIDE_LETTERS, encoder.spec.alphabet)))

    def tokens(text: str) -> tuple[list[int], list[int]]:
        batch = tokenizer(text, return_special_tokens_mask=True)  # type: ignore[operator]
        return list(batch["input_ids"]), list(batch["special_tokens_mask"])

    letter_ids: dict[str, int] = {}
    prefix: list[int] = []
    suffix: list[int] = []
    for letter in letters:
        ids, special = tokens(letter)
        plain = [i for i, s in enumerate(special) if not s]
        if len(plain) != 1:
            why = f"{letter!r} gives {len(plain)} tokens"
            raise CompiledModelError(_not_per_letter(encoder, why))
        letter_ids[letter] = ids[plain[0]]
        prefix, suffix = ids[: plain[0]], ids[plain[0] + 1 :]
    rng = random.Random(0)
    every_pair = "".join(a + b for a in letters for b in letters)
    samples = [every_pair, "".join(rng.choice(letters) for _ in range(1000))]
    step = max(2, encoder.window)
    for sample in samples:
        for start in range(0, len(sample), step - 1):  # windows overlap by a letter
            text = sample[start : start + step]
            if tokens(text)[0] != prefix + [letter_ids[c] for c in text] + suffix:
                why = "letters merge into longer tokens"
                raise CompiledModelError(_not_per_letter(encoder, why))
    return letter_ids, prefix, suffix


def _not_per_letter(encoder: NucleotideEncoder, why: str) -> str:
    return (
        f"encoder {encoder.spec.source}: its tokenizer is not one token per nucleotide ({why}); "
        "only such encoders compile to ONNX, this bundle keeps the PyTorch path"
    )


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The ONNX exporter reports its progress on stdout and warns about optional packages."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        previous = logging.root.manager.disable
        logging.disable(logging.WARNING)
        try:
            yield
        finally:
            logging.disable(previous)


def _export(module: torch.nn.Module, args: tuple[torch.Tensor, ...], names: list[str],
            dynamic: tuple[dict[int, object], ...], path: Path,
            metadata: dict[str, str] | None = None) -> None:
    """`dynamic` gives the dynamic dimensions of each argument, in order."""
    with _quiet_exporter():
        program = torch.onnx.export(
            module, args, dynamo=True, verbose=False,
            input_names=names, output_names=["output"], dynamic_shapes=dynamic,
        )
    assert program is not None  # the dynamo exporter always returns its program
    program.model.metadata_props.update(metadata or {})
    program.save(str(path), external_data=False)


def _export_encoder(encoder: NucleotideEncoder, info: CompiledEncoderInfo, path: Path) -> None:
    n_special = len(info.prefix_ids) + len(info.suffix_ids)
    batch = torch.export.Dim("batch", min=1, max=4096)
    length = torch.export.Dim("length", min=n_special + 1, max=info.window + n_special)
    letters = (list(info.letter_ids.values()) * 16)[: min(16, info.window)]
    example = torch.tensor([[*info.prefix_ids, *letters, *info.suffix_ids]] * 2)
    dims = {0: batch, 1: length}
    _export(
        _EncoderGraph(encoder.model).eval(), (example, torch.ones_like(example)),
        ["input_ids", "attention_mask"], (dims, dims), path, {METADATA_KEY: info.to_json()},
    )


def _export_projector(projector: Projector, path: Path) -> None:
    rows = torch.export.Dim("rows", min=1, max=65536)
    example = torch.zeros(3, projector.config.in_dim)
    metadata = {METADATA_KEY: json.dumps(projector_settings(projector.config), allow_nan=False)}
    _export(projector.network.eval(), (example,), ["states"], ({0: rows},), path, metadata)


def _tensors(graph: onnx.GraphProto | onnx.FunctionProto) -> Iterator[onnx.TensorProto]:
    """Every tensor a graph holds: its initializers and constants, in subgraphs too."""
    yield from getattr(graph, "initializer", ())
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("g"):
                yield from _tensors(attribute.g)
            for subgraph in attribute.graphs:
                yield from _tensors(subgraph)


def nonfinite_tensors(path: Path) -> list[str]:
    """The names of the floating-point tensors of an ONNX graph (its functions included)
    that hold NaN or infinity."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    found = []
    for graph in [model.graph, *model.functions]:
        for tensor in _tensors(graph):
            values = numpy_helper.to_array(tensor)
            if values.dtype.kind in "fc" and not np.isfinite(values).all():
                found.append(tensor.name or "an unnamed constant")
    return found


def _refuse_nonfinite(graph: Path, weights: str) -> None:
    """Refuse a graph with NaN or infinity in its weights, naming where they came from."""
    names = nonfinite_tensors(graph)
    if names:
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        raise CompiledModelError(
            f"{weights}: weights {shown} hold NaN or infinity; the bundle was left unchanged"
        )


def _check(
    compiled: CompiledSoftTokenizer, encoder: NucleotideEncoder, projector: Projector
) -> None:
    """onnxruntime against PyTorch on sequences of one letter, one short window, several
    windows (batched) and every letter, states and soft tokens."""
    rng = random.Random(1)

    def sequence(length: int, letters: str = "ACGT") -> str:
        return "".join(rng.choice(letters) for _ in range(length))

    window = encoder.window
    sequences = ["A", sequence(37), *(sequence(2 * window + 5) for _ in range(3))]
    sequences.append(sequence(min(window, 64), NUCLEOTIDE_LETTERS.replace("U", "")))
    with torch.inference_mode():
        expected_states = encoder.states(sequences)
        expected_tokens = [projector(states) for states in expected_states]
    for text, expected, states, tokens in zip(
        sequences, expected_states, compiled.states(sequences), expected_tokens
    ):
        worst = float("inf")
        if states.shape == tuple(expected.shape):
            worst = max(
                float(np.abs(states - expected.numpy()).max()),
                float(np.abs(compiled.project(states) - tokens.numpy()).max()),
            )
        if not worst <= TOLERANCE:
            raise CompiledModelError(
                f"the ONNX export differs from PyTorch by {worst:.2g} on a sequence of "
                f"{len(text)} nt (allowed: {TOLERANCE:g}); the bundle was left unchanged"
            )


def export_soft_tokenizer(
    encoder_spec: EncoderSpec,
    projector_config: ProjectorConfig,
    projector_weights: Path,
    sources: dict[str, str],
    directory: Path,
) -> tuple[Path, Path]:
    """Export an encoder and its projector as ONNX graphs into `directory/compiled` (the
    bundle), checked before they replace anything. `sources` (file -> sha256) and the
    bundle's encoder settings are written into the encoder graph, so a later change of
    either is noticed. Returns the two graphs."""
    torch.set_num_threads(1)
    encoder = NucleotideEncoder.load(encoder_spec, "cpu")
    projector = load_projector(projector_config, projector_weights)
    letter_ids, prefix, suffix = token_table(encoder)
    info = CompiledEncoderInfo(
        alphabet=encoder.spec.alphabet, window=encoder.window, batch_size=encoder.spec.batch_size,
        letter_ids=letter_ids, prefix_ids=tuple(prefix), suffix_ids=tuple(suffix), sources=sources,
        encoder=encoder_settings(encoder_spec, directory),
    )
    (directory / COMPILED_DIR).mkdir(exist_ok=True)
    staging = directory / STAGING_DIR
    shutil.rmtree(staging, ignore_errors=True)  # left by a compile that was killed
    staging.mkdir()
    targets = (directory / ENCODER_FILE, directory / PROJECTOR_FILE)
    staged = [staging / path.name for path in targets]
    try:
        _export_encoder(encoder, info, staged[0])
        _export_projector(projector, staged[1])
        _refuse_nonfinite(staged[0], f"encoder {encoder_spec.source}")
        _refuse_nonfinite(staged[1], str(projector_weights))
        (staging / CHECKSUMS_NAME).write_text(checksums_text(staged), encoding="utf-8")
        _check(CompiledSoftTokenizer(staged[0], staged[1], projector_config), encoder, projector)
        for path in [*staged, staging / CHECKSUMS_NAME]:
            os.replace(path, directory / COMPILED_DIR / path.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return targets
