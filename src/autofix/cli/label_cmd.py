"""`autofix label`: write reviewers' expectations for a triage cluster's failed traces (`datasets.labels`).

Interactive by default: each unlabelled case of the cluster is shown (its turns, the answer given, the documents
retrieved, the tool calls, the diagnosis) and the reviewer says what a right answer holds; every label is
appended to the labels file at once. `--import` reads an annotation export instead, `--list` shows where the
cluster stands.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from autofix.config import CONFIG_FILENAME, AutofixConfig, ConfigError, load_config
from autofix.replay.records import Case, DatasetError
from autofix.slices.importers import IMPORTERS, LabelImportError, import_labels, screen
from autofix.slices.labels import Label, LabelError, append_labels, load_labels

EXIT_INPUT = 1
EXIT_CONFIG = 2
EXIT_INTERRUPTED = 130

LABELS_HINT = "datasets:\n  labels: data/labels.jsonl"
"""The lines autofix.yaml needs for labels (the file itself is created by the first label)."""

SKIP, QUIT = "s", "q"
_CLIP = 600
_CLIP_ANSWER = 1500


class _Skip(Exception):
    pass


class _Quit(Exception):
    pass


@dataclass
class _SliceView:
    """What the reviewer is shown of a cluster: its triage record, each trace and its diagnosis."""

    cluster: dict[str, Any]
    traces: dict[str, Any] = field(default_factory=dict)
    diagnoses: dict[str, dict[str, Any]] = field(default_factory=dict)
    seen_docs: set[str] = field(default_factory=set)
    files: list[Path] = field(default_factory=list)


def _trace_files(config: AutofixConfig) -> tuple[list[Path], dict[str, Any]]:
    """The trace files the latest triage read (else `datasets.traces`), and that triage's report ({} if none)."""
    from autofix.replay import datasets

    try:
        latest, data = datasets._read_latest(config)
    except DatasetError:
        path = config.dataset_path("traces")
        return ([path] if path is not None and path.exists() else []), {}
    return datasets._traces_files(config, latest, data), data


def _slice_view(config: AutofixConfig, cluster_id: str, wanted: set[str]) -> _SliceView:
    """The cluster's record, its traces `wanted` and every document id any retrieval span of the traces returned."""
    from autofix.traces import Quarantine, ingest

    files, data = _trace_files(config)
    cluster = next((c for c in data.get("clusters") or [] if isinstance(c, dict) and str(c.get("id")) == cluster_id), {})
    view = _SliceView(cluster=cluster, files=files)
    for detail in data.get("failure_details") or []:
        if isinstance(detail, dict) and detail.get("trace_id") in wanted and isinstance(detail.get("diagnosis"), dict):
            view.diagnoses[str(detail["trace_id"])] = detail["diagnosis"]
    for trace in ingest(files, quarantine=Quarantine(None)):
        for span in trace.spans:
            view.seen_docs.update(d.doc_id for d in span.documents)
        if trace.trace_id in wanted and trace.trace_id not in view.traces:
            view.traces[trace.trace_id] = trace
    return view


def _trace_answers(config: AutofixConfig, ids: set[str]) -> dict[str, Any] | None:
    """The output of each trace of `ids` found in the trace files; None when there is no trace file to read."""
    from autofix.traces import Quarantine, ingest

    try:
        files, _ = _trace_files(config)
    except DatasetError:
        return None
    if not files:
        return None
    return {t.trace_id: t.output for t in ingest(files, quarantine=Quarantine(None)) if t.trace_id in ids}


# ----------------------------------------------------------------------------- showing a case


def _text(value: Any, clip: int | None = None) -> str:
    if isinstance(value, dict) and isinstance(value.get("content"), str):  # an assistant message
        value = value["content"]
    text = value if isinstance(value, str) else ("" if value is None else json.dumps(value, ensure_ascii=False))
    text = text.strip()
    return text if clip is None or len(text) <= clip else text[:clip] + " …"


def _docs(documents: list[Any]) -> str:
    """Retrieved documents by id, in rank order: the best score, and how many chunks when more than one."""
    best: dict[str, list[Any]] = {}
    for d in documents:
        best.setdefault(d.doc_id, []).append(d.score)
    parts = []
    for doc_id, scores in best.items():
        known = [float(s) for s in scores if s is not None]
        detail = [f"{max(known):.2f}"] if known else []
        if len(scores) > 1:
            detail.append(f"{len(scores)} chunks")
        parts.append(doc_id + (f" ({', '.join(detail)})" if detail else ""))
    return ", ".join(parts)


