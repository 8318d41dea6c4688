"""Parameter types shared by the commands: every flag is checked when it is parsed, before
any model loads, so that a bad value is one line naming the flag and never a failure
half-way through a run."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import click

from seqchat.system import available_cpus

SEED_MAX = 2**32 - 1
"""numpy's seed sequences take non-negative integers; 32 bits keep seeds portable."""


class FiniteFloat(click.FloatRange):
    """A float in a range that is also finite: `float("nan")` passes every comparison a
    range makes, and a NaN temperature or top-p reaches the sampler as NaN probabilities."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


class Device(click.ParamType):
    """auto, cpu, cuda or cuda:N, checked here instead of by PyTorch at load time."""

    name = "device"
    _PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        text = str(value)
        if not self._PATTERN.fullmatch(text):
            self.fail(f"{text!r} is not one of auto, cpu, cuda, cuda:N", param, ctx)
        return text


class Threads(click.IntRange):
    """A thread count from 1 to the CPUs this process may use (affinity and cgroup quota):
    more threads than CPUs only spin against each other (1000 made a 1 s run take 98 s)."""

    def __init__(self) -> None:
        super().__init__(min=1)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        count = super().convert(value, param, ctx)
        cpus = available_cpus()
        if count > cpus:
            self.fail(f"{count} is more than the {cpus} CPUs this process may use", param, ctx)
        return count


class Shard(click.ParamType):
    """``I/N``: every N-th record, starting at the I-th (0-based), as ``(I, N)``."""

    name = "I/N"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[int, int]:
        if isinstance(value, tuple):
            return value
        try:
            index_text, count_text = str(value).split("/")
            index, count = int(index_text), int(count_text)
        except ValueError:
            self.fail(f"{value!r} is not I/N (e.g. 0/4)", param, ctx)
        if count < 1 or not 0 <= index < count:
            self.fail(f"{value!r}: need 0 <= I < N", param, ctx)
        return index, count


TEMPERATURE = FiniteFloat(min=0)
TOP_P = FiniteFloat(min=0, max=1, min_open=True)
SEED = click.IntRange(0, SEED_MAX)
DEVICE = Device()
THREADS = Threads()

GENERATION_DEFAULTS = {"max_new_tokens": 64, "temperature": 0.0, "top_p": 1.0}
"""What a bundle's `generation:` gives when it names no value (`seqchat.bundle_schema`; a
test keeps the two equal), shown in help without loading the schema."""


def bundle_default(key: str) -> str:
    """The help suffix of an option whose default is the bundle's `generation.KEY`."""
    return f"[default: the bundle's generation.{key}, else {GENERATION_DEFAULTS[key]:g}]"


def threads_default() -> str:
    return f"[default: {available_cpus()}, the CPUs this process may use]"
SHARD = Shard()


FORMAT_OF_SUFFIX = {".tsv": "tsv", ".jsonl": "jsonl", ".json": "json"}
FORMAT_HELP = (
    "Output format.  [default: from -o's extension (.tsv, .jsonl, .json, each also with .gz "
    "for gzip), else tsv]"
)


def output_format(output: str, fmt: str | None) -> str:
    """The format to write: `-f`, else the one `-o`'s extension names (before a `.gz`, which
    makes the writer compress), else TSV. A clash between the two is an error, so that
    `-o a.tsv -f jsonl` never writes JSON Lines into a file named .tsv."""
    if output == "-":
        return fmt or "tsv"
    name = Path(output)
    if name.suffix.lower() == ".gz":
        name = name.with_suffix("")
    implied = FORMAT_OF_SUFFIX.get(name.suffix.lower())
    if fmt is not None and implied is not None and fmt != implied:
        raise click.BadParameter(
            f"{fmt} clashes with {output}, which names a {implied} file", param_hint="'-f'"
        )
    return fmt or implied or "tsv"
