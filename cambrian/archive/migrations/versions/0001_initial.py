"""Initial archive schema: runs, programs, evaluations, cells, llm_calls.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    _create_runs_and_programs()
    _create_evaluations_and_cells()
    _create_llm_calls()


def _create_runs_and_programs() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("meta", sa.Text(), nullable=False),
    )
    op.create_table(
        "programs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.id"), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("parent_id", sa.String(32), nullable=True),
        sa.Column("island", sa.Integer(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("commit", sa.String(64), nullable=False),
        sa.Column("tree", sa.String(64), nullable=False),
        sa.Column("files_changed", sa.Text(), nullable=False),
        sa.Column("model", sa.String(200), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
    )
    op.create_index("uq_programs_run_seq", "programs", ["run_id", "seq"], unique=True)
    op.create_index("ix_programs_run_status", "programs", ["run_id", "status", "seq"])
    op.create_index("ix_programs_run_tree", "programs", ["run_id", "tree"])
    op.create_index("ix_programs_parent", "programs", ["parent_id", "seq"])


def _create_evaluations_and_cells() -> None:
    op.create_table(
        "evaluations",
        sa.Column("program_id", sa.String(32), sa.ForeignKey("programs.id"), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("metrics", sa.Text(), nullable=False),
        sa.Column("features", sa.Text(), nullable=False),
        sa.Column("artifacts", sa.Text(), nullable=False),
        sa.Column("stage", sa.Integer(), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("output_tail", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
    )
    op.create_table(
        "cells",
        sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.id"), primary_key=True),
        sa.Column("island", sa.Integer(), primary_key=True),
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("program_id", sa.String(32), sa.ForeignKey("programs.id"), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
    )


def _create_llm_calls() -> None:
    op.create_table(
        "llm_calls",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.id"), nullable=False),
        sa.Column("program_id", sa.String(32), nullable=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=False),
        sa.Column("latency_s", sa.Float(), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_llm_calls_run", "llm_calls", ["run_id"])


def downgrade() -> None:
    op.drop_index("ix_llm_calls_run", table_name="llm_calls")
    op.drop_table("llm_calls")
    op.drop_table("cells")
    op.drop_table("evaluations")
    op.drop_index("ix_programs_parent", table_name="programs")
    op.drop_index("ix_programs_run_tree", table_name="programs")
    op.drop_index("ix_programs_run_status", table_name="programs")
    op.drop_index("uq_programs_run_seq", table_name="programs")
    op.drop_table("programs")
    op.drop_table("runs")
