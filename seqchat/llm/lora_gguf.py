"""LoRA on the LLM as a llama.cpp GGUF LoRA adapter: exported from peft, merged back for the
PyTorch twin.

Training runs the LLM in PyTorch (transformers dequantizes the GGUF) and may wrap it with a
peft LoRA; serving runs llama.cpp on the quantized GGUF, which is never rewritten. Instead the
LoRA is written as a GGUF *adapter* that llama.cpp applies at run time
(`llama_adapter_lora_init` + `llama_set_adapters_lora`), the format of llama.cpp's
`convert_lora_to_gguf.py`:

* metadata `general.architecture` (the base's), `general.type = "adapter"`,
  `adapter.type = "lora"`, `adapter.lora.alpha` (float32; llama.cpp scales by alpha / rank,
  the rank being read from each tensor pair);
* for each adapted base tensor `NAME` (e.g. `blk.0.attn_q.weight`), `NAME.lora_a` with numpy
  shape (r, n_in) and `NAME.lora_b` with numpy shape (n_out, r), F32; llama.cpp computes
  `W x + scale * B (A x)`.

llama GGUFs store the rows of Q and K permuted relative to Hugging Face (convert_hf_to_gguf's
`LlamaModel.permute`, which turns HF's rotate-half rope layout into llama.cpp's interleaved
one) and transformers' GGUF loader undoes it. Since permute(W + B A) = permute(W) + permute(B) A,
the rows of `lora_b` are permuted the same way for Q (with n_head) and K (with n_head_kv).

`merge_lora_gguf` goes the other way for the PyTorch twin of a served bundle: it reads such an
adapter, un-permutes Q's and K's `lora_b` and adds `(alpha / r) B A` into the transformers weights.
"""

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqchat.llm.lora import LoraExportError, adapter_name_of, lora_config_of

SUPPORTED_ARCHITECTURES = ("llama",)

# Hugging Face module name -> GGUF tensor name (without the `blk.N.` prefix).
HF_TO_GGUF = {
    "q_proj": "attn_q",
    "k_proj": "attn_k",
    "v_proj": "attn_v",
    "o_proj": "attn_output",
    "gate_proj": "ffn_gate",
    "up_proj": "ffn_up",
    "down_proj": "ffn_down",
}

_MODULE_NAME = re.compile(
    r"(?:^|\.)layers\.(?P<layer>\d+)\.(?:self_attn|mlp)\.(?P<proj>" + "|".join(HF_TO_GGUF) + r")$"
)


def _rope_heads(weights: np.ndarray, n_head: int, n_head_kv: int | None, verb: str) -> int:
    """The head count whose rows are permuted (the KV heads for K), checked to divide evenly."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    if weights.shape[0] % (2 * n_head):
        raise LoraExportError(
            f"cannot {verb} {weights.shape[0]} rows of {n_head} heads of even size"
        )
    return n_head


def permute_rows(weights: np.ndarray, n_head: int, n_head_kv: int | None = None) -> np.ndarray:
    """convert_hf_to_gguf's `LlamaModel.permute`: HF rope row layout -> llama.cpp's."""
    n_head = _rope_heads(weights, n_head, n_head_kv, "permute")
    return (
        weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def unpermute_rows(weights: np.ndarray, n_head: int, n_head_kv: int | None = None) -> np.ndarray:
    """The inverse of `permute_rows`: llama.cpp's interleaved rope row layout -> HF's."""
    n_head = _rope_heads(weights, n_head, n_head_kv, "un-permute")
    return (
        weights.reshape(n_head, weights.shape[0] // n_head // 2, 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def _field(reader: Any, key: str) -> Any:
    field = reader.fields.get(key)
    if field is None:
        return None
    return field.contents()


def _read_base(base_gguf_path: Path) -> tuple[str, dict[str, Any], dict[str, tuple[int, ...]]]:
    """The base GGUF's architecture, hyper-parameters and tensor shapes (numpy order)."""
    import gguf

    try:
        reader = gguf.GGUFReader(str(base_gguf_path))
    except (OSError, ValueError) as error:
        raise LoraExportError(f"{base_gguf_path}: not a readable GGUF file ({error})") from error
    arch = _field(reader, "general.architecture")
    if not isinstance(arch, str):
        raise LoraExportError(f"{base_gguf_path}: GGUF has no general.architecture")
    general_type = _field(reader, "general.type")
    if general_type not in (None, "model"):
        raise LoraExportError(f"{base_gguf_path}: GGUF is a {general_type}, not a model")
    n_head = _field(reader, f"{arch}.attention.head_count")
    n_head_kv = _field(reader, f"{arch}.attention.head_count_kv")
    hparams = {
        "name": _field(reader, "general.name"),
        "n_layer": _field(reader, f"{arch}.block_count"),
        "n_head": int(n_head) if n_head is not None else None,
        "n_head_kv": int(n_head_kv) if n_head_kv is not None else None,
    }
    if hparams["n_head_kv"] is None:
        hparams["n_head_kv"] = hparams["n_head"]
    # reader shapes are ggml order (ne0 = columns first); numpy order is the reverse.
    shapes = {
        tensor.name: tuple(int(d) for d in reversed(list(tensor.shape)))
        for tensor in reader.tensors
    }
    return arch, hparams, shapes


