import pytest

from cambrian.agent._edits import EditResult, apply_reply, evolve_regions_intact

SOLVE = (
    "def solve(n):\n    total = 0\n    for i in range(n):\n        total += i\n    return total\n"
)
HELPER = "def helper():\n    return 1\n"


def _only(path):
    return lambda p: p == path


def _never(_path):
    return False


def _any_py(path):
    return path.endswith(".py")


def _block(search, replace, path=""):
    head = f"{path}\n" if path else ""
    return f"{head}<<<<<<< SEARCH\n{search}=======\n{replace}>>>>>>> REPLACE\n"


def _ok(result: EditResult) -> dict[str, str]:
    assert result.ok, result.error
    assert result.error == ""
    return result.changes


# --- SEARCH/REPLACE: paths -----------------------------------------------------------


def test_single_file_without_path():
    reply = "Start from one.\n" + _block("    total = 0\n", "    total = 1\n")
    result = apply_reply(reply, {"solve.py": SOLVE}, _never)
    assert result.kind == "diff"
    assert _ok(result) == {"solve.py": SOLVE.replace("total = 0", "total = 1")}


@pytest.mark.parametrize(
    "path_line",
    [
        "solve.py",
        "`solve.py`",
        "solve.py:",
        "File: solve.py",
        "### solve.py",
        "### File: `solve.py`",
        "**solve.py**",
        "**File:** solve.py",
        "./solve.py",
    ],
)
def test_path_line_forms(path_line):
    files = {"solve.py": SOLVE, "helper.py": HELPER}
    reply = _block("    return 1\n", "    return 2\n", "helper.py") + _block(
        "    total = 0\n", "    total = 5\n", path_line
    )
    changes = _ok(apply_reply(reply, files, _never))
    assert changes == {
        "helper.py": HELPER.replace("1", "2"),
        "solve.py": SOLVE.replace("total = 0", "total = 5"),
    }


def test_path_on_search_line():
    files = {"solve.py": SOLVE, "helper.py": HELPER}
    reply = "<<<<<<< SEARCH helper.py\n    return 1\n=======\n    return 3\n>>>>>>> REPLACE\n"
    assert _ok(apply_reply(reply, files, _never)) == {"helper.py": HELPER.replace("1", "3")}


def test_blocks_inside_fences_with_path_above_fence():
    files = {"solve.py": SOLVE, "helper.py": HELPER}
    reply = (
        "Idea: return two.\n\nhelper.py\n```python\n<<<<<<< SEARCH\n    return 1\n=======\n"
        "    return 2\n>>>>>>> REPLACE\n```\n"
    )
    assert _ok(apply_reply(reply, files, _never)) == {"helper.py": HELPER.replace("1", "2")}


def test_path_inside_subdirectory_by_suffix():
    files = {"src/solve.py": SOLVE, "src/helper.py": HELPER}
    reply = _block("    return 1\n", "    return 4\n", "helper.py")
    assert _ok(apply_reply(reply, files, _never)) == {"src/helper.py": HELPER.replace("1", "4")}


def test_missing_path_reuses_previous_block_path():
    files = {"solve.py": SOLVE, "helper.py": HELPER}
    reply = _block("def helper():\n", "def helper2():\n", "helper.py") + _block(
        "    return 1\n", "    return 9\n"
    )
    assert _ok(apply_reply(reply, files, _never)) == {"helper.py": "def helper2():\n    return 9\n"}


def test_marker_lengths_five_to_nine():
    reply = "<<<<<\nSEARCH\n"  # not a marker: SEARCH must be on the same line
    assert apply_reply(reply, {"solve.py": SOLVE}, _never).error.startswith("no edit found")
    reply = "<<<<< SEARCH\n    total = 0\n=========\n    total = 7\n>>>>>>>>> REPLACE\n"
    assert _ok(apply_reply(reply, {"solve.py": SOLVE}, _never))["solve.py"].count("total = 7")


# --- SEARCH/REPLACE: matching --------------------------------------------------------


