"""SQLAlchemy 2 declarative schema of the archive; migrations 0001 to 0003 create exactly it.

Timestamps are UNIX epoch seconds (float); JSON values are stored as text.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """Declarative base of the archive tables."""


class RunRow(Base):
    """One evolution run."""

    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    meta: Mapped[str] = mapped_column(Text, default="{}")
    evaluated: Mapped[int] = mapped_column(Integer, default=0)
    centroids: Mapped[str | None] = mapped_column(Text, nullable=True)


class ProgramRow(Base):
    """One candidate program of a run."""

    __tablename__ = "programs"
    __table_args__ = (
        Index("uq_programs_run_seq", "run_id", "seq", unique=True),
        Index("ix_programs_run_status", "run_id", "status", "seq"),
        Index("ix_programs_run_tree", "run_id", "tree"),
        Index("ix_programs_parent", "parent_id", "seq"),
        Index("ix_programs_run_owner", "run_id", "owner"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    run_id: Mapped[str] = mapped_column(String(64), ForeignKey("runs.id"))
    seq: Mapped[int] = mapped_column(Integer)
    parent_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    island: Mapped[int] = mapped_column(Integer)
    generation: Mapped[int] = mapped_column(Integer)
    commit: Mapped[str] = mapped_column(String(64))
    tree: Mapped[str] = mapped_column(String(64))
    files_changed: Mapped[str] = mapped_column(Text)
    model: Mapped[str | None] = mapped_column(String(200), nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    children: Mapped[int] = mapped_column(Integer, default=0)
    successes: Mapped[int] = mapped_column(Integer, default=0)
    clade_trials: Mapped[int] = mapped_column(Integer, default=0)
    clade_successes: Mapped[int] = mapped_column(Integer, default=0)
    owner: Mapped[str | None] = mapped_column(String(32), nullable=True)
    operator: Mapped[str] = mapped_column(String(64), default="")
    edit_kind: Mapped[str] = mapped_column(String(64), default="")
    templates: Mapped[str] = mapped_column(String(64), default="")


class EvaluationRow(Base):
    """The one stored evaluation of a program."""

    __tablename__ = "evaluations"

    program_id: Mapped[str] = mapped_column(String(32), ForeignKey("programs.id"), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    metrics: Mapped[str] = mapped_column(Text)
    features: Mapped[str] = mapped_column(Text)
    artifacts: Mapped[str] = mapped_column(Text)
    stage: Mapped[int] = mapped_column(Integer)
    duration_s: Mapped[float] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(Text)
    output_tail: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float)


class CellRow(Base):
    """The elite of one MAP-Elites cell of one island."""

    __tablename__ = "cells"
    __table_args__ = (Index("ix_cells_run_island_score", "run_id", "island", "score"),)

    run_id: Mapped[str] = mapped_column(String(64), ForeignKey("runs.id"), primary_key=True)
    island: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    program_id: Mapped[str] = mapped_column(String(32), ForeignKey("programs.id"))
    score: Mapped[float] = mapped_column(Float)


class LlmCallRow(Base):
    """One LLM call with its accounting."""

    __tablename__ = "llm_calls"
    __table_args__ = (Index("ix_llm_calls_run", "run_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(64), ForeignKey("runs.id"))
    program_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    model: Mapped[str] = mapped_column(String(200))
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    completion_tokens: Mapped[int] = mapped_column(Integer)
    cost_usd: Mapped[float] = mapped_column(Float)
    latency_s: Mapped[float] = mapped_column(Float)
    ok: Mapped[bool] = mapped_column(Boolean)
    error: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float)
    purpose: Mapped[str] = mapped_column(String(16), default="propose")


class WorkerRow(Base):
    """One ``cambrian run`` process working on a run; its heartbeat keeps its programs."""

    __tablename__ = "workers"
    __table_args__ = (Index("ix_workers_run", "run_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    run_id: Mapped[str] = mapped_column(String(64), ForeignKey("runs.id"))
    host: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[float] = mapped_column(Float)
    heartbeat_at: Mapped[float] = mapped_column(Float)


class MigrationRow(Base):
    """One elite placed on another island by a ring migration or an island reset."""

    __tablename__ = "migrations"
    __table_args__ = (Index("ix_migrations_run", "run_id", "island"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(64), ForeignKey("runs.id"))
    at_evaluated: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    island: Mapped[int] = mapped_column(Integer)
    key: Mapped[str] = mapped_column(String(200))
    program_id: Mapped[str] = mapped_column(String(32), ForeignKey("programs.id"))


class ReplyRow(Base):
    """The LLM reply a program came from, capped; kept to explain every rejection."""

    __tablename__ = "replies"

    program_id: Mapped[str] = mapped_column(String(32), ForeignKey("programs.id"), primary_key=True)
    text: Mapped[str] = mapped_column(Text)


class MetaNoteRow(Base):
    """One meta-recommendation: advice an LLM wrote from the run's recent results."""

    __tablename__ = "meta_notes"
    __table_args__ = (Index("ix_meta_notes_run", "run_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(64), ForeignKey("runs.id"))
    at_evaluated: Mapped[int] = mapped_column(Integer)
    model: Mapped[str] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float)
