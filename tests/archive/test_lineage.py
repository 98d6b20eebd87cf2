import os
import stat
import subprocess
import time

import pytest

from cambrian.archive import GitLineage
from cambrian.errors import ArchiveError

GIT_ID = ["-c", "user.name=t", "-c", "user.email=t@example.com"]


def git(*args, cwd=None, git_dir=None):
    prefix = ["git", *([f"--git-dir={git_dir}"] if git_dir else []), *GIT_ID]
    done = subprocess.run([*prefix, *args], cwd=cwd, capture_output=True, text=True, check=True)
    return done.stdout


def make_task(root):
    (root / "pkg" / "__pycache__").mkdir(parents=True)
    (root / "main.py").write_text("print('hi')\n")
    (root / "pkg" / "a.py").write_text("A = 1\n")
    (root / "pkg" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"\0junk")
    (root / "stale.pyc").write_bytes(b"\0junk")
    (root / ".cambrian").mkdir()
    (root / ".cambrian" / "archive.db").write_text("not code")
    (root / "run.sh").write_text("#!/bin/sh\necho run\n")
    os.chmod(root / "run.sh", 0o755)
    return root


def files_under(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


@pytest.fixture
def lineage(tmp_path):
    lin = GitLineage(tmp_path / "run" / "lineage.git")
    lin.init_from(make_task(tmp_path / "task"))
    yield lin
    lin.close()


def test_construction_touches_nothing(tmp_path):
    lin = GitLineage(tmp_path / "run" / "lineage.git")
    assert not (tmp_path / "run").exists()
    with pytest.raises(ArchiveError):
        lin.base()


def test_init_from_plain_folder_skips_noise_and_is_idempotent(tmp_path, lineage):
    base = lineage.base()
    assert lineage.list_files(base) == ["main.py", "pkg/a.py", "run.sh"]
    assert git("cat-file", "-t", base, git_dir=lineage.path).strip() == "commit"
    listing = git("ls-tree", "-r", base, git_dir=lineage.path)
    assert "100755 blob" in next(line for line in listing.splitlines() if "run.sh" in line)
    assert lineage.init_from(tmp_path / "task") == base
    assert GitLineage(lineage.path).init_from(tmp_path / "elsewhere") == base


def test_init_from_git_repo_takes_only_committed_content(tmp_path):
    repo = make_task(tmp_path / "repo")
    (repo / ".gitignore").write_text("__pycache__/\n*.pyc\n.cambrian/\n")
    git("init", "-q", cwd=repo)
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "first", cwd=repo)
    head = git("rev-parse", "HEAD", cwd=repo).strip()
    (repo / "main.py").write_text("print('uncommitted')\n")
    (repo / "untracked.py").write_text("x = 1\n")
    lin = GitLineage(repo / ".cambrian" / "lineage.git")
    assert lin.init_from(repo) == head
    assert lin.list_files(head) == [".gitignore", "main.py", "pkg/a.py", "run.sh"]
    assert lin.read_files(head, ["main.py"]) == {"main.py": "print('hi')\n"}
    lin.checkout(head, tmp_path / "work")
    assert files_under(tmp_path / "work") == [".gitignore", "main.py", "pkg/a.py", "run.sh"]
    assert (tmp_path / "work" / "main.py").read_text() == "print('hi')\n"
    lin.close()


def test_init_from_subfolder_of_git_repo(tmp_path):
    repo = tmp_path / "repo"
    make_task(repo / "tasks" / "one")
    (repo / "README").write_text("top\n")
    git("init", "-q", cwd=repo)
    git("add", "main.py", "pkg/a.py", "run.sh", cwd=repo / "tasks" / "one")
    git("add", "README", cwd=repo)
    git("commit", "-q", "-m", "first", cwd=repo)
    head = git("rev-parse", "HEAD", cwd=repo).strip()
    lin = GitLineage(tmp_path / "run" / "lineage.git")
    base = lin.init_from(repo / "tasks" / "one")
    assert lin.list_files(base) == ["main.py", "pkg/a.py", "run.sh"]
    assert git("rev-parse", f"{base}^", git_dir=lin.path).strip() == head
    lin.close()


def test_commit_chain_parents_visible_in_git_log(lineage):
    base = lineage.base()
    c1, _ = lineage.commit(base, {"main.py": "print(1)\n"}, "one")
    c2, _ = lineage.commit(c1, {"main.py": "print(2)\n"}, "two")
    c3, _ = lineage.commit(c1, {"pkg/a.py": "A = 3\n"}, "sibling")
    lineage.set_ref("p2", c2)
    lineage.set_ref("p3", c3)
    log = git(
        "log", "--format=%H %P|%an <%ae>|%s", "refs/cambrian/programs/p2", git_dir=lineage.path
    )
    assert log.splitlines() == [
        f"{c2} {c1}|cambrian <cambrian@localhost>|two",
        f"{c1} {base}|cambrian <cambrian@localhost>|one",
        f"{base} |cambrian <cambrian@localhost>|cambrian base: task",
    ]
    assert git("rev-parse", f"{c3}^", git_dir=lineage.path).strip() == c1
    assert lineage.read_files(c3, ["main.py", "pkg/a.py", "missing.py"]) == {
        "main.py": "print(1)\n",
        "pkg/a.py": "A = 3\n",
    }
    git("fsck", "--strict", git_dir=lineage.path)
    with pytest.raises(ValueError):
        lineage.set_ref("../escape", c1)


