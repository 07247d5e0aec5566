"""End to end: the real dashboard on a store filled by a real search, driven in headless Chromium.

Screenshots of each page go to artifacts/screenshots/ (or $HPSEARCH_ARTIFACTS/screenshots/).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from hpsearch.platform import query
from tests.dashboard.conftest import DashboardServer, screenshot

pytestmark = pytest.mark.e2e
WAIT_S = 45


def _rows(driver, grid: str) -> list:
    return driver.find_elements(By.CSS_SELECTOR, f"#{grid} .ag-center-cols-container .ag-row")


def _wait(driver, condition, message: str, timeout: float = WAIT_S):
    return WebDriverWait(driver, timeout, poll_frequency=0.25).until(lambda d: condition(d), message)


def _steady(driver, find, message: str):
    """What `find` returns once the elements it finds have stopped moving: Plotly draws a figure again
    when its margins grow to fit labels, and a pointer aimed at a point before that misses it."""
    last: list = [None]

    def settled(d):
        elements = find(d)
        rects = [tuple(element.rect.values()) for element in elements]
        steady, last[0] = bool(elements) and rects == last[0], rects
        return elements if steady else False

    return WebDriverWait(driver, WAIT_S, poll_frequency=0.4).until(settled, message)


def _curve_traces(driver) -> list:
    return driver.find_elements(By.CSS_SELECTOR, "#learning-curves .scatterlayer .trace")


def test_searches_page_lists_the_search(dashboard, browser, searched_store):
    search = query.searches(searched_store).iloc[0]
    browser.get(dashboard.url + "/")
    link = _wait(browser, lambda d: d.find_elements(By.LINK_TEXT, search.search_id), "the search is not listed")[0]
    row = _rows(browser, "searches-grid")[0].text
    assert "digits-quick" in row and "random" in row and "completed" in row
    assert "6" in row.split()  # six trials done
    screenshot(browser, "searches")
    link.click()
    _wait(browser, lambda d: d.find_elements(By.ID, "search-title"), "the search page did not open")
    assert browser.current_url.endswith(f"/search/{search.search_id}")


def test_search_page_shows_every_view_and_selecting_a_trial_draws_its_curve(dashboard, browser, searched_store):
    search = query.searches(searched_store).iloc[0]
    trials = query.trials(search.search_id, searched_store)
    best = query.best(search.search_id, searched_store)
    browser.get(f"{dashboard.url}/search/{search.search_id}")
    _wait(browser, lambda d: len(_rows(d, "trials-grid")) == len(trials), "the table lacks a row per trial")
    assert f"Best trial: {best['trial']}" in browser.find_element(By.ID, "best-card").text
    assert f"{best['value']:.4f}" in browser.find_element(By.ID, "best-card").text
    # parallel coordinates, best so far, metric against a parameter and importance are drawn
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#parcoords .parcoords"), "no parallel coordinates")
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#best-so-far .scatterlayer .trace"), "no best-so-far")
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#metric-vs-param .scatterlayer .trace"),
          "no metric against a parameter")
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#importance .barlayer .trace"), "no importance")
    assert not _curve_traces(browser)
    # The replicated configurations, best mean first, with their intervals as error bars.
    replicated = query.replicates(search.search_id, searched_store)
    assert len(replicated) == 2 and best["trial"] == replicated["trial"].iloc[0]
    _wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#replicates .errorbars path.yerror")) == 2,
          "the replicated configurations have no error bars")
    assert "overlap" in browser.find_element(By.ID, "replicates-verdict").text
    assert f"mean {best['mean']:.4f} over 2 seeds" in browser.find_element(By.ID, "best-card").text

    first, second = _rows(browser, "trials-grid")[:2]
    first.find_element(By.CSS_SELECTOR, ".ag-cell[col-id='status']").click()
    _wait(browser, lambda d: len(_curve_traces(d)) == 1, "selecting a trial drew no learning curve")
    assert "?trials=" in browser.current_url  # the selection is in the URL, to share
    _wait(browser, lambda d: "select 2 to 5" in d.find_element(By.ID, "compare").text, "no comparison hint")
    second.find_element(By.CSS_SELECTOR, ".ag-row-selection-checkbox, .ag-selection-checkbox input, "
                                         ".ag-checkbox-input").click()
    _wait(browser, lambda d: len(_curve_traces(d)) == 2, "a second selected trial drew no second curve")
    _wait(browser, lambda d: d.find_elements(By.ID, "compare-table"), "two selected trials are not compared")
    screenshot(browser, "search")


def test_the_pareto_view_draws_the_front_and_a_click_selects_a_trial(dashboard, browser, searched_store):
    from selenium.webdriver.common.action_chains import ActionChains

    search = query.searches(searched_store).iloc[0]
    front = query.pareto(search.search_id, searched_store)
    assert len(front) >= 1
    browser.get(f"{dashboard.url}/search/{search.search_id}")
    _wait(browser, lambda d: d.find_element(By.ID, "pareto-card").is_displayed(), "no Pareto view")
    points = _steady(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#pareto .scatterlayer .trace:last-child .point"),
                     "the front is not drawn")
    assert len(points) == len(front)
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", points[0])
    ActionChains(browser).move_to_element(points[0]).click().perform()
    _wait(browser, lambda d: len(_curve_traces(d)) == 1, "clicking a trial on the front selected nothing")
    assert any(f"trials={trial}" in browser.current_url for trial in front["trial"])
    screenshot(browser, "pareto")


def test_a_deep_link_opens_a_search_with_trials_selected(dashboard, browser, searched_store):
    search = query.searches(searched_store).iloc[0]
    chosen = query.trials(search.search_id, searched_store)["trial"].tolist()[:3]
    browser.get(f"{dashboard.url}/search/{search.search_id}?trials={','.join(chosen)}")
    _wait(browser, lambda d: len(_curve_traces(d)) == 3, "the linked trials' curves are not drawn")
    table = _wait(browser, lambda d: d.find_elements(By.ID, "compare-table"), "no comparison")[0]
    assert all(f"trial {trial}" in table.text for trial in chosen)
    assert table.find_elements(By.CSS_SELECTOR, "tr.differs")  # some setting differs between them
    screenshot(browser, "deep-link")


def test_a_trial_that_finishes_after_the_page_loaded_appears_without_a_reload(browser, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    search = subprocess.Popen(
        [sys.executable, "-m", "hpsearch.platform.cli", "run", "digits-quick", "--tracking-uri", uri,
         "--set", "search.num_samples=4", "--set", "search.max_concurrent=1", "--set", "train.epochs=12"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    server = None
    try:
        search_id = search.stdout.readline().split()[1].rstrip(":")  # "search <id>: 4 trials, ..."
        deadline = time.monotonic() + 60
        while not _has_search(uri, search_id):
            assert time.monotonic() < deadline and search.poll() is None, "the search never started"
            time.sleep(0.5)
        server = DashboardServer(uri, tmp_path, refresh_s=1.0)
        browser.get(f"{server.url}/search/{search_id}")
        _wait(browser, lambda d: d.find_elements(By.ID, "search-title"), "the search page did not open")
        browser.execute_script("window.__loadedOnce = true;")  # gone if the page reloads
        done_at_load = _finished_rows(browser)
        assert done_at_load < 4, "the search finished before the page loaded: nothing left to watch"
        _wait(browser, lambda d: len(_rows(d, "trials-grid")) >= 1, "no running trial shown", timeout=90)
        _rows(browser, "trials-grid")[0].find_element(By.CSS_SELECTOR, ".ag-cell[col-id='status']").click()
        _wait(browser, lambda d: len(_curve_traces(d)) == 1, "no curve for the selected running trial")
        _wait(browser, lambda d: _finished_rows(d) == 4, "finished trials did not appear", timeout=180)
        assert browser.execute_script("return window.__loadedOnce === true;"), "the page was reloaded"
        selected = browser.find_elements(By.CSS_SELECTOR, "#trials-grid .ag-center-cols-container .ag-row-selected")
        assert len(selected) == 1, "the selection was lost on refresh"
        _wait(browser, lambda d: "completed" in d.find_element(By.ID, "search-status").text.split(" · ")[0],
              "the header does not say the search completed", timeout=60)
        screenshot(browser, "live")
        assert search.wait(timeout=120) == 0
    finally:
        if search.poll() is None:
            search.kill()
        if server is not None:
            log = server.stop()
            assert "Traceback" not in log, log


def _has_search(uri: str, search_id: str) -> bool:
    """Read-only, straight from SQLite: reading through MLflow while the search's process creates the
    store would race it through the schema migration."""
    import sqlite3

    path = uri.removeprefix("sqlite:///")
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1) as connection:
            found = connection.execute("SELECT 1 FROM tags WHERE key = 'hpsearch.search_id' AND value = ?",
                                       (search_id,)).fetchone()
    except sqlite3.Error:  # not created yet, or mid-migration
        return False
    return found is not None


def _finished_rows(driver) -> int:
    cells = driver.find_elements(By.CSS_SELECTOR, "#trials-grid .ag-center-cols-container .ag-cell[col-id='status']")
    return sum(cell.text in ("completed", "stopped_early") for cell in cells)
