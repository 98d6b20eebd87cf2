"""A private PostgreSQL cluster for the archive tests: initdb + pg_ctl on a loopback port."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_BIN = Path(os.environ.get("CAMBRIAN_PG_BIN", "/usr/lib/postgresql/15/bin"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_postgres(*args: str) -> list[str]:
    """Run as the postgres user when root (initdb refuses root)."""
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else list(args)


def postgres_available() -> bool:
    """Whether the binaries and the driver are here."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return False
    return (PG_BIN / "initdb").exists() and (os.geteuid() != 0 or shutil.which("runuser"))


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[str | None]:
    """Start a throwaway cluster; yield its SQLAlchemy URL (None when PostgreSQL is missing)."""
    if not postgres_available():
        yield None
        return
    root = Path(tempfile.mkdtemp(prefix="cambrian-pg-"))
    data = root / "data"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    port = _free_port()
    subprocess.run(
        _as_postgres(
            str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"
        ),
        check=True,
        capture_output=True,
    )
    opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
    start = [
        str(PG_BIN / "pg_ctl"),
        "-D",
        str(data),
        "-o",
        opts,
        "-l",
        str(root / "log"),
        "-w",
        "start",
    ]
    subprocess.run(_as_postgres(*start), check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        stop = [str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]
        subprocess.run(_as_postgres(*stop), capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def new_database(cluster_url: str, name: str) -> str:
    """Create database ``name`` in the test cluster; return its URL."""
    from sqlalchemy import create_engine, text

    admin = create_engine(cluster_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"create database {name}"))
    admin.dispose()
    return cluster_url.rsplit("/", 1)[0] + f"/{name}"
