"""The gateway's ledger: per-run API keys, per-run budgets and one row per model call (tokens, cost, latency).

A single SQLite file in WAL mode, so the CLI can read it while a gateway writes it. One
connection per store, guarded by a lock, so a store may be shared between threads.
These rows are the source of the cost and latency guardrails.

A run's budget (tokens and/or USD) is set when its key is issued (``issue_key(run, budget=...)``,
``autofix gateway key --budget-tokens/--budget-usd``) or, for a run without one, by the gateway
serving it (``model.gateway.budget`` of autofix.yaml) on its first call; either way it is stored
here, so ``autofix gateway usage`` shows the budget in force and what is left.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

KEY_PREFIX = "afx-"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    key_sha256 TEXT PRIMARY KEY,
    run_id     TEXT NOT NULL,
    created_at TEXT NOT NULL,
    revoked    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS api_keys_run ON api_keys(run_id);
CREATE TABLE IF NOT EXISTS calls (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id            TEXT NOT NULL,
    case_id           TEXT,
    model             TEXT NOT NULL,
    requested_model   TEXT,
    prompt_tokens     INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd          REAL NOT NULL DEFAULT 0,
    latency_ms        REAL NOT NULL DEFAULT 0,
    status            TEXT NOT NULL CHECK (status IN ('ok', 'error')),
    error             TEXT,
    created_at        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS calls_run_case ON calls(run_id, case_id);
CREATE TABLE IF NOT EXISTS budgets (
    run_id     TEXT PRIMARY KEY,
    tokens     INTEGER,
    usd        REAL,
    created_at TEXT NOT NULL
);
"""

BUDGET_EXCEEDED = "budget_exceeded"
"""Error code of a call the gateway refused because its run spent its budget (recorded with the call)."""


class Budget(BaseModel):
    """What one run may spend at the gateway: tokens (prompt + completion) and/or USD; None = no limit."""

    tokens: int | None = Field(default=None, gt=0)
    usd: float | None = Field(default=None, gt=0)

    @property
    def limited(self) -> bool:
        return self.tokens is not None or self.usd is not None


class BudgetStatus(BaseModel):
    """A run's budget, what it spent and what is left (None where that part is unlimited)."""

    run_id: str
    budget: Budget | None
    spent_tokens: int
    spent_usd: float
    left_tokens: int | None
    left_usd: float | None

    @property
    def exceeded(self) -> bool:
        """Spent: no call may start (a call already running may go past the limit, by its own usage)."""
        return (self.left_tokens is not None and self.left_tokens <= 0) or (
            self.left_usd is not None and self.left_usd <= 0
        )


