"""The inner tier's side of ``cambrian_run.py``: namespaces, credentials, the view.

``child`` runs in the process the launcher forks for one command: it gives it fresh
stdio, enters new namespaces where the kernel allows it (as root directly, else after
dropping to the candidate uid, in a user namespace of its own), builds the view (masks,
kept folders, read-only and hidden paths), and execs the command, under a small pid 1
when there is a pid namespace. Standard library only.
"""

from __future__ import annotations

# Only C modules besides ctypes: this starts for every candidate run (json, signal and
# warnings pull in re and enum, which triple the start-up time).
import _signal as signal
import ctypes
import errno
import os
import resource

import cambrian_filter

CONFIG_VAR = "CAMBRIAN_RUN_CONFIG"
STDOUT_VAR = "CAMBRIAN_STDOUT"
INNER_VARS = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "PYTHONDONTWRITEBYTECODE",
    "PYTHONUNBUFFERED",
    "CUDA_VISIBLE_DEVICES",
    "CAMBRIAN_WORKDIR",
    "CAMBRIAN_STAGE",
)
FAILED = 126  # the launcher itself failed; the command never ran
UNISOLATED = (
    "refusing to run candidate code as the evaluator's own uid with no namespace of its "
    "own (no user namespace could be created and there is no uid to switch to): enable "
    "unprivileged user namespaces, run as root, or set sandbox.allow_unisolated = true"
)
NOT_FOUND = 127

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
# statvfs flag -> mount flag, for the flags a remount must repeat.
_KEPT_FLAGS = ((4, MS_NODEV), (8, MS_NOEXEC), (1024, 1024), (2048, 2048), (4096, 1 << 21))
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP = 1, 4, 24
PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT = 36, 38, 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
CAP_LAST = 63

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
_libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4


class LaunchError(Exception):
    """The inner tier cannot be set up as configured."""


def prctl(option: int, arg: int = 0, arg3: int = 0) -> int:
    """``prctl(2)``; -1 on failure."""
    return _libc.prctl(option, arg, arg3, 0, 0)


def unshare(flags: int) -> bool:
    """``unshare(2)``; whether it worked."""
    return _libc.unshare(flags) == 0


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = ""):
    """``mount(2)``; ``LaunchError`` naming the target when it fails."""
    args = [s.encode() if s is not None else None for s in (source, target, fstype)]
    if _libc.mount(*args, flags, data.encode() if data else None) != 0:
        err = ctypes.get_errno()
        raise LaunchError(f"cannot mount on {target}: {os.strerror(err)}")


_NUMBERS = ("uid", "gid", "pids", "tmp_mb", "umask", "network", "unisolated")
_LISTS = ("mask", "keep", "readonly", "hide")


def parse_config(text: str) -> dict:
    """The launcher config: one ``key value`` per line (``mask``/``keep``: ``0|1 path``).

    Raises:
        LaunchError: A line names an unknown key or a number is not one.
    """
    cfg: dict = {name: [] for name in _LISTS}
    for line in text.split("\n"):
        if not line:
            continue
        key, _, value = line.partition(" ")
        if key in ("mask", "keep"):
            flag, _, path = value.partition(" ")
            cfg[key].append((path, flag == "1"))
        elif key in _LISTS:
            cfg[key].append(value)
        elif key in _NUMBERS:
            try:
                cfg[key] = int(value)
            except ValueError:
                raise LaunchError(f"${CONFIG_VAR}: {key} must be a number") from None
        elif key in ("workdir", "token"):
            cfg[key] = value
        else:
            raise LaunchError(f"${CONFIG_VAR}: unknown key {key!r}")
    return cfg


def config() -> dict:
    """The launcher config the sandbox put in the environment."""
    return parse_config(os.environ.get(CONFIG_VAR, ""))


def _inner_env(cfg: dict, private_tmp: bool) -> dict[str, str]:
    """The command's environment: the allowlist, nothing else."""
    env = {k: os.environ[k] for k in INNER_VARS if k in os.environ}
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # no __pycache__ of its making in the work dir
    env["TMPDIR"] = "/tmp" if private_tmp else os.environ.get("TMPDIR", "/tmp")
    if cfg.get("token"):  # only where nothing better finds strays (no uid, no namespace)
        env["CAMBRIAN_SANDBOX_TOKEN"] = cfg["token"]
    return env


