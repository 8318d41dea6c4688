"""A GGUF model's tokenizer and chat template, through llama.cpp: what serving and
training both tokenize with."""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from pathlib import Path

import llama_cpp

from seqchat.errors import SeqchatError


class LlmRuntimeError(SeqchatError):
    """llama.cpp refused to load or decode."""


def silence_llama_logs() -> None:
    @llama_cpp.llama_log_callback
    def _discard(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        return None

    llama_cpp.llama_log_set(_discard, ctypes.c_void_p(0))
    silence_llama_logs.keepalive = _discard  # type: ignore[attr-defined]


class GgufVocabulary:
    """The tokenizer and chat template of a GGUF model.

    Training reads the GGUF through this too (loaded vocabulary-only), so training and
    serving tokenize with the very same code. `path`, the GGUF file, names it in errors."""

    def __init__(
        self, model: ctypes.c_void_p, owns_model: bool = False, path: Path | None = None
    ) -> None:
        self._model = model
        self.path = path
        self._vocab = llama_cpp.llama_model_get_vocab(model)
        self._owns_model = owns_model
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self._vocab))

    @classmethod
    def load(cls, model_path: str | Path) -> GgufVocabulary:
        silence_llama_logs()
        params = llama_cpp.llama_model_default_params()
        params.vocab_only = True
        model = llama_cpp.llama_model_load_from_file(str(model_path).encode(), params)
        if not model:
            raise LlmRuntimeError(f"{model_path}: llama.cpp could not read this GGUF file")
        return cls(model, owns_model=True, path=Path(model_path))

    def close(self) -> None:
        if self._owns_model and self._model:
            llama_cpp.llama_model_free(self._model)
        self._model = None

    @property
    def chat_template(self) -> str | None:
        template = llama_cpp.llama_model_chat_template(self._model, None)
        if not template:
            return None
        try:
            return template.decode()
        except UnicodeDecodeError as error:
            where = f"{self.path}: " if self.path else ""
            raise LlmRuntimeError(
                f"{where}the chat template (tokenizer.chat_template) is not UTF-8"
            ) from error

    @property
    def add_bos(self) -> bool:
        return bool(llama_cpp.llama_vocab_get_add_bos(self._vocab))

    @property
    def eos_id(self) -> int:
        return int(llama_cpp.llama_vocab_eos(self._vocab))

    def metadata(self, key: str) -> str | None:
        buffer = ctypes.create_string_buffer(4096)
        n = llama_cpp.llama_model_meta_val_str(self._model, key.encode(), buffer, len(buffer))
        return buffer.value.decode() if n >= 0 else None

    def tokenize(self, text: str, add_bos: bool) -> list[int]:
        """Token ids of `text`, parsing special tokens such as <|im_start|>."""
        data = text.encode()
        capacity = len(data) + 8
        tokens = (llama_cpp.llama_token * capacity)()
        n = llama_cpp.llama_tokenize(self._vocab, data, len(data), tokens, capacity, add_bos, True)
        if n < 0:
            capacity = -n
            tokens = (llama_cpp.llama_token * capacity)()
            n = llama_cpp.llama_tokenize(
                self._vocab, data, len(data), tokens, capacity, add_bos, True
            )
        return list(tokens[:n])

    def detokenize(self, token_ids: Sequence[int]) -> str:
        buffer = ctypes.create_string_buffer(256)
        pieces = bytearray()
        for token in token_ids:
            n = llama_cpp.llama_token_to_piece(self._vocab, token, buffer, len(buffer), 0, False)
            pieces += buffer.raw[: max(n, 0)]
        return pieces.decode("utf-8", errors="replace")

    def is_end_of_generation(self, token: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_eog(self._vocab, token))
