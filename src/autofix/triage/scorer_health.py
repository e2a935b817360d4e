"""Scorer health: a score that is broken for a whole run is one `evaluation` finding, not many failures.

A metric says nothing about the traces when it gives the same failing verdict to every trace of
a run, or when it keeps failing traces that every other piece of evidence on them (the user's
thumb up, the other scores) says are fine. Such a score's low values stop being failure signals;
the run gets one finding that names it, with the counts, for the team that owns the scorer.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from autofix.triage.records import Category, Finding

__all__ = ["ScoreHealth", "ScoreVerdicts"]

MIN_SCORED = 20  # fewer scored traces tell nothing about a scorer
MIN_COMPARED = 10  # failing traces that carry other evidence, needed to call a scorer contradicted
CONTRADICTED = 0.8  # share of those on which all other evidence says the trace is fine
EXAMPLES = 5


@dataclass(slots=True)
class ScoreVerdicts:
    """One trace's verdicts: the score names that failed and passed, and whether the user gave a thumb up."""

    failed: tuple[str, ...]
    passed: tuple[str, ...]
    thumb_up: bool
    trace_id: str


@dataclass
class ScoreHealth:
    """Per score name, over the run: how often it failed, and how often the rest of the evidence disagreed."""

    scored: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    compared: Counter[str] = field(default_factory=Counter)  # failed, and other evidence exists
    contradicted: Counter[str] = field(default_factory=Counter)  # failed, and all other evidence is positive
    examples: dict[str, list[str]] = field(default_factory=dict)

    def observe(self, v: ScoreVerdicts) -> None:
        for name in v.passed:
            self.scored[name] += 1
        for name in v.failed:
            self.scored[name] += 1
            self.failed[name] += 1
            others_failed = [n for n in v.failed if n != name]
            others_passed = [n for n in v.passed if n != name]
            if others_failed or others_passed or v.thumb_up:
                self.compared[name] += 1
                if not others_failed and (others_passed or v.thumb_up):
                    self.contradicted[name] += 1
                    ex = self.examples.setdefault(name, [])
                    if len(ex) < EXAMPLES:
                        ex.append(v.trace_id)
            elif len(self.examples.setdefault(name, [])) < EXAMPLES:
                self.examples[name].append(v.trace_id)

    def merge(self, other: ScoreHealth) -> None:
        for mine, theirs in ((self.scored, other.scored), (self.failed, other.failed),
                             (self.compared, other.compared), (self.contradicted, other.contradicted)):
            mine.update(theirs)
        for name, ex in other.examples.items():
            self.examples.setdefault(name, []).extend(ex[: max(0, EXAMPLES - len(self.examples.get(name, [])))])

    def broken(self) -> dict[str, str]:
        """Score name -> why it is broken, for every score that cannot be trusted in this run."""
        out: dict[str, str] = {}
        for name, n in self.scored.items():
            fails = self.failed[name]
            if n < MIN_SCORED or not fails:
                continue
            comp, contra = self.compared[name], self.contradicted[name]
            if fails == n:
                out[name] = (f"score {name!r} fails all {n} traces it scored, so it cannot tell a good answer from a bad one"
                             + (f"; on {contra} of the {comp} that carry other evidence, that evidence (a thumb up or the "
                                "other scores) says the answer is fine" if comp else ""))
            elif comp >= MIN_COMPARED and contra / comp >= CONTRADICTED:
                out[name] = (f"score {name!r} fails {fails} of {n} traces, and on {contra} of the {comp} failing traces "
                             "that carry other evidence, all of it (a thumb up, the other scores) says the answer is fine")
        return out

    def findings(self) -> list[Finding]:
        """One `evaluation` finding per broken score."""
        return [
            Finding(
                category=Category.evaluation, rule="scorer_health", subject=f"score:{name}",
                title=f"score {name!r} looks broken in this run",
                rationale=why + ": check the scorer (its code, its threshold, its scale) before trusting it; its low "
                "values were not counted as failures",
                traces=self.failed[name], examples=list(self.examples.get(name, [])),
            )
            for name, why in sorted(self.broken().items())
        ]
