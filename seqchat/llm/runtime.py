"""The GGUF runtime: a quantized LLM in llama.cpp (through llama-cpp-python's C API) that
takes soft tokens.

A llama.cpp batch holds token ids or embeddings, never both, so one prompt is decoded in
three steps: the prefix tokens, the soft embeddings, the suffix tokens; then tokens are
generated. Several prompts share one context, each in its own sequence id (a "slot"): the
prefix, identical for every prompt, is decoded once into a reserved sequence and copied
into each slot, and one decode call per step advances every active slot. A slot is refilled
as soon as its prompt finishes (continuous batching).
"""

from __future__ import annotations

import ctypes
import heapq
import math
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import llama_cpp
import numpy as np

from seqchat.llm.vocabulary import GgufVocabulary, LlmRuntimeError, silence_llama_logs

_PREFIX_SEQ = 0


@dataclass(frozen=True)
class DecodingSettings:
    """How tokens are chosen. temperature 0 is greedy; `no_repeat_ngram` n > 0 never
    generates an n-gram of tokens twice in one answer (a small model otherwise loops:
    "a ribosomal protein that ...; a ribosomal protein that ..."); `ignore_eos`
    (benchmarks) always generates `max_new_tokens`."""

    max_new_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    no_repeat_ngram: int = 0
    ignore_eos: bool = False


@dataclass(frozen=True)
class SoftPrompt:
    """One prompt: `suffix_ids` follow the soft embeddings; `key` names it for the caller
    and seeds its sampling, so that a sampled answer does not depend on batch composition."""

    key: str
    embeddings: np.ndarray
    suffix_ids: tuple[int, ...]


@dataclass(frozen=True)
class Generation:
    key: str
    text: str
    token_ids: tuple[int, ...]
    mean_logprob: float
    finish_reason: str


@dataclass
class _Slot:
    seq_id: int
    prompt: SoftPrompt
    n_past: int
    rng: np.random.Generator
    next_logits: np.ndarray
    generated: list[int]
    logprobs: list[float]


def repeated_ngram_ends(generated: Sequence[int], n: int) -> list[int]:
    """The tokens that would complete an n-gram already in `generated` (none when n < 1)."""
    if n < 1 or len(generated) < n - 1:
        return []
    if n == 1:
        return sorted(set(generated))
    tail = tuple(generated[len(generated) - n + 1:])
    return sorted({
        generated[i + n - 1]
        for i in range(len(generated) - n + 1)
        if tuple(generated[i:i + n - 1]) == tail
    })


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max()
    return shifted - math.log(float(np.exp(shifted).sum()))


