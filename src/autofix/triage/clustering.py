"""Clustering and ranking of diagnosed failures.

Within each (category, task type), failures are grouped by what they ask and how they failed:
each failure is a vector of its request's words (TF-IDF, scikit-learn) joined with a one-hot of
its diagnosis signature (the rule that fired and its key evidence, e.g. the tool or the router's
reason), both L2-normalised; agglomerative clustering (average linkage, cosine distance, a
distance threshold, no fixed number of clusters) groups them. With the signature weighing as
much as the words, failures of one mechanism land together however differently they are
worded (distance <= 0.5), near-duplicate requests land together even when diagnosed apart,
and different mechanisms on different requests stay apart.

Scale: agglomerative clustering is quadratic, so at most `sample_size` failures per group are
clustered (a seeded uniform sample) and every other failure joins the cluster whose centroid
is nearest (cosine); a million failures cost one sparse matrix product per group.

Each cluster is named from its members (the most distinctive request words against its group,
the task type, the dominant rule), ranked by ``size x mean priority x fixability``, and given
an owner: the optimizer that can act on it, or the team that must (`owner_for`). Its id names its
mechanism (`cluster_id`: category, task type, dominant diagnosis signature), usable in a git branch
name (letters, digits, ``-``); `autofix.triage.identity` carries ids over from the previous run and
adds a disambiguator where one mechanism has several clusters.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from autofix.triage._text import STOPWORDS, slug
from autofix.triage.records import Category

__all__ = [
    "FIXABILITY",
    "ClusterGroup",
    "ClusterItem",
    "cluster_id",
    "cluster_items",
    "dominant",
    "fixability",
    "owner_for",
    "routing_lives_in_code",
]

FIXABILITY: dict[str, float] = {
    Category.prompt.value: 1.0,
    Category.retrieval.value: 1.0,
    Category.routing.value: 1.0,
    Category.tool_arguments.value: 1.0,
    Category.context.value: 1.0,
    Category.memory.value: 0.5,
    Category.evaluation.value: 0.5,
    Category.data_freshness.value: 0.3,
    Category.infrastructure.value: 0.3,
    Category.model_limitation.value: 0.3,
    Category.missing_capability.value: 0.2,
    Category.unclassified.value: 0.2,
}
"""How far an optimizer can fix a category (1.0: an optimizer owns it; less: a team must act)."""

FIXABLE = frozenset(k for k, v in FIXABILITY.items() if v >= 1.0)

_TEAMS = {
    Category.data_freshness.value: "team:knowledge-base",
    Category.missing_capability.value: "team:product",
    Category.infrastructure.value: "team:platform",
    Category.memory.value: "team:platform",
    Category.model_limitation.value: "team:ml",
    Category.evaluation.value: "team:evaluation",
    Category.unclassified.value: "team:triage",
}
_ROUTING_FILE = re.compile(r"(rout|plan|dispatch|intent|orchestr|agent|graph|workflow)", re.I)


def fixability(category: str) -> float:
    return FIXABILITY.get(category, 0.2)


def routing_lives_in_code(config: Any | None) -> bool:
    """Whether the target's routing is code an optimizer may patch: a code surface named like a router."""
    if config is None:
        return False
    try:
        globs = list(config.surfaces.code)
        files = [p.name for p in config.surface_files("code")]
    except Exception:
        return False
    return any(_ROUTING_FILE.search(x) for x in [*globs, *files])


def owner_for(category: str, config: Any | None = None) -> str:
    """Who acts on a cluster: ``optimizer:gepa|retrieval|code_patch`` or ``team:<name>``."""
    if category == Category.prompt.value:
        return "optimizer:gepa"
    if category in (Category.retrieval.value, Category.context.value):
        return "optimizer:retrieval"
    if category == Category.routing.value:
        return "optimizer:code_patch" if routing_lives_in_code(config) else "optimizer:gepa"
    if category == Category.tool_arguments.value:
        has_code = True
        if config is not None:
            try:
                has_code = bool(config.surfaces.code)
            except Exception:
                has_code = True
        return "optimizer:code_patch" if has_code else "optimizer:gepa"
    return _TEAMS.get(category, "team:triage")


