"""The web view in a real headless Chromium, during a live run with the scripted model."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from conftest import ROOT, cambrian_cmd, need_engine, scrubbed_env
from fixtures_ui import (
    HOSTILE,
    HOSTILE_REPLY,
    UiServer,
    grid_task,
    hostile_archive,
    ledger_archive,
    slow,
)

from cambrian._cli_ui import run_source
from cambrian.archive import ArchiveViews
from cambrian.llm import ScriptedLLMServer, mutate_numbers

CHROME_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1500,900",
)
ARTIFACTS = ROOT / ".pytest-artifacts" / "ui"


def _chrome():
    """A headless Chromium driven through Debian's chromedriver (nothing downloaded)."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        need_engine(False, "selenium (pip install 'cambrian[test]')")
    have = Path("/usr/bin/chromium").exists() and Path("/usr/bin/chromedriver").exists()
    need_engine(have, "chromium and chromedriver (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def _wait(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def _count(driver) -> int:
    return int(driver.find_element("id", "node-count").get_attribute("data-count") or 0)


def _text(driver, element_id: str) -> str:
    found = driver.find_elements("id", element_id)
    return found[0].text if found else ""


def _rows(driver) -> dict[str, str]:
    """The program panel's table as {label: value}."""
    cells = [
        [td.text for td in tr.find_elements("css selector", "td")]
        for tr in driver.find_elements("css selector", "#detail tr")
    ]
    return {row[0]: row[1] for row in cells if len(row) == 2}


def _shot(driver, folder: Path, name: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(folder / name))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(folder / name, ARTIFACTS / name)


def _start_run(task: Path, run_dir: Path, url: str) -> subprocess.Popen:
    args = ["run", str(task), "--run-dir", str(run_dir), "--iterations", "40"]
    args += ["--model", "openai/scripted", "--api-base", url, "--sandbox", "process", "-q"]
    args += ["--set", "run.proposal_concurrency=1", "--set", "run.eval_concurrency=1"]
    return subprocess.Popen(
        cambrian_cmd(*args), env=scrubbed_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def _views_when_ready(run_dir: Path, run: subprocess.Popen):
    def ready():
        if run.poll() is not None:
            raise AssertionError(f"run ended early: {run.stderr.read().decode()[-2000:]}")
        if not (run_dir / "config.json").is_file() or not (run_dir / "archive.db").is_file():
            return None
        url, source = run_source(run_dir)
        views = ArchiveViews(url)
        return (views, source) if views.ready() and views.runs() else None

    return _wait(ready, 30, "the run to create its archive")


@pytest.mark.slow
def test_live_tree_grows_node_opens_grid_shows(tmp_path: Path) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    from cambrian.ui import create_app

    driver = _chrome()
    task, run_dir = grid_task(tmp_path), tmp_path / "run"
    shots = tmp_path / "screens"
    with ScriptedLLMServer(slow(mutate_numbers(seed=7), 0.25)) as llm:
        run = _start_run(task, run_dir, llm.url)
        try:
            views, source = _views_when_ready(run_dir, run)
            with UiServer(create_app(views, {source.run_id: source})) as ui:
                driver.get(ui.url + "/")
                first = _wait(lambda: _count(driver) >= 2 and _count(driver), 20, "2 nodes")
                _wait(lambda: _count(driver) >= first + 3, 30, "the tree to grow")
                assert run.poll() is None, "the run ended before the tree was seen growing"
                _shot(driver, shots, "1-tree-live.png")
                best = _wait(
                    lambda: driver.execute_script("return cambrian.S.best?.program_id"), 10, "best"
                )
                driver.execute_script("cambrian.Tree.fit(); cambrian.Tree.draw();")
                x, y = driver.execute_script("return cambrian.Tree.screenPos(arguments[0])", best)
                canvas = driver.find_element("id", "tree")
                size = canvas.size
                ActionChains(driver).move_to_element_with_offset(
                    canvas, int(x - size["width"] / 2), int(y - size["height"] / 2)
                ).click().perform()
                _wait(lambda: _text(driver, "detail-id") == best, 10, "the program panel")
                diff = driver.find_element("id", "detail-diff")
                parent = driver.execute_script(
                    "return cambrian.S.nodes.get(arguments[0]).parent_id", best
                )
                if parent:
                    assert diff.find_elements("css selector", "span.add"), diff.text
                    assert "solve.py" in diff.text
                _shot(driver, shots, "2-program.png")
                driver.find_element("id", "tab-grid").click()
                cells = _wait(
                    lambda: driver.find_elements("css selector", "#grid td.cell"), 10, "grid cells"
                )
                assert len(cells) == len(views.cells(source.run_id)) or len(cells) >= 1
                _shot(driver, shots, "3-grid.png")
                driver.find_element("id", "tab-charts").click()
                _wait(lambda: driver.find_elements("css selector", "#c-score circle"), 10, "chart")
                _shot(driver, shots, "4-charts.png")
                final = _count(driver)
                assert final >= first + 3
        finally:
            driver.quit()
            run.terminate()
            run.wait(30)


@pytest.mark.slow
def test_program_panel_shows_operator_and_reply_as_text(tmp_path: Path) -> None:
    from cambrian.ui import create_app

    url, ids = ledger_archive(tmp_path / "a.db")
    driver = _chrome()
    try:
        with UiServer(create_app(ArchiveViews(url), {})) as ui:
            driver.get(ui.url + "/")
            _wait(lambda: _count(driver) == 3, 20, "3 nodes")
            _wait(lambda: "2 replies" in _text(driver, "acceptance"), 10, "the acceptance")
            assert _text(driver, "acceptance") == "acceptance 50% (1 of 2 replies)"
            driver.execute_script("cambrian.openProgram(arguments[0])", ids["rejected"])
            _wait(lambda: _text(driver, "detail-id") == ids["rejected"], 10, "the program panel")
            detail = driver.find_element("id", "detail")
            assert _rows(driver)["operator"] == "diff"
            reply = driver.find_element("id", "detail-reply")
            assert reply.text == HOSTILE_REPLY  # the markup is shown as text
            assert not detail.find_elements("css selector", "img")
            assert driver.execute_script("return window.__pwned") is None
            driver.execute_script("cambrian.openProgram(arguments[0])", ids["child"])
            _wait(lambda: _text(driver, "detail-id") == ids["child"], 10, "the child's panel")
            rows = _rows(driver)
            assert (rows["operator"], rows["edit kind"], rows["templates"]) == (
                "region",
                "functions",
                "compact",
            )
            assert rows["stage reached"] == "2"
            driver.find_element("id", "tab-recs").click()
            notes = _wait(
                lambda: driver.find_elements("css selector", "#recs .note pre"), 10, "the notes"
            )
            assert [n.text for n in notes] == ["newest advice", "try <b>larger</b> widths"]
            assert not driver.find_elements("css selector", "#recs b")
    finally:
        driver.quit()


@pytest.mark.slow
def test_hostile_archive_values_show_as_text(tmp_path: Path) -> None:
    from cambrian.ui import create_app

    url, ids = hostile_archive(tmp_path / "a.db")
    driver = _chrome()
    try:
        with UiServer(create_app(ArchiveViews(url), {})) as ui:
            driver.get(ui.url + "/")
            _wait(lambda: _count(driver) == 2, 20, "2 nodes")
            models = [o.text for o in driver.find_elements("css selector", "#f-model option")]
            assert HOSTILE in models
            driver.execute_script("cambrian.openProgram(arguments[0])", ids["rejected"])
            _wait(lambda: _text(driver, "detail-id") == ids["rejected"], 10, "the program panel")
            assert _rows(driver)["status"] == f"rejected — {HOSTILE}"
            driver.execute_script("cambrian.openProgram(arguments[0])", ids["root"])
            _wait(lambda: _text(driver, "detail-id") == ids["root"], 10, "the root's panel")
            assert json.loads(_text(driver, "detail-metrics")) == {"m": HOSTILE}
            assert json.loads(_text(driver, "detail-features")) == {"f": HOSTILE}
            driver.find_element("id", "tab-grid").click()
            cell = _wait(
                lambda: driver.find_elements("css selector", "#grid td.cell"), 10, "the grid cell"
            )
            assert cell[0].text == HOSTILE
            driver.find_element("id", "tab-charts").click()
            _wait(lambda: HOSTILE in _text(driver, "c-fail"), 10, "the failure reasons")
            assert HOSTILE in _text(driver, "c-cost")
            assert not driver.find_elements("css selector", "img")  # no element was made
            assert driver.execute_script("return window.__pwned") is None
    finally:
        driver.quit()
