"""Headless Chromium on the real server and worker: look a process up on the "Processos" page, watch its
documents become available, open a download link."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from engine.brazil import format_cnj, make_cnj
from engine.court.simulator import CourtSimulator, SimulatorConfig
from tests.stack import OficinaStack, running_stack

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.xdist_group("court-browser")]

@pytest.fixture(scope="module")
def court_stack(
    tmp_path_factory: pytest.TempPathFactory, redis_url: str
) -> Iterator[tuple[OficinaStack, Any]]:
    """The real server and worker pointed at a slow simulator, so the page shows documents in transit."""
    simulator = CourtSimulator(SimulatorConfig(latency_ms=100, slow_body_ms=400))
    simulator.start()
    try:
        with running_stack(tmp_path_factory.mktemp("court-browser"), redis_url, COURT_API_URL=simulator.url,
                           WEBHOOK_ALLOWED_HOSTS="127.0.0.1") as stack:
            yield stack, simulator
    finally:
        simulator.stop()


def test_look_up_a_process_and_watch_documents_arrive(court_stack, browser):
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
    # The hint and the formatted value are two updates from the server: wait for the second one too.
    expect(field).to_have_value(format_cnj(numero))

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
