"""A GGUF LLM requantized into a type the CPU computes faster, made once and cached.

ggml's CPU backend multiplies Q8_0 weights with tiled matrix kernels (tinyBLAS) but Q4_1
weights one dot product at a time, so the default LLM, shipped as Q4_1, annotates about 25%
faster as Q8_0 on a 2-core CPU (benchmarks/README.md). Q8_0 holds each of its Q4_1 weights
to within 1/18 of a Q4_1 step (1/32 in a typical block): the same model, stored for a faster
kernel. A bundle asks for it with `llm.requantize`; the file is written once under
`$SEQCHAT_HOME/cache/gguf/` and reused.

The copy is written under a temporary `.partial` name, locked (flock) by its writer until it
is renamed into place. A run killed while writing leaves its partial behind, unlocked; the
next requantization removes every such partial, and never one a live run is writing.
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import os
import stat
import tempfile
from pathlib import Path

import llama_cpp

from seqchat.errors import SeqchatError
from seqchat.llm.vocabulary import silence_llama_logs

REQUANTIZE_TYPES = {"q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0}
PARTIAL_SUFFIX = ".partial"


class RequantizeError(SeqchatError):
    """llama.cpp could not requantize a GGUF, or the cache could not be written."""


def _cached_copy_path(source: Path, type_name: str, cache_dir: Path) -> Path:
    """Where the requantized copy of `source` lives: named after the source's path, size and
    modification time, so that a replaced source (a reinstalled package) gets a new copy."""
    info = source.stat()
    identity = f"{source.resolve()}\n{info.st_size}\n{info.st_mtime_ns}\n{type_name}"
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    return cache_dir / f"{source.stem}.{digest}.{type_name}.gguf"


def requantized_gguf(source: Path, type_name: str, cache_dir: Path) -> Path:
    """The cached `type_name` copy of the GGUF `source`, written first if it is missing.

    The copy is written to a temporary file and renamed into place, so that an interrupted
    run or two pipeline jobs starting at once never leave a partial file under the name.
    `type_name` is a key of REQUANTIZE_TYPES (the bundle checks what its config asks for)."""
    ftype = REQUANTIZE_TYPES[type_name]
    target = _cached_copy_path(source, type_name, cache_dir)
    if cache_dir.is_dir():
        remove_stale_partials(cache_dir)
    if target.is_file():
        return target
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        handle, partial = _locked_partial(cache_dir, target.name)
    except OSError as error:
        raise RequantizeError(
            f"cannot write the requantized LLM under {cache_dir} ({error.strerror}); "
            f"set SEQCHAT_HOME to a writable directory"
        ) from error
    try:
        _quantize(source, partial, ftype)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
        os.close(handle)  # releases the lock, after the rename
    return target


def _locked_partial(cache_dir: Path, name: str) -> tuple[int, Path]:
    """A new partial file, open and locked, for the copy called `name`.

    Between creating the file and locking it, another run's `remove_stale_partials` may
    take it for stale and remove it; then the name no longer leads to the locked file, and
    a new one is made."""
    while True:
        handle, partial = tempfile.mkstemp(dir=cache_dir, prefix=f".{name}.", suffix=PARTIAL_SUFFIX)
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            if os.stat(partial).st_ino == os.fstat(handle).st_ino:
                os.fchmod(handle, 0o644)  # mkstemp makes it private; the cache is shared like any download
                return handle, Path(partial)
        except FileNotFoundError:
            pass
        os.close(handle)


def remove_stale_partials(cache_dir: Path) -> list[Path]:
    """Remove the partial copies under `cache_dir` that no live run holds locked (left by a
    run killed while writing); returns them."""
    removed = []
    for partial in sorted(cache_dir.glob(f".*{PARTIAL_SUFFIX}")):
        try:
            handle = os.open(partial, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            if not stat.S_ISREG(os.fstat(handle).st_mode):
                continue
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            partial.unlink()
            removed.append(partial)
        except OSError:  # locked by the live run writing it, or removed meanwhile
            continue
        finally:
            os.close(handle)
    return removed


def _quantize(source: Path, out: Path, ftype: int) -> None:
    silence_llama_logs()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.allow_requantize = True
    params.nthread = 1  # as fast as every core here (0.6 s for SmolLM2-135M), and a job keeps to its --threads
    status = llama_cpp.llama_model_quantize(str(source).encode(), str(out).encode(), ctypes.byref(params))
    if status != 0:
        raise RequantizeError(f"{source}: llama.cpp could not requantize this GGUF (status {status})")
