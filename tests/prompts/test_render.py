import os
import re

import jinja2
import pytest

from cambrian.agent._context import IDENTICAL, changes_against
from cambrian.errors import ConfigError
from cambrian.prompts import BUILTIN_SETS, TEMPLATE_DIR, render, render_messages, template_set

SOLVE = "def solve(n):\n    return n\n"
HELPER = "X = 1\n"


def _context(**overrides):
    ctx = {
        "description": "Compute the sum fast.",
        "direction": "maximize",
        "files": [
            {"path": "solve.py", "content": SOLVE, "lang": "python"},
            {"path": "lib/helper.py", "content": HELPER, "lang": "python"},
        ],
        "single_file": False,
        "evolve_blocks": False,
        "parent": {
            "id": "p1",
            "ok": True,
            "score": 0.123456789,
            "metrics": {"valid": 1, "runtime_s": 0.5},
            "feedback": "too slow on n=10**6",
            "reason": "",
            "output_tail": "",
            "is_root": False,
        },
        "inspirations": [
            {
                "id": "i7",
                "score": 0.9,
                "metrics": {"valid": 1},
                "files": [{"path": "solve.py", "content": "INSPIRED = 1\n", "lang": "python"}],
                "diff": "",
            }
        ],
        "rejections": ["SEARCH text not found in solve.py: 'for i in range(n):'"],
        "operator": "region",
        "idea": "Cache the partial sums.",
        "second": None,
        "recommendations": "",
    }
    ctx.update(overrides)
    return ctx


def _failed_parent():
    return {
        "id": "p2",
        "ok": False,
        "score": None,
        "metrics": {},
        "feedback": "",
        "reason": "evaluator exited with status 1",
        "output_tail": "Traceback (most recent call last):\nZeroDivisionError: division by zero\n",
        "is_root": True,
    }


def _first_file_block(text):
    """The parser the agent's tests use: the first ### File: block."""
    match = re.search(r"^### File: ([^\n]+)\n```(\w*)\n(.*?)\n```$", text, re.S | re.M)
    assert match, text
    return match.group(1), match.group(2), match.group(3)


@pytest.mark.parametrize("name", BUILTIN_SETS)
def test_each_builtin_set_holds_both_templates(name):
    assert template_set(name) == TEMPLATE_DIR / name
    assert (TEMPLATE_DIR / name / "system.j2").is_file()
    assert (TEMPLATE_DIR / name / "user.j2").is_file()


@pytest.mark.parametrize("name", BUILTIN_SETS)
def test_each_set_keeps_the_file_block_contract(name):
    messages = render_messages(template_set(name), _context())
    assert [m["role"] for m in messages] == ["system", "user"]
    path, lang, content = _first_file_block(messages[1]["content"])
    assert (path, lang) == ("solve.py", "python")
    assert content.rstrip("\n") == _context()["files"][0]["content"].rstrip("\n")


def test_compact_set_asks_for_a_repair_with_the_failure():
    parent = {
        **_context()["parent"],
        "ok": False,
        "score": None,
        "reason": "exit code 1",
        "output_tail": "NameError: x",
    }
    text = render_messages(template_set("compact"), _context(parent=parent))[1]["content"]
    assert "exit code 1" in text and "NameError: x" in text and "Fix the failure" in text


def test_task_folder_template_set(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "system.j2").write_text("S {{ direction }}")
    (folder / "user.j2").write_text("U {{ description }}")
    resolved = template_set("mine", tmp_path)
    assert render_messages(resolved, _context())[0]["content"] == "S maximize"


def test_template_set_missing_files_is_a_config_error(tmp_path):
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "system.j2").write_text("x")
    with pytest.raises(ConfigError, match="missing user.j2"):
        template_set("half", tmp_path)


