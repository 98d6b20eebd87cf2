"""Engine creation (SQLite pragmas and locking) and Alembic migrations run in code."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event

MIGRATIONS_DIR = Path(__file__).with_name("migrations")

#: Execution option marking a connection whose transactions only read (SQLite: BEGIN DEFERRED).
READONLY = "cambrian_readonly"

# Alembic keeps the running migration context in module globals: one upgrade at a time.
_UPGRADE_LOCK = threading.Lock()


def make_engine(url: str) -> Engine:
    """Create the engine for ``url``; SQLite gets WAL, a 30 s busy timeout and foreign keys.

    On SQLite, write transactions start with ``BEGIN IMMEDIATE`` so that concurrent writers
    queue on the busy timeout instead of failing with "database is locked" mid-transaction;
    connections with the ``READONLY`` execution option start with ``BEGIN DEFERRED``.

    Args:
        url: Any SQLAlchemy URL.
    """
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})
        _install_sqlite_hooks(engine)
        return engine
    return create_engine(url, pool_pre_ping=True)


def _install_sqlite_hooks(engine: Engine) -> None:
    """Set the pragmas on each new connection and take over transaction begin."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event emit BEGIN instead of the sqlite3 module.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        # WAL + NORMAL never corrupts and survives process kills; only power loss may drop
        # the last commits.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        readonly = connection.get_execution_options().get(READONLY, False)
        connection.exec_driver_sql("BEGIN DEFERRED" if readonly else "BEGIN IMMEDIATE")


def alembic_config() -> Config:
    """Return an Alembic config pointing into the package (no alembic.ini on disk)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    return config


def upgrade(engine: Engine) -> None:
    """Migrate the database behind ``engine`` to the newest schema (a no-op when current).

    Args:
        engine: An engine made by ``make_engine``.
    """
    config = alembic_config()
    with _UPGRADE_LOCK, engine.connect() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
        connection.commit()
