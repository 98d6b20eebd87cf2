"""The two tiers: the evaluator runs in the sandbox, candidate code in a tier inside it.

Every backend runs the evaluator command (the outer tier) with ``$CAMBRIAN_RUN`` set to
the inner-tier launcher (``runner/cambrian_run.py``) and ``$CAMBRIAN_RUN_CONFIG`` to
what that launcher must do: the uid to drop to, the paths to mask, keep, protect and
hide. ``runner/cambrian_candidate.py`` (on the evaluator's ``PYTHONPATH``) wraps it for
Python evaluators. This module builds those variables and the outer tier's shell line.
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import os
import shlex
from collections.abc import Sequence
from pathlib import Path

from cambrian.config import SandboxConfig
from cambrian.sandbox._limits import with_rlimits
from cambrian.types import Limits

RUNNER_DIR = Path(__file__).with_name("runner")
LAUNCHER = "cambrian_run.py"
RUN_VAR = "CAMBRIAN_RUN"
CONFIG_VAR = "CAMBRIAN_RUN_CONFIG"
STDOUT_VAR = "CAMBRIAN_STDOUT"
#: Where bubblewrap and Docker show ``RUNNER_DIR`` to the evaluator (read-only).
MOUNT_PATH = "/run/cambrian"
#: The inner tier's uid and gid wherever cambrian can switch uids (it runs as root).
CANDIDATE_UID = 65534
#: What the evaluator tier keeps as root inside bubblewrap or a container: switching
#: to the candidate uid (SETUID, SETGID), dropping the candidate's bounding set (SETPCAP),
#: and reading and writing the work dir the candidate owns (DAC_OVERRIDE).
OUTER_CAPS = ("CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP", "CAP_DAC_OVERRIDE")
# Fresh, writable tmpfs mounts for the candidate: nothing of the evaluator's is there.
_PRIVATE_DIRS = ("/tmp", "/dev/shm", "/var/tmp")
# Empty, read-only tmpfs mounts: home directories, daemon sockets.
_HIDDEN_DIRS = ("/root", "/home", "/run")
_RESOLVER_DIR = "/run/systemd/resolve"
# A work dir below one of these hides its second path component, not the first.
_SYSTEM_DIRS = {
    "bin", "boot", "dev", "etc", "lib", "lib32", "lib64", "libx32", "nix", "opt",
    "proc", "sbin", "snap", "sys", "usr", "var",
}  # fmt: skip
_PR_SET_DUMPABLE = 4


@dataclasses.dataclass(frozen=True)
class Tree:
    """One run's paths, absolute, as the evaluator tier sees them.

    Attributes:
        root: The work dir.
        protected: Files the candidate must not modify.
        private: Files and folders only the evaluator may read.
        results: The result folder (outside ``root``), or None.
        around: Other places whose surroundings must stay covered (a slot copy's
            original work dir: the run folder around it).
        hidden: More evaluator-only folders candidate code must not see (the
            evaluator's bytecode cache).
    """

    root: str
    protected: tuple[str, ...] = ()
    private: tuple[str, ...] = ()
    results: str | None = None
    around: tuple[str, ...] = ()
    hidden: tuple[str, ...] = ()

    def moved(self, old: str, new: str) -> Tree:
        """The same tree with the prefix ``old`` replaced by ``new`` (a copied work dir)."""

        def move(path: str) -> str:
            return new + path[len(old) :] if path == old or path.startswith(old + "/") else path

        return Tree(
            move(self.root),
            tuple(map(move, self.protected)),
            tuple(map(move, self.private)),
            self.results,
            (*self.around, old),
            self.hidden,
        )


def top_dir(path: str) -> str:
    """The folder to mask so that nothing around ``path`` shows (``/work`` for /work/a/b)."""
    parts = Path(path).parts[1:]
    depth = 2 if parts and parts[0] in _SYSTEM_DIRS else 1
    return "/" + "/".join(parts[:depth]) if len(parts) > depth else ""


def inner_config(
    tree: Tree,
    limits: Limits,
    *,
    uid: int | None,
    keep_ro: Sequence[str] = (),
    tmp_mb: int = 256,
    token: str | None = None,
    umask: int | None = None,
    unisolated: bool = False,
) -> str:
    """The launcher's config for one run (one ``key value`` per line).

    Args:
        tree: The run's paths as the evaluator sees them.
        limits: The run's limits (``pids`` becomes the candidate's RLIMIT_NPROC,
            ``network`` whether it keeps the network).
        uid: The candidate's uid (gid the same), or None to keep the evaluator's.
        keep_ro: Folders under a mask the candidate still needs (the interpreter).
        tmp_mb: Size of each private tmpfs.
        token: The run's marker, passed on only where nothing better finds strays.
        umask: The candidate's umask, when it must differ from the evaluator's.
        unisolated: Run the candidate even where it would share the evaluator's uid
            and namespaces (``sandbox.allow_unisolated``); else the launcher refuses.

    Raises:
        ValueError: A path holds a newline (the config is line-based).
    """
    masks = [(d, d in _PRIVATE_DIRS) for d in mask_dirs(tree)]
    keep = [(tree.root, True)] + [(p, False) for p in keep_ro]
    if limits.network and os.path.isdir(_RESOLVER_DIR):
        keep.append((_RESOLVER_DIR, False))
    lines = [f"workdir {tree.root}", f"tmp_mb {tmp_mb}", f"network {int(limits.network)}"]
    if uid is not None:
        lines += [f"uid {uid}", f"gid {uid}"]
    if limits.pids is not None and uid is not None:
        lines.append(f"pids {limits.pids}")
    if umask is not None:
        lines.append(f"umask {umask}")
    if token:
        lines.append(f"token {token}")
    if unisolated:
        lines.append("unisolated 1")
    lines += [f"mask {int(w)} {p}" for p, w in masks] + [f"keep {int(w)} {p}" for p, w in keep]
    lines += [f"readonly {p}" for p in tree.protected]
    evaluator_only = (*tree.private, *([tree.results] if tree.results else []), *tree.hidden)
    lines += [f"hide {p}" for p in evaluator_only]
    if any("\n" in line for line in lines):
        raise ValueError("sandbox paths must not contain a newline")
    return "\n".join(lines)


def runner_env(python: str, runner_dir: str, config: str) -> dict[str, str]:
    """The evaluator tier's variables naming the launcher, its config and the helper."""
    # Quoted for shlex.split; the shell form ($CAMBRIAN_RUN unquoted) needs paths without
    # spaces, which every sandbox path here has (a host interpreter may not).
    launcher = shlex.join([python, "-I", "-S", "-B", f"{runner_dir}/{LAUNCHER}"])
    return {RUN_VAR: launcher, CONFIG_VAR: config, "PYTHONPATH": runner_dir}


