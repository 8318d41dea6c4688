"""Write per-sequence results as TSV, JSON Lines or JSON (read back by `seqchat.io.tables`).

A file is written as ``<path>.partial``, one flushed row at a time, and
published onto ``<path>`` only when the run finishes cleanly. An interrupted
run therefore never leaves a complete-looking but truncated output, and its
partial file lets ``--resume`` continue where it stopped. A run holds an
exclusive lock on its partial file until it ends, so that a second run for
the same output fails at once instead of writing into it.

The partial is always uncompressed text that starts with the run's provenance (so that it
can be appended to and checked on resume). Publishing gives each format its own form: TSV
keeps its ``#`` header; JSON Lines holds rows only, one schema, with the provenance in a
sidecar ``<path>.provenance.json``; JSON is one document ``{"provenance", "results"}``.
A path ending in ``.gz`` is published gzip-compressed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

from seqchat.io.formats import (
    ENCODERS,
    PARTIAL_ENCODERS,
    Encoder,
    provenance_sidecar,
    publish,
)
from seqchat.io.locks import OutputLockedError, claim, is_locked, locked_message
from seqchat.io.tables import OutputError, OutputFormatError, open_table_file, parse_table

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
    "provenance_sidecar",
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


def partial_path(path: str | os.PathLike[str]) -> Path:
    """Where output for ``path`` is written until the run completes."""
    return Path(f"{os.fspath(path)}.partial")


_kept: list[Path] = []


def kept_partials() -> tuple[Path, ...]:
    """The partial outputs that writers of this process kept when a run failed or was
    interrupted, for the command line to say where the rows are."""
    return tuple(_kept)


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
        encoder: Encoder,
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
        encoder: Encoder,
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
        try:
            publish(partial_path(self._target), self._target, self._fmt)
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
    if fmt not in ENCODERS:
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
        encoder = ENCODERS[fmt](columns)
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
    if is_locked(partial):
        raise OutputLockedError(locked_message(partial))
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
    encoder = PARTIAL_ENCODERS[fmt](columns)
    partial = partial_path(target)
    stream = open(claim(partial, resume=resume, force=force), "a", encoding="utf-8", newline="")
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


