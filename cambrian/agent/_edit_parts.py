"""What the edit parsers share: the result type, path naming and EVOLVE-BLOCK checks.

Pure functions, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

SEARCH = re.compile(r"^\s*<{5,9}\s*SEARCH\b(.*?)\s*$")
DIVIDER = re.compile(r"^\s*={5,9}\s*$")
REPLACE = re.compile(r"^\s*>{5,9}\s*REPLACE\b.*$")
FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
_LABEL = re.compile(r"^(?:file(?:name)?|path)[\s*`]*:[\s*`]*", re.IGNORECASE)
_PATH = re.compile(r"^[\w.][\w.\-/]*$")
_EXTENSION = re.compile(r"\w\.[A-Za-z]\w*$")
_PATH_JUNK = " \t`*#>:'\"()[]"
START, END = "EVOLVE-BLOCK-START", "EVOLVE-BLOCK-END"

NO_EDIT = "no edit found: answer with SEARCH/REPLACE blocks or one fenced code block"
NO_CHANGE = "edit changes nothing: the new code is the same as the current program"
NO_EFFECT = (
    "edit changes nothing that runs: only comments, docstrings or new functions that "
    "nothing calls differ from the current program"
)

Check = Callable[[str], bool]


@dataclass(frozen=True)
class EditResult:
    """What applying an LLM reply to the parent's files gave.

    Attributes:
        changes: Path -> full new content, only for files that changed or were created.
        error: One-line rejection reason, shown to the model next time ("" when ok).
        kind: How the reply was applied: ``diff`` (SEARCH/REPLACE blocks), ``rewrite``
            (whole files), ``region`` (the EVOLVE-BLOCK's new code, spliced back) or
            ``functions`` (top-level definitions replaced by name); "" if none applied.
    """

    changes: dict[str, str] = field(default_factory=dict)
    error: str = ""
    kind: str = ""

    @property
    def ok(self) -> bool:
        """Whether the reply gave a valid edit that changes something."""
        return not self.error


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
    if START not in old or END not in old:
        return True
    return _skeleton(old) == _skeleton(new)


def _skeleton(text: str) -> list[str]:
    """The lines outside EVOLVE-BLOCK regions, marker lines included, right-stripped."""
    out: list[str] = []
    inside = False
    for raw in text.splitlines():
        line = raw.rstrip()
        if START in line:
            out.append(line)
            inside = True
        elif END in line:
            out.append(line)
            inside = False
        elif not inside:
            out.append(line)
    while out and not out[-1]:
        out.pop()
    return out


def reject(error: str, kind: str = "") -> EditResult:
    """A rejected result."""
    return EditResult({}, error, kind)


def finish(files: Mapping[str, str], state: dict[str, str], kind: str) -> EditResult:
    """Keep the files that changed and check EVOLVE-BLOCK regions and no-ops."""
    changes = {p: c for p, c in state.items() if files.get(p) != c}
    for path in sorted(changes):
        if path in files and not evolve_regions_intact(files[path], changes[path]):
            return reject(f"edit changes text outside EVOLVE-BLOCK-START/END in {path}", kind)
    if not changes:
        return reject(NO_CHANGE, kind)
    return EditResult(changes, "", kind)


def path_in(line: str, known: Mapping[str, str]) -> str | None:
    """The file path a line names (``solve.py``, ``### File: `a/b.py```), else None."""
    name = _LABEL.sub("", line.strip().strip(_PATH_JUNK)).strip(_PATH_JUNK)
    name = name.removeprefix("./")
    if _PATH.match(name) and (name in known or "/" in name or _EXTENSION.search(name)):
        return name
    mentioned = [p for p in known if re.search(rf"(?<![\w./-]){re.escape(p)}(?![\w/-])", line)]
    return mentioned[0] if len(mentioned) == 1 else None


def path_before(
    lines: list[str], index: int, known: Mapping[str, str], skip_fences: bool = True
) -> str | None:
    """The path named on the nearest text line above ``index``."""
    for j in range(index - 1, max(-1, index - 4), -1):
        line = lines[j]
        if not line.strip() or (skip_fences and FENCE.match(line)):
            continue
        if FENCE.match(line) or SEARCH.match(line) or REPLACE.match(line):
            return None
        return path_in(line, known)
    return None


def editable_list(files: Mapping[str, str]) -> str:
    """The editable paths, for error messages."""
    paths = sorted(files)
    return ", ".join(paths[:8]) + (", ..." if len(paths) > 8 else "") if paths else "none"


def resolve_path(
    name: str, state: Mapping[str, str], files: Mapping[str, str], is_editable: Check
) -> tuple[str, str]:
    """Map a named path onto a known or creatable file: (path, error)."""
    if name in state:
        return name, ""
    suffixed = [p for p in state if p.endswith("/" + name)]
    if len(suffixed) == 1:
        return suffixed[0], ""
    if is_editable(name):
        return name, ""
    return "", f"file '{name}' is not editable (editable: {editable_list(files)})"
