"""The JSON API of the live view: runs, tree rows, cells, series, summary, notes, programs."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, HTTPException, Query

from cambrian.archive import ArchiveViews, GitLineage
from cambrian.errors import ArchiveError

#: Most failed or rejected programs sent in a full tree; the oldest beyond it are culled.
FAINT_LIMIT = 4000
#: Most characters of one diff, file, output tail or evaluator value sent; a marker follows.
TEXT_LIMIT = 200_000


@dataclass
class RunSource:
    """What the view knows about one run beyond its database rows.

    Args:
        run_id: The run.
        lineage: Its lineage repository (diffs and files), or None when unknown.
        is_editable: Which file paths the LLM may change (the full files shown).
        axes: MAP-Elites axes by name, each ``{"min", "max", "bins"}``, in key order.
        maximize: True when higher scores are better.
    """

    run_id: str
    lineage: GitLineage | None = None
    is_editable: Callable[[str], bool] | None = None
    axes: dict[str, dict[str, float]] = field(default_factory=dict)
    maximize: bool = True
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def describe(self) -> dict[str, Any]:
        """Return the JSON-ready description sent with the run list."""
        return {"axes": self.axes, "maximize": self.maximize, "lineage": self.lineage is not None}


def build_router(views: ArchiveViews, sources: dict[str, RunSource]) -> APIRouter:
    """Return the API routes over ``views``; ``sources`` adds lineage and config per run."""
    router = APIRouter(prefix="/api")

    def source(run_id: str) -> RunSource:
        return sources.get(run_id) or RunSource(run_id)

    @router.get("/runs")
    def runs() -> list[dict[str, Any]]:
        return [{**run, **source(run["id"]).describe()} for run in views.runs()]

    @router.get("/runs/{run_id}/version")
    def version(run_id: str) -> dict[str, float]:
        return {"version": views.version(run_id)}

    @router.get("/runs/{run_id}/tree")
    def tree(
        run_id: str, since: float = 0.0, limit: int = Query(FAINT_LIMIT, ge=0)
    ) -> dict[str, Any]:
        return views.tree(run_id, since=since, limit=limit if since == 0 else 0)

    @router.get("/runs/{run_id}/cells")
    def cells(run_id: str) -> list[dict[str, Any]]:
        return views.cells(run_id)

    @router.get("/runs/{run_id}/series")
    def series(run_id: str) -> dict[str, Any]:
        return views.series(run_id)

    @router.get("/runs/{run_id}/summary")
    def summary(run_id: str) -> dict[str, Any]:
        return views.summary(run_id)

    @router.get("/runs/{run_id}/meta-notes")
    def meta_notes(run_id: str, limit: int = Query(50, ge=1, le=500)) -> list[dict[str, Any]]:
        return views.meta_notes(run_id, limit=limit)

    @router.get("/runs/{run_id}/programs/{program_id}")
    def program(run_id: str, program_id: str) -> dict[str, Any]:
        found = views.program(run_id, program_id)
        if found is None:
            raise HTTPException(404, f"no program {program_id!r} in run {run_id!r}")
        parent = views.program(run_id, found["parent_id"]) if found["parent_id"] else None
        lineage = _lineage_view(source(run_id), found, parent)
        return {**found, "reason": _cap(found["reason"]), **lineage, "evaluation": _capped(found)}

    return router


def _lineage_view(
    src: RunSource, program: dict[str, Any], parent: dict[str, Any] | None
) -> dict[str, Any]:
    """The program's diff against its parent and its editable files, from the lineage."""
    if src.lineage is None or not program["commit"]:
        note = "no lineage repository for this run" if src.lineage is None else "no commit"
        return {"diff": "", "files": {}, "lineage_note": note}
    with src.lock:
        try:
            diff = src.lineage.diff(parent["commit"], program["commit"]) if parent else ""
            paths = src.lineage.list_files(program["commit"])
            wanted = [p for p in paths if src.is_editable is None or src.is_editable(p)]
            files = src.lineage.read_files(program["commit"], wanted[:50])
        except (ArchiveError, KeyError, ValueError) as exc:
            return {"diff": "", "files": {}, "lineage_note": f"lineage unreadable: {exc}"}
    files = {path: _cap(text) for path, text in files.items()}
    return {"diff": _cap(diff), "files": files, "lineage_note": ""}


def _cap(text: str) -> str:
    """``text`` cut to ``TEXT_LIMIT`` characters, with a line saying how much was cut."""
    if len(text) <= TEXT_LIMIT:
        return text
    shown = f"{TEXT_LIMIT:,} of {len(text):,} characters shown"
    return f"{text[:TEXT_LIMIT]}\n[cut by cambrian ui: {shown}]"


def _capped(program: dict[str, Any]) -> dict[str, Any] | None:
    """The program's evaluation with each text and evaluator value cut to ``TEXT_LIMIT``."""
    evaluation = program["evaluation"]
    if evaluation is None:
        return None
    out = {**evaluation, "reason": _cap(evaluation["reason"])}
    out["output_tail"] = _cap(evaluation["output_tail"])
    for name in ("metrics", "features", "artifacts"):
        out[name] = {key: _cap_value(value) for key, value in evaluation[name].items()}
    return out


def _cap_value(value: Any) -> Any:
    """A JSON value as is, or as its cut text when it is longer than ``TEXT_LIMIT``."""
    if isinstance(value, str):
        return _cap(value)
    if isinstance(value, list | dict) and len(text := json.dumps(value)) > TEXT_LIMIT:
        return _cap(text)
    return value
