"""The one configuration schema: ``cambrian.toml`` or ``[tool.cambrian]`` in pyproject.toml.

Every default lives here and nowhere else. Unknown keys are errors. Each room's
constructor is handed only its own section.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cambrian.errors import ConfigError

CONFIG_FILE = "cambrian.toml"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TaskConfig(_Section):
    """What is evolved and why."""

    editable: tuple[str, ...] = Field(
        default=(), description="Globs (relative to the task repo) of files the LLM may change."
    )
    description: str = Field(default="", description="What to optimise, shown to the LLM.")


class EvaluatorConfig(_Section):
    """The evaluator command and how its score is read."""

    command: str = Field(default="", description="Shell command run in the candidate's work dir.")
    timeout_s: float = Field(default=60.0, gt=0, description="Wall-clock limit per evaluation.")
    direction: Literal["maximize", "minimize"] = "maximize"
    protected: tuple[str, ...] = Field(
        default=(),
        description="Extra globs made read-only during evaluation; every non-editable "
        "file of the task is protected already.",
    )


class SandboxConfig(_Section):
    """Where candidates run and with which limits."""

    backend: str = Field(
        default="process", description="Short name (process) or a dotted class path."
    )
    memory_mb: int | None = Field(default=2048, gt=0)
    pids: int | None = Field(default=256, gt=0)
    output_kb: int = Field(default=256, gt=0, description="Captured stdout/stderr cap (tail).")
    file_size_mb: int = Field(default=256, gt=0)
    network: bool = Field(default=False, description="Let candidate code reach the network.")


class LLMConfig(_Section):
    """The model that proposes edits."""

    model: str | None = Field(
        default=None,
        description="litellm model name; unset: a provider default from the environment's "
        "API key, else the offline demo model.",
    )
    api_base: str | None = None
    api_key_env: str | None = Field(
        default=None, description="Name of the environment variable holding the API key."
    )
    temperature: float = Field(default=0.8, ge=0, le=2)
    max_tokens: int = Field(default=4096, gt=0)
    timeout_s: float = Field(default=180.0, gt=0, description="Hard deadline per call.")
    retries: int = Field(default=4, ge=0, description="Retries on 429, 5xx, connection errors.")


class PromptConfig(_Section):
    """What the prompt shows besides the parent."""

    inspirations: int = Field(default=2, ge=0, description="Other elites shown to the LLM.")
    top_k: int = Field(default=1, ge=0, description="How many of those are the best elites.")
    rejections: int = Field(default=3, ge=0, description="Recent rejection reasons shown.")
    feedback_chars: int = Field(default=2000, gt=0, description="Cap on evaluator feedback.")
    templates: str = Field(
        default="default",
        description="Template set: default, compact (small local models), or a folder "
        "(relative to the task folder) holding system.j2 and user.j2.",
    )


class FeatureBins(_Section):
    """A MAP-Elites descriptor axis: ``bins`` equal bins over ``[min, max]``."""

    min: float
    max: float
    bins: int = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> FeatureBins:
        if not self.max > self.min:
            raise ValueError(f"max ({self.max}) must be greater than min ({self.min})")
        return self


class ArchiveConfig(_Section):
    """Where programs are stored and how parents are picked."""

    url: str | None = Field(
        default=None, description="SQLAlchemy URL; unset: SQLite archive.db in the run dir."
    )
    islands: int = Field(default=1, gt=0)
    selection: Literal["uniform", "fitness"] = "uniform"
    features: dict[str, FeatureBins] = Field(
        default_factory=dict,
        description="Descriptor axes; none: one cell per island (plain elitism).",
    )


class RunConfig(_Section):
    """How long and how wide the search runs."""

    iterations: int = Field(default=100, gt=0, description="Evaluated candidates to produce.")
    proposal_concurrency: int = Field(default=4, gt=0)
    eval_concurrency: int = Field(default=2, gt=0)
    target_score: float | None = Field(default=None, description="Stop once reached.")
    max_proposals: int | None = Field(
        default=None,
        gt=0,
        description="Cap on LLM proposals, rejected ones included; unset: 5 x iterations + 10.",
    )
    seed: int = 0

    @model_validator(mode="after")
    def _proposal_cap(self) -> RunConfig:
        if self.max_proposals is None:
            object.__setattr__(self, "max_proposals", 5 * self.iterations + 10)
        return self


class CambrianConfig(_Section):
    """The whole configuration, one section per room."""

    task: TaskConfig = TaskConfig()
    evaluator: EvaluatorConfig = EvaluatorConfig()
    sandbox: SandboxConfig = SandboxConfig()
    llm: LLMConfig = LLMConfig()
    prompt: PromptConfig = PromptConfig()
    archive: ArchiveConfig = ArchiveConfig()
    run: RunConfig = RunConfig()

    def check_runnable(self) -> None:
        """Raise ``ConfigError`` if a run could not start with this configuration."""
        if not self.evaluator.command.strip():
            raise ConfigError(
                "evaluator.command is empty: set it in cambrian.toml or pass --evaluator"
            )
        if not self.task.editable:
            raise ConfigError(
                "task.editable is empty: list the files the LLM may change, or pass --editable"
            )


def _read_file(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    if path.name == "pyproject.toml":
        return data.get("tool", {}).get("cambrian", {})
    return data


def find_config_file(task_dir: Path) -> Path | None:
    """Return the task's ``cambrian.toml``, or its pyproject.toml if that has [tool.cambrian]."""
    candidate = task_dir / CONFIG_FILE
    if candidate.is_file():
        return candidate
    pyproject = task_dir / "pyproject.toml"
    if pyproject.is_file() and "cambrian" in tomllib.loads(pyproject.read_text()).get("tool", {}):
        return pyproject
    return None


