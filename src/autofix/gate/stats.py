"""The paired tests of the gate: the same cases replayed at the base and at the candidate.

- pass/fail scores: the exact McNemar test (a one-sided binomial test on the discordant pairs);
- graded scores: a paired bootstrap of the mean difference (seeded);
- non-inferiority of a pass rate: the exact upper confidence bound of the paired drop, conditional on
  the discordant pairs (Clopper-Pearson on the share of them that got worse), so unchanged cases add
  no noise and a few flips either way do not refuse a fix nor hide a regression.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

BOOTSTRAP_RESAMPLES = 5000


@dataclass(frozen=True)
class PairedResult:
    """A paired comparison of per-case scores, candidate minus base."""

    n: int
    base_mean: float
    candidate_mean: float
    p_value: float
    test: str
    improved: int = 0
    worsened: int = 0

    @property
    def difference(self) -> float:
        return self.candidate_mean - self.base_mean


def _binary(values: list[float]) -> bool:
    return all(v in (0.0, 1.0) for v in values)


def mcnemar_exact(improved: int, worsened: int) -> float:
    """One-sided p-value that the candidate is better, from the discordant pairs (base fail -> pass
    counts as improved, pass -> fail as worsened)."""
    n = improved + worsened
    if n == 0:
        return 1.0
    return float(stats.binomtest(improved, n, 0.5, alternative="greater").pvalue)


def paired_bootstrap_p(diffs: list[float], seed: int = 0, resamples: int = BOOTSTRAP_RESAMPLES) -> float:
    """One-sided p-value that the mean difference is not above zero: the share of bootstrap means <= 0."""
    if not diffs:
        return 1.0
    arr = np.asarray(diffs, dtype=float)
    if np.all(arr == arr[0]):
        return 0.0 if arr[0] > 0 else 1.0
    rng = np.random.default_rng(seed)
    means = arr[rng.integers(0, len(arr), size=(resamples, len(arr)))].mean(axis=1)
    return float((np.count_nonzero(means <= 0) + 1) / (resamples + 1))


def compare(base: list[float], candidate: list[float], *, seed: int = 0) -> PairedResult:
    """Is the candidate better on the same cases? McNemar when every score is 0/1, bootstrap otherwise."""
    if len(base) != len(candidate):
        raise ValueError("paired scores must have the same length")
    n = len(base)
    improved = sum(1 for b, c in zip(base, candidate) if c > b)
    worsened = sum(1 for b, c in zip(base, candidate) if c < b)
    if n == 0:
        return PairedResult(0, 0.0, 0.0, 1.0, "none")
    if _binary(base) and _binary(candidate):
        p, test = mcnemar_exact(improved, worsened), "exact McNemar"
    else:
        p, test = paired_bootstrap_p([c - b for b, c in zip(base, candidate)], seed), "paired bootstrap"
    return PairedResult(n, float(np.mean(base)), float(np.mean(candidate)), p, test, improved, worsened)


def drop_upper_bound(base: list[bool], candidate: list[bool], confidence: float) -> float:
    """Upper confidence bound of the pass-rate drop (base minus candidate) on paired pass/fail cases."""
    n = len(base)
    if n == 0:
        return 0.0
    worsened = sum(1 for b, c in zip(base, candidate) if b and not c)
    improved = sum(1 for b, c in zip(base, candidate) if c and not b)
    discordant = worsened + improved
    if discordant == 0:
        return 0.0
    # Clopper-Pearson upper bound of P(worse | discordant); the drop is discordant * (2p - 1) / n
    p_upper = 1.0 if worsened == discordant else float(stats.beta.ppf(confidence, worsened + 1, improved))
    return discordant * (2 * p_upper - 1) / n
