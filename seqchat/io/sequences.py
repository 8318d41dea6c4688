"""Read DNA/RNA FASTA input as validated, canonical sequence records.

Input is streamed one record at a time, so memory stays flat however many
records a file holds. Every problem with the input is reported as a
one-line :class:`SequenceInputError` naming the file and, where there is
one, the record.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO, cast

from Bio.SeqIO.FastaIO import SimpleFastaParser

from seqchat.errors import SeqchatError
from seqchat.io.compressed import (
    DECOMPRESSION_ERRORS,
    MAGIC_LENGTH,
    compression_of,
    decompressed,
)

__all__ = [
    "NUCLEOTIDE_LETTERS",
    "STDIN",
    "SequenceInputError",
    "SequenceRecord",
    "canonical_sequence",
    "read_records",
]

STDIN = "-"
"""The path that means standard input."""

NUCLEOTIDE_LETTERS = "ACGTURYSWKMBDHVN"
"""IUPAC nucleotide codes accepted in input (case-insensitive)."""

_INVALID_LETTER = re.compile(f"[^{NUCLEOTIDE_LETTERS}{NUCLEOTIDE_LETTERS.lower()}]")
# Amino-acid codes that are not nucleotide codes: their presence means the
# user most likely gave a protein FASTA.
_PROTEIN_ONLY_LETTERS = frozenset("EFIJLOPQZ")
_GAP_CHARACTERS = frozenset("-.")


class SequenceInputError(SeqchatError, ValueError):
    """Unusable sequence input; the message is one line naming file and record."""


@dataclass(frozen=True)
class SequenceRecord:
    """One validated sequence from the input stream."""

    id: str
    description: str
    """The rest of the FASTA header after the id ("" if there is none)."""
    sequence: str
    """Uppercase DNA letters (U already converted to T), no whitespace."""
    source: str
    """The file name as given, or "-" for standard input."""
    index: int
    """0-based position in the whole input stream, across all files."""

    @property
    def length(self) -> int:
        return len(self.sequence)


def canonical_sequence(raw: str) -> str:
    """Normalise and validate one sequence string.

    Whitespace is removed, letters are uppercased and U becomes T: DNA is the
    canonical alphabet here, and encoders convert to their own alphabet.
    Raises :class:`SequenceInputError` (without file context) if the sequence
    is empty or holds anything but IUPAC nucleotide letters.
    """
    sequence = _remove_whitespace(raw)
    if not sequence:
        raise SequenceInputError("the sequence is empty")
    return _validated(sequence)


def read_records(
    paths: Sequence[str | os.PathLike[str]],
    stdin: BinaryIO | None = None,
) -> Iterator[SequenceRecord]:
    """Stream the records of several FASTA files, in order.

    ``"-"`` reads standard input (``stdin`` if given, else the binary buffer
    of ``sys.stdin``). Compressed input (gzip, bzip2, xz, zstd) is recognised by its
    content, not its name.
    Ids must be unique across all inputs, and every input must hold at least
    one record.
    """
    first_seen: dict[str, str] = {}
    index = 0
    for path in paths:
        source = os.fspath(path)
        label = _label(source)
        number = 0
        for number, (title, raw) in enumerate(_fasta_entries(source, stdin), start=1):
            record = _record(title, raw, source, index, number)
            if record.id in first_seen:
                raise SequenceInputError(
                    f"{label}: duplicate id {record.id!r} "
                    f"(first seen in {_label(first_seen[record.id])})"
                )
            first_seen[record.id] = source
            index += 1
            yield record
        if number == 0:
            raise SequenceInputError(f"{label}: no FASTA records found")


def _record(title: str, raw: str, source: str, index: int, number: int) -> SequenceRecord:
    """Build a record from a parsed header and raw sequence, or explain why not."""
    label = _label(source)
    fields = title.split(maxsplit=1)
    if not fields:
        raise SequenceInputError(f"{label}: record {number} has no id (empty '>' line)")
    record_id = fields[0]
    sequence = _remove_whitespace(raw)
    if not sequence:
        raise SequenceInputError(f"{label}: record {record_id!r} has no sequence")
    try:
        sequence = _validated(sequence)
    except SequenceInputError as error:
        raise SequenceInputError(f"{label}: record {record_id!r}: {error}") from None
    description = fields[1] if len(fields) == 2 else ""
    return SequenceRecord(record_id, description, sequence, source, index)


def _remove_whitespace(raw: str) -> str:
    return "".join(raw.split())


def _validated(sequence: str) -> str:
    """Return ``sequence`` (whitespace-free) uppercased with U as T, if valid."""
    offender = _INVALID_LETTER.search(sequence)
    if offender is not None:
        char = offender.group()
        raise SequenceInputError(
            f"{char!r} at position {offender.start() + 1} "
            f"is not a nucleotide letter{_hint(char)}"
        )
    # Only ASCII letters are left, so uppercasing cannot shift positions.
    return sequence.upper().replace("U", "T")


def _hint(char: str) -> str:
    if char.upper() in _PROTEIN_ONLY_LETTERS:
        return " (is this a protein FASTA?)"
    if char in _GAP_CHARACTERS:
        return " (alignment gaps are not allowed)"
    return ""


def _label(source: str) -> str:
    return "<stdin>" if source == STDIN else source


def _fasta_entries(source: str, stdin: BinaryIO | None) -> Iterator[tuple[str, str]]:
    """Yield ``(title, raw sequence)`` pairs, turning decoding failures into input errors."""
    label = _label(source)
    with _open_text(source, stdin) as (text, compression):
        try:
            yield from SimpleFastaParser(_checked_lines(text, label))
        except UnicodeDecodeError:
            raise SequenceInputError(f"{label}: not a FASTA file (binary content)") from None
        except DECOMPRESSION_ERRORS as error:
            raise SequenceInputError(f"{label}: corrupt {compression} data ({error})") from None


def _checked_lines(lines: Iterable[str], label: str) -> Iterator[str]:
    """Pass lines through, rejecting NUL bytes and text before the first header.

    SimpleFastaParser silently skips text before the first '>', which would
    hide that the user gave us some other kind of file.
    """
    in_records = False
    for number, line in enumerate(lines, start=1):
        if "\x00" in line:
            raise SequenceInputError(f"{label}: not a FASTA file (binary content)")
        if not in_records:
            if line.startswith(">"):
                in_records = True
            elif line.strip():
                raise SequenceInputError(
                    f"{label}: not a FASTA file: expected '>' at line {number}"
                )
        yield line


@contextlib.contextmanager
def _open_text(
    source: str, stdin: BinaryIO | None
) -> Iterator[tuple[io.TextIOWrapper, str | None]]:
    """Open a file or stdin as UTF-8 text, decompressed if it is gzip, bzip2, xz or zstd.

    Standard input is never closed: the wrappers are detached from it instead.
    """
    with contextlib.ExitStack() as stack:
        if source == STDIN:
            binary = _peekable(stdin if stdin is not None else sys.stdin.buffer, stack)
        else:
            binary = stack.enter_context(_open_binary(source))
        compression = compression_of(binary.peek(MAGIC_LENGTH))
        stream = decompressed(binary, compression)
        # utf-8-sig drops a byte-order mark that some editors put at the start.
        text = io.TextIOWrapper(stream, encoding="utf-8-sig")
        try:
            yield text, compression
        finally:
            text.detach()
            if compression is not None:
                stream.close()  # leaves `binary` open


def _peekable(stream: BinaryIO, stack: contextlib.ExitStack) -> io.BufferedReader:
    """Return ``stream`` as a reader whose first bytes can be seen without consuming them."""
    if isinstance(stream, io.BufferedReader):
        return stream
    # BufferedReader only needs readinto(), which binary streams such as BytesIO have.
    reader = io.BufferedReader(cast(io.RawIOBase, stream))
    stack.callback(reader.detach)
    return reader


def _open_binary(path: str) -> io.BufferedReader:
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise SequenceInputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise SequenceInputError(f"{path}: is a directory, not a FASTA file") from None
    except OSError as error:
        raise SequenceInputError(f"{path}: cannot open ({error.strerror})") from None
