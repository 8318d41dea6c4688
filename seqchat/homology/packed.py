"""Packed reference sets: a bundle can ship its references as one compressed JSONL of
annotated sequences (megabytes in git) instead of the index built from it (about 9 bytes a
nucleotide). The index is built once, at first use, into `$SEQCHAT_HOME/cache/reference/`,
named after the packed file's hash, and reused by every later run."""

from __future__ import annotations

from pathlib import Path

from seqchat.homology.build import build_reference
from seqchat.homology.errors import ReferenceBuildError
from seqchat.homology.reference import MANIFEST
from seqchat.io.digest import sha256_file

__all__ = ["reference_directory"]


def reference_directory(source: Path, cache: Path, *, name: str, threads: int = 1) -> Path:
    """`source` when it is a reference set directory; when it is a packed reference (a file),
    its index under `cache`, built there first if it is not yet."""
    if source.is_dir():
        return source
    index = cache / f"{name}-{sha256_file(source)[:16]}"
    if (index / MANIFEST).is_file():
        return index
    try:
        build_reference([source], [], index, source_label=name, threads=threads, force=True)
    except OSError as error:
        if (index / MANIFEST).is_file():  # another run built it at the same time
            return index
        raise ReferenceBuildError(f"{index}: cannot build the reference set ({error})") from None
    return index
