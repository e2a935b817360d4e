from datetime import date

import pytest

from helpdesk.tools.dates import parse_since
from helpdesk.tools.tickets import TicketSystem, ToolError


@pytest.fixture()
def tickets(helpdesk_root):
    return TicketSystem(helpdesk_root / "data" / "tickets_seed.json")


def test_lookup_returns_the_ticket(tickets):
    ticket = tickets.call("lookup_ticket", {"ticket_id": "INC-1001"}, today="2026-11-23")
    assert ticket["id"] == "INC-1001" and ticket["requester"] == "alice.meyer"


def test_unknown_ticket_is_a_tool_error(tickets):
    with pytest.raises(ToolError, match="404"):
        tickets.call("lookup_ticket", {"ticket_id": "INC-9999"}, today="2026-11-23")


def test_arguments_are_validated_against_the_schema(tickets):
    with pytest.raises(ToolError, match=r"since: '16/11/2026' does not match"):
        tickets.call("list_tickets", {"requester": "alice.meyer", "since": "16/11/2026"}, today="2026-11-23")
    with pytest.raises(ToolError, match="priority"):
        tickets.call("create_ticket", {"requester": "a", "summary": "broken screen", "category": "it", "priority": "urgent"},
                     today="2026-11-23")


def test_list_filters_by_requester_and_date(tickets):
    listed = tickets.call("list_tickets", {"requester": "alice.meyer", "since": "2026-10-01"}, today="2026-11-23")
    assert listed and all(t["requester"] == "alice.meyer" and t["opened"] >= "2026-10-01" for t in listed)
    later = tickets.call("list_tickets", {"requester": "alice.meyer", "since": "2026-11-15"}, today="2026-11-23")
    assert len(later) < len(listed)


def test_create_assigns_a_new_id(tickets):
    created = tickets.call("create_ticket", {"requester": "bob.kowalski", "summary": "monitor flickers",
                                             "category": "it", "priority": "medium"}, today="2026-11-23")
    assert tickets.call("lookup_ticket", {"ticket_id": created["id"]}, today="2026-11-23")["summary"] == "monitor flickers"


@pytest.mark.parametrize("text, expected", [
    ("my tickets since 2026-11-02", date(2026, 11, 2)),
    ("tickets from the last 10 days", date(2026, 11, 13)),
    ("show my tickets since Monday", date(2026, 11, 16)),  # 2026-11-23 is a Monday: the previous one
    ("my tickets this week", date(2026, 11, 23)),
    ("my tickets", date(2026, 10, 24)),
])
def test_parse_since(text, expected):
    assert parse_since(text, date(2026, 11, 23)) == expected
