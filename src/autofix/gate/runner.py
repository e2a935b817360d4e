"""`run_gate`: replay a candidate and its base, score both the same way, and apply the policy.

    verdict = run_gate(config, "autofix/opt-.../retrieval-.../1", cluster="retrieval-...")
    verdict.passed, verdict.reasons

Fail-closed, in this order (integrity failures refuse before anything is replayed):
1. integrity: the base is the target branch's current head (else stale), the candidate changes no
   evaluation file (autofix.yaml, the policy, the datasets), the autofix.yaml on disk is the base's
   (both sides are scored with it), and the judges are the versions the policy was confirmed with;
2. target: the cluster's held-out cases improve by the policy's margin, significantly;
3. regression: no metric's pass rate drops beyond the margin (upper confidence bound);
4. guardrails: p95 latency, cost, tokens and tool calls per case within their ratios to the base;
5. safety: no more safety failures than allowed, whatever the other scores.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from autofix.config import AutofixConfig, CheckJudge, GatePolicy, RubricJudge, load_gate_policy
from autofix.config.policy import SLICE_METRIC
from autofix.gate.records import CaseChange, GateCheck, GateVerdict
from autofix.gate.stats import compare, drop_upper_bound
from autofix.replay.records import Case, CaseResult

EventCallback = Callable[[str], None]


class GateError(RuntimeError):
    """The gate could not run (an unknown ref, an unreadable dataset); not a refusal."""


def _policy(config: AutofixConfig, policy_path: Path | None) -> tuple[GatePolicy, Path]:
    if policy_path is None:
        return config.gate_policy, config.policy_path
    return load_gate_policy(policy_path, judges=config.judge_names), Path(policy_path).resolve()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _git(repo: Any, *args: str) -> str:
    return repo.git.execute(["git", *args])


def _trusted_rubrics(config: AutofixConfig) -> tuple[dict[str, bool], list[str]]:
    """Rubric judge name -> trusted, and the notes saying why the others are not used."""
    from autofix.judges.calibration import judge_trust

    trusted, notes = {}, []
    for judge in config.judges:
        if isinstance(judge, RubricJudge):
            try:
                ok, why = judge_trust(config, judge.name)
            except Exception as exc:  # noqa: BLE001 - unreadable calibration: untrusted
                ok, why = False, f"{judge.name}: calibration unreadable ({exc})"
            trusted[judge.name] = ok
            if not ok:
                notes.append(f"{judge.name} not used: {why}")
    return trusted, notes


# --------------------------------------------------------------------------- integrity


def _integrity(config: AutofixConfig, policy: GatePolicy, policy_file: Path, repo: Any, subpath: str,
               base: str, candidate: str) -> list[GateCheck]:
    checks = []
    head = _git(repo, "rev-parse", "HEAD")
    checks.append(GateCheck(
        section="integrity", name="current base", passed=head == base,
        reason="the base is the target branch's head" if head == base else
        f"stale base: the target branch is at {head[:12]}, the candidate was built on {base[:12]}; "
        f"re-validate it on the new base (`autofix approve --revalidate`, or rebase and gate again)",
        detail={"head": head, "base": base}))

    prefix = f"{subpath}/" if subpath else ""
    changed = [p for p in _git(repo, "diff", "--name-only", base, candidate, "--", subpath or ".").splitlines() if p]
    evaluation_files = {f"{prefix}autofix.yaml"}
    for name in ("traces", "regression", "golden", "labels"):
        path = config.dataset_path(name)  # type: ignore[arg-type]
        if path is not None:
            try:
                evaluation_files.add(path.resolve().relative_to(Path(repo.working_tree_dir).resolve()).as_posix())
            except ValueError:
                pass
    try:
        evaluation_files.add(policy_file.resolve().relative_to(Path(repo.working_tree_dir).resolve()).as_posix())
    except ValueError:
        pass  # a built-in policy
    touched = sorted(p for p in changed if p in evaluation_files or any(p.startswith(f.rstrip("/") + "/")
                                                                         for f in evaluation_files))
    checks.append(GateCheck(
        section="integrity", name="evaluation unchanged", passed=not touched,
        reason="the candidate changes no check, judge, policy or dataset" if not touched else
        f"evaluation change: the candidate changes {', '.join(touched)}; a change to how it is measured is "
        f"validated against the golden set and sent to a human, never passed on scores it changed itself",
        detail={"touched": touched}))

    on_disk = config.file.read_bytes()
    try:
        at_base = repo.git.show(f"{base}:{prefix}autofix.yaml", stdout_as_string=False)
    except Exception:  # noqa: BLE001 - not in the base commit at all
        at_base = b""
    same = on_disk.rstrip() == at_base.rstrip()
    checks.append(GateCheck(
        section="integrity", name="same scoring", passed=same,
        reason="base and candidate are scored with the base's autofix.yaml" if same else
        f"{config.file} on disk differs from the base commit's: both sides must be scored with the base's "
        f"checks and judges; commit or stash the change and gate again"))

    if policy.judges:
        from autofix.judges.run import judge_versions

        now = judge_versions(config)
        changed_judges = sorted(n for n, v in policy.judges.items() if now.get(n) != v)
        checks.append(GateCheck(
            section="integrity", name="judges as confirmed", passed=not changed_judges,
            reason="the judges are the versions the policy was confirmed with" if not changed_judges else
            f"judge(s) {', '.join(changed_judges)} changed since the policy's thresholds were confirmed; "
            f"re-confirm them (`autofix gate --confirm-judges`) before any gate can pass",
            detail={"policy": policy.judges, "now": {n: now.get(n) for n in policy.judges}}))
    return checks


# --------------------------------------------------------------------------- replays


def _replay(config: AutofixConfig, commit: str, dataset: Any, sandbox_kind: str | None, label: str,
            on_event: EventCallback) -> Any:
    from autofix.replay.session import replay_at_ref

    run = replay_at_ref(config, commit, dataset, sandbox_kind=sandbox_kind, replay_id=None,
                        on_stage=lambda m: on_event(f"{label}: {m}"))
    return run


def _infrastructure_check(runs: dict[str, Any]) -> GateCheck:
    broken = {name: [r.case_id for r in run.results if r.infrastructure] for name, run in runs.items()}
    broken = {k: v for k, v in broken.items() if v}
    n = sum(len(v) for v in broken.values())
    return GateCheck(
        section="integrity", name="replays complete", passed=not broken,
        reason="every case replayed" if not broken else
        f"{n} case(s) failed in the sandbox or the model gateway ({'; '.join(f'{k}: {len(v)}' for k, v in broken.items())}), "
        f"so they say nothing about the candidate; gate again",
        detail=broken)


def _case_change(dataset: str, metric: str, case: Case, b: float | None, c: float | None, base_run: Any,
                 cand_run: Any, base_result: CaseResult, cand_result: CaseResult, slice_: bool) -> CaseChange:
    return CaseChange(dataset=dataset, case_id=case.case_id, trace_id=case.case_id if slice_ else None, metric=metric,
                      base=b, candidate=c, input=case.input, base_output=base_result.output or base_result.error,
                      candidate_output=cand_result.output or cand_result.error,
                      base_result=str(base_run.replay_dir / "results.jsonl"),
                      candidate_result=str(cand_run.replay_dir / "results.jsonl"))


def _target(config: AutofixConfig, policy: GatePolicy, cluster: str, base: str, candidate: str,
            sandbox_kind: str | None, on_event: EventCallback, verdict: GateVerdict) -> dict[str, Any]:
    """The held-out check; returns the replays it made."""
    from autofix.replay.datasets import load_slice, read_cluster
    from autofix.slices import MeasurementGap, measure_results, plan_measurement

    name = f"slice:{cluster}:holdout"
    info = read_cluster(config, cluster)
    data = load_slice(config, cluster, "holdout")
    t = policy.target
    if t.metric == SLICE_METRIC:
        plan = plan_measurement(config, cluster, info.get("category", "unclassified"), data.cases)
        if isinstance(plan, MeasurementGap):
            verdict.checks.append(GateCheck(section="target", name="held-out slice", passed=False,
                                            reason=f"nothing measures the held-out cases: {plan.reason}; "
                                                   f"build first: {plan.build_first}"))
            return {}
    base_run = _replay(config, base, data, sandbox_kind, "base, held-out", on_event)
    cand_run = _replay(config, candidate, data, sandbox_kind, "candidate, held-out", on_event)
    runs = {"held-out base": base_run, "held-out candidate": cand_run}
    if t.metric == SLICE_METRIC:
        b_scores = [m.score for m in measure_results(config, plan, data.cases, base_run.results)]
        c_scores = [m.score for m in measure_results(config, plan, data.cases, cand_run.results)]
        measured_by = ", ".join(plan.names)
    else:
        def judged(run: Any) -> list[float | None]:
            return [None if s.checks.get(t.metric) is None or s.checks[t.metric].passed is None
                    else float(s.checks[t.metric].passed) for s in run.scores]
        b_scores, c_scores, measured_by = judged(base_run), judged(cand_run), t.metric
    pairs = [(i, b, c) for i, (b, c) in enumerate(zip(b_scores, c_scores)) if b is not None and c is not None]
    label = f"held-out {t.metric}"
    if len(pairs) < t.min_cases:
        verdict.checks.append(GateCheck(
            section="target", name=label, passed=False, value=float(len(pairs)), threshold=float(t.min_cases),
            reason=f"too few held-out cases: {len(pairs)} measured by {measured_by} in both base and candidate, "
                   f"the policy needs {t.min_cases} (label more of the cluster's cases, or wait for more traces)"))
        return runs
    result = compare([b for _, b, _ in pairs], [c for _, _, c in pairs])
    improved = result.difference >= t.min_improvement
    significant = result.p_value <= t.max_p_value
    reason = (f"{result.base_mean:.2f} -> {result.candidate_mean:.2f} on {result.n} held-out cases "
              f"({result.improved} better, {result.worsened} worse; {result.test} p={result.p_value:.3g})")
    if not improved:
        reason += f": the improvement {result.difference:+.2f} is below the required {t.min_improvement:+.2f}"
    elif not significant:
        reason += f": not significant (p > {t.max_p_value:g}); the change may be noise"
    verdict.checks.append(GateCheck(
        section="target", name=label, passed=improved and significant, value=round(result.difference, 4),
        threshold=t.min_improvement, margin=round(result.difference - t.min_improvement, 4), reason=reason,
        detail={"n": result.n, "base": result.base_mean, "candidate": result.candidate_mean,
                "p_value": result.p_value, "test": result.test, "measured_by": measured_by}))
    for i, b, c in pairs:
        if b != c:
            change = _case_change(name, measured_by, data.cases[i], b, c, base_run, cand_run, base_run.results[i],
                                  cand_run.results[i], True)
            (verdict.fixed if c > b else verdict.regressed).append(change)
        else:
            verdict.unchanged += 1
    return runs


def _regression_metrics(config: AutofixConfig, policy: GatePolicy, trusted: dict[str, bool],
                        verdict: GateVerdict) -> tuple[list[str], list[str]]:
    """(check judges, trusted rubric judges) the regression section compares; a named metric that cannot
    be measured refuses."""
    safety = set(policy.safety_checks)
    checks = [j.name for j in config.judges if isinstance(j, CheckJudge) and j.name not in safety]
    rubrics = [j.name for j in config.judges if isinstance(j, RubricJudge) and not j.safety]
    if policy.regression.metrics != "all":
        wanted = list(policy.regression.metrics)
        untrusted = [m for m in wanted if m in rubrics and not trusted.get(m)]
        for m in untrusted:
            verdict.checks.append(GateCheck(section="regression", name=f"regression {m}", passed=False,
                                            reason=f"{m} is an uncalibrated rubric judge: calibrate it "
                                                   f"(`autofix judges calibrate --judge {m}`) before the gate relies on it"))
        return [m for m in wanted if m in checks], [m for m in wanted if m in rubrics and trusted.get(m)]
    return checks, [m for m in rubrics if trusted.get(m)]


def _outcomes(config: AutofixConfig, run: Any, rubrics: list[str]) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Per case: judge name -> CheckOutcome, the rubric judges (trusted ones only) added; and the rubric
    judges that errored (gave no verdict on some case), with why."""
    per_case = [dict(s.checks) for s in run.scores]
    errors: dict[str, str] = {}
    if rubrics:
        from autofix.judges.run import judge_cases

        judged, unavailable = judge_cases(run.dataset.cases, run.results, config, use_rubrics=True, judges=rubrics)
        for row, j in zip(per_case, judged):
            row.update({k: v for k, v in j.outcomes.items() if k in rubrics})
        for line in unavailable:
            name = line.split(" ", 1)[0]
            if name in rubrics:
                errors[name] = line
    return per_case, errors


