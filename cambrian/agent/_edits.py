"""Turn an LLM reply into new file contents: SEARCH/REPLACE blocks or full rewrites.

Pure functions, no I/O. A bad reply is data: ``apply_reply`` returns an ``EditResult``
whose one-line ``error`` is shown to the model on its next attempt.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

__all__ = ["EditResult", "apply_reply", "evolve_regions_intact"]

_SEARCH = re.compile(r"^\s*<{5,9}\s*SEARCH\b(.*?)\s*$")
_DIVIDER = re.compile(r"^\s*={5,9}\s*$")
_REPLACE = re.compile(r"^\s*>{5,9}\s*REPLACE\b.*$")
_FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
_LABEL = re.compile(r"^(?:file(?:name)?|path)[\s*`]*:[\s*`]*", re.IGNORECASE)
_PATH = re.compile(r"^[\w.][\w.\-/]*$")
_EXTENSION = re.compile(r"\w\.[A-Za-z]\w*$")
_THINK = re.compile(r"<(think|thinking|reasoning)>.*?</\1>", re.DOTALL | re.IGNORECASE)
_PATH_JUNK = " \t`*#>:'\"()[]"
_START, _END = "EVOLVE-BLOCK-START", "EVOLVE-BLOCK-END"

NO_EDIT = "no edit found: answer with SEARCH/REPLACE blocks or one fenced code block"
NO_CHANGE = "edit changes nothing"
_UNNAMED_DIFF = "several files are editable: name the file before <<<<<<< SEARCH"
_UNNAMED = "several files are editable: name the file on the line before each code block"

_Check = Callable[[str], bool]
_Fenced = list[tuple[str | None, str]]


@dataclass(frozen=True)
class EditResult:
    """What applying an LLM reply to the parent's files gave.

    Attributes:
        changes: Path -> full new content, only for files that changed or were created.
        error: One-line rejection reason, shown to the model next time ("" when ok).
        kind: ``"diff"`` (SEARCH/REPLACE) or ``"rewrite"`` (whole files), "" if neither.
    """

    changes: dict[str, str] = field(default_factory=dict)
    error: str = ""
    kind: str = ""

    @property
    def ok(self) -> bool:
        """Whether the reply gave a valid edit that changes something."""
        return not self.error


@dataclass(frozen=True)
class _Block:
    """One parsed SEARCH/REPLACE block."""

    name: str | None
    search: str
    replace: str


def apply_reply(
    reply: str, files: Mapping[str, str], is_editable: Callable[[str], bool]
) -> EditResult:
    """Parse ``reply`` and apply its edits to ``files``.

    The reply holds either SEARCH/REPLACE blocks (each preceded by the file path, which
    may be omitted when only one file is editable) or whole files in fenced code blocks.
    Files with EVOLVE-BLOCK-START/END markers may change only inside the marked regions.

    Args:
        reply: The model's text (thinking sections such as ``<think>`` are ignored).
        files: The parent's editable files, path -> content.
        is_editable: Whether a path absent from ``files`` may be created.

    Returns:
        The changed files, or a one-line ``error`` saying why the reply was rejected.
    """
    text = _strip_thinking(reply.replace("\r\n", "\n"))
    lines = text.splitlines(keepends=True)
    if any(_SEARCH.match(line) or _REPLACE.match(line) for line in lines):
        return _apply_diff(lines, files, is_editable)
    return _apply_rewrite(lines, files, is_editable)


def evolve_regions_intact(old: str, new: str) -> bool:
    """Whether ``new`` keeps everything of ``old`` outside its EVOLVE-BLOCK regions.

    Lines are compared without trailing whitespace; marker lines must survive unchanged
    and in the same number. A file without both markers has no constraint.

    Args:
        old: The original file content.
        new: The edited file content.

    Returns:
        True when only text between EVOLVE-BLOCK-START and EVOLVE-BLOCK-END changed.
    """
    if _START not in old or _END not in old:
        return True
    return _skeleton(old) == _skeleton(new)


def _skeleton(text: str) -> list[str]:
    """The lines outside EVOLVE-BLOCK regions, marker lines included, right-stripped."""
    out: list[str] = []
    inside = False
    for raw in text.splitlines():
        line = raw.rstrip()
        if _START in line:
            out.append(line)
            inside = True
        elif _END in line:
            out.append(line)
            inside = False
        elif not inside:
            out.append(line)
    while out and not out[-1]:
        out.pop()
    return out


def _strip_thinking(text: str) -> str:
    """Drop reasoning sections; an unclosed one runs to the end of the reply."""
    text = _THINK.sub("", text)
    closing = re.search(r"</(?:think|thinking|reasoning)>", text, re.IGNORECASE)
    if closing:  # the opening tag was part of the chat template
        text = text[closing.end() :]
    opening = re.search(r"<(?:think|thinking|reasoning)>", text, re.IGNORECASE)
    return text[: opening.start()] if opening else text


def _reject(error: str, kind: str = "") -> EditResult:
    """A rejected result."""
    return EditResult({}, error, kind)


def _finish(files: Mapping[str, str], state: dict[str, str], kind: str) -> EditResult:
    """Keep the files that changed and check EVOLVE-BLOCK regions and no-ops."""
    changes = {p: c for p, c in state.items() if files.get(p) != c}
    for path in sorted(changes):
        if path in files and not evolve_regions_intact(files[path], changes[path]):
            return _reject(f"edit changes text outside EVOLVE-BLOCK-START/END in {path}", kind)
    if not changes:
        return _reject(NO_CHANGE, kind)
    return EditResult(changes, "", kind)


def _path_in(line: str, known: Mapping[str, str]) -> str | None:
    """The file path a line names (``solve.py``, ``### File: `a/b.py```), else None."""
    name = _LABEL.sub("", line.strip().strip(_PATH_JUNK)).strip(_PATH_JUNK)
    name = name.removeprefix("./")
    if _PATH.match(name) and (name in known or "/" in name or _EXTENSION.search(name)):
        return name
    mentioned = [p for p in known if re.search(rf"(?<![\w./-]){re.escape(p)}(?![\w/-])", line)]
    return mentioned[0] if len(mentioned) == 1 else None


def _path_before(
    lines: list[str], index: int, known: Mapping[str, str], skip_fences: bool = True
) -> str | None:
    """The path named on the nearest text line above ``index``."""
    for j in range(index - 1, max(-1, index - 4), -1):
        line = lines[j]
        if not line.strip() or (skip_fences and _FENCE.match(line)):
            continue
        if _FENCE.match(line) or _SEARCH.match(line) or _REPLACE.match(line):
            return None
        return _path_in(line, known)
    return None


def _editable_list(files: Mapping[str, str]) -> str:
    """The editable paths, for error messages."""
    paths = sorted(files)
    return ", ".join(paths[:8]) + (", ..." if len(paths) > 8 else "") if paths else "none"


def _resolve(
    name: str, state: Mapping[str, str], files: Mapping[str, str], is_editable: _Check
) -> tuple[str, str]:
    """Map a named path onto a known or creatable file: (path, error)."""
    if name in state:
        return name, ""
    suffixed = [p for p in state if p.endswith("/" + name)]
    if len(suffixed) == 1:
        return suffixed[0], ""
    if is_editable(name):
        return name, ""
    return "", f"file '{name}' is not editable (editable: {_editable_list(files)})"


def _parse_blocks(lines: list[str], known: Mapping[str, str]) -> tuple[list[_Block], str]:
    """All SEARCH/REPLACE blocks in order, or a ``malformed`` error."""
    blocks: list[_Block] = []
    i = 0
    while i < len(lines):
        match = _SEARCH.match(lines[i])
        if match is None:
            if _REPLACE.match(lines[i]):
                return [], "malformed SEARCH/REPLACE block: >>>>>>> REPLACE without SEARCH"
            i += 1
            continue
        divider, end = _block_end(lines, i)
        where = f"malformed SEARCH/REPLACE block {len(blocks) + 1}"
        if divider is None:
            return [], f"{where}: missing ======= after <<<<<<< SEARCH"
        if end is None:
            return [], f"{where}: missing >>>>>>> REPLACE after ======="
        name = _path_in(match.group(1), known) if match.group(1).strip() else None
        name = name or _path_before(lines, i, known)
        search, replace = "".join(lines[i + 1 : divider]), "".join(lines[divider + 1 : end])
        blocks.append(_Block(name, search, replace))
        i = end + 1
    return blocks, ""


def _block_end(lines: list[str], start: int) -> tuple[int | None, int | None]:
    """Indexes of the ======= and >>>>>>> REPLACE lines of the block opened at ``start``."""
    divider = None
    for j in range(start + 1, len(lines)):
        if _SEARCH.match(lines[j]):
            break
        if _REPLACE.match(lines[j]):
            return divider, j
        if divider is None and _DIVIDER.match(lines[j]):
            divider = j
    return divider, None


def _apply_diff(lines: list[str], files: Mapping[str, str], is_editable: _Check) -> EditResult:
    """Apply every SEARCH/REPLACE block in order; each sees the previous one's result."""
    blocks, error = _parse_blocks(lines, files)
    if error:
        return _reject(error, "diff")
    state = dict(files)
    previous = None
    for block in blocks:
        name = block.name or previous or (next(iter(files)) if len(files) == 1 else None)
        if name is None:
            return _reject(_UNNAMED_DIFF, "diff")
        path, error = _resolve(name, state, files, is_editable)
        content, error = _apply_block(state.get(path), block, path) if not error else ("", error)
        if error:
            return _reject(error, "diff")
        state[path] = content
        previous = path
    return _finish(files, state, "diff")


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


def _fenced_blocks(lines: list[str], known: Mapping[str, str]) -> tuple[_Fenced, str]:
    """Fenced code blocks as (path named on the line above or None, content)."""
    blocks: _Fenced = []
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        fence = match.group(1)
        end = next((j for j in range(i + 1, len(lines)) if _closes(lines[j], fence)), None)
        if end is None:
            return [], "unclosed code fence: the reply looks truncated"
        blocks.append(
            (_path_before(lines, i, known, skip_fences=False), "".join(lines[i + 1 : end]))
        )
        i = end + 1
    return blocks, ""


def _closes(line: str, fence: str) -> bool:
    """Whether ``line`` closes a block opened with ``fence``."""
    text = line.strip()
    return len(text) >= len(fence) and text == fence[0] * len(text)


def _apply_rewrite(lines: list[str], files: Mapping[str, str], is_editable: _Check) -> EditResult:
    """Replace whole files with fenced blocks: named ones, or the first block for the only file."""
    blocks, error = _fenced_blocks(lines, files)
    if error:
        return _reject(error, "rewrite")
    if not blocks:
        return _reject(NO_EDIT)
    named = [(name, text) for name, text in blocks if name is not None]
    if not named:
        if len(files) != 1:
            return _reject(_UNNAMED, "rewrite")
        named = [(next(iter(files)), blocks[0][1])]  # several: the first is the new file
    if any(text.startswith(("--- ", "@@ ", "diff --git")) for _, text in named):
        return _reject("unified diffs are not supported: use SEARCH/REPLACE blocks", "rewrite")
    state = dict(files)
    for name, text in named:
        path, error = _resolve(name, state, files, is_editable)
        if not error and not text.strip():
            error = f"code block for {path} is empty"
        if error:
            return _reject(error, "rewrite")
        state[path] = _same_final_newline(files.get(path), text)
    return _finish(files, state, "rewrite")


def _same_final_newline(old: str | None, new: str) -> str:
    """``new`` ending with a newline exactly when ``old`` does (always, for new files)."""
    if old is not None and not old.endswith("\n"):
        return new.removesuffix("\n")
    return new if new.endswith("\n") else new + "\n"
