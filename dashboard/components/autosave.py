"""``AutosaveForm``: the browser side of a declared form, with autosave and an offline buffer.

It renders the form's steps and fields (with Brazilian input masks), marks each field filled / invalid /
missing, debounces input (``debounce_ms``, from ``AUTOSAVE_DEBOUNCE_MS``) with a timer fallback, and sends
``{"type": "save", "values", "step", "seq", "base_version"}`` messages to Python. While the browser is offline
or the websocket is lost, the non-sensitive values stay in ``localStorage`` under ``storage_key`` and are sent
when the connection returns; Python acknowledges a stored save by setting ``ack_seq``, which removes the local
copy. A copy left behind by a page closed offline is offered on the next load (``{"type": "local_copy"}``).
Sensitive fields are never written to the browser's storage.

The component holds no business rules: the view-model decides what a message means (``on_message``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import param
from panel.custom import JSComponent

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "autosave"


class AutosaveForm(JSComponent):
    form = param.Dict(default={}, doc="Form.describe(): steps and fields")
    values = param.Dict(default={}, doc="field name -> value as typed (set by Python on restore)")
    step = param.Integer(default=0, bounds=(0, None))
    status = param.Dict(default={}, doc="field name -> filled | invalid | missing")
    errors = param.Dict(default={}, doc="field name -> message of an invalid value")
    focus_field = param.String(default="", doc="field to focus (restoring jumps to it)")
    storage_key = param.String(default="", doc="user:form:object; empty = no browser buffer")
    version = param.Integer(default=0, doc="draft version the browser edits")
    ack_seq = param.Integer(default=0, doc="last sequence the server stored")
    save_state = param.Selector(
        default="idle", objects=["idle", "saving", "saved", "waiting", "conflict", "error", "readonly"]
    )
    saved_at = param.String(default="", doc="HH:MM of the last save, for the indicator")
    message = param.String(default="")
    read_only = param.Boolean(default=False)
    debounce_ms = param.Integer(default=1500, bounds=(50, 60000))
    submit_label = param.String(default="Enviar")

    _esm: ClassVar[Path] = ASSETS / "autosave.js"
    _stylesheets: ClassVar[list[str]] = [(ASSETS / "autosave.css").read_text(encoding="utf-8")]

    def __init__(self, *, on_message: Callable[[dict[str, Any]], None] | None = None, **params: Any) -> None:
        super().__init__(**params)
        self._on_message = on_message

    def _handle_msg(self, data: Any) -> None:
        if isinstance(data, dict) and self._on_message is not None:
            self._on_message(data)

    def forget_local_copy(self) -> None:
        """Ask the browser to drop its buffered copy (after undo or submit)."""
        self._send_msg({"type": "forget_local"})
