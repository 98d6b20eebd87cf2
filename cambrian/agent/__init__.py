"""The evolution loop: select parent -> prompt -> LLM -> apply edit -> evaluate -> insert."""

from cambrian.agent._edits import EditResult, apply_reply, evolve_regions_intact
from cambrian.agent._files import FileRules
from cambrian.agent._islands import choose_islands
from cambrian.agent._loop import Event, Evolution
from cambrian.agent._records import RunRecords, open_records
from cambrian.agent._run_files import read_run_files
from cambrian.agent._setup import RunContext, default_run_dir, open_run, resolve_run_dir

__all__ = [
    "EditResult",
    "Event",
    "Evolution",
    "FileRules",
    "RunContext",
    "RunRecords",
    "apply_reply",
    "choose_islands",
    "default_run_dir",
    "evolve_regions_intact",
    "open_records",
    "open_run",
    "read_run_files",
    "resolve_run_dir",
]
