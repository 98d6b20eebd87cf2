"""The ui room: a live web view of one archive (lineage tree, MAP-Elites grid, charts).

It reads the archive only (``ArchiveViews`` and ``GitLineage``); needs the ``ui`` extra.
"""

from cambrian.ui._api import FAINT_LIMIT, TEXT_LIMIT, RunSource
from cambrian.ui._app import LOOPBACK, create_app, resolve_token, serve, static_dir

__all__ = [
    "FAINT_LIMIT",
    "LOOPBACK",
    "RunSource",
    "TEXT_LIMIT",
    "create_app",
    "resolve_token",
    "serve",
    "static_dir",
]
