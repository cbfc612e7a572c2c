"""The console and the lookup page in headless Chromium (Debian's ``chromium`` and ``chromium-driver``, through
Selenium): an operator logs in, finds a dead letter, redrives it and sees it delivered, opens the report; a citizen
looks a dossier up. Each page's screenshot is saved and checked not to be blank.

The gateway runs as the daemon does (API and outbox worker in one process) on 127.0.0.1, with the alert webhook
pointing at a receiver that refuses the first alert (so it becomes a dead letter) and accepts it once redriven.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway import outbox
from gateway.bootstrap import context_of
from gateway.daemon import run_daemon
from gateway.flows import alerts
from gateway.runtime import Runtime
from gateway.store.models import OutboxMessage, utcnow
from tests.api_support import ADMIN_TOKEN, PERSONAL_STRINGS, PORTAL, open_runtime, submission
from tests.servers import ServerThread

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')")
if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
    apt = "apt-get is not available here" if shutil.which("apt-get") is None else "they are not installed yet"
    pytest.skip(
        f"browser tests need Debian's chromium and chromium-driver ({CHROMIUM}, {CHROMEDRIVER}): {apt}; "
        "install them with: apt-get install -y chromium chromium-driver",
        allow_module_level=True,
    )

from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

#: How long to wait for an outcome (a delivery, a page) before giving up: a bound, never an assertion.
PATIENCE = 30.0


def wait_for(condition: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"gave up waiting for {what}")


class Receiver:
    """The alert webhook: refuses (400) while ``accept`` is false, records every post."""

    def __init__(self) -> None:
        self.accept = False
        self.posts: list[tuple[int, dict[str, Any]]] = []

        async def hook(request: Request) -> JSONResponse:
            status = 200 if self.accept else 400
            self.posts.append((status, await request.json()))
            return JSONResponse({"ok": self.accept}, status_code=status)

        self.app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])


class DaemonThread:
    """:func:`gateway.daemon.run_daemon` on 127.0.0.1 in a thread of its own, stopped cleanly."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.url = ""
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), name="daemon-test", daemon=True)

    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()

        def ready(url: str | None) -> None:
            self.url = url or ""
            self._ready.set()

        await run_daemon(
            self.runtime,
            host="127.0.0.1",
            port=0,
            stop=self._stop,
            on_ready=ready,
            close_runtime=False,
            worker_options={"poll_interval": 0.05},
        )

    def __enter__(self) -> DaemonThread:
        self._thread.start()
        if not self._ready.wait(PATIENCE):
            raise RuntimeError("the daemon did not start")
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(PATIENCE)


@pytest.fixture
def driver() -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
        "--lang=vi",
    ):
        options.add_argument(argument)
    browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield browser
    finally:
        browser.quit()


def not_blank(path: Path) -> None:
    """The screenshot at ``path`` shows something: many colours, not one flat fill."""
    try:
        from PIL import Image
    except ImportError:  # without Pillow: a real page's PNG is larger than a flat one
        assert path.stat().st_size > 5000, f"{path.name} looks blank"
        return
    with Image.open(path) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20) or []
    assert len(colours) > 20, f"{path.name} looks blank ({len(colours)} colours)"


def element(browser: Any, element_id: str) -> Any:
    """The element with ``element_id`` once the page that a click or a form submission started has loaded."""
    return wait_for(lambda: browser.find_elements(By.ID, element_id), f"#{element_id}")[0]


def shot(browser: Any, folder: Path, name: str) -> None:
    path = folder / f"{name}.png"
    assert browser.save_screenshot(str(path))
    not_blank(path)


def _state(runtime: Runtime, message_id: int) -> str:
    with runtime.db.unit_of_work() as session:
        return session.get(OutboxMessage, message_id).state


def _alert_id(runtime: Runtime) -> int | None:
    with runtime.db.unit_of_work() as session:
        found = outbox.list_messages(session, target="alerts")
        return found[0].id if found else None


