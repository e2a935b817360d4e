"""The ticket system: lookup, listing and creation over a SQLite database seeded from data/tickets_seed.json."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

import jsonschema

ISO_DATE = r"^\d{4}-\d{2}-\d{2}$"

SCHEMAS: dict[str, dict[str, Any]] = {
    "lookup_ticket": {
        "type": "object",
        "properties": {"ticket_id": {"type": "string", "pattern": r"^(INC|REQ)-\d{4}$"}},
        "required": ["ticket_id"],
        "additionalProperties": False,
    },
    "list_tickets": {
        "type": "object",
        "properties": {
            "requester": {"type": "string", "minLength": 1},
            "since": {"type": "string", "pattern": ISO_DATE, "description": "YYYY-MM-DD"},
            "status": {"enum": ["open", "in_progress", "resolved", "any"]},
        },
        "required": ["requester", "since"],
        "additionalProperties": False,
    },
    "create_ticket": {
        "type": "object",
        "properties": {
            "requester": {"type": "string", "minLength": 1},
            "summary": {"type": "string", "minLength": 5, "maxLength": 200},
            "category": {"enum": ["it", "hr", "finance", "facilities"]},
            "priority": {"enum": ["low", "medium", "high"]},
        },
        "required": ["requester", "summary", "category", "priority"],
        "additionalProperties": False,
    },
}


class ToolError(Exception):
    """The tool refused the call; the message is what the ticket system answered."""


class TicketSystem:
    def __init__(self, seed_file: Path) -> None:
        self.db = sqlite3.connect(":memory:", check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        self.db.execute(
            "CREATE TABLE tickets (id TEXT PRIMARY KEY, requester TEXT, summary TEXT, category TEXT,"
            " status TEXT, priority TEXT, opened TEXT, updated TEXT)"
        )
        rows = json.loads(seed_file.read_text(encoding="utf-8"))
        self.db.executemany(
            "INSERT INTO tickets VALUES (:id, :requester, :summary, :category, :status, :priority, :opened, :updated)", rows
        )

    def call(self, name: str, arguments: dict[str, Any], today: str) -> Any:
        if name not in SCHEMAS:
            raise ToolError(f"unknown tool {name!r}")
        try:
            jsonschema.validate(arguments, SCHEMAS[name])
        except jsonschema.ValidationError as exc:
            field = ".".join(str(p) for p in exc.absolute_path) or "arguments"
            raise ToolError(f"400 Bad Request: {field}: {exc.message}") from None
        with self._lock:
            return getattr(self, name)(today=today, **arguments)

    def lookup_ticket(self, ticket_id: str, today: str) -> dict[str, Any]:
        row = self.db.execute("SELECT * FROM tickets WHERE id = ?", (ticket_id.upper(),)).fetchone()
        if row is None:
            raise ToolError(f"404 Not Found: no ticket {ticket_id}")
        return dict(row)

    def list_tickets(self, requester: str, since: str, today: str, status: str = "any") -> list[dict[str, Any]]:
        query = "SELECT * FROM tickets WHERE requester = ? AND opened >= ?"
        params: list[Any] = [requester, since]
        if status != "any":
            query += " AND status = ?"
            params.append(status)
        return [dict(r) for r in self.db.execute(query + " ORDER BY opened", params)]

    def create_ticket(self, requester: str, summary: str, category: str, priority: str, today: str) -> dict[str, Any]:
        (count,) = self.db.execute("SELECT COUNT(*) FROM tickets WHERE id LIKE 'INC-%'").fetchone()
        ticket = {
            "id": f"INC-{2000 + count:04d}", "requester": requester, "summary": summary, "category": category,
            "status": "open", "priority": priority, "opened": today, "updated": today,
        }
        self.db.execute(
            "INSERT INTO tickets VALUES (:id, :requester, :summary, :category, :status, :priority, :opened, :updated)", ticket
        )
        return ticket