def _show_cluster(out: Console, cluster_id: str, view: _SliceView, todo: int, total: int, labels_file: Path) -> None:
    c = view.cluster
    head = f"[bold]cluster {escape(cluster_id)}[/bold]"
    if c:
        head += f" · {escape(str(c.get('category', '?')))} · {c.get('size', total)} failed traces"
    out.print(head, soft_wrap=True)
    if c.get("rationale"):
        out.print(f"[bold]diagnosis:[/bold] {escape(str(c['rationale']))}", soft_wrap=True)
    out.print(f"{todo} of {total} cases without a label; each label is appended to {escape(str(labels_file))} "
              f"at once. At any prompt: [bold]{SKIP}[/bold] skips the case, [bold]{QUIT}[/bold] quits.", soft_wrap=True)


def _show_case(out: Console, k: int, n: int, case: Case, trace: Any, diagnosis: dict[str, Any] | None) -> None:
    when = f" · {case.metadata['now']}" if case.metadata.get("now") else ""
    out.rule(f"case {k}/{n} · {escape(case.case_id)}{escape(when)}")
    for turn in case.messages or []:
        out.print(f"[dim]{escape(turn.role)}:[/dim] {escape(_text(turn.content, _CLIP))}", soft_wrap=True)
    out.print(f"[bold]input:[/bold] {escape(case.input)}", soft_wrap=True)
    if trace is None:
        out.print("[yellow](the trace is not in the trace files read: only its input is shown)[/yellow]")
    else:
        out.print(f"[bold]answer given:[/bold] {escape(_text(trace.output, _CLIP_ANSWER) or '(none)')}", soft_wrap=True)
        for span in trace.spans:
            if span.kind == "retrieval":
                docs = _docs(span.documents) or "nothing"
                query = _text(span.input, 160)
                out.print(f"[bold]retrieved[/bold] by {escape(span.name)}" + (f" for {escape(repr(query))}" if query else "")
                          + f": {escape(docs)}", soft_wrap=True)
            elif span.kind == "tool":
                result = f"error: {span.error}" if span.error else _text(span.output, 300)
                out.print(f"[bold]tool call[/bold] {escape(span.name)}({escape(_text(span.input, 300))}) → "
                          f"{escape(result)}", soft_wrap=True)
    if diagnosis:
        rule = f", rule {diagnosis['rule']}" if diagnosis.get("rule") else ""
        out.print(f"[bold]diagnosis[/bold] ({escape(str(diagnosis.get('category', '?')))}{escape(rule)}): "
                  f"{escape(str(diagnosis.get('rationale', '')))}", soft_wrap=True)


# ----------------------------------------------------------------------------- asking


def _ask(prompt: str) -> str:
    answer = typer.prompt(prompt, default="", show_default=False).strip()
    if answer.lower() == SKIP:
        raise _Skip
    if answer.lower() == QUIT:
        raise _Quit
    return answer


def _items(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


def _ask_label(out: Console, case_id: str, by: str, seen_docs: set[str]) -> Label | None:
    """The reviewer's label for a case, or None when nothing checkable was given; _Skip / _Quit as typed."""
    must = _items(_ask("must include (facts, comma-separated)"))
    must_not = _items(_ask("must not include (comma-separated)"))
    docs = _items(_ask("document ids (comma-separated)"))
    for doc_id in docs:
        if doc_id not in seen_docs:
            out.print(f"[yellow]warning:[/yellow] no retrieval span of the traces returned {escape(repr(doc_id))}: kept, "
                      "but check the id (checks compare it with the retrieved doc_id)", soft_wrap=True)
    answer = _ask("reference answer (one line, optional)")
    note = _ask("note")
    expected = {"must_include": must, "must_not_include": must_not, "doc_ids": docs, "answer": answer}
    if not any(expected.values()):
        if note:
            out.print("[yellow]a note alone gives a check nothing to read: not written[/yellow]")
        return None
    return Label(case_id=case_id, expected=expected, labeled_by=by, note=note or None)


# ----------------------------------------------------------------------------- the command


def _fail(err: Console, message: str, code: int) -> typer.Exit:
    err.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True, highlight=False)
    return typer.Exit(code)


