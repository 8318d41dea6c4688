"""Reading references and predictions for `seqchat eval`: JSONL of id + text, or seqchat's
own TSV, JSON Lines and JSON outputs."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, TextIO

from seqchat.errors import SeqchatError
from seqchat.io.compressed import open_text_file


class EvalInputError(SeqchatError, ValueError):
    """A references or predictions file cannot be used (message names file and line)."""


def _open_text(path: Path) -> TextIO:
    """``path`` as text, decompressed if it is compressed (gzip, bzip2, xz, zstd)."""
    try:
        return open_text_file(path)
    except FileNotFoundError:
        raise EvalInputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise EvalInputError(f"{path}: is a directory, not a file") from None


def _sniff(path: Path) -> str:
    """``jsonl`` (one object a line), ``json`` (seqchat's JSON document) or ``tsv``."""
    with _open_text(path) as fh:
        for line in fh:
            if not line.strip():
                continue
            if not line.lstrip().startswith("{"):
                return "tsv"
            try:
                json.loads(line)
            except json.JSONDecodeError:
                return "json"  # a multi-line document: {"provenance": ..., "results": [...]}
            return "jsonl"
    raise EvalInputError(f"{path}: empty file")


def _read_jsonl(path: Path) -> list[tuple[str, dict[str, Any]]]:
    rows: list[tuple[str, dict[str, Any]]] = []
    with _open_text(path) as fh:
        first = True
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise EvalInputError(f"{where}: invalid JSON ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise EvalInputError(f"{where}: not a JSON object")
            if first and "id" not in obj:
                first = False
                continue  # provenance header such as {"provenance": {...}}
            first = False
            rows.append((where, obj))
    return rows


def _read_seqchat_table(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """TSV or JSON document written by :mod:`seqchat.io.writers`, read back with its reader.

    TSV: ``#`` provenance lines, a header row, then rows whose cells are escaped
    (``\\t``, ``\\n``, ``\\r``, ``\\\\``); ``read_table`` unescapes them.
    """
    from seqchat.io.tables import read_table

    _, rows = read_table(path)
    return [(f"{path}: row {n}", row) for n, row in enumerate(rows, 1)]


def load_texts(path: str | os.PathLike[str], text_field: str | None = None) -> dict[str, str]:
    """Read ``{id: text}`` from JSONL, or a seqchat TSV / JSON results file.

    * JSONL: one object a line with ``id`` and ``text`` (else ``description``).
      A first-line object without ``id`` (``{"provenance": {...}}``) is skipped.
    * TSV (as written by ``seqchat annotate``): ``#`` provenance lines, a header
      with ``id`` and ``description`` (else ``text``), escaped cells (unescaped
      here by :func:`seqchat.io.writers.read_table`).
    * JSON document ``{"provenance": ..., "results": [...]}`` (seqchat's ``json``
      format).

    ``text_field`` names the field/column to use instead.  Duplicate ids, rows
    without an id or without the text field raise :class:`EvalInputError`.
    """
    p = Path(path)
    kind = _sniff(p)
    rows = _read_jsonl(p) if kind == "jsonl" else _read_seqchat_table(p)
    fields = (
        (text_field,)
        if text_field
        else (("text", "description") if kind == "jsonl" else ("description", "text"))
    )
    out: dict[str, str] = {}
    for where, row in rows:
        if row.get("id") in (None, ""):
            raise EvalInputError(f"{where}: no 'id'")
        key = str(row["id"])
        text = next((row[f] for f in fields if row.get(f) is not None), None)
        if text is None:
            raise EvalInputError(f"{where}: no {' or '.join(repr(f) for f in fields)} field")
        if key in out:
            raise EvalInputError(f"{where}: duplicate id {key!r}")
        out[key] = str(text)
    return out
