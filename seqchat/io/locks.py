"""One run per partial output: an exclusive lock on the partial file while a run writes it.

The lock is flock(2)'s, on the open file: the kernel drops it when the run ends, however it
ends, so a partial left by a killed run is never mistaken for a live one.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from seqchat.io.tables import OutputError


class OutputLockedError(OutputError):
    """Another live run is writing the same partial output."""


_WRITE = os.O_WRONLY | os.O_APPEND


def locked_message(partial: Path) -> str:
    return (
        f"{partial}: another seqchat run is writing this file "
        "(wait for it to finish, or write to another output)"
    )


def is_locked(partial: Path) -> bool:
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


def claim(partial: Path, *, resume: bool, force: bool) -> int:
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
        raise OutputLockedError(locked_message(partial)) from None
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
        raise OutputLockedError(locked_message(partial))


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