@pytest.mark.parametrize("template", ["system.j2", "user.j2"])
@pytest.mark.parametrize(
    "missing",
    [
        "description",
        "direction",
        "files",
        "single_file",
        "evolve_blocks",
        "parent",
        "inspirations",
        "rejections",
        "operator",
        "idea",
        "second",
        "recommendations",
    ],
)
def test_missing_variable_raises(template, missing):
    ctx = _context()
    del ctx[missing]
    used = render(template, **_context())
    assert used
    if template == "system.j2" and missing in {
        "description",
        "files",
        "single_file",
        "operator",
        "parent",
        "inspirations",
        "rejections",
        "idea",
        "second",
        "recommendations",
    }:
        render(template, **ctx)  # the system prompt does not need these
        return
    with pytest.raises(jinja2.UndefinedError):
        render(template, **ctx)


def test_missing_nested_key_raises():
    parent = dict(_context()["parent"])
    del parent["feedback"]
    with pytest.raises(jinja2.UndefinedError):
        render("user.j2", **_context(parent=parent))


def test_empty_template_name_is_misuse():
    with pytest.raises(ValueError, match="template"):
        render("")


def test_file_block_contract_exact():
    text = render("user.j2", **_context())
    expected = f"### File: solve.py\n```python\n{SOLVE}\n```\n"
    assert expected in text
    assert f"### File: lib/helper.py\n```python\n{HELPER}\n```\n" in text
    path, lang, content = _first_file_block(text)
    assert (path, lang) == ("solve.py", "python")
    assert content == SOLVE
    assert text.count("### File:") == 2


def test_file_block_with_empty_lang():
    files = [{"path": "Makefile", "content": "all:\n\ttrue", "lang": ""}]
    text = render("user.j2", **_context(files=files, single_file=True, inspirations=[]))
    assert "### File: Makefile\n```\nall:\n\ttrue\n```\n" in text


def test_inspirations_use_another_header():
    text = render("user.j2", **_context())
    lines = text.splitlines()
    fence = lines.index("INSPIRED = 1") - 1
    assert lines[fence] == "```python"
    assert lines[fence - 1].startswith("#### Inspiration i7")
    assert "solve.py" in lines[fence - 1]
    assert [line for line in lines if line.startswith("### File:")] == [
        "### File: solve.py",
        "### File: lib/helper.py",
    ]


def test_ok_parent_shows_score_metrics_feedback_rejections():
    text = render("user.j2", **_context())
    assert "Compute the sum fast." in text
    assert "0.123457" in text
    assert "runtime_s=0.5" in text
    assert "too slow on n=10**6" in text
    assert "SEARCH text not found in solve.py: 'for i in range(n):'" in text
    assert "REPAIR" not in text
    assert "raise the score" in text


def test_minimize_direction():
    text = render("user.j2", **_context(direction="minimize"))
    assert "lower the score" in text
    assert "minimize" in render("system.j2", **_context(direction="minimize"))


def test_failed_parent_asks_for_repair_with_reason_and_output():
    text = render("user.j2", **_context(parent=_failed_parent(), inspirations=[], rejections=[]))
    assert "REPAIR" in text
    assert "evaluator exited with status 1" in text
    assert (
        "```\nTraceback (most recent call last):\nZeroDivisionError: division by zero\n```" in text
    )
    assert "raise the score" not in text
    assert _first_file_block(text)[2] == SOLVE


def test_empty_description_and_no_extras_render_compactly():
    ctx = _context(description="", inspirations=[], rejections=[])
    text = render("user.j2", **ctx)
    assert "Inspiration" not in text
    assert "## Task" not in text
    assert "\n\n\n" not in text


def test_prompt_explains_format():
    text = render("user.j2", **_context(operator="diff"))
    assert "<<<<<<< SEARCH" in text and "=======" in text and ">>>>>>> REPLACE" in text
    assert "solve.py\n<<<<<<< SEARCH" in text  # the path line comes first
    assert "exactly" in text
    assert "one sentence" in text
    assert "whole new file" not in text  # several files: no full rewrite offered
    assert "EVOLVE-BLOCK" not in text + render("system.j2", **_context(operator="diff"))


