"""Fast typing into a text field while the server holds the document (a pane updated on the callback pool)
keeps every key: a change the browser sent during a hold is not sent back to it when the hold ends."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.stack import ROOT, free_port, wait_until

pytestmark = [pytest.mark.browser]

TEXT = "0006060432024826"
VALUE_INPUT = re.compile(r'"attr":\s*"value_input"')  # a patch of the field's text (compact or pretty JSON)


@pytest.fixture(scope="module")
def typing_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log_path = tmp_path_factory.mktemp("typing") / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "tests.typing_app", str(port)], cwd=ROOT,
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"

    def up() -> bool:
        assert proc.poll() is None, f"the typing app exited:\n{log_path.read_text()}"
        try:
            return httpx.get(url, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(up, timeout=60, interval=0.2, what=f"the typing app (log: {log_path})")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_keys_typed_while_the_server_holds_the_document_are_kept(typing_url: str, browser: Any) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        echoes: list[str] = []

        def watch(ws: Any) -> None:
            ws.on("framereceived", lambda payload: echoes.append(payload)
                  if isinstance(payload, str) and VALUE_INPUT.search(payload) else None)

        page.on("websocket", watch)
        page.goto(typing_url)
        field = page.get_by_label("Texto")
        field.wait_for()
        field.press_sequentially(TEXT, delay=20)  # each hold spans several keystrokes
        expect(page.locator(".ofc-shown")).to_contain_text(TEXT, timeout=20_000)  # the server saw the last key
        assert field.input_value() == TEXT
        assert echoes == [], "the server sent the field's text back to the browser"
    finally:
        context.close()
