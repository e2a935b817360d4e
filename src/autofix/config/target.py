"""The `autofix.yaml` target contract: model, replay, surfaces, datasets, judges, triage, policy."""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from autofix.config.fields import (
    ExistingDir,
    ExistingFile,
    MatchingGlob,
    _fail,
    _glob_files,
    _is_policy_name,
    _root_from,
    _Strict,
    builtin_policy_names,
    resolve_policy_path,
)
from autofix.config.policy import GatePolicy
from autofix.config.triage_knowledge import DocumentConventions, RuleSettings, ToolErrorWording, TriageVocabulary

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
    "searched",
    "no_tool_error",
    "cites_sources",
)
CheckName = Literal[
    "contains_expected",
    "matches_expected",
    "citations_in_expected",
    "recall_at_k",
    "tool_args_valid",
    "format_kept",
    "no_leaked_fields",
    "searched",
    "no_tool_error",
    "cites_sources",
]






class GatewayBudget(_Strict):
    """What one run may spend through the gateway; a call after the budget is spent is refused (429)."""

    tokens: int | None = Field(default=None, gt=0, description="Tokens (prompt + completion) per run; none = no limit.")
    usd: float | None = Field(default=None, gt=0, description="US dollars per run (litellm's prices); none = no limit.")


class GatewayConfig(_Strict):
    """autofix's model gateway: the OpenAI-compatible endpoint the sandboxed assistant calls."""

    host: str = Field(default="127.0.0.1", description="Address the gateway listens on.")
    port: int = Field(default=4141, ge=1, le=65535, description="Port the gateway listens on.")
    max_body_bytes: int = Field(
        default=4 * 1024 * 1024, gt=0, description="Largest request body accepted, in bytes; a larger one gets 413."
    )
    budget: GatewayBudget | None = Field(
        default=None,
        description="Default budget of each run key (`{tokens, usd}`) for runs whose key was issued without one "
        "(`autofix gateway key --budget-tokens/--budget-usd` sets a run's own); none = no limit.",
    )


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
    optimizer: str | None = Field(
        default=None,
        description="litellm model string the optimizers reflect and write patches with (GEPA's reflection "
        "model, the code-patch model); default: `judge`.",
    )
    aliases: dict[str, str] = Field(
        default_factory=dict,
        description="Model names the assistant asks for -> litellm model strings the gateway serves them with, "
        "e.g. `{gpt-4o-mini: autofix-local/smollm2-135m-instruct, text-embedding-3-small: "
        "openai/text-embedding-3-small}`; a name not listed here is served by `name`.",
    )
    gateway: GatewayConfig = Field(
        default_factory=GatewayConfig, description="The model gateway: address, request size limit, budgets."
    )

    @field_validator("aliases")
    @classmethod
    def _aliases_name_models(cls, value: dict[str, str]) -> dict[str, str]:
        for alias, served in value.items():
            if not alias.strip() or not str(served).strip():
                raise _fail(
                    f"alias {alias!r}: {served!r} has an empty side",
                    "map a model name the assistant asks for to a litellm model string, e.g. "
                    "`gpt-4o-mini: openai/gpt-4o-mini`",
                    at=(alias,),
                )
        return value

    @model_validator(mode="after")
    def _judge_defaults_to_name(self) -> ModelConfig:
        if not self.judge:
            self.judge = self.name
        if not self.optimizer:
            self.optimizer = self.judge
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
    max_sandboxes: int | None = Field(
        default=None, gt=0,
        description="Sandboxes running at once in this process, over every replay of a run (candidates replayed in "
        "parallel share them); default: one per CPU core. With `executor: ray` the cluster's CPUs bound them.",
    )
    executor: Literal["threads", "ray"] = Field(
        default="threads",
        description="Where batches run: `threads` on this machine, or `ray`: one Ray task per batch (needs "
        "`pip install 'autofix[ray]'`; the worktrees on a filesystem the nodes share, the gateway reachable "
        "from them).",
    )
    ray_address: str | None = Field(
        default=None,
        description="With `executor: ray`, the cluster to join (`auto`, `ray://head:10001`); default: "
        "RAY_ADDRESS, else a local Ray instance.",
    )
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
    choices: list[str | int | float | bool | None | list[str | int | float | bool | None]] = Field(
        min_length=1,
        description="The values to choose from; a choice may itself be a list (e.g. which document types to index).",
    )


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


def _existing_traces(value: str, info: ValidationInfo) -> str:
    root = _root_from(info)
    if root is not None and not (root / value).exists():
        raise _fail(
            f"not found: {value}",
            f"point it at a trace file or a folder of them; it resolves to {(root / value).resolve()}",
        )
    return value


class DatasetsConfig(_Strict):
    """Datasets, JSONL, relative to autofix.yaml."""

    traces: Annotated[str, AfterValidator(_existing_traces)] = Field(
        description="Production traces: a file, or a folder whose *.jsonl / *.ndjson / *.json files (subfolders "
        "included) are read in path order. Native trace JSONL, OpenInference/Phoenix or Langfuse exports."
    )
    regression: ExistingFile = Field(description="Regression cases every candidate is replayed on.")
    golden: ExistingFile | None = Field(
        default=None, description="Human-labelled judge verdicts used to calibrate the rubric judges."
    )
    labels: str | None = Field(
        default=None,
        description="Reviewers' expectations for failed traces (JSONL: case_id, expected {answer, must_include, "
        "must_not_include, doc_ids}, labeled_by, labeled_at), written by `autofix label`; slices are scored "
        "with them. It may not exist yet.",
    )


