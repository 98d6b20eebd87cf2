import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from cambrian.archive import CallRecord, SqlArchive, new_program_id
from cambrian.archive._schema import Base
from cambrian.config import ArchiveConfig
from cambrian.errors import ArchiveError
from cambrian.types import AddStatus, EvalStatus, Evaluation, Program, ProgramStatus

AXES = {"size": {"min": 0, "max": 10, "bins": 5}}


def make(tmp_path, run_id="run1", maximize=True, **config):
    archive = SqlArchive(
        ArchiveConfig(**config),
        url=f"sqlite:///{tmp_path / 'a.db'}",
        run_id=run_id,
        maximize=maximize,
        seed=0,
    )
    archive.ensure_run({"task": "demo"})
    return archive


def program(archive, parent=None, island=0, status=ProgramStatus.PROPOSED, **kw):
    p = Program(
        id=kw.pop("id", None) or new_program_id(),
        parent_id=parent,
        island=island,
        generation=0 if parent is None else 1,
        commit=kw.pop("commit", "c" * 40),
        tree=kw.pop("tree", "t" * 40),
        status=status,
        **kw,
    )
    archive.new_program(p)
    return p


def ok(score, **features):
    return Evaluation(status=EvalStatus.OK, score=score, features=features, metrics={"m": 1})


@pytest.fixture
def archive(tmp_path):
    a = make(tmp_path)
    yield a
    a.close()


def test_construction_touches_nothing(tmp_path):
    SqlArchive(ArchiveConfig(), url=f"sqlite:///{tmp_path / 'x.db'}", run_id="r")
    assert not (tmp_path / "x.db").exists()
    with pytest.raises(ValueError, match="run_id"):
        SqlArchive(ArchiveConfig(), url="sqlite://", run_id="")


def test_schema_matches_models_and_sqlite_settings(archive, tmp_path):
    archive.open()
    engine = create_engine(f"sqlite:///{tmp_path / 'a.db'}")
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    engine.dispose()
    raw = sqlite3.connect(tmp_path / "a.db")
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    raw.close()
    # Foreign keys are enforced: a program cannot point at an unknown run.
    other = SqlArchive(ArchiveConfig(), url=f"sqlite:///{tmp_path / 'a.db'}", run_id="ghost")
    with pytest.raises(ValueError, match="cannot insert"):
        program(other)
    with pytest.raises(ArchiveError, match="ghost"):
        other.run_meta()


def test_run_rows_and_persistence(tmp_path):
    a = make(tmp_path)
    assert a.ensure_run({"other": 1}) is False
    assert a.run_meta() == {"task": "demo"}
    root = program(a, files_changed=("x.py",), model=None)
    a.close()
    b = SqlArchive(ArchiveConfig(), url=f"sqlite:///{tmp_path / 'a.db'}", run_id="run1")
    assert b.get(root.id) == root
    assert b.root() == root
    b.close()


def test_program_round_trip_and_prefixes(archive):
    root = program(archive, id="abc000000001")
    child = program(
        archive,
        parent=root.id,
        id="abc100000002",
        files_changed=("a.py", "b/c.py"),
        model="gpt",
        island=0,
    )
    assert archive.get("abc100000002") == child
    assert archive.get("ABC1") == child
    assert archive.get("abc0") == root
    for bad in ("abc", "zz", "", "ffff"):
        with pytest.raises(KeyError):
            archive.get(bad)
    with pytest.raises(ValueError, match="cannot insert"):
        program(archive, id="abc000000001")
    with pytest.raises(ValueError, match="proposed or rejected"):
        program(archive, status=ProgramStatus.EVALUATED)
    assert len(new_program_id()) == 12 and new_program_id() != new_program_id()


def test_add_keeps_strictly_better_when_maximizing(archive):
    root = program(archive)
    assert archive.add(root, ok(1.0)) is AddStatus.NEW_CELL
    better, equal, worse = (program(archive, parent=root.id) for _ in range(3))
    assert archive.add(equal, ok(1.0)) is AddStatus.NOT_ADDED
    assert archive.add(worse, ok(0.5)) is AddStatus.NOT_ADDED
    assert archive.add(better, ok(2.0)) is AddStatus.IMPROVED
    assert archive.sample_parent(0).id == better.id
    assert archive.best()[0].id == better.id and archive.best()[1].score == 2.0
    assert archive.get(worse.id).status is ProgramStatus.EVALUATED
    assert archive.evaluation(worse.id) == ok(0.5)


def test_add_keeps_strictly_better_when_minimizing(tmp_path):
    a = make(tmp_path, maximize=False)
    root = program(a)
    assert a.add(root, ok(1.0)) is AddStatus.NEW_CELL
    assert a.add(program(a, parent=root.id), ok(1.0)) is AddStatus.NOT_ADDED
    assert a.add(program(a, parent=root.id), ok(3.0)) is AddStatus.NOT_ADDED
    low = program(a, parent=root.id)
    assert a.add(low, ok(-1.0)) is AddStatus.IMPROVED
    assert a.best()[0].id == low.id
    assert a.stats()["best_score"] == -1.0
    a.close()


