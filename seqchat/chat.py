"""Multi-turn chat about one sequence, continued in llama.cpp's KV cache.

A `Chat` owns one sequence id of a `GgufRuntime` (made with `n_parallel=1`, so the
context holds the runtime's reserved prefix sequence 0 and the chat's sequence 1).

- Turn 1 is the bundle's prompt layout (`seqchat.llm.prompt.layout_for`) for the question:
  prefix tokens, the sequence's soft tokens, suffix tokens (the rest of the user turn and
  the generation prompt), then the answer.
- Every later turn appends only its own tokens: the text the chat template puts between the
  end of the previous assistant message and the new generation prompt (`turn_text`),
  after the tokens the model generated. Nothing is decoded twice; the history is never
  re-fed.

Answers stream as text pieces; bytes are decoded incrementally (`Utf8Stream`), so a
character split over several byte tokens comes out whole. Closing the stream early (the
REPL does on Ctrl-C) keeps the partial answer in the cache and in the history: the next
turn's text starts with the template's end of the assistant message, which closes it.

    with ChatModel.load("default", threads=2) as model:
        chat = model.chat(record.sequence)
        for piece in chat.ask("What does this sequence do?"):
            print(piece, end="", flush=True)
"""

from __future__ import annotations

import codecs
import ctypes
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING

import llama_cpp
import numpy as np

from seqchat.errors import SeqchatError
from seqchat.io.sequences import SequenceRecord
from seqchat.llm.prompt import (
    EVIDENCE_FIELD,
    QUESTION_FIELD,
    SEQUENCE_FIELD,
    PromptSpec,
    layout_for,
    render_chat,
    user_text,
)
from seqchat.llm.runtime import DecodingSettings, GgufRuntime, SoftPrompt, _Slot

if TYPE_CHECKING:
    from pathlib import Path

    from seqchat.bundle import Bundle
    from seqchat.homology.evidence import Evidence
    from seqchat.homology.search import Hit
    from seqchat.loading import SoftTokens

CHAT_SEQ = 1
"""The llama.cpp sequence id a chat uses (0 is the runtime's reserved prefix sequence)."""

DEFAULT_CONTEXT = 2048
"""Tokens one conversation may hold (prompt, soft tokens and every turn)."""

_ANSWER_MARK = "\u0000SEQCHAT-ANSWER\u0000"
_SEQUENCE_SHOWN = "<sequence>"


class ChatError(SeqchatError):
    """A turn cannot be asked (empty question, full context)."""


@dataclass(frozen=True)
class Turn:
    """One question and its answer. `finish_reason` is "stop" (end of turn), "length"
    (max_new_tokens), "context" (the context is full) or "interrupted"."""

    question: str
    answer: str
    token_ids: tuple[int, ...]
    finish_reason: str
    mean_logprob: float


def chat_prompt_spec(spec: PromptSpec) -> PromptSpec:
    """The bundle's prompt with a place for the question: a stage-1 bundle's user turn is
    only `{sequence}`, and the question then follows it on a new line (the layout stage-2
    training uses, see `seqchat.train.chain`)."""
    if QUESTION_FIELD in spec.user:
        return spec
    return replace(spec, user=f"{spec.user}\n{QUESTION_FIELD}")


def turn_text(chat_template: str, messages: list[dict[str, str]], question: str) -> str:
    """The chat template's text from the end of the last assistant message in `messages`
    to the generation prompt after the new user turn `question`.

    The conversation plus the new question is rendered with a marker in place of the last
    answer; what follows the marker is the end of the assistant message, the user turn and
    the generation prompt. The answer itself is already in the cache as generated tokens,
    so it is never re-tokenized."""
    if not messages or messages[-1]["role"] != "assistant":
        raise ChatError("a follow-up turn needs a conversation that ends with an answer")
    marked = [*messages[:-1], {"role": "assistant", "content": _ANSWER_MARK}]
    rendered = render_chat(chat_template, [*marked, {"role": "user", "content": question}])
    if rendered.count(_ANSWER_MARK) != 1:
        raise ChatError("the chat template must place the assistant message exactly once")
    return rendered.split(_ANSWER_MARK, 1)[1]


