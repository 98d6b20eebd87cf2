"""The README's two fresh-machine commands stay true: CI runs the test command verbatim."""

from __future__ import annotations

import re

from conftest import ROOT


def _commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```bash\n((?:apt-get update|bash scripts)[^\n]+)\n```", text)


def test_readme_gives_the_two_commands() -> None:
    main, tests = _commands()[:2]
    assert "cambrian run tasks/" in main and main.endswith("cambrian best")
    assert "pytest" in tests and "CAMBRIAN_REQUIRE_ENGINES=1" in tests


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert _commands()[1] in ci


def test_readme_example_task_exists() -> None:
    main = _commands()[0]
    task = re.search(r"cambrian run (tasks/\w+)", main).group(1)
    assert (ROOT / task / "cambrian.toml").is_file()
