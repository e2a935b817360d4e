"""Problems found in a configuration or policy file: `ConfigIssue`, and `ConfigError` carrying them."""

from __future__ import annotations

from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
)


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
