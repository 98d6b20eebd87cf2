"""Resolve which models a run talks to, starting local servers where the config asks."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from cambrian.config import CambrianConfig, ModelEntry
from cambrian.errors import CambrianError
from cambrian.llm import (
    EngineSpec,
    EnsembleLLM,
    ModelServer,
    OfflineModelServer,
    default_model_from_env,
    local_model,
    offline_model,
)
from cambrian.types import Evaluation, Program

if TYPE_CHECKING:
    from cambrian.agent._operators import OperatorPolicy
    from cambrian.agent._setup import RunContext

log = logging.getLogger("cambrian")


def resolve_models(
    config: CambrianConfig, log_dir: Path
) -> tuple[CambrianConfig, list[ModelServer]]:
    """Fill in the model(s) and start the local servers they need.

    With ``llm.models``, each entry named ``local:...`` gets its local model served and
    each entry with ``launch`` gets its engine started; either is pointed at its server.
    Otherwise ``llm.model`` as configured (a ``local:`` name is served here too), a
    provider default for a key found in the environment, or the offline demo model.

    Returns:
        The resolved config and the servers started (the caller stops them).

    Raises:
        ConfigError: If a ``local:`` name is not a registered local model.
        LLMError: If a local model or engine cannot be started.
    """
    if config.llm.models:
        return _serve_local_entries(config, log_dir)
    if config.llm.model and config.llm.model.startswith("local:"):
        server = _serve_local(config.llm.model, log_dir)
    elif config.llm.model:
        return config, []
    elif model := default_model_from_env(os.environ):
        log.info("llm.model not set; using %s (an API key was found in the environment)", model)
        llm = config.llm.model_copy(update={"model": model})
        return config.model_copy(update={"llm": llm}), []
    else:
        server = _serve_local(offline_model(), log_dir)
        log.warning(server.notice)
    update = {"model": server.model, "api_base": server.url}
    if "max_tokens" not in config.llm.model_fields_set:
        update["max_tokens"] = server.local.max_tokens
    if config.llm.prefill is None:
        update["prefill"] = True  # llama.cpp continues a final assistant message
    llm = config.llm.model_copy(update=update)
    return _local_operators(config, server).model_copy(update={"llm": llm}), [server]


def _local_operators(config: CambrianConfig, server: OfflineModelServer) -> CambrianConfig:
    """The config with the local model's operator weights, unless ``[operators]`` set any."""
    weights = set(config.operators.weights())
    if weights & config.operators.model_fields_set:
        return config
    operators = config.operators.model_copy(update=dict(server.local.operators))
    return config.model_copy(update={"operators": operators})


def _serve_local(name: str, log_dir: Path) -> OfflineModelServer:
    """Start the registered local model ``name``, logging to the run folder."""
    server = OfflineModelServer(name, log_path=log_dir / f"{local_model(name).alias}.log")
    log.info("serving %s on %d CPU threads (log: %s)", name, server.spec.threads, server.log_file)
    server.start()
    return server


def _serve_local_entries(
    config: CambrianConfig, log_dir: Path
) -> tuple[CambrianConfig, list[ModelServer]]:
    """Serve every ``local:`` entry of ``llm.models``, then launch the ``launch`` ones."""
    entries: list[ModelEntry] = []
    servers: list[ModelServer] = []
    try:
        for entry in config.llm.models:
            if entry.name.startswith("local:"):
                server = _serve_local(entry.name, log_dir)
                servers.append(server)
                update = {"name": server.model, "api_base": server.url}
                if entry.max_tokens is None:
                    update["max_tokens"] = server.local.max_tokens
                entry = entry.model_copy(update=update)
            entries.append(entry)
        llm = config.llm.model_copy(update={"models": tuple(entries)})
        config, launched = _launch_entries(config.model_copy(update={"llm": llm}), log_dir)
    except CambrianError:
        for server in servers:
            server.stop()
        raise
    return config, [*servers, *launched]


def _launch_entries(
    config: CambrianConfig, log_dir: Path
) -> tuple[CambrianConfig, list[ModelServer]]:
    """Start a server for every entry with ``launch`` and point the entry at it."""
    servers: list[ModelServer] = []
    entries: list[ModelEntry] = []
    try:
        for entry in config.llm.models:
            if entry.launch is None:
                entries.append(entry)
                continue
            spec = _spec(entry)
            server = ModelServer(spec, log_path=log_dir / f"{spec.name}.log")
            log.info("starting %s for %s (log: %s)", entry.launch, entry.name, server.log_file)
            url = server.start()
            servers.append(server)
            entries.append(entry.model_copy(update={"name": server.model, "api_base": url}))
    except CambrianError:
        for server in servers:
            server.stop()
        raise
    llm = config.llm.model_copy(update={"models": tuple(entries)})
    return config.model_copy(update={"llm": llm}), servers


def _spec(entry: ModelEntry) -> EngineSpec:
    """The engine to launch for one model entry: ``name`` is the model to serve."""
    return EngineSpec(
        engine=entry.launch,
        model=entry.name,
        gpus=tuple(entry.gpus),
        python=entry.launch_python or sys.executable,
        extra_args=tuple(entry.launch_args),
        max_model_len=entry.max_tokens and max(4096, 2 * entry.max_tokens),
    )


def reward_child(
    ctx: RunContext, operators: OperatorPolicy, program: Program, evaluation: Evaluation | None
) -> None:
    """Tell the model ensemble and the operator policy how much this child improved.

    None (a rejected reply or a failed evaluation) counts as no improvement; a parent
    without a score (a repair) gives 0.
    """
    improvement = None
    if evaluation is not None and evaluation.ok and program.parent_id is not None:
        parent = ctx.archive.evaluation(program.parent_id)
        improvement = 0.0
        if parent is not None and parent.ok:
            sign = 1.0 if ctx.config.evaluator.direction == "maximize" else -1.0
            improvement = sign * (evaluation.score - parent.score)
    operators.reward(program.operator, improvement)
    if isinstance(ctx.llm, EnsembleLLM) and program.model is not None:
        ctx.llm.reward(program.model, improvement)


def forget_child(ctx: RunContext, operators: OperatorPolicy, program: Program) -> None:
    """Undo the pulls of a child whose outcome says nothing (a duplicate of a program)."""
    operators.forget(program.operator)
    if isinstance(ctx.llm, EnsembleLLM) and program.model is not None:
        ctx.llm.forget(program.model)