def test_multiple_blocks_apply_in_order_on_previous_result():
    reply = _block("    total = 0\n", "    total = 10\n") + _block(
        "    total = 10\n", "    total = 20\n"
    )
    changes = _ok(apply_reply(reply, {"solve.py": SOLVE}, _never))
    assert "total = 20" in changes["solve.py"]
    assert "total = 10" not in changes["solve.py"]


def test_first_occurrence_only():
    text = "x = 1\ny = 2\nx = 1\n"
    reply = _block("x = 1\n", "x = 3\n")
    assert _ok(apply_reply(reply, {"a.py": text}, _never)) == {"a.py": "x = 3\ny = 2\nx = 1\n"}


def test_trailing_whitespace_tolerated():
    text = "a = 1   \nb = 2\t\nc = 3\n"
    reply = _block("a = 1\nb = 2\n", "a = 10\nb = 20\n")
    assert _ok(apply_reply(reply, {"a.py": text}, _never)) == {"a.py": "a = 10\nb = 20\nc = 3\n"}


def test_leading_whitespace_tolerated_and_reindented():
    # The model dropped the 4-space indentation of the loop body.
    reply = _block(
        "for i in range(n):\n    total += i\n",
        "for i in range(1, n):\n    total += i * i\n    total -= 1\n",
    )
    changes = _ok(apply_reply(reply, {"solve.py": SOLVE}, _never))
    assert changes["solve.py"] == (
        "def solve(n):\n    total = 0\n    for i in range(1, n):\n"
        "        total += i * i\n        total -= 1\n    return total\n"
    )


def test_over_indented_search_is_dedented():
    text = "if x:\n    y = 1\nz = 2\n"
    reply = _block("        if x:\n            y = 1\n", "        if x:\n            y = 5\n")
    assert _ok(apply_reply(reply, {"a.py": text}, _never)) == {"a.py": "if x:\n    y = 5\nz = 2\n"}


def test_search_at_end_of_file_without_final_newline():
    text = "a = 1\nb = 2"
    reply = _block("b = 2\n", "b = 3\n")
    assert _ok(apply_reply(reply, {"a.py": text}, _never)) == {"a.py": "a = 1\nb = 3"}


def test_blank_lines_around_search_are_ignored():
    text = "a = 1\nb = 2\n"
    reply = _block("\nb = 2   \n\n", "\nb = 4\n\n")
    assert _ok(apply_reply(reply, {"a.py": text}, _never)) == {"a.py": "a = 1\nb = 4\n"}


def test_crlf_reply_is_normalised():
    reply = _block("    total = 0\n", "    total = 2\n").replace("\n", "\r\n")
    assert "total = 2" in _ok(apply_reply(reply, {"solve.py": SOLVE}, _never))["solve.py"]


def test_deleting_lines_with_empty_replace():
    text = "a = 1\nb = 2\nc = 3\n"
    reply = _block("b = 2\n", "")
    assert _ok(apply_reply(reply, {"a.py": text}, _never)) == {"a.py": "a = 1\nc = 3\n"}


# --- SEARCH/REPLACE: creating files --------------------------------------------------


def test_empty_search_creates_editable_file():
    reply = _block("", "def fast():\n    return 2\n", "fast.py")
    result = apply_reply(reply, {"solve.py": SOLVE}, _any_py)
    assert _ok(result) == {"fast.py": "def fast():\n    return 2\n"}


def test_created_file_can_be_edited_by_a_later_block():
    reply = _block("", "x = 1\n", "new.py") + _block("x = 1\n", "x = 2\n", "new.py")
    assert _ok(apply_reply(reply, {"solve.py": SOLVE}, _any_py)) == {"new.py": "x = 2\n"}


# --- SEARCH/REPLACE: rejections ------------------------------------------------------


def test_reject_not_editable():
    reply = _block("", "print(1)\n", "evaluate.py")
    result = apply_reply(reply, {"solve.py": SOLVE}, _only("solve.py"))
    assert not result.ok
    assert result.changes == {}
    assert result.error == "file 'evaluate.py' is not editable (editable: solve.py)"


