"""Compressed input, recognised by its first bytes (never by its name): gzip, bzip2 and xz
from the standard library, zstd through the `zstandard` package when it is installed.
The one place seqchat decompresses what it reads."""

from __future__ import annotations

import bz2
import gzip
import lzma
import zlib
from typing import BinaryIO

__all__ = ["DECOMPRESSION_ERRORS", "compression_of", "decompressed"]

_MAGIC = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
)
MAGIC_LENGTH = max(len(magic) for magic, _name in _MAGIC)

DECOMPRESSION_ERRORS: tuple[type[BaseException], ...] = (
    EOFError, gzip.BadGzipFile, zlib.error, lzma.LZMAError, OSError,
)
"""What reading a truncated or corrupt compressed stream raises (bz2 raises OSError)."""


def compression_of(head: bytes) -> str | None:
    """The compression whose magic number `head` starts with, or None for plain data."""
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    return None


def decompressed(binary: BinaryIO, compression: str | None) -> BinaryIO:
    """A reader of `binary`'s decompressed bytes. Closing it leaves `binary` open."""
    if compression is None:
        return binary
    if compression == "gzip":
        return gzip.GzipFile(fileobj=binary, mode="rb")
    if compression == "bzip2":
        return bz2.BZ2File(binary, mode="rb")
    if compression == "xz":
        return lzma.LZMAFile(binary, mode="rb")
    try:
        import zstandard
    except ImportError:
        raise OSError("zstd input needs the zstandard package (pip install zstandard)") from None
    return zstandard.ZstdDecompressor().stream_reader(binary, closefd=False)  # type: ignore[no-any-return]
