"""``ui.TypedTextInput``: a text the browser sent is never sent back to it (a stale echo would replace the keys
typed since), while a text set in Python still reaches the page."""

from __future__ import annotations

from typing import Any

import panel_material_ui as pmui
import pytest

from dashboard.pages.ui import TypedTextInput


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What the widget would send to the page (the parent's model update, captured)."""
    messages: list[dict[str, Any]] = []
    monkeypatch.setattr(pmui.TextInput, "_update_model", lambda self, events, msg, *rest: messages.append(dict(msg)))
    return messages


def test_a_typed_text_is_not_echoed_but_a_text_set_in_python_is(sent: list[dict[str, Any]]) -> None:
    field = TypedTextInput(label="Número")
    field._process_events({"value_input": "000606"})  # keys, as the browser reports them
    field._process_events({"value_input": "0006060"})
    for stale in ("000606", "0006060"):  # what Panel may send back while newer keys are in flight
        field._update_model({}, {"value_input": stale}, None, None, None, None)
    assert sent == [{}, {}]
    field.value = "0006060-43.2024.8.26.0100"  # Python chose the text: it goes to the page
    field._update_model({}, {"value_input": field.value_input, "value": field.value}, None, None, None, None)
    assert sent[-1] == {"value_input": "0006060-43.2024.8.26.0100", "value": "0006060-43.2024.8.26.0100"}
    field.value = "000606"  # even a text the person had typed earlier
    field._update_model({}, {"value_input": "000606"}, None, None, None, None)
    assert sent[-1] == {"value_input": "000606"}
