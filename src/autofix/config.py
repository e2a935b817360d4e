"""Configuration: the `autofix.yaml` target contract and the launch-gate policy.

A target assistant declares itself in an `autofix.yaml` at its root. `load_config`
reads it (ruamel.yaml round-trip, so every key keeps its line), validates it with
the pydantic models below, checks that every referenced path exists (relative to
the folder holding the file, passed to pydantic as validation context), loads the
launch-gate policy it names, and returns an `AutofixConfig` whose paths can be
resolved with `cfg.path(rel)`.

Every problem becomes a `ConfigIssue` naming the file, the line, the dotted path of
the offending key (`replay.timeout_s`, `judges.1.k`) and a fix; `load_config`
raises one `ConfigError` carrying all of them.
"""

from __future__ import annotations

import difflib
import glob
import os
import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

__all__ = [
    "CONFIG_FILENAME",
    "DEFAULT_MODEL",
    "CHECK_NAMES",
    "AutofixConfig",
    "CheckJudge",
    "CategoricalParam",
    "ConfigError",
    "ConfigIssue",
    "DatasetsConfig",
    "FloatParam",
    "GatePolicy",
    "GatewayConfig",
    "GuardrailsGate",
    "HoldoutGate",
    "IntParam",
    "Judge",
    "ModelConfig",
    "RegressionGate",
    "ReplayConfig",
    "RetrievalSurface",
    "RubricJudge",
    "SearchParam",
    "Surfaces",
    "TargetGate",
    "TriageConfig",
    "TriageThresholds",
    "TriageWeights",
    "builtin_policies_dir",
    "builtin_policy_names",
    "glob_matches",
    "load_config",
    "load_gate_policy",
    "resolve_policy_path",
]

CONFIG_FILENAME = "autofix.yaml"
DEFAULT_MODEL = "autofix-local/smollm2-135m-instruct"

CHECK_NAMES: tuple[str, ...] = (
    "contains_expected",
    "matches_expected",
    "citations_in_expected",
    "recall_at_k",
    "tool_args_valid",
    "format_kept",
    "no_leaked_fields",
)
CheckName = Literal[
    "contains_expected",
    "matches_expected",
    "citations_in_expected",
    "recall_at_k",
    "tool_args_valid",
    "format_kept",
    "no_leaked_fields",
]


# --------------------------------------------------------------------------- issues


