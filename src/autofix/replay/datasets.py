"""The datasets a replay runs: the regression set, a JSONL file of cases, or a slice of failed traces.

`--dataset` takes:

- `regression`: `datasets.regression` of autofix.yaml;
- `slice:<cluster>`: the failed traces of one triage cluster turned into cases, read from
  `<state>/triage/latest.json` (written by `autofix triage`: `{"clusters": [{"id", "trace_ids", ...}],
  "sources": [trace files]}`) and the trace files it was made from (else `datasets.traces`);
  `slice:<cluster>:target` and `slice:<cluster>:holdout` are its two deterministic parts (about
  70/30 by a hash of the trace id), so a candidate is fitted on one and judged on the other;
- anything else: a JSONL file of cases (relative to the current folder, else to autofix.yaml).

A trace becomes a case with `case_id` = trace id, `input` = the trace's input, `metadata` = the
trace's metadata plus the trace timestamp as `now` (when the metadata has none), and as expected
answer only what a reviewer attached to it (`datasets.labels`): the judges that need one do not
apply to the others. A trace that carries its conversation gives
the case its earlier turns as `messages` (see `trace_history`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from autofix.config import AutofixConfig
from autofix.replay.records import Case, DatasetError, load_cases

HOLDOUT_FRACTION = 0.3
"""Share of a slice's traces held out from the fitting part (`slice:<cluster>:holdout`)."""

TRIAGE_LATEST = Path("triage") / "latest.json"
"""Where `autofix triage` writes its clusters, relative to the state folder."""

SlicePart = Literal["all", "target", "holdout"]


@dataclass
class Dataset:
    """Cases to replay, with where they came from."""

    name: str
    """As given to `--dataset`, e.g. `regression`, `slice:retrieval-1:holdout`, `cases.jsonl`."""
    cases: list[Case]
    source: Path
    kind: Literal["regression", "slice", "file", "cases"]
    notes: list[str] = field(default_factory=list)

    def limited(self, limit: int | None) -> Dataset:
        if limit is None:
            return self
        return Dataset(name=self.name, cases=self.cases[:limit], source=self.source, kind=self.kind, notes=self.notes)


def holdout_score(trace_id: str) -> float:
    """Where a trace id falls in [0, 1): a stable hash, the same on every machine and run."""
    return int(hashlib.sha256(trace_id.encode("utf-8")).hexdigest()[:12], 16) / float(1 << 48)


def split_holdout(ids: list[str], fraction: float = HOLDOUT_FRACTION) -> tuple[list[str], list[str]]:
    """(target, holdout) of a slice's trace ids, in their given order.

    A trace is held out when its hash score is below `fraction`; with two or more traces each part
    gets at least one (the lowest score is held out, the highest kept), so both can be replayed.
    """
    holdout = {i for i in ids if holdout_score(i) < fraction}
    unique = list(dict.fromkeys(ids))
    if len(unique) >= 2:
        ranked = sorted(unique, key=holdout_score)
        if not holdout:
            holdout.add(ranked[0])
        if len(holdout) == len(unique):
            holdout.discard(ranked[-1])
    return [i for i in unique if i not in holdout], [i for i in unique if i in holdout]


def _trace_text(value: Any) -> str:
    """A trace's input as the text a case carries."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        for key in ("input", "text", "message", "content", "question", "query", "prompt"):
            if isinstance(value.get(key), str):
                return value[key]
        if isinstance(value.get("messages"), list):
            return _trace_text(value["messages"])
    if isinstance(value, list):
        users = [m for m in value if isinstance(m, dict) and m.get("role") == "user"]
        if users:
            return _trace_text(users[-1].get("content"))
    if value is None:
        return ""
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _content_text(content: Any) -> str:
    """An OpenAI message's content (a string or a list of parts) as text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) if isinstance(p, dict) else str(p) for p in content
                         if isinstance(p, str) or (isinstance(p, dict) and p.get("type", "text") == "text"))
    return ""


def _turns(messages: Any) -> list[dict[str, str]] | None:
    """The user and assistant turns with text of an OpenAI-style message list (None if it is not one).

    System prompts are the assistant's own construction (what optimizers change), and tool calls and
    results are steps inside a turn: neither is conversation history."""
    if isinstance(messages, dict) and isinstance(messages.get("messages"), list):
        messages = messages["messages"]
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) and "role" in m
                                                                  for m in messages):
        return None
    turns = [{"role": str(m["role"]), "content": _content_text(m.get("content"))} for m in messages
             if m.get("role") in ("user", "assistant")]
    return [t for t in turns if t["content"].strip()]


