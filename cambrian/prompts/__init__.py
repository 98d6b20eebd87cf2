"""Prompt templates (``templates/*.j2``) and the one function that renders them."""

from cambrian.prompts._render import TEMPLATE_DIR, render

__all__ = ["TEMPLATE_DIR", "render"]