def test_prompt_single_file_and_evolve_blocks():
    ctx = _context(single_file=True, evolve_blocks=True)
    assert "EVOLVE-BLOCK-START and EVOLVE-BLOCK-END" in render("system.j2", **ctx)
    assert "the complete new code between the EVOLVE-BLOCK markers" in render("user.j2", **ctx)


def test_prompts_are_compact():
    # Small local models have ~8k tokens of context: the fixed text must stay small.
    ctx = _context(files=[], inspirations=[], rejections=[], description="")
    assert len(render("system.j2", **ctx)) < 1500
    assert len(render("user.j2", **ctx)) < 800


@pytest.mark.parametrize("name", BUILTIN_SETS)
def test_each_operator_asks_for_its_own_format(name):
    folder = TEMPLATE_DIR / name
    one = [
        {
            "path": "solve.py",
            "content": "# EVOLVE-BLOCK-START\nX = 1\n# EVOLVE-BLOCK-END\n",
            "lang": "python",
        }
    ]
    base = _context(files=one, single_file=True, evolve_blocks=True, rejections=[])
    diff = "\n".join(m["content"] for m in render_messages(folder, {**base, "operator": "diff"}))
    region = "\n".join(m["content"] for m in render_messages(folder, base))
    rewrite = "\n".join(
        m["content"] for m in render_messages(folder, {**base, "operator": "rewrite"})
    )
    assert "SEARCH" in diff and "SEARCH" not in region and "SEARCH" not in rewrite
    assert "between" in region and "EVOLVE-BLOCK" in region
    assert "Cache the partial sums." in region  # the sampled idea


@pytest.mark.parametrize("name", BUILTIN_SETS)
def test_crossover_shows_the_second_program_and_notes_show_up(name):
    second = {
        "id": "s9",
        "score": 0.5,
        "metrics": {},
        "files": [{"path": "solve.py", "content": "SECOND = 2\n", "lang": "python"}],
        "diff": "",
    }
    ctx = _context(operator="crossover", second=second, recommendations="- Try a heap.")
    text = "\n".join(m["content"] for m in render_messages(TEMPLATE_DIR / name, ctx))
    assert "SECOND = 2" in text and "Try a heap." in text
    assert "INSPIRED = 1" not in text  # the partner replaces the inspirations


def test_operators_share_the_prompt_prefix_through_the_program():
    """A prefix-caching model server reuses the system message, task and program.

    Every operator gets the same system message, and the user messages of one parent
    agree up to the end of its last file: the operator's answer format comes after.
    """
    operators = ("diff", "region", "rewrite", "line")
    rendered = [render_messages(TEMPLATE_DIR / "default", _context(operator=o)) for o in operators]
    assert len({system["content"] for system, _ in rendered}) == 1
    users = [user["content"] for _, user in rendered]
    shared = os.path.commonprefix(users)
    assert HELPER.strip() in shared and SOLVE.strip() in shared
    assert all("Answer format" not in user[: len(shared)] for user in users)
    assert len(set(users)) == len(operators)


def test_another_program_that_differs_in_a_few_lines_is_shown_as_its_diff():
    ours = {"solve.py": "".join(f"X{i} = {i}\n" for i in range(40))}
    theirs = {"solve.py": ours["solve.py"].replace("X20 = 20", "X20 = 21")}
    diff = changes_against(ours, theirs)
    assert "-X20 = 20\n+X20 = 21" in diff and "X5 = 5" not in diff  # two lines of context
    assert diff.startswith("--- current/solve.py\n+++ other/solve.py")
    assert changes_against(ours, ours) == IDENTICAL  # said, not shown as a whole program
    rewritten = {"solve.py": "".join(f"Y{i} = {i}\n" for i in range(40))}
    assert changes_against(ours, rewritten) == ""  # no shorter than the file: shown whole
    other = {"id": "i7", "score": 0.9, "metrics": {}, "files": [], "diff": diff}
    for second in (None, other):
        ctx = _context(inspirations=[other], second=second, operator="crossover")
        user = render("user.j2", **ctx)
        assert "```diff\n--- current/solve.py" in user and "INSPIRED" not in user