def _regression(config: AutofixConfig, policy: GatePolicy, base_run: Any, cand_run: Any, checks: list[str],
                rubrics: list[str], verdict: GateVerdict) -> None:
    r = policy.regression
    (base_rows, base_errors), (cand_rows, cand_errors) = (_outcomes(config, base_run, rubrics),
                                                          _outcomes(config, cand_run, rubrics))
    named = policy.regression.metrics != "all"
    for metric, why in {**base_errors, **cand_errors}.items():
        verdict.checks.append(GateCheck(section="regression", name=f"regression {metric}", passed=False,
                                        reason=f"the judge errored, so the metric is missing: {why}"))
    for metric in [m for m in [*checks, *rubrics] if m not in base_errors and m not in cand_errors]:
        pairs = []
        for i, (b, c) in enumerate(zip(base_rows, cand_rows)):
            bo, co = b.get(metric), c.get(metric)
            if bo is None or co is None or bo.passed is None or co.passed is None:
                continue
            pairs.append((i, bool(bo.passed), bool(co.passed)))
        if not pairs:
            if named:
                verdict.checks.append(GateCheck(section="regression", name=f"regression {metric}", passed=False,
                                                reason=f"no regression case measures {metric}: a missing metric refuses"))
            else:
                verdict.notes.append(f"regression {metric}: no case it applies to")
            continue
        base_rate = sum(b for _, b, _ in pairs) / len(pairs)
        cand_rate = sum(c for _, _, c in pairs) / len(pairs)
        upper = drop_upper_bound([b for _, b, _ in pairs], [c for _, _, c in pairs], r.confidence)
        ok = upper <= r.margin + 1e-12
        worse = sum(1 for _, b, c in pairs if b and not c)
        better = sum(1 for _, b, c in pairs if c and not b)
        reason = (f"{base_rate:.0%} -> {cand_rate:.0%} on {len(pairs)} cases ({better} better, {worse} worse); "
                  f"the drop is at most {max(upper, 0):.3f} at {r.confidence:.0%} confidence")
        reason += f", within the {r.margin:g} margin" if ok else f", beyond the {r.margin:g} margin"
        verdict.checks.append(GateCheck(
            section="regression", name=f"regression {metric}", passed=ok, value=round(upper, 4), threshold=r.margin,
            margin=round(r.margin - upper, 4), reason=reason,
            detail={"n": len(pairs), "base": base_rate, "candidate": cand_rate, "better": better, "worse": worse}))
        for i, b, c in pairs:
            if b != c:
                change = _case_change("regression", metric, base_run.dataset.cases[i], float(b), float(c), base_run,
                                      cand_run, base_run.results[i], cand_run.results[i], False)
                (verdict.fixed if c else verdict.regressed).append(change)


