"""Partial answers: an EVOLVE-BLOCK's new code, or changed functions, put back in place."""

from pathlib import Path

from cambrian.agent._edits import MAX_REPLY_CHARS, apply_reply, strip_thinking
from cambrian.agent._regions import block_span, merge_definitions, region_text, splice

SOLVE = (
    '"""Doc."""\n'
    "\n"
    "import math\n"
    "\n"
    "# EVOLVE-BLOCK-START\n"
    "N = 26\n"
    "ROWS = 5\n"
    "\n"
    "\n"
    "def pack():\n"
    '    """A grid."""\n'
    "    return [(0.1, 0.1, 0.1)] * ROWS\n"
    "\n"
    "\n"
    "def helper(x):\n"
    "    return x + 1\n"
    "\n"
    "\n"
    "# EVOLVE-BLOCK-END\n"
)

PLAIN = "import os\n\n\ndef a():\n    return 1\n\n\ndef b():\n    return a() + 1\n"


def _never(_path: str) -> bool:
    return False


def _apply(reply: str, files: dict[str, str] | None = None):
    return apply_reply(reply, files or {"solve.py": SOLVE}, _never)


def test_region_reply_replaces_the_block_and_keeps_the_rest() -> None:
    new_region = "N = 26\nROWS = 6\n\n\ndef pack():\n    return [(0.2, 0.2, 0.1)] * ROWS\n"
    result = _apply(f"Six rows.\n```python\n{new_region}```\n")
    assert result.ok and result.kind == "functions"  # helper() was not in the reply: kept
    text = result.changes["solve.py"]
    assert text.startswith('"""Doc."""\n\nimport math\n\n# EVOLVE-BLOCK-START\n')
    assert "ROWS = 6" in text and "(0.2, 0.2, 0.1)" in text and "def helper(x)" in text
    assert text.endswith("# EVOLVE-BLOCK-END\n")


def test_one_function_reply_replaces_only_that_function() -> None:
    reply = "```python\ndef pack():\n    return [(0.3, 0.3, 0.1)] * ROWS\n```\n"
    result = _apply(reply)
    assert result.ok and result.kind == "functions"
    text = result.changes["solve.py"]
    assert "(0.3, 0.3, 0.1)" in text and "(0.1, 0.1, 0.1)" not in text
    assert "ROWS = 5" in text and "def helper(x):\n    return x + 1" in text


def test_complete_region_reply_is_a_region_edit() -> None:
    region = region_text(SOLVE).replace("ROWS = 5", "ROWS = 4")
    result = _apply(f"```python\n{region}```")
    assert result.ok and result.kind == "region"
    assert result.changes["solve.py"] == SOLVE.replace("ROWS = 5", "ROWS = 4")


def test_whole_file_changed_outside_the_block_keeps_only_the_block_change() -> None:
    new = SOLVE.replace("import math", "import os").replace("ROWS = 5", "ROWS = 7")
    result = _apply(f"```python\n{new}```\n")
    assert result.ok
    assert result.changes["solve.py"] == SOLVE.replace("ROWS = 5", "ROWS = 7")


def test_new_definitions_and_imports_are_added() -> None:
    reply = "```python\nimport random\n\n\ndef jitter():\n    return random.random()\n```"
    text = _apply(reply).changes["solve.py"]
    region = region_text(text)
    assert region.startswith("import random\n")
    assert region.rstrip().endswith("return random.random()")
    assert "def pack()" in region and "def helper(x)" in region


def test_an_unchanged_echo_is_refused() -> None:
    result = _apply(f"Here it is.\n```python\n{region_text(SOLVE)}```\n")
    assert not result.ok and result.error.startswith("edit changes nothing")


def test_a_syntax_error_in_the_reply_is_refused_with_its_line() -> None:
    result = _apply("```python\ndef pack(:\n    return []\n```")
    assert not result.ok
    assert result.error.startswith("the code for solve.py does not parse (line 1:")


def test_functions_of_a_plain_file_are_merged_by_name() -> None:
    reply = "```python\ndef b():\n    return a() + 2\n```"
    result = apply_reply(reply, {"m.py": PLAIN}, _never)
    assert result.ok and result.kind == "functions"
    assert result.changes["m.py"] == PLAIN.replace("a() + 1", "a() + 2")


