"""The review page through FastAPI's TestClient: the token, the CSRF field, the queue and proposal pages, the
approve and reject forms (recorded and audited like the CLI), refusals shown on the page, and labelling."""

from __future__ import annotations

import html

import pytest
from fastapi.testclient import TestClient

from autofix.approval import reject
from autofix.slices.labels import load_labels
from autofix.web import Guard, create_app
from autofix.web.security import LOOPBACK_NAMES

from .conftest import CLUSTER, CONFIG, build_target, csrf_of

TOKEN = "test-token-0123456789"


def client_for(target, *, token: str = TOKEN, base_url: str = "http://testserver", **guard) -> TestClient:
    return TestClient(create_app(target.config, guard=Guard(token=token, **guard)), base_url=base_url)


@pytest.fixture
def client(target) -> TestClient:
    """A client that opened the token URL once: it holds the cookie from then on."""
    c = client_for(target)
    first = c.get(f"/?token={TOKEN}", follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"] == "/"
    return c


def text(response) -> str:
    return html.unescape(response.text)


# ------------------------------------------------------------------------------------------ the token


def test_every_page_and_form_needs_the_token(target) -> None:
    c = client_for(target)
    for path in ("/", "/proposals/p-0001", f"/clusters/{CLUSTER}/labels", "/no/such/page"):
        r = c.get(path)
        assert r.status_code == 401, path
        assert "needs the token" in r.text
    r = c.post("/proposals/p-0001/approve", data={"by": "mallory"})
    assert r.status_code == 401
    assert c.get("/?token=wrong").status_code == 403
    c.cookies.set(Guard(token=TOKEN).cookie_name, "wrong")
    assert c.get("/").status_code == 403
    with target.store() as store:
        assert store.get("p-0001").status == "pending"
        assert [e.action for e in store.audit_log("p-0001")] == ["enqueue"]


def test_the_token_url_sets_a_cookie_and_drops_the_token_from_the_address(target) -> None:
    c = client_for(target)
    r = c.get(f"/proposals/p-0001?token={TOKEN}&done=x", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/proposals/p-0001?done=x"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert TOKEN in cookie
    page = c.get("/")
    assert page.status_code == 200 and "Approval queue" in page.text
    assert TOKEN not in page.text  # only the derived CSRF value is in the forms
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"


def test_a_post_needs_the_csrf_field(client, target) -> None:
    for data in ({"by": "alice"}, {"by": "alice", "csrf": "0" * 64}):
        r = client.post("/proposals/p-0001/approve", data=data)
        assert r.status_code == 403 and "CSRF" in r.text
    r = client.post("/proposals/p-0001/reject", content=b'{"by": "a"}', headers={"content-type": "application/json"})
    assert r.status_code == 415
    with target.store() as store:
        assert store.get("p-0001").status == "pending"
    assert target.head() != target.queued["p-0001"].candidate_commit


def test_bound_to_loopback_it_answers_only_to_loopback_names(target) -> None:
    rebinding = client_for(target, allowed_hosts=LOOPBACK_NAMES, base_url="http://evil.example:8765")
    assert rebinding.get(f"/?token={TOKEN}").status_code == 400
    local = client_for(target, allowed_hosts=LOOPBACK_NAMES, base_url="http://127.0.0.1:8765")
    assert local.get(f"/?token={TOKEN}").status_code == 200


# ------------------------------------------------------------------------------------------ reading


def test_the_queue_lists_pending_first_with_the_held_out_improvement(client, target) -> None:
    reject(target.config, "p-0001", "carol", "too chatty")
    page = text(client.get("/"))
    assert page.index("p-0002") < page.index("p-0001")  # pending first
    assert "+0.50 (0.17 → 0.67, n=6)" in page
    for expected in ("kinder wording 2", "scripted", CLUSTER, "2026-", "carol", "1 pending", "1 rejected",
                     "Label slice cases", "1 of 4"):
        assert expected in page, expected
    assert f'href="/clusters/{CLUSTER}/labels"' in client.get("/").text


def test_the_proposal_page_shows_diff_verdict_examples_lineage_and_history(client, target) -> None:
    r = client.get("/proposals/p-0001")
    assert r.status_code == 200
    raw, page = r.text, text(r)
    assert '<span class="add">+Line 3 (kinder, v1) of the system prompt.</span>' in raw
    assert '<span class="del">-Line 3 of the system prompt.</span>' in raw
    for header in ("section", "check", "value", "threshold", "margin", "pass/fail", "reason"):
        assert f"<th>{header}</th>" in raw
    for expected in ("held-out slice", "0.17 -> 0.67 on 6 held-out cases", "regression answer_correct",
                     "no drop beyond the margin", "1 fixed", "How do I reset password 2?",
                     "Use HelpPoint to reset it.", "t001, t002, t003, t004", "scripted/optimizer", "$0.0123",
                     "users asked twice", "enqueue", target.queued["p-0001"].candidate_commit):
        assert expected in page, expected
    assert "&lt;b&gt;2&lt;/b&gt;." in raw and "<b>2</b>" not in raw  # outputs are escaped, never markup
    assert 'id="approve-form"' in raw and 'id="reject-form"' in raw and 'name="revalidate"' in raw
    assert csrf_of(raw) == Guard(token=TOKEN).csrf
    missing = client.get("/proposals/p-9999")
    assert missing.status_code == 404 and "no proposal 'p-9999'" in text(missing)


# ------------------------------------------------------------------------------------------ deciding


def test_approving_merges_the_validated_commit_and_audits_the_reviewer(client, target) -> None:
    csrf = csrf_of(client.get("/proposals/p-0001").text)
    r = client.post("/proposals/p-0001/approve", data={"by": "alice", "note": "reads well", "csrf": csrf},
                    follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/proposals/p-0001?done=approved"
    verdict = target.queued["p-0001"]
    with target.store() as store:
        record = store.get("p-0001")
        log = store.audit_log("p-0001")
    assert (record.status, record.decided_by, record.note) == ("merged", "alice", "reads well")
    assert record.merged_tree == verdict.candidate_tree
    assert [(e.actor, e.action) for e in log][:3] == [("autofix", "enqueue"), ("alice", "approve"),
                                                      ("alice", "merge")]
    # main was fast-forwarded to exactly the validated commit; approving then committed its cases to the
    # regression set on top (feeding back), so that commit is main's head and the validated one its parent
    assert record.merged_commit == verdict.candidate_commit
    assert target.git("rev-parse", f"{record.merged_commit}^{{tree}}") == verdict.candidate_tree
    assert target.head() == record.feedback_commit
    assert target.git("rev-parse", "main~1") == verdict.candidate_commit
    shown = text(client.get(r.headers["location"]))
    assert "Approved by alice and merged into main" in shown and verdict.candidate_tree[:12] in shown
    assert "Regression set:" in shown
    assert 'id="approve-form"' not in shown  # decided: no forms any more
    # the name is remembered for the next form
    assert 'value="alice"' in client.get("/proposals/p-0002").text


def test_rejecting_records_the_reason_and_the_reviewer(client, target) -> None:
    csrf = csrf_of(client.get("/proposals/p-0002").text)
    r = client.post("/proposals/p-0002/reject", data={"by": "bob", "reason": "changes the tone", "csrf": csrf})
    assert r.status_code == 200 and "Rejected by bob: changes the tone" in text(r)
    with target.store() as store:
        record = store.get("p-0002")
        last = store.audit_log("p-0002")[-1]
        assert store.was_rejected(record.diff, CLUSTER)
    assert (record.status, record.decided_by, record.reason) == ("rejected", "bob", "changes the tone")
    assert (last.actor, last.action, last.detail["reason"]) == ("bob", "reject", "changes the tone")


def test_bad_input_is_shown_on_the_page_and_changes_nothing(client, target) -> None:
    csrf = csrf_of(client.get("/proposals/p-0001").text)
    r = client.post("/proposals/p-0001/reject", data={"by": "bob", "reason": "  ", "csrf": csrf})
    assert r.status_code == 400
    assert "Rejection not made: give a reason" in text(r) and 'value="bob"' in r.text
    r = client.post("/proposals/p-0001/approve", data={"by": "", "note": "kept", "csrf": csrf})
    assert r.status_code == 400 and "give your name" in text(r) and ">kept</textarea>" in r.text
    with target.store() as store:
        assert store.get("p-0001").status == "pending"
        assert [e.action for e in store.audit_log("p-0001")] == ["enqueue"]
    r = client.post("/proposals/p-0404/approve", data={"by": "bob", "csrf": csrf})
    assert r.status_code == 404


def test_a_refusal_is_rendered_on_the_page_not_a_500(client, target) -> None:
    csrf = csrf_of(client.get("/proposals/p-0001").text)
    assert client.post("/proposals/p-0001/approve", data={"by": "alice", "csrf": csrf}).status_code == 200
    # p-0002 was validated on the old base: main moved (p-0001's merge and its regression cases)
    r = client.post("/proposals/p-0002/approve", data={"by": "dave", "note": "ok", "csrf": csrf})
    assert r.status_code == 409
    page = text(r)
    assert "Approval refused: branch main moved since p-0002 was validated" in page
    assert 'role="alert"' in r.text and 'value="dave"' in r.text
    with target.store() as store:
        assert store.get("p-0002").status == "pending"
        last = store.audit_log("p-0002")[-1]
    assert (last.actor, last.action) == ("dave", "approve_refused")
    # and a decided proposal cannot be decided again
    r = client.post("/proposals/p-0001/reject", data={"by": "erin", "reason": "late", "csrf": csrf})
    assert r.status_code == 409 and "only a pending proposal can be rejected" in text(r)


# ------------------------------------------------------------------------------------------ labelling


def test_the_label_page_shows_the_cases_and_the_form_appends_a_label(client, target) -> None:
    r = client.get(f"/clusters/{CLUSTER}/labels")
    assert r.status_code == 200
    page = text(r)
    for expected in ("Label cluster prompt-tone-1", "the answer does not name the tool", "1 of 4",
                     "How do I reset password 3?", "I don't know (3).", "HelpPoint", "rita", "data/labels.jsonl"):
        assert expected in page, expected
    assert page.count("Add a label") == 3 and page.count("Replace the label") == 1
    csrf = csrf_of(r.text)
    r = client.post(f"/clusters/{CLUSTER}/labels", data={
        "csrf": csrf, "case_id": "t002", "by": "rita", "must_include": "HelpPoint\nSettings, then Security\n",
        "must_not_include": "I don't know", "doc_ids": "kb-12, kb-7", "answer": "", "note": "from the runbook"})
    assert r.status_code == 200 and "Label saved for t002" in text(r)
    label = load_labels(target.root / "data" / "labels.jsonl")["t002"]
    assert label.expected == {"must_include": ["HelpPoint", "Settings, then Security"],
                              "must_not_include": ["I don't know"], "doc_ids": ["kb-12", "kb-7"]}
    assert (label.labeled_by, label.note) == ("rita", "from the runbook")
    assert "2 of 4" in text(client.get("/"))
    lines = (target.root / "data" / "labels.jsonl").read_text().splitlines()
    assert len(lines) == 2  # appended, the earlier label untouched


def test_a_label_with_nothing_to_check_or_for_another_case_is_refused(client, target) -> None:
    csrf = csrf_of(client.get(f"/clusters/{CLUSTER}/labels").text)
    before = (target.root / "data" / "labels.jsonl").read_text()
    r = client.post(f"/clusters/{CLUSTER}/labels", data={"csrf": csrf, "case_id": "t003", "by": "rita",
                                                         "note": "just a note"})
    assert r.status_code == 400 and "a note alone gives a check nothing to read" in text(r)
    assert ">just a note<" in r.text or 'value="just a note"' in r.text
    r = client.post(f"/clusters/{CLUSTER}/labels", data={"csrf": csrf, "case_id": "reg-001", "by": "rita",
                                                         "answer": "x"})
    assert r.status_code == 400 and "not a case of cluster" in text(r)
    assert (target.root / "data" / "labels.jsonl").read_text() == before
    assert client.get("/clusters/nope/labels").status_code == 404


def test_without_datasets_labels_the_page_says_how_to_set_it(tmp_path) -> None:
    t = build_target(tmp_path / "nolabels", CONFIG.replace("  labels: data/labels.jsonl\n", ""))
    c = client_for(t)
    r = c.get(f"/clusters/{CLUSTER}/labels?token={TOKEN}")
    assert r.status_code == 200
    page = text(r)
    assert "datasets.labels is not set" in page and "labels: data/labels.jsonl" in page
    assert "label-form" not in r.text
    r = c.post(f"/clusters/{CLUSTER}/labels", data={"csrf": Guard(token=TOKEN).csrf, "case_id": "t001",
                                                    "by": "rita", "answer": "x"})
    assert r.status_code == 409 and "datasets.labels is not set" in text(r)
