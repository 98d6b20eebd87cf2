"""The one config schema: strict keys, overrides, pyproject support, TOML round trip."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from cambrian.config import CambrianConfig, build_config, dump_toml, load_config
from cambrian.errors import ConfigError


def _write(folder: Path, text: str, name: str = "cambrian.toml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_contract_keys_exist_with_their_meaning(tmp_path: Path) -> None:
    _write(
        tmp_path,
        """
[task]
editable = ["solve.py"]
description = "d"
[evaluator]
command = "python evaluate.py"
timeout_s = 60
[llm]
model = "openai/gpt-4o-mini"
api_base = "http://127.0.0.1:8000/v1"
[run]
iterations = 100
proposal_concurrency = 4
eval_concurrency = 2
""",
    )
    config = load_config(tmp_path)
    assert config.task.editable == ("solve.py",)
    assert config.evaluator.timeout_s == 60
    assert config.llm.api_base == "http://127.0.0.1:8000/v1"
    assert (config.run.proposal_concurrency, config.run.eval_concurrency) == (4, 2)


def test_unknown_key_names_key_and_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "[run]\niteratons = 5\n")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    message = str(info.value)
    assert "run.iteratons" in message and str(path) in message and "\n" not in message


def test_bad_value_is_one_line(tmp_path: Path) -> None:
    _write(tmp_path, "[run]\niterations = -3\n")
    with pytest.raises(ConfigError, match="run.iterations"):
        load_config(tmp_path)


def test_pyproject_tool_table(tmp_path: Path) -> None:
    _write(
        tmp_path,
        '[project]\nname = "x"\n[tool.cambrian.task]\neditable = ["a.py"]\n',
        "pyproject.toml",
    )
    assert load_config(tmp_path).task.editable == ("a.py",)


def test_overrides_apply_last_and_parse_toml(tmp_path: Path) -> None:
    _write(tmp_path, "[run]\niterations = 5\n")
    config = load_config(
        tmp_path,
        ["run.iterations=7", 'task.editable=["a.py", "b/*.py"]', "llm.model=openai/x"],
        {"run": {"iterations": 6}},
    )
    assert config.run.iterations == 7
    assert config.task.editable == ("a.py", "b/*.py")
    assert config.llm.model == "openai/x"


@pytest.mark.parametrize("bad", ["run.iterations", "iterations=3", "=3"])
def test_malformed_override(bad: str) -> None:
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(None, [bad])


def test_proposal_cap_derives_from_iterations_in_the_schema() -> None:
    assert build_config({"run": {"iterations": 10}}).run.max_proposals == 60
    assert build_config({"run": {"iterations": 10, "max_proposals": 11}}).run.max_proposals == 11


def test_feature_axis_needs_ordered_range() -> None:
    with pytest.raises(ConfigError, match="archive.features"):
        build_config({"archive": {"features": {"x": {"min": 1, "max": 1, "bins": 2}}}})


def test_check_runnable_names_the_missing_key() -> None:
    with pytest.raises(ConfigError, match="evaluator.command"):
        CambrianConfig().check_runnable()
    with pytest.raises(ConfigError, match="task.editable"):
        build_config({"evaluator": {"command": "x"}}).check_runnable()


def test_dump_toml_round_trips() -> None:
    config = build_config(
        {
            "task": {"editable": ["a.py"], "description": 'say "hi"\nthere'},
            "evaluator": {"command": "python e.py", "direction": "minimize"},
            "archive": {"features": {"loc": {"min": 0, "max": 10, "bins": 5}}},
        }
    )
    assert build_config(tomllib.loads(dump_toml(config))) == config


def test_dump_toml_writes_model_lists_as_arrays_of_tables() -> None:
    config = build_config(
        {
            "llm": {
                "models": [
                    {"name": "openai/a", "weight": 2},
                    {
                        "name": "openai/b",
                        "temperature": [0.2, 0.9],
                        "api_base": "http://127.0.0.1:8000/v1",
                    },
                ]
            }
        }
    )
    text = dump_toml(config)
    assert text.count("[[llm.models]]") == 2
    assert build_config(tomllib.loads(text)) == config