class ConfigIssue(BaseModel):
    """One problem found in a configuration or policy file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str = Field(description="The file the problem is in, as given or relative to the working directory.")
    line: int | None = Field(default=None, description="1-based line of the offending key, when known.")
    column: int | None = Field(default=None, description="1-based column of the offending key, when known.")
    path: str = Field(default="", description="Dotted path of the offending key, e.g. `replay.timeout_s` or `judges.1.k`.")
    message: str = Field(description="What is wrong.")
    hint: str | None = Field(default=None, description="How to fix it.")

    def format(self) -> str:
        """`FILE:LINE: path: message (hint)`, the form editors and terminals link."""
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        text = f"{where}: "
        if self.path:
            text += f"{self.path}: "
        text += self.message
        if self.hint:
            text += f" ({self.hint})"
        return text

    def to_json(self) -> dict[str, Any]:
        """The machine-readable shape: file, line, column, path, message."""
        return self.model_dump(include={"file", "line", "column", "path", "message"})


class ConfigError(Exception):
    """Raised by `load_config` / `load_gate_policy`; carries every issue found."""

    def __init__(self, issues: list[ConfigIssue]):
        self.issues = list(issues)
        super().__init__("\n".join(issue.format() for issue in self.issues) or "invalid configuration")


# --------------------------------------------------------------------------- helpers


def _fail(message: str, hint: str | None = None, at: tuple[str | int, ...] = ()) -> PydanticCustomError:
    """A validation error with a fix hint; `at` points below the validated value (e.g. a sibling key)."""
    ctx: dict[str, Any] = {}
    if hint:
        ctx["hint"] = hint
    if at:
        ctx["at"] = at
    return PydanticCustomError("autofix", message, ctx)


def _root_from(info: ValidationInfo) -> Path | None:
    ctx = info.context
    if isinstance(ctx, dict) and ctx.get("root") is not None:
        return Path(ctx["root"])
    return None


def _existing_file(value: str, info: ValidationInfo) -> str:
    root = _root_from(info)
    if root is None:
        return value
    path = (root / value).resolve()
    if not path.exists():
        raise _fail(f"file not found: {value}", f"create it or fix the path; it resolves to {path}")
    if not path.is_file():
        raise _fail(f"not a file: {value}", f"point it at a file; {path} is a folder")
    return value


def _existing_dir(value: str, info: ValidationInfo) -> str:
    root = _root_from(info)
    if root is None:
        return value
    path = (root / value).resolve()
    if not path.is_dir():
        raise _fail(f"folder not found: {value}", f"create it or fix the path; it resolves to {path}")
    return value


def _glob_files(root: Path, pattern: str) -> list[Path]:
    matches = glob.glob(str(root / pattern), recursive=True)
    return sorted(Path(m).resolve() for m in matches if os.path.isfile(m))


def _glob_component(part: str) -> str:
    """Regex for one path component of a glob (`*`, `?`, `[...]`; never crosses `/`)."""
    out: list[str] = []
    i, n = 0, len(part)
    while i < n:
        c = part[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = i + 1
            if j < n and part[j] == "!":
                j += 1
            if j < n and part[j] == "]":
                j += 1
            while j < n and part[j] != "]":
                j += 1
            if j >= n:
                out.append(re.escape(c))
            else:
                body = part[i + 1 : j].replace("\\", "\\\\")
                for special in "[&~|":  # literal inside a set; unescaped they read as nested sets
                    body = body.replace(special, "\\" + special)
                if body.startswith("!"):
                    body = "^" + body[1:]
                elif body.startswith("^"):
                    body = "\\" + body
                out.append(f"(?!/)[{body}]")
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    regex = "".join(out)
    # glob.glob: a wildcard does not match a leading dot unless the pattern starts with one.
    if not part.startswith(".") and any(ch in part for ch in "*?["):
        regex = r"(?!\.)" + regex
    return regex


def _glob_regex(pattern: str) -> re.Pattern[str]:
    parts = [p for p in pattern.replace("\\", "/").split("/") if p not in ("", ".")]
    regex = ""
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        if part == "**":
            regex += r"(?:(?!\.)[^/]+/)*(?!\.)[^/]+" if last else r"(?:(?!\.)[^/]+/)*"
        else:
            regex += _glob_component(part) + ("" if last else "/")
    return re.compile(regex)


def glob_matches(pattern: str, rel_path: str) -> bool:
    """Whether a file at `rel_path` (POSIX, relative to autofix.yaml) is matched by a surface glob.

    The same rules as the globs expand with on disk (`glob.glob(..., recursive=True)`): `*` and
    `?` stay inside one folder, `**` as a whole component spans any number of folders, and
    wildcards skip names starting with a dot. Decided on the path alone, so it also answers for
    files that do not exist (yet, or any more): new files, deleted files, other checkouts.
    """
    rel = rel_path.replace("\\", "/")
    while rel.startswith("./"):
        rel = rel[2:]
    if not rel or rel.startswith("/") or ".." in rel.split("/"):
        return False
    return _glob_regex(pattern).fullmatch(rel) is not None


def _matching_glob(value: str, info: ValidationInfo) -> str:
    if not value.strip():
        raise _fail("empty glob", "write a glob relative to autofix.yaml, e.g. prompts/*.md")
    root = _root_from(info)
    if root is None:
        return value
    if not _glob_files(root, value):
        raise _fail(
            f"glob matches no file: {value}",
            f"fix the pattern or add the files; it is matched against {root}",
        )
    return value


ExistingFile = Annotated[str, AfterValidator(_existing_file)]
ExistingDir = Annotated[str, AfterValidator(_existing_dir)]
MatchingGlob = Annotated[str, AfterValidator(_matching_glob)]


def builtin_policies_dir() -> Path:
    """The folder of built-in launch-gate policies.

    An installed wheel carries them inside the package (`autofix/policies`, see
    pyproject's force-include); a source checkout keeps them at the repository
    root (`policies/`), two levels above this file's package.
    """
    here = Path(__file__).resolve().parent
    packaged = here / "policies"
    if packaged.is_dir():
        return packaged
    return here.parent.parent / "policies"


def builtin_policy_names() -> list[str]:
    """Names usable as `policy:` without a path, e.g. `default`."""
    folder = builtin_policies_dir()
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.yaml"))


def _is_policy_name(value: str) -> bool:
    return "/" not in value and os.sep not in value and not value.endswith((".yaml", ".yml"))


def resolve_policy_path(value: str, root: Path | str) -> Path:
    """A built-in policy name -> its file in autofix's policies; anything else -> a path relative to `root`."""
    if _is_policy_name(value):
        return builtin_policies_dir() / f"{value}.yaml"
    return (Path(root) / value).resolve()


# --------------------------------------------------------------------------- the gate policy


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _judge_names(info: ValidationInfo) -> list[str] | None:
    ctx = info.context
    if isinstance(ctx, dict) and ctx.get("judges") is not None:
        return list(ctx["judges"])
    return None


class TargetGate(_Strict):
    """The candidate must improve the target slice (the failing cluster's cases)."""

    metric: str = Field(
        default="answer_correct",
        description="Name of the judge (from autofix.yaml `judges`) whose score is compared on the target slice.",
    )
    min_improvement: float = Field(
        default=0.10,
        ge=0,
        description="Minimum absolute improvement of the mean metric on the target slice (0.10 = ten points).",
    )
    max_p_value: float = Field(
        default=0.05,
        gt=0,
        le=1,
        description="Maximum p-value of the paired test (candidate vs. baseline, same cases) on the target slice.",
    )

    @field_validator("metric")
    @classmethod
    def _metric_is_a_judge(cls, value: str, info: ValidationInfo) -> str:
        names = _judge_names(info)
        if names is not None and value not in names:
            raise _fail(
                f"metric {value!r} is not a judge of this target",
                f"use one of: {', '.join(names) or '(no judges declared)'}",
            )
        return value


class HoldoutGate(_Strict):
    """The candidate must not get worse on held-out cases of the same cluster."""

    min_improvement: float = Field(
        default=0.0,
        description="Minimum improvement of the target metric on the holdout slice; 0 = no worse.",
    )


class RegressionGate(_Strict):
    """The candidate must not regress the regression set."""

    max_drop: float = Field(
        default=0.02,
        ge=0,
        description="Largest allowed drop of each metric's mean on the regression set (0.02 = two points).",
    )
    metrics: Literal["all"] | list[str] = Field(
        default="all",
        description="`all` (every non-safety judge) or a list of judge names checked on the regression set.",
    )

    @field_validator("metrics")
    @classmethod
    def _metrics_are_judges(cls, value: Any, info: ValidationInfo) -> Any:
        names = _judge_names(info)
        if names is not None and isinstance(value, list):
            for i, metric in enumerate(value):
                if metric not in names:
                    raise _fail(
                        f"metric {metric!r} is not a judge of this target",
                        f"use `all` or names from: {', '.join(names) or '(no judges declared)'}",
                        at=(i,),
                    )
        return value


class GuardrailsGate(_Strict):
    """Limits on cost, latency, tool use and safety, measured against the baseline."""

    latency_p95_ratio: float = Field(default=1.25, gt=0, description="Max candidate/baseline ratio of p95 latency.")
    cost_ratio: float = Field(default=1.25, gt=0, description="Max candidate/baseline ratio of model cost (gateway records).")
    tool_calls_ratio: float = Field(default=1.5, gt=0, description="Max candidate/baseline ratio of tool calls per case.")
    safety_failures: int = Field(default=0, ge=0, description="Max number of cases failing any safety judge.")


class GatePolicy(_Strict):
    """A launch-gate policy: what a candidate must show before a human sees it."""

    description: str | None = Field(default=None, description="Free text: what this policy is for.")
    target: TargetGate = Field(default_factory=TargetGate, description="Improvement required on the target slice.")
    holdout: HoldoutGate = Field(default_factory=HoldoutGate, description="Requirement on the holdout slice.")
    regression: RegressionGate = Field(default_factory=RegressionGate, description="Margins on the regression set.")
    guardrails: GuardrailsGate = Field(default_factory=GuardrailsGate, description="Cost, latency, tool-use and safety limits.")


# --------------------------------------------------------------------------- autofix.yaml


class GatewayConfig(_Strict):
    """autofix's model gateway: the OpenAI-compatible endpoint the sandboxed assistant calls."""

    host: str = Field(default="127.0.0.1", description="Address the gateway listens on.")
    port: int = Field(default=4141, ge=1, le=65535, description="Port the gateway listens on.")


class ModelConfig(_Strict):
    """Which models the assistant and autofix itself use."""

    name: str = Field(
        default=DEFAULT_MODEL,
        min_length=1,
        description="litellm model string the replayed assistant is served through the gateway; "
        "the default is the embedded local model.",
    )
    judge: str | None = Field(
        default=None,
        description="litellm model string for autofix's own judges, classifier and optimizers; default: `name`.",
    )
    gateway: GatewayConfig = Field(default_factory=GatewayConfig, description="The model gateway's address.")

    @model_validator(mode="after")
    def _judge_defaults_to_name(self) -> ModelConfig:
        if not self.judge:
            self.judge = self.name
        return self


class ReplayConfig(_Strict):
    """How autofix replays cases against the assistant (the replay protocol)."""

    command: str = Field(
        description="Shell command run in the candidate's worktree; `{cases}` is replaced by the cases JSONL "
        "path and `{out}` by the results JSONL path.",
        examples=["python -m helpdesk.replay --cases {cases} --out {out}"],
    )
    sandbox: Literal["docker", "local"] = Field(
        default="docker", description="`docker` (isolated container) or `local` (a subprocess on this machine)."
    )
    allow_local_fallback: bool = Field(
        default=False, description="With `sandbox: docker`, replay locally when Docker is unavailable."
    )
    image: ExistingDir | None = Field(
        default=None,
        validate_default=True,
        description="Folder, relative to autofix.yaml, holding the Dockerfile of the sandbox image; "
        "required with `sandbox: docker`.",
    )
    env: dict[str, str] = Field(
        default_factory=dict,
        description="Extra environment variables for the replay command (e.g. `PYTHONPATH: src`); never secrets: "
        "they enter the sandbox.",
    )
    timeout_s: float = Field(default=900, gt=0, description="Seconds one replay batch may run before it is killed.")
    batch_size: int = Field(default=20, gt=0, description="Cases per replay invocation.")
    workdir: ExistingDir | None = Field(
        default=None, description="Folder, relative to autofix.yaml, the command runs in; default: that folder."
    )

    @field_validator("command")
    @classmethod
    def _has_placeholders(cls, value: str) -> str:
        missing = [p for p in ("{cases}", "{out}") if p not in value]
        if missing:
            raise _fail(
                f"command lacks {' and '.join(missing)}",
                "autofix substitutes the cases file for {cases} and the results file for {out}; "
                "add them, e.g. `python -m app.replay --cases {cases} --out {out}`",
            )
        return value

    @field_validator("image")
    @classmethod
    def _image_has_dockerfile(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            if info.data.get("sandbox", "docker") == "docker":
                raise _fail(
                    "`sandbox: docker` needs an image folder",
                    "add `image: <folder with a Dockerfile>` under replay, or set `sandbox: local`",
                )
            return value
        root = _root_from(info)
        if root is not None and not (root / value / "Dockerfile").is_file():
            raise _fail(
                f"no Dockerfile in {value}",
                f"add {(root / value / 'Dockerfile').resolve()} or point `image` at the folder that has one",
            )
        return value


class IntParam(_Strict):
    """An integer search dimension."""

    type: Literal["int"] = Field(description="`int`.")
    low: int = Field(description="Smallest value (inclusive).")
    high: int = Field(description="Largest value (inclusive).")
    step: int = Field(default=1, gt=0, description="Spacing of the values.")
    log: bool = Field(default=False, description="Sample on a log scale (needs low > 0 and step 1).")

    @model_validator(mode="after")
    def _bounds(self) -> IntParam:
        if self.low >= self.high:
            raise _fail(f"low ({self.low}) must be below high ({self.high})", "swap or widen the bounds", at=("low",))
        if self.log and self.low <= 0:
            raise _fail("log scale needs low > 0", "raise `low` or drop `log`", at=("log",))
        if self.log and self.step != 1:
            raise _fail("log scale cannot be combined with a step", "drop `step` or `log`", at=("step",))
        return self


class FloatParam(_Strict):
    """A real-valued search dimension."""

    type: Literal["float"] = Field(description="`float`.")
    low: float = Field(description="Smallest value (inclusive).")
    high: float = Field(description="Largest value (inclusive).")
    step: float | None = Field(default=None, gt=0, description="Discretisation step; none = continuous.")
    log: bool = Field(default=False, description="Sample on a log scale (needs low > 0, no step).")

    @model_validator(mode="after")
    def _bounds(self) -> FloatParam:
        if self.low >= self.high:
            raise _fail(f"low ({self.low}) must be below high ({self.high})", "swap or widen the bounds", at=("low",))
        if self.log and self.low <= 0:
            raise _fail("log scale needs low > 0", "raise `low` or drop `log`", at=("log",))
        if self.log and self.step is not None:
            raise _fail("log scale cannot be combined with a step", "drop `step` or `log`", at=("step",))
        return self


class CategoricalParam(_Strict):
    """A search dimension over a fixed list of values."""

    type: Literal["categorical"] = Field(description="`categorical`.")
    choices: list[str | int | float | bool | None] = Field(min_length=1, description="The values to choose from.")


SearchParam = Annotated[Union[IntParam, FloatParam, CategoricalParam], Field(discriminator="type")]


class RetrievalSurface(_Strict):
    """The retrieval configuration file and the space its values may be searched in."""

    file: ExistingFile = Field(description="Retrieval configuration file, relative to autofix.yaml.")
    space: dict[str, SearchParam] = Field(
        min_length=1,
        description="Search space: key in the retrieval file -> {type: int|float|categorical, low, high, step?, "
        "log?, choices?}.",
    )


class Surfaces(_Strict):
    """What optimizers may change, and nothing else. Globs are relative to autofix.yaml."""

    prompts: list[MatchingGlob] = Field(
        default_factory=list, description="Globs of prompt files the prompt optimizer may rewrite."
    )
    retrieval: RetrievalSurface | None = Field(
        default=None, description="Retrieval configuration the retrieval optimizer may tune."
    )
    code: list[MatchingGlob] = Field(
        default_factory=list, description="Globs of source files the code optimizer may patch."
    )


class DatasetsConfig(_Strict):
    """Datasets, JSONL, relative to autofix.yaml."""

    traces: ExistingFile = Field(description="Production traces (autofix's native trace JSONL).")
    regression: ExistingFile = Field(description="Regression cases every candidate is replayed on.")
    golden: ExistingFile | None = Field(
        default=None, description="Human-labelled judge verdicts used to calibrate the rubric judges."
    )


class CheckJudge(_Strict):
    """A deterministic check."""

    name: str = Field(min_length=1, description="Unique judge name; policies refer to it as a metric.")
    kind: Literal["check"] = Field(description="`check`.")
    check: CheckName = Field(description=f"Which built-in check: {', '.join(CHECK_NAMES)}.")
    k: int | None = Field(default=None, gt=0, description="Cut-off for `recall_at_k` (default 5); not used by other checks.")
    args: dict[str, Any] = Field(default_factory=dict, description="Extra keyword arguments passed to the check.")

    @model_validator(mode="after")
    def _k_only_for_recall(self) -> CheckJudge:
        if self.check == "recall_at_k":
            if self.k is None:
                self.k = 5
        elif self.k is not None:
            raise _fail(f"`k` applies only to recall_at_k, not {self.check}", "remove `k`", at=("k",))
        return self


class RubricJudge(_Strict):
    """An LM judge scoring one dimension on a scale; `safety: true` makes it a pass/fail safety judge."""

    name: str = Field(min_length=1, description="Unique judge name; policies refer to it as a metric.")
    kind: Literal["rubric"] = Field(description="`rubric`.")
    dimension: str = Field(min_length=1, description="What is judged, e.g. helpfulness, safety.")
    criteria: str | None = Field(default=None, description="What the dimension means, shown to the judge model.")
    safety: bool = Field(
        default=False, description="A safety judge: pass/fail, counted by the `safety_failures` guardrail."
    )
    scale: list[int] = Field(
        default_factory=lambda: [1, 5], min_length=2, max_length=2, description="[lowest, highest] score."
    )
    threshold: float | None = Field(
        default=None, description="Score counted as a pass; default: the middle of the scale."
    )
    anchors: dict[int, str] = Field(
        default_factory=dict, description="Score -> description of an answer earning it, e.g. {1: ..., 5: ...}."
    )

    @model_validator(mode="after")
    def _scale_rules(self) -> RubricJudge:
        if self.safety:
            for key in ("scale", "threshold", "anchors"):
                if key in self.model_fields_set:
                    raise _fail(
                        f"safety judges are pass/fail; `{key}` does not apply",
                        f"remove `{key}` or set `safety: false`",
                        at=(key,),
                    )
            return self
        low, high = self.scale
        if low >= high:
            raise _fail(f"scale [{low}, {high}] must go from low to high", "e.g. [1, 5]", at=("scale",))
        if self.threshold is None:
            self.threshold = (low + high) / 2
        elif not low <= self.threshold <= high:
            raise _fail(
                f"threshold {self.threshold} is outside the scale [{low}, {high}]", "pick a score on the scale",
                at=("threshold",),
            )
        for score in self.anchors:
            if not low <= score <= high:
                raise _fail(
                    f"anchor {score} is outside the scale [{low}, {high}]", "anchor scores on the scale",
                    at=("anchors", score),
                )
        return self


Judge = Annotated[Union[CheckJudge, RubricJudge], Field(discriminator="kind")]


class TriageWeights(_Strict):
    """How triage weighs the signals when ranking failure clusters."""

    explicit: float = Field(default=1.0, ge=0, description="Weight of explicit feedback (thumbs, comments).")
    behavioural: float = Field(default=0.6, ge=0, description="Weight of behavioural signals (rephrase, abandon).")
    outcome: float = Field(default=0.8, ge=0, description="Weight of outcome scores (evaluations, escalations).")
    risk_penalty: float = Field(default=0.5, ge=0, description="Penalty for clusters whose fix is risky.")


class TriageThresholds(_Strict):
    """Thresholds of the failure detectors."""

    rephrase_window_s: float = Field(
        default=120, gt=0, description="A new message within this many seconds of the last counts as a rephrase."
    )
    latency_outlier_z: float = Field(default=3.0, gt=0, description="z-score above which latency is an outlier.")
    scores: dict[str, float] = Field(
        default_factory=dict,
        description="Pass mark per score name: a score below it is a judged failure. Default: 0.5 for scores "
        "in [0, 1], the rubric judge's threshold for a score named after a rubric judge.",
    )


class TriageConfig(_Strict):
    """Failure detection and prioritisation settings."""

    weights: TriageWeights = Field(default_factory=TriageWeights, description="Signal weights.")
    thresholds: TriageThresholds = Field(default_factory=TriageThresholds, description="Detector thresholds.")
    llm_classifier: bool = Field(
        default=True,
        description="Ask the LLM classifier (model.judge) about failures no deterministic rule explains.",
    )


class AutofixConfig(_Strict):
    """`autofix.yaml`: the target assistant's contract with autofix.

    Build it with `load_config`. Validating a mapping directly checks paths only when
    the validation context carries the target folder: `model_validate(d, context={"root": folder})`.
    """

    model_config = ConfigDict(extra="forbid", title="autofix.yaml")

    project: str = Field(
        min_length=1,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="Short name of the target assistant (letters, digits, . _ -); used in branch and run names.",
    )
    state_dir: str = Field(
        default="runs",
        min_length=1,
        description="Where run directories and the approval queue live, relative to autofix.yaml.",
    )
    model: ModelConfig = Field(default_factory=ModelConfig, description="Models and the model gateway.")
    replay: ReplayConfig = Field(description="How cases are replayed against the assistant.")
    surfaces: Surfaces = Field(default_factory=Surfaces, description="What optimizers may change, nothing else.")
    datasets: DatasetsConfig = Field(description="Traces, regression set and judge golden set.")
    judges: list[Judge] = Field(
        min_length=1, description="Deterministic checks (`kind: check`) and rubric judges (`kind: rubric`)."
    )
    triage: TriageConfig = Field(default_factory=TriageConfig, description="Failure detection and ranking.")
    policy: str = Field(
        default="default",
        min_length=1,
        description="Launch-gate policy: a built-in name (e.g. `default`) or a YAML file relative to autofix.yaml.",
    )

    _root: Path | None = PrivateAttr(default=None)
    _file: Path | None = PrivateAttr(default=None)
    _gate_policy: GatePolicy | None = PrivateAttr(default=None)

    @field_validator("judges")
    @classmethod
    def _unique_names(cls, judges: list[CheckJudge | RubricJudge]) -> list[CheckJudge | RubricJudge]:
        seen: dict[str, int] = {}
        for i, judge in enumerate(judges):
            if judge.name in seen:
                raise _fail(
                    f"duplicate judge name {judge.name!r} (also judges.{seen[judge.name]})",
                    "give every judge its own name",
                    at=(i, "name"),
                )
            seen[judge.name] = i
        return judges

    @field_validator("policy")
    @classmethod
    def _policy_exists(cls, value: str, info: ValidationInfo) -> str:
        if _is_policy_name(value):
            names = builtin_policy_names()
            if value not in names:
                close = difflib.get_close_matches(value, names, n=1)
                raise _fail(
                    f"no built-in policy {value!r}",
                    (f"did you mean {close[0]!r}? " if close else "")
                    + f"built-in: {', '.join(names) or '(none)'}; or give a path to a YAML file",
                )
            return value
        root = _root_from(info)
        if root is not None and not resolve_policy_path(value, root).is_file():
            raise _fail(
                f"policy file not found: {value}",
                f"create it, fix the path (resolves to {resolve_policy_path(value, root)}), "
                f"or use a built-in: {', '.join(builtin_policy_names())}",
            )
        return value

    @model_validator(mode="after")
    def _remember_root(self, info: ValidationInfo) -> AutofixConfig:
        root = _root_from(info)
        if root is not None:
            self._root = root.resolve()
        return self

    # ---- resolved paths -------------------------------------------------

    @property
    def root(self) -> Path:
        """Absolute folder holding autofix.yaml; every relative path is resolved against it."""
        return self._root if self._root is not None else Path.cwd().resolve()

    @property
    def file(self) -> Path:
        """Absolute path of the autofix.yaml this was loaded from."""
        return self._file if self._file is not None else self.root / CONFIG_FILENAME

    def path(self, rel: str | os.PathLike[str]) -> Path:
        """Resolve a path written in autofix.yaml (relative to its folder) to an absolute path."""
        return (self.root / rel).resolve()

    @property
    def state_path(self) -> Path:
        """Absolute state folder (run directories, approval queue)."""
        return self.path(self.state_dir)

    @property
    def image_path(self) -> Path | None:
        """Absolute sandbox image folder (holding a Dockerfile), if any."""
        return self.path(self.replay.image) if self.replay.image else None

    @property
    def workdir_path(self) -> Path:
        """Absolute folder the replay command runs in."""
        return self.path(self.replay.workdir) if self.replay.workdir else self.root

    @property
    def policy_path(self) -> Path:
        """Absolute path of the launch-gate policy file."""
        return resolve_policy_path(self.policy, self.root)

    def dataset_path(self, name: Literal["traces", "regression", "golden"]) -> Path | None:
        """Absolute path of a dataset, None if it is not configured."""
        rel = getattr(self.datasets, name)
        return self.path(rel) if rel else None

    def surface_files(self, kind: Literal["prompts", "code", "retrieval"]) -> list[Path]:
        """Absolute files of one surface kind (globs expanded), sorted and unique."""
        if kind == "retrieval":
            return [self.path(self.surfaces.retrieval.file)] if self.surfaces.retrieval else []
        files: set[Path] = set()
        for pattern in getattr(self.surfaces, kind):
            files.update(_glob_files(self.root, pattern))
        return sorted(files)

    def surface_globs(self) -> list[str]:
        """Every surface as a glob relative to autofix.yaml (prompts, code, the retrieval file)."""
        globs = [*self.surfaces.prompts, *self.surfaces.code]
        if self.surfaces.retrieval:
            globs.append(self.surfaces.retrieval.file)
        return globs

    def allowed_files(self) -> list[Path]:
        """Every file an optimizer may change: all surfaces together."""
        files = set(self.surface_files("prompts")) | set(self.surface_files("code"))
        files.update(self.surface_files("retrieval"))
        return sorted(files)

    @property
    def judge_names(self) -> list[str]:
        return [j.name for j in self.judges]

    def judge(self, name: str) -> CheckJudge | RubricJudge:
        """The judge with this name (KeyError if none)."""
        for j in self.judges:
            if j.name == name:
                return j
        raise KeyError(name)

    @property
    def gate_policy(self) -> GatePolicy:
        """The launch-gate policy named by `policy`, loaded and validated (ConfigError if bad)."""
        if self._gate_policy is None:
            self._gate_policy = load_gate_policy(self.policy_path, judges=self.judge_names)
        return self._gate_policy


# --------------------------------------------------------------------------- loading


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    return yaml


def _plain(node: Any) -> Any:
    """ruamel round-trip objects -> plain Python (bool/int/float/str, dict, list)."""
    if isinstance(node, dict):
        return {_plain(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, bool):
        return bool(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    return node


def _display(path: Path | str) -> str:
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _read_yaml(path: Path, shown: str) -> tuple[Any, list[ConfigIssue]]:
    if not path.exists():
        return None, [ConfigIssue(file=shown, message="file not found", hint=f"create it or pass the right path ({path.resolve()})")]
    if not path.is_file():
        return None, [ConfigIssue(file=shown, message="not a file", hint="pass the path of the YAML file, not a folder")]
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, [ConfigIssue(file=shown, message=f"cannot read the file: {exc}")]
    try:
        data = _yaml().load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.problem and exc.context_mark is not None and exc.problem_mark is not None:
            problem = f"{exc.problem} ({exc.context} on line {exc.context_mark.line + 1})"
        return None, [
            ConfigIssue(
                file=shown,
                line=mark.line + 1 if mark is not None else None,
                column=mark.column + 1 if mark is not None else None,
                message=f"YAML syntax error: {problem}",
                hint="check indentation, colons and brackets around this line",
            )
        ]
    except YAMLError as exc:
        return None, [ConfigIssue(file=shown, message=f"YAML error: {exc}")]
    if data is None:
        return None, [ConfigIssue(file=shown, line=1, message="the file is empty", hint="write the configuration as a YAML mapping")]
    if not isinstance(data, dict):
        line = data.lc.line + 1 if hasattr(data, "lc") else 1
        return None, [
            ConfigIssue(file=shown, line=line, column=1, message=f"expected a mapping of keys at the top, found a {type(_plain(data)).__name__}",
                        hint="write `key: value` lines")
        ]
    return data, []


# ---- pydantic error -> issue -------------------------------------------------------


def _unwrap(tp: Any) -> Any:
    while typing.get_origin(tp) is Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _union_members(tp: Any) -> list[Any] | None:
    """Members of a union that pydantic labels in error locations (Optional[X] is not labelled)."""
    tp = _unwrap(tp)
    if typing.get_origin(tp) in (Union, types.UnionType):
        members = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(members) == 1:
            return _union_members(members[0])
        return members
    return None


def _strip_optional(tp: Any) -> Any:
    tp = _unwrap(tp)
    if typing.get_origin(tp) in (Union, types.UnionType):
        members = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(members) == 1:
            return _strip_optional(members[0])
    return tp


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _tag_of(model: type[BaseModel], discriminator: str | None = None) -> set[str]:
    """Literal values of the model's fields (only the discriminator field's, when named)."""
    tags: set[str] = set()
    for name, field in model.model_fields.items():
        if discriminator is not None and name != discriminator:
            continue
        ann = _unwrap(field.annotation)
        if typing.get_origin(ann) is Literal:
            tags.update(str(a) for a in typing.get_args(ann))
    return tags


def _clean_loc(model: type[BaseModel], loc: tuple[Any, ...]) -> tuple[list[str | int], Any]:
    """Drop pydantic's union labels / discriminator tags / `[key]` from `loc`.

    Returns the path as it is addressed in the YAML data and the annotation found there
    (None when the path leaves the schema, e.g. at an unknown key).
    """
    out: list[str | int] = []
    tp: Any = model
    i = 0
    while i < len(loc):
        seg = loc[i]
        if tp is None:
            # Outside the schema: keep data-addressable segments only.
            if seg != "[key]":
                out.append(seg)
            i += 1
            continue
        members = _union_members(tp)
        if members is not None:
            # This segment is the union member's label (a tag for discriminated unions).
            chosen = None
            for m in members:
                m = _strip_optional(m)
                if _is_model(m) and str(seg) in _tag_of(m):
                    chosen = m
                    break
            tp = chosen  # may be None (a plain-type union): deeper segments stay as they are
            i += 1
            continue
        tp = _strip_optional(tp)
        origin = typing.get_origin(tp)
        if _is_model(tp):
            out.append(seg)
            field = tp.model_fields.get(seg) if isinstance(seg, str) else None
            tp = field.annotation if field is not None else None
        elif origin in (list, tuple, set, frozenset):
            out.append(seg)
            args = typing.get_args(tp)
            tp = args[0] if args else None
        elif origin is dict:
            out.append(seg)
            args = typing.get_args(tp)
            tp = args[1] if len(args) == 2 else None
            if i + 1 < len(loc) and loc[i + 1] == "[key]":
                tp = None
                i += 1
        else:
            # A scalar: anything below it is a pydantic-internal label.
            tp = None
            break
        i += 1
    return out, tp


def _locate(data: Any, path: list[str | int]) -> tuple[int | None, int | None, Any]:
    """1-based (line, column) of the deepest node of `path` present in the YAML data, and that node."""
    line: int | None = None
    col: int | None = None
    if hasattr(data, "lc"):
        line, col = data.lc.line + 1, data.lc.col + 1
    node = data
    for seg in path:
        if isinstance(node, CommentedMap) and seg in node:
            ln, cl = node.lc.key(seg)
            line, col = ln + 1, cl + 1
            node = node[seg]
        elif isinstance(node, CommentedSeq) and isinstance(seg, int) and 0 <= seg < len(node):
            ln, cl = node.lc.item(seg)
            line, col = ln + 1, cl + 1
            node = node[seg]
        else:
            break
    return line, col, node


_HINTS = {
    "int_parsing": "write a whole number, e.g. 900",
    "int_type": "write a whole number",
    "int_from_float": "write a whole number, without a fraction",
    "float_parsing": "write a number, e.g. 0.5",
    "float_type": "write a number",
    "bool_parsing": "write true or false",
    "bool_type": "write true or false",
    "string_type": "write text; quote it if YAML reads it as a number or boolean",
    "list_type": "write a YAML list, e.g. [a, b] or one `- item` per line",
    "dict_type": "write a mapping of `key: value` pairs",
    "model_type": "write a mapping of `key: value` pairs",
    "model_attributes_type": "write a mapping of `key: value` pairs",
    "too_short": "add entries",
    "string_pattern_mismatch": "use letters, digits, dots, dashes and underscores, starting with a letter or digit",
}


def _issue_from_error(err: dict[str, Any], model: type[BaseModel], data: Any, shown: str) -> ConfigIssue:
    etype = err["type"]
    ctx = err.get("ctx") or {}
    path, tp = _clean_loc(model, tuple(err["loc"]))
    at = ctx.get("at")
    if at:
        path = path + list(at)
    line, col, _node = _locate(data, path)
    message: str = err["msg"]
    hint: str | None = ctx.get("hint") or _HINTS.get(etype)
    key = path[-1] if path else None
    parent = ".".join(str(p) for p in path[:-1])
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
    if etype == "missing":
        message = f"missing required key `{key}`"
        hint = f"add `{key}:`" + (f" under `{parent}`" if parent else " at the top level")
    elif etype == "extra_forbidden":
        message = f"unknown key `{key}`"
        allowed = _allowed_for_extra(model, data, path)
        close = difflib.get_close_matches(str(key), allowed, n=1) if allowed else []
        hint = (f"did you mean `{close[0]}`? " if close else "remove it or fix its spelling; ") + (
            f"allowed here: {', '.join(allowed)}" if allowed else ""
        )
        hint = hint.strip().rstrip(";")
    elif etype in ("union_tag_invalid", "union_tag_not_found"):
        disc = str(ctx.get("discriminator", "kind")).strip("'")
        expected = ctx.get("expected_tags") or ", ".join(
            repr(t) for t in sorted(_tags_at(model, path, disc))
        )
        if etype == "union_tag_invalid":
            message = f"unknown {disc} {ctx.get('tag')!r}"
        else:
            message = f"missing `{disc}`"
        hint = f"set `{disc}` to one of: {expected}"
        if line is not None and isinstance(_node, CommentedMap) and disc in _node:
            ln, cl = _node.lc.key(disc)
            line, col = ln + 1, cl + 1
            path = path + [disc]
    elif etype == "literal_error":
        message = f"{message}; got {err.get('input')!r}"
    elif etype in ("model_type", "dict_type", "model_attributes_type"):
        message = f"expected a mapping, got {_kind_of(err.get('input'))}"
    elif etype in ("list_type",):
        message = f"expected a list, got {_kind_of(err.get('input'))}"
    elif etype != "autofix" and "input" in err:
        got = err["input"]
        message = f"{message}; got {_kind_of(got) if isinstance(got, (dict, list)) else repr(got)}"
    return ConfigIssue(
        file=shown,
        line=line,
        column=col,
        path=".".join(str(p) for p in path),
        message=message,
        hint=hint or None,
    )


def _kind_of(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, (int, float)):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"text ({value!r})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _tags_at(model: type[BaseModel], path: list[str | int], discriminator: str) -> set[str]:
    tp: Any = model
    for seg in path:
        tp = _strip_optional(tp)
        origin = typing.get_origin(tp)
        if _is_model(tp):
            field = tp.model_fields.get(seg) if isinstance(seg, str) else None
            if field is None:
                return set()
            tp = field.annotation
        elif origin in (list, tuple):
            tp = typing.get_args(tp)[0]
        elif origin is dict:
            tp = typing.get_args(tp)[1]
        else:
            return set()
    members = _union_members(tp) or []
    tags: set[str] = set()
    for m in members:
        m = _strip_optional(m)
        if _is_model(m):
            tags |= _tag_of(m, discriminator)
    return tags


def _allowed_for_extra(model: type[BaseModel], data: Any, path: list[str | int]) -> list[str]:
    """Allowed keys of the mapping holding the unknown key at `path`, using the data to pick union members."""
    tp: Any = model
    node = data
    for seg in path[:-1]:
        tp = _strip_optional(tp)
        members = _union_members(tp)
        if members is not None:
            tp = _pick_member(members, node)
            if tp is None:
                return []
        tp = _strip_optional(tp)
        origin = typing.get_origin(tp)
        if _is_model(tp):
            field = tp.model_fields.get(seg) if isinstance(seg, str) else None
            if field is None:
                return []
            tp = field.annotation
        elif origin in (list, tuple):
            tp = typing.get_args(tp)[0]
        elif origin is dict:
            tp = typing.get_args(tp)[1]
        else:
            return []
        try:
            node = node[seg]
        except (KeyError, IndexError, TypeError):
            node = None
    tp = _strip_optional(tp)
    members = _union_members(tp)
    if members is not None:
        tp = _pick_member(members, node)
    tp = _strip_optional(tp)
    return list(tp.model_fields) if _is_model(tp) else []


def _pick_member(members: list[Any], node: Any) -> Any:
    if not isinstance(node, dict):
        return None
    for m in members:
        m = _strip_optional(m)
        if _is_model(m):
            for name, field in m.model_fields.items():
                ann = _unwrap(field.annotation)
                if typing.get_origin(ann) is Literal and str(node.get(name)) in {str(a) for a in typing.get_args(ann)}:
                    return m
    return None


_VALID_TYPE = re.compile(r"^Input should be a valid (\w+)")


def _merge(group: list[ConfigIssue]) -> ConfigIssue:
    """One value failing every member of a plain union gives one error per member: merge them."""
    first = group[0]
    if len(group) == 1:
        return first
    words = [_VALID_TYPE.match(i.message) for i in group]
    if all(words):
        got = first.message.rsplit("; got ", 1)[1] if "; got " in first.message else None
        kinds = [m.group(1) for m in words if m]
        message = "Input should be a valid " + (", ".join(kinds[:-1]) + " or " + kinds[-1])
        return first.model_copy(update={"message": message + (f"; got {got}" if got else ""), "hint": None})
    messages: list[str] = []
    for issue in group:
        if issue.message not in messages:
            messages.append(issue.message)
    return first.model_copy(update={"message": "; or ".join(messages)})


def _issues_from_validation(exc: ValidationError, model: type[BaseModel], data: Any, shown: str) -> list[ConfigIssue]:
    groups: dict[tuple[str, int | None], list[ConfigIssue]] = {}
    for err in exc.errors(include_url=False):
        issue = _issue_from_error(err, model, data, shown)
        groups.setdefault((issue.path, issue.line), []).append(issue)
    issues = [_merge(group) for group in groups.values()]
    return sorted(issues, key=lambda i: (i.line is None, i.line or 0, i.path))


def load_gate_policy(path: str | os.PathLike[str], judges: list[str] | None = None) -> GatePolicy:
    """Load and validate a launch-gate policy file.

    With `judges`, the metrics it names must be among them. Raises ConfigError whose
    issues name the policy file and its lines.
    """
    path = Path(path)
    shown = _display(path)
    data, issues = _read_yaml(path, shown)
    if issues:
        raise ConfigError(issues)
    try:
        policy = GatePolicy.model_validate(_plain(data), context={"judges": judges})
    except ValidationError as exc:
        raise ConfigError(_issues_from_validation(exc, GatePolicy, data, shown)) from None
    return policy


def load_config(path: str | os.PathLike[str] = CONFIG_FILENAME) -> AutofixConfig:
    """Load, validate and resolve an `autofix.yaml` (or a folder holding one).

    Raises ConfigError with every issue found: YAML syntax, schema, missing files,
    and the problems of the launch-gate policy it names.
    """
    path = Path(path)
    if path.is_dir():
        path = path / CONFIG_FILENAME
    shown = _display(path) if path.is_absolute() else str(path)
    data, issues = _read_yaml(path, shown)
    if issues:
        raise ConfigError(issues)
    root = path.resolve().parent
    try:
        cfg = AutofixConfig.model_validate(_plain(data), context={"root": root})
    except ValidationError as exc:
        raise ConfigError(_issues_from_validation(exc, AutofixConfig, data, shown)) from None
    cfg._root = root
    cfg._file = path.resolve()
    try:
        cfg._gate_policy = load_gate_policy(cfg.policy_path, judges=cfg.judge_names)
    except ConfigError as exc:
        written = "policy" in data
        policy_line, policy_col, _ = _locate(data, ["policy"])
        if _is_policy_name(cfg.policy):
            hint = (
                f"the built-in policy cannot be edited per target: copy {cfg.policy_path} next to "
                f"{CONFIG_FILENAME}, adjust it, and set `policy:` to its path"
            )
        else:
            hint = "fix the policy file or point `policy` at another one"
        n = len(exc.issues)
        note = ConfigIssue(
            file=shown,
            line=policy_line if written else 1,
            column=policy_col if written else 1,
            path="policy",
            message=f"the launch-gate policy {cfg.policy!r} has {n} problem{'s' if n != 1 else ''}, listed above",
            hint=hint,
        )
        raise ConfigError([*exc.issues, note]) from None
    return cfg