def _lora_modules(peft_model: Any, adapter_name: str) -> list[tuple[str, Any]]:
    from peft.tuners.lora import LoraLayer

    modules = []
    for name, module in peft_model.named_modules():
        if isinstance(module, LoraLayer) and adapter_name in getattr(module, "lora_A", {}):
            modules.append((name, module))
    for name, module in peft_model.named_modules():
        if isinstance(module, LoraLayer) and adapter_name in getattr(
            module, "lora_embedding_A", {}
        ):
            raise LoraExportError(f"LoRA on the embedding {name} is not supported for export")
    return modules


# --------------------------------------------------------------------------- GGUF export


def _read_supported_base(base_gguf_path: Path, verb: str) -> tuple[str, dict, dict]:
    """`_read_base`, refusing architectures whose tensor layout is not handled here."""
    arch, hparams, base_shapes = _read_base(base_gguf_path)
    if arch not in SUPPORTED_ARCHITECTURES:
        raise LoraExportError(
            f"{base_gguf_path}: LoRA {verb} supports the {', '.join(SUPPORTED_ARCHITECTURES)} "
            f"architecture, not {arch!r}"
        )
    if not hparams["n_head"]:
        raise LoraExportError(f"{base_gguf_path}: GGUF has no {arch}.attention.head_count")
    return arch, hparams, base_shapes


