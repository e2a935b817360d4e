"""`TriageContext`: what the whole run's traces say, gathered while streaming, read by the rules.

How often each (logged) task type searches, which tools the assistant has and how often each
fails under each version, the documents its retrieval returns with their status, date and
title, how often each prompt version's answers name a source, how high each retriever's best
score usually is, the knowledge base's vocabulary, and the health of every score. Memory is
bounded: at most `max_docs` documents and `max_chunks` chunks feed the vocabulary and versions.
"""

from __future__ import annotations

import bisect
import random
import re
from collections import Counter
from typing import Any

from autofix.traces.schema import Trace
from autofix.triage._text import STOPWORDS, content_terms, text_of
from autofix.triage.facts import CHUNKS, doc_fact
from autofix.triage.knowledge import DEFAULT_KNOWLEDGE, TargetKnowledge
from autofix.triage.scorer_health import ScoreHealth

__all__ = ["TriageContext"]

UNKNOWN_TASK = "unknown"
SCORE_SAMPLE = 5000
MAX_POSTINGS = 500  # chunks a word may sit in and still point to where the missing knowledge is
MAX_WORDS = 8


class TriageContext:
    """Run-wide statistics (see the module doc). `observe` every trace, `merge` parts, `prepare` once."""

    def __init__(self, knowledge: TargetKnowledge = DEFAULT_KNOWLEDGE, max_docs: int = 200_000, max_chunks: int = 50_000):
        self.knowledge = knowledge
        self.max_docs = max_docs
        self.max_chunks = max_chunks
        self.task_total: Counter[str] = Counter()
        self.task_searched: Counter[str] = Counter()
        self.tool_names: Counter[str] = Counter()
        self.tool_calls: Counter[tuple[str, str, str]] = Counter()  # (tool, version key, version) -> calls
        self.tool_failures: Counter[tuple[str, str, str]] = Counter()  # ... -> unrecovered errors
        self.doc_ids: set[str] = set()
        self.doc_status: dict[str, str] = {}
        self.doc_effective: dict[str, str] = {}
        self.doc_title: dict[str, str] = {}
        self.prompt_answers: Counter[str] = Counter()
        self.prompt_cited: Counter[str] = Counter()
        self.top_scores: dict[str, list[float]] = {}  # retriever name -> a sample of its best score per call
        self._seen_scores: Counter[str] = Counter()
        self._rng = random.Random(0)
        self.scores = ScoreHealth()
        self.rule_errors: dict[str, str] = {}  # rule name -> its last exception (a rule must not stop a run)
        self.traces = 0
        self._chunks: set[str] = set()
        # chunk key -> (doc id, its domain-candidate words): tuples, small to send between processes
        self.chunk_terms: dict[str, tuple[str, tuple[str, ...]]] = {}
        self.chunk_doc: dict[str, str] = {}  # chunk key -> doc id, kept by `prepare` (chunk_terms is dropped)
        self._term_index: dict[str, list[str]] | None = None
        self._df: Counter[str] = Counter()
        self._domain: frozenset[str] | None = None
        self._versions: dict[str, list[str]] | None = None
        self._tool_terms: frozenset[str] | None = None
        self._broken: dict[str, str] | None = None

    # -- gathering
    def observe(self, trace: Trace) -> None:
        self.traces += 1
        task = trace.task_type or UNKNOWN_TASK
        self.task_total[task] += 1
        searched = False
        doc_ids: list[str] = []
        versions = [(k, str(v)) for k, v in trace.versions.items() if v is not None]
        ok_tools = {s.name for s in trace.spans if s.kind == "tool" and not s.error}
        for span in trace.spans:
            kind = span.kind
            if kind == "retrieval":
                searched = True
                docs = span.documents
                best = max((d.score for d in docs if d.score is not None), default=None)
                if best is not None:
                    self._sample_score(span.name, float(best))
                for d in docs:
                    did = d.doc_id
                    doc_ids.append(did)
                    if did not in self.doc_ids and len(self.doc_ids) < self.max_docs:
                        self._new_doc(d)
                    if d.text and len(self._chunks) < self.max_chunks:
                        extra = d.__pydantic_extra__
                        key = extra.get("chunk_id") if extra else None
                        if not isinstance(key, str):
                            key = f"{did}:{len(d.text)}:{d.text[:48]}"
                        if key not in self._chunks:
                            self._chunks.add(key)
                            terms = CHUNKS.get(did, d.text)[0]
                            self._df.update(terms)
                            self.chunk_terms[key] = (did, tuple(terms))
                            self._domain = None
            elif kind == "tool":
                self.tool_names[span.name] += 1
                failed = bool(span.error) and span.name not in ok_tools
                for vk, vv in versions:
                    self.tool_calls[(span.name, vk, vv)] += 1
                    if failed:
                        self.tool_failures[(span.name, vk, vv)] += 1
        if searched:
            self.task_searched[task] += 1
            version = trace.versions.get("prompt")
            if version is not None:
                self.prompt_answers[version] += 1
                out = trace.output if isinstance(trace.output, str) else text_of(trace.output)
                if self.knowledge.cites(out, doc_ids[:8]):
                    self.prompt_cited[version] += 1

    def _sample_score(self, retriever: str, score: float) -> None:
        self._seen_scores[retriever] += 1
        sample = self.top_scores.setdefault(retriever, [])
        if len(sample) < SCORE_SAMPLE:
            sample.append(score)
        else:
            j = self._rng.randrange(self._seen_scores[retriever])
            if j < SCORE_SAMPLE:
                sample[j] = score

    def _new_doc(self, d: Any) -> None:
        fact = doc_fact(d, self.knowledge)
        did = d.doc_id
        self.doc_ids.add(did)
        self._versions = None
        if fact.status:
            self.doc_status[did] = fact.status
        if fact.effective:
            self.doc_effective[did] = fact.effective
        if fact.title:
            self.doc_title[did] = fact.title

    def merge(self, other: TriageContext) -> None:
        """Add what another part of the run observed."""
        self.traces += other.traces
        for mine, theirs in ((self.task_total, other.task_total), (self.task_searched, other.task_searched),
                             (self.tool_names, other.tool_names), (self.tool_calls, other.tool_calls),
                             (self.tool_failures, other.tool_failures), (self.prompt_answers, other.prompt_answers),
                             (self.prompt_cited, other.prompt_cited), (self._seen_scores, other._seen_scores)):
            mine.update(theirs)  # type: ignore[arg-type]
        for name, sample in other.top_scores.items():
            mine_s = self.top_scores.setdefault(name, [])
            mine_s.extend(sample[: max(0, SCORE_SAMPLE - len(mine_s))])
        for did in other.doc_ids:
            if len(self.doc_ids) >= self.max_docs:
                break
            self.doc_ids.add(did)
        self.doc_status.update(other.doc_status)
        self.doc_effective.update(other.doc_effective)
        self.doc_title.update(other.doc_title)
        if other._chunks - self._chunks:
            self._df.update(other._df)
            self._chunks |= other._chunks
            for key, v in other.chunk_terms.items():
                if len(self.chunk_terms) < self.max_chunks:
                    self.chunk_terms.setdefault(key, v)
        self.scores.merge(other.scores)
        self._domain = self._versions = self._tool_terms = self._broken = self._term_index = None

    def prepare(self) -> TriageContext:
        """Compute what the rules read and drop what only gathering needs (the context is then small
        enough to send to other processes). No `observe` after this."""
        _ = self.domain_terms, self.tool_terms, self.broken_scores
        self._group_versions()
        self._index_chunks()
        self.chunk_doc = {key: doc for key, (doc, _) in self.chunk_terms.items()}
        for sample in self.top_scores.values():
            sample.sort()
        self._chunks = set()
        self._df = Counter()
        self.chunk_terms = {}  # the index holds what the rules read of them
        return self

    # -- reading
    def search_rate(self, task_type: str) -> tuple[float, int]:
        """Share of a logged task type's other traces that searched, and their count ((0, 0) when the
        assistant logs no task type: one rate over all requests would say nothing)."""
        if task_type == UNKNOWN_TASK:
            return 0.0, 0
        n = self.task_total.get(task_type, 0) - 1
        if n <= 0:
            return 0.0, 0
        return min(1.0, self.task_searched.get(task_type, 0) / n), n

    def citation_rate(self, prompt_version: str | None) -> tuple[float | None, int]:
        """Share of a prompt version's search answers that name a source, and how many there were."""
        if prompt_version is None:
            return None, 0
        n = self.prompt_answers.get(prompt_version, 0)
        return (self.prompt_cited.get(prompt_version, 0) / n if n else None), n

    def score_percentile(self, retriever: str, score: float) -> tuple[float, int] | None:
        """Share of this retriever's calls whose best score was below `score`, and the sample size."""
        sample = self.top_scores.get(retriever)
        if not sample or len(sample) < 30:
            return None
        return bisect.bisect_left(sample, score) / len(sample), len(sample)  # sorted by `prepare`

    def tool_failure_by_version(self, tool: str, versions: tuple[tuple[str, str], ...]) -> tuple[str, str, int, int, int, int] | None:
        """A version under which `tool` fails on (nearly) every call while it works under the others:
        (version key, version, failures, calls under it, failures, calls under the others), or None."""
        for vk, vv in versions:
            calls = self.tool_calls.get((tool, vk, vv), 0)
            fails = self.tool_failures.get((tool, vk, vv), 0)
            if calls < 5 or fails < 0.9 * calls:
                continue
            other_calls = sum(c for (t, k, v), c in self.tool_calls.items() if t == tool and k == vk and v != vv)
            other_fails = sum(c for (t, k, v), c in self.tool_failures.items() if t == tool and k == vk and v != vv)
            if other_calls >= 5 and other_fails <= 0.2 * other_calls:
                return vk, vv, fails, calls, other_fails, other_calls
        return None

    def _index_chunks(self) -> dict[str, list[str]]:
        """Domain word -> the chunks holding it (chunk keys), for words in at most `MAX_POSTINGS` chunks."""
        if self._term_index is None:
            domain = self.domain_terms
            index: dict[str, list[str]] = {}
            for key, (_, terms) in self.chunk_terms.items():
                for t in terms:
                    if t in domain:
                        index.setdefault(t, []).append(key)
            self._term_index = {t: keys for t, keys in index.items() if len(keys) <= MAX_POSTINGS}
        return self._term_index

    def chunk_holding(self, words: frozenset[str], exclude: set[str]) -> tuple[str, str, frozenset[str]] | None:
        """The chunk seen in the run (not in `exclude`, chunk keys or doc ids) that holds most of `words`
        (domain words only, at least two): (chunk key, doc id, the words it holds), or None."""
        index = self._index_chunks()
        # the rarest words say most and cost least: a word in many chunks is not indexed (bounded work per failure)
        postings = sorted((len(index[w]), w) for w in words if w in index)
        held: dict[str, list[str]] = {}
        for _, w in postings[:MAX_WORDS]:
            for key in index[w]:
                held.setdefault(key, []).append(w)
        for key, found in sorted(held.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:20]:
            if len(found) < 2:
                return None
            if key in exclude:
                continue
            doc = self.chunk_doc.get(key) or self.chunk_terms[key][0]
            return key, doc, frozenset(found)
        return None

    @property
    def domain_terms(self) -> frozenset[str]:
        """Words of the knowledge base: in the retrieved texts, not in most of them, not function words."""
        if self._domain is None:
            n = max(1, len(self._chunks))
            limit = max(2, int(0.25 * n))
            self._domain = frozenset(
                t for t, df in self._df.items() if df <= limit and len(t) > 2 and not t.isdigit() and t not in STOPWORDS
            )
        return self._domain

    @property
    def tool_terms(self) -> frozenset[str]:
        """The words of the assistant's tool names (``list_tickets`` -> list, ticket)."""
        if self._tool_terms is None:
            out: set[str] = set()
            for name in self.tool_names:
                spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", name)
                out.update(content_terms(re.sub(r"[_.\-/]", " ", spaced)))
            self._tool_terms = frozenset(out)
        return self._tool_terms

    @property
    def broken_scores(self) -> dict[str, str]:
        """Score name -> why it cannot be trusted in this run (`ScoreHealth.broken`)."""
        if self._broken is None:
            self._broken = self.scores.broken()
        return self._broken

    def _group_versions(self) -> dict[str, list[str]]:
        """Documents that are versions of one another: same declared title, or same stem by the declared
        version pattern. Key -> doc ids."""
        if self._versions is None:
            groups: dict[str, list[str]] = {}
            for did in self.doc_ids:
                title = self.doc_title.get(did)
                if title:
                    groups.setdefault("t:" + " ".join(title.lower().split()), []).append(did)
                v = self.knowledge.version_of(did)
                if v is not None:
                    groups.setdefault("v:" + v[0], []).append(did)
            self._versions = {k: sorted(v) for k, v in groups.items() if len(v) > 1}
        return self._versions

    def newer_version(self, doc_id: str) -> tuple[str, str] | None:
        """(the current version of `doc_id`, how we know) when `doc_id` is an older version, else None."""
        groups = self._group_versions()
        k = self.knowledge
        keys = []
        title = self.doc_title.get(doc_id)
        if title:
            keys.append("t:" + " ".join(title.lower().split()))
        v = k.version_of(doc_id)
        if v is not None:
            keys.append("v:" + v[0])
        stale = set(k.documents.stale_statuses)
        for key in keys:
            for other in groups.get(key, ()):
                if other == doc_id or self.doc_status.get(other) in stale:
                    continue
                mine, theirs = self.doc_effective.get(doc_id), self.doc_effective.get(other)
                if mine and theirs and theirs > mine:
                    return other, f"same {'title' if key[0] == 't' else 'id stem'}, dated {theirs} against {mine}"
                vo, vm = k.version_of(other), v
                if key[0] == "v" and vo and vm and vo[1] > vm[1]:
                    return other, "same id stem, a higher version number"
        return None
