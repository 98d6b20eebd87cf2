"""The schema: one frozen section per room, all nested in ``CambrianConfig``.

Every default lives here (and in ``_evaluator`` and ``_search``, whose sections it
nests) and nowhere else. Unknown keys are errors.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, model_validator

from cambrian.config._base import Section as _Section
from cambrian.config._evaluator import EvaluatorConfig
from cambrian.config._search import MetaConfig, NoveltyConfig, OperatorConfig, PromptConfig
from cambrian.errors import ConfigError


class TaskConfig(_Section):
    """What is evolved and why."""

    editable: tuple[str, ...] = Field(
        default=(), description="Globs (relative to the task repo) of files the LLM may change."
    )
    description: str = Field(default="", description="What to optimise, shown to the LLM.")


class RayConfig(_Section):
    """``sandbox.backend = "ray"``: each evaluation is a Ray task on a cluster node."""

    address: str | None = Field(
        default=None,
        description="unset: $RAY_ADDRESS, else the cluster `ray start` made on this machine, "
        "else a local Ray instance started for the run; auto (any cluster running here), "
        "host:port of the head, or ray://host:10001 (Ray Client).",
    )
    node_ip: str | None = Field(
        default=None, description="This machine's address as the cluster sees it; unset: Ray's."
    )
    node_backend: Literal["auto", "docker", "process"] = Field(
        default="auto", description="The sandbox each node runs the evaluation in."
    )
    retries: int = Field(
        default=1, ge=0, le=5, description="Re-runs, on another node, after a worker or node dies."
    )
    connect_timeout_s: float = Field(default=60.0, gt=0, description="Wait for the head at start.")
    head_timeout_s: float = Field(
        default=60.0, gt=0, description="A head silent this long stops the run (resumable)."
    )
    grace_s: float = Field(
        default=60.0,
        gt=0,
        description="Deadline past evaluator.timeout_s for a started remote evaluation.",
    )
    queue_timeout_s: float = Field(
        default=3600.0,
        gt=0,
        description="An evaluation not started this long after submission is recorded lost.",
    )


class SandboxConfig(_Section):
    """Where candidates run and with which limits."""

    backend: str = Field(
        default="auto",
        description="auto (docker when usable, else process), docker, process, ray, "
        "or a dotted class path.",
    )
    memory_mb: int | None = Field(default=2048, gt=0)
    cpus: float | None = Field(
        default=None, gt=0, description="CPU share (docker; ray: num_cpus per task, unset 1)."
    )
    pids: int | None = Field(default=256, gt=0)
    output_kb: int = Field(default=256, gt=0, description="Captured stdout/stderr cap (tail).")
    file_size_mb: int = Field(default=256, gt=0)
    network: bool = Field(default=False, description="Let candidate code reach the network.")
    allow_unisolated: bool = Field(
        default=False,
        description="Process backend, not root, no bubblewrap or no user namespaces: run "
        "candidates as your own uid beside the evaluator instead of refusing.",
    )
    image: str | None = Field(
        default=None, description="Docker image; unset: cambrian/sandbox:py<X.Y> (build-image)."
    )
    pip: tuple[str, ...] = Field(
        default=(), description="Extra pip packages, installed into a derived image."
    )
    warm: bool = Field(default=False, description="Docker: reuse warm containers (exec).")
    tmp_mb: int = Field(default=256, gt=0, description="Docker: size of the tmpfs /tmp.")
    tmp_exec: bool = Field(default=False, description="Docker: allow executing files in /tmp.")
    gpus_per_eval: float = Field(
        default=0, ge=0, description="GPUs per evaluation; a fraction 1/k shares a GPU k ways."
    )
    gpu_ids: tuple[str, ...] | None = Field(
        default=None, description="GPUs to use; unset means every GPU nvidia-smi -L lists."
    )
    ray: RayConfig = RayConfig()

    @model_validator(mode="after")
    def _check_gpus(self) -> SandboxConfig:
        n = self.gpus_per_eval
        if n >= 1 and n != int(n):
            raise ValueError("sandbox.gpus_per_eval must be a whole number or a fraction 1/k")
        if 0 < n < 1 and abs(1 / n - round(1 / n)) > 1e-6:
            raise ValueError("sandbox.gpus_per_eval below 1 must be 1/k (0.5, 0.25, ...)")
        if self.backend == "ray" and self.gpu_ids is not None:
            raise ValueError(
                "sandbox.gpu_ids does not apply to backend ray: Ray assigns GPUs; "
                "declare them with `ray start --num-gpus N` on each node"
            )
        return self


def _check_temperature(value: float | tuple[float, float] | None, where: str) -> None:
    """Reject a temperature outside [0, 2] or a range whose ends are out of order."""
    if value is None:
        return
    low, high = (value, value) if isinstance(value, int | float) else value
    if not 0 <= low <= high <= 2:
        raise ValueError(
            f"{where} must be a number or [lo, hi] with 0 <= lo <= hi <= 2, got {value!r}"
        )


def _check_api_base(value: str | None, where: str) -> None:
    """An endpoint must be an http(s) URL with a host (and a valid port, if any)."""
    if value is None:
        return
    try:
        parts = urlsplit(value)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(
            f"{where} must be an http(s) URL such as http://127.0.0.1:8000/v1, got {value!r}"
        )


class ModelEntry(_Section):
    """One model of the ensemble (``[[llm.models]]``); unset fields fall back to ``[llm]``."""

    name: str = Field(min_length=1, description="litellm model name, e.g. openai/gpt-4o-mini.")
    api_base: str | None = None
    api_key_env: str | None = Field(default=None, description="Variable holding the API key.")
    weight: float = Field(default=1.0, gt=0, description="selection = weights: share of calls.")
    temperature: float | tuple[float, float] | None = Field(
        default=None, description="A number, or [lo, hi] sampled per call; unset: llm's."
    )
    max_tokens: int | None = Field(default=None, gt=0, description="Unset: llm.max_tokens.")
    price_in: float | None = Field(default=None, ge=0, description="USD/M prompt tokens.")
    price_out: float | None = Field(default=None, ge=0, description="USD/M completion tokens.")
    launch: Literal["vllm", "llamacpp"] | None = Field(default=None, description="Serve it.")
    launch_args: tuple[str, ...] = Field(default=(), description="Extra engine arguments.")
    launch_python: str | None = Field(default=None, description="The engine's Python.")
    gpus: tuple[str, ...] = Field(default=(), description="GPU ids for the launched server.")

    @model_validator(mode="after")
    def _check(self) -> ModelEntry:
        _check_temperature(self.temperature, f"llm.models[{self.name}].temperature")
        _check_api_base(self.api_base, f"llm.models[{self.name}].api_base")
        return self


class LLMConfig(_Section):
    """The model (or the ensemble of models) that proposes edits."""

    model: str | None = Field(
        default=None,
        description="litellm model name; unset: a provider default from the environment's "
        "API key, else the offline demo model.",
    )
    api_base: str | None = None
    api_key_env: str | None = Field(
        default=None, description="Name of the environment variable holding the API key."
    )
    temperature: float | tuple[float, float] = Field(
        default=0.8, description="A number, or [lo, hi] sampled per call (diversity)."
    )
    prefill: bool | None = Field(
        default=None,
        description="Start each reply inside its code block (an assistant message the "
        "model continues); unset: on for the local models cambrian serves, whose llama.cpp "
        "server continues a final assistant message, off otherwise.",
    )
    max_tokens: int = Field(default=4096, gt=0)
    timeout_s: float = Field(default=180.0, gt=0, description="Hard deadline per call.")
    retries: int = Field(
        default=4, ge=0, description="Retries on 429, 5xx, connection errors; a timeout once."
    )
    price_in: float | None = Field(default=None, ge=0, description="USD/M prompt tokens.")
    price_out: float | None = Field(default=None, ge=0, description="USD/M completion tokens.")
    models: tuple[ModelEntry, ...] = Field(default=(), description="Empty: llm.model alone.")
    selection: Literal["ucb", "thompson", "weights"] = Field(
        default="ucb", description="How the ensemble picks a model for each call."
    )
    ucb_c: float = Field(default=1.0, ge=0, description="ucb: weight of the exploration bonus.")
    cost_weight: float = Field(default=0.0, ge=0, description="ucb: weight of the cost penalty.")
    bench_after: int = Field(
        default=2, ge=0, description="Consecutive failed calls that bench a model; 0: never."
    )
    bench_cooldown_s: float = Field(
        default=30.0, gt=0, description="First cool-down of a benched model; doubles per failure."
    )
    bench_max_cooldown_s: float = Field(default=600.0, gt=0, description="Longest cool-down.")

    @model_validator(mode="after")
    def _check(self) -> LLMConfig:
        _check_temperature(self.temperature, "llm.temperature")
        _check_api_base(self.api_base, "llm.api_base")
        names = [entry.name for entry in self.models]
        if len(set(names)) != len(names):
            raise ValueError(f"llm.models has a name twice ({names}): give each entry its own")
        return self


class FeatureBins(_Section):
    """A MAP-Elites descriptor axis: ``bins`` equal bins over ``[min, max]``."""

    min: float
    max: float
    bins: int = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> FeatureBins:
        if not self.max > self.min:
            raise ValueError(f"max ({self.max}) must be greater than min ({self.min})")
        return self


class SelectionConfig(_Section):
    """Parameters of the parent-selection policies (each policy reads its own)."""

    normalize: Literal["rank", "zscore"] = Field(
        default="rank", description="fitness: how scores are normalised before the softmax."
    )
    temperature: float = Field(default=1.0, gt=0, description="fitness: softmax temperature.")
    alpha: float = Field(default=1.0, ge=0, description="power_law: weight = rank ** -alpha.")
    dgm_k: float = Field(default=10.0, gt=0, description="dgm: sigmoid steepness.")
    tournament: int = Field(default=3, gt=0, description="tournament: contestants per draw.")
    clade_depth: int = Field(
        default=8, ge=1, description="thompson: generations up to which a success counts."
    )


class ArchiveConfig(_Section):
    """Where programs are stored, how they are placed in cells and how parents are picked."""

    url: str | None = Field(
        default=None, description="SQLAlchemy URL; unset: SQLite archive.db in the run dir."
    )
    islands: int = Field(default=1, gt=0)
    selection: Literal[
        "uniform", "fitness", "power_law", "dgm", "thompson", "tournament", "greedy", "random"
    ] = Field(
        default="uniform",
        description=(
            "Parent selection over the island's elites; baselines: greedy (always the best "
            "elite), random (any evaluated program of the island, elite or not)."
        ),
    )
    policy: SelectionConfig = SelectionConfig()
    features: dict[str, FeatureBins] = Field(
        default_factory=dict,
        description="Descriptor axes; none: one cell per island (plain elitism).",
    )
    cvt_cells: int = Field(
        default=0, ge=0, description="CVT cells over the feature axes (0: the grid of bins)."
    )
    cvt_samples: int = Field(default=5000, gt=0, description="Seeded sample fitting the CVT.")
    migration_interval: int = Field(
        default=0, ge=0, description="Migrate on the ring every K evaluated candidates; 0: off."
    )
    migrants: int = Field(default=1, gt=0, description="Best elites copied per migration.")
    reset_interval: int = Field(
        default=0,
        ge=0,
        description="Every K evaluated candidates reseed the weaker half of the islands; 0: off.",
    )
    objectives: dict[str, Literal["maximize", "minimize"]] = Field(
        default_factory=dict,
        description="Metrics (or score) for `cambrian best --pareto`; none: the score alone.",
    )
    lease_s: float = Field(
        default=30.0, gt=0, description="A worker silent this long loses its in-flight programs."
    )

    @model_validator(mode="after")
    def _cvt_axes(self) -> ArchiveConfig:
        if self.cvt_cells and not self.features:
            raise ValueError("cvt_cells needs feature axes: add [archive.features]")
        return self


class RunConfig(_Section):
    """How long and how wide the search runs."""

    iterations: int = Field(default=100, gt=0, description="Evaluated candidates to produce.")
    proposal_concurrency: int = Field(default=4, gt=0)
    eval_concurrency: int = Field(default=2, gt=0)
    target_score: float | None = Field(default=None, description="Stop once reached.")
    max_proposals: int | None = Field(
        default=None,
        gt=0,
        description="Cap on LLM proposals, rejected ones included; unset: 5 x iterations + 10.",
    )
    max_cost_usd: float | None = Field(
        default=None,
        gt=0,
        description="An LLM call starts only while spent plus an estimate for the calls in "
        "flight and the new one stays within this; a run ends over it by about one call.",
    )
    seed: int = 0

    @model_validator(mode="after")
    def _proposal_cap(self) -> RunConfig:
        if self.max_proposals is None:
            object.__setattr__(self, "max_proposals", 5 * self.iterations + 10)
        return self


class CambrianConfig(_Section):
    """The whole configuration, one section per room."""

    task: TaskConfig = TaskConfig()
    evaluator: EvaluatorConfig = EvaluatorConfig()
    sandbox: SandboxConfig = SandboxConfig()
    llm: LLMConfig = LLMConfig()
    prompt: PromptConfig = PromptConfig()
    archive: ArchiveConfig = ArchiveConfig()
    novelty: NoveltyConfig = NoveltyConfig()
    operators: OperatorConfig = OperatorConfig()
    meta: MetaConfig = MetaConfig()
    run: RunConfig = RunConfig()

    def check_runnable(self) -> None:
        """Raise ``ConfigError`` if a run could not start with this configuration."""
        evaluator = self.evaluator
        if not evaluator.command.strip() and not evaluator.python and not evaluator.stages:
            raise ConfigError(
                "evaluator.command is empty: set it (or evaluator.python, or "
                "[[evaluator.stages]]) in cambrian.toml or pass --evaluator"
            )
        sandbox = self.sandbox
        on_ray = sandbox.backend == "ray" and sandbox.ray.node_backend == "process"
        if evaluator.warm and sandbox.backend not in ("auto", "process") and not on_ray:
            raise ConfigError(
                f"evaluator.python (warm function mode) runs on the process backend only, "
                f'not {sandbox.backend!r}: set sandbox.backend = "process" (on Ray: '
                'sandbox.ray.node_backend = "process") or use evaluator.command'
            )
        if not self.task.editable:
            raise ConfigError(
                "task.editable is empty: list the files the LLM may change, or pass --editable"
            )
