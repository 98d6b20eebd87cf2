"""Read cambrian.toml (or [tool.cambrian]), merge CLI values and overrides, write TOML back."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cambrian.config._sections import CambrianConfig
from cambrian.errors import ConfigError

CONFIG_FILE = "cambrian.toml"


def _read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file, or raise a one-line ``ConfigError`` naming it."""
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def _read_file(path: Path) -> dict[str, Any]:
    data = _read_toml(path)
    if path.name == "pyproject.toml":
        return data.get("tool", {}).get("cambrian", {})
    return data


def find_config_file(task_dir: Path) -> Path | None:
    """Return the task's ``cambrian.toml``, or its pyproject.toml if that has [tool.cambrian]."""
    candidate = task_dir / CONFIG_FILE
    if candidate.is_file():
        return candidate
    pyproject = task_dir / "pyproject.toml"
    if pyproject.is_file() and "cambrian" in _read_toml(pyproject).get("tool", {}):
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
    merge_flags(data, extra or {})
    for assignment in overrides:
        apply_override(data, assignment)
    return build_config(data, source)


def merge_flags(data: dict[str, Any], extra: dict[str, Any]) -> None:
    """Merge nested CLI flag values into ``data`` in place, table by table."""
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            merge_flags(data[key], value)
        else:
            data[key] = value


def _toml_value(value: Any) -> str:
    """One TOML value (JSON's scalars are valid TOML); tables are written inline."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(value)


def dump_toml(config: CambrianConfig) -> str:
    """Render ``config`` as cambrian.toml text: the values that were set, nothing derived."""
    data = config.model_dump(exclude_unset=True, mode="json")
    lines: list[str] = []
    for section, values in data.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            if not isinstance(value, dict) and not _is_table_list(value):
                lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
        for key, value in values.items():
            if isinstance(value, dict):
                lines.append(f"[{section}.{key}]")
                lines.extend(f"{name} = {_toml_value(inner)}" for name, inner in value.items())
                lines.append("")
            elif _is_table_list(value):
                for entry in value:
                    lines.append(f"[[{section}.{key}]]")
                    lines.extend(f"{k} = {_toml_value(v)}" for k, v in entry.items())
                    lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _is_table_list(value: Any) -> bool:
    """Whether ``value`` is a non-empty list of tables (an array of tables in TOML)."""
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)
