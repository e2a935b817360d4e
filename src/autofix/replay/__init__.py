"""The replay room: run cases through the target's replay command in a sandbox and read the results back."""

from autofix.replay.records import Case, CaseResult, CaseUsage, DatasetError, load_cases
from autofix.replay.runner import replay_cases

__all__ = ["Case", "CaseResult", "CaseUsage", "DatasetError", "load_cases", "replay_cases"]
