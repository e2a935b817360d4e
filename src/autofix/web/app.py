"""The review page as a FastAPI app: the queue, one page per proposal with the approve and reject forms, and a
labelling page per triage cluster.

    app = create_app(config)                  # a fresh token; create_app(config, guard=Guard(token)) to pick it
    uvicorn.run(app, host="127.0.0.1")        # `autofix serve` does this (see autofix.web.server)

Decisions go through `autofix.approval.approve` and `reject` with the reviewer's name from the form, so they
are checked, refused and audited exactly as from the command line. A refusal (the branch moved, the proposal
was decided meanwhile) or bad input (no name, no reason) is shown on the proposal page with what was typed,
with status 409 or 400. Who may use the page: see `autofix.web.security`.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from autofix.approval import ApprovalError, ProposalNotFound, approve, open_store, reject
from autofix.approval.branch import GitError
from autofix.approval.store import ApprovalStore
from autofix.config import AutofixConfig
from autofix.replay.records import DatasetError
from autofix.slices.labels import Label, LabelError, append_labels, load_labels
from autofix.web import views
from autofix.web.html import Html, page
from autofix.web.security import Guard
from autofix.worktrees import WorktreeError

REVIEWER_COOKIE = "autofix_reviewer"
"""The name typed in the last decision or label, so the next form starts with it (not a credential)."""
MAX_FORM_BYTES = 1_000_000
LABELS_HINT = "datasets:\n  labels: data/labels.jsonl"

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class _FormError(Exception):
    def __init__(self, status: int, title: str, message: str):
        super().__init__(message)
        self.status, self.title, self.message = status, title, message


def create_app(config: AutofixConfig, *, guard: Guard | None = None, store_url: str | None = None) -> FastAPI:
    """The review page of the target `config` describes; `guard` holds the token (a fresh one by default)."""
    guard = guard or Guard()
    app = FastAPI(title=f"autofix review · {config.project}", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.guard = guard
    app.state.config = config
    where = _where(config, store_url)

    def render(title: str, body: Html, status_code: int = 200) -> HTMLResponse:
        return HTMLResponse(page(title, body, project=config.project, where=where), status_code=status_code)

    def message(status_code: int, title: str, text: str, *, kind: str = "error", back: str | None = "/") -> HTMLResponse:
        return render(title, views.message_page(title, text, kind=kind, back=back), status_code)

    def store() -> ApprovalStore:
        return open_store(config, url=store_url)

    # ------------------------------------------------------------------ the token, on every request

    @app.middleware("http")
    async def require_token(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await _check(request, call_next)
        for key, value in SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        return response

    async def _check(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if not guard.host_ok(request.headers.get("host", "")):
            return message(400, "Wrong host", "This review page answers only at the address autofix serve printed "
                           "(127.0.0.1 or localhost).", back=None)
        given = request.query_params.get("token")
        cookie = request.cookies.get(guard.cookie_name)
        if given is not None:
            if not guard.token_ok(given):
                return message(403, "Wrong token", "The token in this URL is not this server's: open the URL "
                               "`autofix serve` printed when it started (a restarted server has a new token).",
                               back=None)
            if request.method in ("GET", "HEAD"):  # keep the token out of the address bar and the history
                rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
                target = request.url.path + (f"?{urlencode(rest)}" if rest else "")
                response = RedirectResponse(target, status_code=303)
                response.set_cookie(guard.cookie_name, guard.token, httponly=True, samesite="strict", path="/")
                return response
        elif cookie is None:
            return message(401, "Token needed", "This page needs the token autofix serve printed: open the whole "
                           "URL it printed (http://127.0.0.1:PORT/?token=...).", back=None)
        elif not guard.token_ok(cookie):
            return message(403, "Wrong token", "This browser holds the token of another autofix server: open the "
                           "URL `autofix serve` printed when it started.", back=None)
        return await call_next(request)

    async def form_of(request: Request) -> dict[str, str]:
        """The POSTed form (URL-encoded), its CSRF field checked; _FormError otherwise."""
        kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if kind != "application/x-www-form-urlencoded":
            raise _FormError(415, "Not a form", f"expected a submitted form (application/x-www-form-urlencoded), "
                             f"got {kind or 'no content type'}")
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            raise _FormError(413, "Too large", f"the form is over {MAX_FORM_BYTES} bytes")
        fields = {k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()}
        if not guard.csrf_ok(fields.get("csrf")):
            raise _FormError(403, "Form refused", "This form is stale or did not come from this review page "
                             "(its CSRF field is missing or wrong): reload the page and submit it again.")
        return fields

    def reviewer(request: Request) -> str:
        return unquote(request.cookies.get(REVIEWER_COOKIE, ""))

    def remember(response: Response, name: str) -> Response:
        response.set_cookie(REVIEWER_COOKIE, quote(name), httponly=True, samesite="strict", path="/",
                            max_age=180 * 24 * 3600)
        return response

    # ------------------------------------------------------------------ the queue

    @app.get("/", response_class=HTMLResponse)
    def queue() -> HTMLResponse:
        with store() as s:
            records = s.proposals()
        rows, note = _clusters(config)
        return render("queue", views.queue_page(records, rows, note))

    @app.get("/favicon.ico")
    def favicon() -> Response:
        return Response(status_code=204)

    # ------------------------------------------------------------------ one proposal

    def show(pid: str, form: views.DecisionForm, messages: list[tuple[str, str]], status_code: int = 200) -> HTMLResponse:
        with store() as s:
            try:
                record = s.get(pid)
            except ProposalNotFound as exc:
                return message(404, "No such proposal", str(exc.args[0] if exc.args else exc))
            log = s.audit_log(record.id)
        return render(record.id, views.proposal_page(record, log, form, messages), status_code)

    @app.get("/proposals/{pid}", response_class=HTMLResponse)
    def proposal(pid: str, request: Request, done: str | None = None) -> HTMLResponse:
        messages = _done_messages(store, pid, done)
        return show(pid, views.DecisionForm(csrf=guard.csrf, by=reviewer(request)), messages)

    @app.post("/proposals/{pid}/approve", response_class=HTMLResponse)
    async def approve_form(pid: str, request: Request) -> Response:
        try:
            fields = await form_of(request)
        except _FormError as exc:
            return message(exc.status, exc.title, exc.message, back=views.proposal_url(pid))
        by, note = fields.get("by", "").strip(), fields.get("note", "").strip()
        revalidate = fields.get("revalidate", "") in ("on", "1", "true", "yes")
        form = views.DecisionForm(csrf=guard.csrf, by=by, note=note, revalidate=revalidate)
        if not by:
            return await run_in_threadpool(show, pid, form, [("error", ("Approval not made: give your name (it goes to the audit log with "
                                              "the decision)."))], 400)

        def run() -> Any:
            with store() as s:
                return approve(config, pid, by, note=note or None, revalidate=revalidate, store=s)

        try:
            await run_in_threadpool(run)
        except ProposalNotFound as exc:
            return message(404, "No such proposal", str(exc.args[0] if exc.args else exc))
        except ValueError as exc:
            return await run_in_threadpool(show, pid, form, [("error", f"Approval not made: {exc}")], 400)
        except (ApprovalError, GitError, WorktreeError, OSError) as exc:
            return await run_in_threadpool(show, pid, form, [("error", f"Approval refused: {exc}")], 409)
        return remember(RedirectResponse(f"{views.proposal_url(pid)}?done=approved", status_code=303), by)

    @app.post("/proposals/{pid}/reject", response_class=HTMLResponse)
    async def reject_form(pid: str, request: Request) -> Response:
        try:
            fields = await form_of(request)
        except _FormError as exc:
            return message(exc.status, exc.title, exc.message, back=views.proposal_url(pid))
        by, reason = fields.get("by", "").strip(), fields.get("reason", "").strip()
        form = views.DecisionForm(csrf=guard.csrf, by=by, reason=reason)
        missing = [what for what, value in (("your name", by), ("a reason", reason)) if not value]
        if missing:
            return await run_in_threadpool(show, pid, form, [("error", (f"Rejection not made: give {' and '.join(missing)} (both go to the "
                                              f"audit log; later runs and the optimizer's authors read the reason)."))],
                        400)

        def run() -> Any:
            with store() as s:
                return reject(config, pid, by, reason, store=s)

        try:
            await run_in_threadpool(run)
        except ProposalNotFound as exc:
            return message(404, "No such proposal", str(exc.args[0] if exc.args else exc))
        except ValueError as exc:
            return await run_in_threadpool(show, pid, form, [("error", f"Rejection not made: {exc}")], 400)
        except ApprovalError as exc:
            return await run_in_threadpool(show, pid, form, [("error", f"Rejection refused: {exc}")], 409)
        return remember(RedirectResponse(f"{views.proposal_url(pid)}?done=rejected", status_code=303), by)

    # ------------------------------------------------------------------ labelling a cluster's cases

    def labels_view(cluster: str, form: views.LabelForm, messages: list[tuple[str, str]],
                    status_code: int = 200) -> HTMLResponse:
        try:
            info, cases = _slice(config, cluster)
        except DatasetError as exc:
            return message(404, f"Cluster {cluster}", str(exc))
        except LabelError as exc:
            return message(409, f"Cluster {cluster}", str(exc))
        labels_file = config.datasets.labels
        body = views.labels_page(cluster, info, cases, labels_file=labels_file, labels_hint=LABELS_HINT, form=form,
                                 messages=messages)
        return render(f"label {cluster}", body, status_code)

    @app.get("/clusters/{cluster}/labels", response_class=HTMLResponse)
    def labels(cluster: str, request: Request, done: str | None = None, case: str | None = None) -> HTMLResponse:
        messages = []
        if done == "labelled" and case:
            messages.append(("done", f"Label saved for {case} in {config.datasets.labels}."))
        return labels_view(cluster, views.LabelForm(csrf=guard.csrf, by=reviewer(request)), messages)

    @app.post("/clusters/{cluster}/labels", response_class=HTMLResponse)
    async def add_label(cluster: str, request: Request) -> Response:
        try:
            fields = await form_of(request)
        except _FormError as exc:
            return message(exc.status, exc.title, exc.message, back=views.labels_url(cluster))
        case_id = fields.get("case_id", "").strip()
        by = fields.get("by", "").strip()
        form = views.LabelForm(csrf=guard.csrf, by=by, values=fields, case_id=case_id)
        path = config.dataset_path("labels")
        if path is None:
            return await run_in_threadpool(labels_view, cluster, form, [("error", ("Label not saved: datasets.labels is not set in "
                                                         "autofix.yaml."))], 409)
        try:
            _, cases = await run_in_threadpool(_slice, config, cluster)
        except (DatasetError, LabelError) as exc:
            return message(404, f"Cluster {cluster}", str(exc))
        if case_id not in {c.case.case_id for c in cases}:
            return await run_in_threadpool(labels_view, cluster, form, [("error", (f"Label not saved: {case_id or '(no case)'} is not a case "
                                                         f"of cluster {cluster}."))], 400)
        if not by:
            return await run_in_threadpool(labels_view, cluster, form, [("error", (f"Label for {case_id} not saved: give your name (it is "
                                                         f"kept with the label)."))], 400)
        expected = {"must_include": _lines(fields.get("must_include", "")),
                    "must_not_include": _lines(fields.get("must_not_include", "")),
                    "doc_ids": _ids(fields.get("doc_ids", "")), "answer": fields.get("answer", "").strip()}
        if not any(expected.values()):
            return await run_in_threadpool(labels_view, cluster, form, [("error", (f"Label for {case_id} not saved: give at least one of must "
                                                         f"include, must not include, document ids or a reference "
                                                         f"answer (a note alone gives a check nothing to read)."))], 400)
        try:
            label = Label(case_id=case_id, expected=expected, labeled_by=by,
                          note=fields.get("note", "").strip() or None)
            await run_in_threadpool(append_labels, path, [label])
        except (ValueError, OSError) as exc:
            return await run_in_threadpool(labels_view, cluster, form, [("error", f"Label for {case_id} not saved: {exc}")], 400)
        target = f"{views.labels_url(cluster)}?{urlencode({'done': 'labelled', 'case': case_id})}#case-{quote(case_id, safe='')}"
        return remember(RedirectResponse(target, status_code=303), by)

    return app


# ---------------------------------------------------------------------- helpers (no request state)


def _where(config: AutofixConfig, store_url: str | None) -> str:
    from autofix.approval.store import configured_url, default_url, store_path_for

    return "queue: " + store_path_for(store_url or configured_url(config) or default_url(config.state_path))


def _done_messages(store: Callable[[], ApprovalStore], pid: str, done: str | None) -> list[tuple[str, str]]:
    """The message after a decision (the page it redirected to), from the record and the audit log."""
    if done not in ("approved", "rejected"):
        return []
    with store() as s:
        try:
            record = s.get(pid)
        except ProposalNotFound:
            return []
        log = s.audit_log(pid)
    if done == "rejected" and record.status == "rejected":
        return [("done", (f"Rejected by {record.decided_by}: {record.reason}. Later runs will not propose this "
                         f"change for cluster {record.cluster or '?'} again."))]
    if done == "approved" and record.status == "merged":
        out = [("done", (f"Approved by {record.decided_by} and merged into {record.target_branch}: "
                        f"{record.merged_commit} (tree {(record.merged_tree or '')[:12]}, the validated tree)."))]
        fed = next((entry for entry in reversed(log) if entry.action in ("feedback", "feedback_failed")), None)
        if fed is not None and fed.action == "feedback":
            added = fed.detail.get("added") or 0
            out.append(("done", f"Regression set: {added} case{'s' if added != 1 else ''} added"
                                + (f" in {fed.detail.get('commit')}" if fed.detail.get("commit") else "")
                                + (f". {fed.detail.get('note')}" if fed.detail.get("note") else ".")))
        elif fed is not None:
            out.append(("warn", (f"The merge stands, but its cases were not added to the regression set: "
                                f"{fed.detail.get('error')}")))
        return out
    return []


def _clusters(config: AutofixConfig) -> tuple[list[views.ClusterRow], str | None]:
    """The clusters of the latest triage with how many of their traces are labelled; or a note saying why none."""
    from autofix.replay.datasets import TRIAGE_LATEST

    path = config.state_path / TRIAGE_LATEST
    if not path.is_file():
        return [], f"No triage result yet ({path}): run `autofix triage -c {config.file}` to find the clusters."
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        return [], f"{path} is not readable JSON ({exc}); run autofix triage again."
    clusters = data.get("clusters") if isinstance(data, dict) else data
    try:
        labels = load_labels(config.dataset_path("labels"))
    except LabelError as exc:
        labels = {}
        note: str | None = str(exc)
    else:
        note = None
    rows = []
    for c in clusters if isinstance(clusters, list) else []:
        if isinstance(c, dict) and c.get("id") is not None:
            ids = [str(t) for t in c.get("trace_ids") or []]
            rows.append(views.ClusterRow(id=str(c["id"]), category=str(c.get("category", "?")), size=len(ids),
                                         labelled=sum(1 for t in ids if t in labels)))
    return rows, note or (None if rows else f"The latest triage ({path}) found no clusters.")


def _slice(config: AutofixConfig, cluster: str) -> tuple[dict[str, Any], list[views.CaseView]]:
    """The cluster's triage record and its cases, each with its part, the answer given and its current label."""
    from autofix.replay.datasets import load_slice, read_cluster, split_holdout

    info = read_cluster(config, cluster)
    data = load_slice(config, cluster)
    labels = load_labels(config.dataset_path("labels"))
    _, held = split_holdout([c.case_id for c in data.cases])
    answers = _answers(config, {c.case_id for c in data.cases})
    return info, [views.CaseView(case=c, part="held out" if c.case_id in held else "training",
                                 answer=answers.get(c.case_id), label=labels.get(c.case_id)) for c in data.cases]


def _answers(config: AutofixConfig, ids: set[str]) -> dict[str, Any]:
    """What the assistant answered in each trace of `ids` (best effort: {} when the traces cannot be read)."""
    from autofix.replay import datasets
    from autofix.traces import Quarantine, ingest

    try:
        latest, data = datasets._read_latest(config)
        files: list[Path] = datasets._traces_files(config, latest, data)
        return {t.trace_id: t.output for t in ingest(files, quarantine=Quarantine(None)) if t.trace_id in ids}
    except Exception:  # noqa: BLE001 - the page still shows the cases and their inputs
        return {}


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _ids(text: str) -> list[str]:
    return [part for part in text.replace(",", " ").split() if part]


__all__ = ["LABELS_HINT", "REVIEWER_COOKIE", "create_app"]
