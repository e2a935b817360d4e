"""Triage: from failed traces to ranked root-cause clusters.

- `records`: `Category`, `Signal`, `Failure`, `Diagnosis`.
- `detection`: `detect` (explicit, behavioural, judged, operational signals), `priority`,
  `LatencyStats`, `similar_inputs`, `DetectionSettings`.
- `facts`: `TraceFacts`, what a rule may read of one failed trace (`extract_facts`).
- `context`: `TriageContext`, what the whole run says (search rates, tools, documents, scorers).
- `knowledge`: `TargetKnowledge`, the target's wording and conventions from `autofix.yaml`.
- `rules`: the deterministic root-cause rules (`@rule`, `rule_registry`, one module per family).
- `voting`: every rule votes; `diagnose` gives the primary cause and the alternatives.
- `scorer_health`: a score broken for a whole run becomes one `evaluation` finding.
- `clustering`: `cluster_items`, `owner_for`, `FIXABILITY`.
- `pipeline`: `run_triage(config, since, classifier, quarantine_path)` -> `TriageReport`
  (streaming), `triage_traces(traces, settings)`, the `Classifier` protocol,
  `default_classifier(config)`.
- `classifier`: `LLMClassifier`, the DSPy classifier for what no rule explains (imported lazily:
  it needs dspy and litellm).
"""

from autofix.triage.detection import DetectionSettings, LatencyStats, detect, priority, similar_inputs
from autofix.triage.pipeline import (
    Classifier,
    Cluster,
    ClusterExample,
    TriageReport,
    default_classifier,
    run_triage,
    triage_traces,
)
from autofix.triage.context import TriageContext
from autofix.triage.facts import TraceFacts, extract_facts
from autofix.triage.knowledge import TargetKnowledge
from autofix.triage.records import Category, Cause, Diagnosis, Failure, Finding, Signal
from autofix.triage.rules import RuleMatch, TriageRule, rule, rule_registry
from autofix.triage.voting import diagnose, diagnose_facts

__all__ = [
    "Category",
    "Cause",
    "Classifier",
    "Cluster",
    "ClusterExample",
    "DetectionSettings",
    "Diagnosis",
    "Failure",
    "Finding",
    "LatencyStats",
    "RuleMatch",
    "Signal",
    "TargetKnowledge",
    "TraceFacts",
    "TriageContext",
    "TriageReport",
    "TriageRule",
    "default_classifier",
    "detect",
    "diagnose",
    "diagnose_facts",
    "extract_facts",
    "priority",
    "rule",
    "rule_registry",
    "run_triage",
    "similar_inputs",
    "triage_traces",
]