def _before_last_user(turns: list[dict[str, str]]) -> list[dict[str, str]]:
    users = [i for i, t in enumerate(turns) if t["role"] == "user"]
    return turns[:users[-1]] if users else turns


def trace_history(trace: Any, input_text: str | None = None) -> list[dict[str, str]] | None:
    """The turns of a trace's conversation before its current input, oldest first; None if it carries none.

    Where a trace keeps its history, first found wins: a top-level `messages` field or
    `metadata.messages` (the conversation; when its last user turn is the trace's input, that turn and
    what follows are dropped, else all of it is history); an `input` given as chat messages (all
    before its last user message); the input messages of its llm spans (the longest history before
    their last user message: that message is the current input, often wrapped in context).
    """
    text = _trace_text(trace.input) if input_text is None else input_text
    extra = getattr(trace, "model_extra", None) or {}
    for explicit in (extra.get("messages"), (trace.metadata or {}).get("messages")):
        turns = _turns(explicit)
        if turns:
            users = [i for i, t in enumerate(turns) if t["role"] == "user"]
            if users and turns[users[-1]]["content"].strip() == text.strip():
                turns = turns[:users[-1]]
            return turns or None
    turns = _turns(trace.input)
    if turns:
        return _before_last_user(turns) or None
    best: list[dict[str, str]] = []
    for span in trace.spans or []:
        if span.kind == "llm":
            history = _before_last_user(_turns(span.input) or [])
            if len(history) > len(best):
                best = history
    return best or None


def trace_to_case(trace: Any) -> Case:
    """A failed trace as a case to replay (no expected answer), with its earlier turns if it has them."""
    metadata = dict(trace.metadata or {})
    if _turns(metadata.get("messages")) is not None:
        metadata.pop("messages")  # the history goes to `messages`, not twice into the case
    if trace.timestamp is not None:  # a trace without one leaves `now` to the replay's clock
        metadata.setdefault("now", trace.timestamp.isoformat())
    text = _trace_text(trace.input)
    return Case(case_id=trace.trace_id, input=text, messages=trace_history(trace, text), metadata=metadata)