def exit_code(status: int) -> int:
    """A wait status as a shell reports it: the exit code, or 128 + the signal."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else FAILED


# --- credentials ---------------------------------------------------------------------
def _drop_bounding_set() -> None:
    """Drop every capability from the bounding set (needs CAP_SETPCAP; best effort)."""
    for cap in range(CAP_LAST + 1):
        if prctl(PR_CAPBSET_DROP, cap) != 0 and ctypes.get_errno() == errno.EINVAL:
            break
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)


def become(cfg: dict) -> None:
    """Switch to the configured uid and gid, with no supplementary groups."""
    uid, gid = cfg.get("uid"), cfg.get("gid")
    if uid is None or os.getuid() == uid == os.geteuid():
        return
    gid = uid if gid is None else gid
    try:
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    except OSError as exc:
        raise LaunchError(f"cannot switch to uid {uid}: {exc.strerror}") from None
    prctl(PR_SET_DUMPABLE, 1)  # a uid change clears it; /proc/self must stay ours


def user_namespace(flags: int) -> bool:
    """Enter new user (mapping our own ids) and other namespaces; whether it worked."""
    uid, gid = os.getuid(), os.getgid()
    if not unshare(CLONE_NEWUSER | flags):
        return False
    prctl(PR_SET_DUMPABLE, 1)
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"),
                       ("gid_map", f"{gid} {gid} 1")):  # fmt: skip
        with open(f"/proc/self/{name}", "w") as handle:
            handle.write(text)
    return True


def parent_death(expected_parent: int) -> None:
    """SIGKILL us when our parent dies (set after every credential change)."""
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if expected_parent and os.getppid() != expected_parent:
        os._exit(FAILED)  # the parent is already gone


# --- the inner view ------------------------------------------------------------------
def _under(path: str, roots) -> bool:
    """Whether ``path`` is one of ``roots`` or below one."""
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def _build_view(cfg: dict) -> bool:
    """Mask, re-bind, protect and hide paths in our own mount namespace.

    The folders to keep are opened first (a mount can only be bound within its own
    namespace), so they must be reachable by the uid we run as by now.

    Returns:
        Whether ``/tmp`` is now a private tmpfs.
    """
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    size = int(cfg.get("tmp_mb") or 256)
    keeps = []
    for path, writable in cfg["keep"]:
        try:
            keeps.append((path, writable, os.open(path, os.O_PATH | os.O_DIRECTORY)))
        except OSError:
            if path == cfg.get("workdir"):
                uid = os.getuid()
                raise LaunchError(f"cannot reach the work dir {path} as uid {uid}") from None
    masks = sorted(cfg["mask"], key=lambda m: m[0].count("/"))
    masked = []
    for path, writable in masks:
        if os.path.isdir(path) and not os.path.islink(path) and not _under(path, masked):
            mode = "1777" if writable else "0755"
            mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, f"mode={mode},size={size}m")
            masked.append(path)
    for path, writable, fd in keeps:
        if _under(path, masked):
            os.makedirs(path, exist_ok=True)
            mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
        if not writable:
            _remount_ro(path)
        os.close(fd)
    for path in cfg["readonly"]:
        if os.path.lexists(path) and not os.path.islink(path):
            mount(path, path, None, MS_BIND)
            _remount_ro(path)
    for path in cfg["hide"]:
        _hide(path, size)
    for path, writable in masks:
        if path in masked and not writable:
            mount(None, path, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    return "/tmp" in [p for p, w in masks if w and p in masked]


def _remount_ro(path: str) -> None:
    """Make the bind mount at ``path`` read-only, keeping the flags it has.

    In a user namespace the flags a mount inherited (nosuid, nodev, atime) are locked:
    a remount that drops one fails.
    """
    have = os.statvfs(path).f_flag
    flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID
    for st_flag, ms_flag in _KEPT_FLAGS:
        if have & st_flag:
            flags |= ms_flag
    mount(None, path, None, flags)


def _hide(path: str, size: int) -> None:
    """Cover ``path`` so nothing of it can be read (a folder: an empty read-only tmpfs)."""
    if not os.path.lexists(path):
        return
    if os.path.islink(path):
        raise LaunchError(f"refusing to hide {path}: it became a symbolic link")
    if os.path.isdir(path):
        mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV | MS_RDONLY, "mode=0000,size=4k")
    else:
        mount("/dev/null", path, None, MS_BIND)
        _remount_ro(path)


# --- the command's side of the fork ----------------------------------------------------
def _exec(cfg: dict, argv: list[str], env: dict[str, str], parent: int) -> None:
    """Last steps before the command: limits, no privileges, then exec (never returns)."""
    parent_death(parent)
    _drop_bounding_set()
    if cfg.get("umask") is not None:
        os.umask(int(cfg["umask"]))
    if cfg.get("pids"):
        limit = int(cfg["pids"])
        resource.setrlimit(resource.RLIMIT_NPROC, (limit, limit))
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    cambrian_filter.install(_libc)  # no user namespace: no tmpfs of its own, no root
    for where in (cfg.get("cwd"), cfg.get("workdir"), "/"):
        try:
            if where:
                os.chdir(where)
                break
        except OSError:
            continue
    error = OSError(errno.ENOENT, "command not found")
    for path in _candidates(argv[0], env.get("PATH", "")):
        try:
            os.execve(path, argv, env)
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.ENOTDIR) or error.errno == errno.ENOENT:
                error = exc
    os.write(2, f"cambrian_run: cannot run {argv[0]}: {error.strerror}\n".encode())
    os._exit(NOT_FOUND if error.errno == errno.ENOENT else FAILED)


def _candidates(name: str, path: str) -> list[str]:
    """Where ``execvp`` would look for ``name`` (``os.execvpe`` imports too much)."""
    if "/" in name:
        return [name]
    return [os.path.join(d or ".", name) for d in path.split(os.pathsep)]


def _init(cfg: dict, argv: list[str], env: dict[str, str], mode: str) -> None:
    """Pid 1 of the inner namespace: start the command, reap, end with it."""
    parent_death(0)
    try:
        mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except LaunchError:  # a /proc with covered parts (bubblewrap's) cannot be mounted again
        if cfg.get("uid") in (None, cfg["evaluator_uid"]):  # and no uid separates us
            _cover_processes()
    if mode == "root":
        _drop_bounding_set()
        become(cfg)
        parent_death(0)  # the uid change cleared it
    # The command shares our uid: it must not ptrace us (we keep the launcher's
    # environment) nor use us to get round its own limits and filter.
    prctl(PR_SET_DUMPABLE, 0)
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    cambrian_filter.install(_libc)
    command = os.fork()
    if command == 0:
        _exec(cfg, argv, env, 0)
    while True:  # when pid 1 exits, the kernel kills every process of the namespace
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            os._exit(FAILED)
        if pid == command:
            os._exit(exit_code(status))


def _cover_processes() -> None:
    """Cover the /proc entry of every process and thread there is now with an empty tmpfs.

    Those are the evaluator's and the launcher's (ours are made after): a command with
    the evaluator's uid could otherwise open their ``fd/1`` or ``environ``.

    Raises:
        LaunchError: An entry of a process that is still there cannot be covered.
    """
    pids = [name for name in os.listdir("/proc") if name.isdigit()]
    tasks = set(pids)
    for pid in pids:
        try:
            tasks.update(os.listdir(f"/proc/{pid}/task"))
        except OSError:
            continue
    for task in sorted(tasks, key=int):
        try:
            _hide(f"/proc/{task}", 4)
        except LaunchError:
            if os.path.exists(f"/proc/{task}/stat"):  # one that ended meanwhile is no risk
                raise


def _close_fds_from(low: int) -> None:
    """Close every open file descriptor numbered ``low`` or above."""
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        fds = list(range(low, 4096))
    for fd in fds:
        if fd >= low:
            try:
                os.close(fd)
            except OSError:
                pass


def child(cfg: dict, argv: list[str], fds: tuple[int, int, int], parent: int) -> None:
    """The forked child: fresh stdio, then namespaces and credentials (never returns)."""
    try:
        os.setsid()
        cfg["evaluator_uid"] = os.getuid()
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        _close_fds_from(3)
        for sig in (signal.SIGPIPE, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC
        if not cfg.get("network"):
            flags |= CLONE_NEWNET
        mode = "root" if os.geteuid() == 0 and unshare(flags) else ""
        if not mode:
            _drop_bounding_set()
            become(cfg)
            mode = "user" if user_namespace(flags) else ""
            if not mode and os.getuid() == cfg["evaluator_uid"] and not cfg.get("unisolated"):
                raise LaunchError(UNISOLATED)
        parent_death(parent)
        env = _inner_env(cfg, _build_view(cfg) if mode else False)
        if not mode:
            _exec(cfg, argv, env, parent)
        init = os.fork()
        if init == 0:
            _init(cfg, argv, env, mode)
        prctl(PR_SET_DUMPABLE, 0)  # it only waits now; no process of its uid may trace it
        _, status = os.waitpid(init, 0)
        os._exit(exit_code(status))
    except LaunchError as exc:
        os.write(2, f"cambrian_run: {exc}\n".encode())
    except BaseException as exc:  # noqa: BLE001 - a forked child must never return
        os.write(2, f"cambrian_run: {type(exc).__name__}: {exc}\n".encode())
    os._exit(FAILED)
