"""Conversions between archive rows and the core dataclasses (no I/O)."""

from __future__ import annotations

import json
from typing import Any

from cambrian.types import EvalStatus, Evaluation, Program, ProgramStatus


def program_from_row(row: Any) -> Program:
    """Build a ``Program`` from a ``programs`` row."""
    return Program(
        id=row.id,
        parent_id=row.parent_id,
        island=row.island,
        generation=row.generation,
        commit=row.commit,
        tree=row.tree,
        files_changed=tuple(json.loads(row.files_changed)),
        model=row.model,
        status=ProgramStatus(row.status),
        reason=row.reason,
        operator=row.operator,
        edit_kind=row.edit_kind,
        templates=row.templates,
    )


def program_values(program: Program, run_id: str, seq: int, now: float) -> dict[str, Any]:
    """Return the ``programs`` column values of ``program``."""
    return {
        "id": program.id,
        "run_id": run_id,
        "seq": seq,
        "parent_id": program.parent_id,
        "island": program.island,
        "generation": program.generation,
        "commit": program.commit,
        "tree": program.tree,
        "files_changed": json.dumps(list(program.files_changed)),
        "model": program.model,
        "status": str(program.status),
        "reason": program.reason,
        "operator": program.operator,
        "edit_kind": program.edit_kind,
        "templates": program.templates,
        "created_at": now,
        "updated_at": now,
    }


def evaluation_from_row(row: Any) -> Evaluation:
    """Build an ``Evaluation`` from an ``evaluations`` row."""
    return Evaluation(
        status=EvalStatus(row.status),
        score=row.score,
        metrics=json.loads(row.metrics),
        features=json.loads(row.features),
        artifacts=json.loads(row.artifacts),
        stage=row.stage,
        duration_s=row.duration_s,
        reason=row.reason,
        output_tail=row.output_tail,
    )


def evaluation_values(program_id: str, evaluation: Evaluation, now: float) -> dict[str, Any]:
    """Return the ``evaluations`` column values of ``evaluation``."""
    return {
        "program_id": program_id,
        "status": str(evaluation.status),
        "score": evaluation.score,
        "metrics": _dumps(evaluation.metrics),
        "features": _dumps(evaluation.features),
        "artifacts": _dumps(evaluation.artifacts),
        "stage": evaluation.stage,
        "duration_s": evaluation.duration_s,
        "reason": evaluation.reason,
        "output_tail": evaluation.output_tail,
        "created_at": now,
    }


def _dumps(value: Any) -> str:
    """Serialise a mapping to JSON text, stringifying what JSON cannot hold."""
    return json.dumps(dict(value), default=str)
