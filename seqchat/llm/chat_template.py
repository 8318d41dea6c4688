"""Rendering a GGUF's chat template (Jinja2), which is data from the model file and may be
hostile: in a sandbox, and with what it may compute bounded.

Jinja's sandbox stops a template from reaching Python's internals, not from exhausting
memory or time: a few bytes of template can render gigabytes (`'x' * 10**9`, a string
doubled in a loop, a list that holds itself twice printed) or loop for hours (nested
ranges). So, beyond the sandbox:

- `range` yields at most `MAX_RANGE` items;
- every value the template computes (an operator, a call, a filter, a concatenation, a
  printed value) holds at most `MAX_VALUE` characters and items, checked before the
  operation where its result could be far larger than its inputs (repetition, powers,
  `replace`, `join`, widths), and after it otherwise;
- the rendered text stops at `MAX_OUTPUT` characters;
- rendering stops after `RENDER_SECONDS`, checked on every line of the compiled template.

A real chat template renders a few hundred characters, in microseconds.
"""

from __future__ import annotations

import inspect
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from types import FrameType
from typing import Any

from jinja2.compiler import CodeGenerator, Frame
from jinja2.nodes import Concat
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace

from seqchat.errors import SeqchatError

MAX_TEMPLATE = 1_000_000
MAX_RANGE = 10_000
MAX_VALUE = 1_000_000
MAX_OUTPUT = 1_000_000
MAX_WORK = 20_000_000
"""An operation's inputs (characters and items) times its largest integer argument (a
width, a count) may not exceed this."""
MAX_BITS = 100_000
"""Of an integer the template computes (Python prints no more than 4,300 digits anyway)."""
RENDER_SECONDS = 2.0
_TEMPLATE_FILENAME = "<template>"  # what Jinja compiles a template from a string as
_DIGITS = re.compile(r"\d+")


class ChatTemplateError(SeqchatError):
    """The LLM's chat template cannot be rendered, or asks for more than it may."""


class _Refused(Exception):
    """A bound was passed; the message says which."""


def _weight(value: object, limit: int) -> int:
    """Characters and items reachable from `value`, counted until past `limit`: what
    printing it would cost (a list that holds another twice over is small in memory,
    but not printed)."""
    total = 0
    stack = [value]
    while stack and total <= limit:
        item = stack.pop()
        kind = type(item)
        total += 1
        if kind is str:
            total += len(item)
        elif kind is list or kind is tuple:
            stack.extend(item)
        elif isinstance(item, (str, bytes)):
            total += len(item)
        elif isinstance(item, int):
            total += item.bit_length() // 3
        elif isinstance(item, Namespace):
            stack.append(object.__getattribute__(item, "_Namespace__attrs"))
        elif isinstance(item, Mapping):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            stack.extend(item)
    return total


def _bounded(value: Any) -> Any:
    if _weight(value, MAX_VALUE) > MAX_VALUE:
        raise _Refused(f"computes a value of more than {MAX_VALUE:,} characters")
    return value


def _largest_int(values: Iterable[object], format_string: object = None) -> int:
    """The largest integer among `values` (a width or a count), and among the numbers
    written in `format_string` (widths such as '%99999s' or '{:>99999}')."""
    numbers = [abs(v) for v in values if isinstance(v, int)]
    if isinstance(format_string, str):
        numbers += [min(int(d), MAX_WORK) for d in _DIGITS.findall(format_string[:MAX_VALUE])]
    return max(numbers, default=0)


