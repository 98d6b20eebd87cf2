"""Render the Jinja2 prompt templates; a missing variable raises instead of vanishing.

Templates come in sets: a folder holding ``system.j2`` and ``user.j2``. The package
ships ``default`` (for capable models) and ``compact`` (for small local models); a task
may name its own folder instead.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from cambrian.errors import ConfigError

TEMPLATE_DIR = Path(__file__).parent / "templates"
BUILTIN_SETS = ("default", "compact")
_FILES = ("system.j2", "user.j2")


@cache
def _environment(folder: Path) -> jinja2.Environment:
    """One template environment per template folder, built on first use."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(folder),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def template_set(spec: str, base: Path | None = None) -> Path:
    """Resolve ``prompt.templates``: a built-in set name, or a folder (relative to ``base``).

    Raises:
        ConfigError: The folder lacks system.j2 or user.j2.
    """
    if spec in BUILTIN_SETS:
        return TEMPLATE_DIR / spec
    folder = Path(spec).expanduser()
    if not folder.is_absolute() and base is not None:
        folder = base / folder
    missing = [name for name in _FILES if not (folder / name).is_file()]
    if missing:
        raise ConfigError(
            f"prompt.templates {spec!r} is neither {' nor '.join(BUILTIN_SETS)} nor a folder "
            f"holding {' and '.join(_FILES)} (missing {', '.join(missing)} in {folder})"
        )
    return folder.resolve()


def render(template: str, /, templates: Path | None = None, **variables: Any) -> str:
    """Render one template.

    Args:
        template: File name inside the set, e.g. ``"user.j2"``.
        templates: The set's folder (default: the built-in ``default`` set).
        **variables: The template's variables.

    Returns:
        The rendered text.

    Raises:
        ValueError: ``template`` is empty.
        jinja2.TemplateNotFound: No such template.
        jinja2.UndefinedError: The template uses a variable that was not given.
    """
    if not template:
        raise ValueError("template must name a file of the template set, e.g. 'user.j2'")
    folder = templates or TEMPLATE_DIR / "default"
    return _environment(folder).get_template(template).render(**variables)


def render_messages(templates: Path, variables: dict[str, Any]) -> list[dict[str, str]]:
    """The chat messages of one proposal: the set's system and user templates."""
    return [
        {"role": "system", "content": render("system.j2", templates, **variables).strip()},
        {"role": "user", "content": render("user.j2", templates, **variables).strip()},
    ]


def render_repair(templates: Path, variables: dict[str, Any]) -> str:
    """The follow-up message asking to fix an unusable reply (``repair.j2`` of the set).

    A set without ``repair.j2`` uses the built-in default set's.
    """
    return render("repair.j2", _with(templates, "repair.j2"), **variables).strip()


def render_answer_start(templates: Path, variables: dict[str, Any]) -> str:
    """The start of the model's answer for ``llm.prefill`` (``answer.j2`` of the set).

    It ends with a newline, so the model continues on the next line. A set without
    ``answer.j2`` uses the built-in default set's.
    """
    return render("answer.j2", _with(templates, "answer.j2"), **variables).strip() + "\n"


def _with(templates: Path, name: str) -> Path:
    """``templates`` if it holds ``name``, else the built-in default set."""
    return templates if (templates / name).is_file() else TEMPLATE_DIR / "default"


def render_meta(templates: Path, variables: dict[str, Any]) -> list[dict[str, str]]:
    """The chat messages of one meta review: ``meta.j2`` rendered with ``part`` set.

    The template renders the system message when ``part == "system"`` and the user
    message when ``part == "user"``. A set without ``meta.j2`` uses the default set's.
    """
    folder = templates if (templates / "meta.j2").is_file() else TEMPLATE_DIR / "default"
    return [
        {"role": role, "content": render("meta.j2", folder, **variables, part=role).strip()}
        for role in ("system", "user")
    ]
