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

from autofix.config.errors import ConfigError, ConfigIssue
from autofix.config.fields import (
    builtin_policies_dir,
    builtin_policy_names,
    glob_matches,
    resolve_policy_path,
)
from autofix.config.loading import load_config, load_gate_policy
from autofix.config.policy import (
    GatePolicy,
    GuardrailsGate,
    RegressionGate,
    TargetGate,
)
from autofix.config.target import (
    CHECK_NAMES,
    CONFIG_FILENAME,
    DEFAULT_MODEL,
    AutofixConfig,
    CategoricalParam,
    CheckJudge,
    DatasetsConfig,
    FloatParam,
    GatewayConfig,
    IntParam,
    Judge,
    ModelConfig,
    ReplayConfig,
    RetrievalSurface,
    RubricJudge,
    SearchParam,
    SlicesConfig,
    Surfaces,
    TestsConfig,
    TriageConfig,
    TriageThresholds,
    TriageWeights,
)

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
    "IntParam",
    "Judge",
    "ModelConfig",
    "RegressionGate",
    "ReplayConfig",
    "RetrievalSurface",
    "RubricJudge",
    "SearchParam",
    "SlicesConfig",
    "Surfaces",
    "TargetGate",
    "TestsConfig",
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