def outer_line(command: str, limits: Limits) -> str:
    """The evaluator's shell line: rlimits, then the name of its stdout, then ``command``.

    The launcher sends candidate stdout to stderr when it would otherwise land straight
    in the stream cambrian reads the result from, which ``$CAMBRIAN_STDOUT`` names.
    """
    probe = (
        f'[ -n "${STDOUT_VAR}" ] || {STDOUT_VAR}=$(readlink /proc/$$/fd/1 2>/dev/null); '
        f"export {STDOUT_VAR}; "
    )
    return with_rlimits(probe + command, limits)


def launcher_argv(python: str, argv: Sequence[str]) -> list[str]:
    """``argv`` started through the launcher's outer mode (the process backend's entry)."""
    return [python, "-I", "-S", "-B", str(RUNNER_DIR / LAUNCHER), "--outer", "--", *argv]


@functools.cache
def protect_controller() -> bool:
    """Make this process non-dumpable, once; whether it worked.

    No process of the same uid can then read its memory, environment (API keys) or file
    descriptors through /proc; only processes with CAP_SYS_PTRACE can.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def around_dir(path: str) -> str:
    """The folder to mask for a place in ``Tree.around``.

    Its ``top_dir``, or the place itself when it is that top already (a task folder at
    ``/opt/task``), but never ``/`` nor a system folder itself.
    """
    top = top_dir(path)
    if top or path.rstrip("/").count("/") < 1:
        return top
    return "" if path.strip("/") in _SYSTEM_DIRS else path.rstrip("/")


def mask_dirs(tree: Tree) -> list[str]:
    """Every folder the inner tier sees covered (the interpreter may need re-binding)."""
    tops = {top_dir(p) for p in (tree.root, tree.results) if p}
    tops |= {around_dir(p) for p in tree.around}
    tops -= {""}
    return sorted({*_PRIVATE_DIRS, *_HIDDEN_DIRS, *tops})


def check_results(result_dir: Path | str | None, root: str) -> str | None:
    """The result folder's real path; ``ValueError`` unless it exists outside ``root``."""
    if result_dir is None:
        return None
    real = os.path.realpath(result_dir)
    if not os.path.isabs(str(result_dir)) or not os.path.isdir(real):
        raise ValueError(f"result_dir {result_dir} must be an existing absolute folder")
    if real == root or real.startswith(root.rstrip("/") + "/"):
        raise ValueError(f"result_dir {result_dir} must lie outside the work dir")
    return real


def describe_process(config: SandboxConfig, *, bwrap: bool, root: bool) -> str:
    """The process backend's one line: what each tier gets, under bubblewrap or not."""
    mem = f"mem={config.memory_mb}MB" if config.memory_mb else "mem=unlimited"
    pids = f"pids={config.pids}" if config.pids else "pids=unlimited"
    if config.pids and root:
        pids = f"pids={config.pids} for candidates only (the evaluator runs as root)"
    rlimits = f"rlimits {mem} fsize={config.file_size_mb}MB cpu=timeout+1s core=0, {pids}"
    spaces = "pid and mount namespaces" + ("" if config.network else ", no network")
    spaces += ", no new user namespaces"
    inner = (
        f"candidates as uid {CANDIDATE_UID} in their own {spaces}"
        if root
        else f"candidates as YOUR uid, in their own user, {spaces}"
    )
    if bwrap:
        net = "network shared" if config.network else "no network"
        caps = "root with CAP_SETUID/SETGID/SETPCAP/DAC_OVERRIDE" if root else "no capabilities"
        return (
            f"process sandbox (bubblewrap): {net}, read-only system, private /tmp, "
            f"home and /run hidden, pid namespace, evaluator {caps}; {inner}; {rlimits}"
        )
    if not root:
        inner = "candidates UNISOLATED (sandbox.allow_unisolated): your uid, no second tier"
    guard = "root-owned and read-only for candidates" if root else "read-only by chmod only"
    return (
        "process sandbox (rlimits only): NO filesystem or network isolation for the "
        f"evaluator, its own pid namespace; protected files {guard}; {inner}; {rlimits}"
    )
