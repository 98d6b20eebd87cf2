"""Sandbox images built offline from the host's own Python, with no registry.

The base image holds the running interpreter's standard library at the same absolute path
as on the host (site-packages left empty), a POSIX shell and a few core utilities, and
every shared library they link, found with ``ldd``; it is loaded with ``docker import``.
Extra pip packages are installed on the host with ``pip install --target`` (the
registry is reachable only from the host) and copied into a derived image whose tag
carries a hash of the package list.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from cambrian.config import SandboxConfig
from cambrian.errors import SandboxError

REPOSITORY = "cambrian/sandbox"
TOOLS = (
    "sh dash env sleep head tail tr cat ls rm mv cp ln mkdir chmod touch kill true false "
    "echo id dd uname sed grep wc yes timeout find sort stat readlink seq nproc"
).split()
_SKIP_LIB = {"site-packages", "test", "idlelib", "tkinter", "turtledemo", "ensurepip"}
_LDD_PATH = re.compile(r"(/\S+) \(0x")
_PIP_TIMEOUT_S = 900


def default_tag() -> str:
    """``cambrian/sandbox:py<X.Y>`` of the running interpreter."""
    return f"{REPOSITORY}:py{sys.version_info.major}.{sys.version_info.minor}"


def pip_tag(base: str, packages: Sequence[str], requirements: str = "") -> str:
    """The derived image's tag: the base tag plus a hash of the package list."""
    text = "\n".join(sorted(packages)) + "\n--\n" + requirements
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    repo, _, tag = base.rpartition(":") if ":" in base.split("/")[-1] else (base, "", "latest")
    return f"{repo}:{tag}-pip-{digest}"


def image_name(config: SandboxConfig) -> str:
    """The image the config runs: ``sandbox.image`` (or the default), derived for ``pip``."""
    base = config.image or default_tag()
    return pip_tag(base, config.pip) if config.pip else base


def site_packages() -> str:
    """The interpreter's site-packages path (the same inside the image)."""
    return sysconfig.get_paths(vars={"base": sys.base_prefix, "platbase": sys.base_prefix})[
        "purelib"
    ]


def _ldd(paths: Iterable[str]) -> set[str]:
    """Every shared library the ELF files in ``paths`` link (paths as the loader sees them)."""
    libs: set[str] = set()
    for path in paths:
        done = subprocess.run(["ldd", path], capture_output=True, text=True, check=False)
        libs.update(_LDD_PATH.findall(done.stdout))
        libs.update(m.split()[0] for m in done.stdout.split("\n") if m.strip().startswith("/"))
    return {lib for lib in libs if os.path.exists(lib)}


def _readable(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    """Root-owned, world-readable entries; skip what the image must not carry."""
    if Path(info.name).name in _SKIP_LIB or info.name.endswith(".a"):
        return None
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mode |= 0o555 if info.isdir() or info.mode & 0o100 else 0o444
    return info


def _add_path(tar: tarfile.TarFile, path: str, added: set[str]) -> None:
    """Add ``path`` (and, for a symlink, its target) plus its parent directories."""
    # Parents resolved: /bin/cat is stored as usr/bin/cat under the /bin -> usr/bin link.
    path = os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))
    real = os.path.realpath(path)
    for item in (path, real):
        parts = Path(item).parts
        for depth in range(2, len(parts) + 1):
            sub = str(Path(*parts[:depth]))
            if sub in added:
                continue
            added.add(sub)
            recursive = sub == item and os.path.isdir(sub) and not os.path.islink(sub)
            tar.add(sub, arcname=sub.lstrip("/"), recursive=recursive, filter=_readable)


def _etc_files(tar: tarfile.TarFile) -> None:
    """A minimal /etc (passwd, group), /tmp, and the merged-/usr symlinks."""
    files = {
        "etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n",
        "etc/group": "root:x:0:\nnogroup:x:65534:\n",
    }
    for name, text in files.items():
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(text), 0o644
        tar.addfile(info, fileobj=_Bytes(text.encode()))
    for name, mode in (("tmp", 0o1777), ("proc", 0o555), ("dev", 0o755)):
        info = tarfile.TarInfo(name)
        info.type, info.mode = tarfile.DIRTYPE, mode
        tar.addfile(info)


