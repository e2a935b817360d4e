"""The replay cache: a case's result at a commit, kept so that replaying it again costs nothing.

A result is filed under a key made of everything it depends on:

- the tree hash of the target folder (`git rev-parse <commit>:<subpath>`, or the same hash of the
  working tree as it is on disk), so any change to a prompt, a config or the code is a new key;
- the case hash: SHA-256 of the case's canonical JSON (sorted keys, no spaces);
- the model the gateway serves (`model.name`);
- the judges' versions (the deterministic checks' version, the judges configured in autofix.yaml
  and the judge model);
- the replay command and its environment (`replay.command`, `replay.env`, `replay.workdir`).

The sandbox is not part of the key: Docker and the local sandbox give the same results for the
same commit (tests/test_replay_session.py checks it). Results that failed because of the
infrastructure (sandbox crash, timeout, nothing written, gateway error) are never stored; a
failure the target itself reported is, like any other answer.

The store is SQLite at `<state>/replay-cache.sqlite3`.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from autofix.config import AutofixConfig
from autofix.replay.records import Case, CaseResult

CACHE_FORMAT = "replay-cache-1"
"""Bumped when the meaning of a key or of a stored result changes."""

CACHE_FILENAME = "replay-cache.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    key TEXT PRIMARY KEY,
    tree TEXT NOT NULL,
    case_id TEXT NOT NULL,
    case_hash TEXT NOT NULL,
    model TEXT NOT NULL,
    judges TEXT NOT NULL,
    replay TEXT NOT NULL,
    result TEXT NOT NULL,
    replay_id TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS results_tree ON results(tree);
"""


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no insignificant spaces: equal values give equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def case_hash(case: Case) -> str:
    """SHA-256 of the case's canonical JSON (`case_id`, `input`, `expected`, `metadata`)."""
    return _sha256(canonical_json(case.model_dump(mode="json")))


def judges_version(config: AutofixConfig) -> str:
    """The version of the deterministic checks, the judges autofix.yaml configures and the judge model.

    Rubric verdicts are cached by the judges room under their own versions (signature, rubric,
    demos); the module is not imported here (it pulls in dspy), its configuration counts through
    the configured judges and `model.judge`.
    """
    from autofix.judges.checks import CHECKS_VERSION

    parts = {"checks": CHECKS_VERSION, "judge_model": config.model.judge,
             "configured": [j.model_dump(mode="json") for j in config.judges]}
    return _sha256(canonical_json(parts))[:16]


def replay_fingerprint(config: AutofixConfig) -> str:
    """The replay command, its environment and its folder (relative to autofix.yaml)."""
    workdir = config.workdir_path.relative_to(config.root).as_posix() if config.replay.workdir else "."
    return _sha256(canonical_json({"command": config.replay.command, "env": config.replay.env, "workdir": workdir}))[:16]


def cache_key(*, tree: str, case_digest: str, model: str, judges: str, replay: str) -> str:
    return _sha256(canonical_json({"format": CACHE_FORMAT, "tree": tree, "case": case_digest, "model": model,
                                   "judges": judges, "replay": replay}))


def cacheable(result: CaseResult) -> bool:
    """Whether a result says something about the target: everything but infrastructure failures."""
    return not result.infrastructure


class ReplayCache:
    """Results of replayed cases by key (see the module doc); safe to share between threads."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.executescript(_SCHEMA)
        self._conn.commit()

    @classmethod
    def for_config(cls, config: AutofixConfig) -> ReplayCache:
        return cls(config.state_path / CACHE_FILENAME)

    def get_many(self, keys: Iterable[str]) -> dict[str, CaseResult]:
        """The stored results among `keys`."""
        keys = list(dict.fromkeys(keys))
        found: dict[str, CaseResult] = {}
        with self._lock:
            for i in range(0, len(keys), 500):
                chunk = keys[i:i + 500]
                rows = self._conn.execute(
                    f"SELECT key, result FROM results WHERE key IN ({','.join('?' * len(chunk))})", chunk
                ).fetchall()
                for key, text in rows:
                    try:
                        found[key] = CaseResult.model_validate_json(text)
                    except ValueError:
                        continue  # an unreadable row is a miss; the fresh result replaces it
        return found

    def put_many(self, rows: Iterable[tuple[str, dict[str, str], CaseResult]], replay_id: str | None = None) -> int:
        """Store `(key, parts, result)` rows (parts: tree, case_id, case_hash, model, judges, replay);
        infrastructure failures are skipped. Returns how many were stored."""
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        values = [
            (key, p["tree"], p["case_id"], p["case_hash"], p["model"], p["judges"], p["replay"],
             result.model_dump_json(), replay_id, now)
            for key, p, result in rows if cacheable(result)
        ]
        with self._lock:
            self._conn.executemany("INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", values)
            self._conn.commit()
        return len(values)

    def count(self, tree: str | None = None) -> int:
        with self._lock:
            if tree is None:
                return self._conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]
            return self._conn.execute("SELECT COUNT(*) FROM results WHERE tree = ?", (tree,)).fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> ReplayCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
