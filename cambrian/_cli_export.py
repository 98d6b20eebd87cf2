"""``cambrian export``: a program's changes as a new branch of the user's repository.

Only git plumbing is used (fetch, diff-tree, a private index file, commit-tree,
update-ref), so the user's working tree, index and current branch are never touched.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from cambrian.errors import ArchiveError, ConfigError
from cambrian.types import Program

_ZERO = "0" * 40
_IDENTITY = {
    "GIT_AUTHOR_NAME": "cambrian",
    "GIT_AUTHOR_EMAIL": "cambrian@localhost",
    "GIT_COMMITTER_NAME": "cambrian",
    "GIT_COMMITTER_EMAIL": "cambrian@localhost",
}


def export_program(
    records: Any, program: Program, repo: Path, branch: str, history: bool
) -> tuple[str, int]:
    """Create ``branch`` in ``repo`` with ``program``'s changes on top of the repo's HEAD.

    The changes are those between the run's base and the program (one commit whose
    message summarises the lineage), or each lineage step as its own commit with
    ``history``. When the run's task folder lies inside ``repo``, paths are put back under
    that subfolder.

    Args:
        records: The opened run (``cambrian.agent.RunRecords``).
        program: The program to export.
        repo: A folder inside the user's git work tree.
        branch: The new branch's name; it must not exist yet.
        history: One commit per lineage step instead of one summary commit.

    Returns:
        ``(head commit of the new branch, number of commits made)``.

    Raises:
        ConfigError: If the repo, the branch name or the program cannot be exported.
        ArchiveError: If a git command fails.
    """
    if not program.commit or program.status == "rejected":
        raise ConfigError(f"program {program.id} is {program.status}: it has no code to export")
    if not repo.is_dir():
        raise ConfigError(f"--repo {repo} is not a folder; pass your git repository")
    top = Path(_git(["rev-parse", "--show-toplevel"], repo.resolve(), what="repo")).resolve()
    head = _git(["rev-parse", "--verify", "HEAD^{commit}"], top, what="repo HEAD")
    ref = f"refs/heads/{branch}"
    _git(["check-ref-format", ref], top, what=f"branch name {branch!r}")
    if (
        subprocess.run(
            ["git", "-C", str(top), "rev-parse", "--verify", "--quiet", ref],
            capture_output=True,
            check=False,
        ).returncode
        == 0
    ):
        raise ConfigError(f"branch {branch} exists in {top}; choose another name or delete it")
    chain = _chain(records.archive, program)
    source = f"refs/cambrian/programs/{program.id}"
    _git(
        [
            "fetch",
            "--no-tags",
            "--no-write-fetch-head",
            "--quiet",
            str(records.lineage.path),
            source,
        ],
        top,
        what="fetch from the lineage",
    )
    prefix = _prefix(Path(records.meta.get("task_dir", "")), top)
    if history:
        steps = [
            (a.commit, b.commit, _step_message(b, records))
            for a, b in zip(chain, chain[1:], strict=False)
        ]
    else:
        steps = [(records.lineage.base(), program.commit, _summary(chain, records))]
    commit = _commit_steps(top, head, steps, prefix)
    _git(
        ["update-ref", "-m", f"cambrian export {program.id}", ref, commit, _ZERO],
        top,
        what="update-ref",
    )
    return commit, len(steps)


def _commit_steps(top: Path, head: str, steps: list[tuple[str, str, str]], prefix: str) -> str:
    """Apply each (old, new, message) lineage step on top of ``head`` in a private index."""
    parent = head
    with tempfile.TemporaryDirectory(prefix="cambrian-export-") as scratch:
        env = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
        if (
            subprocess.run(
                ["git", "-C", str(top), "config", "user.email"], capture_output=True, check=False
            ).returncode
            != 0
        ):
            env.update(_IDENTITY)
        _git(["read-tree", head], top, env=env)
        for old, new, message in steps:
            changes = _git(["diff-tree", "-r", "-z", "--no-renames", old, new], top)
            _git(["update-index", "--index-info"], top, env=env, stdin=_index_info(changes, prefix))
            tree = _git(["write-tree"], top, env=env)
            parent = _git(
                ["commit-tree", tree, "-p", parent, "-F", "-"], top, env=env, stdin=message
            )
    return parent


def _index_info(raw: str, prefix: str) -> str:
    """Turn ``git diff-tree -r -z`` output into ``update-index --index-info`` lines."""
    fields = raw.split("\0")
    lines = []
    for meta, path in zip(fields[0::2], fields[1::2], strict=False):
        if not meta.startswith(":"):
            continue
        _old_mode, new_mode, _old_sha, new_sha, status = meta[1:].split(" ")
        if status == "D":
            lines.append(f"0 {_ZERO}\t{prefix}{path}")
        else:
            lines.append(f"{new_mode} {new_sha}\t{prefix}{path}")
    return "".join(line + "\n" for line in lines)


def _chain(archive: Any, program: Program) -> list[Program]:
    """The program's ancestry from the initial program down to itself."""
    chain = [program]
    while chain[-1].parent_id is not None:
        chain.append(archive.get(chain[-1].parent_id))
    return chain[::-1]


def _prefix(task_dir: Path, top: Path) -> str:
    """The task folder's path inside the repository ("" at its root or outside it)."""
    try:
        relative = task_dir.resolve().relative_to(top).as_posix()
    except ValueError:
        return ""
    return "" if relative in ("", ".") else relative + "/"


def _score(records: Any, program: Program) -> str:
    """The program's score as text ('-' when it has none)."""
    evaluation = records.archive.evaluation(program.id)
    return "-" if evaluation is None or evaluation.score is None else f"{evaluation.score:.6g}"


def _summary(chain: list[Program], records: Any) -> str:
    """Message of the one-commit export: the program, then its lineage step by step."""
    program = chain[-1]
    lines = [
        f"cambrian: program {program.id} (score {_score(records, program)})",
        "",
        f"Evolved by cambrian, run {records.meta.get('run_id')}, in {len(chain) - 1} step(s):",
    ]
    for step in chain:
        lines.append(
            f"  {step.id}  generation {step.generation}  score {_score(records, step)}  "
            f"model {step.model or '-'}"
        )
    return "\n".join(lines) + "\n"


def _step_message(program: Program, records: Any) -> str:
    """Message of one lineage step of a ``--history`` export."""
    return (
        f"cambrian: program {program.id} (score {_score(records, program)})\n\n"
        f"parent {program.parent_id}\ngeneration {program.generation}\n"
        f"model {program.model or '-'}\nfiles {', '.join(program.files_changed) or '-'}\n"
    )


def _git(
    args: list[str],
    cwd: Path,
    *,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
    what: str = "",
) -> str:
    """Run one git command in ``cwd``; return its stripped stdout or raise a one-line error."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    full_env.update(env or {})
    done = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env=full_env,
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        detail = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"
        if what:
            raise ConfigError(f"{what}: {detail} ({cwd})")
        raise ArchiveError(f"git {args[0]} failed: {detail}")
    return done.stdout.strip() if not args[0] == "diff-tree" else done.stdout