def test_failed_evaluations_never_enter_cells(archive):
    root = program(archive)
    failed = Evaluation(status=EvalStatus.TIMEOUT, score=None, reason="timed out after 5 s")
    assert archive.add(root, failed) is AddStatus.NOT_ADDED
    crashed = program(archive)
    # An error with a score is still a failure.
    assert archive.add(crashed, Evaluation(status=EvalStatus.ERROR, score=99.0)) is (
        AddStatus.NOT_ADDED
    )
    assert archive.sample_parent(0) is None
    assert archive.best() is None
    assert archive.get(root.id).status is ProgramStatus.FAILED
    assert archive.get(root.id).reason == "timed out after 5 s"
    assert archive.get(crashed.id).reason == "evaluation error"
    assert archive.stats()["cells"] == 0
    with pytest.raises(ValueError, match="evaluation"):
        archive.add(root, ok(1.0))  # one evaluation per program


def test_add_inserts_a_program_never_stored(archive):
    loose = Program(id=new_program_id(), parent_id=None, island=0, generation=0, commit="c")
    assert archive.add(loose, ok(3.0)) is AddStatus.NEW_CELL
    assert archive.get(loose.id).status is ProgramStatus.EVALUATED


def test_features_and_islands_pick_cells(tmp_path):
    a = make(tmp_path, features=AXES, islands=2)
    root = program(a)
    assert a.add(root, ok(1.0, size=1)) is AddStatus.NEW_CELL
    small = program(a, parent=root.id)
    big = program(a, parent=root.id)
    other_island = program(a, parent=root.id, island=1)
    assert a.add(small, ok(0.5, size=0.5)) is AddStatus.NOT_ADDED  # same cell "0", worse
    assert a.add(big, ok(0.1, size=9)) is AddStatus.NEW_CELL  # cell "4"
    assert a.add(other_island, ok(0.2, size=1)) is AddStatus.NEW_CELL
    assert a.stats()["cells"] == 3
    seen = {a.sample_parent(0).id for _ in range(50)}
    assert seen == {root.id, big.id}
    assert {a.sample_parent(1).id for _ in range(10)} == {other_island.id}
    assert a.sample_parent(5) is None
    a.close()


def test_fitness_selection_prefers_better_elites(tmp_path):
    a = make(tmp_path, features=AXES, selection="fitness")
    ids = []
    for size, score in [(1, 1.0), (3, 2.0), (5, 3.0), (7, 4.0)]:
        p = program(a)
        a.add(p, ok(score, size=size))
        ids.append(p.id)
    counts = {pid: 0 for pid in ids}
    for _ in range(1000):
        counts[a.sample_parent(0).id] += 1
    assert counts[ids[3]] > counts[ids[0]] * 2
    a.close()


def test_inspirations_exclude_parent(tmp_path):
    a = make(tmp_path, features=AXES)
    elites = []
    for size, score in [(1, 1.0), (3, 5.0), (5, 3.0), (7, 4.0)]:
        p = program(a)
        a.add(p, ok(score, size=size))
        elites.append(p)
    parent = elites[1]  # the best one
    for _ in range(20):
        got = a.sample_inspirations(parent, 2, top_k=1)
        assert len(got) == 2 and len({p.id for p in got}) == 2
        assert parent.id not in {p.id for p in got}
        assert got[0].id == elites[3].id  # best other elite first
    assert a.sample_inspirations(parent, 0) == []
    assert {p.id for p in a.sample_inspirations(parent, 10)} == {e.id for e in elites[::2]} | {
        elites[3].id
    }
    a.close()


def test_inspirations_fill_from_best_evaluated_when_few_elites(archive):
    root = program(archive)
    archive.add(root, ok(1.0))
    kids = [program(archive, parent=root.id) for _ in range(3)]
    for kid, score in zip(kids, [0.5, 0.9, 0.1], strict=True):
        archive.add(kid, ok(score))
    archive.add(program(archive, parent=root.id), Evaluation(status=EvalStatus.ERROR))
    got = archive.sample_inspirations(root, 2)
    assert [p.id for p in got] == [kids[1].id, kids[0].id]


def test_pending_and_resume(tmp_path):
    a = make(tmp_path)
    root = program(a)
    a.add(root, ok(1.0))
    p1, p2, p3 = (program(a, parent=root.id) for _ in range(3))
    rejected = program(a, parent=root.id, status=ProgramStatus.REJECTED, reason="bad edit")
    a.set_status(p1.id, ProgramStatus.EVALUATING)
    a.set_status(p2.id, ProgramStatus.INTERRUPTED, "ctrl-c")
    assert [p.id for p in a.pending()] == [p1.id, p2.id, p3.id]
    a.close()
    resumed = SqlArchive(ArchiveConfig(), url=f"sqlite:///{tmp_path / 'a.db'}", run_id="run1")
    pending = resumed.pending()
    assert [p.status for p in pending] == [
        ProgramStatus.EVALUATING,
        ProgramStatus.INTERRUPTED,
        ProgramStatus.PROPOSED,
    ]
    assert pending[1].reason == "ctrl-c"
    assert resumed.add(p2, ok(2.0)) is AddStatus.IMPROVED
    assert [p.id for p in resumed.pending()] == [p1.id, p3.id]
    assert rejected.id not in {p.id for p in resumed.pending()}
    with pytest.raises(KeyError):
        resumed.set_status("000000000000", ProgramStatus.EVALUATING)
    resumed.close()


