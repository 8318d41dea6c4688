"""How each output format is rendered, row by row, and published when a run completes.

A run writes an uncompressed partial that starts with its provenance (`seqchat.io.writers`);
publishing gives each format its own form: TSV keeps its ``#`` header; JSON Lines holds rows
only, one schema, with the provenance in a sidecar ``<path>.provenance.json``; JSON is one
document ``{"provenance", "results"}``. A name ending in ``.gz`` is published gzip-compressed.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from seqchat.io.tables import OutputError, escape_tsv, escape_tsv_comment

Row = Mapping[str, Any]


def provenance_sidecar(path: str | os.PathLike[str]) -> Path:
    """Where a JSON Lines output's provenance is written: JSON Lines holds rows only."""
    return Path(f"{os.fspath(path)}.provenance.json")


def is_gzip_name(path: str | os.PathLike[str]) -> bool:
    return os.fspath(path).lower().endswith(".gz")


class Encoder:
    """Renders a table's header, rows and ending as text in one format."""

    def __init__(self, columns: tuple[str, ...]) -> None:
        self.columns = columns

    def header(self, provenance: Mapping[str, str]) -> str:
        raise NotImplementedError

    def row(self, row: Row) -> str:
        raise NotImplementedError

    def footer(self) -> str:
        return ""


class _TsvEncoder(Encoder):
    def header(self, provenance: Mapping[str, str]) -> str:
        comments = "".join(
            f"# {escape_tsv_comment(key)}: {escape_tsv_comment(str(value))}\n"
            for key, value in provenance.items()
        )
        return comments + _tsv_line(self.columns)

    def row(self, row: Row) -> str:
        return _tsv_line(_cell(row[column]) for column in self.columns)


class _JsonLinesEncoder(Encoder):
    """Rows only: what reads JSON Lines (pandas, jq, DuckDB) sees one schema."""

    def header(self, provenance: Mapping[str, str]) -> str:
        return ""

    def row(self, row: Row) -> str:
        return _json({column: row[column] for column in self.columns}) + "\n"


class _JsonLinesPartialEncoder(_JsonLinesEncoder):
    """The partial of a JSON Lines or JSON output: rows after a first line that holds the
    provenance and the format the run publishes, so that a run of another format does not
    resume it."""

    fmt = "jsonl"

    def header(self, provenance: Mapping[str, str]) -> str:
        return _json({"provenance": dict(provenance), "format": self.fmt}) + "\n"


class _JsonPartialEncoder(_JsonLinesPartialEncoder):
    fmt = "json"


class _JsonEncoder(Encoder):
    """Streams ``{"provenance": {...}, "results": [...]}`` one row at a time."""

    def __init__(self, columns: tuple[str, ...]) -> None:
        super().__init__(columns)
        self._separator = "\n"

    def header(self, provenance: Mapping[str, str]) -> str:
        return '{"provenance": ' + _json(dict(provenance)) + ',\n "results": ['

    def row(self, row: Row) -> str:
        return self.item(_json({column: row[column] for column in self.columns}))

    def item(self, encoded_row: str) -> str:
        """Place an already JSON-encoded row in the results list."""
        text = f"{self._separator}  {encoded_row}"
        self._separator = ",\n"
        return text

    def footer(self) -> str:
        return "\n ]}\n"


ENCODERS: dict[str, type[Encoder]] = {
    "tsv": _TsvEncoder,
    "jsonl": _JsonLinesEncoder,
    "json": _JsonEncoder,
}
# JSON output is kept as JSON Lines until the end, so rows can be appended.
PARTIAL_ENCODERS: dict[str, type[Encoder]] = {
    "tsv": _TsvEncoder,
    "jsonl": _JsonLinesPartialEncoder,
    "json": _JsonPartialEncoder,
}


def _tsv_line(values: Iterable[str]) -> str:
    return "\t".join(map(escape_tsv, values)) + "\n"


def _cell(value: object) -> str:
    """A TSV cell: "" for None, JSON's spelling for booleans (as JSON output writes them)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


def _json(value: object) -> str:
    """NaN and infinity are refused: written as Python spells them, they make invalid JSON."""
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False)
    except ValueError as error:
        raise OutputError(f"cannot write NaN or infinity as JSON ({error})") from error


def publish(partial: Path, target: Path, fmt: str) -> None:
    """Give the finished partial its published form (module docstring) at ``target``."""
    if fmt == "tsv" and not is_gzip_name(target):
        os.replace(partial, target)
        return
    staging = Path(f"{target}.tmp")
    try:
        with open(partial, encoding="utf-8") as lines, _open_staging(staging, target) as out:
            if fmt == "tsv":
                for line in lines:
                    out.write(line)
            else:
                provenance = json.loads(lines.readline())["provenance"]
                if fmt == "jsonl":
                    _write_sidecar(provenance, provenance_sidecar(target))
                    for line in lines:
                        out.write(line)
                else:
                    _write_document(provenance, lines, out)
        os.replace(staging, target)
    finally:
        staging.unlink(missing_ok=True)
    partial.unlink()


@contextlib.contextmanager
def _open_staging(staging: Path, target: Path) -> Iterator[TextIO]:
    """A text stream onto ``staging``, gzip-compressed (without a name or time in the gzip
    header, so that the same rows give the same bytes) when ``target`` ends in .gz; on a
    clean exit the bytes are on disk."""
    with open(staging, "wb") as raw:
        binary: BinaryIO = (
            gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0)
            if is_gzip_name(target)
            else raw
        )
        text = io.TextIOWrapper(binary, encoding="utf-8", newline="")
        yield text
        text.detach()  # flushes the text into `binary` and leaves it open
        if binary is not raw:
            binary.close()  # ends the gzip stream; `raw` stays open
        raw.flush()
        os.fsync(raw.fileno())


def _write_sidecar(provenance: Mapping[str, str], sidecar: Path) -> None:
    staging = Path(f"{sidecar}.tmp")
    try:
        with open(staging, "w", encoding="utf-8") as out:
            out.write(json.dumps({"provenance": provenance}, ensure_ascii=False, indent=1) + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(staging, sidecar)
    finally:
        staging.unlink(missing_ok=True)


def _write_document(provenance: Mapping[str, str], lines: Iterable[str], out: TextIO) -> None:
    document = _JsonEncoder(())
    out.write(document.header(provenance))
    for line in lines:
        out.write(document.item(line.rstrip("\n")))
    out.write(document.footer())
