"""Convert tau-bench's published historical trajectories into autofix's native trace JSONL.

    .venv/bin/python benchmarks/convert_tau_bench.py SOURCE_DIR \
        [--file historical_trajectories/gpt-4o-airline.json] [--domain airline] [--model gpt-4o] \
        [--sample 150] [--seed 0] [--out benchmarks/data/tau_bench/traces.jsonl]

SOURCE_DIR is a checkout of https://github.com/sierra-research/tau-bench (MIT) at commit
7362a1708d720a4d697d042f21fd8637ea144c3b, the commit that published the trajectories; the
converter reads the trajectory file and the tools' JSON schemas
(``tau_bench/envs/<domain>/tools/*.py``, each tool's ``get_info()``, read with ``ast``
without importing tau-bench). ``--sample N`` keeps a seeded random N of the rows
(default 150 of the 200; 0: all).

One trajectory row (``{"task_id", "trial", "reward", "info", "traj"}``) becomes one trace:

- input: the first user message; output: the last assistant message with text content;
- spans, in the order of ``traj``:
  - each assistant message -> an ``llm`` span; its input is the messages added to the
    conversation since the previous llm span (the first one: the system prompt, i.e. the
    domain policy, and the first user message; ``attributes.history_messages`` counts the
    earlier messages the model also saw), its output the assistant message as logged
    (content and tool_calls, arguments parsed from their JSON text);
  - each tool call -> a ``tool`` span: input the arguments, output the tool message's
    content (tau-bench's tools return strings), error that content when it is an error
    (tau-bench's tools and env return ``"Error: ..."``, an unknown tool
    ``"Unknown action ..."``), attributes the tool's JSON schema (``json_schema``), its
    description and the tool_call_id;
  - each user turn after the first -> a ``chain`` span named ``user`` whose output is the
    simulated user's message (the user is tau-bench's LLM user simulator);
- scores: ``reward`` (0.0 or 1.0) and the sub-score tau-bench logged in
  ``info.reward_info.info`` (``r_actions``: final database equals the reference's;
  ``r_outputs``: every required output string appears in a reply), source ``tau-bench``.
  The reference actions, the user's hidden instruction, the required output strings and the
  reference data hash are NOT copied: they are the answer key;
- metadata: task_id, trial, domain (also as task_type), tau-bench's ``info.source`` (what
  produced the last observation: ``user`` or a tool name) as ``env_info_source``, and
  ``user_cost`` (the user simulator's cost in USD, as logged);
- versions: the agent model (from the file name) and the policy/tool version (the commit);
- timestamp: the source logs none; every trace gets the publishing commit's date.
No feedback: the users are simulated and give no ratings.
"""

from __future__ import annotations

import argparse
import ast
import json
import random
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SOURCE_COMMIT = "7362a1708d720a4d697d042f21fd8637ea144c3b"
SOURCE_COMMIT_DATE = "2024-11-22T17:23:33-08:00"
ERROR_PREFIXES = ("Error:", "Unknown action")


