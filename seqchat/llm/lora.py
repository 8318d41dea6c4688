"""LoRA checkpoints of training: a peft LoRA's weights in safetensors, with its config in the
file's metadata, checked against the model when loaded back. (Serving reads the GGUF adapter
that `seqchat.llm.lora_gguf` exports.)"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from seqchat.errors import SeqchatError


class LoraExportError(SeqchatError):
    """The LoRA cannot be exported for (or loaded into) the given model."""


_METADATA_KEY = "seqchat.lora"


def adapter_name_of(peft_model: Any, adapter_name: str | None) -> str:
    if adapter_name is not None:
        name = adapter_name
    else:
        active = getattr(peft_model, "active_adapter", None)
        if isinstance(active, (list, tuple)):
            if len(active) != 1:
                raise LoraExportError(
                    f"several adapters are active ({', '.join(active)}); name the one to export"
                )
            active = active[0]
        name = active if isinstance(active, str) else "default"
    configs = getattr(peft_model, "peft_config", None)
    if not isinstance(configs, Mapping) or name not in configs:
        raise LoraExportError(f"the model has no peft LoRA adapter named {name!r}")
    return name


def lora_config_of(peft_model: Any, adapter_name: str) -> Any:
    config = peft_model.peft_config[adapter_name]
    peft_type = str(getattr(config, "peft_type", ""))
    if "LORA" not in peft_type.upper():
        raise LoraExportError(f"adapter {adapter_name!r} is {peft_type or 'not peft'}, not a LoRA")
    return config


def lora_state_dict(peft_model: Any, *, adapter_name: str | None = None) -> dict[str, torch.Tensor]:
    """The adapter's LoRA weights (peft's key names, adapter name stripped), on CPU."""
    from peft import get_peft_model_state_dict

    name = adapter_name_of(peft_model, adapter_name)
    lora_config_of(peft_model, name)
    state = get_peft_model_state_dict(peft_model, adapter_name=name, save_embedding_layers=False)
    return {key: tensor.detach().cpu().contiguous() for key, tensor in state.items()}


def load_lora_state_dict(
    peft_model: Any, state: Mapping[str, torch.Tensor], *, adapter_name: str | None = None
) -> None:
    """Load weights from `lora_state_dict` into the adapter; names and shapes must match exactly."""
    from peft import set_peft_model_state_dict

    name = adapter_name_of(peft_model, adapter_name)
    expected = lora_state_dict(peft_model, adapter_name=name)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        detail = [
            f"{kind} {keys[0]}" + (f" and {len(keys) - 1} more" if len(keys) > 1 else "")
            for kind, keys in (("missing", missing), ("unexpected", unexpected))
            if keys
        ]
        raise LoraExportError(f"LoRA weights do not match the model: {'; '.join(detail)}")
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise LoraExportError(
                f"LoRA weight {key} has shape {tuple(state[key].shape)}, "
                f"the model expects {tuple(tensor.shape)}"
            )
    set_peft_model_state_dict(peft_model, dict(state), adapter_name=name)


def _config_summary(config: Any) -> dict[str, Any]:
    targets = config.target_modules
    if isinstance(targets, (set, frozenset, list, tuple)):
        targets = sorted(targets)
    return {
        "r": int(config.r),
        "lora_alpha": float(config.lora_alpha),
        "target_modules": targets,
        "use_rslora": bool(getattr(config, "use_rslora", False)),
    }


def save_lora(peft_model: Any, path: Path, *, adapter_name: str | None = None) -> Path:
    """Save the adapter's weights and its r / alpha / targets (metadata) to safetensors."""
    path = Path(path)
    name = adapter_name_of(peft_model, adapter_name)
    config = lora_config_of(peft_model, name)
    state = lora_state_dict(peft_model, adapter_name=name)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(
        state,
        str(path),
        metadata={"format": "pt", _METADATA_KEY: json.dumps(_config_summary(config))},
    )
    return path


def read_lora_config(path: Path) -> dict[str, Any]:
    """The r / lora_alpha / target_modules / use_rslora saved by `save_lora`."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (OSError, ValueError, RuntimeError) as error:
        raise LoraExportError(f"{path}: not a readable safetensors file ({error})") from error
    if _METADATA_KEY not in metadata:
        raise LoraExportError(
            f"{path}: not a seqchat LoRA checkpoint (no {_METADATA_KEY} metadata)"
        )
    return json.loads(metadata[_METADATA_KEY])


def load_lora(peft_model: Any, path: Path, *, adapter_name: str | None = None) -> None:
    """Load a `save_lora` checkpoint into the model's adapter (r and alpha must agree)."""
    from safetensors.torch import load_file

    path = Path(path)
    saved = read_lora_config(path)
    name = adapter_name_of(peft_model, adapter_name)
    current = _config_summary(lora_config_of(peft_model, name))
    for key in ("r", "lora_alpha", "use_rslora"):
        if saved.get(key) != current[key]:
            raise LoraExportError(
                f"{path}: LoRA has {key}={saved.get(key)}, the model's adapter has {current[key]}"
            )
    try:
        state = load_file(str(path))
    except (OSError, ValueError, RuntimeError) as error:
        raise LoraExportError(f"{path}: not a readable safetensors file ({error})") from error
    load_lora_state_dict(peft_model, state, adapter_name=name)


# --------------------------------------------------------------------------- GGUF merge
