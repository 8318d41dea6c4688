"""A reference set on disk, opened for search: its manifest, prefilter indexes and records.

A reference directory holds

- ``manifest.json``: format version, counts, content hash, sources, build parameters;
- ``references.sqlite``: one row per reference (id, annotation, sequence, protein),
  numbered 0.. in id order;
- ``coding.npy``: which references have a protein;
- ``nucleotide_{kmers,refs}.npy`` and ``protein_{kmers,refs}.npy``: the k-mer indexes.

Opening one maps the arrays and reads the manifest, whatever the size of the set; the
records are read from SQLite only for the candidates a query needs.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from seqchat.homology.errors import ReferenceLoadError
from seqchat.homology.index import KmerIndex

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "Reference",
    "ReferenceEntry",
    "ReferenceInfo",
    "SourceFile",
    "load_reference",
]

FORMAT = "seqchat-reference"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DATABASE = "references.sqlite"
CODING = "coding.npy"
PATHS = ("nucleotide", "protein")


@dataclass(frozen=True)
class SourceFile:
    role: str
    """"sequences" or "annotations"."""
    name: str
    """The file's base name."""
    sha256: str


@dataclass(frozen=True)
class ReferenceInfo:
    """What ``seqchat reference info`` prints about a reference set."""

    name: str
    path: Path
    content_sha256: str
    references: int
    coding: int
    nucleotides: int
    sources: tuple[SourceFile, ...]
    seqchat_version: str
    format_version: int
    parameters: Mapping[str, Any]

    def lines(self) -> list[str]:
        """Plain-text lines, one fact each."""
        lines = [
            f"name: {self.name}",
            f"path: {self.path}",
            f"references: {self.references} ({self.coding} coding)",
            f"nucleotides: {self.nucleotides}",
            f"content sha256: {self.content_sha256}",
            f"built by: seqchat {self.seqchat_version} (format {self.format_version})",
        ]
        lines += [f"{s.role}: {s.name} (sha256 {s.sha256})" for s in self.sources]
        return lines


@dataclass(frozen=True)
class ReferenceEntry:
    """One reference as stored."""

    index: int
    id: str
    description: str
    product: str
    family: str
    go: tuple[str, ...]
    sequence: str
    protein: str | None
    """The translation of its coding ORF; None if it is not coding."""
    orf_strand: str | None
    """The strand of that ORF: "+" or "-"."""


class Reference:
    """An opened reference set; safe to share between search threads."""

    def __init__(
        self,
        path: Path,
        manifest: Mapping[str, Any],
        indexes: Mapping[str, KmerIndex],
        coding: np.ndarray,
    ) -> None:
        self.path = path
        self.manifest = manifest
        self.indexes = indexes
        self.coding = coding
        """Boolean array over reference numbers: which references have a protein."""
        self._local = threading.local()

    @property
    def name(self) -> str:
        return str(self.manifest["name"])

    @property
    def content_sha256(self) -> str:
        return str(self.manifest["content_sha256"])

    @property
    def parameters(self) -> Mapping[str, Any]:
        return self.manifest["parameters"]  # type: ignore[no-any-return]

    @property
    def counts(self) -> Mapping[str, int]:
        return self.manifest["counts"]  # type: ignore[no-any-return]

    def info(self) -> ReferenceInfo:
        manifest = self.manifest
        counts = self.counts
        return ReferenceInfo(
            name=self.name,
            path=self.path,
            content_sha256=self.content_sha256,
            references=counts["references"],
            coding=counts["coding"],
            nucleotides=counts["nucleotides"],
            sources=tuple(SourceFile(**source) for source in manifest["sources"]),
            seqchat_version=manifest["seqchat_version"],
            format_version=manifest["format_version"],
            parameters=self.parameters,
        )

    def entries(self, indices: Sequence[int]) -> list[ReferenceEntry]:
        """The stored references with these numbers, in the same order."""
        if not indices:
            return []
        marks = ",".join("?" * len(indices))
        rows = self._connection().execute(
            "SELECT idx, id, description, product, family, go, sequence, protein, orf_strand "
            f"FROM refs WHERE idx IN ({marks})",
            list(indices),
        )
        by_index = {row[0]: row for row in rows}
        return [_entry(by_index[index]) for index in indices]

    def _connection(self) -> sqlite3.Connection:
        """This thread's read-only connection (sqlite3 connections are per thread)."""
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = open_database(self.path / DATABASE)
            self._local.connection = connection
        return connection


def load_reference(directory: str | Path) -> Reference:
    """Open a reference directory written by ``build_reference``.

    Raises :class:`ReferenceLoadError` (one line) if it is missing, is not a reference
    set, comes from another format version or is damaged.
    """
    path = Path(directory)
    if not path.is_dir():
        raise ReferenceLoadError(f"{path}: no such reference directory")
    manifest = _manifest(path)
    try:
        indexes = {
            name: KmerIndex.load(path, name, manifest["parameters"]["max_postings"])
            for name in PATHS
        }
        coding = np.load(path / CODING, mmap_mode="r")
        connection = open_database(path / DATABASE)
        (stored,) = connection.execute("SELECT coalesce(max(idx) + 1, 0) FROM refs").fetchone()
        connection.close()
    except (OSError, ValueError, KeyError, sqlite3.Error) as error:
        raise ReferenceLoadError(f"{path}: corrupt reference set ({error})") from None
    expected = manifest["counts"]["references"]
    if coding.dtype != np.bool_ or len(coding) != expected or stored != expected:
        raise ReferenceLoadError(
            f"{path}: corrupt reference set (the manifest counts {expected} references)"
        )
    return Reference(path, manifest, indexes, coding)


def open_database(path: Path) -> sqlite3.Connection:
    """A read-only connection; ``immutable`` because reference sets are written once."""
    if not path.is_file():
        raise sqlite3.OperationalError(f"{path.name} is missing")
    return sqlite3.connect(
        f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True, check_same_thread=False
    )


def _manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReferenceLoadError(f"{path}: not a reference set (no {MANIFEST})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ReferenceLoadError(f"{path}: corrupt {MANIFEST} ({error})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ReferenceLoadError(f"{path}: {MANIFEST} is not a seqchat reference manifest")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise ReferenceLoadError(
            f"{path}: reference format version {version}, this seqchat reads version "
            f"{FORMAT_VERSION} (rebuild it with `seqchat reference build`)"
        )
    return manifest


def _entry(row: tuple[Any, ...]) -> ReferenceEntry:
    index, ref_id, description, product, family, go, sequence, protein, strand = row
    return ReferenceEntry(
        index, ref_id, description, product, family, tuple(json.loads(go)), sequence,
        protein, strand,
    )
