"""autofix.yaml: loading, validation errors a user sees, and the `autofix config` commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autofix.cli import app
from autofix.config import (
    DEFAULT_MODEL,
    AutofixConfig,
    CheckJudge,
    ConfigError,
    GatePolicy,
    RubricJudge,
    builtin_policies_dir,
    builtin_policy_names,
    load_config,
    load_gate_policy,
)

VALID = """\
project: helpdesk
replay:
  command: python -m helpdesk.replay --cases {cases} --out {out}
  sandbox: docker
  image: sandboxes/python
  timeout_s: 900
surfaces:
  prompts: [prompts/*.md]
  retrieval:
    file: config/retrieval.yaml
    space:
      top_k: {type: int, low: 1, high: 10}
      bm25_k1: {type: float, low: 0.5, high: 2.0}
      reranker: {type: categorical, choices: [none, cross-encoder]}
  code: [src/helpdesk/tools/*.py]
datasets:
  traces: data/traces.jsonl
  regression: data/regression.jsonl
  golden: data/judge_golden.jsonl
judges:
  - {name: answer_correct, kind: check, check: contains_expected}
  - {name: retrieval_recall, kind: check, check: recall_at_k}
  - {name: helpfulness, kind: rubric, dimension: helpfulness, anchors: {1: "useless", 5: "solves it"}}
  - {name: no_harm, kind: rubric, dimension: safety, safety: true}
policy: default
"""

runner = CliRunner()


def line_of(text: str, needle: str) -> int:
    """1-based line of the first line containing `needle`."""
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in text")


@pytest.fixture
def target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A small valid target assistant folder; the working directory is set to it."""
    files = {
        "prompts/system.md": "You are a helpdesk assistant.\n",
        "prompts/rephrase.md": "Rephrase the question.\n",
        "config/retrieval.yaml": "top_k: 3\nbm25_k1: 1.2\nreranker: none\n",
        "src/helpdesk/tools/search.py": "def search(q):\n    return []\n",
        "data/traces.jsonl": '{"trace_id": "t1"}\n{"trace_id": "t2"}\n{"trace_id": "t3"}\n',
        "data/regression.jsonl": '{"case_id": "c1", "input": "hi"}\n{"case_id": "c2", "input": "yo"}\n',
        "data/judge_golden.jsonl": '{"case_id": "c1", "label": 1}\n',
        "sandboxes/python/Dockerfile": "FROM debian-minimal\n",
    }
    for rel, content in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    (tmp_path / "autofix.yaml").write_text(VALID)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(target: Path, text: str, name: str = "autofix.yaml") -> Path:
    path = target / name
    path.write_text(text)
    return path


def validate(*args: str):
    return runner.invoke(app, ["config", "validate", *args])


def validate_json(*args: str) -> dict:
    result = validate(*args, "--json")
    return {"exit_code": result.exit_code, **json.loads(result.stdout)}


# ---------------------------------------------------------------- a valid config


def test_valid_config_loads_with_defaults(target: Path) -> None:
    cfg = load_config(target / "autofix.yaml")

    assert cfg.project == "helpdesk"
    assert cfg.root == target.resolve()
    assert cfg.path("data/traces.jsonl") == (target / "data/traces.jsonl").resolve()
    # defaults
    assert cfg.state_dir == "runs" and cfg.state_path == (target / "runs").resolve()
    assert cfg.model.name == DEFAULT_MODEL
    assert cfg.model.judge == DEFAULT_MODEL  # judge defaults to name
    assert (cfg.model.gateway.host, cfg.model.gateway.port) == ("127.0.0.1", 4141)
    assert cfg.replay.allow_local_fallback is False
    assert cfg.replay.batch_size == 20
    assert cfg.replay.workdir is None and cfg.workdir_path == cfg.root
    assert cfg.image_path == (target / "sandboxes/python").resolve()
    assert cfg.triage.weights.explicit == 1.0 and cfg.triage.weights.risk_penalty == 0.5
    assert cfg.triage.thresholds.rephrase_window_s == 120
    # judges: discriminated by kind, with filled defaults
    recall = cfg.judge("retrieval_recall")
    assert isinstance(recall, CheckJudge) and recall.k == 5
    helpful = cfg.judge("helpfulness")
    assert isinstance(helpful, RubricJudge) and helpful.scale == [1, 5] and helpful.threshold == 3
    assert cfg.judge("no_harm").safety is True
    # surfaces resolve to the files an optimizer may touch
    assert [p.name for p in cfg.surface_files("prompts")] == ["rephrase.md", "system.md"]
    assert cfg.surface_files("code") == [(target / "src/helpdesk/tools/search.py").resolve()]
    assert cfg.surfaces.retrieval.space["top_k"].high == 10
    assert len(cfg.allowed_files()) == 4
    assert cfg.dataset_path("golden") == (target / "data/judge_golden.jsonl").resolve()
    # the built-in policy, loaded
    assert cfg.policy_path == builtin_policies_dir() / "default.yaml"
    assert isinstance(cfg.gate_policy, GatePolicy)
    assert cfg.gate_policy.target.metric == "slice"
    assert cfg.gate_policy.regression.metrics == "all"


def test_a_folder_loads_its_autofix_yaml(target: Path) -> None:
    assert load_config(target).project == "helpdesk"


def test_minimal_config_fills_defaults(target: Path) -> None:
    path = write(
        target,
        "project: tiny\n"
        "replay: {command: 'run {cases} {out}', sandbox: local}\n"
        "datasets: {traces: data/traces.jsonl, regression: data/regression.jsonl}\n"
        "judges: [{name: answer_correct, kind: check, check: contains_expected}]\n",
    )
    cfg = load_config(path)
    assert cfg.replay.timeout_s == 900 and cfg.replay.image is None
    assert cfg.surfaces.prompts == [] and cfg.surfaces.retrieval is None
    assert cfg.datasets.golden is None and cfg.dataset_path("golden") is None
    assert cfg.policy == "default"


def test_validate_ok_prints_a_summary(target: Path) -> None:
    result = validate("-c", "autofix.yaml")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "is valid" in out
    assert "helpdesk" in out
    assert "docker" in out and "sandboxes/python" in out
    assert "prompts: 2 files" in out and "code: 1 file" in out and "top_k" in out
    assert "traces: data/traces.jsonl (3 lines)" in out
    assert "regression: data/regression.jsonl (2 lines)" in out
    for judge in ("answer_correct", "retrieval_recall", "helpfulness", "no_harm"):
        assert judge in out


def test_validate_defaults_to_autofix_yaml_in_the_working_directory(target: Path) -> None:
    assert validate().exit_code == 0


# ---------------------------------------------------------------- errors name file, line, path


def test_wrong_type_names_the_line_and_path(target: Path) -> None:
    text = VALID.replace("timeout_s: 900", 'timeout_s: "soon"')
    write(target, text)
    result = validate("-c", "autofix.yaml")
    assert result.exit_code == 2
    line = line_of(text, "timeout_s")
    assert f"autofix.yaml:{line}: replay.timeout_s: " in result.output
    assert "'soon'" in result.output


def test_unknown_key_names_the_line_and_the_key(target: Path) -> None:
    text = VALID.replace("  timeout_s: 900\n", "  timeout_s: 900\n  timeuot: 5\n")
    write(target, text)
    result = validate("-c", "autofix.yaml")
    assert result.exit_code == 2
    assert f"autofix.yaml:{line_of(text, 'timeuot')}: replay.timeuot: unknown key `timeuot`" in result.output
    assert "allowed here:" in result.output and "timeout_s" in result.output


def test_unknown_top_level_key(target: Path) -> None:
    text = VALID + "polcy: strict\n"
    write(target, text)
    result = validate("-c", "autofix.yaml")
    assert result.exit_code == 2
    assert f"autofix.yaml:{line_of(text, 'polcy')}: polcy: unknown key `polcy` (did you mean `policy`?" in result.output


def test_missing_referenced_file_names_the_line_and_field(target: Path) -> None:
    text = VALID.replace("data/regression.jsonl", "data/missing.jsonl")
    write(target, text)
    result = validate("-c", "autofix.yaml")
    assert result.exit_code == 2
    line = line_of(text, "data/missing.jsonl")
    assert f"autofix.yaml:{line}: datasets.regression: file not found: data/missing.jsonl" in result.output


@pytest.mark.parametrize(
    ("old", "new", "needle", "path", "message"),
    [
        ("image: sandboxes/python", "image: sandboxes/node", "image:", "replay.image", "folder not found"),
        ("file: config/retrieval.yaml", "file: config/nope.yaml", "file:", "surfaces.retrieval.file", "file not found"),
        ("prompts: [prompts/*.md]", "prompts: [prompts/*.txt]", "prompts:", "surfaces.prompts.0", "glob matches no file"),
        ("code: [src/helpdesk/tools/*.py]", "code: [src/*.rs]", "code:", "surfaces.code.0", "glob matches no file"),
        ("golden: data/judge_golden.jsonl", "golden: data", "golden:", "datasets.golden", "not a file"),
        ("policy: default", "policy: policies/strict.yaml", "policy:", "policy", "policy file not found"),
        ("policy: default", "policy: defualt", "policy:", "policy", "no built-in policy 'defualt'"),
    ],
)
def test_path_checks(target: Path, old: str, new: str, needle: str, path: str, message: str) -> None:
    text = VALID.replace(old, new)
    write(target, text)
    result = validate("-c", "autofix.yaml")
    assert result.exit_code == 2
    assert f"autofix.yaml:{line_of(text, needle)}: {path}: {message}" in result.output


def test_image_without_dockerfile(target: Path) -> None:
    (target / "sandboxes/python/Dockerfile").unlink()
    result = validate("-c", "autofix.yaml")
    assert result.exit_code == 2
    assert f"autofix.yaml:{line_of(VALID, 'image:')}: replay.image: no Dockerfile in sandboxes/python" in result.output


def test_docker_sandbox_needs_an_image(target: Path) -> None:
    text = VALID.replace("  image: sandboxes/python\n", "")
    write(target, text)
    result = validate("-c", "autofix.yaml")
    assert result.exit_code == 2
    assert f"autofix.yaml:{line_of(text, 'replay:')}: replay.image: `sandbox: docker` needs an image" in result.output
    # a local sandbox does not
    write(target, text.replace("sandbox: docker", "sandbox: local"))
    assert validate("-c", "autofix.yaml").exit_code == 0


def test_command_without_out_placeholder(target: Path) -> None:
    text = VALID.replace(" --out {out}", "")
    write(target, text)
    result = validate("-c", "autofix.yaml")
    assert result.exit_code == 2
    assert f"autofix.yaml:{line_of(text, 'command:')}: replay.command: command lacks {{out}}" in result.output


def test_judge_with_unknown_check_names_its_index(target: Path) -> None:
    text = VALID.replace("check: contains_expected", "check: contains_answer")
    write(target, text)
    result = validate("-c", "autofix.yaml")
    assert result.exit_code == 2
    assert f"autofix.yaml:{line_of(text, 'contains_answer')}: judges.0.check: " in result.output
    assert "recall_at_k" in result.output  # the allowed checks are listed


def test_judge_with_unknown_kind(target: Path) -> None:
    text = VALID.replace("kind: rubric, dimension: safety", "kind: rubrik, dimension: safety")
    write(target, text)
    result = validate("-c", "autofix.yaml")
    assert result.exit_code == 2
    assert f"autofix.yaml:{line_of(text, 'rubrik')}: judges.3.kind: unknown kind 'rubrik'" in result.output
    assert "'check', 'rubric'" in result.output


def test_judge_option_checks(target: Path) -> None:
    text = (
        VALID.replace("check: recall_at_k}", "check: recall_at_k, k: 0}")
        .replace("check: contains_expected}", "check: contains_expected, k: 3}")
        .replace("safety: true}", "safety: true, threshold: 2}")
    )
    write(target, text)
    result = validate("-c", "autofix.yaml")
    assert result.exit_code == 2
    out = result.output
    assert f"autofix.yaml:{line_of(text, 'answer_correct')}: judges.0.k: `k` applies only to recall_at_k" in out
    assert f"autofix.yaml:{line_of(text, 'k: 0')}: judges.1.k: Input should be greater than 0" in out
    assert f"autofix.yaml:{line_of(text, 'no_harm')}: judges.3.threshold: safety judges are pass/fail" in out


def test_duplicate_judge_names(target: Path) -> None:
    text = VALID.replace("name: retrieval_recall", "name: answer_correct")
    write(target, text)
    result = validate("-c", "autofix.yaml")
    assert result.exit_code == 2
    assert f"autofix.yaml:{line_of(text, 'recall_at_k')}: judges.1.name: duplicate judge name 'answer_correct'" in result.output


def test_search_space_checks(target: Path) -> None:
    text = VALID.replace("low: 1, high: 10", "low: 10, high: 1").replace("type: float", "type: real")
    write(target, text)
    result = validate("-c", "autofix.yaml")
    assert result.exit_code == 2
    assert f"autofix.yaml:{line_of(text, 'top_k')}: surfaces.retrieval.space.top_k.low: low (10) must be below high (1)" in result.output
    assert f"autofix.yaml:{line_of(text, 'bm25_k1')}: surfaces.retrieval.space.bm25_k1.type: unknown type 'real'" in result.output


def test_missing_required_key(target: Path) -> None:
    text = VALID.replace("project: helpdesk\n", "")
    write(target, text)
    result = validate("-c", "autofix.yaml")
    assert result.exit_code == 2
    assert "autofix.yaml:1: project: missing required key `project`" in result.output


def test_every_issue_is_reported_at_once(target: Path) -> None:
    text = VALID.replace("timeout_s: 900", "timeout_s: -1").replace("data/traces.jsonl", "data/t.jsonl")
    write(target, text)
    result = validate("-c", "autofix.yaml")
    assert result.exit_code == 2
    assert "replay.timeout_s" in result.output and "datasets.traces" in result.output
    assert "2 problems" in result.output


def test_yaml_syntax_error_names_its_line(target: Path) -> None:
    text = VALID.replace("  prompts: [prompts/*.md]", "  prompts: [prompts/*.md\n  oops: 1")
    write(target, text)
    result = validate("-c", "autofix.yaml")
    assert result.exit_code == 2
    assert f"autofix.yaml:{line_of(text, 'oops')}: YAML syntax error" in result.output


def test_duplicate_yaml_key_is_an_error(target: Path) -> None:
    text = VALID + "project: other\n"
    write(target, text)
    result = validate("-c", "autofix.yaml")
    assert result.exit_code == 2
    assert f"autofix.yaml:{len(text.splitlines())}: YAML syntax error: found duplicate key" in result.output


def test_missing_config_file(target: Path) -> None:
    result = validate_json("-c", "nowhere/autofix.yaml")
    assert result["exit_code"] == 2
    assert result["ok"] is False
    assert result["issues"][0]["file"] == "nowhere/autofix.yaml"
    assert result["issues"][0]["line"] is None
    assert "not found" in result["issues"][0]["message"]


def test_absolute_path_names_the_file(
    target: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = VALID.replace("timeout_s: 900", "timeout_s: soon")
    path = write(target, text)
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    [issue] = caught.value.issues
    assert (issue.file, issue.line, issue.path) == (str(path), line_of(text, "timeout_s"), "replay.timeout_s")
    assert str(path) in str(caught.value)


# ---------------------------------------------------------------- --json


def test_json_output_on_failure(target: Path) -> None:
    text = VALID.replace("timeout_s: 900", "timeout_s: soon")
    write(target, text)
    result = validate_json("-c", "autofix.yaml")
    assert result["exit_code"] == 2
    assert result["ok"] is False
    [issue] = result["issues"]
    assert set(issue) == {"file", "line", "column", "path", "message"}
    assert issue["file"] == "autofix.yaml"
    assert issue["line"] == line_of(text, "timeout_s")
    assert issue["column"] == 3
    assert issue["path"] == "replay.timeout_s"


def test_json_output_on_success(target: Path) -> None:
    result = validate_json("-c", "autofix.yaml")
    assert result == {"exit_code": 0, "ok": True, "issues": []}


# ---------------------------------------------------------------- policies


def test_builtin_policy_is_shipped() -> None:
    assert "default" in builtin_policy_names()
    policy = load_gate_policy(builtin_policies_dir() / "default.yaml")
    assert policy.target.metric == "slice" and policy.target.min_cases == 5
    assert policy.target.min_improvement == 0.10 and policy.target.max_p_value == 0.05
    assert policy.regression.margin == 0.05 and policy.regression.confidence == 0.95
    assert policy.guardrails.latency_p95_ratio == 1.25 and policy.guardrails.safety_failures == 0
    assert policy.guardrails.tokens_ratio == 1.25
    assert "strict" in builtin_policy_names()
    strict = load_gate_policy(builtin_policies_dir() / "strict.yaml")
    assert strict.regression.margin < policy.regression.margin and strict.target.min_cases > policy.target.min_cases
    # the model's defaults are the built-in policy
    assert policy.model_dump(exclude={"description"}) == GatePolicy().model_dump(exclude={"description"})


def test_policy_errors_name_the_policy_file_and_line(target: Path) -> None:
    policy_text = (
        "target: {metric: answer_correct, max_p_value: 0.05}\n"
        "regression:\n"
        "  metrics: [answer_correct, tone]\n"
        "guardrails:\n"
        "  cost_ratio: cheap\n"
    )
    write(target, policy_text, "gate.yaml")
    text = VALID.replace("policy: default", "policy: gate.yaml")
    write(target, text)
    result = validate("-c", "autofix.yaml")
    assert result.exit_code == 2
    out = result.output
    assert "gate.yaml:3: regression.metrics.1: metric 'tone' is not a judge" in out
    assert "gate.yaml:5: guardrails.cost_ratio: " in out
    assert f"autofix.yaml:{line_of(text, 'policy:')}: policy: " in out


def test_the_default_policy_needs_no_particular_judge_and_a_named_metric_must_exist(target: Path) -> None:
    """`policy: default` scores the slice, so a target without a judge called answer_correct loads; a policy
    naming a judge the target lacks is a config error at load time, with the fix."""
    write(target, VALID.replace("name: answer_correct", "name: correct"))
    assert load_config("autofix.yaml").gate_policy.target.metric == "slice"
    write(target, "target: {metric: answer_correct}\n", "gate.yaml")
    text = VALID.replace("name: answer_correct", "name: correct").replace("policy: default", "policy: gate.yaml")
    write(target, text)
    result = validate_json("-c", "autofix.yaml")
    assert result["exit_code"] == 2
    first = result["issues"][0]
    assert first["file"].endswith("gate.yaml") and first["path"] == "target.metric"
    assert "use `slice`" in validate("-c", "autofix.yaml").output


def test_custom_policy_loads(target: Path) -> None:
    write(target, "target: {metric: helpfulness, min_improvement: 0.2}\n", "gate.yaml")
    write(target, VALID.replace("policy: default", "policy: gate.yaml"))
    cfg = load_config("autofix.yaml")
    assert cfg.policy_path == (target / "gate.yaml").resolve()
    assert cfg.gate_policy.target.metric == "helpfulness"
    assert cfg.gate_policy.target.min_improvement == 0.2
    assert cfg.gate_policy.guardrails.cost_ratio == 1.25  # defaults fill the rest


# ---------------------------------------------------------------- schema


def test_schema_prints_the_json_schema() -> None:
    result = runner.invoke(app, ["config", "schema"])
    assert result.exit_code == 0, result.output
    schema = json.loads(result.stdout)
    assert schema == AutofixConfig.model_json_schema()
    for key in ("project", "state_dir", "model", "replay", "surfaces", "datasets", "judges", "triage", "policy"):
        assert key in schema["properties"]
    assert schema["required"] == ["project", "replay", "datasets", "judges"]
    assert schema["additionalProperties"] is False


def test_policy_schema() -> None:
    result = runner.invoke(app, ["config", "schema", "--policy"])
    assert result.exit_code == 0
    assert set(json.loads(result.stdout)["properties"]) >= {"target", "regression", "guardrails", "judges"}


def test_every_field_has_a_description() -> None:
    schema = AutofixConfig.model_json_schema()
    models = {"AutofixConfig": schema, **schema["$defs"]}
    undocumented = [
        f"{name}.{prop}"
        for name, model in models.items()
        for prop, spec in model.get("properties", {}).items()
        if not spec.get("description")
    ]
    assert undocumented == []
    for name, model in models.items():
        assert model.get("additionalProperties") is False, name


def test_a_categorical_choice_may_be_a_list_and_optimizer_tests_and_labels_are_declared(target: Path) -> None:
    text = VALID.replace("      reranker: {type: categorical, choices: [none, cross-encoder]}",
                         "      index_types: {type: categorical, choices: [[policy], [policy, faq], [policy, faq, howto]]}")
    text = text.replace("  golden: data/judge_golden.jsonl", "  golden: data/judge_golden.jsonl\n  labels: data/labels.jsonl")
    text += "tests: {command: python -m pytest -q}\nslices: {checks: {routing: [searched]}}\n"
    write(target, text)
    result = validate()
    assert result.exit_code == 0, result.output
    cfg = load_config(target / "autofix.yaml")
    assert cfg.surfaces.retrieval.space["index_types"].choices[1] == ["policy", "faq"]
    assert cfg.model.optimizer == cfg.model.judge == DEFAULT_MODEL  # the optimizer model defaults to the judge's
    assert cfg.tests.command == "python -m pytest -q" and cfg.tests.timeout_s == 600
    assert cfg.slices.checks == {"routing": ["searched"]} and cfg.slices.min_cases == 3
    assert cfg.dataset_path("labels") == (target / "data/labels.jsonl").resolve()  # may not exist yet
