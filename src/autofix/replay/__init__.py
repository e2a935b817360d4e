"""The replay room: run cases through the target's replay command in a sandbox and read the results back.

- `records`: the protocol's cases and results; `load_cases`.
- `runner`: `replay_cases`, batches through a sandbox against the model gateway.
- `refs`: `resolve_ref` (branch, tag, sha, HEAD, WORKTREE -> commit + tree hash), `checkout`.
- `datasets`: `load_dataset` (regression, slice:<cluster>[:target|:holdout], a JSONL file).
- `cache`: `ReplayCache`, results by (tree hash, case hash, model, judges, replay command).
- `session`: `replay_at_ref`, all of it together, with artifacts under `<state>/replays/<id>/`.
- `metrics`: `score_cases`, `summarize`.
"""

from autofix.replay.records import Case, CaseResult, CaseUsage, DatasetError, load_cases
from autofix.replay.runner import replay_cases

__all__ = ["Case", "CaseResult", "CaseUsage", "DatasetError", "load_cases", "replay_cases"]
