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
    OFFLINE_NOTICE,
    EngineSpec,
    EnsembleLLM,
    ModelServer,
    OfflineModelServer,
    budget_allows,
    default_model_from_env,
)
from cambrian.types import Evaluation, Program

if TYPE_CHECKING:
    from cambrian.agent._setup import RunContext

log = logging.getLogger("cambrian")


def resolve_models(
    config: CambrianConfig, log_dir: Path
) -> tuple[CambrianConfig, list[ModelServer]]:
    """Fill in the model(s) and start the local servers they need.

    With ``llm.models``, each entry with ``launch`` gets its engine started and its
    ``name``/``api_base`` pointed at it. Otherwise ``llm.model`` as configured, a provider
    default for a key found in the environment, or the offline demo model.

    Returns:
        The resolved config and the servers started (the caller stops them).
    """
    if config.llm.models:
        return _launch_entries(config, log_dir)
    if config.llm.model:
        return config, []
    model = default_model_from_env(os.environ)
    if model:
        log.info("llm.model not set; using %s (an API key was found in the environment)", model)
        llm = config.llm.model_copy(update={"model": model})
        return config.model_copy(update={"llm": llm}), []
    server = OfflineModelServer()
    url = server.start()
    log.warning(OFFLINE_NOTICE)
    llm = config.llm.model_copy(update={"model": server.model, "api_base": url})
    return config.model_copy(update={"llm": llm}), [server]


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


def reward_child(ctx: RunContext, program: Program, evaluation: Evaluation | None) -> None:
    """Tell a model ensemble how much this child improved on its parent.

    None (a rejected reply or a failed evaluation) counts as no improvement; a parent
    without a score (a repair) gives 0. A single model has no bandit to tell.
    """
    if not isinstance(ctx.llm, EnsembleLLM) or program.model is None:
        return
    improvement = None
    if evaluation is not None and evaluation.ok and program.parent_id is not None:
        parent = ctx.archive.evaluation(program.parent_id)
        improvement = 0.0
        if parent is not None and parent.ok:
            sign = 1.0 if ctx.config.evaluator.direction == "maximize" else -1.0
            improvement = sign * (evaluation.score - parent.score)
    ctx.llm.reward(program.model, improvement)


def within_budget(ctx: RunContext, spent_usd: float) -> bool:
    """Whether spent plus in-flight cost leaves room under ``run.max_cost_usd``."""
    in_flight = ctx.llm.in_flight_usd if isinstance(ctx.llm, EnsembleLLM) else 0.0
    return budget_allows(spent_usd, in_flight, ctx.config.run.max_cost_usd)
