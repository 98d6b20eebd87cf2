"""Open a run: resolve the config, then build each room from its own section."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cambrian.agent._files import FileRules
from cambrian.agent._models import resolve_models
from cambrian.agent._run_files import (
    CONFIG_JSON,
    is_run_folder,
    read_run_files,
    write_run_files,
)
from cambrian.archive import GitLineage, SqlArchive
from cambrian.config import (
    CambrianConfig,
    apply_override,
    build_config,
    find_config_file,
    load_config,
    merge_flags,
)
from cambrian.errors import CambrianError, ConfigError
from cambrian.evaluators import CommandEvaluator
from cambrian.evaluators.compat import CompatEvaluator, detect_task
from cambrian.llm import ModelServer, get_llm
from cambrian.prompts import template_set
from cambrian.sandbox import get_sandbox, make_limits, remove_tree
from cambrian.types import LLM, Sandbox

log = logging.getLogger("cambrian")

RUNS_HOME = Path(".cambrian")


@dataclass
class RunContext:
    """Everything one run needs, built from the config; ``close()`` releases it all."""

    run_id: str
    run_dir: Path
    task_dir: Path
    config: CambrianConfig
    archive: SqlArchive
    lineage: GitLineage
    sandbox: Sandbox
    evaluator: CommandEvaluator | CompatEvaluator
    llm: LLM
    rules: FileRules
    protected: list[str]
    templates: tuple[Path, ...]
    resumed: bool
    servers: list[ModelServer] = field(default_factory=list)

    @property
    def work_root(self) -> Path:
        """This process's scratch folder: one fresh work dir per evaluation.

        Per process, because several workers may share one run folder.
        """
        return self.run_dir / "work" / str(os.getpid())

    def close(self) -> None:
        """Stop the sandbox, the local model server and the database, in that order."""
        self.sandbox.close()
        for server in self.servers:
            server.stop()
        self.archive.close()
        self.lineage.close()


def _template_sets(config: CambrianConfig, task: Path) -> tuple[Path, ...]:
    """The prompt template folders: one set, or several to vary prompts between."""
    names = config.prompt.templates
    names = (names,) if isinstance(names, str) else names
    if not names:
        raise ConfigError("prompt.templates is an empty list: name at least one template set")
    return tuple(template_set(name, task) for name in names)


def _remove_dead_workdirs(work: Path) -> None:
    """Delete the scratch folders of worker processes that are gone (on this host)."""
    if not work.is_dir():
        return
    for folder in work.iterdir():
        if not (folder.name.isdigit() and Path(f"/proc/{folder.name}").exists()):
            remove_tree(folder)


def archive_url(config: CambrianConfig, run_dir: Path) -> str:
    """The configured archive URL, else SQLite ``archive.db`` inside the run folder."""
    return config.archive.url or f"sqlite:///{(run_dir / 'archive.db').resolve()}"


def default_run_dir(task_dir: Path) -> Path:
    """A new run folder under ./.cambrian/runs, named after the task and the time."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = task_dir.resolve().name or "task"
    run_dir = RUNS_HOME / "runs" / f"{name}-{stamp}"
    suffix = 1
    while run_dir.exists():
        suffix += 1
        run_dir = RUNS_HOME / "runs" / f"{name}-{stamp}-{suffix}"
    return run_dir


def resolve_run_dir(run_dir: Path | None) -> Path:
    """The given run dir, else the latest run started from this folder."""
    if run_dir is not None:
        return run_dir
    latest = RUNS_HOME / "latest"
    if latest.exists():
        return latest.resolve()
    raise ConfigError("no run found here: pass --run-dir DIR (or start one with `cambrian run`)")


def _mark_latest(run_dir: Path) -> None:
    """Point ./.cambrian/latest at ``run_dir`` when it lives under ./.cambrian/runs."""
    latest = RUNS_HOME / "latest"
    try:
        run_dir.resolve().relative_to((RUNS_HOME / "runs").resolve())
    except ValueError:
        return
    if latest.is_symlink() or latest.exists():
        latest.unlink()
    latest.symlink_to(run_dir.resolve())


def _stored_config(
    run_dir: Path, extra: dict[str, Any], overrides: list[str]
) -> tuple[dict[str, Any], CambrianConfig]:
    """Config of an existing run, with this invocation's flags and overrides on top."""
    _, data = read_run_files(run_dir)
    merge_flags(data, extra)
    for assignment in overrides:
        apply_override(data, assignment)
    return data, build_config(data, str(run_dir / CONFIG_JSON))


def _foreign_config(
    task_dir: Path, extra: dict[str, Any], overrides: list[str]
) -> CambrianConfig | None:
    """The config of an OpenEvolve or ShinkaEvolve folder that has no cambrian config."""
    if find_config_file(task_dir) is not None or "command" in extra.get("evaluator", {}):
        return None
    found = detect_task(task_dir)
    if found is None:
        return None
    log.info("%s has no cambrian.toml: running it as a %s task", task_dir, found.format)
    for line in found.warnings():
        log.warning(line)
    data = json.loads(json.dumps(found.config))
    merge_flags(data, extra)
    for assignment in overrides:
        apply_override(data, assignment)
    return build_config(data, f"{task_dir} ({found.format} task)")


