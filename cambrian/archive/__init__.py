"""The archive room: SQL store of programs, MAP-Elites cells, parent selection, git lineage."""

from cambrian.archive._cells import bin_index, cell_key, is_better
from cambrian.archive._ledger import CallRecord
from cambrian.archive._lineage import GitLineage
from cambrian.archive._selection import (
    SELECTION_POLICIES,
    pick_inspirations,
    rank_weights,
    select_parent,
)
from cambrian.archive._store import SqlArchive, new_program_id
from cambrian.archive._views import ArchiveViews

__all__ = [
    "SELECTION_POLICIES",
    "ArchiveViews",
    "CallRecord",
    "GitLineage",
    "SqlArchive",
    "bin_index",
    "cell_key",
    "is_better",
    "new_program_id",
    "pick_inspirations",
    "rank_weights",
    "select_parent",
]