def _check_work(inputs: Iterable[object], format_string: object = None) -> None:
    """Refuse an operation on inputs past MAX_VALUE, or whose inputs times its largest
    integer pass MAX_WORK."""
    inputs = list(inputs)
    limit = min(MAX_VALUE, MAX_WORK // (_largest_int(inputs, format_string) + 1))
    if _weight(inputs, limit) > limit:
        raise _Refused("asks for an operation too large to compute")


def _check_growth(text: object, old: object, new: object) -> None:
    """`text.replace(old, new)` may multiply its length: refuse a result past MAX_VALUE."""
    if isinstance(text, str) and isinstance(old, str) and isinstance(new, str):
        count = text.count(old) if old else len(text) + 1
        if len(text) + count * max(len(new) - len(old), 0) > MAX_VALUE:
            raise _Refused(f"computes a value of more than {MAX_VALUE:,} characters")


def _check_join(separator: object, items: list[Any]) -> None:
    """`separator.join(items)` repeats the separator once an item."""
    size = _weight(items, MAX_VALUE)
    if isinstance(separator, str):
        size += len(separator) * max(len(items) - 1, 0)
    if size > MAX_VALUE:
        raise _Refused(f"computes a value of more than {MAX_VALUE:,} characters")


def _bounded_range(*args: int) -> range:
    numbers = range(*args)
    try:
        too_many = len(numbers) > MAX_RANGE
    except OverflowError:
        too_many = True
    if too_many:
        raise _Refused(f"asks for a range of more than {MAX_RANGE:,} numbers")
    return numbers


def _bounded_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """A filter with its inputs and result checked (Jinja's pass_context markers kept)."""
    signature = inspect.signature(function) if name in ("replace", "join", "format") else None

    def bounded(*args: Any, **kwargs: Any) -> Any:
        named = signature.bind(*args, **kwargs).arguments if signature else {}
        if name == "replace":
            _check_growth(named.get("s"), named.get("old"), named.get("new"))
        if name == "join":
            items = list(named.get("value", ()))
            _check_join(named.get("d", ""), items)
            args = (args[0], items, *args[2:])
        format_string = named.get("value") if name == "format" else None
        _check_work([*args, *kwargs.values()], format_string)
        return _bounded(function(*args, **kwargs))

    bounded.__dict__.update(getattr(function, "__dict__", {}))
    return bounded


class _CodeGenerator(CodeGenerator):
    """Compiles `~` through `environment.bounded_concat` (the template sets no autoescape,
    so Jinja would join the parts with a plain `str` join)."""

    def visit_Concat(self, node: Concat, frame: Frame) -> None:
        self.write("environment.bounded_concat((")
        for part in node.nodes:
            self.visit(part, frame)
            self.write(", ")
        self.write("))")


class _BoundedEnvironment(ImmutableSandboxedEnvironment):
    """The immutable sandbox, with every operator, call, filter, concatenation and printed
    value held to the bounds in the module's docstring."""

    code_generator_class = _CodeGenerator
    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self) -> None:
        super().__init__(trim_blocks=True, lstrip_blocks=True, finalize=self._printed)
        self.globals["range"] = _bounded_range
        del self.globals["lipsum"]
        self.filters = {name: _bounded_filter(name, f) for name, f in self.filters.items()}

    @staticmethod
    def _printed(value: Any) -> Any:
        if _weight(value, MAX_OUTPUT) > MAX_OUTPUT:
            raise _Refused(f"renders more than {MAX_OUTPUT:,} characters")
        return value

    def bounded_concat(self, parts: tuple[Any, ...]) -> str:
        if _weight(parts, MAX_VALUE) > MAX_VALUE:
            raise _Refused(f"computes a value of more than {MAX_VALUE:,} characters")
        return "".join(map(str, parts))

    def concat(self, parts: Iterable[str]) -> str:  # type: ignore[override]
        """The text of a block or macro, stopped once past MAX_VALUE."""
        kept, size = [], 0
        for part in parts:
            size += len(part)
            if size > MAX_VALUE:
                raise _Refused(f"computes a value of more than {MAX_VALUE:,} characters")
            kept.append(part)
        return "".join(kept)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*" and isinstance(left, int) != isinstance(right, int):
            count, repeated = (left, right) if isinstance(left, int) else (right, left)
            if _weight(repeated, MAX_VALUE) * max(count, 0) > MAX_VALUE:
                raise _Refused(f"computes a value of more than {MAX_VALUE:,} characters")
        elif isinstance(left, int) and isinstance(right, int) and operator in ("*", "**"):
            bits = left.bit_length() * right if operator == "**" else (
                left.bit_length() + right.bit_length()
            )
            if bits > MAX_BITS:
                raise _Refused("computes a number too large")
        elif operator == "%" and isinstance(left, str):
            _check_work((left, right), left)
        return _bounded(super().call_binop(context, operator, left, right))

    def call(self, context: Any, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        method = getattr(obj, "__wrapped__", obj)
        owner = getattr(method, "__self__", None)
        name = getattr(method, "__name__", "")
        if isinstance(owner, str) and name == "replace" and len(args) >= 2:
            _check_growth(owner, args[0], args[1])
        if isinstance(owner, str) and name == "join" and args:
            args = (list(args[0]), *args[1:])  # it may be a generator
            _check_join(owner, args[0])
        format_string = owner if name in ("format", "format_map") else None
        if obj is not _bounded_range:
            _check_work([owner, *args, *kwargs.values()], format_string)
        return _bounded(super().call(context, obj, *args, **kwargs))


@contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Refuse to go on past `seconds`, checked on every line the compiled template runs
    (its loops are Python loops); the tracer already set (a coverage tool's) goes on
    tracing everything else."""
    end = time.monotonic() + seconds
    previous = sys.gettrace()

    def check(frame: FrameType, event: str, arg: object) -> Any:
        if time.monotonic() > end:
            raise _Refused(f"takes more than {seconds:g} s to render")
        return check

    def trace(frame: FrameType, event: str, arg: object) -> Any:
        if frame.f_code.co_filename == _TEMPLATE_FILENAME:
            return check
        return previous(frame, event, arg) if previous is not None else None

    sys.settrace(trace)
    try:
        yield
    finally:
        sys.settrace(previous)


def render_chat(
    chat_template: str, messages: list[dict[str, str]], source: object = None
) -> str:
    """Render a Hugging Face chat template with a generation prompt, bounded (see the
    module's docstring). `source` (the GGUF file) starts any error message."""
    where = f"{source}: " if source else ""
    what = f"{where}the chat template (tokenizer.chat_template)"

    def raise_exception(message: str) -> None:
        raise ChatTemplateError(f"{what} refuses these messages: {message}")

    if len(chat_template) > MAX_TEMPLATE:
        raise ChatTemplateError(f"{what} is longer than {MAX_TEMPLATE:,} characters")
    environment = _BoundedEnvironment()
    environment.globals["raise_exception"] = raise_exception
    pieces: list[str] = []
    size = 0
    try:
        with _deadline(RENDER_SECONDS):
            template = environment.from_string(chat_template)
            for piece in template.generate(
                messages=messages, add_generation_prompt=True, bos_token="", eos_token=""
            ):
                size += len(piece)
                if size > MAX_OUTPUT:
                    raise _Refused(f"renders more than {MAX_OUTPUT:,} characters")
                pieces.append(piece)
    except ChatTemplateError:
        raise
    except _Refused as error:
        raise ChatTemplateError(f"{what} {error}; refusing it") from None
    except Exception as error:  # the template is untrusted code: any failure is its own
        detail = (str(error).strip().splitlines() or [""])[0][:200]
        raise ChatTemplateError(
            f"{what} cannot be rendered ({type(error).__name__}: {detail})"
        ) from error
    return "".join(pieces)