class Utf8Stream:
    """Token byte pieces in, text out: bytes of a character split over several pieces are
    held back until the character is complete. Invalid bytes become U+FFFD."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def feed(self, data: bytes) -> str:
        return self._decoder.decode(data)

    def flush(self) -> str:
        return self._decoder.decode(b"", final=True)


def token_bytes(runtime: GgufRuntime, token: int) -> bytes:
    """The raw bytes of one token's piece (control tokens give none)."""
    vocab = runtime.vocabulary._vocab
    buffer = ctypes.create_string_buffer(64)
    n = llama_cpp.llama_token_to_piece(vocab, token, buffer, len(buffer), 0, False)
    if n < 0:
        buffer = ctypes.create_string_buffer(-n)
        n = llama_cpp.llama_token_to_piece(vocab, token, buffer, len(buffer), 0, False)
    return buffer.raw[: max(n, 0)]


class Chat:
    """A conversation about one sequence (its soft-token matrix `embeddings`) in sequence
    `seq_id` of `runtime`. The conversation may hold `runtime.n_ctx_per_slot` tokens.
    `evidence` is the sequence's evidence text, shown where a grounded prompt has
    `{evidence}` (`seqchat.annotate.evidence_text`, as annotate shows it)."""

    def __init__(
        self,
        runtime: GgufRuntime,
        spec: PromptSpec,
        embeddings: np.ndarray,
        *,
        decoding: DecodingSettings = DecodingSettings(),
        seq_id: int = CHAT_SEQ,
        key: str = "chat",
        evidence: str = "",
    ) -> None:
        if not 0 < seq_id <= runtime.n_parallel:
            raise ChatError(f"sequence id {seq_id} is not a slot of this runtime")
        template = runtime.vocabulary.chat_template
        if template is None:
            raise ChatError("the LLM's GGUF has no chat template (tokenizer.chat_template)")
        self.runtime = runtime
        self.spec = chat_prompt_spec(spec)
        self.embeddings = embeddings
        self.decoding = decoding
        self.seq_id = seq_id
        self.key = key
        self.evidence = evidence
        self.turns: list[Turn] = []
        self.n_past = 0
        self._template = template
        self._memory = runtime._memory
        self._rng = np.random.default_rng([decoding.seed, zlib.crc32(key.encode())])
        self._open: Iterator[str] | None = None
        self.reset()

    @property
    def n_ctx(self) -> int:
        return self.runtime.n_ctx_per_slot

    def reset(self) -> None:
        """Forget the conversation (the sequence stays)."""
        self._close_open()
        llama_cpp.llama_memory_seq_rm(self._memory, self.seq_id, -1, -1)
        self.turns = []
        self.n_past = 0
        self._rng = np.random.default_rng([self.decoding.seed, zlib.crc32(self.key.encode())])

    def close(self) -> None:
        """Free the chat's part of the cache (the runtime stays open)."""
        self.reset()

    def messages(self, show_sequence: str = _SEQUENCE_SHOWN) -> list[dict[str, str]]:
        """The conversation as chat messages, `show_sequence` where the soft tokens are."""
        messages: list[dict[str, str]] = []
        if self.spec.system:
            messages.append({"role": "system", "content": self.spec.system})
        for number, turn in enumerate(self.turns):
            if number == 0:
                content = user_text(self.spec, turn.question).replace(SEQUENCE_FIELD, show_sequence)
                content = content.replace(EVIDENCE_FIELD, self.evidence)
            else:
                content = turn.question
            messages.append({"role": "user", "content": content})
            messages.append({"role": "assistant", "content": turn.answer})
        return messages

    def ask(self, question: str) -> Iterator[str]:
        """Ask `question`; returns the answer as a stream of text pieces.

        The turn is in the history (`turns`) once the stream ends, whether it ran to its end
        or was closed early (then with the part generated so far). A stream closed before its
        prompt was decoded leaves no turn."""
        question = question.strip()
        if not question:
            raise ChatError("the question is empty")
        self._close_open()
        if not self.turns:
            vocabulary = self.runtime.vocabulary
            layout = layout_for(vocabulary, self.spec, question)
            suffix = layout.suffix_for(self.evidence, vocabulary.tokenize)
            parts: list[list[int] | np.ndarray] = [
                list(layout.prefix_ids), self.embeddings, list(suffix)
            ]
        else:
            text = turn_text(self._template, self.messages(), question)
            parts = [self.runtime.vocabulary.tokenize(text, False)]
        n_input = sum(len(part) for part in parts)
        if self.n_past + n_input >= self.n_ctx:
            raise ChatError(
                f"the conversation would exceed its {self.n_ctx}-token context "
                f"({self.n_past} used, this turn needs {n_input} more); reset it to go on"
            )
        stream = self._stream(question, parts)
        self._open = stream
        return stream

    def _close_open(self) -> None:
        if self._open is not None:
            self._open.close()
            self._open = None

    def _prefill(self, parts: list[list[int] | np.ndarray]) -> np.ndarray:
        """Decode the turn's input after the cache; the logits after its last position."""
        runtime, seq = self.runtime, self.seq_id
        non_empty = [part for part in parts if len(part)]
        for index, part in enumerate(non_empty):
            last = index == len(non_empty) - 1
            if isinstance(part, np.ndarray):
                runtime._decode_embeddings(part, self.n_past, seq, logits_last=last)
            else:
                end = len(part) - 1
                runtime._decode_tokens(
                    [(t, self.n_past + i, seq, last and i == end) for i, t in enumerate(part)]
                )
            self.n_past += len(part)
        return runtime._logits(-1)

    def _stream(self, question: str, parts: list[list[int] | np.ndarray]) -> Iterator[str]:
        runtime, seq, settings = self.runtime, self.seq_id, self.decoding
        turn_start = self.n_past
        answer_start: int | None = None
        # The cache holds exactly what `generated` records: a token is appended only once
        # it is decoded, and the cache is trimmed to that length however the stream ends.
        generated: list[int] = []
        slot = _Slot(seq, SoftPrompt(self.key, self.embeddings, ()), 0, self._rng,
                     np.zeros(0, np.float32), [], [])
        reason = "interrupted"
        text = Utf8Stream()
        leading = True
        try:
            slot.next_logits = self._prefill(parts)
            answer_start = self.n_past
            while True:
                if len(generated) >= settings.max_new_tokens:
                    reason = "length"
                    break
                if answer_start + len(generated) >= self.n_ctx:
                    reason = "context"
                    break
                token = runtime._choose(slot, settings)
                if not settings.ignore_eos and runtime.vocabulary.is_end_of_generation(token):
                    reason = "stop"
                    break
                runtime._decode_tokens([(token, answer_start + len(generated), seq, True)])
                generated.append(token)
                slot.next_logits = runtime._logits(-1)
                piece = text.feed(token_bytes(runtime, token))
                if leading:
                    piece = piece.lstrip()
                    leading = not piece
                if piece:
                    yield piece
            tail = text.flush()
            if leading:
                tail = tail.lstrip()
            if tail:
                yield tail
        finally:
            if answer_start is None:  # stopped while decoding the prompt: no turn
                self.n_past = turn_start
            else:
                self.n_past = answer_start + len(generated)
                logprobs = slot.logprobs[: len(generated) + (reason == "stop")]
                self.turns.append(
                    Turn(
                        question=question,
                        answer=runtime.vocabulary.detokenize(generated).strip(),
                        token_ids=tuple(generated),
                        finish_reason=reason,
                        mean_logprob=float(np.mean(logprobs)) if logprobs else 0.0,
                    )
                )
            llama_cpp.llama_memory_seq_rm(self._memory, seq, self.n_past, -1)
            self._open = None


