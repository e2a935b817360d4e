from helpdesk.router import route

TERMS = frozenset({"vpn", "password", "leave", "laptop", "expense"})


def test_ticket_id_goes_to_lookup_tool():
    decision = route("any update on INC-1042?", TERMS)
    assert (decision.action, decision.tool, decision.matched) == ("tool", "lookup_ticket", ["INC-1042"])


def test_own_tickets_go_to_list_tool():
    assert route("Show my tickets since Monday", TERMS).tool == "list_tickets"
    assert route("which tickets did I open in the last 10 days?", TERMS).tool == "list_tickets"


def test_new_ticket_goes_to_create_tool():
    assert route("Please open a ticket: my monitor flickers", TERMS).tool == "create_ticket"


def test_policy_question_is_searched():
    assert route("How do I set up the VPN on my Mac?", TERMS).action == "search"


def test_greeting_is_answered_directly():
    assert route("hi there!", TERMS).action == "answer"
    assert route("What's the date today?", TERMS).action == "answer"


def test_vague_request_gets_a_clarifying_question():
    assert route("it's not working", TERMS).action == "clarify"
    assert route("my vpn thing is not working", TERMS).action == "search"  # names a system: not vague
