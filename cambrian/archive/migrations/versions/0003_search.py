"""Search provenance: each program's operator, edit kind and template set, its kept reply,
the purpose of each LLM call, and the run's meta-recommendations.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_PROVENANCE = ("operator", "edit_kind", "templates")


def upgrade() -> None:
    with op.batch_alter_table("programs") as batch:
        for name in _PROVENANCE:
            batch.add_column(sa.Column(name, sa.String(64), nullable=False, server_default=""))
    with op.batch_alter_table("llm_calls") as batch:
        batch.add_column(
            sa.Column("purpose", sa.String(16), nullable=False, server_default="propose")
        )
    op.create_table(
        "replies",
        sa.Column("program_id", sa.String(32), sa.ForeignKey("programs.id"), primary_key=True),
        sa.Column("text", sa.Text(), nullable=False),
    )
    op.create_table(
        "meta_notes",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.id"), nullable=False),
        sa.Column("at_evaluated", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_meta_notes_run", "meta_notes", ["run_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_meta_notes_run", table_name="meta_notes")
    op.drop_table("meta_notes")
    op.drop_table("replies")
    with op.batch_alter_table("llm_calls") as batch:
        batch.drop_column("purpose")
    with op.batch_alter_table("programs") as batch:
        for name in _PROVENANCE:
            batch.drop_column(name)
