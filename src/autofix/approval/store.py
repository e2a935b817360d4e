"""The approval queue: proposals waiting for a human, the append-only audit log, and the changes rejected.

SQLAlchemy Core, so any SQLAlchemy URL serves (a shared Postgres for a team); by default a SQLite file
`<state_dir>/approval.sqlite3` beside the target's autofix.yaml.

    store = open_store(config)
    pid = store.enqueue(verdict, diff, Lineage(trace_ids=[...], cluster="retrieval-1", optimizer="gepa"))
    store.get(pid).status              # "pending"
    store.was_rejected(diff, "retrieval-1")

`open_store` scopes the store to the target's `project`, so several targets can share one database.
Only a verdict that passed enters the queue, once per candidate commit (a resumed run gets the existing id
back). A change rejected before is refused too (`PreviouslyRejected`), so a later run cannot put the same
diff for the same cluster in front of a human again. The audit log has no update or delete here; on SQLite
triggers also abort any UPDATE or DELETE of it from outside.

Decisions are made by `autofix.approval.merge.approve` and `autofix.approval.reject.reject`; they move a
proposal's status with the compare-and-set methods below, so two approvers cannot both decide it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import (
    DDL,
    JSON,
    Column,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from autofix.approval.diffhash import diff_sha256
from autofix.approval.records import (
    STATUSES,
    AuditEntry,
    Lineage,
    ProposalNotFound,
    ProposalRecord,
    RejectedChange,
)
from autofix.gate.records import GateVerdict

DB_FILENAME = "approval.sqlite3"

metadata = MetaData()

proposals = Table(
    "proposals", metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("id", String(32), nullable=False, unique=True),
    Column("project", String(256), nullable=False),
    Column("status", String(16), nullable=False),
    Column("branch", String(512)),
    Column("commit", String(64), nullable=False),
    Column("tree", String(64), nullable=False),
    Column("base_commit", String(64), nullable=False),
    Column("base_tree", String(64), nullable=False),
    Column("cluster", String(256)),
    Column("optimizer", String(256)),
    Column("diff", Text, nullable=False),
    Column("diff_sha256", String(64), nullable=False),
    Column("verdict", JSON, nullable=False),
    Column("lineage", JSON, nullable=False),
    Column("created_at", String(40), nullable=False),
    Column("decided_by", String(256)),
    Column("decided_at", String(40)),
    Column("note", Text),
    Column("reason", Text),
    Column("target_branch", String(512)),
    Column("merged_commit", String(64)),
    Column("merged_tree", String(64)),
    Column("revalidated_verdict", JSON),
    Column("feedback_commit", String(64)),
    UniqueConstraint("project", "commit"),
)

audit = Table(
    "audit", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", String(40), nullable=False),
    Column("actor", String(256), nullable=False),
    Column("action", String(64), nullable=False),
    Column("proposal_id", String(32)),
    Column("detail", JSON, nullable=False),
    sqlite_autoincrement=True,
)

rejected_changes = Table(
    "rejected_changes", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project", String(256), nullable=False),
    Column("diff_sha256", String(64), nullable=False),
    Column("cluster", String(256), nullable=False),
    Column("proposal_id", String(32), nullable=False),
    Column("reason", Text, nullable=False),
    Column("rejected_by", String(256), nullable=False),
    Column("rejected_at", String(40), nullable=False),
    UniqueConstraint("project", "diff_sha256", "cluster", "proposal_id"),
)

for _what in ("UPDATE", "DELETE"):
    event.listen(audit, "after_create", DDL(
        f"CREATE TRIGGER IF NOT EXISTS audit_no_{_what.lower()} BEFORE {_what} ON audit "
        f"BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END").execute_if(dialect="sqlite"))


class PreviouslyRejected(ValueError):
    """The same change for the same cluster was rejected before; it is not queued again."""

    def __init__(self, rejection: RejectedChange):
        self.rejection = rejection
        super().__init__(
            f"this change to cluster {rejection.cluster} was rejected before ({rejection.proposal_id}, by "
            f"{rejection.rejected_by} at {rejection.rejected_at}: {rejection.reason}); it is not queued again")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def default_url(state_dir: Path) -> str:
    return f"sqlite:///{(Path(state_dir) / DB_FILENAME).resolve()}"


def configured_url(config: Any) -> str | None:
    """`approval.url` of autofix.yaml, once the configuration has that section (None until then)."""
    section = getattr(config, "approval", None)
    url = getattr(section, "url", None) if section is not None else None
    if url is None and isinstance(section, dict):
        url = section.get("url")
    return str(url) if url else None


def open_store(config: Any, url: str | None = None) -> ApprovalStore:
    """The approval store of a target: `url`, else `approval.url` of its autofix.yaml, else
    `<state_dir>/approval.sqlite3`."""
    return ApprovalStore(url or configured_url(config) or default_url(config.state_path),
                         project=getattr(config, "project", None))


def _proposal_number(pid: str) -> int:
    return int(pid.split("-", 1)[1])


class ApprovalStore:
    """The queue, the audit log and the rejected changes behind one SQLAlchemy URL (see the module doc).

    `project` (autofix.yaml's `project`) scopes it, so targets can share one database: the queue lists,
    and `get` finds, only that project's proposals, and rejections count within it.
    """

    def __init__(self, url: str, *, project: str | None = None):
        self.url = url
        self.project = project
        if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        kwargs: dict[str, Any] = {}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"timeout": 30}
        self.engine: Engine = create_engine(url, **kwargs)
        metadata.create_all(self.engine)

    @property
    def where(self) -> str:
        """The store as shown to a user: a SQLite file's path, else the URL without its password."""
        return store_path_for(self.url)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> ApprovalStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    # ---- the queue -------------------------------------------------------------------------------------

    def enqueue(self, verdict: GateVerdict, diff: str, lineage: Lineage | dict[str, Any], *,
                actor: str = "autofix") -> str:
        """Queue a gate-passing candidate for a human; its id (`p-0001`).

        ValueError when the verdict did not pass; `PreviouslyRejected` (a ValueError) when the same change
        for the same cluster was rejected before. The same candidate commit queued again returns the
        existing id and adds nothing (a resumed run)."""
        if not verdict.passed:
            reasons = "; ".join(verdict.reasons) or "the verdict did not pass"
            raise ValueError(f"only gate-passing candidates enter the approval queue; {verdict.candidate_commit[:12]} "
                             f"was refused: {reasons}")
        lineage = lineage if isinstance(lineage, Lineage) else Lineage.model_validate(lineage)
        existing = self.find_by_commit(verdict.candidate_commit)
        if existing is not None:
            return existing.id
        cluster = verdict.cluster or lineage.cluster
        if lineage.cluster is None and cluster is not None:
            lineage = lineage.model_copy(update={"cluster": cluster})
        digest = diff_sha256(diff)
        if cluster is not None:
            earlier = self.rejection(diff, cluster)
            if earlier is not None:
                raise PreviouslyRejected(earlier)
        row = {
            "project": self.project or "", "status": "pending", "branch": lineage.branch or verdict.candidate_ref,
            "commit": verdict.candidate_commit, "tree": verdict.candidate_tree,
            "base_commit": verdict.base_commit, "base_tree": verdict.base_tree, "cluster": cluster,
            "optimizer": lineage.optimizer, "diff": diff, "diff_sha256": digest,
            "verdict": verdict.model_dump(mode="json"), "lineage": lineage.model_dump(mode="json"),
            "created_at": now(),
        }
        for _attempt in range(10):
            try:
                with self._tx() as conn:
                    seq = (conn.execute(select(func.max(proposals.c.seq))).scalar() or 0) + 1
                    pid = f"p-{seq:04d}"
                    conn.execute(insert(proposals).values(seq=seq, id=pid, **row))
                    self._append(conn, actor, "enqueue", pid, {
                        "commit": verdict.candidate_commit, "tree": verdict.candidate_tree,
                        "base_commit": verdict.base_commit, "cluster": cluster, "verdict_id": verdict.verdict_id,
                        "branch": row["branch"], "optimizer": lineage.optimizer})
                return pid
            except IntegrityError:
                existing = self.find_by_commit(verdict.candidate_commit)
                if existing is not None:  # queued by a concurrent run meanwhile
                    return existing.id
        raise RuntimeError(f"could not allocate a proposal id in {self.where} (too many concurrent writers)")

    def get(self, proposal_id: str) -> ProposalRecord:
        """The proposal; ProposalNotFound naming the ones that exist when there is none."""
        with self.engine.connect() as conn:
            row = conn.execute(self._scoped(select(proposals).where(proposals.c.id == proposal_id))).mappings().first()
            if row is None:
                known = [r for r in conn.execute(self._scoped(select(proposals.c.id))
                                                 .order_by(proposals.c.seq.desc()).limit(10)).scalars()]
        if row is None:
            shown = ", ".join(reversed(known)) if known else "the queue is empty"
            raise ProposalNotFound(f"no proposal {proposal_id!r} in {self.where} ({shown}); "
                                   f"`autofix review list` shows the queue")
        return _record(row)

    def find_by_commit(self, commit: str) -> ProposalRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(self._scoped(select(proposals).where(proposals.c.commit == commit))).mappings().first()
        return _record(row) if row is not None else None

    def proposals(self, status: str | None = None) -> list[ProposalRecord]:
        """The queue, oldest first; only those with `status` when given."""
        if status is not None and status not in STATUSES:
            raise ValueError(f"unknown status {status!r}: use one of {', '.join(STATUSES)}")
        query = self._scoped(select(proposals)).order_by(proposals.c.seq)
        if status is not None:
            query = query.where(proposals.c.status == status)
        with self.engine.connect() as conn:
            return [_record(r) for r in conn.execute(query).mappings()]

    # ---- status changes (compare-and-set: False when the proposal was not in `expected`) -------------------

    def mark_approved(self, proposal_id: str, *, by: str, note: str | None, target_branch: str,
                      expected: tuple[str, ...] = ("pending",)) -> bool:
        with self._tx() as conn:
            done = conn.execute(update(proposals).where(proposals.c.id == proposal_id,
                                                        proposals.c.status.in_(expected))
                                .values(status="approved", decided_by=by, decided_at=now(), note=note,
                                        target_branch=target_branch)).rowcount == 1
            if done:
                self._append(conn, by, "approve", proposal_id, {"note": note, "target_branch": target_branch})
            return done

    def set_revalidated(self, proposal_id: str, verdict: GateVerdict) -> None:
        """Remember the passing re-validation the merge is about to land (status `approved`)."""
        with self._tx() as conn:
            conn.execute(update(proposals).where(proposals.c.id == proposal_id, proposals.c.status == "approved")
                         .values(revalidated_verdict=verdict.model_dump(mode="json")))

    def mark_merged(self, proposal_id: str, *, by: str, commit: str, tree: str, target_branch: str,
                    detail: dict[str, Any] | None = None) -> bool:
        with self._tx() as conn:
            done = conn.execute(update(proposals).where(proposals.c.id == proposal_id,
                                                        proposals.c.status == "approved")
                                .values(status="merged", merged_commit=commit, merged_tree=tree,
                                        target_branch=target_branch)).rowcount == 1
            if done:
                self._append(conn, by, "merge", proposal_id, {"commit": commit, "tree": tree,
                                                              "target_branch": target_branch, **(detail or {})})
            return done

    def set_feedback_commit(self, proposal_id: str, commit: str) -> None:
        with self._tx() as conn:
            conn.execute(update(proposals).where(proposals.c.id == proposal_id).values(feedback_commit=commit))

    def mark_rejected(self, proposal_id: str, *, by: str, reason: str) -> bool:
        """Reject a pending proposal (or an approved one whose merge never happened) and remember its change as
        rejected for its cluster."""
        with self._tx() as conn:
            at = now()
            done = conn.execute(update(proposals).where(proposals.c.id == proposal_id,
                                                        proposals.c.status.in_(("pending", "approved")),
                                                        proposals.c.merged_commit.is_(None))
                                .values(status="rejected", decided_by=by, decided_at=at, reason=reason)).rowcount == 1
            if not done:
                return False
            row = conn.execute(select(proposals.c.diff_sha256, proposals.c.cluster)
                               .where(proposals.c.id == proposal_id)).first()
            conn.execute(insert(rejected_changes).values(
                project=self.project or "", diff_sha256=row.diff_sha256, cluster=row.cluster or "", proposal_id=proposal_id, reason=reason,
                rejected_by=by, rejected_at=at))
            self._append(conn, by, "reject", proposal_id, {"reason": reason, "diff_sha256": row.diff_sha256,
                                                          "cluster": row.cluster})
            return True

    # ---- rejected changes --------------------------------------------------------------------------------

    def rejection(self, diff: str, cluster: str | None) -> RejectedChange | None:
        """The latest rejection of this change (normalized diff) for this cluster, None if it was never rejected."""
        query = (select(rejected_changes).where(rejected_changes.c.project == (self.project or ""),
                                                rejected_changes.c.diff_sha256 == diff_sha256(diff),
                                                rejected_changes.c.cluster == (cluster or ""))
                 .order_by(rejected_changes.c.id.desc()))
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        if row is None:
            return None
        return RejectedChange(**{k: row[k] for k in RejectedChange.model_fields})

    def was_rejected(self, diff: str, cluster: str | None) -> bool:
        """Whether a human rejected this change for this cluster before (see `autofix.approval.diffhash`)."""
        return self.rejection(diff, cluster) is not None

    # ---- the audit log (append-only: no update, no delete) ----------------------------------------------

    def record(self, actor: str, action: str, proposal_id: str | None = None,
               detail: dict[str, Any] | None = None) -> int:
        """Append one entry to the audit log; its id."""
        with self._tx() as conn:
            return self._append(conn, actor, action, proposal_id, detail or {})

    def _scoped(self, query: Any) -> Any:
        return query.where(proposals.c.project == self.project) if self.project is not None else query

    @staticmethod
    def _append(conn: Connection, actor: str, action: str, proposal_id: str | None, detail: dict[str, Any]) -> int:
        result = conn.execute(insert(audit).values(at=now(), actor=actor, action=action, proposal_id=proposal_id,
                                                   detail=detail))
        return int(result.inserted_primary_key[0])

    def audit_log(self, proposal_id: str | None = None) -> list[AuditEntry]:
        """Every entry in the order written; only one proposal's when given."""
        query = select(audit).order_by(audit.c.id)
        if proposal_id is not None:
            query = query.where(audit.c.proposal_id == proposal_id)
        with self.engine.connect() as conn:
            return [AuditEntry(**dict(r)) for r in conn.execute(query).mappings()]


def _record(row: Any) -> ProposalRecord:
    data = {k: row[k] for k in ProposalRecord.model_fields if k in row}
    return ProposalRecord.model_validate(data)


def store_path_for(url: str) -> str:
    """How a URL is shown to a user: a SQLite file's path, else the URL without its password."""
    if url.startswith("sqlite:///"):
        return url.removeprefix("sqlite:///")
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


__all__ = ["DB_FILENAME", "ApprovalStore", "PreviouslyRejected", "configured_url", "default_url", "open_store"]
