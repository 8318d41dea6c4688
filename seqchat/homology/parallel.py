"""Map a function over a stream on a few threads, keeping input order and bounded memory."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

__all__ = ["ordered_map"]

T = TypeVar("T")
R = TypeVar("R")

def ordered_map(
    function: Callable[[T], R], items: Iterable[T], threads: int, *, ahead: int = 4
) -> Iterator[R]:
    """``map(function, items)`` on ``threads`` threads, in order, reading items lazily.

    At most ``ahead`` items per thread are in flight, so an endless input stream works.
    With one thread it is the plain ``map``, run in the caller's thread. Worth it where
    ``function`` spends its time outside the GIL (pyhmmer, large numpy operations).
    """
    if threads <= 1:
        yield from map(function, items)
        return
    with ThreadPoolExecutor(threads) as pool:
        pending: deque[Future[R]] = deque()
        try:
            for item in items:
                pending.append(pool.submit(function, item))
                if len(pending) >= threads * ahead:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