def _import(cfg: AutofixConfig, labels_file: Path, existing: dict[str, Label], source: Path, fmt: str, by: str,
            cluster_id: str | None, as_json: bool, err: Console) -> None:
    try:
        imported = import_labels(source, fmt, by)
    except LabelImportError as exc:
        raise _fail(err, str(exc), EXIT_INPUT) from None
    answers = _trace_answers(cfg, {label.case_id for label in imported.labels})
    imported = screen(imported, existing, answers)
    written = append_labels(labels_file, imported.labels) if imported.labels else 0
    unknown = sorted({label.case_id for label in imported.labels} - set(answers)) if answers is not None else []
    in_cluster = None
    if cluster_id is not None:
        from autofix.replay.datasets import load_slice

        try:
            members = {c.case_id for c in load_slice(cfg, cluster_id).cases}
        except DatasetError as exc:
            raise _fail(err, str(exc), EXIT_CONFIG) from None
        in_cluster = sum(1 for label in imported.labels if label.case_id in members)
    if as_json:
        typer.echo(json.dumps({
            "file": str(source), "format": fmt, "labels_file": str(labels_file), "imported": written,
            "skipped": [s.to_json() for s in imported.skipped], "not_in_traces": unknown,
            **({"cluster": cluster_id, "in_cluster": in_cluster} if cluster_id is not None else {}),
        }, indent=2, ensure_ascii=False))
        return
    out = Console()
    where = f" ({in_cluster} in cluster {escape(cluster_id)})" if cluster_id is not None else ""
    out.print(f"imported {written} label{'s' if written != 1 else ''}{where} from {escape(str(source))} into "
              f"{escape(str(labels_file))}; skipped {len(imported.skipped)}", soft_wrap=True)
    for s in imported.skipped:
        line = f"  skipped {s.where}" + (f" [{s.case_id}]" if s.case_id else "") + f": {s.reason}"
        out.print(escape(line), soft_wrap=True, highlight=False)
    if unknown:
        shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        out.print(f"[yellow]warning:[/yellow] {len(unknown)} label(s) name traces not in the trace files: "
                  f"{escape(shown)} (written; they apply once those traces are read)", soft_wrap=True)


def _list(cases: list[Case], existing: dict[str, Label], cluster_id: str, labels_file: Path, as_json: bool) -> None:
    rows = []
    for case in cases:
        label = existing.get(case.case_id)
        row: dict[str, Any] = {"case_id": case.case_id, "input": case.input, "labelled": label is not None}
        if label is not None:
            row.update(expected=label.expected, labeled_by=label.labeled_by, labeled_at=label.labeled_at)
        rows.append(row)
    done = sum(1 for r in rows if r["labelled"])
    if as_json:
        typer.echo(json.dumps({"cluster": cluster_id, "labels_file": str(labels_file), "cases": rows,
                               "labelled": done, "unlabelled": len(rows) - done}, indent=2, ensure_ascii=False))
        return
    out = Console()
    if not out.is_terminal:
        out = Console(width=200)
    table = Table(title=f"cluster {cluster_id}: {done} of {len(rows)} cases labelled")
    table.add_column("case", no_wrap=True)
    table.add_column("label", no_wrap=True)
    table.add_column("input", overflow="ellipsis", no_wrap=True, max_width=80)
    for r in rows:
        status = f"{', '.join(r['expected'])} (by {r['labeled_by']})" if r["labelled"] else "-"
        table.add_row(escape(r["case_id"]), escape(status), escape(_text(r["input"], 160)))
    out.print(table)


def _interactive(cfg: AutofixConfig, cases: list[Case], existing: dict[str, Label], cluster_id: str,
                 labels_file: Path, by: str, limit: int | None) -> None:
    todo = [c for c in cases if c.case_id not in existing]
    out = Console()
    if not todo:
        out.print(f"every case of cluster {escape(cluster_id)} ({len(cases)}) has a label in "
                  f"{escape(str(labels_file))}; nothing to do", soft_wrap=True)
        return
    todo = todo[:limit] if limit is not None else todo
    view = _slice_view(cfg, cluster_id, {c.case_id for c in todo})
    _show_cluster(out, cluster_id, view, len([c for c in cases if c.case_id not in existing]), len(cases), labels_file)
    written = skipped = 0
    stopped = ""
    try:
        for k, case in enumerate(todo, start=1):
            _show_case(out, k, len(todo), case, view.traces.get(case.case_id), view.diagnoses.get(case.case_id))
            try:
                label = _ask_label(out, case.case_id, by, view.seen_docs)
            except _Skip:
                label = None
            if label is None:
                skipped += 1
                out.print("skipped")
                continue
            append_labels(labels_file, [label])
            written += 1
            out.print(f"[green]labelled[/green] {escape(case.case_id)}: {escape(', '.join(label.expected))}")
    except _Quit:
        stopped = "quit"
    except (typer.Abort, KeyboardInterrupt, EOFError):
        stopped = "interrupted"
    left = len([c for c in cases if c.case_id not in existing]) - written
    out.print(f"{written} labelled, {skipped} skipped" + (f" ({stopped})" if stopped else "")
              + f"; {left} of {len(cases)} still without a label; labels: {escape(str(labels_file))}", soft_wrap=True)
    if written:
        out.print(f"replay the slice with them: autofix replay -c {escape(str(cfg.file))} --dataset slice:{escape(cluster_id)}",
                  soft_wrap=True, highlight=False)
    if stopped == "interrupted":
        raise typer.Exit(EXIT_INTERRUPTED)