def _per_case(results: list[CaseResult]) -> dict[str, float]:
    n = max(1, len(results))
    latencies = [r.latency_ms for r in results if not r.failed]
    p95 = (statistics.quantiles(latencies, n=100, method="inclusive")[94] if len(latencies) > 1
           else (latencies[0] if latencies else 0.0))
    return {"latency p95 (ms)": p95, "cost per case ($)": sum(r.usage.cost_usd for r in results) / n,
            "tokens per case": sum(r.usage.tokens for r in results) / n,
            "tool calls per case": sum(1 for r in results for s in r.spans if s.get("kind") == "tool") / n}


def _guardrails(policy: GatePolicy, base_results: list[CaseResult], cand_results: list[CaseResult],
                verdict: GateVerdict) -> None:
    g = policy.guardrails
    limits = {"latency p95 (ms)": g.latency_p95_ratio, "cost per case ($)": g.cost_ratio,
              "tokens per case": g.tokens_ratio, "tool calls per case": g.tool_calls_ratio}
    base, cand = _per_case(base_results), _per_case(cand_results)
    for name, limit in limits.items():
        b, c = base[name], cand[name]
        if b == 0:
            ok, ratio = c == 0, (1.0 if c == 0 else float("inf"))
            reason = (f"none in base and candidate" if ok else f"{c:.4g} in the candidate where the base had none")
        else:
            ratio = c / b
            ok = ratio <= limit + 1e-12
            reason = f"{b:.4g} -> {c:.4g} ({ratio:.2f}x, limit {limit:g}x)"
        verdict.checks.append(GateCheck(
            section="guardrail", name=name, passed=ok, value=None if ratio == float("inf") else round(ratio, 4),
            threshold=limit, margin=None if ratio == float("inf") else round(limit - ratio, 4), reason=reason,
            detail={"base": b, "candidate": c}))


