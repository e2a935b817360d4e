"""The review page in a real headless Chromium (Debian's `chromium`, driven by Playwright; no browser download):
a reviewer opens the printed token URL, approves one proposal and rejects the other by filling the forms, and
the store, the audit log and the target branch show both decisions."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from .conftest import CLUSTER


def chromium_binary() -> str | None:
    """`$AUTOFIX_CHROMIUM`, else Debian's chromium on the PATH (or /usr/bin/chromium)."""
    for candidate in (os.environ.get("AUTOFIX_CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium",
                      shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture
def browser():
    binary = chromium_binary()
    if binary is None:
        pytest.skip("no chromium binary found (install Debian's `chromium` package: bootstrap.sh does; or set "
                    "AUTOFIX_CHROMIUM to a Chromium executable)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the browser test drives chromium with Playwright, a test dependency: "
                    ".venv/bin/pip install -e '.[test]' (never `playwright install`: the system chromium is used)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=binary, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def test_a_reviewer_approves_one_proposal_and_rejects_the_other_in_the_browser(target, serve, browser) -> None:
    server = serve(target.config_file)
    page = browser.new_page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    failures: list[str] = []
    page.on("pageerror", lambda error: failures.append(str(error)))

    page.goto(server.url)
    assert page.url == server.base + "/"  # the token went into a cookie, out of the address bar
    assert page.locator("h1").inner_text() == "Approval queue"
    assert page.locator("table.queue tbody tr").count() == 2

    # approve p-0001: read it, fill the name and a note, submit
    page.get_by_role("link", name="p-0001").click()
    assert page.locator("h1").inner_text().startswith("p-0001")
    assert page.locator("pre.diff .add").first.inner_text().startswith("+Line 3 (kinder, v1)")
    assert page.locator("table.verdict").get_by_text("held-out slice").count() == 1
    page.fill("#approve-by", "alice")
    page.fill("#approve-note", "reads well")
    page.click("#approve-button")
    page.wait_for_load_state()
    assert page.url.endswith("/proposals/p-0001?done=approved")
    assert "Approved by alice and merged into main" in page.locator(".banner.done").first.inner_text()
    assert page.locator("#approve-form").count() == 0

    # reject p-0002: the browser will not submit it without a reason; with one it goes through
    page.click("header.top >> text=queue")
    page.get_by_role("link", name="p-0002").click()
    assert page.input_value("#reject-by") == "alice"  # the last name typed is offered
    page.fill("#reject-by", "bob")
    page.click("#reject-button")
    assert page.url.endswith("/proposals/p-0002")  # blocked by the required reason: nothing was sent
    page.fill("#reject-reason", "changes the tone")
    page.click("#reject-button")
    page.wait_for_load_state()
    assert "Rejected by bob: changes the tone" in page.locator(".banner.done").first.inner_text()

    page.click("header.top >> text=queue")
    statuses = page.locator("table.queue tbody tr td:nth-child(2)").all_inner_texts()
    assert sorted(statuses) == ["merged", "rejected"]
    assert not failures
    assert requested and all(url.startswith(server.base + "/") for url in requested)  # nothing from the network
    page.close()

    # what the store, the audit log and the target branch say
    approved_verdict = target.queued["p-0001"]
    with target.store() as store:
        approved, rejected = store.get("p-0001"), store.get("p-0002")
        approved_log = [(e.actor, e.action) for e in store.audit_log("p-0001")]
        rejected_log = store.audit_log("p-0002")
        assert store.was_rejected(rejected.diff, CLUSTER)
    assert (approved.status, approved.decided_by, approved.note) == ("merged", "alice", "reads well")
    assert approved_log[:3] == [("autofix", "enqueue"), ("alice", "approve"), ("alice", "merge")]
    assert (rejected.status, rejected.decided_by, rejected.reason) == ("rejected", "bob", "changes the tone")
    assert [(e.actor, e.action) for e in rejected_log] == [("autofix", "enqueue"), ("bob", "reject")]
    assert rejected_log[-1].detail["reason"] == "changes the tone"
    # main was fast-forwarded to the very commit the gate validated (same tree); approving then added the
    # slice's cases to the regression set in a commit of its own on top
    assert approved.merged_commit == approved_verdict.candidate_commit
    assert target.git("rev-parse", f"{approved.merged_commit}^{{tree}}") == approved_verdict.candidate_tree
    assert approved.merged_tree == approved_verdict.candidate_tree
    assert target.head() == approved.feedback_commit
    assert target.git("rev-parse", "main~1") == approved_verdict.candidate_commit
    assert target.git("rev-list", "--count", f"{approved_verdict.base_commit}..main") == "2"
