"""The run folder's JSON files: atomic under SIGKILL, and a clear error when damaged."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import cambrian_cmd, scrubbed_env

from cambrian.agent import read_run_files
from cambrian.agent._run_files import write_run_files
from cambrian.errors import ConfigError

WRITER = """
import sys
from pathlib import Path
from cambrian.agent._run_files import write_run_files
run_dir, n = Path(sys.argv[1]), 0
big = {"padding": "x" * 2_000_000}
while True:
    n += 1
    write_run_files(run_dir, {"run_id": "abc", "n": n, **big}, {"n": n, **big})
    print(n, flush=True)
"""


def test_a_writer_killed_mid_write_leaves_whole_files(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    for _ in range(5):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(run_dir)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(3):  # let it finish a few writes, then kill it wherever it is
            assert proc.stdout.readline(), "the writer died on its own"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        meta, config = read_run_files(run_dir)
        assert meta["run_id"] == "abc" and meta["n"] >= 3 and config["n"] >= 3
    for temp in run_dir.glob(".*.tmp"):  # what the killed writers left, made old
        os.utime(temp, (0, 0))
    write_run_files(run_dir, {"run_id": "abc"}, {})
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.json", "run.json"]


@pytest.mark.parametrize("damage", ["", "{not json", "[1, 2]", '{"n": 1}'])
def test_a_damaged_run_json_is_a_one_line_error(tmp_path: Path, damage: str) -> None:
    run_dir = tmp_path / "run"
    write_run_files(run_dir, {"run_id": "abc"}, {})
    (run_dir / "run.json").write_text(damage)
    with pytest.raises(ConfigError, match=r"run\.json"):
        read_run_files(run_dir)
    out = subprocess.run(
        cambrian_cmd("status", "--run-dir", str(run_dir)),
        env=scrubbed_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert "run.json" in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert json.loads((run_dir / "config.json").read_text()) == {}  # nothing else touched


def test_a_missing_config_json_is_named(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    write_run_files(run_dir, {"run_id": "abc"}, {})
    (run_dir / "config.json").unlink()
    with pytest.raises(ConfigError, match=r"config\.json is missing"):
        read_run_files(run_dir)