def label(
    config_path: Path = typer.Option(Path(CONFIG_FILENAME), "-c", "--config", help="The target's autofix.yaml."),
    cluster: Optional[str] = typer.Option(None, "--cluster", help="The triage cluster whose cases to label "
                                                                  "(an id from `autofix triage`)."),
    by: Optional[str] = typer.Option(None, "--by", help="Who labels, recorded on each label (default: $USER)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Go through at most N unlabelled cases."),
    import_file: Optional[Path] = typer.Option(None, "--import", help="Import the labels of an annotation export "
                                                                      "instead of asking (needs --format)."),
    fmt: Optional[str] = typer.Option(None, "--format", help=f"The export's format: {', '.join(IMPORTERS)}."),
    list_cases: bool = typer.Option(False, "--list", help="List the cluster's cases and whether each has a label."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output (with --import or --list)."),
) -> None:
    """Label the failed traces of a triage cluster: what a right answer must (not) include, the documents it needs.

    Each case without a label is shown with its earlier turns, the answer given, the documents retrieved, the tool calls and its diagnosis; you give must-include facts, must-not-include, document ids, a reference answer and a note (all optional; s skips a case, q quits). Each label is appended to datasets.labels of autofix.yaml at once; `autofix replay --dataset slice:<cluster>` scores the cases with them.

    --import FILE --format langfuse|jsonl|csv imports an annotation export instead (Langfuse dataset items made from traces, our own label lines, or a CSV of case_id, must_include, must_not_include, doc_ids, answer, note with lists separated by |) and reports what it skipped and why.

    Exit 2 on a bad config or cluster, 1 on an unreadable labels file or export, 130 when interrupted.
    """
    err = Console(stderr=True)
    if import_file is not None and list_cases:
        raise _fail(err, "--import and --list do not go together", EXIT_CONFIG)
    if import_file is None and fmt is not None:
        raise _fail(err, "--format goes with --import FILE", EXIT_CONFIG)
    if import_file is not None and fmt not in IMPORTERS:
        given = f"unknown --format {fmt!r}" if fmt else "--import needs --format"
        raise _fail(err, f"{given}: use one of {', '.join(IMPORTERS)}", EXIT_CONFIG)
    if as_json and import_file is None and not list_cases:
        raise _fail(err, "--json goes with --import or --list (labelling is interactive)", EXIT_CONFIG)
    if import_file is None and not cluster:
        raise _fail(err, "give --cluster <id> (the clusters are in `autofix triage`'s table)", EXIT_CONFIG)
    try:
        cfg = load_config(config_path)
    except ConfigError as exc:
        for issue in exc.issues:
            err.print(issue.format(), markup=False, soft_wrap=True)
        raise typer.Exit(EXIT_CONFIG) from None
    labels_file = cfg.dataset_path("labels")
    if labels_file is None:
        err.print(f"[red]error:[/red] {escape(str(cfg.file))} names no labels file. Add it under datasets "
                  f"(the file is created by the first label):\n\n{LABELS_HINT}\n", soft_wrap=True, highlight=False)
        raise typer.Exit(EXIT_CONFIG)
    try:
        existing = load_labels(labels_file)
    except LabelError as exc:
        raise _fail(err, str(exc), EXIT_INPUT) from None
    reviewer = (by or os.environ.get("USER") or "").strip() or "unknown"

    if import_file is not None:
        _import(cfg, labels_file, existing, import_file, fmt or "", reviewer, cluster, as_json, err)
        return
    from autofix.replay.datasets import load_slice

    assert cluster is not None
    try:
        cases = load_slice(cfg, cluster).cases
    except DatasetError as exc:
        raise _fail(err, str(exc), EXIT_CONFIG) from None
    if list_cases:
        _list(cases[:limit] if limit is not None else cases, existing, cluster, labels_file, as_json)
        return
    _interactive(cfg, cases, existing, cluster, labels_file, reviewer, limit)
