"""Config sections of the search itself: prompt, operators, meta-recommendations, novelty."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from cambrian.config._base import Section as _Section


class PromptConfig(_Section):
    """What the prompt shows besides the parent."""

    inspirations: int = Field(default=2, ge=0, description="Other elites shown to the LLM.")
    top_k: int = Field(default=1, ge=0, description="How many of those are the best elites.")
    ancestors: int = Field(default=0, ge=0, description="The parent's ancestors shown too.")
    rejections: int = Field(default=3, ge=0, description="Recent rejection reasons shown.")
    feedback_chars: int = Field(default=2000, gt=0, description="Cap on evaluator feedback.")
    templates: str | tuple[str, ...] = Field(
        default="default",
        description="Template set: default, compact (small local models), or a folder "
        "(relative to the task folder) holding system.j2 and user.j2; a list of sets: one "
        "is chosen at random for each proposal (prompt variations).",
    )
    ideas: tuple[str, ...] = Field(
        default=(),
        description="Task-specific ideas; one idea (these, the template set's ideas.txt "
        "or a meta-recommendation) is sampled into each prompt.",
    )
    repair_turns: int = Field(
        default=1,
        ge=0,
        le=3,
        description="Follow-up turns asking the model to fix a reply that gave no usable "
        "edit (format error, unchanged code, duplicate), showing the reason.",
    )
    reply_chars: int = Field(
        default=20000, ge=0, description="Each program keeps its LLM reply up to this; 0: none."
    )


class OperatorConfig(_Section):
    """Variation operators: what kind of change each proposal asks for, by weight."""

    diff: float = Field(default=1.0, ge=0, description="SEARCH/REPLACE edits of a few lines.")
    region: float = Field(
        default=2.0,
        ge=0,
        description="The EVOLVE-BLOCK's (or the changed functions') complete new code.",
    )
    rewrite: float = Field(default=0.5, ge=0, description="Complete new files.")
    crossover: float = Field(
        default=0.5, ge=0, description="Two programs shown; combine them (region format)."
    )
    line: float = Field(
        default=0.0,
        ge=0,
        description="One simple statement of the code (an assignment or a return) named "
        "for change; with llm.prefill the answer starts with that statement's left side.",
    )
    adaptive: Literal["off", "ucb", "thompson"] = Field(
        default="off",
        description="off: draw by weight; ucb or thompson: a bandit over the operators with "
        "a positive weight, credited with each child's improvement like the model bandit.",
    )
    ucb_c: float = Field(default=1.0, ge=0, description="adaptive = ucb: exploration weight.")

    @model_validator(mode="after")
    def _check(self) -> OperatorConfig:
        if not any(self.weights().values()):
            raise ValueError(
                "operators: give at least one of diff, region, rewrite, crossover, line "
                "a weight > 0"
            )
        return self

    def weights(self) -> dict[str, float]:
        """Operator name -> weight, in a fixed order."""
        return {
            "diff": self.diff,
            "region": self.region,
            "rewrite": self.rewrite,
            "crossover": self.crossover,
            "line": self.line,
        }


class MetaConfig(_Section):
    """Meta-recommendations: every ``interval`` evaluations an LLM call reviews recent results."""

    interval: int = Field(
        default=10, ge=0, description="Evaluated candidates between two reviews; 0: off."
    )
    recent: int = Field(default=8, gt=0, description="Improving and failing children shown.")
    max_chars: int = Field(default=1500, gt=0, description="Cap on one recommendation text.")


class NoveltyConfig(_Section):
    """Rejection of near-duplicates of the parent's island before evaluation."""

    threshold: float | None = Field(
        default=None, gt=0, le=1, description="Reject from this similarity on; unset: off."
    )
    method: Literal["minhash", "embedding"] = Field(
        default="minhash", description="minhash: token shingles, no model; embedding: a model."
    )
    shingle: int = Field(default=5, gt=0, description="minhash: tokens per shingle.")
    permutations: int = Field(default=128, gt=0, description="minhash: signature length.")
    max_attempts: int = Field(default=3, gt=0, description="Proposals per step, at most.")
    embedding_model: str | None = Field(
        default=None, description="embedding: litellm model name (openai/text-embedding-3-small)."
    )
    embedding_api_base: str | None = None
    embedding_api_key_env: str | None = None
    timeout_s: float = Field(default=60.0, gt=0, description="embedding: deadline per request.")

    @model_validator(mode="after")
    def _check(self) -> NoveltyConfig:
        if self.method == "embedding" and self.embedding_model is None:
            raise ValueError("novelty.method = embedding needs novelty.embedding_model")
        return self