def _read_latest(config: AutofixConfig) -> tuple[Path, dict[str, Any]]:
    path = config.state_path / TRIAGE_LATEST
    if not path.is_file():
        raise DatasetError(
            f"no triage result at {path}: run autofix triage first (`autofix triage -c {config.file}`), "
            f"then replay one of its clusters with --dataset slice:<cluster>"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: not readable JSON ({exc}); run autofix triage again") from None
    if isinstance(data, list):
        data = {"clusters": data}
    if not isinstance(data, dict) or not isinstance(data.get("clusters"), list):
        raise DatasetError(f"{path}: expected {{\"clusters\": [...]}}; run autofix triage again")
    return path, data


def read_cluster(config: AutofixConfig, cluster_id: str) -> dict[str, Any]:
    """Cluster `cluster_id` of the latest triage (`id`, `category`, `trace_ids`, `rationale`, ...)."""
    latest, data = _read_latest(config)
    clusters = [c for c in data["clusters"] if isinstance(c, dict)]
    cluster = next((c for c in clusters if str(c.get("id")) == cluster_id), None)
    if cluster is None:
        known = ", ".join(str(c.get("id")) for c in clusters[:20]) or "none"
        raise DatasetError(f"no cluster {cluster_id!r} in {latest} (clusters: {known}); "
                           f"use one of them, or run autofix triage again")
    return cluster


def _traces_files(config: AutofixConfig, latest: Path, data: dict[str, Any]) -> list[Path]:
    """The trace files triage read (its `sources`), else `datasets.traces`."""
    named = data.get("sources")
    if isinstance(named, str):
        named = [named]
    if isinstance(named, list) and named and all(isinstance(n, str) and n for n in named):
        paths = []
        for name in named:
            found = next(((base / name).resolve() for base in (config.root, latest.parent, Path.cwd())
                          if (base / name).exists()), None)
            if found is None:
                raise DatasetError(f"{latest}: the trace file it was made from ({name}) is gone; "
                                   f"run autofix triage again")
            paths.append(found)
        return paths
    path = config.dataset_path("traces")
    if path is None or not path.exists():  # a file or a folder of trace files
        raise DatasetError(f"{config.file}: datasets.traces is not set or missing; slices are read from it")
    return [path]


def load_slice(config: AutofixConfig, cluster_id: str, part: SlicePart = "all") -> Dataset:
    """The failed traces of triage cluster `cluster_id` as cases (one part of it, or all)."""
    from autofix.slices.labels import LabelError, load_labels, with_labels
    from autofix.traces import Quarantine, ingest

    latest, data = _read_latest(config)
    clusters = [c for c in data["clusters"] if isinstance(c, dict)]
    cluster = next((c for c in clusters if str(c.get("id")) == cluster_id), None)
    if cluster is None:
        known = ", ".join(str(c.get("id")) for c in clusters[:20]) or "none"
        raise DatasetError(f"no cluster {cluster_id!r} in {latest} (clusters: {known}); "
                           f"use --dataset slice:<cluster> with one of them, or run autofix triage again")
    ids = [str(t) for t in cluster.get("trace_ids") or []]
    if not ids:
        raise DatasetError(f"cluster {cluster_id!r} in {latest} lists no trace_ids")
    target, holdout = split_holdout(ids)
    chosen = {"all": list(dict.fromkeys(ids)), "target": target, "holdout": holdout}[part]
    name = f"slice:{cluster_id}" + ("" if part == "all" else f":{part}")
    traces_paths = _traces_files(config, latest, data)
    wanted = set(chosen)
    by_id: dict[str, Case] = {}
    quarantine = Quarantine(None)
    for trace in ingest(traces_paths, quarantine=quarantine):
        if trace.trace_id in wanted and trace.trace_id not in by_id:
            by_id[trace.trace_id] = trace_to_case(trace)
    missing = [i for i in chosen if i not in by_id]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        where = ", ".join(str(p) for p in traces_paths)
        raise DatasetError(f"{len(missing)} trace(s) of cluster {cluster_id!r} are not in {where}: {shown}; "
                           f"the traces changed since triage: run autofix triage again")
    notes = [f"{len(ids)} failed traces in the cluster: {len(target)} target, {len(holdout)} held out"]
    cases = [by_id[i] for i in chosen]
    try:
        labels = load_labels(config.dataset_path("labels"))
    except LabelError as exc:
        raise DatasetError(str(exc)) from None
    if labels:
        cases = with_labels(cases, labels)
        notes.append(f"{sum(1 for c in chosen if c in labels)} of them labelled by a reviewer ({config.datasets.labels})")
    return Dataset(name=name, cases=cases, source=traces_paths[0], kind="slice", notes=notes)


def load_dataset(config: AutofixConfig, spec: str) -> Dataset:
    """The dataset `spec` names (see the module doc); DatasetError says what went wrong and what to give."""
    spec = (spec or "").strip()
    if spec == "regression":
        path = config.dataset_path("regression")
        if path is None or not path.is_file():
            raise DatasetError(f"{config.file}: datasets.regression is not set or missing")
        return Dataset(name=spec, cases=load_cases(path), source=path, kind="regression")
    if spec.startswith("slice:"):
        parts = spec.split(":")
        if len(parts) == 2 and parts[1]:
            return load_slice(config, parts[1])
        if len(parts) == 3 and parts[1] and parts[2] in ("target", "holdout"):
            return load_slice(config, parts[1], parts[2])  # type: ignore[arg-type]
        raise DatasetError(f"bad slice {spec!r}: use slice:<cluster>, slice:<cluster>:target or slice:<cluster>:holdout")
    if not spec:
        raise DatasetError("empty --dataset: use regression, slice:<cluster> or a JSONL file of cases")
    for base in (Path.cwd(), config.root):
        path = (base / spec).resolve()
        if path.is_file():
            return Dataset(name=spec, cases=load_cases(path), source=path, kind="file")
    raise DatasetError(
        f"unknown dataset {spec!r}: use regression, slice:<cluster>[:target|:holdout], or the path of a JSONL "
        f"file of cases (no file {spec} in {Path.cwd()} or {config.root})"
    )
