"""LoRA export: transformers + peft LoRA must give the same logits as llama.cpp + GGUF adapter."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from seqchat.errors import SeqchatError
from seqchat.llm import lora_gguf as lora_module
from seqchat.llm.lora import (
    LoraExportError,
    load_lora,
    load_lora_state_dict,
    lora_state_dict,
    read_lora_config,
    save_lora,
)
from seqchat.llm.lora_gguf import export_lora_gguf, merge_lora_gguf, permute_rows, unpermute_rows
from tinymodels import write_tiny_gguf

TOKENS = [1, 259, 262, 270, 5, 290, 280, 72, 285, 261, 266, 295, 299, 40, 260]
ATTENTION = ["q_proj", "k_proj", "v_proj", "o_proj"]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("tiny_llm")
    write_tiny_gguf(directory / "tiny.gguf")
    return directory


def load_base(tiny_dir: Path) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        tiny_dir, gguf_file="tiny.gguf", dtype=torch.float32
    )
    return model.eval()


def lora_model(
    tiny_dir: Path, targets: list[str], *, r: int = 4, alpha: float = 8, seed: int = 0, **extra
) -> torch.nn.Module:
    """The tiny LLM with a LoRA whose A and B are random and non-zero (peft zero-inits B)."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=r, lora_alpha=alpha, target_modules=targets, lora_dropout=0.0, **extra
    )
    model = get_peft_model(load_base(tiny_dir), config)
    randomize_lora(model, seed)
    return model.eval()


def randomize_lora(model: torch.nn.Module, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_A" in name or "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.15)


def torch_logits(model: torch.nn.Module, tokens: list[int] = TOKENS) -> np.ndarray:
    with torch.no_grad():
        out = model(input_ids=torch.tensor([tokens]))
    return out.logits[0].float().numpy()


def llama_cpp_logits(
    gguf_path: Path, adapter: Path | None = None, tokens: list[int] = TOKENS
) -> np.ndarray:
    import llama_cpp

    llm = llama_cpp.Llama(
        model_path=str(gguf_path),
        lora_path=str(adapter) if adapter is not None else None,
        n_ctx=128,
        n_threads=2,
        type_k=0,  # GGML_TYPE_F32: the default F16 KV cache alone costs ~3e-3 on these logits
        type_v=0,
        logits_all=True,
        verbose=False,
    )
    try:
        llm.eval(tokens)
        return np.array(llm.scores[: len(tokens)], dtype=np.float32)
    finally:
        llm.close()


