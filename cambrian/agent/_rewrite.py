"""Fenced code blocks: whole files, an EVOLVE-BLOCK's new code, or changed definitions.

Pure functions, no I/O. A block that keeps a file's lines outside its EVOLVE-BLOCK is a
whole-file rewrite. Otherwise, for a file with one EVOLVE-BLOCK, the block's code is
the region's new content: its definitions replace the region's namesakes (so an answer
with one changed function keeps the rest), and anything it repeats of the file outside
the markers is dropped. A Python file without markers takes a partial answer (some of
its functions) by name too.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping

from cambrian.agent._edit_parts import (
    FENCE,
    NO_EDIT,
    START,
    Check,
    EditResult,
    evolve_regions_intact,
    finish,
    path_before,
    reject,
    resolve_path,
)
from cambrian.agent._regions import (
    block_span,
    defined_names,
    inner_code,
    into_only_function,
    loose_statements,
    merge_definitions,
    region_text,
    splice,
    syntax_error,
)
from cambrian.agent._statements import into_statements

UNNAMED = "several files are editable: name the file on the line before each code block"
_Fenced = list[tuple[str | None, str]]


def fenced_blocks(lines: list[str], known: Mapping[str, str]) -> tuple[_Fenced, str]:
    """Fenced code blocks as (path named on the line above or None, content)."""
    blocks: _Fenced = []
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        fence = match.group(1)
        end = next((j for j in range(i + 1, len(lines)) if _closes(lines[j], fence)), None)
        if end is None:
            return [], "unclosed code fence: the reply looks truncated"
        name = path_before(lines, i, known, skip_fences=False)
        blocks.append((name, "".join(lines[i + 1 : end])))
        i = end + 1
    return blocks, ""


def _closes(line: str, fence: str) -> bool:
    """Whether ``line`` closes a block opened with ``fence``."""
    text = line.strip()
    return len(text) >= len(fence) and text == fence[0] * len(text)


def apply_rewrite(lines: list[str], files: Mapping[str, str], is_editable: Check) -> EditResult:
    """Apply fenced blocks: named ones to their files, or the first one to the only file."""
    blocks, error = fenced_blocks(lines, files)
    if error:
        return reject(error, "rewrite")
    if not blocks:
        return reject(NO_EDIT)
    named = [(name, text) for name, text in blocks if name is not None]
    if not named:
        if len(files) != 1:
            return reject(UNNAMED, "rewrite")
        named = [(next(iter(files)), blocks[0][1])]  # several: the first is the new file
    if any(text.startswith(("--- ", "@@ ", "diff --git")) for _, text in named):
        return reject("unified diffs are not supported: use SEARCH/REPLACE blocks", "rewrite")
    state, kinds = dict(files), set()
    for name, text in named:
        path, error = resolve_path(name, state, files, is_editable)
        if not error and not text.strip():
            error = f"code block for {path} is empty"
        content, kind = "", ""
        if not error:
            content, kind, error = place_code(files.get(path), text, path)
        if error:
            return reject(error, kind or "rewrite")
        state[path] = content
        kinds.add(kind)
    return finish(files, state, kinds.pop() if len(kinds) == 1 else "rewrite")


def place_code(old: str | None, code: str, path: str) -> tuple[str, str, str]:
    """Where a code block goes in the file it names: ``(new content, kind, error)``."""
    whole = same_final_newline(old, code)
    if old is None or (START in old and evolve_regions_intact(old, whole)):
        return whole, "rewrite", ""
    if block_span(old) is not None:
        return _place_region(old, inner_code(code), path)
    if START in old or not path.endswith(".py"):
        return whole, "rewrite", ""  # several blocks: finish() checks what changed
    old_names, new_names = defined_names(old), defined_names(code)
    if old_names and new_names and new_names < old_names:
        merged = merge_definitions(old, code)
        if merged is not None:
            return same_final_newline(old, merged), "functions", ""
    return whole, "rewrite", ""


def _place_region(old: str, code: str, path: str) -> tuple[str, str, str]:
    """Splice ``code`` into the file's EVOLVE-BLOCK, merging definitions by name."""
    if not code.strip():
        return "", "region", f"code block for {path} is empty"
    current = region_text(old)
    if not path.endswith(".py"):
        return splice(old, code), "region", ""
    indent = _indent(current) if syntax_error(current) else ""
    placed = None if indent else into_statements(current, code)
    if indent:  # a block inside a function: its new body, at the block's indentation
        content, kind = splice(old, textwrap.indent(textwrap.dedent(code), indent)), "region"
    elif placed is not None:  # changed statements of a function, given without its def
        content, kind = splice(old, placed), "lines"
    else:
        problem = syntax_error(code) or loose_statements(code, current)
        wrapped = into_only_function(current, code) if problem.startswith("has ") else None
        if wrapped is not None:  # the body of the block's one function, given bare
            code, problem = wrapped, ""
        if problem:
            return "", "region", f"the code for {path} {problem}"
        merged = merge_definitions(current, code)
        if merged is None and defined_names(current) and not defined_names(code):
            return "", "region", f"the code for {path} defines nothing (only comments?)"
        covers = (defined_names(code) or set()) >= (defined_names(current) or set())
        content = splice(old, merged if merged is not None else code)
        kind = "region" if covers or merged is None else "functions"
    problem = syntax_error(content) if syntax_error(old) == "" else ""
    if problem:
        return "", kind, f"{path} {problem} once the code is put in its EVOLVE-BLOCK"
    return content, kind, ""


def _indent(region: str) -> str:
    """The indentation of the region's first code line ("" at module level)."""
    for line in region.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            return line[: len(line) - len(line.lstrip())]
    return ""


def same_final_newline(old: str | None, new: str) -> str:
    """``new`` ending with a newline exactly when ``old`` does (always, for new files)."""
    if old is not None and not old.endswith("\n"):
        return new.removesuffix("\n")
    return new if new.endswith("\n") else new + "\n"
