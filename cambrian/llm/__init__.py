"""LLM access: the litellm client, a scripted OpenAI-compatible server, local models.

Names are loaded on first use, so ``import cambrian.llm`` stays fast and
``python -m cambrian.llm._scripted`` does not find its module imported twice.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cambrian.llm._bandit import (
        ModelStats,
        choose,
        choose_thompson,
        choose_ucb,
        choose_weighted,
        ucb_scores,
    )
    from cambrian.llm._breaker import CircuitBreaker
    from cambrian.llm._client import (
        ChatClient,
        default_model_from_env,
        get_llm,
        sample_temperature,
    )
    from cambrian.llm._cost import (
        Prices,
        estimate_cost,
        estimate_prompt_tokens,
        is_local,
        resolve_prices,
    )
    from cambrian.llm._embeddings import embed_texts
    from cambrian.llm._ensemble import EnsembleLLM, entry_config
    from cambrian.llm._local_models import (
        LOCAL_MODELS,
        LocalModel,
        assemble,
        cache_dir,
        local_model,
        offline_model,
    )
    from cambrian.llm._offline import (
        OFFLINE_NOTICE,
        OfflineModelServer,
        demo_model_file,
        offline_notice,
    )
    from cambrian.llm._responders import Fault, mutate_numbers, replay
    from cambrian.llm._scripted import ScriptedLLMServer
    from cambrian.llm._serve import ENGINES, EngineSpec, ModelServer, engine_command

__all__ = [
    "CircuitBreaker",
    "EnsembleLLM",
    "ModelStats",
    "Prices",
    "choose",
    "choose_thompson",
    "choose_ucb",
    "choose_weighted",
    "embed_texts",
    "entry_config",
    "estimate_cost",
    "estimate_prompt_tokens",
    "is_local",
    "resolve_prices",
    "sample_temperature",
    "ucb_scores",
    "ENGINES",
    "LOCAL_MODELS",
    "LocalModel",
    "assemble",
    "cache_dir",
    "local_model",
    "offline_model",
    "OFFLINE_NOTICE",
    "EngineSpec",
    "ModelServer",
    "engine_command",
    "Fault",
    "ChatClient",
    "OfflineModelServer",
    "ScriptedLLMServer",
    "default_model_from_env",
    "demo_model_file",
    "get_llm",
    "offline_notice",
    "mutate_numbers",
    "replay",
]

_MODULES = {
    "ModelStats": "_bandit",
    "choose": "_bandit",
    "choose_thompson": "_bandit",
    "choose_ucb": "_bandit",
    "choose_weighted": "_bandit",
    "ucb_scores": "_bandit",
    "CircuitBreaker": "_breaker",
    "sample_temperature": "_client",
    "Prices": "_cost",
    "estimate_cost": "_cost",
    "estimate_prompt_tokens": "_cost",
    "is_local": "_cost",
    "resolve_prices": "_cost",
    "embed_texts": "_embeddings",
    "EnsembleLLM": "_ensemble",
    "entry_config": "_ensemble",
    "ChatClient": "_client",
    "default_model_from_env": "_client",
    "get_llm": "_client",
    "LOCAL_MODELS": "_local_models",
    "LocalModel": "_local_models",
    "assemble": "_local_models",
    "cache_dir": "_local_models",
    "local_model": "_local_models",
    "offline_model": "_local_models",
    "OFFLINE_NOTICE": "_offline",
    "offline_notice": "_offline",
    "OfflineModelServer": "_offline",
    "demo_model_file": "_offline",
    "Fault": "_responders",
    "mutate_numbers": "_responders",
    "replay": "_responders",
    "ScriptedLLMServer": "_scripted",
    "ENGINES": "_serve",
    "EngineSpec": "_serve",
    "ModelServer": "_serve",
    "engine_command": "_serve",
}


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
