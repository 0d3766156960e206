"""A page on which every keystroke makes the server hold the document for a moment, as a pane updated on the
callback pool does while the machine is busy. ``tests/browser/test_typing.py`` types into it.

Run as ``python -m tests.typing_app PORT``: the server is configured by ``dashboard.pages.configure_panel``, as
the real one is, so it has the same callback pool and the same mending of Bokeh's holds."""

from __future__ import annotations

import sys
import time
from typing import Any

import panel as pn
import panel_material_ui as pmui
from panel.io.document import hold

from dashboard import session_executor
from dashboard.pages import configure_panel
from engine.settings import Settings

HOLD_SECONDS = 0.15


def app() -> Any:
    field = pmui.TextInput(label="Texto", css_classes=["ofc-typed"])
    shown = pn.pane.Str("", css_classes=["ofc-shown"])

    def show(event: Any) -> None:
        with hold():  # what a pane's update does on a pool thread; keys typed meanwhile arrive during the hold
            time.sleep(HOLD_SECONDS)
            shown.object = event.new

    field.param.watch(show, "value_input")
    return pn.Column(field, shown)


def main(port: int) -> None:
    configure_panel(Settings.from_environ({"WEB_THREADS": "4"}))
    server = pn.serve({"/": app}, port=port, address="127.0.0.1", show=False, threaded=False, start=False,
                      websocket_origin=[f"127.0.0.1:{port}"], title="typing")
    session_executor.serve_on(server.io_loop.asyncio_loop)  # as panel_serve does
    server.start()
    server.io_loop.start()


if __name__ == "__main__":
    main(int(sys.argv[1]))
