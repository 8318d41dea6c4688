"""Reference inputs: sequences (FASTA or JSONL) and annotations (TSV or JSONL).

The format of a file is told by its content, not its name: JSONL starts with ``{``,
FASTA with ``>``; an annotation file that is not JSONL is TSV. JSONL and TSV may be
compressed with gzip, xz or bzip2; FASTA with gzip (the FASTA reader's own rule).
Annotation fields, whether inline in a sequence JSONL or in an annotation file:

- ``description`` (or ``text``, as the shared training sets name it): required;
- ``product``: optional;
- ``family`` (else ``rfam_acc``, else ``label``): optional;
- ``go``: a list or a ``;``-joined string; without it, the SGD columns ``go_function``,
  ``go_process`` and ``go_component`` are joined instead.

Every problem is a one-line :class:`ReferenceInputError` naming the file and the line or
record.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import json
import lzma
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import IO

from seqchat.homology.errors import ReferenceInputError
from seqchat.io.compressed import DECOMPRESSION_ERRORS, MAGIC_LENGTH, compression_of
from seqchat.io.sequences import SequenceInputError, canonical_sequence, read_records

__all__ = ["Annotation", "RawReference", "read_annotations", "read_sequences"]

_DESCRIPTION_FIELDS = ("description", "text")
_FAMILY_FIELDS = ("family", "rfam_acc", "label")
_SGD_GO_FIELDS = ("go_function", "go_process", "go_component")
_TEXT_OPENERS = {"gzip": gzip.open, "xz": lzma.open, "bzip2": bz2.open}
"""How a compressed text file is opened, by what `seqchat.io.compressed` recognises."""
# Fewer ACGT/N than this means protein letters that happen to be IUPAC codes (A, C, G, T,
# M, K, R, S, W, Y, H, D, V, B are all amino acids too).
_MIN_PLAIN_NUCLEOTIDE_FRACTION = 0.5


@dataclass(frozen=True)
class Annotation:
    """What a reference says about itself; empty strings and tuples mean "not given"."""

    description: str = ""
    product: str = ""
    family: str = ""
    go: tuple[str, ...] = ()

    def overridden_by(self, other: Annotation) -> Annotation:
        """This annotation with every field that ``other`` gives replaced by other's."""
        return Annotation(
            other.description or self.description,
            other.product or self.product,
            other.family or self.family,
            other.go or self.go,
        )


@dataclass(frozen=True)
class RawReference:
    """One validated reference sequence as read, before coding detection."""

    id: str
    sequence: str
    """Canonical DNA: uppercase, U as T."""
    annotation: Annotation
    source: str


def read_sequences(path: str | os.PathLike[str]) -> Iterator[RawReference]:
    """The records of one FASTA or JSONL sequence file; FASTA headers are not descriptions."""
    source = os.fspath(path)
    if _first_character(source) == "{":
        yield from _jsonl_sequences(source)
        return
    for record in read_records([source]):
        _check_not_protein(source, record.id, record.sequence)
        yield RawReference(record.id, record.sequence, Annotation(), source)


def read_annotations(path: str | os.PathLike[str]) -> Iterator[tuple[str, Annotation]]:
    """(id, annotation) pairs of one TSV or JSONL annotation file."""
    source = os.fspath(path)
    if _first_character(source) == "{":
        for number, record_id, fields in _jsonl_objects(source):
            annotation = annotation_from(fields)
            if not annotation.description:
                raise ReferenceInputError(
                    f"{source}: line {number}: record {record_id!r} has no description"
                )
            yield record_id, annotation
        return
    yield from _tsv_annotations(source)


def annotation_from(fields: Mapping[str, object]) -> Annotation:
    """The annotation held by a JSON object or TSV row (see the module docstring)."""
    go = fields.get("go")
    if go is None:
        go = ";".join(str(fields[name]) for name in _SGD_GO_FIELDS if fields.get(name))
    return Annotation(
        description=_first_text(fields, _DESCRIPTION_FIELDS),
        product=_first_text(fields, ("product",)),
        family=_first_text(fields, _FAMILY_FIELDS),
        go=_go_terms(go),
    )


def _jsonl_sequences(source: str) -> Iterator[RawReference]:
    for number, record_id, fields in _jsonl_objects(source):
        raw = fields.get("sequence")
        if not isinstance(raw, str):
            raise ReferenceInputError(
                f"{source}: line {number}: record {record_id!r} has no 'sequence' string"
            )
        try:
            sequence = canonical_sequence(raw)
        except SequenceInputError as error:
            raise ReferenceInputError(f"{source}: record {record_id!r}: {error}") from None
        _check_not_protein(source, record_id, sequence)
        yield RawReference(record_id, sequence, annotation_from(fields), source)


