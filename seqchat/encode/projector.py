"""The projector: encoder states -> a bounded number of soft tokens in the LLM's
input-embedding space (what Hugging Face `inputs_embeds` takes).

States are first mean-pooled over non-overlapping groups of `pool_stride` positions; when a
sequence would still give more than `max_soft_tokens`, the stride grows so that it does not
(a 20 kb gene does not become 20,000 soft tokens). Then a `linear` map (the seeds' design) or
a two-layer `mlp` maps each pooled state to the LLM's width.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from seqchat.encode.specs import ProjectorConfig, pooling_stride
from seqchat.errors import SeqchatError


class ProjectorError(SeqchatError):
    """The projector's config or weights do not fit."""


def mean_pool(states: torch.Tensor, stride: int) -> torch.Tensor:
    """Mean over consecutive groups of `stride` rows; the last group may be shorter."""
    n_positions, width = states.shape
    n_groups = math.ceil(n_positions / stride)
    padded = torch.zeros(n_groups * stride, width, dtype=states.dtype, device=states.device)
    padded[:n_positions] = states
    counts = torch.full((n_groups,), float(stride), dtype=states.dtype, device=states.device)
    counts[-1] = n_positions - (n_groups - 1) * stride
    return padded.view(n_groups, stride, width).sum(dim=1) / counts.unsqueeze(1)


class Projector(torch.nn.Module):
    """Pooling followed by a mapping network; `forward` takes one sequence's states."""

    def __init__(self, config: ProjectorConfig, network: torch.nn.Module) -> None:
        super().__init__()
        self.config = config
        self.network = network

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        if states.ndim != 2 or states.shape[1] != self.config.in_dim:
            raise ProjectorError(
                f"projector expects states of width {self.config.in_dim}, got {tuple(states.shape)}"
            )
        stride = pooling_stride(
            states.shape[0], self.config.pool_stride, self.config.max_soft_tokens
        )
        return self.network(mean_pool(states, stride))


def _linear(config: ProjectorConfig) -> torch.nn.Module:
    return torch.nn.Linear(config.in_dim, config.out_dim)


def _mlp(config: ProjectorConfig) -> torch.nn.Module:
    hidden = config.hidden_dim or config.out_dim
    return torch.nn.Sequential(
        torch.nn.Linear(config.in_dim, hidden),
        torch.nn.GELU(),
        torch.nn.Linear(hidden, config.out_dim),
    )


PROJECTOR_TYPES: dict[str, Callable[[ProjectorConfig], torch.nn.Module]] = {
    "linear": _linear,
    "mlp": _mlp,
}


def build_projector(config: ProjectorConfig) -> Projector:
    try:
        network = PROJECTOR_TYPES[config.type](config)
    except KeyError:
        known = ", ".join(sorted(PROJECTOR_TYPES))
        raise ProjectorError(f"projector type {config.type!r} is unknown; use one of {known}")
    return Projector(config, network)


def save_projector(projector: Projector, path: Path) -> None:
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in projector.state_dict().items()}
    save_file(state, str(path), metadata={"format": "pt"})


def load_projector(config: ProjectorConfig, path: Path) -> Projector:
    projector = build_projector(config)
    try:
        state = load_file(str(path))
    except (OSError, ValueError, RuntimeError, SafetensorError) as error:
        raise ProjectorError(f"{path}: not a readable safetensors file ({error})") from error
    nonfinite = sorted(
        name for name, tensor in state.items()
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())
    )
    if nonfinite:
        raise ProjectorError(f"{path}: weights {', '.join(nonfinite)} hold NaN or infinity")
    try:
        projector.load_state_dict(state)
    except RuntimeError as error:
        raise ProjectorError(
            f"{path}: weights do not match the {config.type} projector "
            f"{config.in_dim} -> {config.out_dim} named in the bundle"
        ) from error
    projector.eval()
    return projector
