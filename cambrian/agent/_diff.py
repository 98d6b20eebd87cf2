"""SEARCH/REPLACE blocks: parse them and apply each in order, tolerant of whitespace.

Pure functions, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from cambrian.agent._edit_parts import (
    DIVIDER,
    REPLACE,
    SEARCH,
    Check,
    EditResult,
    finish,
    path_before,
    path_in,
    reject,
    resolve_path,
)

UNNAMED_DIFF = "several files are editable: name the file before <<<<<<< SEARCH"


@dataclass(frozen=True)
class _Block:
    """One parsed SEARCH/REPLACE block."""

    name: str | None
    search: str
    replace: str


def _parse_blocks(lines: list[str], known: Mapping[str, str]) -> tuple[list[_Block], str]:
    """All SEARCH/REPLACE blocks in order, or a ``malformed`` error."""
    blocks: list[_Block] = []
    i = 0
    while i < len(lines):
        match = SEARCH.match(lines[i])
        if match is None:
            if REPLACE.match(lines[i]):
                return [], "malformed SEARCH/REPLACE block: >>>>>>> REPLACE without SEARCH"
            i += 1
            continue
        divider, end = _block_end(lines, i)
        where = f"malformed SEARCH/REPLACE block {len(blocks) + 1}"
        if divider is None:
            return [], f"{where}: missing ======= after <<<<<<< SEARCH"
        if end is None:
            return [], f"{where}: missing >>>>>>> REPLACE after ======="
        name = path_in(match.group(1), known) if match.group(1).strip() else None
        name = name or path_before(lines, i, known)
        search, replace = "".join(lines[i + 1 : divider]), "".join(lines[divider + 1 : end])
        blocks.append(_Block(name, search, replace))
        i = end + 1
    return blocks, ""


def _block_end(lines: list[str], start: int) -> tuple[int | None, int | None]:
    """Indexes of the ======= and >>>>>>> REPLACE lines of the block opened at ``start``."""
    divider = None
    for j in range(start + 1, len(lines)):
        if SEARCH.match(lines[j]):
            break
        if REPLACE.match(lines[j]):
            return divider, j
        if divider is None and DIVIDER.match(lines[j]):
            divider = j
    return divider, None


def apply_diff(lines: list[str], files: Mapping[str, str], is_editable: Check) -> EditResult:
    """Apply every SEARCH/REPLACE block in order; each sees the previous one's result."""
    blocks, error = _parse_blocks(lines, files)
    if error:
        return reject(error, "diff")
    state = dict(files)
    previous = None
    for block in blocks:
        name = block.name or previous or (next(iter(files)) if len(files) == 1 else None)
        if name is None:
            return reject(UNNAMED_DIFF, "diff")
        path, error = resolve_path(name, state, files, is_editable)
        content, error = _apply_block(state.get(path), block, path) if not error else ("", error)
        if error:
            return reject(error, "diff")
        state[path] = content
        previous = path
    return finish(files, state, "diff")


def _apply_block(content: str | None, block: _Block, path: str) -> tuple[str, str]:
    """Apply one block to ``content`` (None: the file does not exist yet)."""
    if content is None:
        if block.search.strip():
            return "", f"file '{path}' does not exist: use an empty SEARCH to create it"
        return block.replace, ""
    if not block.search.strip():
        return "", f"empty SEARCH for existing file {path}: copy the lines to replace"
    new = _replace_first(content, block.search, block.replace)
    if new is None:
        first = next(line for line in block.search.splitlines() if line.strip()).strip()
        return "", f"SEARCH text not found in {path}: '{first[:80]}'"
    return new, ""


def _replace_first(content: str, search: str, replace: str) -> str | None:
    """Replace the first match of ``search``: exact, then line-wise whitespace-tolerant."""
    if content.startswith(search):
        at = 0
    else:  # prefer a match that starts a line: "x = 1" should not hit "max = 1"
        at = content.find("\n" + search)
        at = at + 1 if at >= 0 else content.find(search)
    if at >= 0:
        return content[:at] + replace + content[at + len(search) :]
    lines = content.splitlines(keepends=True)
    wanted, repl = _trim_blank_ends(search.splitlines(), replace.splitlines(keepends=True))
    for norm in (str.rstrip, str.strip):
        start = _find_window(lines, wanted, norm)
        if start is None:
            continue
        if norm is str.strip:
            repl = _reindent(repl, _indent(wanted[0]), _indent(lines[start]))
        return _splice(lines, start, len(wanted), repl)
    return None


def _trim_blank_ends(wanted: list[str], repl: list[str]) -> tuple[list[str], list[str]]:
    """Drop blank lines around the SEARCH lines, and as many around the replacement."""
    lead = next(i for i, line in enumerate(wanted) if line.strip())
    trail = next(i for i, line in enumerate(reversed(wanted)) if line.strip())
    wanted = wanted[lead : len(wanted) - trail]
    while lead and repl and not repl[0].strip():
        repl, lead = repl[1:], lead - 1
    while trail and repl and not repl[-1].strip():
        repl, trail = repl[:-1], trail - 1
    return wanted, repl


def _find_window(lines: list[str], wanted: list[str], norm: Callable[[str], str]) -> int | None:
    """Index of the first run of ``lines`` equal to ``wanted`` under ``norm``."""
    target = [norm(line) for line in wanted]
    have = [norm(line) for line in lines]
    for start in range(len(have) - len(target) + 1):
        if have[start : start + len(target)] == target:
            return start
    return None


def _indent(line: str) -> str:
    """The leading whitespace of ``line``."""
    return line[: len(line) - len(line.lstrip())]


def _reindent(lines: list[str], old: str, new: str) -> list[str]:
    """Shift ``lines`` from indentation ``old`` to ``new``."""
    out = []
    for line in lines:
        if not line.strip():
            out.append(line)
        elif line.startswith(old):
            out.append(new + line[len(old) :])
        else:
            width = max(0, len(_indent(line)) + len(new) - len(old))
            out.append(" " * width + line.lstrip())
    return out


def _splice(lines: list[str], start: int, count: int, repl: list[str]) -> str:
    """``lines`` with ``count`` lines at ``start`` replaced, keeping line endings sane."""
    tail = "".join(lines[start + count :])
    had_newline = lines[start + count - 1].endswith("\n")
    body = "".join(repl)
    if body and not body.endswith("\n") and (tail or had_newline):
        body += "\n"
    elif body.endswith("\n") and not had_newline and not tail:
        body = body[:-1]
    return "".join(lines[:start]) + body + tail