def _jsonl_objects(source: str) -> Iterator[tuple[int, str, dict[str, object]]]:
    """(line number, id, object) for every non-blank line of a JSONL file."""
    found = False
    with _open_text(source) as text:
        for number, line in enumerate(_checked(text, source), start=1):
            if not line.strip():
                continue
            try:
                fields = json.loads(line)
            except json.JSONDecodeError as error:
                raise ReferenceInputError(
                    f"{source}: line {number}: not valid JSON ({error.msg})"
                ) from None
            if not isinstance(fields, dict):
                raise ReferenceInputError(f"{source}: line {number}: not a JSON object")
            record_id = fields.get("id")
            if not isinstance(record_id, str) or not record_id.strip():
                raise ReferenceInputError(f"{source}: line {number}: no 'id' string")
            found = True
            yield number, record_id.strip(), fields
    if not found:
        raise ReferenceInputError(f"{source}: no records found")


def _tsv_annotations(source: str) -> Iterator[tuple[str, Annotation]]:
    with _open_text(source) as text:
        rows = csv.reader(_checked(text, source), delimiter="\t", quoting=csv.QUOTE_NONE)
        header = [name.strip() for name in next(rows, [])]
        if "id" not in header or not set(_DESCRIPTION_FIELDS) & set(header):
            raise ReferenceInputError(
                f"{source}: line 1: a TSV annotation file needs a header with 'id' and "
                "'description' columns"
            )
        found = False
        for number, row in enumerate(rows, start=2):
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise ReferenceInputError(
                    f"{source}: line {number}: {len(row)} fields, the header has {len(header)}"
                )
            fields = {name: cell.strip() for name, cell in zip(header, row) if cell.strip()}
            record_id = fields.get("id", "")
            annotation = annotation_from(fields)
            if not record_id:
                raise ReferenceInputError(f"{source}: line {number}: empty id")
            if not annotation.description:
                raise ReferenceInputError(
                    f"{source}: line {number}: record {record_id!r} has no description"
                )
            found = True
            yield record_id, annotation
    if not found:
        raise ReferenceInputError(f"{source}: no annotation rows found")


def _check_not_protein(source: str, record_id: str, sequence: str) -> None:
    plain = sum(sequence.count(letter) for letter in "ACGTN")
    if plain < _MIN_PLAIN_NUCLEOTIDE_FRACTION * len(sequence):
        raise ReferenceInputError(
            f"{source}: record {record_id!r}: mostly ambiguous letters "
            "(is this a protein FASTA?)"
        )


def _first_text(fields: Mapping[str, object], names: tuple[str, ...]) -> str:
    for name in names:
        value = fields.get(name)
        if value is not None and str(value).strip():
            return " ".join(str(value).split())
    return ""


def _go_terms(value: object) -> tuple[str, ...]:
    """GO terms from a list or a ';'-joined string, stripped, in order, without repeats."""
    items = value if isinstance(value, list) else str(value or "").split(";")
    terms = (" ".join(str(item).split()) for item in items)
    return tuple(dict.fromkeys(term for term in terms if term))


def _first_character(source: str) -> str:
    """The first non-blank character of a (possibly gzipped) file; "" if there is none."""
    with _open_text(source) as text:
        for line in _checked(text, source):
            stripped = line.strip()
            if stripped:
                return stripped[0]
    return ""


def _checked(lines: IO[str], source: str) -> Iterator[str]:
    """The lines of a text file, with decoding and gzip failures as input errors."""
    try:
        yield from lines
    except UnicodeDecodeError:
        raise ReferenceInputError(f"{source}: not a text file (binary content)") from None
    except DECOMPRESSION_ERRORS as error:
        raise ReferenceInputError(f"{source}: corrupt compressed data ({error})") from None


def _open_text(source: str) -> IO[str]:
    try:
        with open(source, "rb") as probe:
            compression = compression_of(probe.read(MAGIC_LENGTH))
        if compression is None:
            return open(source, encoding="utf-8-sig")
        if compression not in _TEXT_OPENERS:
            raise ReferenceInputError(f"{source}: {compression} input is not read here (use gzip, bzip2 or xz)")
        return _TEXT_OPENERS[compression](source, "rt", encoding="utf-8-sig")  # type: ignore[no-any-return]
    except FileNotFoundError:
        raise ReferenceInputError(f"{source}: no such file") from None
    except IsADirectoryError:
        raise ReferenceInputError(f"{source}: is a directory, not a file") from None
    except OSError as error:
        raise ReferenceInputError(f"{source}: cannot open ({error.strerror})") from None