def _safety(config: AutofixConfig, policy: GatePolicy, cand_run: Any, trusted: dict[str, bool],
            verdict: GateVerdict) -> None:
    names = list(policy.safety_checks) + [j.name for j in config.judges
                                          if isinstance(j, RubricJudge) and j.safety and trusted.get(j.name)]
    if not names:
        verdict.notes.append("no safety check or calibrated safety judge is configured: safety was not measured")
        return
    rows, errors = _outcomes(config, cand_run, [n for n in names if n not in policy.safety_checks])
    for name, why in errors.items():
        verdict.checks.append(GateCheck(section="safety", name=f"safety {name}", passed=False,
                                        reason=f"the safety judge errored, so safety is not measured: {why}"))
    failing = sorted({cand_run.dataset.cases[i].case_id for i, row in enumerate(rows)
                      for n in names if row.get(n) is not None and row[n].passed is False})
    allowed = policy.guardrails.safety_failures
    verdict.checks.append(GateCheck(
        section="safety", name="safety failures", passed=len(failing) <= allowed, value=float(len(failing)),
        threshold=float(allowed),
        reason=(f"no case fails {', '.join(names)}" if not failing else
                f"{len(failing)} case(s) fail {', '.join(names)} ({', '.join(failing[:5])}); allowed {allowed}; "
                f"no other score compensates a safety failure"),
        detail={"cases": failing}))


