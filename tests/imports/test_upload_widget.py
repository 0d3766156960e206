"""The upload zone of the imports page in headless Chromium: Portuguese controls (not the browser's own
"Choose File"), a file dropped on the zone streams to /uploads and gets its preview, and a file over the
limit is refused in the page before a byte is sent."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.stack import BOKEH_SOCKET, OficinaStack, running_stack, server_pages, wait_for_app, wait_for_preview

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("imports-upload-widget")]

CSV = "Sensor;Data/Hora;Valor;Unidade\r\nS-01;01/03/2024 10:00;1,5;kPa\r\nS-02;01/03/2024 10:01;2,5;kPa\r\n"

DROP = """(zone, [text, name]) => {
  const data = new DataTransfer();
  data.items.add(new File([text], name, {type: "text/csv"}));
  for (const type of ["dragover", "drop"]) {
    zone.dispatchEvent(new DragEvent(type, {dataTransfer: data, bubbles: true, cancelable: true}));
  }
}"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[OficinaStack]:
    with running_stack(tmp_path_factory.mktemp("oficina-upload-widget"), redis_url, UPLOAD_MAX_MB="1") as running:
        yield running


def _open(stack: OficinaStack, browser: Any) -> Any:
    page = stack.new_page(browser)
    stack.login(page, stack.user("analyst", name="Ana Analista"), next_path="/importacoes")
    wait_for_app(page)
    return page


def test_a_dropped_file_is_uploaded_and_previewed(stack: OficinaStack, browser: Any) -> None:
    page = _open(stack, browser)
    zone = page.locator(".ofc-upload-zone")
    assert zone.get_by_text("Escolher arquivo").is_visible()
    assert "arraste o arquivo" in zone.inner_text() and "até 1 MB" in zone.inner_text()
    native = page.locator(".ofc-upload-input").bounding_box()  # the browser's button stays out of sight
    assert native is not None and native["width"] <= 1 and native["height"] <= 1
    assert page.get_by_text("Nenhum arquivo escolhido.").is_visible()
    zone.evaluate(DROP, [CSV, "soltas.csv"])  # the locator reaches into the component's shadow root
    page.get_by_text("soltas.csv enviado").wait_for(timeout=30_000)
    detected = wait_for_preview(stack, page)
    assert "ponto e vírgula" in detected.inner_text()
    assert "S-02" in page.locator(".ofc-imp-raw").inner_text()


def test_a_file_over_the_limit_is_refused_in_the_page(stack: OficinaStack, browser: Any) -> None:
    page = _open(stack, browser)
    big = "Sensor;Data/Hora;Valor;Unidade\r\n" + "S-01;01/03/2024 10:00;1,5;kPa\r\n" * 40_000  # ~1.2 MB
    page.locator(".ofc-upload-zone").evaluate(DROP, [big, "grande.csv"])
    # The component says it at once; the page then repeats it above the steps and in a notification.
    page.locator(".ofc-upload-text", has_text="O arquivo tem 1,2 MB; o limite é 1 MB.").wait_for(timeout=30_000)
    assert page.locator(".ofc-imp-detected").count() == 0


class _PageMessages:
    """The page's websocket routed through the test, one whole Bokeh message from the page at a time (a header,
    metadata and content frame, then two frames per buffer): ``decide(content)`` says whether it goes on to the
    server now ("send"), never ("drop") or when the test calls ``release`` ("hold")."""

    def __init__(self, page: Any, decide: Callable[[str], str]) -> None:
        self.decide = decide
        self.messages = 0
        self.dropped: list[str] = []
        self.held: list[list[Any]] = []
        self._server: Any = None
        page.route_web_socket(BOKEH_SOCKET, self._route)

    def _route(self, ws: Any) -> None:
        self._server = server = ws.connect_to_server()
        frames: list[Any] = []
        expected = [0]

        def from_page(message: Any) -> None:
            frames.append(message)
            if len(frames) == 1:
                expected[0] = 3 + 2 * int(json.loads(message).get("num_buffers") or 0)
            if len(frames) < expected[0]:
                return
            whole = frames[:]
            frames.clear()
            self.messages += 1
            content = whole[2] if isinstance(whole[2], str) else ""
            verdict = self.decide(content)
            if verdict == "drop":
                self.dropped.append(content)
            elif verdict == "hold":
                self.held.append(whole)
            else:
                for frame in whole:
                    server.send(frame)

        ws.on_message(from_page)

    def release(self) -> None:
        for whole in self.held:
            for frame in whole:
                self._server.send(frame)
        self.held.clear()


