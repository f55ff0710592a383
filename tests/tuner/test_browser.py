"""The HTML report and the dashboard rendered by headless Chromium (Debian's, via Playwright).

Screenshots go to test-output/screenshots/. In CI (CI set) a missing browser fails the
test; elsewhere it skips with the reason.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from review_world import preferred_study
from unavailable import missing

from storage import Database
from tuner.gateway.engine import EngineStartFailed, free_port, wait_until_serving
from tuner.review.html_report import write_study_report

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
REPO_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO_ROOT / "test-output" / "screenshots"
TRIALS_FIGURE_TRACES = 4  # feasible, infeasible, best, deadline
SERVER_START_TIMEOUT_S = 60
PLOT_TIMEOUT_MS = 30_000


def _missing_browser() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (apt-get install -y chromium chromium-driver)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[dev]')"
    return None


@pytest.fixture(scope="module")
def browser():
    reason = _missing_browser()
    if reason:
        missing(f"BROWSER TESTS NOT RUN: {reason}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('browser') / 'latts.db'}"
    return url, preferred_study(url)


@pytest.fixture
def page(browser):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(f"pageerror: {error}"))
    page.on("console", lambda message: page.errors.append(f"console: {message.text}")
            if message.type == "error" else None)
    yield page
    page.close()


def test_report_renders_every_figure_offline(study, page, tmp_path):
    url, name = study
    with Database(url) as db:
        report = write_study_report(db, name, tmp_path / "report.html")
    # No network: any request other than the file itself would fail.
    page.route("http*://**", lambda route: route.abort())
    page.goto(report.as_uri())
    page.wait_for_selector(".plotly .main-svg", timeout=PLOT_TIMEOUT_MS)
    plots = page.eval_on_selector_all(".js-plotly-plot", "nodes => nodes.length")
    assert plots == page.eval_on_selector_all("div.figure", "nodes => nodes.length") >= 5
    assert page.evaluate("document.getElementById('figure-0').data.length") == (
        TRIALS_FIGURE_TRACES)
    assert page.locator("table tbody tr").count() >= 1
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / "report.png", full_page=True)
    assert page.errors == []


def test_dashboard_shows_the_study_figures(study, page):
    url, name = study
    port = free_port()
    with _dashboard(url, port):
        page.goto(f"http://127.0.0.1:{port}/dashboard")
        page.get_by_text(name).first.click()
        page.wait_for_selector(".js-plotly-plot .main-svg", timeout=PLOT_TIMEOUT_MS)
        page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 5",
                               timeout=PLOT_TIMEOUT_MS)  # ours (3) and the dashboard's
        titles = page.locator(".js-plotly-plot .gtitle").all_text_contents()
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=SCREENSHOTS / "dashboard.png", full_page=True)
        page.goto(page.url.rstrip("/") + "/note")
        page.get_by_text("Export the preset").first.wait_for(timeout=PLOT_TIMEOUT_MS)
        page.screenshot(path=SCREENSHOTS / "dashboard-note.png")
    assert any(t.startswith("Accuracy vs predicted") for t in titles), titles
    assert any(t.startswith("Best predicted accuracy vs deadline") for t in titles), titles
    assert any(t.startswith("Latency breakdown") for t in titles), titles
    assert page.errors == []




class _dashboard:
    """`latts-tune dashboard` in a subprocess on 127.0.0.1:port, stopped on exit."""

    def __init__(self, url: str, port: int) -> None:
        self.command = [sys.executable, "-c", "from tuner.cli import main; main()",
                        "--storage", url, "dashboard", "--port", str(port)]
        self.api = f"http://127.0.0.1:{port}/api/studies"

    def __enter__(self):
        self.process = subprocess.Popen(self.command, cwd=REPO_ROOT,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_until_serving(self.process, self.api, SERVER_START_TIMEOUT_S, "the dashboard")
        except EngineStartFailed:
            self.__exit__()
            pytest.fail(f"dashboard did not start: {self.process.stderr.read().decode()}")
        return self

    def __exit__(self, *exc_info):
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