def test_reject_nonexistent_file_with_search_text():
    reply = _block("x = 1\n", "x = 2\n", "new.py")
    result = apply_reply(reply, {"solve.py": SOLVE}, _any_py)
    assert result.error == "file 'new.py' does not exist: use an empty SEARCH to create it"


def test_reject_search_not_found():
    long_line = "    this line is not in the file " + "x" * 100
    reply = _block(f"\n{long_line}\n", "pass\n")
    result = apply_reply(reply, {"solve.py": SOLVE}, _never)
    expected = long_line.strip()[:80]
    assert result.error == f"SEARCH text not found in solve.py: '{expected}'"


def test_reject_empty_search_on_existing_file():
    result = apply_reply(_block("\n", "x = 1\n"), {"solve.py": SOLVE}, _never)
    assert result.error.startswith("empty SEARCH for existing file solve.py")


def test_reject_missing_path_with_several_files():
    files = {"solve.py": SOLVE, "helper.py": HELPER}
    result = apply_reply(_block("    return 1\n", "    return 2\n"), files, _never)
    assert result.error == "several files are editable: name the file before <<<<<<< SEARCH"


@pytest.mark.parametrize(
    ("reply", "detail"),
    [
        ("<<<<<<< SEARCH\nx = 1\n>>>>>>> REPLACE\n", "missing ======="),
        ("<<<<<<< SEARCH\nx = 1\n=======\nx = 2\n", "missing >>>>>>> REPLACE"),
        (
            "<<<<<<< SEARCH\nx = 1\n=======\nx = 2\n<<<<<<< SEARCH\nx\n=======\ny\n"
            ">>>>>>> REPLACE\n",
            "missing >>>>>>> REPLACE",
        ),
        ("=======\nx = 2\n>>>>>>> REPLACE\n", "REPLACE without SEARCH"),
    ],
)
def test_reject_malformed(reply, detail):
    result = apply_reply(reply, {"a.py": "x = 1\n"}, _never)
    assert result.error.startswith("malformed SEARCH/REPLACE block")
    assert detail in result.error


def test_reject_noop_diff():
    result = apply_reply(_block("    total = 0\n", "    total = 0\n"), {"solve.py": SOLVE}, _never)
    assert result.error.startswith("edit changes nothing")
    assert not result.ok


def test_reject_no_edit():
    result = apply_reply("I think the code is fine as it is.", {"solve.py": SOLVE}, _never)
    assert result.error == (
        "no edit found: answer with SEARCH/REPLACE blocks or one fenced code block"
    )
    assert result.changes == {}


def test_one_bad_block_rejects_the_whole_reply():
    reply = _block("    total = 0\n", "    total = 1\n") + _block("nope\n", "x\n")
    result = apply_reply(reply, {"solve.py": SOLVE}, _never)
    assert result.error == "SEARCH text not found in solve.py: 'nope'"
    assert result.changes == {}


# --- EVOLVE-BLOCK --------------------------------------------------------------------

EVOLVING = (
    "import math\n"
    "# EVOLVE-BLOCK-START\n"
    "def f(x):\n"
    "    return x\n"
    "# EVOLVE-BLOCK-END\n"
    "\n"
    "def main():\n"
    "    print(f(2))\n"
)


def test_diff_inside_evolve_block_ok():
    reply = _block("    return x\n", "    return math.sqrt(x)\n")
    changes = _ok(apply_reply(reply, {"s.py": EVOLVING}, _never))
    assert "math.sqrt" in changes["s.py"]


def test_diff_outside_evolve_block_rejected():
    reply = _block("    print(f(2))\n", "    print(f(3))\n")
    result = apply_reply(reply, {"s.py": EVOLVING}, _never)
    assert result.error == "edit changes text outside EVOLVE-BLOCK-START/END in s.py"


def test_diff_removing_marker_rejected():
    reply = _block("# EVOLVE-BLOCK-END\n", "")
    result = apply_reply(reply, {"s.py": EVOLVING}, _never)
    assert "outside EVOLVE-BLOCK" in result.error


