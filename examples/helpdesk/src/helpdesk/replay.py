"""Replay entry point of the autofix protocol: `python -m helpdesk.replay --cases CASES.jsonl --out RESULTS.jsonl`.

Reads one case per line ({"case_id", "input", "expected"?, "metadata"?, "messages"?}) and writes one result per
case ({"case_id", "output", "spans", "error", "latency_ms"}), in input order, flushing as it goes.
A case that fails is written with its error; a malformed line is reported as a failed case too.

`messages`, optional, is the conversation before `input`: a list of {"role": "user"|"assistant", "content": str},
oldest first. The assistant sends its last turns to the model with the new question, as it does in production.

Cases are independent: each starts from the seeded ticket system, so a ticket created by one case is
not seen by the next and a case's result does not depend on which cases share its batch (autofix
batches cases as it likes and caches each result on its own).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from helpdesk.assistant import Assistant
from helpdesk.tools.tickets import TicketSystem


def conversation(messages: Any) -> list[dict[str, str]]:
    """A case's earlier `messages`, checked: None or a list of {"role": "user"|"assistant", "content": str}."""
    if messages is None:
        return []
    if not isinstance(messages, list):
        raise ValueError(f"messages must be a list of {{'role', 'content'}} objects, not {type(messages).__name__}")
    for n, message in enumerate(messages):
        if (not isinstance(message, dict) or message.get("role") not in ("user", "assistant")
                or not isinstance(message.get("content"), str)):
            raise ValueError(f"messages[{n}] must be {{'role': 'user'|'assistant', 'content': str}}, got {message!r:.200}")
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def run_case(assistant: Assistant, line_no: int, line: str) -> dict[str, Any]:
    started = time.perf_counter()
    case_id = f"line-{line_no}"
    try:
        case = json.loads(line)
        case_id = str(case["case_id"])
        assistant = copy.copy(assistant)  # this case's own ticket system, fresh from the seed
        assistant.tickets = TicketSystem(assistant.root / "data" / "tickets_seed.json")
        reply = assistant.answer(str(case["input"]), case.get("metadata") or {}, case_id=case_id,
                                 history=conversation(case.get("messages")))
        output, spans, error = reply.output, reply.spans, None
    except Exception as exc:  # one broken case must not stop the others
        output, spans, error = None, [], f"{type(exc).__name__}: {exc}"
    return {"case_id": case_id, "output": output, "spans": spans, "error": error,
            "latency_ms": round((time.perf_counter() - started) * 1000, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpdesk.replay", description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=Path, required=True, help="JSONL file of cases")
    parser.add_argument("--out", type=Path, required=True, help="JSONL file to write results to")
    parser.add_argument("--workers", type=int, default=1, help="cases answered concurrently (default 1)")
    args = parser.parse_args(argv)

    lines = [(n, line) for n, line in enumerate(args.cases.read_text(encoding="utf-8").splitlines(), 1) if line.strip()]
    assistant = Assistant()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    failures = 0
    with args.out.open("w", encoding="utf-8") as out, ThreadPoolExecutor(max_workers=max(1, args.workers)) as pool:
        for result in pool.map(lambda item: run_case(assistant, *item), lines):
            failures += result["error"] is not None
            out.write(json.dumps(result, ensure_ascii=False) + "\n")
            out.flush()
    print(f"replayed {len(lines)} cases, {failures} with errors -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
