"""Prompt templates (Jinja2 files) and the one function that renders them."""

from cambrian.prompts._render import (
    BUILTIN_SETS,
    TEMPLATE_DIR,
    render,
    render_answer_start,
    render_messages,
    render_meta,
    render_repair,
    template_set,
)

__all__ = [
    "BUILTIN_SETS",
    "TEMPLATE_DIR",
    "render",
    "render_answer_start",
    "render_messages",
    "render_meta",
    "render_repair",
    "template_set",
]
