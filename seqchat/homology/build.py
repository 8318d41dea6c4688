"""Build a reference set from sequence and annotation files (see :mod:`.reference`).

The build streams: records go to a staging SQLite file as they are read, are then
numbered in id order (so the result does not depend on file order), checked for coding
ORFs and cut into k-mers a chunk at a time. Everything is written to a temporary sibling
of the output directory, renamed into place only when complete.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

import numpy as np

from seqchat import __version__
from seqchat.homology import kmers
from seqchat.homology.errors import ReferenceBuildError, ReferenceInputError
from seqchat.homology.index import IndexWriter, index_keys
from seqchat.homology.inputs import read_annotations, read_sequences
from seqchat.homology.orf import Orf, find_orf
from seqchat.homology.parallel import ordered_map
from seqchat.homology.reference import (
    CODING,
    DATABASE,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    ReferenceInfo,
    load_reference,
)

__all__ = ["DEFAULT_NUCLEOTIDE_K", "DEFAULT_PROTEIN_K", "build_reference"]

DEFAULT_NUCLEOTIDE_K = 13
DEFAULT_PROTEIN_K = 5
KMER_BUDGET = 50_000_000
"""Sampling is chosen so each index holds about this many k-mers at most (~400 MB)."""
MAX_POSTINGS = 1000
_CHUNK = 2048
_HASH_PREFIX = b"seqchat-reference-content-v1\n"


def build_reference(
    sequence_paths: Sequence[str | os.PathLike[str]],
    annotation_paths: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    source_label: str | None = None,
    threads: int = 1,
    force: bool = False,
    nucleotide_k: int = DEFAULT_NUCLEOTIDE_K,
    protein_k: int = DEFAULT_PROTEIN_K,
    sampling: int | None = None,
) -> ReferenceInfo:
    """Build a reference set in ``out_dir`` and describe it.

    ``source_label`` names the set in hits (default: the directory name). ``threads``
    threads cut chunks of references into k-mers. ``sampling`` keeps 1 k-mer in that many in both indexes
    (default: 1, or more when the set exceeds :data:`KMER_BUDGET` k-mers). An existing
    ``out_dir`` is an error unless ``force``, which replaces it once the new set is built.
    """
    out = Path(out_dir)
    if out.exists() and not force:
        raise ReferenceBuildError(f"{out}: already exists (force replaces it)")
    if not sequence_paths:
        raise ReferenceInputError("no sequence files given")
    _check_k(nucleotide_k, "nucleotide")
    _check_k(protein_k, "protein")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        _make_readable(partial)
        manifest = _build_into(
            partial, sequence_paths, annotation_paths, source_label or out.name,
            threads, nucleotide_k, protein_k, sampling,
        )
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        _move_into_place(partial, out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return load_reference(out).info()


def _hash_row(digest: hashlib._Hash, row: tuple[str, ...]) -> None:
    """Feed one (id, sequence, description, product, family, go JSON) row to the content hash."""
    digest.update(json.dumps(row, ensure_ascii=False, separators=(",", ":")).encode())
    digest.update(b"\n")


def _build_into(
    directory: Path,
    sequence_paths: Sequence[str | os.PathLike[str]],
    annotation_paths: Sequence[str | os.PathLike[str]],
    name: str,
    threads: int,
    nucleotide_k: int,
    protein_k: int,
    sampling: int | None,
) -> dict[str, object]:
    staging = _connect(directory / "staging.sqlite")
    staging.execute(
        "CREATE TABLE staging (id TEXT PRIMARY KEY, sequence TEXT, source TEXT, "
        "description TEXT, product TEXT, family TEXT, go TEXT)"
    )
    for path in sequence_paths:
        _stage_sequences(staging, path)
    unused = sum(_apply_annotations(staging, path) for path in annotation_paths)
    _check_described(staging)
    count, nucleotides = staging.execute(
        "SELECT count(*), sum(length(sequence)) FROM staging"
    ).fetchone()
    parameters = {
        "nucleotide_k": nucleotide_k,
        "protein_k": protein_k,
        "nucleotide_sampling": sampling or max(1, math.ceil(nucleotides / KMER_BUDGET)),
        # proteins are a third as long as their genes, at most
        "protein_sampling": sampling or max(1, math.ceil(nucleotides / 3 / KMER_BUDGET)),
        "max_postings": MAX_POSTINGS,
    }
    counts = _number_and_index(staging, directory, parameters, threads)
    staging.close()
    (directory / "staging.sqlite").unlink()
    sources = [_source("sequences", path) for path in sequence_paths]
    sources += [_source("annotations", path) for path in annotation_paths]
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": name,
        "content_sha256": counts.pop("content_sha256"),
        "counts": {"references": count, "nucleotides": nucleotides, **counts,
                   "unused_annotations": unused},
        "sources": sources,
        "seqchat_version": __version__,
        "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "parameters": parameters,
    }


def _stage_sequences(staging: sqlite3.Connection, path: str | os.PathLike[str]) -> None:
    insert = "INSERT INTO staging VALUES (?, ?, ?, ?, ?, ?, ?)"
    batch: list[tuple[str, ...]] = []
    for raw in read_sequences(path):  # raises for a file without records
        a = raw.annotation
        batch.append((raw.id, raw.sequence, raw.source, a.description, a.product, a.family,
                      json.dumps(a.go)))
        if len(batch) == _CHUNK:
            _insert_batch(staging, insert, batch)
            batch = []
    _insert_batch(staging, insert, batch)


def _insert_batch(staging: sqlite3.Connection, insert: str, batch: list[tuple[str, ...]]) -> None:
    try:
        with staging:
            staging.executemany(insert, batch)
    except sqlite3.IntegrityError:
        for row in batch:  # find which id it was, to name it
            first = staging.execute("SELECT source FROM staging WHERE id = ?", (row[0],))
            seen = first.fetchone()
            if seen is not None or sum(other[0] == row[0] for other in batch) > 1:
                where = seen[0] if seen is not None else row[2]
                raise ReferenceInputError(
                    f"{row[2]}: duplicate id {row[0]!r} (first seen in {where})"
                ) from None
        raise


def _apply_annotations(staging: sqlite3.Connection, path: str | os.PathLike[str]) -> int:
    """Merge one annotation file into the staged records; how many ids it has no record for."""
    source = os.fspath(path)
    staging.execute("CREATE TABLE IF NOT EXISTS annotated (id TEXT PRIMARY KEY, source TEXT)")
    unused = 0
    with staging:
        for record_id, a in read_annotations(source):
            try:
                staging.execute("INSERT INTO annotated VALUES (?, ?)", (record_id, source))
            except sqlite3.IntegrityError:
                (first,) = staging.execute(
                    "SELECT source FROM annotated WHERE id = ?", (record_id,)
                ).fetchone()
                raise ReferenceInputError(
                    f"{source}: duplicate annotation for {record_id!r} (first in {first})"
                ) from None
            updated = staging.execute(
                "UPDATE staging SET description = ?, product = coalesce(nullif(?, ''), product), "
                "family = coalesce(nullif(?, ''), family), "
                "go = CASE WHEN ? = '[]' THEN go ELSE ? END WHERE id = ?",
                (a.description, a.product, a.family, json.dumps(a.go), json.dumps(a.go),
                 record_id),
            )
            unused += updated.rowcount == 0
    return unused


def _check_described(staging: sqlite3.Connection) -> None:
    row = staging.execute(
        "SELECT id, source FROM staging WHERE description = '' ORDER BY rowid LIMIT 1"
    ).fetchone()
    if row is not None:
        raise ReferenceInputError(
            f"{row[1]}: record {row[0]!r} has no description (give one in an annotation file)"
        )


@dataclass(frozen=True)
class _Chunk:
    """A chunk of references in id order, and what the workers found in it."""

    start: int
    """The number of its first reference."""
    rows: list[tuple[str, ...]]
    """(id, sequence, description, product, family, go JSON) rows."""
    orfs: list[Orf | None] = field(default_factory=list)
    keys: dict[str, np.ndarray] = field(default_factory=dict)
    """Per path, the sorted distinct (k-mer << 32 | reference) keys."""


def _number_and_index(
    staging: sqlite3.Connection, directory: Path, parameters: dict[str, int], threads: int
) -> dict[str, object]:
    """Write the numbered references, their k-mer indexes and coding flags; the counts."""
    database = _connect(directory / DATABASE)
    database.execute(
        "CREATE TABLE refs (idx INTEGER PRIMARY KEY, id TEXT NOT NULL, description TEXT, "
        "product TEXT, family TEXT, go TEXT, sequence TEXT, protein TEXT, orf_strand TEXT)"
    )
    writers = {"nucleotide": IndexWriter(), "protein": IndexWriter()}
    coding: list[np.ndarray] = []
    digest = hashlib.sha256(_HASH_PREFIX)
    residues = 0
    rows = staging.execute(
        "SELECT id, sequence, description, product, family, go FROM staging ORDER BY id"
    )
    # one chunk ahead per thread: a chunk's k-mer arrays take ~100 MB
    for chunk in ordered_map(partial(_analyse, parameters), _chunks(rows), threads, ahead=1):
        for row in chunk.rows:
            _hash_row(digest, row)
        for name, writer in writers.items():
            writer.add(chunk.keys[name])
        residues += sum(len(orf.protein) for orf in chunk.orfs if orf)
        coding.append(np.array([orf is not None for orf in chunk.orfs], dtype=np.bool_))
        with database:
            database.executemany(
                "INSERT INTO refs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(chunk.start + i, row[0], *row[2:], row[1], orf and orf.protein,
                  orf and orf.strand) for i, (row, orf) in enumerate(zip(chunk.rows, chunk.orfs))],
            )
    database.execute("CREATE UNIQUE INDEX refs_id ON refs (id)")
    database.close()
    flags = np.concatenate(coding)
    np.save(directory / CODING, flags)
    entries = {f"{name}_index_entries": writer.write(directory, name, len(flags))
               for name, writer in writers.items()}
    return {"coding": int(flags.sum()), "protein_residues": residues, **entries,
            "content_sha256": digest.hexdigest()}


def _chunks(rows: sqlite3.Cursor) -> Iterator[_Chunk]:
    start = 0
    while batch := rows.fetchmany(_CHUNK):
        yield _Chunk(start, batch)
        start += len(batch)


def _analyse(parameters: dict[str, int], chunk: _Chunk) -> _Chunk:
    """Find the ORFs of a chunk and its k-mer keys (run on a worker thread)."""
    sequences = [row[1] for row in chunk.rows]
    orfs = [find_orf(sequence) for sequence in sequences]
    coding = [i for i, orf in enumerate(orfs) if orf is not None]
    texts = {
        "nucleotide": sequences,
        "protein": [orfs[i].protein for i in coding],  # type: ignore[union-attr]
    }
    numbers = {
        "nucleotide": np.arange(len(sequences), dtype=np.uint64) + np.uint64(chunk.start),
        "protein": np.asarray(coding, dtype=np.uint64) + np.uint64(chunk.start),
    }
    keys = {}
    for name, path_texts in texts.items():
        codes, owners = kmers.batch_kmers(
            path_texts, parameters[f"{name}_k"], protein=name == "protein"
        )
        keep = kmers.sampled(codes, parameters[f"{name}_sampling"])
        keys[name] = index_keys(codes[keep], numbers[name][owners[keep]])
    return _Chunk(chunk.start, chunk.rows, orfs, keys)


def _move_into_place(partial: Path, out: Path) -> None:
    if not out.exists():
        partial.rename(out)
        return
    old = out.with_name(f".{out.name}.replaced")
    shutil.rmtree(old, ignore_errors=True)
    out.rename(old)
    partial.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def _make_readable(directory: Path) -> None:
    """Give the directory the permissions of a plain ``mkdir`` (mkdtemp makes it private)."""
    umask = os.umask(0)
    os.umask(umask)
    directory.chmod(0o777 & ~umask)


def _source(role: str, path: str | os.PathLike[str]) -> dict[str, str]:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return {"role": role, "name": Path(path).name, "sha256": digest.hexdigest()}


def _connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA journal_mode = OFF")
    connection.execute("PRAGMA synchronous = OFF")
    return connection


def _check_k(k: int, path: str) -> None:
    if not 3 <= k <= kmers.MAX_K[path]:
        raise ReferenceBuildError(f"{path} k-mer size {k} is not in 3..{kmers.MAX_K[path]}")
