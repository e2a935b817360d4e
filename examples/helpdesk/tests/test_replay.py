"""The replay protocol: one result per case, in order, with spans; broken cases are failed rows, not missing ones."""

import json

from helpdesk.replay import main


def run(tmp_path, cases):
    cases_file, out_file = tmp_path / "cases.jsonl", tmp_path / "out.jsonl"
    cases_file.write_text("\n".join(c if isinstance(c, str) else json.dumps(c) for c in cases) + "\n")
    assert main(["--cases", str(cases_file), "--out", str(out_file)]) == 0
    return [json.loads(line) for line in out_file.read_text().splitlines()]


def test_search_case_has_router_retrieval_and_llm_spans(tmp_path, echo_model):
    [result] = run(tmp_path, [{"case_id": "c1", "input": "How do I submit an expense claim?"}])
    assert result["case_id"] == "c1" and result["error"] is None and result["output"]
    kinds = [s["kind"] for s in result["spans"]]
    assert kinds == ["chain", "router", "retrieval", "llm"]
    retrieval = result["spans"][2]
    assert retrieval["output"] and {"doc_id", "score", "text"} <= set(retrieval["output"][0])
    assert all(s["end_ms"] >= s["start_ms"] for s in result["spans"])
    assert echo_model[0]["headers"]["X-Autofix-Case"] == "c1"


def test_tool_case_records_arguments_and_result(tmp_path, echo_model):
    [result] = run(tmp_path, [{"case_id": "t", "input": "status of INC-1001?", "metadata": {"user": "alice.meyer"}}])
    tool = next(s for s in result["spans"] if s["kind"] == "tool")
    assert tool["name"] == "lookup_ticket" and tool["input"] == {"ticket_id": "INC-1001"}
    assert "INC-1001" in result["output"] and not echo_model  # no model call for a lookup


def test_broken_lines_and_model_errors_become_failed_rows(tmp_path, echo_model, monkeypatch):
    monkeypatch.setenv("AUTOFIX_MODEL_API_KEY", "wrong")
    results = run(tmp_path, ["{not json", {"case_id": "ok-shape", "input": "How do I reset my password?"},
                             {"case_id": "clarify", "input": "it's not working"}])
    assert [r["case_id"] for r in results] == ["line-1", "ok-shape", "clarify"]
    assert results[0]["error"].startswith("JSONDecodeError")
    assert "401" in results[1]["error"] and results[1]["output"] is None
    assert results[2]["error"] is None and "more detail" in results[2]["output"]


def test_earlier_messages_go_to_the_model_before_the_question(tmp_path, echo_model):
    earlier = [{"role": "user", "content": "How do I submit an expense claim?"},
               {"role": "assistant", "content": "Use Expensa."}]
    first, later = run(tmp_path, [{"case_id": "one", "input": "How do I submit an expense claim?"},
                                  {"case_id": "two", "input": "and who approves it?", "messages": earlier}])
    assert first["error"] is None and later["error"] is None
    [llm_first] = [s for s in first["spans"] if s["kind"] == "llm"]
    [llm_later] = [s for s in later["spans"] if s["kind"] == "llm"]
    assert [m["role"] for m in llm_first["input"]] == ["system", "user"]
    assert llm_later["input"][1:] == [*earlier, {"role": "user", "content": "and who approves it?"}]
    assert echo_model[1]["body"]["messages"][1:3] == earlier  # what the model really got
    assert llm_later["attributes"]["max_tokens"] == echo_model[1]["body"]["max_tokens"]
    assert llm_later["attributes"]["finish_reason"] == "stop"  # "length" when the answer was cut


def test_malformed_messages_fail_their_case_only(tmp_path, echo_model):
    results = run(tmp_path, [{"case_id": "bad", "input": "hi", "messages": [{"role": "robot", "content": "x"}]},
                             {"case_id": "bad2", "input": "hi", "messages": "hello"},
                             {"case_id": "ok", "input": "hi", "messages": []}])
    assert results[0]["error"].startswith("ValueError: messages[0]") and results[0]["output"] is None
    assert results[1]["error"].startswith("ValueError: messages must be a list")
    assert results[2]["error"] is None
