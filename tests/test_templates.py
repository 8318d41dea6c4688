"""A GGUF's chat template is data from the model file: rendering it is bounded in size and
time, and a hostile one gives a one-line error instead of gigabytes or a crash."""

from __future__ import annotations

import resource
import time
from pathlib import Path

import pytest
from conftest import NEEDS_TRAIN, assert_clean_failure, invoke

import seqchat.llm.chat_template
from seqchat.llm.chat_template import MAX_OUTPUT, ChatTemplateError, render_chat
from seqchat.llm.prompt import PromptSpec, layout_for
from seqchat.llm.vocabulary import GgufVocabulary

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "ACGU"}]

RENDERS_200_MB = (
    "{% for i in range(200) %}{% for j in range(100) %}{{ 'x' * 10000 }}{% endfor %}{% endfor %}"
)
RANGE_BOMB = "{% for i in range(10**12) %}x{% endfor %}"

BOMBS = {
    "a huge rendering": (RENDERS_200_MB, "renders more than"),
    "a range bomb": (RANGE_BOMB, "range of more than 10,000"),
    "repetition": ("{{ 'x' * 10**9 }}", "value of more than"),
    "a string doubled in a loop": (
        (
            "{% set ns = namespace(s='x') %}{% for i in range(64) %}"
            "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}"
        ),
        "value of more than",
    ),
    "a list holding itself twice, printed": (
        (
            "{% set ns = namespace(l=['x']) %}{% for i in range(64) %}"
            "{% set ns.l = [ns.l, ns.l] %}{% endfor %}{{ ns.l|tojson }}"
        ),
        "too large",
    ),
    "a macro doubling its argument": (
        (
            "{% macro twice(s) %}{{ s }}{{ s }}{% endmacro %}{% set ns = namespace(s='x') %}"
            "{% for i in range(64) %}{% set ns.s = twice(ns.s) %}{% endfor %}{{ ns.s }}"
        ),
        "value of more than",
    ),
    "a growing replace": (
        (
            "{% set ns = namespace(s='x' * 1000) %}{% for i in range(9) %}"
            "{% set ns.s = ns.s.replace('', 'yyyyyyyy') %}{% endfor %}{{ ns.s }}"
        ),
        "value of more than",
    ),
    "a wide pad": ("{{ 'x'.ljust(10**9) }}{{ 'x'|center(10**9) }}", "too large"),
    "a wide format": ("{{ '%999999999s' % 'x' }}", "too large"),
    "a huge number": ("{{ 7 ** 10000000 }}", "number too large"),
    "endless recursion": ("{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}", "RecursionError"),
}


@pytest.mark.parametrize("template, reason", BOMBS.values(), ids=list(BOMBS))
def test_a_hostile_template_is_refused_quickly_and_small(template: str, reason: str) -> None:
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.monotonic()
    with pytest.raises(ChatTemplateError) as caught:
        render_chat(template, MESSAGES, "llm.gguf")
    message = str(caught.value)
    assert message.startswith("llm.gguf: the chat template (tokenizer.chat_template)")
    assert reason in message and "\n" not in message
    assert time.monotonic() - start < 5
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before
    assert grown_kb < 200_000  # a few times MAX_VALUE at most, never gigabytes


def test_a_template_that_loops_for_ever_is_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(seqchat.llm.chat_template, "RENDER_SECONDS", 0.3)
    silent_loops = "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}"
    start = time.monotonic()
    with pytest.raises(ChatTemplateError, match=r"takes more than 0.3 s"):
        render_chat(silent_loops, MESSAGES)
    assert time.monotonic() - start < 3


def test_real_templates_render_as_jinja_renders_them() -> None:
    from jinja2.sandbox import ImmutableSandboxedEnvironment
    from tinymodels import CHAT_TEMPLATE

    alternating = (
        "{% for m in messages %}{% if loop.index0 % 2 == 0 %}[{{ m.role|upper }}]{% endif %}"
        "{{ m['content']|trim ~ '%s-%d' % ('a', loop.index) }}{{ '{} {}'.format('x', 'y') }}"
        "{% endfor %}{{ messages|tojson(indent=2) }}{{ '-' * 80 }}{{ range(3)|join(',') }}"
    )
    plain = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    for template in (CHAT_TEMPLATE, alternating):
        expected = plain.from_string(template).render(
            messages=MESSAGES, add_generation_prompt=True, bos_token="", eos_token=""
        )
        assert render_chat(template, MESSAGES) == expected


def test_the_template_may_refuse_messages() -> None:
    template = "{{ raise_exception('roles must alternate') }}"
    with pytest.raises(ChatTemplateError, match="refuses these messages: roles must alternate"):
        render_chat(template, MESSAGES)


def test_a_broken_template_is_one_line() -> None:
    with pytest.raises(ChatTemplateError, match=r"cannot be rendered \(TemplateSyntaxError"):
        render_chat("{% for %}", MESSAGES)


def _gguf_with_template(path: Path, template: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    import tinymodels

    monkeypatch.setattr(tinymodels, "CHAT_TEMPLATE", template)
    return tinymodels.write_tiny_gguf(path)


@NEEDS_TRAIN
def test_the_error_names_the_gguf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gguf = _gguf_with_template(tmp_path / "hostile.gguf", RENDERS_200_MB, monkeypatch)
    vocabulary = GgufVocabulary.load(gguf)
    try:
        with pytest.raises(ChatTemplateError) as caught:
            layout_for(vocabulary, PromptSpec())
    finally:
        vocabulary.close()
    assert str(caught.value).startswith(f"{gguf}: the chat template (tokenizer.chat_template)")
    assert f"renders more than {MAX_OUTPUT:,} characters" in str(caught.value)


@pytest.mark.parametrize("template", [RENDERS_200_MB, RANGE_BOMB], ids=["huge", "range"])
def test_annotate_refuses_a_gguf_with_a_hostile_template(
    bundle_copy, small_fasta: Path, monkeypatch: pytest.MonkeyPatch, template: str
) -> None:
    bundle = bundle_copy()
    _gguf_with_template(bundle / "llm.gguf", template, monkeypatch)
    result = invoke(["annotate", str(small_fasta), "-m", str(bundle), "-q", "-t", "1"])
    assert_clean_failure(result.exit_code, result.stderr, "tokenizer.chat_template", "refusing it")
