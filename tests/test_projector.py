"""The projector: pooling that bounds the soft tokens, mapping networks, weights on disk."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from seqchat.encode.projector import (
    Projector,
    ProjectorError,
    build_projector,
    load_projector,
    mean_pool,
    save_projector,
)
from seqchat.encode.specs import ProjectorConfig, pooling_stride


def config(**overrides) -> ProjectorConfig:
    settings = dict(type="linear", in_dim=8, out_dim=6, pool_stride=4, max_soft_tokens=16)
    settings.update(overrides)
    return ProjectorConfig(**settings)


def test_mean_pool_values() -> None:
    states = torch.arange(10, dtype=torch.float32).repeat(2, 1).T  # rows 0..9, two columns
    states[:, 1] *= -1
    pooled = mean_pool(states, 4)
    # Groups 0-3, 4-7 and the short last group 8-9.
    assert torch.equal(pooled, torch.tensor([[1.5, -1.5], [5.5, -5.5], [8.5, -8.5]]))
    assert torch.equal(mean_pool(states, 1), states)
    assert torch.equal(mean_pool(states, 10), states.mean(dim=0, keepdim=True))
    assert torch.equal(mean_pool(states, 25), states.mean(dim=0, keepdim=True))


def test_mean_pool_keeps_gradients() -> None:
    states = torch.randn(7, 3, requires_grad=True)
    mean_pool(states, 3).sum().backward()
    expected = torch.tensor([1 / 3] * 6 + [1.0]).unsqueeze(1).expand(7, 3)
    assert torch.allclose(states.grad, expected)


@pytest.mark.parametrize(
    ("n_positions", "n_tokens"),
    [(1, 1), (4, 1), (5, 2), (64, 16), (65, 13), (100, 15), (1000, 16), (20_000, 16), (20_001, 16)],
)
def test_soft_tokens_are_capped(n_positions: int, n_tokens: int) -> None:
    projector = build_projector(config())
    with torch.no_grad():
        out = projector(torch.randn(n_positions, 8))
    assert out.shape == (n_tokens, 6)
    stride = pooling_stride(n_positions, 4, 16)
    assert stride >= 4 and math.ceil(n_positions / stride) == n_tokens <= 16


def test_stride_grows_only_when_needed() -> None:
    assert pooling_stride(64, 4, 16) == 4
    assert pooling_stride(65, 4, 16) == 5
    assert pooling_stride(10, 1, 64) == 1
    assert pooling_stride(6400, 1, 64) == 100


def test_linear_projector_is_pool_then_map() -> None:
    projector = build_projector(config())
    states = torch.randn(30, 8)
    with torch.no_grad():
        expected = projector.network(mean_pool(states, 4))
        assert torch.allclose(projector(states), expected)
    assert isinstance(projector.network, torch.nn.Linear)


def test_mlp_projector_uses_hidden_dim() -> None:
    projector = build_projector(config(type="mlp", hidden_dim=11))
    first, _, last = projector.network
    assert (first.in_features, first.out_features, last.out_features) == (8, 11, 6)
    assert build_projector(config(type="mlp")).network[0].out_features == 6


def test_unknown_projector_type() -> None:
    with pytest.raises(ProjectorError, match=r"projector type 'qformer' is unknown; use one of linear, mlp"):
        build_projector(config(type="qformer"))


def test_wrong_state_width() -> None:
    projector = build_projector(config())
    with pytest.raises(ProjectorError, match=r"width 8, got \(5, 7\)"):
        projector(torch.randn(5, 7))


def test_weights_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    projector = build_projector(config(type="mlp", hidden_dim=5))
    save_projector(projector, tmp_path / "p.safetensors")
    loaded = load_projector(projector.config, tmp_path / "p.safetensors")
    assert isinstance(loaded, Projector) and not loaded.training
    states = torch.randn(40, 8)
    with torch.no_grad():
        assert torch.equal(loaded(states), projector(states))


def test_weights_that_do_not_fit(tmp_path: Path) -> None:
    save_projector(build_projector(config(out_dim=5)), tmp_path / "p.safetensors")
    with pytest.raises(ProjectorError, match="p.safetensors: weights do not match the linear projector 8 -> 6"):
        load_projector(config(), tmp_path / "p.safetensors")


@pytest.mark.parametrize("content", [b"", b"\xff" * 3000, b"not a safetensors file at all"])
def test_unreadable_weights_name_the_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "weights.safetensors"
    path.write_bytes(content)
    with pytest.raises(ProjectorError, match=r"weights.safetensors: not a readable safetensors file"):
        load_projector(config(), path)


def test_missing_weights_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ProjectorError, match="absent.safetensors"):
        load_projector(config(), tmp_path / "absent.safetensors")
