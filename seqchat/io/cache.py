"""A cache of finished answers, for sequences seen before (`seqchat annotate --cache DIR`).

An answer depends only on the model files, the prompt, the decoding settings, the software
that computes it and the sequence: not on the other sequences of the run, on `--parallel`
or on `--threads`. So an answer found here is, byte for byte, what a fresh run would write.
The cache is one SQLite database in DIR, in WAL mode: the shards of a pipeline share it,
reading while another writes. A run keeps its new answers in memory and writes them in one
short transaction at a time, never holding the write lock while answers are generated, so
that the runs do not wait on each other.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from seqchat.errors import SeqchatError

DATABASE_NAME = "seqchat-cache.sqlite"
_SAVE_EVERY = 32
_BUSY_TIMEOUT_S = 60
"""Seconds a run waits for another run's write transaction (each lasts milliseconds)."""


class CacheError(SeqchatError):
    """The cache directory or database cannot be used."""


@dataclass(frozen=True)
class CachedAnswer:
    description: str
    n_tokens: int
    mean_logprob: float


class ResultCache:
    """Answers keyed by sha256(context, sequence); `context` names everything else that
    decides an answer (model file digests, prompt, decoding, versions)."""

    def __init__(self, directory: str | Path, context: Mapping[str, str]) -> None:
        self.directory = Path(directory)
        self._context = hashlib.sha256(json.dumps(dict(sorted(context.items()))).encode()).digest()
        self.hits = 0
        self.misses = 0
        self._unsaved: dict[str, CachedAnswer] = {}
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.directory / DATABASE_NAME, timeout=_BUSY_TIMEOUT_S)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, description TEXT "
                "NOT NULL, n_tokens INTEGER NOT NULL, mean_logprob REAL NOT NULL)"
            )
        except (OSError, sqlite3.Error) as error:
            raise CacheError(f"cache {self.directory}: cannot be used ({error})") from error

    def _key(self, sequence: str) -> str:
        return hashlib.sha256(self._context + sequence.encode()).hexdigest()

    def get(self, sequence: str) -> CachedAnswer | None:
        key = self._key(sequence)
        answer = self._unsaved.get(key) or self._load(key)
        if answer is None:
            self.misses += 1
        else:
            self.hits += 1
        return answer

    def put(self, sequence: str, answer: CachedAnswer) -> None:
        self._unsaved[self._key(sequence)] = answer
        if len(self._unsaved) >= _SAVE_EVERY:
            self._save()

    def _load(self, key: str) -> CachedAnswer | None:
        try:
            row = self._db.execute(
                "SELECT description, n_tokens, mean_logprob FROM answers WHERE key = ?", (key,)
            ).fetchone()
        except sqlite3.Error as error:
            raise CacheError(f"cache {self.directory}: cannot be read ({error})") from error
        return None if row is None else CachedAnswer(*row)

    def _save(self) -> None:
        rows = [(key, a.description, a.n_tokens, a.mean_logprob) for key, a in self._unsaved.items()]
        try:
            with self._db:  # one transaction, committed here
                self._db.executemany("INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?)", rows)
        except sqlite3.Error as error:
            raise CacheError(f"cache {self.directory}: cannot save answers ({error})") from error
        self._unsaved.clear()

    def close(self) -> None:
        try:
            self._save()
        finally:
            self._db.close()

    def __enter__(self) -> ResultCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
