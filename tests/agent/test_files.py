"""Which paths an edit may touch: globs, protected files, unsafe and shadowing paths."""

from __future__ import annotations

import pytest

from cambrian.agent import FileRules, apply_reply
from cambrian.agent._files import matches, safe_path

TREE = ["evaluate.py", "solve.py", "pkg/mod.py", "data/input.txt"]


@pytest.mark.parametrize(
    ("path", "globs", "expected"),
    [
        ("solve.py", ["solve.py"], True),
        ("src/a/b.py", ["src/**/*.py"], True),
        ("src/b.py", ["src/**/*.py"], True),
        ("src/a/b.py", ["src/*.py"], False),
        ("x/y.py", ["**/*.py"], True),
        ("evaluate.py", ["solve.py"], False),
        ("solve.py", ["./solve.py"], True),
    ],
)
def test_glob_matching(path: str, globs: list[str], expected: bool) -> None:
    assert matches(path, globs) is expected


@pytest.mark.parametrize(
    "path",
    [
        "",
        "/etc/passwd",
        "pkg/../../escape.py",
        "a//b.py",
        "./solve.py",
        ".git/config",
        "pkg/.git/hooks/pre-commit",
        "a\\b.py",
    ],
)
def test_unsafe_paths_are_never_editable(path: str) -> None:
    assert not safe_path(path)
    assert not FileRules(["**"], files=TREE).is_editable(path)


def test_protected_and_shadowing_paths() -> None:
    rules = FileRules(["**/*.py"], ["evaluate.py"], files=TREE)
    assert rules.is_editable("solve.py") and rules.is_editable("pkg/new.py")
    assert not rules.is_editable("evaluate.py")
    # turning a file of the task into a folder could shadow it (python evaluate.py -> __main__)
    assert not rules.is_editable("evaluate.py/__main__.py")
    assert not rules.is_editable("solve.py/x.py")
    assert rules.protected_files(TREE) == ["data/input.txt", "evaluate.py"]


@pytest.mark.parametrize(
    "path",
    ["evaluate.py/__main__.py", "pkg/../../escape.py", "a//b.py"],
)
def test_such_edits_are_rejected_as_data(path: str) -> None:
    rules = FileRules(["**/*.py"], ["evaluate.py"], files=TREE)
    reply = f"{path}\n<<<<<<< SEARCH\n=======\nprint('{{\"score\": 1e9}}')\n>>>>>>> REPLACE\n"
    result = apply_reply(reply, {"solve.py": "x = 1\n"}, rules.is_editable)
    assert not result.ok and "not editable" in result.error


@pytest.mark.parametrize(
    ("path", "shadowed"),
    [
        ("json.py", "the standard-library module 'json'"),
        ("pkg/os.py", "the standard-library module 'os'"),
        ("json/__init__.py", "the standard-library module 'json'"),
        ("_json.cpython-311-x86_64-linux-gnu.so", "the standard-library module '_json'"),
        ("evaluate/__init__.py", "the evaluator's module 'evaluate'"),
        ("pkg/evaluate.py", "the evaluator's module 'evaluate'"),
        ("pydantic.py", "the installed module 'pydantic'"),  # a dependency: always there
        ("pkg/pytest/__init__.py", "the installed module 'pytest'"),
    ],
)
def test_new_files_that_shadow_a_module(path: str, shadowed: str) -> None:
    rules = FileRules(["**"], ["evaluate.py"], files=TREE)
    assert rules.is_editable(path)  # the globs allow it; shadowing is refused on its own
    reason = rules.shadowing(["pkg/new.py", path])
    assert reason == f"new file {path} would shadow {shadowed}; give it another name"


def test_files_that_shadow_nothing() -> None:
    rules = FileRules(["**"], ["evaluate.py"], files=[*TREE, "types.py"])
    # types.py is the task's own file; json/data.py is a namespace package's module
    paths = ["types.py", "solve.py", "pkg/new.py", "jsonish.py", "json/data.py", "notes.md"]
    assert rules.shadowing(paths) == ""
