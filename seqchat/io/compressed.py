"""Compressed input, recognised by its first bytes (never by its name): gzip, bzip2 and xz
from the standard library, zstd through the `zstandard` package when it is installed.
The one place seqchat decompresses what it reads."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import zlib
from typing import BinaryIO, TextIO

__all__ = ["DECOMPRESSION_ERRORS", "compression_of", "decompressed", "open_text_file"]

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


def open_text_file(path: str | os.PathLike[str]) -> TextIO:
    """`path` opened as UTF-8 text, decompressed if its first bytes say it is compressed.
    Closing the text stream closes the file."""
    binary = open(path, "rb")  # noqa: SIM115 (owned by the returned stream)
    try:
        compression = compression_of(binary.peek(MAGIC_LENGTH))
        return _OwningText(decompressed(binary, compression), binary)
    except BaseException:
        binary.close()
        raise


class _OwningText(io.TextIOWrapper):
    """A text stream over a decompressor that also closes the file under the decompressor."""

    def __init__(self, stream: BinaryIO, file: BinaryIO) -> None:
        super().__init__(stream, encoding="utf-8")
        self._file = file

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._file.close()