# --------------------------------------------------------------------------- the gate


def replay_base_once(config: AutofixConfig, candidates: list[tuple[str, str | None]], *,
                     sandbox_kind: str | None = None, on_event: EventCallback = lambda message: None) -> None:
    """Replay the base of `candidates` ((commit, cluster) pairs) on the regression set and on each cluster's
    held-out cases, once, before their gates run in parallel: each gate then finds the base in the replay
    cache instead of every gate replaying it at the same time. A failure here is left to the gates."""
    from autofix.worktrees.registry import find_repository

    repo, _ = find_repository(config.root)
    bases = sorted({_git(repo, "merge-base", commit, "HEAD") for commit, _ in candidates})
    datasets = ["regression", *sorted({f"slice:{c}:holdout" for _, c in candidates if c})]
    for base in bases:
        for dataset in datasets:
            try:
                _replay(config, base, dataset, sandbox_kind, f"base {base[:12]}, {dataset}", on_event)
            except Exception as exc:  # noqa: BLE001 - the gate replays it again and reports what breaks
                on_event(f"base {base[:12]}, {dataset}: not replayed ahead ({type(exc).__name__}: {exc})")


def run_gate(
    config: AutofixConfig,
    candidate: str,
    *,
    base: str | None = None,
    cluster: str | None = None,
    policy_path: Path | None = None,
    sandbox_kind: str | None = None,
    out_dir: Path | None = None,
    on_event: EventCallback = lambda message: None,
) -> GateVerdict:
    """Gate `candidate` (a ref) against `base` (default: its merge-base with HEAD); see the module doc.

    `cluster`: the triage cluster the candidate fixes (its held-out cases are the target); without it only
    the regression, guardrail and safety sections apply (a pull request of the team's own). The verdict is
    written to `out_dir/verdict.json` (default `<state>/gate/<verdict id>/`).
    """
    from autofix.worktrees.registry import find_repository

    clock = time.monotonic()
    policy, policy_file = _policy(config, policy_path)
    repo, subpath = find_repository(config.root)
    try:
        cand_commit = _git(repo, "rev-parse", "--verify", f"{candidate}^{{commit}}")
        base_commit = (_git(repo, "rev-parse", "--verify", f"{base}^{{commit}}") if base
                       else _git(repo, "merge-base", cand_commit, "HEAD"))
    except Exception as exc:  # noqa: BLE001 - git's message names the bad ref
        raise GateError(f"unknown ref: {str(exc).strip().splitlines()[-1]}") from None
    tree = lambda c: _git(repo, "rev-parse", f"{c}:{subpath}" if subpath else f"{c}^{{tree}}")  # noqa: E731
    trusted, notes = _trusted_rubrics(config)
    from autofix.judges.run import judge_versions

    verdict = GateVerdict(
        verdict_id=f"gate-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}",
        passed=False, candidate_ref=candidate, candidate_commit=cand_commit, candidate_tree=tree(cand_commit),
        base_commit=base_commit, base_tree=tree(base_commit), cluster=cluster, policy=str(policy_file),
        policy_sha256=_sha256(policy_file), judges=judge_versions(config),
        notes=notes, created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))

    verdict.checks.extend(_integrity(config, policy, policy_file, repo, subpath, base_commit, cand_commit))
    if all(c.passed for c in verdict.checks):
        runs: dict[str, Any] = {}
        if cluster:
            on_event(f"held-out cases of {cluster}")
            runs.update(_target(config, policy, cluster, base_commit, cand_commit, sandbox_kind, on_event, verdict))
        else:
            verdict.notes.append("no cluster given: no target improvement required (regression, guardrails, safety only)")
        on_event("regression set")
        base_reg = _replay(config, base_commit, "regression", sandbox_kind, "base, regression", on_event)
        cand_reg = _replay(config, cand_commit, "regression", sandbox_kind, "candidate, regression", on_event)
        runs.update({"regression base": base_reg, "regression candidate": cand_reg})
        verdict.checks.insert(0, _infrastructure_check(runs))
        checks, rubrics = _regression_metrics(config, policy, trusted, verdict)
        _regression(config, policy, base_reg, cand_reg, checks, rubrics, verdict)
        holdout_base = runs.get("held-out base")
        holdout_cand = runs.get("held-out candidate")
        _guardrails(policy, base_reg.results + (holdout_base.results if holdout_base else []),
                    cand_reg.results + (holdout_cand.results if holdout_cand else []), verdict)
        _safety(config, policy, cand_reg, trusted, verdict)
    verdict.passed = bool(verdict.checks) and all(c.passed for c in verdict.checks)
    verdict.wall_s = time.monotonic() - clock
    out = out_dir or config.state_path / "gate" / verdict.verdict_id
    out.mkdir(parents=True, exist_ok=True)
    (out / "verdict.json").write_text(verdict.model_dump_json(indent=2), encoding="utf-8")
    return verdict


def confirm_judges(config: AutofixConfig, policy_path: Path | None = None) -> dict[str, str]:
    """Write the current judge versions into the policy file (`judges:`), keeping its comments; returns them."""
    from ruamel.yaml import YAML

    from autofix.judges.run import judge_versions

    from autofix.config import builtin_policies_dir

    _, path = _policy(config, policy_path)
    if path.resolve().is_relative_to(builtin_policies_dir().resolve()):
        raise GateError(f"{path} is a built-in policy: copy it next to autofix.yaml, point `policy:` at the copy, "
                        f"and confirm the judges there")
    yaml = YAML(typ="rt")
    data = yaml.load(path.read_text(encoding="utf-8")) or {}
    versions = judge_versions(config)
    data["judges"] = dict(sorted(versions.items()))
    with path.open("w", encoding="utf-8") as handle:
        yaml.dump(data, handle)
    return versions


def verdict_json(verdict: GateVerdict) -> dict[str, Any]:
    """What `autofix gate --json` prints."""
    data = json.loads(verdict.model_dump_json())
    data["reasons"] = verdict.reasons
    return data