def max_diff(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape
    return float(np.abs(a - b).max())


def test_base_parity_without_lora(tiny_dir: Path) -> None:
    """Sanity check of the comparison itself: the dequantized F32 base agrees with llama.cpp."""
    expected = torch_logits(load_base(tiny_dir))
    assert max_diff(expected, llama_cpp_logits(tiny_dir / "tiny.gguf")) < 1e-3


def test_adapter_metadata_and_tensors(tiny_dir: Path, tmp_path: Path) -> None:
    import gguf

    model = lora_model(tiny_dir, ATTENTION)
    out = export_lora_gguf(model, tiny_dir / "tiny.gguf", tmp_path / "adapter.gguf")
    assert out == tmp_path / "adapter.gguf"
    reader = gguf.GGUFReader(str(out))
    fields = {key: field.contents() for key, field in reader.fields.items()}
    assert fields["general.architecture"] == "llama"
    assert fields["general.type"] == "adapter"
    assert fields["adapter.type"] == "lora"
    assert fields["adapter.lora.alpha"] == pytest.approx(8.0)
    tensors = {t.name: t for t in reader.tensors}
    assert len(tensors) == 2 * 4 * 2  # 2 layers x 4 projections x (a, b)
    q_a, q_b = tensors["blk.0.attn_q.weight.lora_a"], tensors["blk.0.attn_q.weight.lora_b"]
    k_b = tensors["blk.1.attn_k.weight.lora_b"]
    # numpy shapes: lora_a (r, n_in), lora_b (n_out, r); all F32
    assert tuple(q_a.data.shape) == (4, 64)
    assert tuple(q_b.data.shape) == (64, 4)
    assert tuple(k_b.data.shape) == (32, 4)
    assert {t.tensor_type for t in tensors.values()} == {gguf.GGMLQuantizationType.F32}
    # v and o are written as they are; q's B is row-permuted (same rows, different order)
    v_b = model.base_model.model.model.layers[0].self_attn.v_proj.lora_B["default"].weight
    np.testing.assert_array_equal(tensors["blk.0.attn_v.weight.lora_b"].data, v_b.detach().numpy())
    hf_q_b = model.base_model.model.model.layers[0].self_attn.q_proj.lora_B["default"].weight
    hf_q_b = hf_q_b.detach().numpy()
    assert not np.array_equal(q_b.data, hf_q_b)
    np.testing.assert_array_equal(np.sort(q_b.data, axis=0), np.sort(hf_q_b, axis=0))


def test_lora_parity_with_llama_cpp(tiny_dir: Path, tmp_path: Path) -> None:
    model = lora_model(tiny_dir, ATTENTION)
    adapter = export_lora_gguf(model, tiny_dir / "tiny.gguf", tmp_path / "adapter.gguf")

    expected = torch_logits(model)
    with_adapter = llama_cpp_logits(tiny_dir / "tiny.gguf", adapter)
    without_adapter = llama_cpp_logits(tiny_dir / "tiny.gguf")

    assert max_diff(expected, with_adapter) < 1e-3
    # the LoRA changes the logits clearly, so an ignored adapter would fail the check above
    assert max_diff(expected, without_adapter) > 0.5
    # and the next-token prediction after the sequence is the same
    assert int(expected[-1].argmax()) == int(with_adapter[-1].argmax())


@pytest.mark.parametrize("target", ["q_proj", "k_proj"])
def test_qk_permutation_is_needed(
    tiny_dir: Path, tmp_path: Path, target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = lora_model(tiny_dir, [target], seed=1)
    expected = torch_logits(model)
    base = tiny_dir / "tiny.gguf"

    adapter = export_lora_gguf(model, base, tmp_path / "permuted.gguf")
    assert max_diff(expected, llama_cpp_logits(base, adapter)) < 1e-3
    assert max_diff(expected, llama_cpp_logits(base)) > 0.1

    # the same export without the row permutation of B breaks parity
    monkeypatch.setattr(lora_module, "permute_rows", lambda weights, *args: weights)
    unpermuted = export_lora_gguf(model, base, tmp_path / "unpermuted.gguf")
    assert max_diff(expected, llama_cpp_logits(base, unpermuted)) > 0.1


def test_rslora_scaling_is_folded(tiny_dir: Path, tmp_path: Path) -> None:
    """rslora scales by alpha / sqrt(r), llama.cpp by alpha / r: the export must compensate."""
    model = lora_model(tiny_dir, ["v_proj", "o_proj"], r=4, alpha=8, use_rslora=True, seed=2)
    adapter = export_lora_gguf(model, tiny_dir / "tiny.gguf", tmp_path / "rslora.gguf")
    assert max_diff(torch_logits(model), llama_cpp_logits(tiny_dir / "tiny.gguf", adapter)) < 1e-3


def test_unsupported_architecture(tiny_dir: Path, tmp_path: Path) -> None:
    import gguf

    other = tmp_path / "other.gguf"
    writer = gguf.GGUFWriter(str(other), "qwen3")
    writer.add_block_count(2)
    writer.add_head_count(4)
    writer.add_tensor("token_embd.weight", np.zeros((8, 4), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    model = lora_model(tiny_dir, ATTENTION)
    with pytest.raises(LoraExportError, match="qwen3") as raised:
        export_lora_gguf(model, other, tmp_path / "adapter.gguf")
    assert isinstance(raised.value, SeqchatError)
    assert not (tmp_path / "adapter.gguf").exists()


def test_unsupported_targets(tiny_dir: Path, tmp_path: Path) -> None:
    model = lora_model(tiny_dir, ["lm_head"])
    with pytest.raises(LoraExportError, match="lm_head"):
        export_lora_gguf(model, tiny_dir / "tiny.gguf", tmp_path / "adapter.gguf")


def test_not_a_gguf(tiny_dir: Path, tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"not a gguf at all")
    with pytest.raises(LoraExportError, match="bogus.gguf"):
        export_lora_gguf(lora_model(tiny_dir, ATTENTION), bogus, tmp_path / "adapter.gguf")


def test_state_dict_round_trip(tiny_dir: Path, tmp_path: Path) -> None:
    trained = lora_model(tiny_dir, ATTENTION, seed=3)
    state = lora_state_dict(trained)
    assert len(state) == 2 * 4 * 2
    assert all("lora_A" in key or "lora_B" in key for key in state)
    assert "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight" in state

    path = save_lora(trained, tmp_path / "lora.safetensors")
    assert read_lora_config(path) == {
        "r": 4,
        "lora_alpha": 8.0,
        "target_modules": sorted(ATTENTION),
        "use_rslora": False,
    }

    fresh = lora_model(tiny_dir, ATTENTION, seed=4)
    assert max_diff(torch_logits(fresh), torch_logits(trained)) > 0.1
    load_lora(fresh, path)
    assert max_diff(torch_logits(fresh), torch_logits(trained)) == 0.0

    other_rank = lora_model(tiny_dir, ATTENTION, r=8, alpha=16)
    with pytest.raises(LoraExportError, match="r=4"):
        load_lora(other_rank, path)
    with pytest.raises(LoraExportError, match="shape"):
        load_lora_state_dict(other_rank, state)
    with pytest.raises(LoraExportError, match="missing"):
        load_lora_state_dict(lora_model(tiny_dir, ATTENTION + ["up_proj"]), state)


def test_mlp_targets_export(tiny_dir: Path, tmp_path: Path) -> None:
    """The FFN projections map to ffn_gate / ffn_up / ffn_down and need no permutation."""
    model = lora_model(tiny_dir, ["gate_proj", "up_proj", "down_proj"], seed=5)
    adapter = export_lora_gguf(model, tiny_dir / "tiny.gguf", tmp_path / "mlp.gguf")
    assert max_diff(torch_logits(model), llama_cpp_logits(tiny_dir / "tiny.gguf", adapter)) < 1e-3


# --- merging a GGUF adapter back into transformers (the PyTorch twin of a served bundle) ---


def test_unpermute_inverts_permute() -> None:
    weights = np.arange(64 * 3, dtype=np.float32).reshape(64, 3)
    for n_head, n_head_kv in [(8, 8), (8, 4), (4, 2)]:
        permuted = permute_rows(weights, n_head, n_head_kv)
        assert not np.array_equal(permuted, weights)
        np.testing.assert_array_equal(unpermute_rows(permuted, n_head, n_head_kv), weights)


@pytest.mark.parametrize(
    ("targets", "extra"),
    [
        (ATTENTION, {}),
        (["q_proj", "k_proj", "gate_proj", "up_proj", "down_proj"], {}),
        (ATTENTION, {"use_rslora": True}),
    ],
    ids=["attention", "qk-mlp", "rslora"],
)
def test_merge_round_trip(tiny_dir: Path, tmp_path: Path, targets: list[str], extra: dict) -> None:
    """peft LoRA -> GGUF adapter -> merged into a fresh transformers model: same logits."""
    model = lora_model(tiny_dir, targets, seed=6, **extra)
    base = tiny_dir / "tiny.gguf"
    adapter = export_lora_gguf(model, base, tmp_path / "adapter.gguf")
    expected = torch_logits(model)

    fresh = load_base(tiny_dir)
    before = torch_logits(fresh)
    merge_lora_gguf(fresh, adapter, base)
    merged = torch_logits(fresh)
    diff = max_diff(expected, merged)
    print(f"merge round trip {targets}: max |logit diff| {diff:.2e}")
    np.testing.assert_allclose(merged, expected, atol=1e-4, rtol=0)
    assert max_diff(expected, before) > 0.1  # the LoRA matters, so the check can fail


def test_merge_matches_llama_cpp(tiny_dir: Path, tmp_path: Path) -> None:
    model = lora_model(tiny_dir, ATTENTION, seed=7)
    base = tiny_dir / "tiny.gguf"
    adapter = export_lora_gguf(model, base, tmp_path / "adapter.gguf")
    fresh = load_base(tiny_dir)
    merge_lora_gguf(fresh, adapter, base)
    assert max_diff(torch_logits(fresh), llama_cpp_logits(base, adapter)) < 1e-3


def test_merge_without_unpermuting_breaks(
    tiny_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = lora_model(tiny_dir, ["q_proj", "k_proj"], seed=8)
    base = tiny_dir / "tiny.gguf"
    adapter = export_lora_gguf(model, base, tmp_path / "adapter.gguf")
    monkeypatch.setattr(lora_module, "unpermute_rows", lambda weights, *args: weights)
    fresh = load_base(tiny_dir)
    merge_lora_gguf(fresh, adapter, base)
    assert max_diff(torch_logits(model), torch_logits(fresh)) > 0.1


def write_adapter(path: Path, tensors: dict[str, np.ndarray], arch: str = "llama") -> Path:
    import gguf

    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, 8.0)
    for name, data in tensors.items():
        writer.add_tensor(name, np.ascontiguousarray(data, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.mark.parametrize(
    ("tensors", "message"),
    [
        ({"output.weight.lora_a": np.ones((4, 64)), "output.weight.lora_b": np.ones((300, 4))},
         "output.weight.lora_a"),
        ({"blk.0.attn_v.weight.lora_a": np.ones((4, 64)),
          "blk.0.attn_v.weight.lora_b": np.ones((64, 4))}, "64 -> 64 but"),
        ({"blk.0.attn_q.weight.lora_a": np.ones((4, 64)),
          "blk.0.attn_q.weight.lora_b": np.ones((64, 2))}, "not a pair"),
        ({"blk.0.attn_q.weight.lora_a": np.ones((4, 64))}, "no lora_b"),
        ({"blk.9.attn_q.weight.lora_a": np.ones((4, 64)),
          "blk.9.attn_q.weight.lora_b": np.ones((64, 4))}, "layer 9"),
    ],
    ids=["unknown-name", "shape", "rank", "unpaired", "layer"],
)
def test_merge_refuses(
    tiny_dir: Path, tmp_path: Path, tensors: dict[str, np.ndarray], message: str
) -> None:
    adapter = write_adapter(tmp_path / "bad.gguf", tensors)
    model = load_base(tiny_dir)
    before = {name: p.clone() for name, p in model.state_dict().items()}
    with pytest.raises(LoraExportError, match=message) as raised:
        merge_lora_gguf(model, adapter, tiny_dir / "tiny.gguf")
    assert isinstance(raised.value, SeqchatError)
    # nothing was merged
    assert all(torch.equal(before[name], p) for name, p in model.state_dict().items())


def test_merge_refuses_non_adapters(tiny_dir: Path, tmp_path: Path) -> None:
    model = load_base(tiny_dir)
    with pytest.raises(LoraExportError, match="not a GGUF LoRA adapter"):
        merge_lora_gguf(model, tiny_dir / "tiny.gguf", tiny_dir / "tiny.gguf")
    other = write_adapter(tmp_path / "qwen.gguf", {}, arch="qwen3")
    with pytest.raises(LoraExportError, match="qwen3"):
        merge_lora_gguf(model, other, tiny_dir / "tiny.gguf")
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"not a gguf at all")
    with pytest.raises(LoraExportError, match="bogus.gguf"):
        merge_lora_gguf(model, bogus, tiny_dir / "tiny.gguf")
