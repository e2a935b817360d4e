"""Slices: a failure cluster's cases, the reviewers' labels attached to them, and what scores them.

    measure = plan_measurement(config, cluster_id, category, train_cases)
    measured = measure_results(config, measure, train_cases, results)
"""

from autofix.slices.labels import EXPECTATION_FIELDS, Label, LabelError, append_labels, load_labels, with_labels
from autofix.slices.measure import (
    IMPLIED_CHECKS,
    CaseMeasurement,
    Measure,
    MeasurementGap,
    SliceMeasure,
    implied_checks,
    measure_results,
    plan_measurement,
    slice_score,
)

__all__ = [
    "EXPECTATION_FIELDS",
    "IMPLIED_CHECKS",
    "CaseMeasurement",
    "Label",
    "LabelError",
    "Measure",
    "MeasurementGap",
    "SliceMeasure",
    "append_labels",
    "implied_checks",
    "load_labels",
    "measure_results",
    "plan_measurement",
    "slice_score",
    "with_labels",
]
