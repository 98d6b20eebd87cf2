"""Bubblewrap command lines and the cached "does bwrap work here" probe.

Mount order matters (later mounts go on top): the whole system read-only, fresh /dev and
/proc, private /tmp, home directories and /run hidden (daemon sockets such as Docker's
live there and a Unix socket ignores network namespaces), then the interpreter re-bound
read-only when it lives under a hidden directory, then the inner-tier launcher at
/run/cambrian (read-only), the result folder and the work dir read-write, then the
protected paths read-only over it.

Run by root, bwrap makes no user namespace: the evaluator is root inside with only the
capabilities it needs to start candidates under their own uid (``OUTER_CAPS``); a user
namespace would map uid 0 alone and leave no other uid to switch to.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterable, Mapping, Sequence

from cambrian.sandbox._tier import MOUNT_PATH, OUTER_CAPS, RUNNER_DIR, around_dir, top_dir

_HIDDEN_FIXED = ("/tmp", "/root", "/home", "/run")
# /etc/resolv.conf often points here; needed for DNS when the network is shared.
_RESOLVER_DIR = "/run/systemd/resolve"
_PROBE_TIMEOUT_S = 10.0
_probe_lock = threading.Lock()
_probe_cache: dict[str, str | None] = {}


def find_bwrap() -> str | None:
    """Path of the ``bwrap`` executable, or None when it is not installed."""
    return shutil.which("bwrap")


def _home_dirs() -> list[str]:
    """The host user's home directories (from the passwd entry and ``$HOME``)."""
    homes = {os.environ.get("HOME", "")}
    try:
        homes.add(pwd.getpwuid(os.getuid()).pw_dir)
    except KeyError:
        pass
    return sorted(h for h in homes if h and os.path.isdir(h) and os.path.realpath(h) != "/")


def hidden_dirs() -> list[str]:
    """Directories replaced by an empty tmpfs inside the sandbox."""
    fixed = [d for d in _HIDDEN_FIXED if os.path.isdir(d) and not os.path.islink(d)]
    extra = [h for h in _home_dirs() if not _under(h, fixed)]
    return fixed + extra


def _under(path: str, roots: Iterable[str]) -> bool:
    """Whether ``path`` is one of ``roots`` or inside one of them."""
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def interpreter_dirs(hidden: Sequence[str]) -> list[str]:
    """Interpreter directories that sit under a hidden directory and must be re-bound."""
    candidates = {
        sys.base_prefix,
        sys.prefix,
        os.path.dirname(sys.executable),
        os.path.dirname(os.path.realpath(sys.executable)),
    }
    found = sorted(p for p in candidates if p and os.path.isdir(p) and _under(p, hidden))
    return [p for p in found if not _under(p, [q for q in found if q != p])]


def _base_args(bwrap: str, *, network: bool) -> list[str]:
    """The namespace and system-mount flags shared by runs and the probe."""
    if os.geteuid() == 0:
        args = [bwrap, "--unshare-ipc", "--unshare-pid", "--unshare-uts", "--unshare-cgroup-try"]
        args += [] if network else ["--unshare-net"]
        # Run by root, bwrap keeps every capability (mknod + mount would reach the disk).
        args += ["--cap-drop", "ALL"]
        for cap in OUTER_CAPS:
            args += ["--cap-add", cap]
    else:
        args = [bwrap, "--unshare-all"] + (["--share-net"] if network else [])
    args += ["--die-with-parent", "--new-session", "--ro-bind", "/", "/"]
    return args + ["--dev", "/dev", "--proc", "/proc"]


def bwrap_argv(
    bwrap: str,
    *,
    workdir: str,
    readonly: Sequence[str],
    env: Mapping[str, str],
    network: bool,
    argv: Sequence[str],
    results: str | None = None,
    around: Sequence[str] = (),
    writable: Sequence[str] = (),
) -> list[str]:
    """The full bubblewrap command line that runs ``argv`` in ``workdir``.

    Args:
        bwrap: Path of the bwrap executable.
        workdir: Absolute work dir, bound read-write at the same path.
        readonly: Absolute paths inside ``workdir`` to bind read-only over themselves.
        env: The complete environment (bwrap clears everything else).
        network: Share the host network namespace.
        argv: The command to run inside.
        results: The result folder, bound read-write at the same path.
        around: More paths whose surroundings are hidden like the work dir's.
        writable: More folders outside the work dir bound read-write at the same path.
    """
    args = _base_args(bwrap, network=network)
    hidden = hidden_dirs()
    # What surrounds the work dir (the run folder, the task) is hidden too.
    for path in (workdir, results, *around):
        top = (around_dir(path) if path in around else top_dir(path)) if path else ""
        if top and os.path.isdir(top) and not _under(top, hidden):
            hidden.append(top)
    for path in hidden:
        args += ["--tmpfs", path]
    if network and os.path.isdir(_RESOLVER_DIR) and _under(_RESOLVER_DIR, hidden):
        args += ["--ro-bind", _RESOLVER_DIR, _RESOLVER_DIR]
    # Folders bwrap creates on the way to a bind are 0700: the candidate uid must pass.
    interpreter = interpreter_dirs(hidden)
    binds = [*([results] if results else []), *writable]
    for path in _ancestors([workdir, *binds, *interpreter], hidden):
        args += ["--perms", "0755", "--dir", path]
    for path in interpreter:
        args += ["--ro-bind", path, path]
    args += ["--ro-bind", str(RUNNER_DIR), MOUNT_PATH]
    for path in binds:
        args += ["--bind", path, path]
    args += ["--bind", workdir, workdir]
    for path in readonly:
        args += ["--ro-bind", path, path]
    args.append("--clearenv")
    for name, value in env.items():
        args += ["--setenv", name, value]
    return args + ["--chdir", workdir, "--", *argv]


def _ancestors(paths: Sequence[str], hidden: Sequence[str]) -> list[str]:
    """The folders strictly between a hidden folder and each of ``paths``, top down."""
    found: list[str] = []
    for path in paths:
        for root in hidden:
            if path.startswith(root.rstrip("/") + "/"):
                parts = path[len(root.rstrip("/")) + 1 :].split("/")[:-1]
                for depth in range(1, len(parts) + 1):
                    sub = f"{root.rstrip('/')}/{'/'.join(parts[:depth])}"
                    if sub not in found:
                        found.append(sub)
    return found


def probe(bwrap: str) -> str | None:
    """Check once per process that ``bwrap`` can build a sandbox here.

    Returns:
        None when it works, else a one-line reason (cached either way).
    """
    with _probe_lock:
        if bwrap not in _probe_cache:
            _probe_cache[bwrap] = _run_probe(bwrap)
        return _probe_cache[bwrap]


def _run_probe(bwrap: str) -> str | None:
    """Run ``true`` in a minimal sandbox and report why it failed, if it did."""
    argv = _base_args(bwrap, network=False) + ["--tmpfs", "/tmp", "--", "true"]
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=_PROBE_TIMEOUT_S,
            env={"PATH": "/usr/bin:/bin"},
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap probe failed: {exc}"
    if done.returncode == 0:
        return None
    lines = done.stderr.decode("utf-8", errors="replace").strip().splitlines()
    return f"bwrap probe failed (exit {done.returncode}): {lines[-1] if lines else 'no output'}"