class TestsConfig(_Strict):
    """The target's own tests, run in the sandbox on a candidate that changes code."""

    command: str = Field(min_length=1, description="Test command, run in the target folder, e.g. `python -m pytest -q`.")
    timeout_s: int = Field(default=600, gt=0, description="Wall-clock limit of one test run.")


class SlicesConfig(_Strict):
    """How a failure cluster's cases (`slice:<cluster>`) are measured and split."""

    checks: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Per root-cause category, the reference-free checks its failures are scored by; replaces "
        "autofix's default for that category (see `autofix.slices.measure.IMPLIED_CHECKS`), e.g. "
        "`{routing: [searched, contains_expected]}`.",
    )
    min_cases: int = Field(
        default=3, ge=1, description="A slice with fewer measurable training cases than this is not optimized."
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


class ScoreScale(_Strict):
    """How triage reads one score name found on the traces: its scale, its pass mark, its direction.

    A score is any evaluator's, judge's or human label's number on a trace (``scores[].value``).
    Without a declaration a score is read on the default scale [0, 1] with pass mark 0.5, or, when
    a rubric judge has its name, on that judge's scale and threshold. A value outside the scale is
    not read as a verdict: triage counts it and warns once per score name.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    range: list[float] = Field(
        default_factory=lambda: [0.0, 1.0],
        min_length=2,
        max_length=2,
        description="[lowest, highest] value the score takes, e.g. [1, 5] for a 1-5 judge; a value outside it is "
        "not read and is reported as a warning.",
    )
    pass_mark: float | None = Field(
        default=None,
        alias="pass",
        description="The mark a score must reach to pass: at or above it (at or below it when "
        "`higher_is_better: false`); a score on the other side is a judged failure. Default: the middle of `range`.",
    )
    higher_is_better: bool = Field(
        default=True,
        description="true: higher values are better (quality, faithfulness); false: lower values are better "
        "(toxicity, hallucination rate), and a boolean score fails when true.",
    )

    @model_validator(mode="after")
    def _mark_on_the_scale(self) -> ScoreScale:
        low, high = self.range
        if low >= high:
            raise _fail(f"range [{low:g}, {high:g}] must go from low to high", "e.g. [1, 5]", at=("range",))
        if self.pass_mark is None:
            self.pass_mark = (low + high) / 2
        elif not low <= self.pass_mark <= high:
            raise _fail(
                f"pass mark {self.pass_mark:g} is outside the range [{low:g}, {high:g}]",
                "pick a mark on the scale, or widen `range`",
                at=("pass",),
            )
        return self


class TriageThresholds(_Strict):
    """Thresholds of the failure detectors."""

    rephrase_window_s: float = Field(
        default=120, gt=0, description="A new message within this many seconds of the last counts as a rephrase."
    )
    latency_outlier_z: float = Field(default=3.0, gt=0, description="z-score above which latency is an outlier.")
    scores: dict[str, float] = Field(
        default_factory=dict,
        description="Deprecated (still read; triage reports a warning): pass mark per score name. Write "
        "`triage.scores: {<name>: {pass: <mark>, range: [low, high]}}` instead.",
    )


class TriageConfig(_Strict):
    """Failure detection and prioritisation settings."""

    weights: TriageWeights = Field(default_factory=TriageWeights, description="Signal weights.")
    thresholds: TriageThresholds = Field(default_factory=TriageThresholds, description="Detector thresholds.")
    llm_classifier: bool = Field(
        default=True,
        description="Ask the LLM classifier (model.judge) about failures no deterministic rule explains.",
    )
    vocabulary: TriageVocabulary = Field(
        default_factory=TriageVocabulary, description="How the target's users and answers phrase what rules look for."
    )
    documents: DocumentConventions = Field(
        default_factory=DocumentConventions, description="How the target's retrieved documents say what they are."
    )
    tool_errors: ToolErrorWording = Field(
        default_factory=ToolErrorWording, description="How the target's tools word their errors."
    )
    rules: RuleSettings = Field(default_factory=RuleSettings, description="Rules to turn off for this target.")
    scores: dict[str, ScoreScale] = Field(
        default_factory=dict,
        description="Scale per score name found on the traces: {<name>: {range: [low, high], pass: <mark>, "
        "higher_is_better: true}}. Undeclared scores are read on [0, 1] with pass mark 0.5 (a rubric judge's "
        "scale for scores named after it); values off their scale are reported, not read.",
    )

    @model_validator(mode="after")
    def _one_pass_mark_per_score(self) -> TriageConfig:
        both = sorted(set(self.scores) & set(self.thresholds.scores))
        if both:
            raise _fail(
                f"pass mark of {', '.join(repr(n) for n in both)} given twice: in triage.scores and in the "
                "deprecated triage.thresholds.scores",
                f"keep triage.scores.{both[0]} and remove triage.thresholds.scores.{both[0]}",
                at=("thresholds", "scores", both[0]),
            )
        return self


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
    slices: SlicesConfig = Field(default_factory=SlicesConfig, description="How failure clusters are measured.")
    tests: TestsConfig | None = Field(
        default=None, description="The target's own tests; a code candidate must pass them in the sandbox."
    )
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

    def dataset_path(self, name: Literal["traces", "regression", "golden", "labels"]) -> Path | None:
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
            from autofix.config.loading import (
                load_gate_policy,  # here: loading imports this module
            )

            self._gate_policy = load_gate_policy(self.policy_path, judges=self.judge_names)
        return self._gate_policy
