"""Triage: from failed traces to ranked root-cause clusters.

- `records`: `Category`, `Signal`, `Failure`, `Diagnosis`.
- `detection`: `detect` (explicit, behavioural, judged, operational signals), `priority`,
  `LatencyStats`, `similar_inputs`, `DetectionSettings`.
- `rules`: the deterministic root-cause rules (`RULES`, `apply_rules`, `diagnose`) over
  `TraceFacts` and the run-wide `TriageContext`.
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
from autofix.triage.records import Category, Diagnosis, Failure, Signal
from autofix.triage.rules import RULES, TraceFacts, TriageContext, apply_rules, diagnose, extract_facts

__all__ = [
    "Category",
    "Classifier",
    "Cluster",
    "ClusterExample",
    "DetectionSettings",
    "Diagnosis",
    "Failure",
    "LatencyStats",
    "RULES",
    "Signal",
    "TraceFacts",
    "TriageContext",
    "TriageReport",
    "apply_rules",
    "default_classifier",
    "detect",
    "diagnose",
    "extract_facts",
    "priority",
    "run_triage",
    "similar_inputs",
    "triage_traces",
]
