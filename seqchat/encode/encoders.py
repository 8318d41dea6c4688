"""Nucleotide language models that turn sequences into per-position hidden states.

Two kinds: `multimolecule` (RNA-FM, DNABERT-2 and the other multimolecule models; importing
the package registers them with the transformers Auto classes) and `transformers` (any
encoder `AutoModel` can load). Sequences longer than the encoder's window are split into
consecutive windows whose states are concatenated, so nothing is silently truncated.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors import SafetensorError

from seqchat.encode.specs import ENCODER_KINDS, EncoderSpec
from seqchat.encode.windows import states_by_window
from seqchat.errors import SeqchatError
from seqchat.home import keep_matplotlib_cache_home

_SPECIAL_POSITIONS_RESERVE = 4


class EncoderError(SeqchatError):
    """The encoder could not be loaded or run."""


def resolve_device(device: str) -> torch.device:
    """`auto` picks CUDA when present, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise EncoderError(f"--device {device}: no CUDA device is available on this machine")
    return torch.device(device)


class NucleotideEncoder(torch.nn.Module):
    """An encoder and its tokenizer; `states` gives one (length, hidden) tensor a sequence."""

    def __init__(self, model: torch.nn.Module, tokenizer: object, spec: EncoderSpec) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.spec = spec
        max_positions = getattr(model.config, "max_position_embeddings", 512)
        self.window = spec.window or max_positions - _SPECIAL_POSITIONS_RESERVE

    @classmethod
    def load(cls, spec: EncoderSpec, device: torch.device | str = "cpu") -> NucleotideEncoder:
        """`from_pretrained` of a hub id or a local directory."""
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()

        if spec.kind == "multimolecule":
            keep_matplotlib_cache_home()
            import multimolecule  # noqa: F401  (registers the models with the Auto classes)
        elif spec.kind != "transformers":
            raise EncoderError(
                f"encoder kind {spec.kind!r} is unknown; use one of {', '.join(ENCODER_KINDS)}"
            )
        try:
            tokenizer = AutoTokenizer.from_pretrained(
                spec.source, trust_remote_code=spec.trust_remote_code
            )
            model = AutoModel.from_pretrained(
                spec.source, trust_remote_code=spec.trust_remote_code, use_safetensors=True
            )
        except (OSError, ValueError) as error:
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise EncoderError(f"encoder {spec.source}: cannot load ({first_line})") from error
        except SafetensorError as error:
            weights = sorted(Path(spec.source).glob("*.safetensors")) or [spec.source]
            raise EncoderError(
                f"{', '.join(map(str, weights))}: not a readable safetensors file ({error})"
            ) from error
        model.eval()
        return cls(model, tokenizer, spec).to(resolve_device(str(device)))

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def save_pretrained(self, directory: Path) -> None:
        self.model.save_pretrained(directory, safe_serialization=True)
        self.tokenizer.save_pretrained(directory)

    def _encode_windows(self, windows: Sequence[str]) -> list[torch.Tensor]:
        """Hidden states of each window, special and padding positions removed."""
        batch = self.tokenizer(
            list(windows),
            return_tensors="pt",
            padding=True,
            return_special_tokens_mask=True,
        )
        keep = batch.pop("special_tokens_mask").eq(0) & batch["attention_mask"].bool()
        batch = {name: tensor.to(self.device) for name, tensor in batch.items()}
        hidden = self.model(**batch).last_hidden_state
        return [hidden[i][keep[i].to(self.device)] for i in range(hidden.shape[0])]

    def states(self, sequences: Sequence[str]) -> list[torch.Tensor]:
        """One (positions, hidden) tensor per sequence, in the order given (see
        `states_by_window`). Gradients flow when the caller has them enabled (training)."""
        return states_by_window(
            sequences,
            alphabet=self.spec.alphabet,
            window=self.window,
            batch_size=self.spec.batch_size,
            encode_batch=self._encode_windows,
            concatenate=lambda parts: torch.cat(parts, dim=0),
        )
