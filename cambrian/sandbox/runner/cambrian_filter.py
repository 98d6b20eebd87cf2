"""A seccomp filter for candidate code: no new user namespaces.

Without one, candidate code could enter a user namespace of its own, become root there
and mount a tmpfs, whose pages no RLIMIT_AS counts (and which the sandbox never wipes).
The filter refuses ``unshare`` and ``clone`` with ``CLONE_NEWUSER`` (EPERM), ``clone3``
(ENOSYS: its flags sit behind a pointer, and the C library falls back to ``clone``) and
every system call of a foreign ABI (i386 ``int 0x80``, x32), which would slip past the
numbers checked here. Standard library only; installed just before ``execve``, after
``no_new_privs``, and inherited by everything the command starts.
"""

from __future__ import annotations

import ctypes
import errno
import os

PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2
CLONE_NEWUSER = 0x10000000
# (audit arch, unshare, clone, clone3, lowest foreign-ABI number or 0)
_ARCHES = {
    "x86_64": (0xC000003E, 272, 56, 435, 0x40000000),
    "aarch64": (0xC00000B7, 97, 220, 435, 0),
}
_LD_ABS_W, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06
_ALLOW = 0x7FFF0000
_ERRNO = 0x00050000
_NR, _ARCH, _ARG0 = 0, 4, 16  # offsets in struct seccomp_data (args[0]'s low word)


class _Insn(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_ushort),
        ("jt", ctypes.c_ubyte),
        ("jf", ctypes.c_ubyte),
        ("k", ctypes.c_uint),
    ]


class _Prog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_Insn))]


def program(machine: str) -> list[tuple[int, int, int, int]] | None:
    """The filter's instructions for ``machine`` (``os.uname().machine``), or None."""
    if machine not in _ARCHES:
        return None
    arch, unshare, clone, clone3, foreign = _ARCHES[machine]
    eperm, enosys = _ERRNO | errno.EPERM, _ERRNO | errno.ENOSYS
    return [
        (_LD_ABS_W, 0, 0, _ARCH),
        (_JEQ, 1, 0, arch),  # 1
        (_RET, 0, 0, eperm),  # a foreign ABI
        (_LD_ABS_W, 0, 0, _NR),  # 3
        (_JGE, 0, 1, foreign or 0xFFFFFFFF),
        (_RET, 0, 0, eperm),  # 5: x32
        (_JEQ, 0, 1, clone3),
        (_RET, 0, 0, enosys),  # 7
        (_JEQ, 1, 0, unshare),
        (_JEQ, 0, 3, clone),  # 9
        (_LD_ABS_W, 0, 0, _ARG0),
        (_JSET, 0, 1, CLONE_NEWUSER),  # 11
        (_RET, 0, 0, eperm),
        (_RET, 0, 0, _ALLOW),  # 13
    ]


def install(libc: ctypes.CDLL) -> bool:
    """Install the filter on this thread (needs ``no_new_privs``); whether it is in place."""
    insns = program(os.uname().machine)
    if insns is None:
        return False
    table = (_Insn * len(insns))(*(_Insn(*insn) for insn in insns))
    prog = _Prog(len(insns), table)
    args = (SECCOMP_MODE_FILTER, ctypes.addressof(prog), 0, 0)
    return libc.prctl(ctypes.c_int(PR_SET_SECCOMP), *map(ctypes.c_ulong, args)) == 0