def export_lora_gguf(
    peft_model: Any,
    base_gguf_path: Path,
    out_path: Path,
    *,
    adapter_name: str | None = None,
) -> Path:
    """Write the peft LoRA of `peft_model` as a llama.cpp GGUF LoRA adapter for the base GGUF.

    `base_gguf_path` is the GGUF the model was loaded from (its architecture, head counts and
    tensor shapes are read and checked); returns `out_path`. The adapter is applied by llama.cpp
    at scale 1 (`lora_scale=1.0`) to reproduce the PyTorch model.
    """
    import gguf

    base_gguf_path = Path(base_gguf_path)
    out_path = Path(out_path)
    arch, hparams, base_shapes = _read_supported_base(base_gguf_path, "export")

    name = adapter_name_of(peft_model, adapter_name)
    config = lora_config_of(peft_model, name)
    if getattr(config, "modules_to_save", None):
        raise LoraExportError(
            f"adapter {name!r} fully trains {sorted(config.modules_to_save)}; "
            "only LoRA matrices can be exported as a GGUF adapter"
        )
    alpha = float(config.lora_alpha)
    if alpha <= 0:
        raise LoraExportError(f"adapter {name!r} has lora_alpha {alpha}; it must be positive")

    tensors: list[tuple[str, np.ndarray]] = []
    for module_name, module in _lora_modules(peft_model, name):
        match = _MODULE_NAME.search(module_name)
        if match is None:
            raise LoraExportError(
                f"LoRA on {module_name} cannot be exported; supported targets are "
                f"{', '.join(HF_TO_GGUF)} in the decoder layers"
            )
        if getattr(module, "use_dora", {}).get(name, False):
            raise LoraExportError(f"{module_name}: DoRA cannot be exported as a GGUF LoRA adapter")
        lora_bias = getattr(module, "lora_bias", {})
        if isinstance(lora_bias, Mapping) and lora_bias.get(name, False):
            raise LoraExportError(
                f"{module_name}: a LoRA bias cannot be exported as a GGUF adapter"
            )

        proj = match.group("proj")
        gguf_name = f"blk.{int(match.group('layer'))}.{HF_TO_GGUF[proj]}.weight"
        a = module.lora_A[name].weight.detach().to("cpu", torch.float32).numpy()
        b = module.lora_B[name].weight.detach().to("cpu", torch.float32).numpy()
        if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[1]:
            raise LoraExportError(
                f"{module_name}: LoRA A {tuple(a.shape)} and B {tuple(b.shape)} are not a pair"
            )
        base_shape = base_shapes.get(gguf_name)
        if base_shape is None:
            raise LoraExportError(f"{base_gguf_path}: base GGUF has no tensor {gguf_name}")
        if base_shape != (b.shape[0], a.shape[1]):
            raise LoraExportError(
                f"{module_name}: LoRA maps {a.shape[1]} -> {b.shape[0]} but {gguf_name} in "
                f"{base_gguf_path} is {base_shape[1]} -> {base_shape[0]}"
            )

        # llama.cpp applies alpha / rank; fold any other peft scaling (rslora, alpha_pattern)
        # into B so that scale * B A is exactly what peft adds.
        rank = a.shape[0]
        scaling = float(module.scaling[name])
        factor = scaling * rank / alpha
        if not np.isclose(factor, 1.0, rtol=1e-6, atol=0.0):
            b = b * np.float32(factor)

        if proj == "q_proj":
            b = permute_rows(b, hparams["n_head"], hparams["n_head"])
        elif proj == "k_proj":
            b = permute_rows(b, hparams["n_head"], hparams["n_head_kv"])
        tensors.append((gguf_name + ".lora_a", np.ascontiguousarray(a, dtype=np.float32)))
        tensors.append((gguf_name + ".lora_b", np.ascontiguousarray(b, dtype=np.float32)))

    if not tensors:
        raise LoraExportError(f"adapter {name!r} has no LoRA layers to export")

    out_path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(out_path), arch)
    try:
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
        if hparams["name"]:
            writer.add_name(f"{hparams['name']} LoRA")
        writer.add_file_type(gguf.LlamaFileType.ALL_F32)
        for tensor_name, data in tensors:
            writer.add_tensor(tensor_name, data)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    return out_path


# --------------------------------------------------------------------------- checkpoints


GGUF_TO_HF = {gguf_name: hf_name for hf_name, gguf_name in HF_TO_GGUF.items()}

_ADAPTER_TENSOR = re.compile(
    r"^blk\.(?P<layer>\d+)\.(?P<kind>" + "|".join(GGUF_TO_HF) + r")\.weight\.lora_(?P<ab>[ab])$"
)


def _tensor_array(tensor: Any) -> np.ndarray:
    """A GGUF tensor's data as float32 in numpy order, dequantizing when needed."""
    import gguf

    shape = tuple(int(d) for d in reversed(list(tensor.shape)))
    if tensor.tensor_type in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
        data = np.asarray(tensor.data, dtype=np.float32)
    else:
        try:
            data = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
        except (NotImplementedError, ValueError, KeyError) as error:
            raise LoraExportError(
                f"LoRA tensor {tensor.name} has unsupported type {tensor.tensor_type!r} ({error})"
            ) from error
    return np.array(data, dtype=np.float32).reshape(shape)  # a writable copy of the mmap