def test_a_complete_plain_file_is_a_rewrite() -> None:
    new = PLAIN.replace("return 1", "return 5")
    result = apply_reply(f"```python\n{new}```", {"m.py": PLAIN}, _never)
    assert result.ok and result.kind == "rewrite" and result.changes["m.py"] == new


def test_non_python_block_is_replaced_whole() -> None:
    text = "a: 1\n# EVOLVE-BLOCK-START\nb: 2\n# EVOLVE-BLOCK-END\nc: 3\n"
    result = apply_reply("```yaml\nb: 5\nd: 6\n```", {"conf.yaml": text}, _never)
    assert result.ok and result.kind == "region"
    assert result.changes["conf.yaml"] == text.replace("b: 2\n", "b: 5\nd: 6\n")


def test_block_span_needs_exactly_one_block() -> None:
    assert block_span(SOLVE) == (5, 18)
    assert block_span(SOLVE + SOLVE) is None
    assert block_span("no markers\n") is None


def test_splice_and_merge_primitives() -> None:
    assert splice(SOLVE, "X = 1") == SOLVE.replace(region_text(SOLVE), "X = 1\n")
    merged = merge_definitions("A = 1\n\n\ndef f():\n    return A\n", "A = 2\nprint('x')\n")
    assert merged == "A = 2\n\n\ndef f():\n    return A\n"  # the call is dropped
    assert merge_definitions("A = 1\n", "print('x')\n") is None  # defines nothing
    assert merge_definitions("A = 1\n", "def (:\n") is None


def test_decorated_functions_are_replaced_with_their_decorators() -> None:
    old = "import functools\n\n\n@functools.cache\ndef f(n):\n    return n\n"
    merged = merge_definitions(old, "@functools.lru_cache(4)\ndef f(n):\n    return 2 * n\n")
    assert merged == "import functools\n\n\n@functools.lru_cache(4)\ndef f(n):\n    return 2 * n\n"


def test_strip_thinking_is_linear_and_keeps_the_answer() -> None:
    hostile = "<think>" * 50_000 + "x"  # the old regex took tens of seconds on this shape
    assert strip_thinking(hostile) == ""
    assert strip_thinking("a<think>b</think>c<think>d") == "ac"
    assert strip_thinking("chain of thought</think>answer") == "answer"
    assert strip_thinking("<THINKING>x</thinking>y") == "y"


def test_an_oversized_reply_is_refused_unread() -> None:
    result = _apply("x" * (MAX_REPLY_CHARS + 1))
    assert not result.ok and result.error.startswith("reply too long")


def test_a_torn_out_function_body_is_refused_with_a_reason() -> None:
    reply = "```python\nr = 0.2\ncircles = []\nfor i in range(ROWS):\n    circles.append(i)\n```"
    result = _apply(reply)
    assert not result.ok
    assert "statements outside any function (line 3)" in result.error
    assert "with its def line" in result.error


def test_same_behaviour_ignores_docs_comments_and_unused_additions() -> None:
    from cambrian.agent._behaviour import same_behaviour

    old = 'import math\n\nN = 3\n\n\ndef f():\n    """Doc."""\n    return N  # three\n'
    assert same_behaviour(old, old.replace('"""Doc."""', '"""Other."""').replace("# three", ""))
    assert same_behaviour(old, old + "\n\ndef unused():\n    return 1\n\nX = 2\nimport random\n")
    assert not same_behaviour(old, old.replace("N = 3", "N = 4"))
    assert not same_behaviour(old, old + "\n\ndef g():\n    return f()\n\nprint(g())\n")
    # after a failure a new function may be what the evaluator looks for
    assert not same_behaviour(old, old + "\n\ndef pack():\n    return []\n", unused=False)
    assert not same_behaviour(old, "def (:\n")


def test_a_reply_of_comments_only_is_refused_and_keeps_the_program() -> None:
    result = _apply("```python\n# Use a genetic algorithm.\n# Place larger circles first.\n```")
    assert not result.ok and "defines nothing" in result.error