def test_duplicate_trees_have_equal_shas(lineage):
    base = lineage.base()
    _, t1 = lineage.commit(base, {"main.py": "x = 1\n"}, "a")
    _, t2 = lineage.commit(base, {"main.py": "x = 1\n"}, "b")
    c3, t3 = lineage.commit(base, {"main.py": "x = 2\n"}, "c")
    _, back = lineage.commit(c3, {"main.py": "print('hi')\n"}, "revert")
    assert t1 == t2 != t3
    assert back == lineage.tree_of(base)
    assert git("rev-parse", f"{c3}^{{tree}}", git_dir=lineage.path).strip() == t3


def test_nested_paths_and_new_files(lineage):
    base = lineage.base()
    c1, _ = lineage.commit(base, {"pkg/deep/er/new.py": "N = 1\n", "top.txt": "t\n"}, "nest")
    c2, _ = lineage.commit(c1, {"pkg/deep/er/new.py": "N = 2\n"}, "edit")
    assert lineage.list_files(c2) == [
        "main.py",
        "pkg/a.py",
        "pkg/deep/er/new.py",
        "run.sh",
        "top.txt",
    ]
    assert lineage.read_files(c2, ["pkg/deep/er/new.py"]) == {"pkg/deep/er/new.py": "N = 2\n"}
    assert git("show", f"{c2}:pkg/a.py", git_dir=lineage.path) == "A = 1\n"
    c3, _ = lineage.commit(c2, {"run.sh": "#!/bin/sh\necho changed\n"}, "exec")
    listing = git("ls-tree", c3, "run.sh", git_dir=lineage.path)
    assert listing.startswith("100755")  # an edited executable stays executable
    diff = lineage.diff(c1, c2)
    assert "-N = 1" in diff and "+N = 2" in diff and "pkg/deep/er/new.py" in diff


@pytest.mark.parametrize("bad", ["/abs.py", "../up.py", "a/../b.py", "a//b.py", ".git/config", ""])
def test_bad_paths_are_refused(lineage, bad):
    with pytest.raises(ValueError, match="path"):
        lineage.commit(lineage.base(), {bad: "x"}, "bad")


def test_checkout_produces_exactly_the_commit(tmp_path, lineage):
    base = lineage.base()
    c1, _ = lineage.commit(base, {"main.py": "print(1)\n", "pkg/sub/b.py": "B\n"}, "one")
    dest = tmp_path / "work"
    lineage.checkout(c1, dest)
    assert files_under(dest) == lineage.list_files(c1)
    for path, text in lineage.read_files(c1, lineage.list_files(c1)).items():
        assert (dest / path).read_text() == text
    assert os.access(dest / "run.sh", os.X_OK)
    with pytest.raises(ValueError, match="dest"):
        lineage.checkout(c1, dest)
    empty = tmp_path / "empty"
    empty.mkdir()
    lineage.checkout(base, empty)
    assert (empty / "main.py").read_text() == "print('hi')\n"
    assert files_under(empty) == ["main.py", "pkg/a.py", "run.sh"]


def test_checkout_cannot_corrupt_the_cache(tmp_path, lineage):
    base = lineage.base()
    first = tmp_path / "first"
    lineage.checkout(base, first)
    assert os.stat(first / "pkg" / "a.py")[stat.ST_NLINK] == 1  # a copy, not a hard link
    (first / "pkg" / "a.py").write_text("HACKED\n")
    (first / "main.py").unlink()
    (first / "extra.py").write_text("extra\n")
    second = tmp_path / "second"
    lineage.checkout(base, second)
    assert files_under(second) == ["main.py", "pkg/a.py", "run.sh"]
    assert (second / "pkg" / "a.py").read_text() == "A = 1\n"


def test_commit_and_checkout_are_fast(tmp_path, lineage):
    commit = lineage.base()
    start = time.perf_counter()
    for i in range(50):
        commit, _ = lineage.commit(commit, {"main.py": f"print({i})\n"}, f"step {i}")
    commit_ms = (time.perf_counter() - start) / 50 * 1000
    lineage.checkout(commit, tmp_path / "warm")
    start = time.perf_counter()
    for i in range(10):
        lineage.checkout(commit, tmp_path / f"co{i}")
    checkout_ms = (time.perf_counter() - start) / 10 * 1000
    assert commit_ms < 15, commit_ms
    assert checkout_ms < 50, checkout_ms


def test_symlinks_round_trip_and_are_replaced_not_followed(tmp_path):
    task = tmp_path / "task"
    task.mkdir()
    outside = tmp_path / "outside.txt"
    outside.write_text("outside\n")
    (task / "link.txt").symlink_to(outside)
    lin = GitLineage(tmp_path / "run" / "lineage.git")
    base = lin.init_from(task)
    assert git("ls-tree", base, git_dir=lin.path).startswith("120000")
    lin.checkout(base, tmp_path / "a")
    assert os.readlink(tmp_path / "a" / "link.txt") == str(outside)
    c1, _ = lin.commit(base, {"link.txt": "now a file\n"}, "replace link")
    lin.checkout(c1, tmp_path / "b")
    assert not (tmp_path / "b" / "link.txt").is_symlink()
    assert (tmp_path / "b" / "link.txt").read_text() == "now a file\n"
    assert outside.read_text() == "outside\n"
    lin.close()
