"""Question/answer pairs of whole annotation files: JSONL in (plain, gzip or stdin), JSONL
out, written atomically (see `seqchat.train.qa` for the pairs themselves)."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import sys
import zlib
from collections.abc import Collection, Iterable, Iterator, Mapping
from typing import IO, Any

from seqchat.train.qa import KINDS, QAInputError, detect_kind, qa_pairs

__all__ = ["iter_qa", "write_qa_jsonl"]

STDIO = "-"
_GZIP_MAGIC = b"\x1f\x8b"


def _label(path: str) -> str:
    return "<stdin>" if path == STDIO else path


@contextlib.contextmanager
def _open_binary(path: str) -> Iterator[IO[bytes]]:
    if path == STDIO:
        yield sys.stdin.buffer
        return
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        raise QAInputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise QAInputError(f"{path}: is a directory, not a JSONL file") from None
    except OSError as error:
        raise QAInputError(f"{path}: cannot open ({error.strerror})") from None
    with handle:
        if handle.peek(2)[:2] == _GZIP_MAGIC:
            with gzip.GzipFile(fileobj=handle, mode="rb") as unzipped:
                yield unzipped  # type: ignore[misc]
        else:
            yield handle


def _read_rows(path: str) -> Iterator[tuple[int, Any]]:
    """``(line number, parsed JSON)`` for each non-blank line of a JSONL file."""
    label = _label(path)
    with _open_binary(path) as stream:
        try:
            for number, raw in enumerate(stream, start=1):
                try:
                    line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
                except UnicodeDecodeError:
                    raise QAInputError(f"{label}:{number}: not UTF-8 text") from None
                if not line.strip():
                    continue
                try:
                    yield number, json.loads(line)
                except json.JSONDecodeError as error:
                    raise QAInputError(
                        f"{label}:{number}: bad JSON ({error.msg} at column {error.colno})"
                    ) from None
        except (gzip.BadGzipFile, EOFError, zlib.error) as error:
            raise QAInputError(f"{label}: corrupt gzip data ({error})") from None


def _kind_filter(kinds: Collection[str] | str | None) -> frozenset[str] | None:
    if kinds is None:
        return None
    wanted = frozenset([kinds] if isinstance(kinds, str) else kinds)
    unknown = sorted(wanted - set(KINDS))
    if unknown:
        raise QAInputError(f"unknown kind {unknown[0]!r} (expected one of {', '.join(KINDS)})")
    return wanted


def _paths(input_paths: Iterable[str | os.PathLike[str]] | str | os.PathLike[str]) -> list[str]:
    if isinstance(input_paths, (str, os.PathLike)):
        return [os.fspath(input_paths)]
    return [os.fspath(path) for path in input_paths]


def iter_qa(
    input_paths: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
    *,
    kinds: Collection[str] | str | None = None,
    max_terms: int | None = None,
) -> Iterator[dict[str, Any]]:
    """Stream the QA pairs of JSONL annotation files, in file, row and template order.

    ``kinds`` keeps only rows of those kinds (None: all). ``"-"`` reads standard input;
    gzip input is recognised by content. Errors name the file and line number.
    """
    wanted = _kind_filter(kinds)
    for path in _paths(input_paths):
        label = _label(path)
        for number, row in _read_rows(path):
            if not isinstance(row, dict):
                raise QAInputError(
                    f"{label}:{number}: expected a JSON object, not {type(row).__name__}"
                )
            try:
                kind = detect_kind(row)
                if wanted is not None and kind is not None and kind not in wanted:
                    continue
                pairs = qa_pairs(row, kind=kind, max_terms=max_terms)
            except QAInputError as error:
                raise QAInputError(f"{label}:{number}: {error}") from None
            yield from pairs


def write_qa_jsonl(
    input_paths: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    kinds: Collection[str] | str | None = None,
    max_terms: int | None = None,
) -> int:
    """Write the QA pairs of ``input_paths`` to ``out_path`` as JSONL; return the count.

    Streams row by row. The output appears only when all input was read: it is written
    to a temporary file next to ``out_path`` and renamed, so an input error leaves no
    partial file (and an output may safely replace one of the inputs). ``"-"`` writes
    to standard output; a ``.gz`` name writes gzip.
    """
    out = os.fspath(out_path)
    pairs = iter_qa(input_paths, kinds=kinds, max_terms=max_terms)
    if out == STDIO:
        return _write_pairs(pairs, sys.stdout)
    directory = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(directory):
        raise QAInputError(f"{out}: the output folder does not exist")
    temporary = os.path.join(directory, f".{os.path.basename(out)}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as binary:
            stream: IO[bytes] = binary
            if out.endswith(".gz"):
                stream = gzip.GzipFile(filename="", fileobj=binary, mode="wb", mtime=0)
            text = io.TextIOWrapper(stream, encoding="utf-8", newline="\n")
            try:
                count = _write_pairs(pairs, text)
            finally:
                text.flush()
                text.detach()
                if stream is not binary:
                    stream.close()  # writes the gzip trailer; leaves `binary` open
        os.replace(temporary, out)
    except OSError as error:
        raise QAInputError(f"{out}: cannot write ({error.strerror or error})") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
    return count


def _write_pairs(pairs: Iterable[Mapping[str, Any]], stream: IO[str]) -> int:
    count = 0
    for pair in pairs:
        stream.write(json.dumps(pair, ensure_ascii=False) + "\n")
        count += 1
    return count