class GgufRuntime:
    """A GGUF model in one llama.cpp context with `n_parallel` generation slots.

    `n_ctx_per_slot` bounds prompt + answer for one sequence. The prefix lives in a
    reserved sequence, so the context holds `n_parallel + 1` sequences.
    """

    def __init__(
        self,
        model_path: str | Path,
        *,
        n_parallel: int = 8,
        n_ctx_per_slot: int = 1024,
        n_threads: int | None = None,
        lora_path: str | Path | None = None,
        lora_scale: float = 1.0,
        n_gpu_layers: int = 0,
    ) -> None:
        silence_llama_logs()
        llama_cpp.llama_backend_init()
        self.model_path = Path(model_path)
        self.n_parallel = n_parallel
        self.n_ctx_per_slot = n_ctx_per_slot
        model_params = llama_cpp.llama_model_default_params()
        model_params.n_gpu_layers = n_gpu_layers
        self._model = llama_cpp.llama_model_load_from_file(
            str(self.model_path).encode(), model_params
        )
        if not self._model:
            raise LlmRuntimeError(f"{self.model_path}: llama.cpp could not load this GGUF file")
        self.vocabulary = GgufVocabulary(self._model, path=self.model_path)
        self.n_embd = int(llama_cpp.llama_model_n_embd(self._model))
        self.n_vocab = self.vocabulary.n_vocab
        self.n_batch = 512
        ctx_params = llama_cpp.llama_context_default_params()
        ctx_params.n_ctx = n_ctx_per_slot * (n_parallel + 1)
        ctx_params.n_batch = self.n_batch
        ctx_params.n_ubatch = self.n_batch
        ctx_params.n_seq_max = n_parallel + 1
        # Output must not depend on --parallel, so a sequence's arithmetic must not depend
        # on its neighbours. Each sequence gets its own KV stream (kv_unified off): in a
        # shared cache its cells sit wherever they fall, and the attention sums change in
        # the last bit. An F16 cache and flash attention also round differently for a
        # batch than for one token; they stay off (together worth about 7% here).
        ctx_params.kv_unified = False
        ctx_params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        ctx_params.type_k = llama_cpp.GGML_TYPE_F32
        ctx_params.type_v = llama_cpp.GGML_TYPE_F32
        ctx_params.no_perf = True
        threads = n_threads or 1
        ctx_params.n_threads = threads
        ctx_params.n_threads_batch = threads
        self._ctx = llama_cpp.llama_init_from_model(self._model, ctx_params)
        if not self._ctx:
            llama_cpp.llama_model_free(self._model)
            raise LlmRuntimeError(f"{self.model_path}: llama.cpp could not create a context")
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        self._adapter = None
        if lora_path is not None:
            self._attach_lora(Path(lora_path), lora_scale)
        self._prefix: tuple[int, ...] | None = None

    def close(self) -> None:
        if self._ctx:
            llama_cpp.llama_free(self._ctx)
            self._ctx = None
        if self._adapter:
            llama_cpp.llama_adapter_lora_free(self._adapter)
            self._adapter = None
        if self._model:
            llama_cpp.llama_model_free(self._model)
            self._model = None

    def __enter__(self) -> GgufRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _attach_lora(self, path: Path, scale: float) -> None:
        adapter = llama_cpp.llama_adapter_lora_init(self._model, str(path).encode())
        if not adapter:
            raise LlmRuntimeError(f"{path}: llama.cpp could not load this LoRA adapter")
        self._adapter = adapter
        adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(adapter)
        scales = (ctypes.c_float * 1)(scale)
        status = llama_cpp.llama_set_adapters_lora(self._ctx, adapters, 1, scales)
        if status != 0:
            raise LlmRuntimeError(f"{path}: llama.cpp could not apply this LoRA adapter")

    # --- decoding ----------------------------------------------------------------------------

    def _decode_tokens(self, entries: Sequence[tuple[int, int, int, bool]]) -> None:
        """Decode (token, position, seq_id, wants_logits) entries, in chunks of n_batch."""
        for start in range(0, len(entries), self.n_batch):
            chunk = entries[start : start + self.n_batch]
            batch = llama_cpp.llama_batch_init(len(chunk), 0, 1)
            try:
                for i, (token, pos, seq_id, wants_logits) in enumerate(chunk):
                    batch.token[i] = token
                    batch.pos[i] = pos
                    batch.n_seq_id[i] = 1
                    batch.seq_id[i][0] = seq_id
                    batch.logits[i] = wants_logits
                batch.n_tokens = len(chunk)
                self._check(llama_cpp.llama_decode(self._ctx, batch))
            finally:
                llama_cpp.llama_batch_free(batch)

    def _decode_embeddings(
        self, embeddings: np.ndarray, first_pos: int, seq_id: int, logits_last: bool
    ) -> None:
        rows = np.ascontiguousarray(embeddings, dtype=np.float32)
        if rows.ndim != 2 or rows.shape[1] != self.n_embd:
            raise LlmRuntimeError(
                f"soft tokens have shape {rows.shape}, the LLM wants (n, {self.n_embd})"
            )
        for start in range(0, rows.shape[0], self.n_batch):
            chunk = rows[start : start + self.n_batch]
            n = chunk.shape[0]
            batch = llama_cpp.llama_batch_init(n, self.n_embd, 1)
            try:
                ctypes.memmove(batch.embd, chunk.ctypes.data, chunk.nbytes)
                is_last_chunk = start + n == rows.shape[0]
                for i in range(n):
                    batch.pos[i] = first_pos + start + i
                    batch.n_seq_id[i] = 1
                    batch.seq_id[i][0] = seq_id
                    batch.logits[i] = logits_last and is_last_chunk and i == n - 1
                batch.n_tokens = n
                self._check(llama_cpp.llama_decode(self._ctx, batch))
            finally:
                llama_cpp.llama_batch_free(batch)

    def _check(self, status: int) -> None:
        if status != 0:
            raise LlmRuntimeError(
                f"llama_decode failed (status {status}): the context is too small for "
                f"this prompt; lower the soft-token cap or raise n_ctx_per_slot"
            )

    def _logits(self, index: int) -> np.ndarray:
        pointer = llama_cpp.llama_get_logits_ith(self._ctx, index)
        logits = np.ctypeslib.as_array(pointer, shape=(self.n_vocab,)).copy()
        if not np.isfinite(logits).all():  # else NaN reaches mean_logprob, and the output
            raise LlmRuntimeError(
                f"{self.model_path}: the LLM computed logits that are not finite (NaN or "
                "infinity); its weights, or the soft tokens, are corrupt"
            )
        return logits

    def _set_prefix(self, prefix_ids: tuple[int, ...]) -> None:
        """Decode the shared prefix once into the reserved sequence."""
        if self._prefix == prefix_ids:
            return
        llama_cpp.llama_memory_clear(self._memory, True)
        entries = [(t, pos, _PREFIX_SEQ, False) for pos, t in enumerate(prefix_ids)]
        self._decode_tokens(entries)
        self._prefix = prefix_ids

    def _start_slot(self, seq_id: int, prompt: SoftPrompt, settings: DecodingSettings) -> _Slot:
        """Copy the prefix into the slot, then decode its soft tokens and suffix."""
        assert self._prefix is not None
        n_prefix = len(self._prefix)
        n_prompt = n_prefix + len(prompt.embeddings) + len(prompt.suffix_ids)
        if n_prompt + settings.max_new_tokens > self.n_ctx_per_slot:
            raise LlmRuntimeError(
                f"{prompt.key}: prompt of {n_prompt} tokens plus {settings.max_new_tokens} new "
                f"tokens exceeds the {self.n_ctx_per_slot}-token context of a slot"
            )
        llama_cpp.llama_memory_seq_rm(self._memory, seq_id, -1, -1)
        llama_cpp.llama_memory_seq_cp(self._memory, _PREFIX_SEQ, seq_id, -1, -1)
        suffix = prompt.suffix_ids
        self._decode_embeddings(prompt.embeddings, n_prefix, seq_id, logits_last=not suffix)
        n_past = n_prefix + len(prompt.embeddings)
        if suffix:
            last = len(suffix) - 1
            self._decode_tokens(
                [(t, n_past + i, seq_id, i == last) for i, t in enumerate(suffix)]
            )
            n_past += len(suffix)
        return _Slot(
            seq_id=seq_id,
            prompt=prompt,
            n_past=n_past,
            rng=np.random.default_rng([settings.seed, zlib.crc32(prompt.key.encode())]),
            next_logits=self._logits(-1),
            generated=[],
            logprobs=[],
        )

    def _choose(self, slot: _Slot, settings: DecodingSettings) -> int:
        """The next token; its log-probability under the model's own distribution (before
        any n-gram ban) is what `mean_logprob` averages."""
        logits = slot.next_logits.astype(np.float64)
        logprobs = log_softmax(logits)
        banned = repeated_ngram_ends(slot.generated, settings.no_repeat_ngram)
        if banned:
            logits[banned] = -np.inf
        if settings.temperature <= 0:
            token = int(np.argmax(logits))
        else:
            probs = np.exp(log_softmax(logits / settings.temperature))
            if settings.top_p < 1.0:
                order = np.argsort(-probs)
                outside_nucleus = np.cumsum(probs[order]) - probs[order] >= settings.top_p
                probs[order[outside_nucleus]] = 0.0
                probs /= probs.sum()
            token = int(slot.rng.choice(len(probs), p=probs))
        slot.logprobs.append(float(logprobs[token]))
        return token

    def _finish(self, slot: _Slot, reason: str) -> Generation:
        llama_cpp.llama_memory_seq_rm(self._memory, slot.seq_id, -1, -1)
        mean = float(np.mean(slot.logprobs)) if slot.logprobs else 0.0
        return Generation(
            key=slot.prompt.key,
            text=self.vocabulary.detokenize(slot.generated).strip(),
            token_ids=tuple(slot.generated),
            mean_logprob=mean,
            finish_reason=reason,
        )

    def generate(
        self,
        prefix_ids: Sequence[int],
        prompts: Iterable[SoftPrompt],
        settings: DecodingSettings = DecodingSettings(),
    ) -> Iterator[Generation]:
        """Answer every prompt after the shared `prefix_ids`; yields in order of completion.

        Prompts are pulled from the iterable only when a slot is free, so a caller can
        stream millions of them."""
        self._set_prefix(tuple(prefix_ids))
        queue = iter(prompts)
        free = list(range(1, self.n_parallel + 1))  # a heap: the lowest free slot first
        active: list[_Slot] = []
        exhausted = False
        while True:
            while free and not exhausted:
                prompt = next(queue, None)
                if prompt is None:
                    exhausted = True
                else:
                    active.append(self._start_slot(heapq.heappop(free), prompt, settings))
            if not active:
                return
            still_running = []
            for slot in active:
                token = self._choose(slot, settings)
                if not settings.ignore_eos and self.vocabulary.is_end_of_generation(token):
                    heapq.heappush(free, slot.seq_id)
                    yield self._finish(slot, "stop")
                    continue
                slot.generated.append(token)
                if len(slot.generated) >= settings.max_new_tokens:
                    heapq.heappush(free, slot.seq_id)
                    yield self._finish(slot, "length")
                    continue
                still_running.append(slot)
            active = still_running
            if active:
                self._step(active)

    def _step(self, slots: list[_Slot]) -> None:
        """One decode call that feeds every running slot its newest token, in slot order.

        With one KV stream per sequence, llama.cpp puts only a run of consecutive sequence
        ids into one ubatch, so a step in any other order (or with holes) is computed as
        several smaller ones. Ascending order, refilling the lowest free slot first, and
        padding (see `_step_padding`) keep a step in one ubatch: 20% faster when answers
        end at different lengths."""
        slots = sorted(slots, key=lambda slot: slot.seq_id)
        padding = self._step_padding(slots)
        entries = [(slot.generated[-1], slot.n_past, slot.seq_id, True) for slot in slots]
        entries = sorted(padding + entries, key=lambda entry: entry[2])
        self._decode_tokens(entries)
        for _token, pos, seq_id, _wants_logits in padding:
            llama_cpp.llama_memory_seq_rm(self._memory, seq_id, pos, -1)
        rows = {entry[2]: row for row, entry in enumerate(entries)}
        for slot in slots:
            slot.n_past += 1
            slot.next_logits = self._logits(rows[slot.seq_id])

    def _step_padding(self, slots: list[_Slot]) -> list[tuple[int, int, int, bool]]:
        """Throw-away tokens that make a step one ubatch of at least two tokens.

        ggml multiplies a one-token batch with its vector kernel and a larger one with its
        matrix kernel, which sum in a different order; a step with holes in its slot ids
        is split into ubatches, some of them of one token. A sequence that decodes alone
        (with --parallel 1, or the last one running) would then differ in the last bit
        from the same sequence decoded beside others. The padding fills the free slots
        between the running ones (free slots are empty), and a step of one gets a token in
        the sequence just below (the prefix, or a free slot). Padding wants logits too,
        because llama.cpp computes the last layer only for the rows that do. It is removed
        after the step."""
        assert self._prefix is not None
        running = {slot.seq_id for slot in slots}
        token = slots[0].generated[-1]
        holes = set(range(min(running), max(running) + 1)) - running
        if len(running) == 1:
            holes.add(min(running) - 1)
        return [
            (token, len(self._prefix) if seq_id == _PREFIX_SEQ else 0, seq_id, True)
            for seq_id in sorted(holes)
        ]

    # --- teacher forcing (parity checks) -----------------------------------------------------

    def next_token_logits(
        self, prefix_ids: Sequence[int], embeddings: np.ndarray, suffix_ids: Sequence[int]
    ) -> np.ndarray:
        """Logits after every position of suffix_ids (row i predicts suffix_ids[i+1]), and
        the row before suffix_ids[0] first: shape (len(suffix_ids) + 1, n_vocab)."""
        llama_cpp.llama_memory_clear(self._memory, True)
        self._prefix = None
        seq = 1
        last_prefix = len(prefix_ids) - 1 if not len(embeddings) else -1
        entries = [(t, pos, seq, pos == last_prefix) for pos, t in enumerate(prefix_ids)]
        rows = []
        if entries:
            self._decode_tokens(entries)
            if last_prefix >= 0:
                rows.append(self._logits(-1))
        n_past = len(prefix_ids)
        if len(embeddings):
            self._decode_embeddings(embeddings, n_past, seq, logits_last=True)
            rows.append(self._logits(-1))
            n_past += len(embeddings)
        for token in suffix_ids:
            self._decode_tokens([(token, n_past, seq, True)])
            rows.append(self._logits(-1))
            n_past += 1
        llama_cpp.llama_memory_clear(self._memory, True)
        return np.stack(rows)