def _parse_value(raw: str) -> Any:
    """Parse an override value as TOML (numbers, booleans, lists, quoted strings) or text."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply one ``section.key=value`` override to raw config ``data`` in place."""
    key, sep, raw = assignment.partition("=")
    parts = [p for p in key.strip().split(".") if p]
    if not sep or len(parts) < 2:
        raise ConfigError(f"bad override {assignment!r}: write it as section.key=value")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"bad override {assignment!r}: {part} is not a section")
    node[parts[-1]] = _parse_value(raw.strip())


def _describe(exc: ValidationError, source: str) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "(top level)"
    if err["type"] == "extra_forbidden":
        return f"{source}: unknown config key '{where}'; see the README's config reference"
    return f"{source}: invalid value for '{where}': {err['msg']}"


def build_config(data: dict[str, Any], source: str = "config") -> CambrianConfig:
    """Validate raw ``data`` into a config, raising a one-line ``ConfigError``."""
    try:
        return CambrianConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from None


def load_config(
    task_dir: Path | None, overrides: list[str] = (), extra: dict[str, Any] | None = None
) -> CambrianConfig:
    """Load the task's config file, merge ``extra`` (CLI flags) and ``a.b=c`` overrides.

    Args:
        task_dir: Folder holding cambrian.toml or pyproject.toml; None for flags only.
        overrides: ``section.key=value`` strings, applied last.
        extra: Nested dict of values from CLI flags, applied before the overrides.
    """
    data: dict[str, Any] = {}
    source = "command line"
    path = find_config_file(task_dir) if task_dir is not None else None
    if path is not None:
        data = _read_file(path)
        source = str(path)
    for section, values in (extra or {}).items():
        data.setdefault(section, {}).update(values)
    for assignment in overrides:
        apply_override(data, assignment)
    return build_config(data, source)


def dump_toml(config: CambrianConfig) -> str:
    """Render ``config`` as cambrian.toml text (non-default values only)."""
    data = config.model_dump(exclude_defaults=True, mode="json")
    lines: list[str] = []
    for section, values in data.items():
        lines.append(f"[{section}]")
        tables = {k: v for k, v in values.items() if isinstance(v, dict)}
        for key, value in values.items():
            if key not in tables:
                lines.append(f"{key} = {json.dumps(value)}")
        lines.append("")
        for key, table in tables.items():
            lines.append(f"[{section}.{key}]")
            for name, inner in table.items():
                body = ", ".join(f"{k} = {json.dumps(v)}" for k, v in inner.items())
                lines.append(f"{name} = {{ {body} }}")
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"
