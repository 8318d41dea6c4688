"""A cache of finished answers, for sequences seen before (`seqchat annotate --cache DIR`).

An answer depends only on the model files, the prompt, the decoding settings, the software
that computes it and the sequence: not on the other sequences of the run, on `--parallel`
or on `--threads`. So an answer found here is, byte for byte, what a fresh run would write.
The cache is one SQLite database in DIR; SQLite's locking lets the shards of a pipeline
share it.
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
_COMMIT_EVERY = 32


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
        self._unsaved = 0
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.directory / DATABASE_NAME, timeout=60)
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
        row = self._db.execute(
            "SELECT description, n_tokens, mean_logprob FROM answers WHERE key = ?",
            (self._key(sequence),),
        ).fetchone()
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        return CachedAnswer(*row)

    def put(self, sequence: str, answer: CachedAnswer) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?)",
            (self._key(sequence), answer.description, answer.n_tokens, answer.mean_logprob),
        )
        self._unsaved += 1
        if self._unsaved >= _COMMIT_EVERY:
            self._commit()

    def _commit(self) -> None:
        self._db.commit()
        self._unsaved = 0

    def close(self) -> None:
        self._commit()
        self._db.close()

    def __enter__(self) -> ResultCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
