"""What a bundle says about its encoder and projector, as plain data: reading a bundle
imports no torch."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

EncoderKind = Literal["multimolecule", "transformers"]
Alphabet = Literal["rna", "dna"]
ENCODER_KINDS: tuple[str, ...] = ("multimolecule", "transformers")


@dataclass(frozen=True)
class EncoderSpec:
    """Where an encoder comes from and how to feed it."""

    source: str
    kind: EncoderKind = "multimolecule"
    alphabet: Alphabet = "rna"
    window: int | None = None
    batch_size: int = 16
    trust_remote_code: bool = False


@dataclass(frozen=True)
class ProjectorConfig:
    type: str
    in_dim: int
    out_dim: int
    pool_stride: int = 1
    max_soft_tokens: int = 64
    hidden_dim: int | None = None

    def as_dict(self) -> dict[str, object]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def pooling_stride(n_positions: int, pool_stride: int, max_soft_tokens: int) -> int:
    """The stride of the projector's mean pooling: `pool_stride`, grown so that a long
    sequence gives at most `max_soft_tokens` soft tokens."""
    return max(pool_stride, math.ceil(n_positions / max_soft_tokens), 1)
