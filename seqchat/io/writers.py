"""Write per-sequence results as TSV, JSON Lines or JSON (read back by `seqchat.io.tables`).

A file is written as ``<path>.partial``, one flushed row at a time, and
renamed onto ``<path>`` only when the run finishes cleanly. An interrupted
run therefore never leaves a complete-looking but truncated output, and its
partial file lets ``--resume`` continue where it stopped. A run holds an
exclusive lock on its partial file until it ends, so that a second run for
the same output fails at once instead of writing into it.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

from seqchat.io.tables import (
    OutputError,
    OutputFormatError,
    escape_tsv,
    escape_tsv_comment,
    open_table_file,
    parse_table,
)

__all__ = [
    "ANNOTATION_COLUMNS",
    "FORMATS",
    "OutputError",
    "OutputExistsError",
    "OutputFormatError",
    "OutputLockedError",
    "OutputUsageError",
    "ResumeMismatchError",
    "TableWriter",
    "kept_partials",
    "open_writer",
    "partial_path",
]

ANNOTATION_COLUMNS = ("id", "length", "description", "n_tokens", "mean_logprob", "truncated")
FORMATS = ("tsv", "jsonl", "json")
STDOUT = "-"

Row = Mapping[str, Any]


class OutputExistsError(OutputError):
    """The output (or an interrupted run's partial output) already exists."""


class ResumeMismatchError(OutputError):
    """A partial output was written by a run with different settings."""


class OutputUsageError(OutputError, ValueError):
    """The writer was asked for something that cannot work, e.g. resuming stdout."""


class OutputLockedError(OutputError):
    """Another live run is writing the same partial output."""


def partial_path(path: str | os.PathLike[str]) -> Path:
    """Where output for ``path`` is written until the run completes."""
    return Path(f"{os.fspath(path)}.partial")


_kept: list[Path] = []


def kept_partials() -> tuple[Path, ...]:
    """The partial outputs that writers of this process kept when a run failed or was
    interrupted, for the command line to say where the rows are."""
    return tuple(_kept)


# --- encoding ---------------------------------------------------------------


class _Encoder:
    """Renders a table's header, rows and ending as text in one format."""

    def __init__(self, columns: tuple[str, ...]) -> None:
        self.columns = columns

    def header(self, provenance: Mapping[str, str]) -> str:
        raise NotImplementedError

    def row(self, row: Row) -> str:
        raise NotImplementedError

    def footer(self) -> str:
        return ""


class _TsvEncoder(_Encoder):
    def header(self, provenance: Mapping[str, str]) -> str:
        comments = "".join(
            f"# {escape_tsv_comment(key)}: {escape_tsv_comment(str(value))}\n"
            for key, value in provenance.items()
        )
        return comments + _tsv_line(self.columns)

    def row(self, row: Row) -> str:
        return _tsv_line(_cell(row[column]) for column in self.columns)


class _JsonLinesEncoder(_Encoder):
    def header(self, provenance: Mapping[str, str]) -> str:
        return _json({"provenance": dict(provenance)}) + "\n"

    def row(self, row: Row) -> str:
        return _json({column: row[column] for column in self.columns}) + "\n"


class _JsonPartialEncoder(_JsonLinesEncoder):
    """The JSON Lines partial of a JSON document; its header line says so, so that a run
    writing JSON Lines does not resume it."""

    def header(self, provenance: Mapping[str, str]) -> str:
        return _json({"provenance": dict(provenance), "format": "json"}) + "\n"


class _JsonEncoder(_Encoder):
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


_ENCODERS: dict[str, type[_Encoder]] = {
    "tsv": _TsvEncoder,
    "jsonl": _JsonLinesEncoder,
    "json": _JsonEncoder,
}
# JSON output is kept as JSON Lines until the end, so rows can be appended.
_PARTIAL_ENCODERS: dict[str, type[_Encoder]] = {
    "tsv": _TsvEncoder,
    "jsonl": _JsonLinesEncoder,
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


# --- writing ----------------------------------------------------------------


class TableWriter:
    """Writes rows to one output; use it as a context manager (see :func:`open_writer`).

    This base class writes to an open stream it does not own (stdout).
    ``completed_ids`` holds the ids already written by an interrupted run
    being resumed; the caller skips those sequences.
    """

    def __init__(
        self,
        stream: TextIO,
        encoder: _Encoder,
        completed_ids: frozenset[str] = frozenset(),
    ) -> None:
        self.completed_ids = completed_ids
        self.rows_written = 0
        self._stream = stream
        self._encoder = encoder

    def write(self, row: Row) -> None:
        """Write the writer's columns of ``row`` and flush, so a crash loses no finished row."""
        self._stream.write(self._encoder.row(row))
        self._stream.flush()
        self.rows_written += 1

    def __enter__(self) -> TableWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self._commit()
        else:
            self._abandon()

    def _commit(self) -> None:
        self._stream.write(self._encoder.footer())
        self._stream.flush()

    def _abandon(self) -> None:
        """Leave the stream as it is: every row is already flushed, and an
        unterminated JSON document shows that the run failed."""


class _PartialFileWriter(TableWriter):
    """Writes ``<target>.partial`` and renames it onto the target on success."""

    def __init__(
        self,
        stream: TextIO,
        encoder: _Encoder,
        completed_ids: frozenset[str],
        target: Path,
        fmt: str,
    ) -> None:
        super().__init__(stream, encoder, completed_ids)
        self._target = target
        self._fmt = fmt

    def _commit(self) -> None:
        self._stream.flush()
        os.fsync(self._stream.fileno())
        partial = partial_path(self._target)
        try:
            if self._fmt == "json":
                _publish_json(partial, self._target)
            else:
                os.replace(partial, self._target)
        finally:
            self._stream.close()  # releases the lock only once the partial is gone

    def _abandon(self) -> None:
        """Keep the rows of a failed run for --resume, and say where they are; a partial
        output that holds no row is removed, so that it blocks no rerun."""
        partial = partial_path(self._target)
        if self.rows_written == 0 and not self.completed_ids:
            partial.unlink(missing_ok=True)
            self._stream.close()  # unlinked first: a rival run never opens a stale partial
            return
        self._stream.close()
        _kept.append(partial)


def open_writer(
    path: str | os.PathLike[str],
    fmt: str = "tsv",
    columns: Sequence[str] = ANNOTATION_COLUMNS,
    provenance: Mapping[str, str] | None = None,
    *,
    force: bool = False,
    resume: bool = False,
    resume_keys: Sequence[str] = (),
) -> TableWriter:
    """Open an output for rows with ``columns`` in format ``fmt`` (tsv, jsonl or json).

    ``path`` ``"-"`` writes straight to stdout. Otherwise rows go to
    ``<path>.partial``, which replaces ``path`` when the ``with`` block exits
    without an exception and is kept when it raises. An existing output (or
    partial output) is an error unless ``force`` is set. With ``resume``, an
    existing partial output is continued if its provenance agrees with this
    run's on every key in ``resume_keys``.
    """
    if fmt not in _ENCODERS:
        raise OutputUsageError(
            f"unknown output format {fmt!r} (choose one of: {', '.join(FORMATS)})"
        )
    columns = tuple(columns)
    provenance = dict(provenance or {})
    if os.fspath(path) == STDOUT:
        if resume:
            raise OutputUsageError(
                "cannot resume output written to stdout; give an output file to use --resume"
            )
        encoder = _ENCODERS[fmt](columns)
        sys.stdout.write(encoder.header(provenance))
        sys.stdout.flush()
        return TableWriter(sys.stdout, encoder)
    if resume and "id" not in columns:
        raise OutputUsageError("resuming needs an 'id' column to know which sequences are done")
    target = Path(path)
    _check_not_written(target, force=force, resume=resume)
    return _open_partial(
        target, fmt, columns, provenance, resume=resume, force=force, resume_keys=resume_keys
    )


def check_output_path(path: str | os.PathLike[str], *, force: bool, resume: bool) -> None:
    """Fail as `open_writer` would on an existing output, before any slow work starts."""
    if os.fspath(path) != STDOUT:
        _check_not_written(Path(path), force=force, resume=resume)


def _check_not_written(target: Path, *, force: bool, resume: bool) -> None:
    if target.is_dir():
        raise OutputUsageError(f"{target}: is a directory; the output names a file")
    if not target.parent.is_dir():
        raise OutputUsageError(f"{target}: the folder {target.parent} does not exist")
    partial = partial_path(target)
    if _is_locked(partial):
        raise OutputLockedError(_locked_message(partial))
    if force:
        return
    if target.exists():
        if resume:
            raise OutputExistsError(
                f"{target} is already complete, nothing to resume (use --force to overwrite it)"
            )
        raise OutputExistsError(f"{target} already exists (use --force to overwrite it)")
    if partial.exists() and not resume:
        raise OutputExistsError(
            f"{partial} exists from an interrupted run "
            "(use --resume to continue it or --force to start over)"
        )


def _open_partial(
    target: Path,
    fmt: str,
    columns: tuple[str, ...],
    provenance: dict[str, str],
    *,
    resume: bool,
    force: bool,
    resume_keys: Sequence[str],
) -> _PartialFileWriter:
    encoder = _PARTIAL_ENCODERS[fmt](columns)
    partial = partial_path(target)
    stream = open(_claim(partial, resume=resume, force=force), "a", encoding="utf-8", newline="")
    try:
        if resume and _drop_incomplete_line(partial) > 0:
            completed = _resumable_ids(partial, fmt, columns, provenance, resume_keys)
        else:
            completed = frozenset()
            stream.write(encoder.header(provenance))
            stream.flush()
    except BaseException:
        stream.close()
        raise
    return _PartialFileWriter(stream, encoder, completed, target, fmt)


# --- one run per partial file -------------------------------------------------
# The lock is flock(2)'s, on the open file: the kernel drops it when the run ends, however it
# ends, so a partial left by a killed run is never mistaken for a live one.

_WRITE = os.O_WRONLY | os.O_APPEND


def _locked_message(partial: Path) -> str:
    return (
        f"{partial}: another seqchat run is writing this file "
        "(wait for it to finish, or write to another output)"
    )


def _is_locked(partial: Path) -> bool:
    """Whether a live run holds ``partial``."""
    try:
        fd = os.open(partial, os.O_RDONLY)
    except OSError:  # absent; one that cannot be opened is reported when it is claimed
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _claim(partial: Path, *, resume: bool, force: bool) -> int:
    """Open ``partial`` for appending, locked for this run: the existing file when resuming,
    else a new one, created exclusively (after ``force`` removed a leftover no run holds)."""
    try:
        if resume and partial.exists():
            fd = os.open(partial, _WRITE)
        else:
            if force:
                _remove_leftover(partial)
            fd = os.open(partial, _WRITE | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:  # another run created it since it was checked
        raise OutputLockedError(_locked_message(partial)) from None
    except OSError as error:
        raise OutputError(f"{partial}: cannot be written ({error.strerror})") from None
    _lock(fd, partial)
    return fd


def _lock(fd: int, partial: Path) -> None:
    """Take the lock on ``fd``, opened on ``partial``, or close it and fail.

    Once locked, the file must still be the one at that path: the run that held it may have
    finished and renamed it, or a ``--force`` run replaced it, between the open and the lock.
    """
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        ours = os.path.samestat(os.fstat(fd), os.stat(partial))
    except (BlockingIOError, FileNotFoundError):
        ours = False
    except OSError as error:
        os.close(fd)
        raise OutputError(f"{partial}: cannot be locked ({error.strerror})") from None
    if not ours:
        os.close(fd)
        raise OutputLockedError(_locked_message(partial))


def _remove_leftover(partial: Path) -> None:
    """Delete the partial output of a run that is over; fail if a live run holds it."""
    try:
        fd = os.open(partial, _WRITE)
    except FileNotFoundError:
        return
    _lock(fd, partial)
    try:
        partial.unlink()
    finally:
        os.close(fd)


def _drop_incomplete_line(path: Path) -> int:
    """Cut ``path`` after its last newline, dropping a row cut short by a crash.

    Returns the new size.
    """
    with open(path, "r+b") as handle:
        size = sum(len(line) for line in handle if line.endswith(b"\n"))
        handle.truncate(size)
    return size


def _resumable_ids(
    partial: Path,
    fmt: str,
    columns: tuple[str, ...],
    provenance: Mapping[str, str],
    resume_keys: Sequence[str],
) -> frozenset[str]:
    """Return the ids in ``partial`` after checking it was written by an equivalent run."""
    cannot = f"{partial}: cannot resume:"
    with open_table_file(partial) as handle:
        table = parse_table(handle, str(partial))
        written = table.target_fmt or table.fmt
        # Unmarked JSON Lines may also be a JSON run's partial from before they were marked.
        if written != fmt and (written, fmt) != ("jsonl", "json"):
            raise ResumeMismatchError(f"{cannot} it holds {written} output, this run writes {fmt}")
        for key in resume_keys:
            before, now = table.provenance.get(key), provenance.get(key)
            if before != now:
                raise ResumeMismatchError(
                    f"{cannot} {key!r} differs (partial has {before!r}, this run has {now!r}); "
                    "use --force to start over"
                )
        if table.columns is not None:
            _check_columns(table.columns, columns, cannot)
        ids = set()
        for row in table.rows:
            _check_columns(tuple(row), columns, cannot)
            ids.add(str(row["id"]))
    return frozenset(ids)


def _check_columns(found: tuple[str, ...], expected: tuple[str, ...], cannot: str) -> None:
    if found != expected:
        raise ResumeMismatchError(
            f"{cannot} its columns ({', '.join(found)}) "
            f"differ from this run's ({', '.join(expected)})"
        )


def _publish_json(partial: Path, target: Path) -> None:
    """Stream the JSON Lines partial into the final JSON document, then replace the target."""
    staging = Path(f"{target}.tmp")
    try:
        with (
            open(partial, encoding="utf-8") as lines,
            open(staging, "w", encoding="utf-8", newline="") as out,
        ):
            document = _JsonEncoder(())
            out.write(document.header(json.loads(lines.readline())["provenance"]))
            for line in lines:
                out.write(document.item(line.rstrip("\n")))
            out.write(document.footer())
            out.flush()
            os.fsync(out.fileno())
        os.replace(staging, target)
    finally:
        staging.unlink(missing_ok=True)
    partial.unlink()
