"""Render the Jinja2 prompt templates; a missing variable raises instead of vanishing."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import jinja2

TEMPLATE_DIR = Path(__file__).parent / "templates"


@cache
def _environment() -> jinja2.Environment:
    """The one template environment, built on first use."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def render(template: str, **variables: Any) -> str:
    """Render one template from ``TEMPLATE_DIR``.

    Args:
        template: File name inside ``TEMPLATE_DIR``, e.g. ``"user.j2"``.
        **variables: The template's variables.

    Returns:
        The rendered text.

    Raises:
        ValueError: ``template`` is empty.
        jinja2.TemplateNotFound: No such template.
        jinja2.UndefinedError: The template uses a variable that was not given.
    """
    if not template:
        raise ValueError("template must name a file in cambrian/prompts/templates")
    return _environment().get_template(template).render(**variables)
