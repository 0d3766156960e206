"""Headless Chromium on the real server and worker: look a process up on the "Processos" page, watch its
documents become available, open a download link."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.brazil import format_cnj, make_cnj
from engine.court.simulator import CourtSimulator, SimulatorConfig
from engine.db import dispose_engines
from engine.migrate import upgrade
from engine.settings import Settings
from tests.browser.conftest import (  # noqa: F401 - `browser` is a fixture used below
    START_TIMEOUT,
    OficinaStack,
    _stop,
    browser,
    free_port,
)
from tests.conftest import base_environ
from tests.worker_support import WorkerPool, settings_environ

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.xdist_group("court-browser")]

# Serves the app with the Processos page registered even before dashboard.pages.PAGES lists it.
SERVE = (
    "import sys, dashboard.pages as p, dashboard.pages.processos as m\n"
    "if not any(s.slug == m.PAGE.slug for s in p.PAGES): p.PAGES.append(m.PAGE)\n"
    "from engine.cli import main\n"
    "sys.exit(main(['serve', '--port', sys.argv[1], '--address', '127.0.0.1']))\n"
)


def _serve(settings: Settings, port: int, directory: Path) -> tuple[subprocess.Popen[bytes], Path]:
    import socket

    log_path = directory / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", SERVE, str(port)],
            cwd=directory,
            env=settings_environ(settings),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        assert proc.poll() is None, log_path.read_text(errors="replace")[-6000:]
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc, log_path
        except OSError:
            time.sleep(0.2)
    _stop(proc)
    raise AssertionError(log_path.read_text(errors="replace")[-6000:])


@pytest.fixture(scope="module")
def court_stack(
    tmp_path_factory: pytest.TempPathFactory, redis_url: str
) -> Iterator[tuple[OficinaStack, Any]]:
    simulator = CourtSimulator(SimulatorConfig(latency_ms=100, slow_body_ms=150))
    simulator.start()
    directory = tmp_path_factory.mktemp("court-browser")
    port = free_port()
    base = Settings.from_environ(
        base_environ(
            directory / "var",
            ALLOWED_ORIGINS=f"127.0.0.1:{port}",
            PUBLIC_URL=f"http://127.0.0.1:{port}",
            COURT_API_URL=simulator.url,
            WEBHOOK_ALLOWED_HOSTS="127.0.0.1",
            WEB_THREADS="4",
        )
    )
    upgrade(base)
    with WorkerPool(directory / "workers") as pool:
        settings = pool.queue_settings(base, redis_url=redis_url)
        pool.start(settings, args=("--workers", "2", "--no-periodic"))
        proc, log_path = _serve(settings, port, directory)
        try:
            yield OficinaStack(settings=settings, port=port, server_log=log_path, workers=pool), simulator
        finally:
            _stop(proc)
            dispose_engines()
            simulator.stop()


def test_look_up_a_process_and_watch_documents_arrive(court_stack, browser):  # noqa: F811
    stack, simulator = court_stack
    numero = make_cnj(6060, 2024, 8, 26, 100)
    expected = simulator.documents(numero)
    page = stack.new_page(browser)
    stack.login(page, stack.user("staff"), next_path="/processos")
    page.goto(stack.url("/processos"))
    page.wait_for_selector(".ofc-page-header")
    field = page.get_by_label("Número do processo (CNJ)")

    field.press_sequentially(numero[:9], delay=20)
    page.get_by_text("Faltam 11 dígitos").wait_for()
    wrong = numero[:7] + ("00" if numero[7:9] != "00" else "01") + numero[9:]
    field.fill("")
    field.press_sequentially(wrong, delay=10)
    page.get_by_text("dígitos verificadores não conferem").wait_for()
    field.fill("")
    field.press_sequentially(numero, delay=10)
    page.get_by_text("Número válido").wait_for()
    assert field.input_value() == format_cnj(numero)

    page.get_by_role("button", name="Consultar").click()
    page.wait_for_selector("tr[data-doc]")
    seen: set[str] = set()
    deadline = time.monotonic() + 60
    while True:
        states = page.eval_on_selector_all("tr[data-doc]", "rows => rows.map(r => r.dataset.status)")
        seen.update(states)
        if len(states) == len(expected) and set(states) == {"available"}:
            break
        assert time.monotonic() < deadline, f"documents did not all arrive: {states}\n{stack.log_tail()}"
        time.sleep(0.2)
    assert seen - {"available"}, "the page should have shown documents before they were available"
    page.get_by_text(f"{len(expected)} de {len(expected)} disponíveis").wait_for()
    links = page.eval_on_selector_all("tr[data-doc] a", "links => links.map(a => a.href)")
    assert len(links) == len(expected) and all("/blobs/processos/" in link for link in links)
    response = httpx.get(links[0], timeout=10)
    assert response.status_code == 200 and response.content.startswith(b"%PDF")
    stack.screenshot(page, "processos")
    assert stack.blocked == []