def test_rewrite_outside_evolve_block_keeps_only_the_region():
    new = EVOLVING.replace("import math", "import os")
    result = apply_reply(f"```python\n{new}```\n", {"s.py": EVOLVING}, _never)
    assert result.error.startswith("edit changes nothing")  # only outside text changed
    both = new.replace("    return x\n", "    return -x\n")
    changed = _ok(apply_reply(f"```python\n{both}```\n", {"s.py": EVOLVING}, _never))
    assert changed["s.py"] == EVOLVING.replace("    return x\n", "    return -x\n")


def test_rewrite_inside_evolve_block_ok():
    new = EVOLVING.replace("    return x\n", "    y = x * 2\n    return y\n")
    result = apply_reply(f"Double it.\n```python\n{new}```\n", {"s.py": EVOLVING}, _never)
    assert _ok(result) == {"s.py": new}


def test_evolve_regions_intact_rules():
    assert evolve_regions_intact(EVOLVING, EVOLVING.replace("return x", "return -x"))
    assert evolve_regions_intact(EVOLVING, EVOLVING.replace("\n", "   \n"))  # trailing spaces
    assert evolve_regions_intact(EVOLVING, EVOLVING + "\n\n")  # trailing blank lines
    assert not evolve_regions_intact(EVOLVING, EVOLVING.replace("import math", "import os"))
    moved_in = EVOLVING.replace("import math\n# EVOLVE-BLOCK-START\n", "# EVOLVE-BLOCK-START\n")
    assert not evolve_regions_intact(EVOLVING, moved_in)
    extra = EVOLVING.replace("    return x\n", "    return x\n# EVOLVE-BLOCK-END\n")
    assert not evolve_regions_intact(EVOLVING, extra)
    assert evolve_regions_intact("a = 1\n", "b = 2\n")  # no markers: anything goes


def test_evolve_block_with_other_comment_styles():
    old = "int a;\n// EVOLVE-BLOCK-START\nint f() { return 1; }\n// EVOLVE-BLOCK-END\nint b;\n"
    assert evolve_regions_intact(old, old.replace("return 1", "return 2"))
    assert not evolve_regions_intact(old, old.replace("int b;", "int c;"))


# --- full rewrites -------------------------------------------------------------------


def test_rewrite_single_fenced_block():
    new = "def solve(n):\n    return n * (n - 1) // 2\n"
    result = apply_reply(f"Closed form.\n```python\n{new}```\n", {"solve.py": SOLVE}, _never)
    assert result.kind == "rewrite"
    assert _ok(result) == {"solve.py": new}


def test_rewrite_with_think_prose_around():
    new = "def solve(n):\n    return n * (n - 1) // 2\n"
    reply = (
        "<think>\nMaybe a loop?\n```python\nbad draft\n```\nNo, a closed form.\n</think>\n"
        f"Use the closed form.\n\n```python\n{new}```\nThis is O(1)."
    )
    assert _ok(apply_reply(reply, {"solve.py": SOLVE}, _never)) == {"solve.py": new}


def test_think_closing_tag_only_and_diff_after_it():
    reply = "drafting...\n```\nx\n```\n</think>\n" + _block("    total = 0\n", "    total = 3\n")
    assert "total = 3" in _ok(apply_reply(reply, {"solve.py": SOLVE}, _never))["solve.py"]


def test_rewrite_keeps_missing_final_newline_style():
    result = apply_reply("```\nb = 2\n```", {"a.py": "a = 1"}, _never)
    assert _ok(result) == {"a.py": "b = 2"}


def test_rewrite_named_blocks_several_files():
    files = {"solve.py": SOLVE, "helper.py": HELPER}
    reply = (
        "Both files.\n\nhelper.py\n```python\ndef helper():\n    return 2\n```\n\n"
        "### File: `solve.py`\n```python\ndef solve(n):\n    return helper()\n```\n"
    )
    result = apply_reply(reply, files, _never)
    assert _ok(result) == {
        "helper.py": "def helper():\n    return 2\n",
        "solve.py": "def solve(n):\n    return helper()\n",
    }


