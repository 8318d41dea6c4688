"""The prompt layout, shared by training and serving.

The LLM's own chat template is rendered with a sentinel where the sequence goes; the text
before it becomes the prefix tokens, the text after it the suffix tokens, and the soft
tokens sit between them. Training builds `inputs_embeds` from the same layout (and the same
tokenizer: llama.cpp's, reading the GGUF's vocabulary), so the model learns exactly the
positions it is served at.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from seqchat.errors import SeqchatError

SEQUENCE_FIELD = "{sequence}"
QUESTION_FIELD = "{question}"
_SENTINEL = "\u0000SEQCHAT-SEQUENCE\u0000"

Tokenize = Callable[[str, bool], list[int]]
"""tokenize(text, add_bos) -> token ids, parsing special tokens."""


class PromptError(SeqchatError):
    """The bundle's prompt settings cannot be rendered."""


@dataclass(frozen=True)
class PromptSpec:
    """`user` is the user turn, with `{sequence}` where the soft tokens go and optionally
    `{question}`; `question` is the default question."""

    user: str = SEQUENCE_FIELD
    question: str = ""
    system: str | None = None


@dataclass(frozen=True)
class PromptLayout:
    prefix_ids: tuple[int, ...]
    suffix_ids: tuple[int, ...]


def render_chat(chat_template: str, messages: list[dict[str, str]]) -> str:
    """Render a Hugging Face chat template (Jinja2, sandboxed) with a generation prompt."""
    from jinja2 import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)

    def raise_exception(message: str) -> None:
        raise PromptError(f"chat template: {message}")

    environment.globals["raise_exception"] = raise_exception
    try:
        template = environment.from_string(chat_template)
        return template.render(
            messages=messages, add_generation_prompt=True, bos_token="", eos_token=""
        )
    except TemplateError as error:
        raise PromptError(f"chat template cannot be rendered: {error}") from error


def user_text(spec: PromptSpec, question: str | None) -> str:
    if SEQUENCE_FIELD not in spec.user:
        raise PromptError(f"prompt 'user' must contain {SEQUENCE_FIELD}: {spec.user!r}")
    asked = spec.question if question is None else question
    return spec.user.replace(QUESTION_FIELD, asked)


def build_layout(
    chat_template: str, spec: PromptSpec, tokenize: Tokenize, question: str | None = None
) -> PromptLayout:
    """Token ids before and after the soft tokens, for one question."""
    content = user_text(spec, question).replace(SEQUENCE_FIELD, _SENTINEL)
    messages = [{"role": "user", "content": content}]
    if spec.system:
        messages.insert(0, {"role": "system", "content": spec.system})
    rendered = render_chat(chat_template, messages)
    if rendered.count(_SENTINEL) != 1:
        raise PromptError("chat template must place the user message exactly once")
    before, after = rendered.split(_SENTINEL)
    return PromptLayout(tuple(tokenize(before, True)), tuple(tokenize(after, False)))


class Vocabulary(Protocol):
    """What the layout needs of an LLM's vocabulary (seqchat.llm.runtime.GgufVocabulary)."""

    @property
    def chat_template(self) -> str | None: ...

    def tokenize(self, text: str, add_bos: bool) -> list[int]: ...


def layout_for(vocabulary: Vocabulary, spec: PromptSpec, question: str | None = None) -> PromptLayout:
    """The layout for one question with this LLM's own chat template and tokenizer."""
    template = vocabulary.chat_template
    if template is None:
        raise PromptError("the LLM's GGUF has no chat template (tokenizer.chat_template)")
    return build_layout(template, spec, vocabulary.tokenize, question)