def test_operator_redrives_a_dead_letter_and_a_citizen_looks_up(
    tmp_path: Path, driver: Any, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    screenshots = tmp_path_factory.mktemp("screenshots")
    receiver = Receiver()
    # The daemon's own deadline watch waits a whole interval before its first look (not a random part of it): run
    # during the test, it would resolve the alert the test fired a week ahead, and post that too.
    monkeypatch.setattr("gateway.periodic.random.uniform", lambda _low, high: high)
    with ServerThread(receiver.app) as hook:
        settings = {"alerts": {"webhook_url": f"{hook.base_url}/hook"}, "watch": {"interval_seconds": 86400}}
        with open_runtime("sqlite", tmp_path, **settings) as runtime, DaemonThread(runtime) as daemon:
            answer = httpx.post(f"{daemon.url}/api/v1/dossiers", json=submission(), headers=PORTAL, timeout=30)
            assert answer.status_code == 201, answer.text
            code = answer.json()["code"]
            # A week later nobody has received it: the watch alerts, the webhook refuses, the alert is a dead letter.
            scan = alerts.scan(context_of(runtime), runtime.settings.watch, utcnow() + timedelta(days=7))
            assert asyncio.run(scan).fired >= 1
            message_id = wait_for(lambda: _alert_id(runtime), "the alert")
            wait_for(lambda: _state(runtime, message_id) == outbox.DEAD, "the dead letter")
            receiver.accept = True

            driver.get(f"{daemon.url}/console/login")
            driver.find_element(By.ID, "token").send_keys(ADMIN_TOKEN)
            driver.find_element(By.ID, "login").click()
            wait_for(lambda: "Luồng hồ sơ theo cơ quan" in driver.page_source, "the console after login")
            shot(driver, screenshots, "1-flow")

            driver.get(f"{daemon.url}/console/outbox?state=dead")
            row = driver.find_element(By.ID, f"message-{message_id}")
            assert row.get_attribute("data-state") == "dead" and code in row.text
            shot(driver, screenshots, "2-dead-letters")
            driver.find_element(By.ID, f"pick-{message_id}").click()
            driver.find_element(By.ID, "redrive-selected").click()
            assert "Đã đưa 1 thư lỗi" in element(driver, "redriven").text

            def delivered() -> bool:
                driver.get(f"{daemon.url}/console/outbox?state=done")
                rows = driver.find_elements(By.ID, f"message-{message_id}")
                return bool(rows) and rows[0].get_attribute("data-state") == "done"

            wait_for(delivered, "the redriven alert to be delivered")
            shot(driver, screenshots, "3-delivered")
            assert [status for status, _ in receiver.posts] == [400, 200]
            assert receiver.posts[-1][1]["dossier_code"] == code
            metrics = httpx.get(f"{daemon.url}/metrics", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).text
            assert 'dvc_gateway_outbox_dead_letters_total{upstream="alerts"} 1.0' in metrics
            assert 'dvc_gateway_outbox_outcomes_total{outcome="delivered",upstream="alerts"} 1.0' in metrics
            assert 'dvc_gateway_upstream_up{upstream="alerts"} 1.0' in metrics

            driver.find_element(By.LINK_TEXT, "Báo cáo").click()
            assert element(driver, "chart").is_displayed()
            assert "Báo cáo tình hình tiếp nhận" in driver.page_source
            shot(driver, screenshots, "4-report")

            driver.delete_all_cookies()  # the citizen has no session
            driver.get(f"{daemon.url}/lookup")
            driver.find_element(By.ID, "code").send_keys(code)
            driver.find_element(By.ID, "search").click()
            assert element(driver, "status").text == "Đã nộp, chờ tiếp nhận"
            assert not any(text in driver.page_source for text in PERSONAL_STRINGS)
            shot(driver, screenshots, "5-lookup")
    assert sorted(p.name for p in screenshots.iterdir()) == [
        "1-flow.png",
        "2-dead-letters.png",
        "3-delivered.png",
        "4-report.png",
        "5-lookup.png",
    ]