class _Bytes:
    """A minimal file object over bytes (what ``tarfile.addfile`` reads)."""

    def __init__(self, data: bytes) -> None:
        self._data, self._pos = data, 0

    def read(self, size: int = -1) -> bytes:
        """Return the next ``size`` bytes."""
        end = len(self._data) if size < 0 else self._pos + size
        chunk, self._pos = self._data[self._pos : end], min(end, len(self._data))
        return chunk


def write_rootfs(tar_path: Path) -> None:
    """Write the base image's root filesystem as a tar at ``tar_path``."""
    prefix = sys.base_prefix
    stdlib = sysconfig.get_paths(vars={"installed_base": prefix})["stdlib"]
    tools = [f"/bin/{t}" for t in TOOLS if os.path.exists(f"/bin/{t}")]
    exe = os.path.realpath(sys.executable)
    elves = [exe, *tools, *(str(p) for p in Path(stdlib, "lib-dynload").glob("*.so"))]
    added: set[str] = set()
    with tarfile.open(tar_path, "w") as tar:
        _etc_files(tar)
        for link in ("bin", "lib", "lib64", "sbin"):
            if os.path.islink(f"/{link}"):
                info = tarfile.TarInfo(link)
                info.type, info.linkname = tarfile.SYMTYPE, os.readlink(f"/{link}")
                tar.addfile(info)
                added.add(f"/{link}")
        bindir = os.path.join(prefix, "bin")
        pythons = [str(p) for p in Path(bindir).glob("python*") if "config" not in p.name]
        for path in sorted({*tools, *pythons, *_ldd(elves), stdlib, site_packages()}):
            _add_path(tar, path, added)
        for lib in Path(prefix, "lib").glob("libpython*.so*"):
            _add_path(tar, str(lib), added)


def image_env() -> list[str]:
    """The image's ``ENV`` lines: the interpreter first on ``PATH``."""
    return [f"ENV PATH={os.path.join(sys.base_prefix, 'bin')}:/usr/local/bin:/usr/bin:/bin"]


def build_base(client: Any, tag: str) -> str:
    """Build the base image from the host's Python and ``docker import`` it as ``tag``.

    Returns:
        The image id.
    """
    with tempfile.TemporaryDirectory(prefix="cambrian-image-") as tmp:
        tar_path = Path(tmp, "rootfs.tar")
        write_rootfs(tar_path)
        repo, _, version = tag.rpartition(":")
        client.api.import_image_from_file(
            str(tar_path), repository=repo, tag=version, changes=image_env()
        )
    return client.images.get(tag).id


def build_derived(
    client: Any, base: str, tag: str, packages: Sequence[str], requirements: Path | None = None
) -> str:
    """Install ``packages`` (and a requirements file) on the host into a derived image.

    Returns:
        The image id.

    Raises:
        SandboxError: pip failed (its last line is in the message).
    """
    with tempfile.TemporaryDirectory(prefix="cambrian-pip-") as tmp:
        site = Path(tmp, "site")
        argv = [sys.executable, "-m", "pip", "install", "-q", "--no-warn-script-location"]
        argv += ["--target", str(site), *packages]
        if requirements is not None:
            argv += ["-r", str(requirements)]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=_PIP_TIMEOUT_S)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise SandboxError(f"pip install for the sandbox image failed: {last}")
        site.mkdir(exist_ok=True)
        dockerfile = f"FROM {base}\nCOPY site/ {site_packages()}/\n"
        Path(tmp, "Dockerfile").write_text(dockerfile)
        image, _ = client.images.build(path=tmp, tag=tag, rm=True, forcerm=True, pull=False)
    return image.id
