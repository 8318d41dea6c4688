"""The prompt layout, shared by training and serving.

The LLM's own chat template is rendered with a sentinel where the sequence goes; the text
before it becomes the prefix tokens, the text after it the suffix tokens, and the soft
tokens sit between them. Training builds `inputs_embeds` from the same layout (and the same
tokenizer: llama.cpp's, reading the GGUF's vocabulary), so the model learns exactly the
positions it is served at.

A user turn may hold `{evidence}` after `{sequence}`: text that differs per sequence (the
closest reference hits). It sits in the suffix, so the prefix is still shared by every
sequence and decoded once; `PromptLayout.suffix_for` renders one sequence's suffix, the
same call in training and serving.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from seqchat.errors import SeqchatError

SEQUENCE_FIELD = "{sequence}"
QUESTION_FIELD = "{question}"
EVIDENCE_FIELD = "{evidence}"
_SENTINEL = "\u0000SEQCHAT-SEQUENCE\u0000"
_EVIDENCE_SENTINEL = "\u0000SEQCHAT-EVIDENCE\u0000"
DEFAULT_EVIDENCE_TOKENS = 160

Tokenize = Callable[[str, bool], list[int]]
"""tokenize(text, add_bos) -> token ids, parsing special tokens."""


class PromptError(SeqchatError):
    """The bundle's prompt settings cannot be rendered."""


@dataclass(frozen=True)
class PromptSpec:
    """`user` is the user turn, with `{sequence}` where the soft tokens go and optionally
    `{question}` and, after the sequence, `{evidence}`; `question` is the default question;
    `evidence_tokens` bounds the evidence text of one sequence."""

    user: str = SEQUENCE_FIELD
    question: str = ""
    system: str | None = None
    evidence_tokens: int = DEFAULT_EVIDENCE_TOKENS

    @property
    def grounded(self) -> bool:
        """Whether the prompt shows each sequence's evidence."""
        return EVIDENCE_FIELD in self.user


@dataclass(frozen=True)
class PromptLayout:
    prefix_ids: tuple[int, ...]
    suffix_ids: tuple[int, ...]
    """The suffix of a prompt without evidence (with the empty string for `{evidence}`)."""
    evidence_texts: tuple[str, str] | None = None
    """The rendered text between the sequence and the evidence, and after the evidence."""

    def suffix_for(self, evidence: str, tokenize: Tokenize) -> tuple[int, ...]:
        """One sequence's suffix tokens, with its evidence text in place."""
        if self.evidence_texts is None:
            return self.suffix_ids
        between, after = self.evidence_texts
        return tuple(tokenize(between + evidence + after, False))


def render_chat(
    chat_template: str, messages: list[dict[str, str]], source: object = None
) -> str:
    """The LLM's chat template rendered, bounded (`seqchat.llm.chat_template`, imported on
    first use: reading a bundle imports no Jinja)."""
    from seqchat.llm.chat_template import render_chat as render_bounded

    return render_bounded(chat_template, messages, source)


def check_question(spec: PromptSpec, question: str | None) -> None:
    """Refuse a question the prompt cannot carry, or one holding a prompt field: it would
    change nothing, or move the soft tokens or the evidence. None, or the bundle's own
    question, asks the default one."""
    if question is None or question == spec.question:
        return
    if QUESTION_FIELD not in spec.user:
        raise PromptError(
            f"this bundle's prompt has no {QUESTION_FIELD} field, so --question would change "
            "nothing; use a bundle trained for questions (e.g. default-instruct)"
        )
    fields = [f for f in (SEQUENCE_FIELD, QUESTION_FIELD, EVIDENCE_FIELD) if f in question]
    if fields:
        raise PromptError(f"--question may not contain {', '.join(fields)}")


def user_text(spec: PromptSpec, question: str | None) -> str:
    if SEQUENCE_FIELD not in spec.user:
        raise PromptError(f"prompt 'user' must contain {SEQUENCE_FIELD}: {spec.user!r}")
    asked = spec.question if question is None else question
    return spec.user.replace(QUESTION_FIELD, asked)


def build_layout(
    chat_template: str,
    spec: PromptSpec,
    tokenize: Tokenize,
    question: str | None = None,
    source: object = None,
) -> PromptLayout:
    """Token ids before and after the soft tokens, for one question; `source` (the GGUF)
    names the template in errors."""
    content = user_text(spec, question).replace(SEQUENCE_FIELD, _SENTINEL)
    content = content.replace(EVIDENCE_FIELD, _EVIDENCE_SENTINEL)
    messages = [{"role": "user", "content": content}]
    if spec.system:
        messages.insert(0, {"role": "system", "content": spec.system})
    rendered = render_chat(chat_template, messages, source)
    if rendered.count(_SENTINEL) != 1:
        raise PromptError("chat template must place the user message exactly once")
    before, after = rendered.split(_SENTINEL)
    if _EVIDENCE_SENTINEL in before:
        raise PromptError(f"prompt 'user' must put {EVIDENCE_FIELD} after {SEQUENCE_FIELD}")
    if after.count(_EVIDENCE_SENTINEL) > 1:
        raise PromptError(f"prompt 'user' may hold {EVIDENCE_FIELD} once")
    prefix_ids = tuple(tokenize(before, True))
    if _EVIDENCE_SENTINEL not in after:
        return PromptLayout(prefix_ids, tuple(tokenize(after, False)))
    between, tail = after.split(_EVIDENCE_SENTINEL)
    return PromptLayout(prefix_ids, tuple(tokenize(between + tail, False)), (between, tail))


def fit_evidence(lines: Sequence[str], tokenize: Tokenize, budget: int) -> str:
    """As many of `lines` (best first) as fit in `budget` tokens, one a line; the first is
    cut at a word to fit when even it is longer."""
    kept: list[str] = []
    for line in lines:
        if len(tokenize("\n".join([*kept, line]), False)) > budget:
            break
        kept.append(line)
    if kept or not lines:
        return "\n".join(kept)
    words = lines[0].split()
    while words and len(tokenize(" ".join(words), False)) > budget:
        words.pop()
    return " ".join(words)


class Vocabulary(Protocol):
    """What the layout needs of an LLM's vocabulary (seqchat.llm.runtime.GgufVocabulary)."""

    @property
    def chat_template(self) -> str | None: ...

    def tokenize(self, text: str, add_bos: bool) -> list[int]: ...


def layout_for(vocabulary: Vocabulary, spec: PromptSpec, question: str | None = None) -> PromptLayout:
    """The layout for one question with this LLM's own chat template and tokenizer."""
    template = vocabulary.chat_template
    source = getattr(vocabulary, "path", None)  # a GGUF loaded by path knows its file
    if template is None:
        where = f"{source}: " if source else ""
        raise PromptError(f"{where}the LLM's GGUF has no chat template (tokenizer.chat_template)")
    return build_layout(template, spec, vocabulary.tokenize, question, source)
