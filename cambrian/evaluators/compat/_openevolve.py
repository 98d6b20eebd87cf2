"""OpenEvolve task folders: ``initial_program.*``, ``evaluator.py``, optional ``config.yaml``.

The config is mapped key by key onto cambrian's; keys with no counterpart are listed
so the user is told, once and by name, what is ignored. OpenEvolve's cascade
(``evaluate_stage1/2/3`` with ``evaluator.cascade_thresholds``) becomes
``[[evaluator.stages]]``, one runner call per stage. Two differences remain: a
candidate stopped by a threshold takes no MAP-Elites cell (OpenEvolve keeps it with
its early metrics), and stage 2's threshold is checked on stage 2's metrics alone
(OpenEvolve merges stage 1's in first).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from cambrian.errors import ConfigError
from cambrian.evaluators.compat._foreign import (
    ForeignTask,
    find_initial,
    requirements_note,
    runner_command,
)

EVALUATOR = "evaluator.py"
CONFIG = "config.yaml"
# OpenEvolve's own defaults where they decide how the evaluator is called.
_CASCADE_THRESHOLDS = (0.5, 0.75, 0.9)
_TIMEOUT_S = 300.0
_BINS = 10
_ENV_REF = re.compile(r"^\$\{(\w+)\}$")
# Keys read here (dotted); everything else present in config.yaml is reported as ignored.
MAPPED = {
    "max_iterations": ("run", "iterations"),
    "random_seed": ("run", "seed"),
    "llm.api_base": ("llm", "api_base"),
    "llm.temperature": ("llm", "temperature"),
    "llm.max_tokens": ("llm", "max_tokens"),
    "llm.timeout": ("llm", "timeout_s"),
    "llm.retries": ("llm", "retries"),
    "prompt.system_message": ("task", "description"),
    "prompt.num_top_programs": ("prompt", "top_k"),
    "prompt.max_artifact_bytes": ("prompt", "feedback_chars"),
    "database.num_islands": ("archive", "islands"),
    "evaluator.timeout": ("evaluator", "timeout_s"),
    "evaluator.parallel_evaluations": ("run", "eval_concurrency"),
}
# Read by the functions below rather than copied one to one.
HANDLED = {
    "diff_based_evolution",
    "enforce_evolve_blocks",
    "llm.models",
    "llm.primary_model",
    "llm.api_key",
    "prompt.num_diverse_programs",
    "database.feature_dimensions",
    "database.feature_bins",
    "evaluator.cascade_evaluation",
    "evaluator.cascade_thresholds",
}


def _read_yaml(path: Path) -> dict[str, Any]:
    """The parsed config.yaml (empty when absent)."""
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {str(exc).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level")
    return data


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted keys to values; a mapping that is itself a known key stays whole."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and dotted not in HANDLED and value:
            flat.update(_flatten(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


def _ignored(flat: dict[str, Any]) -> tuple[str, ...]:
    """Set keys with no meaning here; a section with no meaningful key is named once."""
    known = set(MAPPED) | HANDLED
    sections = {k.split(".")[0] for k in known if "." in k}
    names: list[str] = []
    for key, value in flat.items():
        if key in known or value is None:
            continue
        top = key.split(".")[0]
        name = key if top in sections or "." not in key else top
        if name not in names:
            names.append(name)
    return tuple(names)


def _model(flat: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    """``[llm]`` model, endpoint and key variable from ``llm.models`` / ``llm.primary_model``."""
    models = flat.get("llm.models") or []
    if flat.get("llm.primary_model"):
        models = [{"name": flat["llm.primary_model"], "weight": 1.0}, *models]
    llm: dict[str, Any] = {}
    named = [m for m in models if isinstance(m, dict) and m.get("name")]
    if named:
        chosen = max(named, key=lambda m: float(m.get("weight") or 0))
        name = str(chosen["name"])
        llm["model"] = name if name.startswith("openai/") else f"openai/{name}"
        if chosen.get("api_base"):
            llm["api_base"] = chosen["api_base"]
        others = [str(m["name"]) for m in named if m is not chosen]
        if others:
            notes.append(
                f"llm.models: cambrian uses one model, the heaviest ({name}); "
                f"not used: {', '.join(others)}"
            )
    key = flat.get("llm.api_key")
    if isinstance(key, str) and key:
        match = _ENV_REF.match(key.strip())
        if match:
            llm["api_key_env"] = match.group(1)
        else:
            notes.append("llm.api_key: a literal key is not read; set llm.api_key_env instead")
    return llm


def _features(
    flat: dict[str, Any], program: Path, notes: list[str]
) -> tuple[dict[str, Any], list[str]]:
    """``archive.features`` axes and the names the runner reports, from the feature map."""
    dims = [str(d) for d in flat.get("database.feature_dimensions") or []]
    bins = flat.get("database.feature_bins", _BINS)
    axes: dict[str, Any] = {}
    for name in dims:
        count = int(bins.get(name, _BINS) if isinstance(bins, dict) else bins)
        if name == "diversity":
            notes.append("database.feature_dimensions: 'diversity' has no cambrian counterpart")
            continue
        if name == "complexity":
            top = max(2.0 * len(program.read_text(errors="replace")), 1.0)
            axes[name] = {"min": 0.0, "max": top, "bins": count}
            continue
        axes[name] = {"min": 0.0, "max": 1.0, "bins": count}
        notes.append(
            f"archive.features.{name}: cambrian needs fixed bounds; [0, 1] assumed "
            "(write them down with `cambrian init --from DIR`)"
        )
    return axes, [n for n in dims if n in axes]


def _stage_count(task_dir: Path) -> int:
    """How many of ``evaluate_stage1``, ``evaluate_stage2``, ``evaluate_stage3`` follow in turn."""
    text = (task_dir / EVALUATOR).read_text(errors="replace")
    count = 0
    while count < 3 and re.search(rf"^def evaluate_stage{count + 1}\(", text, re.M):
        count += 1
    return count


def _evaluator(
    flat: dict[str, Any], task_dir: Path, program: str, features: list[str]
) -> dict[str, Any]:
    """``evaluator.command``, or one stage per ``evaluate_stageN`` of OpenEvolve's cascade.

    OpenEvolve runs stage k + 1 only when stage k's score reaches threshold k, and stops
    after stage 2 when only one threshold is given; each threshold becomes its stage's
    ``min_score``, compared as OpenEvolve does (``--gate``).
    """
    base = ["--evaluator", EVALUATOR, "--program", program]
    tail = ["--features", ",".join(features)] if features else []
    count = _stage_count(task_dir)
    if not count or not flat.get("evaluator.cascade_evaluation", True):
        return {"command": runner_command(*base, *tail)}
    thresholds = [float(t) for t in flat.get("evaluator.cascade_thresholds") or ()]
    thresholds = thresholds or list(_CASCADE_THRESHOLDS)
    count = min(count, len(thresholds) + 1)
    if count == 1:
        return {"command": runner_command(*base, "--stage", "1", *tail)}
    stages: list[dict[str, Any]] = []
    for number in range(1, count + 1):
        if number == count:  # the last stage scores as the evolution does
            stages.append({"command": runner_command(*base, "--stage", str(number), *tail)})
            continue
        command = runner_command(*base, "--stage", str(number), "--gate", *tail)
        stages.append({"command": command, "min_score": thresholds[number - 1]})
    return {"stages": stages}


def _sections(flat: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The one-to-one keys, placed in their cambrian sections."""
    config: dict[str, dict[str, Any]] = {}
    for key, (section, name) in MAPPED.items():
        if flat.get(key) is not None:
            config.setdefault(section, {})[name] = flat[key]
    if flat.get("prompt.num_top_programs") is not None or "prompt.num_diverse_programs" in flat:
        top = int(flat.get("prompt.num_top_programs") or 0)
        config.setdefault("prompt", {})["inspirations"] = top + int(
            flat.get("prompt.num_diverse_programs") or 0
        )
    if flat.get("diff_based_evolution") is False:
        # the compact set asks for the whole file rewritten: OpenEvolve's full-rewrite mode
        config.setdefault("prompt", {})["templates"] = "compact"
    return config


