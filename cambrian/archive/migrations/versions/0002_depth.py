"""Archive depth: selection counters, worker ownership, run counters, CVT, migrations log.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_PROGRAM_COUNTERS = ("children", "successes", "clade_trials", "clade_successes")


def upgrade() -> None:
    with op.batch_alter_table("programs") as batch:
        for name in _PROGRAM_COUNTERS:
            batch.add_column(sa.Column(name, sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("owner", sa.String(32), nullable=True))
    op.create_index("ix_programs_run_owner", "programs", ["run_id", "owner"])
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("evaluated", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("centroids", sa.Text(), nullable=True))
    op.create_index("ix_cells_run_island_score", "cells", ["run_id", "island", "score"])
    _create_workers_and_migrations()
    _backfill()


def _create_workers_and_migrations() -> None:
    op.create_table(
        "workers",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.id"), nullable=False),
        sa.Column("host", sa.String(200), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("heartbeat_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_workers_run", "workers", ["run_id"])
    op.create_table(
        "migrations",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.id"), nullable=False),
        sa.Column("at_evaluated", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("island", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("program_id", sa.String(32), sa.ForeignKey("programs.id"), nullable=False),
    )
    op.create_index("ix_migrations_run", "migrations", ["run_id", "island"])


def _backfill() -> None:
    """Counters of runs made before 0002: evaluated candidates, and children per program."""
    op.execute(
        "UPDATE runs SET evaluated = (SELECT count(*) FROM evaluations e JOIN programs p"
        " ON p.id = e.program_id WHERE p.run_id = runs.id AND p.parent_id IS NOT NULL)"
    )
    op.execute(
        "UPDATE programs SET children = (SELECT count(*) FROM programs c JOIN evaluations e"
        " ON e.program_id = c.id WHERE c.parent_id = programs.id)"
    )


def downgrade() -> None:
    op.drop_index("ix_migrations_run", table_name="migrations")
    op.drop_table("migrations")
    op.drop_index("ix_workers_run", table_name="workers")
    op.drop_table("workers")
    op.drop_index("ix_cells_run_island_score", table_name="cells")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("centroids")
        batch.drop_column("evaluated")
    op.drop_index("ix_programs_run_owner", table_name="programs")
    with op.batch_alter_table("programs") as batch:
        batch.drop_column("owner")
        for name in _PROGRAM_COUNTERS:
            batch.drop_column(name)
