"""Sequences -> soft tokens with the PyTorch encoder and projector (training's own
modules). `seqchat.encode.compiled` does the same from ONNX graphs without importing torch."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from seqchat.encode.compiled import NonFiniteError, require_finite
from seqchat.encode.encoders import NucleotideEncoder
from seqchat.encode.projector import Projector


class SoftTokenizer:
    """Encoder + projector: sequences -> soft-token matrices for the LLM."""

    def __init__(self, encoder: NucleotideEncoder, projector: Projector) -> None:
        self.encoder = encoder
        self.projector = projector.to(encoder.device)
        self.runtime_name = f"torch {torch.__version__}"

    @property
    def device_type(self) -> str:
        return self.encoder.device.type

    def use_threads(self, threads: int) -> None:
        torch.set_num_threads(threads)

    @torch.inference_mode()
    def __call__(self, sequences: list[str]) -> list[np.ndarray]:
        """Soft tokens of each sequence; NaN or infinity from corrupt weights is refused
        (the projector's own weights are checked when it is loaded)."""
        states = self.encoder.states(sequences)
        if not all(bool(torch.isfinite(s).all()) for s in states):
            raise NonFiniteError(
                f"encoder {self.encoder.spec.source}: the states it computed are not finite "
                "(NaN or infinity); its weights are corrupt"
            )
        with _one_torch_thread():
            soft_tokens = [self.projector(s).float().cpu().numpy() for s in states]
        for matrix in soft_tokens:
            require_finite(matrix, "projector", "the soft tokens it computed")
        return soft_tokens


@contextmanager
def _one_torch_thread() -> Iterator[None]:
    """BLAS splits a product of few rows along its inner dimension across threads, so
    with more threads the projector's output for a short sequence changes in the last
    bit, and a greedy answer can change with it. The projector is tiny: one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