def test_rewrite_named_block_creates_editable_file():
    reply = "extra.py\n```python\nX = 1\n```\n"
    assert _ok(apply_reply(reply, {"solve.py": SOLVE}, _any_py)) == {"extra.py": "X = 1\n"}


def test_rewrite_named_block_not_editable_rejected():
    reply = "evaluate.py\n```python\nprint('hacked')\n```\n"
    result = apply_reply(reply, {"solve.py": SOLVE}, _only("solve.py"))
    assert result.error == "file 'evaluate.py' is not editable (editable: solve.py)"


def test_rewrite_unnamed_block_with_several_files_rejected():
    files = {"solve.py": SOLVE, "helper.py": HELPER}
    result = apply_reply("```python\nx = 1\n```\n", files, _never)
    assert result.error.startswith("several files are editable")


def test_rewrite_several_unnamed_blocks_takes_the_first():
    reply = "```python\nx = 1\n```\nand\n```python\ny = 2\n```\n"
    result = apply_reply(reply, {"solve.py": SOLVE}, _never)
    assert result.ok and result.changes == {"solve.py": "x = 1\n"}


def test_rewrite_unclosed_fence_rejected():
    result = apply_reply("```python\ndef solve(n):\n    return", {"solve.py": SOLVE}, _never)
    assert result.error == "unclosed code fence: the reply looks truncated"


def test_rewrite_empty_block_rejected():
    result = apply_reply("```python\n\n```\n", {"solve.py": SOLVE}, _never)
    assert result.error == "code block for solve.py is empty"


def test_rewrite_noop_rejected():
    result = apply_reply(f"```python\n{SOLVE}```\n", {"solve.py": SOLVE}, _never)
    assert result.error.startswith("edit changes nothing")


def test_unclosed_think_hides_everything_after_it():
    reply = "<think>\nI could write\n```python\nx = 1\n```\n"
    result = apply_reply(reply, {"solve.py": SOLVE}, _never)
    assert result.error.startswith("no edit found")


def test_result_is_frozen():
    result = apply_reply("nothing", {"a.py": ""}, _never)
    with pytest.raises(AttributeError):
        result.error = ""  # type: ignore[misc]


def test_exact_match_prefers_line_start():
    text = "max = 1\nx = 1\n"
    reply = _block("x = 1\n", "x = 2\n")
    assert _ok(apply_reply(reply, {"a.py": text}, _never)) == {"a.py": "max = 1\nx = 2\n"}


def test_unindented_search_matches_inside_indented_line():
    reply = _block("total = 0\n", "total = 8\n")
    changes = _ok(apply_reply(reply, {"solve.py": SOLVE}, _never))
    assert "\n    total = 8\n" in changes["solve.py"]


def test_path_mentioned_in_prose_line():
    files = {"solve.py": SOLVE, "helper.py": HELPER}
    reply = "Now change `helper.py` like this:\n" + _block("    return 1\n", "    return 6\n")
    assert _ok(apply_reply(reply, files, _never)) == {"helper.py": HELPER.replace("1", "6")}


def test_rewrite_named_block_ignores_unnamed_usage_block():
    new = "def solve(n):\n    return 0\n"
    reply = f"The new solve.py:\n```python\n{new}```\nRun:\n```bash\npython -c 'x'\n```\n"
    assert _ok(apply_reply(reply, {"solve.py": SOLVE}, _never)) == {"solve.py": new}


def test_reindent_keeps_relative_indent_verbatim():
    text = "def f():\n\tif x:\n\t\treturn 1\n\treturn 0\n"
    reply = _block("if x:\n    return 1\n", "if y:\n    return 2\n")
    changes = _ok(apply_reply(reply, {"a.py": text}, _never))
    assert changes["a.py"] == "def f():\n\tif y:\n\t    return 2\n\treturn 0\n"


def test_unified_diff_rejected():
    reply = "```diff\n--- a/solve.py\n+++ b/solve.py\n@@ -1 +1 @@\n-x\n+y\n```\n"
    result = apply_reply(reply, {"solve.py": SOLVE}, _never)
    assert result.error == "unified diffs are not supported: use SEARCH/REPLACE blocks"
