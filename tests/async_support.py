"""Running a coroutine from a test that may share its thread with Playwright's sync API."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any


def run_in_own_thread(make: Callable[[], Awaitable[Any]], *, timeout: float = 30) -> Any:
    """``asyncio.run(make())`` in a thread of its own: a browser test in the same worker may have left this
    thread's event loop running. The result is returned and an error re-raised in the caller's thread."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = asyncio.run(make())  # type: ignore[arg-type]
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            outcome["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"the coroutine did not finish within {timeout} s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