@dataclass
class ChatModel:
    """A bundle's models loaded for chatting: one runtime sequence, soft tokens and
    reference hits on demand. The reference sets searched are the bundle's own (unless
    `bundle_reference` is False) and `references`, as `Annotator.load` takes them."""

    bundle: Bundle
    soft_tokenizer: SoftTokens
    runtime: GgufRuntime
    decoding: DecodingSettings
    references: tuple[str | Path, ...] = ()
    bundle_reference: bool = True
    threads: int = 1
    _soft_tokens: dict[str, np.ndarray] = field(default_factory=dict)
    _hits: dict[str, tuple[Hit, ...]] = field(default_factory=dict)

    @classmethod
    def load(
        cls,
        bundle: str | Bundle = "default",
        *,
        device: str = "auto",
        threads: int | None = None,
        context: int = DEFAULT_CONTEXT,
        decoding: DecodingSettings | None = None,
        allow_external_paths: bool = False,
        trust_remote_code: bool = False,
        references: Iterable[str | Path] = (),
        bundle_reference: bool = True,
    ) -> ChatModel:
        from seqchat.bundle import resolve_bundle
        from seqchat.loading import load_models
        from seqchat.system import available_cpus

        bundle = resolve_bundle(
            bundle, allow_external_paths=allow_external_paths, trust_remote_code=trust_remote_code
        )
        soft_tokenizer, runtime = load_models(
            bundle, device=device, threads=threads, parallel=1, n_ctx_per_slot=context
        )
        return cls(
            bundle, soft_tokenizer, runtime, decoding or bundle.decoding, tuple(references),
            bundle_reference, threads or available_cpus(),
        )

    @cached_property
    def evidence(self) -> Evidence | None:
        """The reference sets searched, loaded at first use: indexing a bundle's reference
        takes seconds the first time, which a session that never asks for hits (with an
        ungrounded bundle) does not wait for. None when there are none."""
        from seqchat.homology.evidence import Evidence
        from seqchat.loading import bundle_references

        own = bundle_references(self.bundle, self.threads) if self.bundle_reference else []
        return Evidence.load([*own, *self.references], threads=self.threads)

    def soft_tokens(self, sequence: str) -> np.ndarray:
        """The soft-token matrix of a canonical sequence (computed once per sequence)."""
        if sequence not in self._soft_tokens:
            self._soft_tokens[sequence] = self.soft_tokenizer([sequence])[0]
        return self._soft_tokens[sequence]

    def hits(self, sequence: str) -> tuple[Hit, ...] | None:
        """The reference hits of a canonical sequence, best first (searched once per
        sequence); None when no reference is searched."""
        if self.evidence is None:
            return None
        if sequence not in self._hits:
            ((_record, found),) = self.evidence.searched([SequenceRecord("chat", "", sequence, "", 0)])
            self._hits[sequence] = found
        return self._hits[sequence]

    def chat(self, sequence: str, key: str = "chat") -> Chat:
        """A new conversation about `sequence` (a previous chat's cache is taken over); a
        grounded prompt shows its hits as annotate does."""
        evidence = ""
        if self.bundle.prompt.grounded:
            from seqchat.annotate import evidence_text

            tokenize = self.runtime.vocabulary.tokenize
            evidence = evidence_text(self.hits(sequence) or (), self.bundle.prompt, tokenize)
        return Chat(
            self.runtime, self.bundle.prompt, self.soft_tokens(sequence),
            decoding=self.decoding, key=key, evidence=evidence,
        )

    def close(self) -> None:
        self.runtime.close()

    def __enter__(self) -> ChatModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