def _prepare(
    task_dir: Path | None, run_dir: Path | None, extra: dict[str, Any], overrides: list[str]
) -> tuple[dict[str, Any], dict[str, Any], CambrianConfig, Path, bool]:
    """Decide between a new run and a resumed one; return meta, raw config and config."""
    if run_dir is not None and is_run_folder(run_dir):
        meta, _ = read_run_files(run_dir)
        data, config = _stored_config(run_dir, extra, overrides)
        return meta, data, config, run_dir, True
    task_dir = (task_dir or Path(".")).resolve()
    if not task_dir.is_dir():
        raise ConfigError(f"task folder {task_dir} does not exist")
    config = _foreign_config(task_dir, extra, overrides) or load_config(task_dir, overrides, extra)
    data = config.model_dump(mode="json", exclude_unset=True)
    meta = {"run_id": uuid.uuid4().hex[:12], "task_dir": str(task_dir), "created": time.time()}
    return meta, data, config, run_dir or default_run_dir(task_dir), False


def open_run(
    task_dir: Path | None,
    run_dir: Path | None = None,
    *,
    extra: dict[str, Any] | None = None,
    overrides: list[str] = (),
    check: Callable[[CambrianConfig], object] | None = None,
) -> RunContext:
    """Create or resume a run and build its rooms.

    A new run whose set-up fails (bad glob, no model) leaves no run folder behind.

    Args:
        task_dir: The task folder (ignored when ``run_dir`` holds a run to resume).
        run_dir: Where the run lives; an existing run there is resumed.
        extra: Nested config values from CLI flags.
        overrides: ``section.key=value`` strings, applied last.
        check: Called with the resolved config before anything is written; a
            ``CambrianError`` it raises refuses the run and leaves the run folder as it was.
    """
    meta, data, config, run_dir, resumed = _prepare(task_dir, run_dir, extra or {}, list(overrides))
    config.check_runnable()
    if check is not None:
        check(config)
    _template_sets(config, Path(meta["task_dir"]))
    write_run_files(run_dir, meta, data)
    try:
        ctx = _open_rooms(meta, config, run_dir, resumed)
    except CambrianError:
        if not resumed:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    _mark_latest(run_dir)
    return ctx


def _open_stores(
    meta: dict[str, Any], config: CambrianConfig, run_dir: Path, base: str, task: Path
) -> tuple[SqlArchive, Sandbox, CommandEvaluator | CompatEvaluator]:
    """The sandbox, the archive (migrated, with this run's row) and the evaluator.

    The run's row records the sandbox's identity (backend, isolation, image digest), so
    results can be reproduced. A sandbox that shows the host's folders (the process
    backend) is told to hide the task folder as it hides the run folder.
    """
    sandbox_config = config.sandbox
    if config.evaluator.warm and sandbox_config.backend == "auto":
        log.info("evaluator.python runs in warm workers of the process backend")
        sandbox_config = sandbox_config.model_copy(update={"backend": "process"})
    sandbox = get_sandbox(sandbox_config, run_id=meta["run_id"])
    if hasattr(sandbox, "around"):
        sandbox.around = (str(task),)
    archive = SqlArchive(
        config.archive,
        url=archive_url(config, run_dir),
        run_id=meta["run_id"],
        maximize=config.evaluator.direction == "maximize",
        seed=config.run.seed,
    )
    archive.open()
    archive.ensure_run({**meta, "base_commit": base, "sandbox": sandbox.identity()})
    evaluator: CommandEvaluator | CompatEvaluator = CommandEvaluator(
        config.evaluator, sandbox, make_limits(config.sandbox, config.evaluator.timeout_s)
    )
    if config.evaluator.adapter != "none":
        evaluator = CompatEvaluator(config.evaluator.adapter, evaluator)
    return archive, sandbox, evaluator


def _open_rooms(
    meta: dict[str, Any], config: CambrianConfig, run_dir: Path, resumed: bool
) -> RunContext:
    """Build lineage, archive, sandbox, evaluator and model for an opened run folder."""
    task = Path(meta["task_dir"])
    lineage = GitLineage(run_dir / "lineage.git")
    base = lineage.init_from(task)
    base_files = lineage.list_files(base)
    rules = FileRules(config.task.editable, config.evaluator.protected, base_files)
    if not rules.editable_files(base_files):
        lineage.close()
        raise ConfigError(
            f"task.editable {list(config.task.editable)} matches no file in {task}: "
            "check the globs (they are relative to the task folder)"
        )
    for stage in config.evaluator.cascade():
        target = stage.python.rpartition(":")[0]
        if target and rules.is_editable(target):
            lineage.close()
            raise ConfigError(
                f"evaluator.python loads {target}, which task.editable lets candidates "
                "change: a warm worker would score later candidates with one candidate's "
                "evaluator; narrow task.editable so it excludes the evaluator"
            )
    archive, sandbox, evaluator = _open_stores(meta, config, run_dir, base, task)
    try:
        config, servers = resolve_models(config, run_dir)
    except CambrianError:
        archive.close()
        lineage.close()
        raise
    _remove_dead_workdirs(run_dir / "work")
    return RunContext(
        run_id=meta["run_id"],
        run_dir=run_dir,
        task_dir=task,
        config=config,
        archive=archive,
        lineage=lineage,
        sandbox=sandbox,
        evaluator=evaluator,
        llm=get_llm(config.llm, seed=config.run.seed),
        rules=rules,
        protected=rules.protected_files(base_files),
        templates=_template_sets(config, task),
        resumed=resumed,
        servers=servers,
    )