@dataclass(slots=True)
class ClusterItem:
    """One diagnosed failure, as clustering sees it."""

    key: int
    category: str
    task_type: str
    text: str
    signature: str
    priority: float


@dataclass
class ClusterGroup:
    """A cluster: its members' keys and the words that name it."""

    category: str
    task_type: str
    members: list[int]
    top_terms: list[str]
    signatures: Counter[str] = field(default_factory=Counter)
    keywords: list[str] = field(default_factory=list)
    """Up to ten words of its requests, most distinctive first (`top_terms` are the first three that name it)."""

    @property
    def dominant_signature(self) -> str:
        """The most frequent diagnosis signature (ties: the first in sorted order, so not the input order)."""
        return dominant(self.signatures)


def dominant(counts: Mapping[str, int]) -> str:
    """The key with the highest count; ties go to the first key in sorted order. '' when empty."""
    return min(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0] if counts else ""


MECHANISM_CHARS = 40
"""How long the mechanism part of an id may be (the rule first, then its evidence), give or take a few characters."""


def _cut(text: str, limit: int) -> str:
    """A slug of `text` at most `limit` long, cut between words where it is too long."""
    s = slug(text, 10_000)
    if len(s) <= limit:
        return s
    head = s[: limit + 1]
    words = (head[: head.rfind("-")] if "-" in head else head[:limit]).strip("-").split("-")
    while len(words) > 1 and words[-1] in STOPWORDS:  # not "...-answered-from-the"
        words.pop()
    return "-".join(words) or "x"


def mechanism_slug(category: str, mechanism: str) -> str:
    """The mechanism part of an id: the rule (less a leading category name; ``unexplained`` for no rule) and its
    key evidence (a tool, a router's reason), each slugged and cut between words."""
    rule, _, evidence = mechanism.partition("|")
    rule_slug = slug(rule or "none", 10_000)
    if rule_slug == "none":
        rule_slug = "unexplained"  # method none: no rule and no classifier explained it
    cat = slug(category, 20)
    if rule_slug.startswith(cat + "-"):
        rule_slug = rule_slug[len(cat) + 1 :]
    head = _cut(rule_slug, MECHANISM_CHARS - 8)
    if not evidence or slug(evidence) == "x":
        return head
    return f"{head}-{_cut(evidence, max(12, MECHANISM_CHARS - len(head) - 1))}"


def cluster_id(category: str, task_type: str, mechanism: str, disambiguator: str | None = None) -> str:
    """``<category>-<task type>-<mechanism>[-<disambiguator>]``: letters, digits and ``-`` (a valid git branch
    name component), the same for the same mechanism; e.g. ``tool-arguments-ticket-list-invalid-list-tickets``
    for the signature ``tool_arguments_invalid|list_tickets``."""
    parts = [slug(category, 20), slug(task_type, 24), mechanism_slug(category, mechanism)]
    if disambiguator:
        parts.append(slug(disambiguator, 20))
    return "-".join(parts)


_TOKEN = r"(?u)\b[^\W\d_][\w'-]*[^\W_]\b"


def _vectorizer() -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(
        token_pattern=_TOKEN,
        lowercase=True,
        stop_words=sorted(STOPWORDS),
        sublinear_tf=True,
        max_features=20_000,
        dtype=np.float32,
    )


