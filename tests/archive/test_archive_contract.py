"""Archive contract, pyribs-style: the same tests over SQLite and a private PostgreSQL."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import need_engine
from fixtures_postgres import pg_cluster  # noqa: F401 - session fixture

from cambrian.archive import SqlArchive, new_program_id
from cambrian.config import ArchiveConfig
from cambrian.types import AddStatus, EvalStatus, Evaluation, Program, ProgramStatus

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(params=BACKENDS)
def make(request, tmp_path):
    """Factory of archives on one database: make(run_id=None, maximize=True, **config)."""
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_cluster")
        need_engine(url is not None, "PostgreSQL (initdb, pg_ctl, psycopg)")
    else:
        url = f"sqlite:///{tmp_path / 'a.db'}"
    opened = []
    default_run = uuid.uuid4().hex[:12]

    def factory(run_id=None, maximize=True, seed=0, **config):
        archive = SqlArchive(
            ArchiveConfig(**config),
            url=url,
            run_id=run_id or default_run,
            maximize=maximize,
            seed=seed,
        )
        archive.ensure_run({"task": "t"})
        opened.append(archive)
        return archive

    yield factory
    for archive in opened:
        archive.close()


def child(archive, parent=None, island=0):
    p = Program(
        id=new_program_id(),
        parent_id=None if parent is None else parent.id,
        island=island,
        generation=0 if parent is None else parent.generation + 1,
        commit=uuid.uuid4().hex + "00000000",
        tree=uuid.uuid4().hex,
    )
    archive.new_program(p)
    return p


def ok(score, metrics=None, **features):
    return Evaluation(status=EvalStatus.OK, score=score, features=features, metrics=metrics or {})


AXES = {"x": {"min": 0, "max": 10, "bins": 5}, "y": {"min": 0, "max": 1, "bins": 2}}


def test_add_replace_ties_and_edges(make):
    a = make(features=AXES)
    root = child(a)
    assert a.add(root, ok(1.0, x=1, y=0.1)) is AddStatus.NEW_CELL
    tie = child(a, root)
    assert a.add(tie, ok(1.0, x=1.5, y=0.2)) is AddStatus.NOT_ADDED  # tie: the elite stays
    better = child(a, root)
    assert a.add(better, ok(2.0, x=0.0, y=0.0)) is AddStatus.IMPROVED
    far = child(a, root)
    assert a.add(far, ok(0.5, x=99, y=-5)) is AddStatus.NEW_CELL  # clamps to the edge bins
    assert a.cell_of({"x": 99, "y": -5}) == "4,0"
    failed = child(a, root)
    assert a.add(failed, Evaluation(status=EvalStatus.ERROR, reason="boom")) is AddStatus.NOT_ADDED
    assert a.best()[0].id == better.id
    assert a.stats()["cells"] == 2 and a.evaluated_count() == 4
    with pytest.raises(ValueError, match="evaluation"):
        a.add(better, ok(3.0))


def test_minimize_keeps_the_lower_score(make):
    a = make(maximize=False)
    root = child(a)
    a.add(root, ok(5.0))
    low = child(a, root)
    assert a.add(low, ok(1.0)) is AddStatus.IMPROVED
    assert a.add(child(a, root), ok(3.0)) is AddStatus.NOT_ADDED
    assert a.best()[0].id == low.id


@pytest.mark.parametrize(
    "policy", ["uniform", "fitness", "power_law", "dgm", "thompson", "tournament"]
)
def test_every_policy_samples_an_elite_of_the_island(make, policy):
    a = make(selection=policy, islands=2, features={"x": {"min": 0, "max": 4, "bins": 4}})
    assert a.sample_parent(0) is None
    root = child(a)
    a.add(root, ok(0.0, x=0))
    elites = {root.id}
    for i in range(1, 4):
        p = child(a, root)
        a.add(p, ok(float(i), x=i))
        elites.add(p.id)
    other = child(a, root, island=1)
    a.add(other, ok(9.0, x=0))
    picks = {a.sample_parent(0).id for _ in range(60)}
    assert picks <= elites and len(picks) >= 2
    assert a.sample_parent(1).id == other.id


def test_greedy_always_returns_the_best_elite(make):
    axis = {"x": {"min": 0, "max": 4, "bins": 4}}
    a = make(selection="greedy", islands=2, features=axis)
    assert a.sample_parent(0) is None
    root = child(a)
    a.add(root, ok(1.0, x=0))
    first_best = child(a, root)
    a.add(first_best, ok(3.0, x=1))
    a.add(child(a, root), ok(3.0, x=2))  # ties the best in another cell: the earliest wins
    a.add(child(a, root), ok(2.0, x=3))
    a.add(child(a, root), Evaluation(status=EvalStatus.ERROR, reason="boom"))
    a.add(child(a, root, island=1), ok(9.0, x=0))  # another island's best is not a parent here
    assert {a.sample_parent(0).id for _ in range(20)} == {first_best.id}
    low = make(run_id=uuid.uuid4().hex[:12], maximize=False, selection="greedy", features=axis)
    lows = [child(low) for _ in range(3)]
    for p, score in zip(lows, (2.0, -1.0, 0.5), strict=True):
        low.add(p, ok(score, x=lows.index(p)))
    assert low.sample_parent(0).id == lows[1].id  # minimising: the lowest score


def _random_island(a):
    """Island 0: one elite, four beaten programs, a failure, a rejection, a pending child."""
    root = child(a)
    a.add(root, ok(5.0))
    evaluated = {root.id}
    for score in (1.0, 2.0, 3.0, 4.0):  # one cell, so none of these is an elite
        p = child(a, root)
        assert a.add(p, ok(score)) is AddStatus.NOT_ADDED
        evaluated.add(p.id)
    a.add(child(a, root), Evaluation(status=EvalStatus.ERROR, reason="boom"))
    rejected = Program(new_program_id(), root.id, 0, 1, "", "t", status=ProgramStatus.REJECTED)
    a.new_program(rejected)
    child(a, root)  # proposed, never evaluated
    a.add(child(a, root, island=1), ok(9.0))
    return evaluated


@pytest.mark.parametrize("probe", [True, False], ids=["index-probes", "count-offset"])
def test_random_draws_every_evaluated_program_uniformly(make, monkeypatch, probe):
    if not probe:  # every probe misses: the exact count-and-offset fallback draws
        from cambrian.archive import _queries

        monkeypatch.setattr(_queries, "draw_by_rejection", lambda *args, **kw: None)
    a = make(selection="random", islands=2, seed=11)
    evaluated = _random_island(a)
    draws = [a.sample_parent(0).id for _ in range(500)]
    counts = {pid: draws.count(pid) for pid in set(draws)}
    assert set(counts) == evaluated  # non-elites too, never failed, rejected or pending
    assert all(60 < n < 140 for n in counts.values())  # about 100 each
    again = make(selection="random", islands=2, seed=11)
    assert [again.sample_parent(0).id for _ in range(20)] == draws[:20]  # seeded


def test_random_falls_back_to_the_elites_of_an_island_without_programs(make):
    a = make(selection="random", islands=2, migration_interval=1)
    assert a.sample_parent(1) is None
    root = child(a)
    a.add(root, ok(1.0))
    best = child(a, root)
    a.add(best, ok(2.0))  # migrates to island 1, which has no program of its own
    assert a.sample_parent(1).id == best.id


def test_counters_feed_dgm_and_thompson(make):
    a = make(selection="dgm")
    root = child(a)
    a.add(root, ok(1.0))
    win, lose = child(a, root), child(a, root)
    a.add(win, ok(2.0))
    a.add(lose, ok(0.5))
    grandchild = child(a, win)
    a.add(grandchild, ok(3.0))
    from cambrian.archive import _queries as q

    with a._read() as conn:  # the rows the policies see
        rows = {r.program_id: r for r in q.elites(conn, a.run_id, 0, counters=True)}
    assert rows[grandchild.id].children == 0
    with a._read() as conn:
        from sqlalchemy import select

        got = dict(
            (r.id, (r.children, r.successes, r.clade_trials, r.clade_successes))
            for r in conn.execute(select(q.PROGRAMS).where(q.PROGRAMS.c.run_id == a.run_id))
        )
    assert got[root.id] == (2, 1, 3, 2)  # grandchild counts in root's clade
    assert got[win.id] == (1, 1, 1, 1)


def test_inspirations_top_diverse_and_ancestors(make):
    a = make(features={"x": {"min": 0, "max": 10, "bins": 10}})
    root = child(a)
    a.add(root, ok(0.0, x=0))
    chain = [root]
    for i in range(1, 6):
        p = child(a, chain[-1])
        a.add(p, ok(float(i), x=i))
        chain.append(p)
    parent = chain[3]
    got = a.sample_inspirations(parent, 2, top_k=1, ancestors=2)
    ids = [p.id for p in got]
    assert ids[0] == chain[5].id  # the best elite first
    assert ids[-2:] == [chain[2].id, chain[1].id]  # then the nearest ancestors
    assert parent.id not in ids and len(set(ids)) == len(ids) == 4
    assert a.sample_inspirations(root, 0, ancestors=3) == []  # the root has no ancestors


def test_ring_migration_every_k_candidates(make):
    a = make(islands=3, migration_interval=4, migrants=1)
    roots = []
    root = child(a)
    a.add(root, ok(0.0))
    for island, score in ((0, 5.0), (1, 1.0), (2, 2.0)):
        p = child(a, root, island=island)
        a.add(p, ok(score))
        roots.append(p)
    assert a.sample_parent(1).id == roots[1].id  # 3 evaluated: no migration yet
    p = child(a, roots[2], island=2)
    a.add(p, ok(0.1))  # the 4th evaluated candidate triggers the migration
    assert a.sample_parent(1).id == roots[0].id  # island 0's best moved to island 1
    assert a.sample_parent(0).id == roots[0].id  # island 2's best (2.0) lost to 5.0
    assert a.get(roots[0].id).island == 0  # the migrant keeps its program and lineage


def test_reset_reseeds_the_weaker_half(make):
    a = make(islands=4, reset_interval=4)
    root = child(a)
    a.add(root, ok(0.0))
    best = None
    for island, score in ((0, 1.0), (1, 4.0), (2, 3.0), (3, 2.0)):
        p = child(a, root, island=island)
        a.add(p, ok(score))
        best = p if score == 4.0 else best
    assert a.sample_parent(0).id == best.id and a.sample_parent(3).id == best.id
    assert a.sample_parent(2).id != best.id  # a stronger island keeps its own elite


def test_cvt_centroids_are_stored_once(make):
    axes = {n: {"min": 0, "max": 1, "bins": 1} for n in "abc"}
    a = make(features=axes, cvt_cells=16, cvt_samples=500, seed=3)
    key = a.cell_of({"a": 0.1, "b": 0.9, "c": 0.5})
    assert key.startswith("c") and 0 <= int(key[1:]) < 16
    other = make(features=axes, cvt_cells=16, cvt_samples=500, seed=99)  # same run: stored ones
    assert other.cell_of({"a": 0.1, "b": 0.9, "c": 0.5}) == key
    root = child(a)
    assert a.add(root, ok(1.0, a=0.1, b=0.9, c=0.5)) is AddStatus.NEW_CELL


def test_pareto_front(make):
    a = make(objectives={"score": "maximize", "size": "minimize"})
    root = child(a)
    a.add(root, ok(1.0, {"size": 10}))
    small = child(a, root)
    a.add(small, ok(0.5, {"size": 2}))
    dominated = child(a, root)
    a.add(dominated, ok(0.4, {"size": 5}))
    strong = child(a, root)
    a.add(strong, ok(2.0, {"size": 10}))
    assert [p.id for p, _ in a.pareto()] == [small.id, strong.id]


def test_resume_claims_only_programs_of_gone_workers(make):
    first = make()
    first.join()
    root = child(first)
    first.add(root, ok(1.0))
    mine = child(first, root)
    first.set_status(mine.id, ProgramStatus.EVALUATING)
    second = make()
    second.join()
    assert second.pending() == []  # the first worker is alive: hands off
    assert [p.id for p in first.pending()] == [mine.id]
    first.close()  # leaves: its programs become claimable at once
    assert [p.id for p in second.pending()] == [mine.id]
    assert second.pending(include_own=False) == []


def test_concurrent_workers_never_share_a_replacement(make):
    archives = [make() for _ in range(4)]
    root = child(archives[0])
    archives[0].add(root, ok(0.0))
    progs = [[child(a, root) for _ in range(10)] for a in archives]

    def work(i):
        return [archives[i].add(p, ok(float(10 * j + i))) for j, p in enumerate(progs[i])]

    with ThreadPoolExecutor(4) as pool:
        results = [s for r in pool.map(work, range(4)) for s in r]
    # Every improvement was strict over the one before, so they are a chain: no double wins.
    assert AddStatus.NEW_CELL not in results  # only the root ever opened the cell
    assert archives[0].best()[1].score == 93.0
    assert archives[0].evaluated_count() == 40
    assert archives[0].stats()["programs"] == 41
