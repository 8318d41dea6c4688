"""Several llama.cpp contexts over one GGUF, each in its own thread, fed from one stream of
prompts."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator, Sequence

from seqchat.llm.runtime import DecodingSettings, Generation, GgufRuntime, SoftPrompt


class RuntimePool:
    """Several runtimes (llama.cpp contexts) over one GGUF, each decoding in its own Python
    thread (llama.cpp releases the GIL), all fed from one stream of prompts.

    On a CPU, ggml splits a step of a few tokens across threads poorly: on 2 cores, two
    contexts of one thread each generated 233 tok/s where one context of two threads
    generated 171. A sequence's arithmetic is the same in any context, so the output does
    not depend on how many there are."""

    def __init__(self, runtimes: Sequence[GgufRuntime]) -> None:
        if not runtimes:
            raise ValueError("a RuntimePool needs at least one runtime")
        self.runtimes = list(runtimes)
        self.vocabulary = self.runtimes[0].vocabulary

    def close(self) -> None:
        for runtime in self.runtimes:
            runtime.close()

    def generate(
        self,
        prefix_ids: Sequence[int],
        prompts: Iterable[SoftPrompt],
        settings: DecodingSettings = DecodingSettings(),
    ) -> Iterator[Generation]:
        """GgufRuntime.generate over every runtime at once; yields in order of completion."""
        if len(self.runtimes) == 1:
            yield from self.runtimes[0].generate(prefix_ids, prompts, settings)
            return
        source = _SharedPrompts(prompts)
        results: queue.SimpleQueue[Generation | BaseException | None] = queue.SimpleQueue()
        stop = threading.Event()

        def work(runtime: GgufRuntime) -> None:
            try:
                for generation in runtime.generate(prefix_ids, source, settings):
                    results.put(generation)
                    if stop.is_set():
                        break
            # Any failure, the prompt source's included, is raised in the consuming thread.
            except BaseException as error:  # noqa: BLE001
                results.put(error)
            finally:
                results.put(None)

        workers = [threading.Thread(target=work, args=(r,), daemon=True) for r in self.runtimes]
        for worker in workers:
            worker.start()
        try:
            running = len(workers)
            while running:
                item = results.get()
                if item is None:
                    running -= 1
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield item
        finally:
            stop.set()
            source.close()
            for worker in workers:
                worker.join()


class _SharedPrompts:
    """One prompt iterator that several threads pull from, one at a time."""

    def __init__(self, prompts: Iterable[SoftPrompt]) -> None:
        self._prompts = iter(prompts)
        self._lock = threading.Lock()
        self._closed = False

    def __iter__(self) -> _SharedPrompts:
        return self

    def __next__(self) -> SoftPrompt:
        with self._lock:
            if self._closed:
                raise StopIteration
            return next(self._prompts)

    def close(self) -> None:
        with self._lock:
            self._closed = True
