"""Combine the stages of a cascade into one ``Evaluation``.

Each stage is a full evaluator run with its own result object. The cascade goes on while
every stage succeeds and meets its ``min_score``; the last stage's score is the
evaluation's. Metrics, features and artifacts of all the stages reached are merged,
later stages winning, so that an expensive stage need not repeat what a cheap one
measured.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cambrian.types import EvalStatus, Evaluation

#: Cap on the combined output tail of all stages.
TAIL_CHARS = 4000


def stage_score_key(number: int) -> str:
    """The metrics key holding stage ``number``'s score (``stage1_score``, ...)."""
    return f"stage{number}_score"


def meets(score: float, min_score: float | None, maximize: bool) -> bool:
    """Whether ``score`` passes a stage threshold (equal passes), in the run's direction."""
    if min_score is None:
        return True
    return score >= min_score if maximize else score <= min_score


@dataclass
class Cascade:
    """Folds stage evaluations, in order, into the cascade's one evaluation.

    Args:
        stages: How many stages the cascade has.
        maximize: Whether higher scores are better (``evaluator.direction``).

    Call ``take`` with each stage's evaluation while it returns True, then ``result``.

    Attributes:
        reached: How many stages have been taken so far.
    """

    stages: int
    maximize: bool = True
    reached: int = field(default=0, init=False)
    _metrics: dict[str, Any] = field(default_factory=dict, init=False)
    _features: dict[str, float] = field(default_factory=dict, init=False)
    _artifacts: dict[str, Any] = field(default_factory=dict, init=False)
    _tails: list[str] = field(default_factory=list, init=False)
    _duration_s: float = field(default=0.0, init=False)
    _end: tuple[EvalStatus, float | None, str] | None = field(default=None, init=False)

    def take(self, evaluation: Evaluation, min_score: float | None = None) -> bool:
        """Fold in the next stage's evaluation; return whether the next stage should run."""
        self.reached += 1
        self._duration_s += evaluation.duration_s
        self._tails.append(evaluation.output_tail)
        where = f"stage {self.reached} of {self.stages}"
        if not evaluation.ok:
            # Keep the failure's own first clause (timeout, oom, ...): reports group by it.
            suffix = f" ({where})" if self.stages > 1 else ""
            self._end = (evaluation.status, None, evaluation.reason + suffix)
            return False
        score = float(evaluation.score)  # type: ignore[arg-type]
        self._metrics.update(evaluation.metrics)
        if self.stages > 1:
            self._metrics[stage_score_key(self.reached)] = score
        self._features.update(evaluation.features)
        self._artifacts.update(evaluation.artifacts)
        if not meets(score, min_score, self.maximize):
            side = "below" if self.maximize else "above"
            reason = f"cascade stopped at {where}: score {score:.6g} is {side} min_score"
            self._end = (EvalStatus.STOPPED, score, f"{reason} {min_score:g}")
            return False
        self._end = (EvalStatus.OK, score, "")
        return self.reached < self.stages

    def result(self) -> Evaluation:
        """The evaluation of the cascade: the last stage reached, with everything merged.

        Raises:
            ValueError: No stage was taken yet.
        """
        if self._end is None:
            raise ValueError("cascade: no stage evaluated yet; call take() first")
        status, score, reason = self._end
        return Evaluation(
            status=status,
            score=score,
            metrics=self._metrics,
            features=self._features,
            artifacts=self._artifacts,
            stage=self.reached,
            duration_s=self._duration_s,
            reason=reason,
            output_tail=self._tail(),
        )

    def _tail(self) -> str:
        """The stages' output tails; each headed by its stage when there are several."""
        if self.stages == 1:
            return self._tails[0][-TAIL_CHARS:]
        parts = [f"[stage {n}]\n{tail}" for n, tail in enumerate(self._tails, 1) if tail.strip()]
        return "\n".join(parts)[-TAIL_CHARS:]