def tool_infos(source: Path, domain: str) -> dict[str, dict[str, Any]]:
    """name -> get_info()["function"] for every tool module of the domain (parsed, not imported)."""
    infos: dict[str, dict[str, Any]] = {}
    for py in sorted((source / "tau_bench" / "envs" / domain / "tools").glob("*.py")):
        tree = ast.parse(py.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name == "get_info":
                ret = next(n for n in ast.walk(node) if isinstance(n, ast.Return))
                info = ast.literal_eval(ret.value)
                infos[info["function"]["name"]] = info["function"]
    return infos


def _args(text: Any) -> Any:
    if isinstance(text, str):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text  # kept as logged when it is not JSON
    return text


def _assistant_message(m: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"role": "assistant", "content": m.get("content")}
    if m.get("tool_calls"):
        out["tool_calls"] = [
            {
                "id": tc.get("id"),
                "type": tc.get("type"),
                "function": {
                    "name": (tc.get("function") or {}).get("name"),
                    "arguments": _args((tc.get("function") or {}).get("arguments")),
                },
            }
            for tc in m["tool_calls"]
        ]
    return out


def convert_row(
    row: dict[str, Any], *, domain: str, model: str, tools: dict[str, dict]
) -> dict[str, Any]:
    traj: list[dict[str, Any]] = row["traj"]
    trace_id = f"tau-{domain}-{model}-task{row['task_id']:02d}-trial{row['trial']}"
    first_user = next((m["content"] for m in traj if m["role"] == "user"), None)
    final = next(
        (m["content"] for m in reversed(traj) if m["role"] == "assistant" and m.get("content")), None
    )

    spans: list[dict[str, Any]] = []
    pending: list[dict[str, Any]] = []  # messages since the previous llm span
    seen = 0  # messages the model saw before `pending`
    calls: dict[str, dict[str, Any]] = {}  # tool_call_id -> its tool span (awaiting the result)
    users = 0
    for m in traj:
        role = m["role"]
        if role == "assistant":
            spans.append({
                "span_id": f"{trace_id}:{len(spans)}",
                "kind": "llm",
                "name": model,
                "input": pending,
                "output": _assistant_message(m),
                "attributes": {"model": model, "history_messages": seen},
            })
            seen += len(pending) + 1
            pending = []
            for tc in m.get("tool_calls") or []:
                fn = tc.get("function") or {}
                info = tools.get(fn.get("name"), {})
                span = {
                    "span_id": f"{trace_id}:{len(spans)}",
                    "parent_id": spans[-1]["span_id"] if spans[-1]["kind"] == "llm" else None,
                    "kind": "tool",
                    "name": fn.get("name") or "",
                    "input": _args(fn.get("arguments")),
                    "output": None,
                    "error": None,
                    "attributes": {"tool_call_id": tc.get("id")},
                }
                if info:
                    span["attributes"]["json_schema"] = info.get("parameters")
                    span["attributes"]["description"] = info.get("description")
                spans.append(span)
                calls[tc.get("id")] = span
        elif role == "tool":
            span = calls.pop(m.get("tool_call_id"), None)
            if span is None or span["output"] is not None:  # defensive: an unmatched result
                span = next((s for s in reversed(spans) if s["kind"] == "tool" and s["output"] is None), None)
            content = m.get("content")
            if span is not None:
                span["output"] = content
                if isinstance(content, str) and content.startswith(ERROR_PREFIXES):
                    span["error"] = content
            pending.append({k: m.get(k) for k in ("role", "tool_call_id", "name", "content")})
        elif role == "user":
            users += 1
            if users > 1:
                spans.append({
                    "span_id": f"{trace_id}:{len(spans)}",
                    "kind": "chain",
                    "name": "user",
                    "input": None,
                    "output": m.get("content"),
                    "attributes": {"role": "user"},
                })
            pending.append({"role": "user", "content": m.get("content")})
        else:  # system
            pending.append({"role": role, "content": m.get("content")})

    info = row.get("info") or {}
    scores = [{"name": "reward", "value": float(row["reward"]), "source": "tau-bench"}]
    reward_info = info.get("reward_info") or {}
    sub = reward_info.get("info") or {}
    for key in ("r_actions", "r_outputs"):
        if key in sub and sub[key] is not None:
            scores.append({"name": key, "value": float(sub[key]), "source": "tau-bench"})

    metadata = {
        "task_type": domain,
        "domain": domain,
        "task_id": row["task_id"],
        "trial": row["trial"],
        "env_info_source": info.get("source"),
        "user_cost": info.get("user_cost"),
    }
    return {
        "trace_id": trace_id,
        "session_id": None,
        "timestamp": SOURCE_COMMIT_DATE,
        "input": first_user,
        "output": final,
        "spans": spans,
        "feedback": [],
        "scores": scores,
        "versions": {"model": model, "policy": f"tau-bench/{domain}@{SOURCE_COMMIT[:7]}"},
        "metadata": metadata,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("source", type=Path, help="a tau-bench checkout (at commit %s)" % SOURCE_COMMIT[:7])
    p.add_argument("--file", default="historical_trajectories/gpt-4o-airline.json")
    p.add_argument("--domain", default="airline")
    p.add_argument("--model", default="gpt-4o")
    p.add_argument("--sample", type=int, default=150, help="keep N seeded random rows (0: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "data" / "tau_bench" / "traces.jsonl")
    args = p.parse_args()

    rows = json.loads((args.source / args.file).read_text(encoding="utf-8"))
    if args.sample and args.sample < len(rows):
        rows = random.Random(args.seed).sample(rows, args.sample)
    rows.sort(key=lambda r: (r["task_id"], r["trial"]))
    tools = tool_infos(args.source, args.domain)
    traces = [convert_row(r, domain=args.domain, model=args.model, tools=tools) for r in rows]

    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", encoding="utf-8", newline="\n") as fh:
        for t in traces:
            fh.write(json.dumps(t, ensure_ascii=False) + "\n")
    failed = sum(1 for t in traces if t["scores"][0]["value"] < 1.0)
    print(f"{len(traces)} traces ({failed} with reward 0) -> {args.out} "
          f"({args.out.stat().st_size / 1e6:.1f} MB); {len(tools)} tool schemas", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