def test_has_tree_ignores_rejected(archive):
    program(archive, tree="a" * 40)
    program(archive, tree="b" * 40, status=ProgramStatus.REJECTED, reason="dup")
    assert archive.has_tree("a" * 40)
    assert not archive.has_tree("b" * 40)
    assert not archive.has_tree("c" * 40)
    assert not archive.has_tree("")


def test_recent_rejections_newest_first(archive):
    root = program(archive)
    other = program(archive)
    program(archive, parent=root.id, status=ProgramStatus.REJECTED, reason="first")
    program(archive, parent=other.id, status=ProgramStatus.REJECTED, reason="elsewhere")
    failing = program(archive, parent=root.id)
    archive.add(failing, Evaluation(status=EvalStatus.ERROR, reason="second"))
    archive.add(program(archive, parent=root.id), ok(1.0))
    program(archive, parent=root.id, status=ProgramStatus.REJECTED, reason="third")
    assert archive.recent_rejections(root.id, 5) == ["third", "second", "first"]
    assert archive.recent_rejections(root.id, 2) == ["third", "second"]
    assert archive.recent_rejections(root.id, 0) == []


def test_stats(archive):
    root = program(archive)
    archive.add(root, ok(1.0))
    child = program(archive, parent=root.id)
    archive.add(child, ok(4.0))
    program(archive, parent=root.id, status=ProgramStatus.REJECTED, reason="no edit")
    archive.record_llm_call(child.id, "m1", prompt_tokens=100, completion_tokens=20, cost_usd=0.5)
    archive.record_llm_call(None, "m1", ok=False, error="timeout", latency_s=3.0)
    stats = archive.stats()
    assert stats["run_id"] == "run1"
    assert stats["programs"] == 3
    assert stats["by_status"]["evaluated"] == 2 and stats["by_status"]["rejected"] == 1
    assert stats["by_status"]["failed"] == 0
    assert stats["evaluated"] == 1  # the initial program is not a candidate
    assert stats["best_score"] == 4.0 and stats["best_program"] == child.id
    assert stats["llm_calls"] == 2
    assert stats["prompt_tokens"] == 100 and stats["completion_tokens"] == 20
    assert stats["cost_usd"] == pytest.approx(0.5)
    assert stats["elapsed_s"] >= 0.0
    assert stats["islands"] == 1 and stats["cells"] == 1


def test_concurrent_writers_get_distinct_seqs(tmp_path):
    make(tmp_path).close()

    def writer():
        a = SqlArchive(ArchiveConfig(), url=f"sqlite:///{tmp_path / 'a.db'}", run_id="run1")
        try:
            for _ in range(40):
                a.add(program(a), ok(1.0))
        finally:
            a.close()

    with ThreadPoolExecutor(3) as pool:
        for future in [pool.submit(writer) for _ in range(3)]:
            future.result()  # re-raises "database is locked" or a seq collision
    a = make(tmp_path)
    assert a.stats()["programs"] == 120
    assert a.stats()["by_status"]["evaluated"] == 120
    a.close()


def test_hot_path_is_fast(archive):
    root = program(archive)
    archive.add(root, ok(0.0))
    start = time.perf_counter()
    n = 100
    for i in range(n):
        p = Program(id=new_program_id(), parent_id=root.id, island=0, generation=1, commit="c")
        archive.new_program(p)
        archive.set_status(p.id, ProgramStatus.EVALUATING)
        archive.add(p, ok(float(i)))
        archive.sample_parent(0)
    per_candidate_ms = (time.perf_counter() - start) / n * 1000
    assert per_candidate_ms < 20, per_candidate_ms


def test_a_new_program_is_stored_with_its_reply_and_calls_in_one_transaction(archive):
    root = program(archive)
    archive.add(root, ok(1.0))
    child = replace(root, id="c" * 12, parent_id=root.id, generation=1, tree="t-child")
    calls = [
        CallRecord("m1", prompt_tokens=100, completion_tokens=20, cost_usd=0.5, latency_s=2.0),
        CallRecord("m1", prompt_tokens=120, completion_tokens=10, purpose="repair"),
        CallRecord("m1", ok=False, error="timeout", purpose="repair"),
    ]
    archive.new_program(child, reply="the reply", calls=calls)
    assert archive.reply(child.id) == "the reply"
    stats = archive.stats()
    assert stats["llm_calls"] == 3 and stats["prompt_tokens"] == 220
    assert stats["cost_usd"] == pytest.approx(0.5)
    # A program that cannot be stored leaves neither its reply nor its calls behind.
    with pytest.raises(ValueError, match="cannot insert"):
        archive.new_program(child, reply="again", calls=calls)
    assert archive.reply(child.id) == "the reply" and archive.stats()["llm_calls"] == 3
    with pytest.raises(ValueError, match="purpose"):
        CallRecord("m1", purpose="chat")
