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
an owner: the optimizer that can act on it, or the team that must (`owner_for`). Its id is a
slug of category, task type and top word plus a short hash of what defines it, usable in a git
branch name (letters, digits, ``.``, ``_``, ``-``) and stable across runs on the same failures.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Sequence
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

    @property
    def dominant_signature(self) -> str:
        return self.signatures.most_common(1)[0][0] if self.signatures else ""


def cluster_id(category: str, task_type: str, top_terms: Sequence[str], signature: str) -> str:
    """``<category>-<task type>-<top word>-<hash6>``: letters, digits, ``-``; stable for the same cluster."""
    digest = hashlib.sha1("|".join([category, task_type, signature, *top_terms[:3]]).encode()).hexdigest()[:6]
    parts = [slug(category, 20), slug(task_type, 24)]
    if top_terms:
        parts.append(slug(top_terms[0], 20))
    return "-".join(parts + [digest])


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
) -> list[tuple[list[int], list[str]]]:
    """Cluster one (category, task type) group; return (member positions, top terms) per cluster."""
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
    out: list[tuple[list[int], list[str]]] = []
    order: dict[int, list[int]] = {}
    for pos, lab in enumerate(labels.tolist()):
        order.setdefault(lab, []).append(pos)
    for members in order.values():
        terms: list[str] = []
        if x_in.shape[1]:
            m = np.asarray(x_in[members].mean(axis=0)).ravel()
            score = m - 0.5 * group_mean if len(order) > 1 else m
            top = np.argsort(-score, kind="stable")[:6]
            terms = [str(vocab[i]) for i in top if m[i] > 0][:3]
        out.append((members, terms))
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
        for positions, terms in _cluster_group(members, distance_threshold, sample_size, rng):
            chosen = [members[p] for p in positions]
            result.append(
                ClusterGroup(
                    category=category,
                    task_type=task_type,
                    members=[it.key for it in chosen],
                    top_terms=terms,
                    signatures=Counter(it.signature for it in chosen),
                )
            )
    return result
