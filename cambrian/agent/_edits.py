"""Turn an LLM reply into new file contents: SEARCH/REPLACE blocks or fenced code.

Pure functions, no I/O, linear in the reply's length (a hostile reply cannot stall the
loop). A bad reply is data: ``apply_reply`` returns an ``EditResult`` whose one-line
``error`` is shown to the model on its next attempt.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from cambrian.agent._diff import apply_diff
from cambrian.agent._edit_parts import REPLACE, SEARCH, EditResult, evolve_regions_intact, reject
from cambrian.agent._rewrite import apply_rewrite

__all__ = ["MAX_REPLY_CHARS", "EditResult", "apply_reply", "evolve_regions_intact"]

#: Replies longer than this are rejected unread (no program needs more in one edit).
MAX_REPLY_CHARS = 200_000
_TAG = re.compile(r"<(/?)(think|thinking|reasoning)>", re.IGNORECASE)


def apply_reply(
    reply: str, files: Mapping[str, str], is_editable: Callable[[str], bool]
) -> EditResult:
    """Parse ``reply`` and apply its edits to ``files``.

    The reply holds either SEARCH/REPLACE blocks (each preceded by the file path, which
    may be omitted when only one file is editable) or fenced code blocks: whole files,
    the new code of a file's EVOLVE-BLOCK, or changed top-level definitions. Files with
    EVOLVE-BLOCK-START/END markers may change only inside the marked regions.

    Args:
        reply: The model's text (thinking sections such as ``<think>`` are ignored).
        files: The parent's editable files, path -> content.
        is_editable: Whether a path absent from ``files`` may be created.

    Returns:
        The changed files, or a one-line ``error`` saying why the reply was rejected.
    """
    if len(reply) > MAX_REPLY_CHARS:
        return reject(f"reply too long ({len(reply)} characters, at most {MAX_REPLY_CHARS})")
    text = strip_thinking(reply.replace("\r\n", "\n"))
    lines = text.splitlines(keepends=True)
    if any(SEARCH.match(line) or REPLACE.match(line) for line in lines):
        return apply_diff(lines, files, is_editable)
    return apply_rewrite(lines, files, is_editable)


def strip_thinking(text: str) -> str:
    """Drop reasoning sections in one pass.

    A closed section is dropped; an unclosed one runs to the end of the reply; a closing
    tag with no opening one (the opening was part of the chat template) drops all before it.
    """
    kept: list[str] = []
    pos, open_tag = 0, None
    for match in _TAG.finditer(text):
        closing, name = match.group(1) == "/", match.group(2).lower()
        if not closing and open_tag is None:
            kept.append(text[pos : match.start()])
            open_tag = name
        elif closing and open_tag == name:
            open_tag, pos = None, match.end()
        elif closing and open_tag is None:
            kept, pos = [], match.end()
    if open_tag is None:
        kept.append(text[pos:])
    return "".join(kept)
