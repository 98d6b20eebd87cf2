"""The benchmarks run: a small smoke run of each, with the scripted model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUN_KEYS = {
    "task",
    "arm",
    "seed",
    "calls",
    "replies",
    "accepted",
    "acceptance",
    "valid_share",
    "duplicates",
    "initial",
    "best",
    "improvement",
    "best_at",
    "best_by_call",
    "calls_per_min",
    "wall_s",
    "operators",
    "stop_reason",
}


@pytest.mark.slow
@pytest.mark.timeout(660)
def test_search_quality_smoke(tmp_path):
    out = tmp_path / "r.jsonl"
    command = [
        sys.executable,
        "benchmarks/search_quality.py",
        *("--model", "scripted", "--tasks", "circle_packing", "--calls", "4", "--seeds", "0"),
        *("--arms", "cambrian,greedy", "--sandbox", "process", "--out", str(out)),
    ]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["arm"] for r in records] == ["cambrian", "greedy"]
    for record in records:
        assert RUN_KEYS <= set(record), RUN_KEYS - set(record)
        assert record["replies"] >= 1 and record["calls"] >= 1
        assert record["initial"] is not None and record["best"] >= record["initial"]
        assert len(record["best_by_call"]) == record["calls"] + 1
    assert "cambrian vs greedy:" in run.stdout
    # --resume keeps both runs and adds the one missing arm only.
    command[command.index("cambrian,greedy")] = "cambrian,greedy,random"
    again = subprocess.run(
        [*command, "--resume"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert "2 runs kept" in again.stdout and "1 to run" in again.stdout
    arms = [json.loads(line)["arm"] for line in out.read_text().splitlines()]
    assert arms == ["cambrian", "greedy", "random"]
    assert "cambrian vs random:" in again.stdout and "cambrian vs greedy:" in again.stdout