class CallRecord(BaseModel):
    """One model call made through the gateway."""

    id: int
    run_id: str
    case_id: str | None
    model: str
    """The litellm model that answered (the gateway's configured model)."""
    requested_model: str | None
    """The ``model`` field the caller sent (recorded, not obeyed)."""
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    latency_ms: float
    status: Literal["ok", "error"]
    error: str | None
    created_at: str

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class UsageStore:
    """API keys and call records in one SQLite file (``":memory:"`` for a throw-away store)."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30.0, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        with self._lock:
            self._conn.execute("PRAGMA busy_timeout = 30000")
            if self.path != ":memory:":
                self._conn.execute("PRAGMA journal_mode = WAL")
                self._conn.execute("PRAGMA synchronous = NORMAL")
            self._conn.executescript(_SCHEMA)

    # keys -------------------------------------------------------------------------------

    def issue_key(self, run_id: str, budget: Budget | None = None) -> str:
        """A new API key for ``run_id``; only its sha256 is stored, so show it now or lose it.

        ``budget`` (if given) becomes the run's budget, replacing any it had."""
        if not run_id:
            raise ValueError("issue_key() needs a run id")
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        with self._lock:
            self._conn.execute(
                "INSERT INTO api_keys (key_sha256, run_id, created_at, revoked) VALUES (?, ?, ?, 0)",
                (_hash(key), run_id, _now()),
            )
        if budget is not None and budget.limited:
            self.set_budget(run_id, budget)
        return key

    def run_for_key(self, key: str | None) -> str | None:
        """The run a key was issued for, or None if the key is unknown or revoked."""
        if not key:
            return None
        with self._lock:
            row = self._conn.execute(
                "SELECT run_id FROM api_keys WHERE key_sha256 = ? AND revoked = 0", (_hash(key),)
            ).fetchone()
        return row["run_id"] if row else None

    def revoke(self, run_id: str) -> int:
        """Revoke every key of ``run_id``; returns how many were still live."""
        with self._lock:
            cur = self._conn.execute(
                "UPDATE api_keys SET revoked = 1 WHERE run_id = ? AND revoked = 0", (run_id,)
            )
        return cur.rowcount

    def has_run(self, run_id: str) -> bool:
        """Whether any key was ever issued or any call recorded for ``run_id``."""
        with self._lock:
            row = self._conn.execute(
                "SELECT 1 FROM api_keys WHERE run_id = ? UNION ALL SELECT 1 FROM calls WHERE run_id = ?"
                " UNION ALL SELECT 1 FROM budgets WHERE run_id = ? LIMIT 1",
                (run_id, run_id, run_id),
            ).fetchone()
        return row is not None

    # budgets ----------------------------------------------------------------------------

    def set_budget(self, run_id: str, budget: Budget) -> None:
        """Set (or replace) the budget of ``run_id``."""
        with self._lock:
            self._conn.execute(
                "INSERT INTO budgets (run_id, tokens, usd, created_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT(run_id) DO UPDATE SET tokens = excluded.tokens, usd = excluded.usd",
                (run_id, budget.tokens, budget.usd, _now()),
            )

    def ensure_budget(self, run_id: str, default: Budget | None) -> Budget | None:
        """The budget of ``run_id``; a run without one gets ``default`` (stored, so reports show it)."""
        with self._lock:
            if default is not None and default.limited:
                self._conn.execute(
                    "INSERT OR IGNORE INTO budgets (run_id, tokens, usd, created_at) VALUES (?, ?, ?, ?)",
                    (run_id, default.tokens, default.usd, _now()),
                )
            row = self._conn.execute("SELECT tokens, usd FROM budgets WHERE run_id = ?", (run_id,)).fetchone()
        return Budget(tokens=row["tokens"], usd=row["usd"]) if row else None

    def budget_status(self, run_id: str, default: Budget | None = None) -> BudgetStatus:
        """The run's budget (``default`` if it has none stored), what its calls spent, what is left."""
        with self._lock:
            row = self._conn.execute("SELECT tokens, usd FROM budgets WHERE run_id = ?", (run_id,)).fetchone()
            spent = self._conn.execute(
                "SELECT COALESCE(SUM(prompt_tokens + completion_tokens), 0) AS tokens,"
                " COALESCE(SUM(cost_usd), 0) AS usd FROM calls WHERE run_id = ?",
                (run_id,),
            ).fetchone()
        budget = Budget(tokens=row["tokens"], usd=row["usd"]) if row else default
        if budget is not None and not budget.limited:
            budget = None
        tokens, usd = int(spent["tokens"]), float(spent["usd"])
        return BudgetStatus(
            run_id=run_id,
            budget=budget,
            spent_tokens=tokens,
            spent_usd=usd,
            left_tokens=None if budget is None or budget.tokens is None else budget.tokens - tokens,
            left_usd=None if budget is None or budget.usd is None else budget.usd - usd,
        )

    # calls ------------------------------------------------------------------------------

    def record(
        self,
        run_id: str,
        case_id: str | None,
        model: str,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        cost_usd: float = 0.0,
        latency_ms: float = 0.0,
        status: Literal["ok", "error"] = "ok",
        error: str | None = None,
        requested_model: str | None = None,
    ) -> int:
        """Store one call; returns its id."""
        if status not in ("ok", "error"):
            raise ValueError(f"status must be 'ok' or 'error', not {status!r}")
        with self._lock:
            cur = self._conn.execute(
                "INSERT INTO calls (run_id, case_id, model, requested_model, prompt_tokens, completion_tokens,"
                " cost_usd, latency_ms, status, error, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    case_id,
                    model,
                    requested_model,
                    int(prompt_tokens or 0),
                    int(completion_tokens or 0),
                    float(cost_usd or 0.0),
                    float(latency_ms or 0.0),
                    status,
                    error,
                    _now(),
                ),
            )
        return int(cur.lastrowid or 0)

    def calls(self, run_id: str, case_id: str | None = None) -> list[CallRecord]:
        """The calls of a run (of one case if ``case_id`` is given), oldest first."""
        query = "SELECT * FROM calls WHERE run_id = ?"
        args: tuple = (run_id,)
        if case_id is not None:
            query += " AND case_id = ?"
            args += (case_id,)
        with self._lock:
            rows = self._conn.execute(query + " ORDER BY id", args).fetchall()
        return [CallRecord(**dict(row)) for row in rows]

    def usage_by_case(self, run_id: str) -> dict[str | None, dict[str, float | int]]:
        """Per case id (None for calls without one): tokens, cost_usd, latency_ms (summed), calls, errors."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT case_id, COUNT(*) AS calls,"
                " SUM(prompt_tokens) AS prompt_tokens, SUM(completion_tokens) AS completion_tokens,"
                " SUM(cost_usd) AS cost_usd, SUM(latency_ms) AS latency_ms,"
                " SUM(CASE WHEN status = 'error' THEN 1 ELSE 0 END) AS errors"
                " FROM calls WHERE run_id = ? GROUP BY case_id ORDER BY MIN(id)",
                (run_id,),
            ).fetchall()
        return {
            row["case_id"]: {
                "tokens": int(row["prompt_tokens"] or 0) + int(row["completion_tokens"] or 0),
                "prompt_tokens": int(row["prompt_tokens"] or 0),
                "completion_tokens": int(row["completion_tokens"] or 0),
                "cost_usd": float(row["cost_usd"] or 0.0),
                "latency_ms": float(row["latency_ms"] or 0.0),
                "calls": int(row["calls"]),
                "errors": int(row["errors"] or 0),
            }
            for row in rows
        }

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> UsageStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
