"""The report's charts, as inline SVG written by hand (no plotting library, no script, no network).

- `score_plot`: each candidate's score before (base) and after (candidate) on its training slice and
  on the held-out slice the gate replayed, as a dumbbell chart;
- `trials_plots`: the retrieval search's trials, score against tokens per case, feasible and
  infeasible trials marked differently, the base and the proposed trials marked;
- `lineage_plots`: the GEPA candidates the proposals descend from, as a small tree with their scores;
- `stage_plot`: the time each stage took, as horizontal bars.

Each returns ``None`` (or an empty list) when its data is absent, so the page simply leaves it out.
Every chart has a title, axis labels, and a ``<desc>`` that says in words what it draws.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from autofix.report.svg import (
    PALETTE,
    Linear,
    chart,
    clip,
    domain,
    esc,
    legend,
    line,
    num,
    text,
    text_width,
    x_axis,
    y_axis,
)
from autofix.report.view import CandidateRow, Stage


def _s(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _dot(x: float, y: float, r: float, fill: str, stroke: str, tip: str = "") -> str:
    title = f"<title>{esc(tip)}</title>" if tip else ""
    return (f'<circle cx="{num(x)}" cy="{num(y)}" r="{num(r)}" fill="{fill}" stroke="{stroke}" '
            f'stroke-width="1.5">{title}</circle>')


def _cross(x: float, y: float, r: float, colour: str, tip: str = "") -> str:
    title = f"<title>{esc(tip)}</title>" if tip else ""
    return (f'<g stroke="{colour}" stroke-width="2">{title}{line(x - r, y - r, x + r, y + r, stroke=colour, width=2)}'
            f'{line(x - r, y + r, x + r, y - r, stroke=colour, width=2)}</g>')


def _diamond(x: float, y: float, r: float, colour: str, tip: str = "") -> str:
    title = f"<title>{esc(tip)}</title>" if tip else ""
    pts = f"{num(x)},{num(y - r)} {num(x + r)},{num(y)} {num(x)},{num(y + r)} {num(x - r)},{num(y)}"
    return f'<polygon points="{pts}" fill="{colour}" stroke="#111827" stroke-width="1">{title}</polygon>'


def _direction(before: float, after: float) -> str:
    return "better" if after > before + 1e-12 else ("worse" if after < before - 1e-12 else "same")


# ------------------------------------------------------------------------------- score before/after


def score_plot(candidates: Sequence[CandidateRow]) -> str | None:
    """Training and held-out base vs candidate score, per candidate; None when no candidate has a score."""
    shown = [c for c in candidates if (c.train_base, c.train_score, c.heldout_base, c.heldout_score) != (None,) * 4]
    if not shown:
        return None
    rows: list[tuple[str, str, float | None, float | None, str]] = []  # kind, label, base, candidate, tip
    for c in shown:
        rows.append(("head", f"{clip(c.id, 44)} ({c.optimizer_short}): {c.verdict}", None, None, c.id))
        rows.append(("row", "training slice", c.train_base, c.train_score, f"{c.id} training"))
        n = f" (n={c.heldout_n})" if c.heldout_n is not None else ""
        rows.append(("row", f"held-out slice{n}", c.heldout_base, c.heldout_score, f"{c.id} held-out"))
    # the candidate headings span the chart; the label column fits the slice labels under them
    label_w = max(150.0, min(320.0, max(text_width(r[1]) + 14 for r in rows if r[0] == "row") + 20))
    plot_w, value_w = 360.0, 120.0
    x0, x1 = label_w, label_w + plot_w
    top, row_h = 58.0, 20.0
    height = top + len(rows) * row_h + 50
    width = x1 + value_w
    values = [v for r in rows for v in (r[2], r[3]) if v is not None]
    scale = Linear(domain(values, floor=(0.0, 1.0)), (x0, x1))
    body = legend(x0, 38, [(_dot(0, 0, 5, "white", PALETTE["base"]), "base (before)"),
                           (_dot(0, 0, 5, PALETTE["better"], PALETTE["better"]), "candidate, better"),
                           (_dot(0, 0, 5, PALETTE["worse"], PALETTE["worse"]), "candidate, worse")])
    described = []
    y = top
    for kind, label, base, cand, tip in rows:
        mid = y + row_h / 2
        if kind == "head":
            body.append(text(8, mid + 4, label, weight="bold"))
            described.append(f"{tip}:")
        else:
            body.append(text(22, mid + 4, label))
            body.append(line(x0, mid, x1, mid, stroke=PALETTE["grid"]))
            if base is not None and cand is not None:
                colour = PALETTE[_direction(base, cand)]
                body.append(line(scale(base), mid, scale(cand), mid, stroke=colour, width=3))
            if base is not None:
                body.append(_dot(scale(base), mid, 5, "white", PALETTE["base"], f"{tip}: base {_s(base)}"))
            if cand is not None:
                colour = PALETTE[_direction(base, cand)] if base is not None else PALETTE["same"]
                body.append(_dot(scale(cand), mid, 5, colour, colour, f"{tip}: candidate {_s(cand)}"))
            value = f"{_s(base)} → {_s(cand)}" if (base, cand) != (None, None) else "not measured"
            body.append(text(x1 + 10, mid + 4, value, size=10))
            described.append(f"{label} {value};")
        y += row_h
    body += x_axis(scale, y + 4, "score (mean over the slice's cases; higher is better)")
    desc = ("Score before (base) and after (candidate) per slice, for each candidate. " + " ".join(described))
    return chart(width, height, "Score before and after, per slice", desc, body, css_class="scores")


# ------------------------------------------------------------------------------- retrieval trials


def _tradeoff(lineage: dict[str, Any]) -> list[tuple[float, float, bool]]:
    out = []
    for entry in lineage.get("tradeoff") or []:
        try:
            score, tokens, feasible = entry[0], entry[1], entry[2]
            out.append((float(score), float(tokens), bool(feasible)))
        except (TypeError, ValueError, IndexError):
            continue
    return out


def trials_plots(candidates: Sequence[CandidateRow]) -> list[tuple[str, str]]:
    """One scatter of (tokens per case, score) per retrieval search (cluster, optimizer) that left its trials."""
    groups: dict[tuple[str, str], list[CandidateRow]] = {}
    for c in candidates:
        if _tradeoff(c.lineage):
            groups.setdefault((c.cluster, c.optimizer), []).append(c)
    return [(cluster, _trials_plot(cluster, cs)) for (cluster, _), cs in groups.items()]


def _trials_plot(cluster: str, cands: list[CandidateRow]) -> str:
    lineage = cands[0].lineage
    trials = _tradeoff(lineage)
    base_score, base_tokens = cands[0].train_base, lineage.get("base_tokens_per_case")
    base_tokens = float(base_tokens) if isinstance(base_tokens, (int, float)) else None
    picked = [(c, float(c.lineage["tokens_per_case"]), c.train_score) for c in cands
              if isinstance(c.lineage.get("tokens_per_case"), (int, float)) and c.train_score is not None]
    left, right, top, bottom, width, height = 70.0, 30.0, 58.0, 52.0, 600.0, 340.0
    xs = [t for _, t, _ in trials] + [t for _, t, _ in picked] + ([base_tokens] if base_tokens is not None else [])
    ys = [s for s, _, _ in trials] + [s for _, _, s in picked if s is not None] + \
        ([base_score] if base_score is not None else [])
    inset = 12.0  # points on the edge of the data stay clear of the axes
    xscale = Linear(domain(xs), (left + inset, width - right))
    yscale = Linear(domain(ys, floor=(0.0, 1.0)), (height - bottom - inset, top))
    body = legend(left, 38, [(_dot(0, 0, 4.5, PALETTE["feasible"], PALETTE["feasible"]), "feasible trial"),
                             (_cross(0, 0, 4, PALETTE["infeasible"]), "infeasible trial"),
                             (_diamond(0, 0, 6, "#facc15"), "base"),
                             (_dot(0, 0, 6, "none", "#111827"), "proposed")])
    body += y_axis(yscale, left, "training score", grid_to=width - right, start=height - bottom)
    body += x_axis(xscale, height - bottom, "tokens per case", start=left)
    counts: dict[tuple[float, float, bool], int] = {}
    for trial in trials:
        counts[trial] = counts.get(trial, 0) + 1
    for (score, tokens, feasible), n in sorted(counts.items(), key=lambda kv: kv[0][2]):
        x, y = xscale(tokens), yscale(score)
        tip = f"{n} {'feasible' if feasible else 'infeasible'} trial{'s' if n > 1 else ''}: score {score:.3f}, " \
              f"{tokens:g} tokens per case"
        body.append(_dot(x, y, 4.5, PALETTE["feasible"], PALETTE["feasible"], tip) if feasible
                    else _cross(x, y, 4, PALETTE["infeasible"], tip))
        if n > 1:
            body.append(text(x + 7, y - 6, f"×{n}", size=9))
    if base_tokens is not None and base_score is not None:
        body.append(_diamond(xscale(base_tokens), yscale(base_score), 6, "#facc15",
                             f"base: score {base_score:.3f}, {base_tokens:g} tokens per case"))
    at: dict[tuple[float, float], list[CandidateRow]] = {}
    for c, tokens, score in picked:
        at.setdefault((tokens, score), []).append(c)
    for (tokens, score), cs in at.items():
        x, y = xscale(tokens), yscale(score)
        names = ", ".join(c.id.rsplit("/", 1)[-1] for c in cs)
        tip = f"proposed {', '.join(c.id for c in cs)}: score {score:.3f}, {tokens:g} tokens per case"
        body.append(_dot(x, y, 8, "none", "#111827", tip))
        body.append(text(x + 11, y + 12, f"proposed {names}", size=9))
    feasible = sum(n for (_, _, f), n in counts.items() if f)
    meta = ", ".join(f"{lineage[k]} {k}" for k in ("trials", "pruned", "infeasible", "failed") if isinstance(lineage.get(k), int))
    desc = (f"Retrieval search trials for cluster {cluster}" + (f" ({meta})" if meta else "") +
            f": {len(trials)} completed trials plotted, {feasible} feasible and {len(trials) - feasible} infeasible; "
            f"scores from {min(ys):.2f} to {max(ys):.2f}, tokens per case from {min(xs):g} to {max(xs):g}. "
            + (f"Base: score {_s(base_score)} at {base_tokens:g} tokens per case. " if base_tokens is not None else "")
            + " ".join(f"Proposed {c.id}: score {score:.2f} at {tokens:g} tokens per case." for c, tokens, score in picked))
    return chart(width, height, f"Retrieval search trials: {clip(cluster, 50)}", desc, body, css_class="trials")


# ------------------------------------------------------------------------------- GEPA lineage


def _gepa(c: CandidateRow) -> dict[str, Any] | None:
    info = c.lineage.get("lineage")
    if isinstance(info, dict) and isinstance(info.get("candidate"), int):
        return info
    return None


def lineage_plots(candidates: Sequence[CandidateRow]) -> list[tuple[str, str]]:
    """One tree per GEPA (cluster, optimizer): the base, the candidates the proposals descend from, the proposals."""
    groups: dict[tuple[str, str], list[CandidateRow]] = {}
    for c in candidates:
        if _gepa(c) is not None:
            groups.setdefault((c.cluster, c.optimizer), []).append(c)
    return [(cluster, _lineage_plot(cluster, cs)) for (cluster, _), cs in groups.items()]


def _lineage_plot(cluster: str, cands: list[CandidateRow]) -> str:
    nodes: dict[int, dict[str, Any]] = {}
    edges: set[tuple[int, int, bool]] = set()  # parent, child, first parent
    for c in cands:
        info = _gepa(c) or {}
        idx = int(info["candidate"])
        chain = [int(i) for i in info.get("ancestry") or [] if isinstance(i, int)]
        if not chain or chain[-1] != idx:
            parents = [int(p) for p in info.get("parents") or [] if isinstance(p, int)]
            chain = ([0] if not parents else ([0, parents[0]] if parents[0] != 0 else [0])) + [idx]
        for depth, node in enumerate(chain):
            entry = nodes.setdefault(node, {"depth": depth, "score": None, "kind": "ancestor", "label": f"#{node}"})
            entry["depth"] = min(entry["depth"], depth)
        for a, b in itertools.pairwise(chain):
            edges.add((a, b, True))
        for p in (info.get("parents") or [])[1:]:
            if isinstance(p, int):
                edges.add((p, idx, False))
        nodes[idx].update(score=c.train_score, kind="passed" if c.passed else "refused",
                          label=f"#{idx} → {c.id.rsplit('/', 1)[-1]}", candidate=c,
                          pareto=bool(info.get("pareto_front")), iteration=info.get("iteration"))
        if 0 in nodes:
            nodes[0].update(kind="base", label="base #0", score=c.train_base)
    columns: dict[int, list[int]] = {}
    for idx, n in sorted(nodes.items()):
        columns.setdefault(n["depth"], []).append(idx)
    node_w, node_h, col_gap, row_gap, left, top = 130.0, 38.0, 50.0, 16.0, 60.0, 50.0
    rows = max(len(v) for v in columns.values())
    depth = max(columns)
    width = max(420.0, left + (depth + 1) * (node_w + col_gap) + 10)
    height = top + rows * (node_h + row_gap) + 56
    pos = {}
    for d, members in columns.items():
        for r, idx in enumerate(members):
            pos[idx] = (left + d * (node_w + col_gap), top + r * (node_h + row_gap))
    body = []
    for a, b, first in sorted(edges):
        if a in pos and b in pos:
            (ax, ay), (bx, by) = pos[a], pos[b]
            dash = "" if first else ' stroke-dasharray="4 3"'
            if bx > ax:  # parent to child, left to right
                x1, y1, x2, y2 = ax + node_w, ay + node_h / 2, bx, by + node_h / 2
                d = (f"M{num(x1)},{num(y1)} C{num(x1 + col_gap / 2)},{num(y1)} {num(x2 - col_gap / 2)},{num(y2)} "
                     f"{num(x2)},{num(y2)}")
            else:  # a merge within one generation: from the parent's edge nearest the child
                x1, x2 = ax + node_w / 2, bx + node_w / 2
                y1, y2 = (ay + node_h, by) if by > ay else (ay, by + node_h)
                d = f"M{num(x1)},{num(y1)} L{num(x2)},{num(y2)}"
            body.append(f'<path d="{d}" fill="none" stroke="#4b5563" stroke-width="1.5"{dash}/>')
    described = []
    for idx, (x, y) in sorted(pos.items()):
        n = nodes[idx]
        colour = {"base": "#facc15", "passed": PALETTE["passed"], "refused": PALETTE["refused"]}.get(n["kind"], "#e5e7eb")
        ink = "white" if n["kind"] in ("passed", "refused") else "#111827"
        score = f"train {_s(n['score'])}" if n["score"] is not None else "score not recorded"
        extra = {"passed": " · PASSED", "refused": " · refused"}.get(n["kind"], "")
        tip = f"{n['label']}: {score}{extra}" + (" (on the Pareto front)" if n.get("pareto") else "")
        body.append(f'<g><title>{esc(tip)}</title><rect x="{num(x)}" y="{num(y)}" width="{num(node_w)}" '
                    f'height="{num(node_h)}" rx="6" fill="{colour}" stroke="#374151"/>'
                    + text(x + node_w / 2, y + 15, n["label"], size=11, anchor="middle", fill=ink, weight="bold")
                    + text(x + node_w / 2, y + 30, score + extra, size=10, anchor="middle", fill=ink) + "</g>")
        parent = next((a for a, b, first in edges if b == idx and first), None)
        described.append(f"{tip}" + (f", from #{parent}" if parent is not None else "") + ".")
    axis_y = top + rows * (node_h + row_gap) + 4
    body.append(line(left, axis_y, left + (depth + 1) * (node_w + col_gap) - col_gap, axis_y))
    for d in range(depth + 1):
        body.append(text(left + d * (node_w + col_gap) + node_w / 2, axis_y + 15, str(d), size=10, anchor="middle"))
    body.append(text(left + ((depth + 1) * (node_w + col_gap) - col_gap) / 2, axis_y + 32,
                     "generation (reflective mutations from the base)", anchor="middle"))
    body.append(f'<text x="0" y="0" font-size="11" text-anchor="middle" fill="#111827" '
                f'transform="translate(20,{num(top + rows * (node_h + row_gap) / 2)}) rotate(-90)">candidates</text>')
    desc = (f"GEPA candidate lineage for cluster {cluster}: each candidate descends from its parent by a "
            f"reflective mutation; dashed lines are merges. " + " ".join(described))
    return chart(width, height, f"GEPA candidate lineage: {clip(cluster, 50)}", desc, body, css_class="lineage")


# ------------------------------------------------------------------------------- time per stage


def stage_plot(stages: Sequence[Stage]) -> str | None:
    """Seconds per stage as horizontal bars, coloured by stage (triage, optimize, gate)."""
    if not stages:
        return None
    labels = [clip(f"{s.stage}: {s.label}" if s.label != s.stage else s.stage, 60) for s in stages]
    label_w = min(380.0, max(text_width(label) for label in labels) + 16)
    plot_w, top, row_h = 340.0, 58.0, 20.0
    width, height = label_w + plot_w + 70, top + len(stages) * row_h + 52
    scale = Linear(domain([s.seconds for s in stages], floor=(0.0, 0.0)), (label_w, label_w + plot_w))
    kinds = []
    for s in stages:
        kind = s.stage if s.stage in ("triage", "optimize", "gate") else "other"
        if kind not in kinds:
            kinds.append(kind)
    body = legend(label_w, 38, [(f'<rect x="-5" y="-5" width="10" height="10" fill="{PALETTE[k]}"/>', k)
                                for k in kinds])
    body += x_axis(scale, top + len(stages) * row_h + 4, "seconds (wall clock)", grid_to=top)
    for i, (s, label) in enumerate(zip(stages, labels)):
        y = top + i * row_h
        colour = PALETTE.get(s.stage, PALETTE["other"])
        tip = f"{s.stage} {s.label}: {s.seconds:.1f} s" + (f", ${s.cost_usd:.4f}" if s.cost_usd is not None else "")
        body.append(text(label_w - 8, y + 14, label, size=10, anchor="end"))
        body.append(f'<rect x="{num(label_w)}" y="{num(y + 3)}" width="{num(max(1.0, scale(s.seconds) - label_w))}" '
                    f'height="{num(row_h - 6)}" fill="{colour}"><title>{esc(tip)}</title></rect>')
        body.append(text(scale(s.seconds) + 6, y + 14, f"{s.seconds:.1f} s", size=10))
    desc = "Time per stage: " + "; ".join(f"{s.stage} {s.label}: {s.seconds:.1f} s" if s.label != s.stage
                                          else f"{s.stage}: {s.seconds:.1f} s" for s in stages) + "."
    return chart(width, height, "Time per stage", desc, body, css_class="stages")
