"""The launch gate: replay a candidate commit and its base on the cluster's held-out cases and the
regression set, score both with the same checks and judges, and apply the policy, fail-closed."""

from autofix.gate.records import CaseChange, GateCheck, GateVerdict

__all__ = ["CaseChange", "GateCheck", "GateVerdict"]
