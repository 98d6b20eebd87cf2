"""Detection of OpenEvolve and ShinkaEvolve folders and the mapping of their config."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fixtures_compat import copy_task

from cambrian.config import build_config
from cambrian.errors import ConfigError
from cambrian.evaluators.compat import PRIVATE_METRICS, detect_task, runner_source
from cambrian.evaluators.compat._openevolve import HANDLED, MAPPED


def test_openevolve_config_yaml_maps_to_cambrian_keys(tmp_path: Path) -> None:
    found = detect_task(copy_task("openevolve_point", tmp_path / "t"))
    assert found is not None and found.format == "openevolve"
    config = build_config(found.config)
    assert config.task.editable == ("initial_program.py",)
    assert config.task.description.startswith("Move the point")
    assert (config.run.iterations, config.run.seed, config.run.eval_concurrency) == (6, 7, 2)
    assert config.llm.model == "openai/gpt-4o-mini"  # the heaviest of llm.models
    assert config.llm.api_base == "https://api.openai.com/v1"
    assert (config.llm.temperature, config.llm.max_tokens) == (0.6, 2048)
    assert (config.llm.timeout_s, config.llm.retries) == (90, 2)
    assert (config.prompt.top_k, config.prompt.inspirations) == (2, 3)
    assert config.archive.islands == 2
    assert config.archive.features["spread"].bins == 4
    assert config.evaluator.timeout_s == 30
    assert config.evaluator.adapter == "openevolve"
    # the cascade: evaluate_stage1 gated by the one threshold, then evaluate_stage2
    assert config.evaluator.command == ""
    first, second = config.evaluator.stages
    assert first.min_score == 0.5 and second.min_score is None
    assert "--stage 1 --gate --features spread" in first.command
    assert second.command.endswith("--stage 2 --features spread")


def test_openevolve_unmapped_keys_are_named_in_one_warning(tmp_path: Path) -> None:
    found = detect_task(copy_task("openevolve_point", tmp_path / "t"))
    assert found is not None
    ignored = set(found.ignored)
    assert {"checkpoint_interval", "log_level", "llm.top_p", "evolution_trace"} <= ignored
    assert {"database.population_size", "evaluator.use_llm_feedback"} <= ignored
    assert not ignored & (set(MAPPED) | HANDLED)
    lines = found.warnings()
    assert sum("no meaning in cambrian" in line for line in lines) == 1
    assert any("not used: gpt-4o" in line for line in lines)
    assert any("archive.features.spread" in line for line in lines)


def test_openevolve_without_config_yaml_uses_openevolve_defaults(tmp_path: Path) -> None:
    task = copy_task("openevolve_point", tmp_path / "t")
    (task / "config.yaml").unlink()
    found = detect_task(task)
    assert found is not None and found.ignored == ()
    config = build_config(found.config)
    assert config.evaluator.timeout_s == 300
    # OpenEvolve's default thresholds; the task has two stages, so only the first is used
    assert [s.min_score for s in config.evaluator.stages] == [0.5, None]
    assert config.llm.model is None and not config.archive.features


def test_openevolve_full_rewrite_key_and_env_key(tmp_path: Path) -> None:
    task = copy_task("openevolve_point", tmp_path / "t")
    (task / "config.yaml").write_text(
        "diff_based_evolution: false\nllm:\n  primary_model: llama3\n"
        "  api_base: http://127.0.0.1:8000/v1\n  api_key: ${MY_KEY}\n"
        "database:\n  feature_dimensions: [complexity, diversity]\n"
        "evaluator:\n  cascade_evaluation: false\n"
    )
    found = detect_task(task)
    assert found is not None
    config = build_config(found.config)
    assert config.prompt.templates == "compact"
    assert (config.llm.model, config.llm.api_key_env) == ("openai/llama3", "MY_KEY")
    assert list(config.archive.features) == ["complexity"]
    assert not config.evaluator.stages and "--stage" not in config.evaluator.command
    assert any("'diversity'" in line for line in found.warnings())


@pytest.mark.parametrize(
    ("stages", "thresholds", "expected"),
    [
        (3, "[0.2, 0.4]", [0.2, 0.4, None]),
        (3, "[0.2]", [0.2, None]),  # OpenEvolve stops after stage 2 without a 2nd threshold
        (1, "[0.2]", []),  # one stage: evaluate_stage1 alone, as evaluator.command
    ],
)
def test_openevolve_stage_functions_map_onto_stages(
    tmp_path: Path, stages: int, thresholds: str, expected: list
) -> None:
    task = copy_task("openevolve_point", tmp_path / "t")
    evaluator = task / "evaluator.py"
    text = evaluator.read_text()
    if stages == 1:
        text = text.replace("def evaluate_stage2(", "def full_stage(")
    else:
        text += "\n\ndef evaluate_stage3(program_path):\n    return evaluate(program_path)\n"
    evaluator.write_text(text)
    (task / "config.yaml").write_text(f"evaluator:\n  cascade_thresholds: {thresholds}\n")
    found = detect_task(task)
    assert found is not None
    config = build_config(found.config).evaluator
    assert [s.min_score for s in config.stages] == expected
    if stages == 1:
        assert config.command.endswith("--stage 1")
    else:
        assert all(f"--stage {n}" in s.command for n, s in enumerate(config.stages, 1))


@pytest.mark.parametrize(
    ("text", "needle"),
    [("llm: [unclosed", "invalid YAML"), ("- a list", "mapping")],
)
def test_bad_config_yaml_is_a_one_line_error(tmp_path: Path, text: str, needle: str) -> None:
    task = copy_task("openevolve_point", tmp_path / "t")
    (task / "config.yaml").write_text(text)
    with pytest.raises(ConfigError, match=needle) as info:
        detect_task(task)
    assert "\n" not in str(info.value)


def test_two_initial_programs_are_ambiguous(tmp_path: Path) -> None:
    task = copy_task("openevolve_point", tmp_path / "t")
    (task / "initial_program.js").write_text("// EVOLVE-BLOCK-START\n")
    with pytest.raises(ConfigError, match="several initial programs"):
        detect_task(task)


def test_shinka_folder_and_requirements_note(tmp_path: Path) -> None:
    task = copy_task("shinka_point", tmp_path / "t")
    (task / "requirements.txt").write_text("numpy\n")
    found = detect_task(task)
    assert found is not None and found.format == "shinka"
    config = build_config(found.config)
    assert config.task.editable == ("initial.py",)
    assert config.evaluator.adapter == "shinka"
    assert any("build-image --requirements" in line for line in found.warnings())


def test_other_folders_are_not_foreign(tmp_path: Path, scaffold_task: Path) -> None:
    assert detect_task(scaffold_task) is None  # evaluate.py without --results_dir
    assert detect_task(tmp_path / "empty") is None
    task = copy_task("openevolve_point", tmp_path / "t")
    (task / "initial_program.py").unlink()
    assert detect_task(task) is None


def test_runner_scripts_share_the_private_key() -> None:
    shinka = runner_source("shinka").decode()
    assert re.search(rf'^PRIVATE = "{PRIVATE_METRICS}"$', shinka, re.M)
    with pytest.raises(ValueError, match="unknown format"):
        runner_source("funsearch")


def test_init_from_into_a_copy_leaves_the_source_untouched(tmp_path: Path) -> None:
    from rich.console import Console

    from cambrian._cli_init import write_foreign_config
    from cambrian.config import load_config

    source = copy_task("openevolve_point", tmp_path / "src")
    console = Console(file=open(tmp_path / "out.txt", "w"))  # noqa: SIM115
    target = write_foreign_config(source, tmp_path / "copy", console)
    assert target == tmp_path / "copy" / "cambrian.toml"
    assert not (source / "cambrian.toml").exists()
    assert (tmp_path / "copy" / "evaluator.py").is_file()
    found = detect_task(source)
    assert found is not None
    assert load_config(tmp_path / "copy") == build_config(found.config)
    with pytest.raises(ConfigError, match="not empty"):
        write_foreign_config(source, tmp_path / "copy", console)