def detect(task_dir: Path) -> ForeignTask | None:
    """Recognise an OpenEvolve task and return its cambrian config, else None.

    Args:
        task_dir: The task folder (it has no cambrian config).
    """
    evaluator = task_dir / EVALUATOR
    if not evaluator.is_file():
        return None
    if not re.search(r"^def evaluate(_stage1)?\(", evaluator.read_text(errors="replace"), re.M):
        return None
    program = find_initial(task_dir, "initial_program")
    if program is None:
        return None
    flat = _flatten(_read_yaml(task_dir / CONFIG))
    notes: list[str] = []
    config = _sections(flat)
    llm = _model(flat, notes)
    if llm:
        config.setdefault("llm", {}).update(llm)
    axes, features = _features(flat, task_dir / program, notes)
    if axes:
        config.setdefault("archive", {})["features"] = axes
    config.setdefault("task", {})["editable"] = [program]
    evaluator_cfg = config.setdefault("evaluator", {})
    evaluator_cfg.setdefault("timeout_s", _TIMEOUT_S)
    evaluator_cfg["adapter"] = "openevolve"
    evaluator_cfg.update(_evaluator(flat, task_dir, program, features))
    notes.extend(requirements_note(task_dir))
    return ForeignTask("openevolve", config, _ignored(flat), tuple(notes))