def test_an_indented_block_takes_its_new_body() -> None:
    old = (
        "def solve(xs):\n    # EVOLVE-BLOCK-START\n    total = 0\n    for x in xs:\n"
        "        total += x\n    # EVOLVE-BLOCK-END\n    return total\n"
    )
    result = apply_reply("```python\ntotal = sum(xs)\n```", {"s.py": old}, _never)
    assert result.ok
    assert result.changes["s.py"] == old.replace(
        "    total = 0\n    for x in xs:\n        total += x\n", "    total = sum(xs)\n"
    )
    broken = apply_reply("```python\ntotal = sum(xs\n```", {"s.py": old}, _never)
    assert not broken.ok and "once the code is put in its EVOLVE-BLOCK" in broken.error


def test_a_whole_file_echo_missing_its_end_marker_keeps_outside_code_out() -> None:
    outside = "def check(x):\n    return x > 0\n\n\n"
    old = outside + "# EVOLVE-BLOCK-START\ndef f():\n    return 1\n# EVOLVE-BLOCK-END\n"
    reply = "```python\n" + outside.replace("x > 0", "True")
    reply += "# EVOLVE-BLOCK-START\ndef f():\n    return 2\n```"
    result = apply_reply(reply, {"s.py": old}, _never)
    assert result.ok
    assert result.changes["s.py"] == old.replace("return 1", "return 2")  # check() untouched


def test_line_numbers_survive_form_feeds_and_unicode_separators() -> None:
    old = 'X = "a\u2028b"\n\x0c\ndef f():\n    return 1\n\n\ndef g():\n    return f()\n'
    merged = merge_definitions(old, "def g():\n    return 2\n")
    assert merged == old.replace("return f()", "return 2")


def test_a_bare_body_goes_into_the_block_s_only_function() -> None:
    old = (
        "# EVOLVE-BLOCK-START\n"
        "def priority(item: float, bins: list[float]) -> list[float]:\n"
        '    """Score each bin."""\n'
        "    return [-(b - item) for b in bins]\n"
        "# EVOLVE-BLOCK-END\n"
    )
    reply = "```python\nscores = [-(b - item) ** 2 for b in bins]\nreturn scores\n```"
    result = apply_reply(reply, {"solve.py": old}, _never)
    assert result.ok
    assert result.changes["solve.py"] == (
        "# EVOLVE-BLOCK-START\n"
        "def priority(item: float, bins: list[float]) -> list[float]:\n"
        "    scores = [-(b - item) ** 2 for b in bins]\n"
        "    return scores\n"
        "# EVOLVE-BLOCK-END\n"
    )


CIRCLES = (
    Path(__file__).resolve().parents[2] / "tasks" / "circle_packing" / "solve.py"
).read_text()


def test_a_changed_line_of_a_function_replaces_its_namesake_there() -> None:
    reply = "```python\nr = [min(x, y) for x, y in points]  # closer to the walls\n```"
    result = apply_reply(reply, {"solve.py": CIRCLES}, _never)
    assert result.ok and result.kind == "lines"
    old_line = "    r = [min(x, y, 1 - x, 1 - y) for x, y in points]\n"
    new_line = "    r = [min(x, y) for x, y in points]  # closer to the walls\n"
    assert result.changes["solve.py"] == CIRCLES.replace(old_line, new_line)


def test_a_torn_out_body_whose_statements_all_match_replaces_them_in_place() -> None:
    reply = (
        "```python\npoints = centres()[::-1]\n"
        "return [(x, y, r) for (x, y), r in zip(points, radii(points))]\n```"
    )
    result = apply_reply(reply, {"solve.py": CIRCLES}, _never)
    assert result.ok and result.kind == "lines"
    text = result.changes["solve.py"]
    assert "def pack():\n    points = centres()[::-1]\n    return [(x, y, r) for" in text
    assert "strict=True)][:N]" not in text and text.count("def ") == CIRCLES.count("def ")


def test_statements_that_match_nothing_or_a_constant_are_not_placed_in_a_function() -> None:
    from cambrian.agent._statements import into_statements

    region = "N = 3\n\n\ndef f(xs):\n    total = 0\n    for x in xs:\n        total += x\n"
    region += "    return total\n"
    assert into_statements(region, "N = 4\n") is None  # a constant: merged by name instead
    assert into_statements(region, "count = 0\n") is None  # no statement sets `count`
    assert into_statements(region, "total = 1\ntotal = 2\n") is None  # one key twice
    placed = into_statements(region, "for x in sorted(xs):\n    total += 2 * x\n")
    assert placed == region.replace(
        "for x in xs:\n        total += x", "for x in sorted(xs):\n        total += 2 * x"
    )