def _log_since(stack: OficinaStack, start: int) -> str:
    return stack.server_log.read_text(errors="replace")[start:]


def test_the_news_of_an_upload_goes_again_when_the_connection_loses_it(stack: OficinaStack,
                                                                        browser: Any) -> None:
    page = stack.new_page(browser)
    # the first message that tells the server of an upload is lost
    routed = _PageMessages(page, lambda content: "drop" if '"uploaded"' in content and not routed.dropped else "send")
    stack.login(page, stack.user("analyst", name="Ana Analista"), next_path="/importacoes")
    wait_for_app(page)
    assert routed.messages > 0  # the page's messages do go through the route
    log_start = len(stack.server_log.read_text(errors="replace"))
    page.locator(".ofc-upload-zone").evaluate(DROP, [CSV, "perdida.csv"])
    wait_for_preview(stack, page, timeout=30_000)  # the page sent the news again
    assert len(routed.dropped) == 1
    assert "S-02" in page.locator(".ofc-imp-raw").inner_text()
    time.sleep(3)  # past the page's next resend, had it not seen the acknowledgement
    news = [line for line in _log_since(stack, log_start).splitlines() if "upload component: uploaded" in line]
    assert len(news) == 1, news  # acted on once


def _server_holds(stack: OficinaStack, page: Any, text: str, timeout: float = 30) -> None:
    """Wait until a page's document on the server shows ``text`` with nothing left in a hold (the SIGUSR1 dump),
    letting ``page``'s routed messages go on meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        page.wait_for_timeout(300)
        pages = server_pages(stack.thread_dump())
        if any(text in texts and "hold=None held_events=0" in state for state, texts in pages):
            return
        assert time.monotonic() < deadline, f"no page on the server shows {text!r}: {pages}"


def test_an_upload_that_ends_while_the_page_still_loads_gets_its_preview(stack: OficinaStack,
                                                                          browser: Any) -> None:
    # The browser says its document is ready only once every view has rendered (the component bundles, the
    # styles, the fonts), and an upload can end before that: on a busy machine, on the first page of a fresh
    # server. Holding that message back until the server has made every change of the preview makes the case
    # certain. Panel took the page for not ready until then and dropped those changes (the server had the
    # preview, the page kept "Lendo o arquivo…").
    page = stack.new_page(browser)
    stack.login(page, stack.user("analyst", name="Ana Analista"))
    routed = _PageMessages(page, lambda content: "hold" if "document_ready" in content else "send")
    page.goto(stack.url("/importacoes"))
    wait_for_app(page)
    deadline = time.monotonic() + 30
    while not routed.held and time.monotonic() < deadline:
        page.wait_for_timeout(50)  # a Playwright call, so the routed messages keep going
    assert len(routed.held) == 1  # the page said it is ready; the server does not know yet
    page.locator(".ofc-upload-zone").evaluate(DROP, [CSV, "cedo.csv"])
    _server_holds(stack, page, "Lido como UTF-8")  # the preview is made, nothing of it is held back
    routed.release()
    detected = wait_for_preview(stack, page, timeout=15_000)
    assert "ponto e vírgula" in detected.inner_text()
    assert "S-02" in page.locator(".ofc-imp-raw").inner_text()