def merge_lora_gguf(model: Any, lora_path: Path, base_gguf_path: Path) -> None:
    """Merge a llama.cpp GGUF LoRA adapter into a transformers LLM, in place.

    `model` is the transformers model loaded from `base_gguf_path` (e.g. `load_training_llm`);
    each adapted weight W becomes W + (alpha / r) B A, which is what llama.cpp computes with the
    adapter attached at scale 1 (up to float rounding). The rows of Q's and K's `lora_b` are
    un-permuted back to Hugging Face's layout (the inverse of `export_lora_gguf`). Everything is
    checked before any weight changes: unknown tensor names, unpaired or mis-shaped tensors and
    an adapter for another architecture raise LoraExportError.
    """
    import gguf

    lora_path = Path(lora_path)
    base_gguf_path = Path(base_gguf_path)
    arch, hparams, _ = _read_supported_base(base_gguf_path, "merge")

    try:
        reader = gguf.GGUFReader(str(lora_path))
    except (OSError, ValueError) as error:
        raise LoraExportError(f"{lora_path}: not a readable GGUF file ({error})") from error
    general_type = _field(reader, "general.type")
    adapter_type = _field(reader, gguf.Keys.Adapter.TYPE)
    if general_type != "adapter" or adapter_type != "lora":
        raise LoraExportError(
            f"{lora_path}: not a GGUF LoRA adapter (general.type={general_type!r}, "
            f"adapter.type={adapter_type!r})"
        )
    lora_arch = _field(reader, "general.architecture")
    if lora_arch != arch:
        raise LoraExportError(
            f"{lora_path}: adapter is for {lora_arch!r}, {base_gguf_path} is {arch!r}"
        )
    alpha_field = _field(reader, gguf.Keys.Adapter.LORA_ALPHA)
    alpha = float(alpha_field) if alpha_field is not None else 0.0

    pairs: dict[str, dict[str, np.ndarray]] = {}
    for tensor in reader.tensors:
        match = _ADAPTER_TENSOR.match(tensor.name)
        if match is None:
            raise LoraExportError(
                f"{lora_path}: cannot merge tensor {tensor.name}; supported are "
                f"blk.N.{{{','.join(GGUF_TO_HF)}}}.weight.lora_{{a,b}}"
            )
        base_name = tensor.name[: -len(".lora_a")]
        pairs.setdefault(base_name, {})[match.group("ab")] = _tensor_array(tensor)
    if not pairs:
        raise LoraExportError(f"{lora_path}: adapter has no LoRA tensors")

    try:
        layers = model.model.layers
    except AttributeError as error:
        raise LoraExportError(
            f"cannot merge {lora_path}: the model has no model.layers ({type(model).__name__})"
        ) from error

    updates: list[tuple[torch.Tensor, torch.Tensor]] = []
    for base_name, pair in sorted(pairs.items()):
        if set(pair) != {"a", "b"}:
            missing = ({"a", "b"} - set(pair)).pop()
            raise LoraExportError(f"{lora_path}: {base_name} has no lora_{missing}")
        a, b = pair["a"], pair["b"]
        match = _ADAPTER_TENSOR.match(base_name + ".lora_a")
        assert match is not None
        layer, kind = int(match.group("layer")), match.group("kind")
        proj = GGUF_TO_HF[kind]
        if layer >= len(layers):
            raise LoraExportError(
                f"{lora_path}: {base_name} targets layer {layer}, the model has {len(layers)}"
            )
        parent = layers[layer].self_attn if kind.startswith("attn_") else layers[layer].mlp
        module = getattr(parent, proj, None)
        module = getattr(module, "base_layer", module)  # a peft-wrapped Linear
        weight = getattr(module, "weight", None)
        if not isinstance(weight, torch.Tensor) or weight.ndim != 2:
            raise LoraExportError(f"the model has no weight for {base_name} (layer {layer} {proj})")
        if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[1]:
            raise LoraExportError(
                f"{lora_path}: {base_name} lora_a {a.shape} and lora_b {b.shape} are not a pair"
            )
        if tuple(weight.shape) != (b.shape[0], a.shape[1]):
            raise LoraExportError(
                f"{lora_path}: {base_name} maps {a.shape[1]} -> {b.shape[0]} but the model's "
                f"layers.{layer}.{proj} is {weight.shape[1]} -> {weight.shape[0]}"
            )
        if kind == "attn_q":
            b = unpermute_rows(b, hparams["n_head"], hparams["n_head"])
        elif kind == "attn_k":
            b = unpermute_rows(b, hparams["n_head"], hparams["n_head_kv"])
        rank = a.shape[0]
        scale = alpha / rank if alpha else 1.0  # llama.cpp's llama_adapter_lora_weight::get_scale
        delta = torch.from_numpy(np.ascontiguousarray(b)) @ torch.from_numpy(a)
        updates.append((weight, delta * scale))

    with torch.no_grad():
        for weight, delta in updates:
            weight.add_(delta.to(device=weight.device, dtype=weight.dtype))