def _cluster_group(
    items: list[ClusterItem], distance_threshold: float, sample_size: int, rng: np.random.Generator
) -> list[tuple[list[int], list[str], list[str]]]:
    """Cluster one (category, task type) group; return (member positions, top terms, keywords) per cluster."""
    import scipy.sparse as sp
    from sklearn.cluster import AgglomerativeClustering
    from sklearn.preprocessing import normalize

    n = len(items)
    texts = [it.text for it in items]
    if n > sample_size:
        sample = np.sort(rng.choice(n, size=sample_size, replace=False))
    else:
        sample = np.arange(n)
    vec = _vectorizer()
    try:
        vec.fit([texts[i] for i in sample])
        x_in = vec.transform(texts)
        vocab = vec.get_feature_names_out()
    except ValueError:  # no words at all (empty or symbol-only requests)
        x_in = sp.csr_matrix((n, 0), dtype=np.float32)
        vocab = np.array([], dtype=object)
    sigs = {s: i for i, s in enumerate(sorted({it.signature for it in items}))}
    rows = np.arange(n)
    cols = np.array([sigs[it.signature] for it in items])
    x_sig = sp.csr_matrix((np.ones(n, dtype=np.float32), (rows, cols)), shape=(n, len(sigs)))
    x_words = normalize(x_in) if x_in.shape[1] else x_in
    x = normalize(sp.hstack([x_words, x_sig], format="csr"))

    xs = x[sample]
    if len(sample) == 1:
        labels_s = np.zeros(1, dtype=int)
    else:
        sim = (xs @ xs.T).toarray()
        dist = np.clip(1.0 - sim, 0.0, 2.0)
        np.fill_diagonal(dist, 0.0)
        labels_s = AgglomerativeClustering(
            n_clusters=None, metric="precomputed", linkage="average", distance_threshold=distance_threshold
        ).fit_predict(dist)
    if n == len(sample):
        labels = labels_s
    else:
        k = int(labels_s.max()) + 1
        onehot = sp.csr_matrix((np.ones(len(sample), dtype=np.float32), (labels_s, np.arange(len(sample)))), shape=(k, len(sample)))
        centroids = normalize(onehot @ xs)
        labels = np.empty(n, dtype=int)
        step = 50_000
        for start in range(0, n, step):
            block = (x[start : start + step] @ centroids.T).toarray()
            labels[start : start + step] = block.argmax(axis=1)
        labels[sample] = labels_s  # the sample keeps its own clustering
    # name each cluster by its most distinctive words against the group
    group_mean = np.asarray(x_in.mean(axis=0)).ravel() if x_in.shape[1] else np.zeros(0)
    out: list[tuple[list[int], list[str], list[str]]] = []
    order: dict[int, list[int]] = {}
    for pos, lab in enumerate(labels.tolist()):
        order.setdefault(lab, []).append(pos)
    for members in order.values():
        terms: list[str] = []
        keywords: list[str] = []
        if x_in.shape[1]:
            m = np.asarray(x_in[members].mean(axis=0)).ravel()
            score = m - 0.5 * group_mean if len(order) > 1 else m
            top = np.argsort(-score, kind="stable")[:16]
            terms = [str(vocab[i]) for i in top[:6] if m[i] > 0][:3]
            keywords = [str(vocab[i]) for i in top if m[i] > 0][:10]
        out.append((members, terms, keywords))
    return out


def cluster_items(
    items: Sequence[ClusterItem],
    *,
    distance_threshold: float = 0.6,
    sample_size: int = 1000,
    seed: int = 0,
) -> list[ClusterGroup]:
    """Group failures within each (category, task type); see the module doc."""
    groups: dict[tuple[str, str], list[ClusterItem]] = {}
    for it in items:
        groups.setdefault((it.category, it.task_type), []).append(it)
    rng = np.random.default_rng(seed)
    result: list[ClusterGroup] = []
    for (category, task_type) in sorted(groups):
        members = groups[(category, task_type)]
        for positions, terms, keywords in _cluster_group(members, distance_threshold, sample_size, rng):
            chosen = [members[p] for p in positions]
            result.append(
                ClusterGroup(
                    category=category,
                    task_type=task_type,
                    members=[it.key for it in chosen],
                    top_terms=terms,
                    signatures=Counter(it.signature for it in chosen),
                    keywords=keywords,
                )
            )
    return result
