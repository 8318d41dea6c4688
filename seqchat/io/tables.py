"""Read seqchat's result tables back (TSV, JSON Lines, JSON; detected by content), and the
TSV escaping both sides share."""

from __future__ import annotations

import itertools
import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TextIO

from seqchat.errors import SeqchatError
from seqchat.io.compressed import open_text_file

__all__ = [
    "OutputError",
    "OutputFormatError",
    "Table",
    "escape_tsv",
    "escape_tsv_comment",
    "iter_table_rows",
    "open_table_file",
    "parse_table",
    "read_sidecar",
    "read_table",
    "unescape_tsv",
]


class OutputError(SeqchatError):
    """Base class of all output errors; messages are one line."""


class OutputFormatError(OutputError):
    """A results file could not be read back."""


_BREAKS = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
_COMMENT_ESCAPES = str.maketrans(_BREAKS)
_CELL_ESCAPES = str.maketrans({**_BREAKS, "#": "\\x23"})
_UNESCAPES = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r", "x23": "#"}
_ESCAPE_SEQUENCE = re.compile(r"\\(\\|t|n|r|x23)")


def escape_tsv(value: str) -> str:
    """Escape a table cell: backslash, tab, newline and CR, which would break the row, and #.

    Readers that skip comments take a # anywhere on a line as the start of one (pandas'
    ``comment="#"`` drops a row that starts with it and cuts one short at it), so a cell
    never holds a literal #: it is written ``\\x23``."""
    return value.translate(_CELL_ESCAPES)


def escape_tsv_comment(value: str) -> str:
    """Escape the text of a ``# key: value`` comment line, where # is harmless and kept."""
    return value.translate(_COMMENT_ESCAPES)


def unescape_tsv(text: str) -> str:
    """Invert :func:`escape_tsv` and :func:`escape_tsv_comment`."""
    return _ESCAPE_SEQUENCE.sub(lambda match: _UNESCAPES[match.group(1)], text)


@dataclass
class Table:
    """A results file being read: its format, provenance and rows (streamed)."""

    fmt: str
    provenance: dict[str, str]
    rows: Iterator[dict[str, Any]]
    columns: tuple[str, ...] | None = None
    """The TSV header row; JSON rows carry their own keys."""
    target_fmt: str | None = None
    """For a partial output that completes as another format, that format: a JSON document is
    written as JSON Lines until its run completes, with ``"format": "json"`` in the header line."""


def read_table(path: str | os.PathLike[str]) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """Read a results file in any of the formats (detected by content, gzip or not):
    ``(provenance, rows)``. A JSON Lines output's provenance is its sidecar's,
    ``<path>.provenance.json`` ({} when there is none).

    TSV values come back as strings (``""`` for None); JSON formats keep their JSON types.
    """
    with open_table_file(path) as handle:
        table = parse_table(handle, os.fspath(path))
        rows = list(table.rows)
    if table.fmt == "jsonl" and not table.provenance:
        return read_sidecar(path), rows
    return table.provenance, rows


def read_sidecar(path: str | os.PathLike[str]) -> dict[str, str]:
    """The provenance in JSON Lines output ``path``'s sidecar, {} when it has none."""
    sidecar = f"{os.fspath(path)}.provenance.json"
    try:
        with open(sidecar, encoding="utf-8") as handle:
            document = json.load(handle)
    except FileNotFoundError:
        return {}
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise OutputFormatError(f"{sidecar}: not a provenance file ({error})") from None
    if not isinstance(document, dict) or not isinstance(document.get("provenance"), dict):
        raise OutputFormatError(f"{sidecar}: not a provenance file (needs a provenance object)")
    return document["provenance"]


def iter_table_rows(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Stream the rows of a results file (a JSON document is loaded whole)."""
    with open_table_file(path) as handle:
        yield from parse_table(handle, os.fspath(path)).rows


def open_table_file(path: str | os.PathLike[str]) -> TextIO:
    try:
        return open_text_file(path)
    except FileNotFoundError:
        raise OutputError(f"{os.fspath(path)}: no such file") from None
    except IsADirectoryError:
        raise OutputError(f"{os.fspath(path)}: is a directory, not a results file") from None


def parse_table(handle: TextIO, name: str) -> Table:
    first = handle.readline()
    if not first:
        raise OutputFormatError(f"{name}: empty file, not a seqchat results table")
    if not first.startswith("{"):
        return _parse_tsv(first, handle, name)
    header = _json_lines_header(first)
    if header is not None:
        rows = _json_lines_rows(handle, name)
        return Table("jsonl", header["provenance"], rows, target_fmt=header.get("format"))
    if _is_json_object(first):
        return Table("jsonl", {}, _json_lines_rows(itertools.chain([first], handle), name, 1))
    return _parse_json_document(first + handle.read(), name)


def _parse_tsv(first: str, handle: TextIO, name: str) -> Table:
    provenance: dict[str, str] = {}
    line, number = first, 1
    while line.startswith("#"):
        key, _, value = line[1:].rstrip("\n").removeprefix(" ").partition(": ")
        provenance[unescape_tsv(key)] = unescape_tsv(value)
        line, number = handle.readline(), number + 1
    if not line:
        raise OutputFormatError(f"{name}: no header row")
    columns = tuple(map(unescape_tsv, line.rstrip("\n").split("\t")))
    return Table("tsv", provenance, _tsv_rows(handle, columns, name, number + 1), columns)


def _tsv_rows(
    lines: Iterable[str], columns: tuple[str, ...], name: str, first_number: int
) -> Iterator[dict[str, Any]]:
    for number, line in enumerate(lines, start=first_number):
        values = line.rstrip("\n").split("\t")
        if len(values) != len(columns):
            raise OutputFormatError(
                f"{name}: line {number} has {len(values)} fields, expected {len(columns)}"
            )
        yield dict(zip(columns, map(unescape_tsv, values)))


def _json_lines_header(first: str) -> dict[str, Any] | None:
    """``first`` parsed if it is a JSON Lines header line, else None (a JSON document)."""
    try:
        header = json.loads(first)
    except json.JSONDecodeError:
        return None
    if isinstance(header, dict) and list(header) in (["provenance"], ["provenance", "format"]):
        return header
    return None


def _is_json_object(line: str) -> bool:
    """Whether ``line`` is a whole JSON object: a row of JSON Lines, not a document's start."""
    try:
        return isinstance(json.loads(line), dict)
    except json.JSONDecodeError:
        return False


def _json_lines_rows(
    lines: Iterable[str], name: str, first_number: int = 2
) -> Iterator[dict[str, Any]]:
    for number, line in enumerate(lines, start=first_number):
        if line.strip():
            row = _load_json(line, name, number)
            if not isinstance(row, dict):
                raise OutputFormatError(f"{name}: line {number} is not a JSON object")
            yield row


def _parse_json_document(text: str, name: str) -> Table:
    document = _load_json(text, name, 1)
    if not (
        isinstance(document, dict)
        and isinstance(document.get("provenance"), dict)
        and isinstance(document.get("results"), list)
    ):
        raise OutputFormatError(
            f"{name}: not a seqchat results document (needs provenance and results)"
        )
    return Table("json", document["provenance"], iter(document["results"]))


def _load_json(text: str, name: str, first_line: int) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        line = first_line + error.lineno - 1
        raise OutputFormatError(f"{name}: invalid JSON at line {line} ({error.msg})") from None
