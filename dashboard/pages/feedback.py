"""The one place where errors become what a person sees: ``pn.state.notifications``.

View-models raise ``engine.errors`` exceptions; pages run every user action through ``run_action`` (or the
``action`` decorator), which gives the action a request id (so its audit rows and log lines can be found),
turns an ``EngineError`` into a notification with its pt-BR message, and an unexpected exception into a
generic message with a reference while the traceback goes to the log.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from engine.context import new_request_id, request_id_var
from engine.errors import (
    ConfigurationError,
    EngineError,
    ExternalServiceError,
    LimitExceeded,
    PermissionDenied,
    ValidationFailed,
)

log = logging.getLogger("oficina.dashboard")

T = TypeVar("T")

ERROR_SECONDS = 10
SUCCESS_SECONDS = 5


def error_message(exc: BaseException, *, reference: str = "") -> str:
    """What to tell a person about ``exc`` (pt-BR, actionable, never a traceback)."""
    if isinstance(exc, PermissionDenied):
        return f"{exc.message} Se precisar desse acesso, fale com um administrador."
    if isinstance(exc, ValidationFailed):
        fields = [e for e in (exc.data.get("errors") or []) if isinstance(e, dict) and e.get("message")]
        details = "; ".join(f"{e.get('field', '')}: {e['message']}".lstrip(": ") for e in fields)
        if details and details not in exc.message:
            return f"{exc.message} ({details})"
        return exc.message
    if isinstance(exc, LimitExceeded):
        return exc.message
    if isinstance(exc, ExternalServiceError):
        return f"{exc.message} Tente de novo em instantes."
    if isinstance(exc, ConfigurationError):
        return f"Configuração do servidor incompleta: {exc.message}"
    if isinstance(exc, EngineError):
        return exc.message
    ref = f" (referência {reference})" if reference else ""
    return f"Algo deu errado do nosso lado. Tente de novo; se continuar, avise o suporte{ref}."


def _notifications() -> Any:
    try:
        import panel as pn

        return pn.state.notifications
    except Exception:  # outside a server session
        return None


def notify(message: str, kind: str = "info", *, seconds: float | None = None) -> None:
    area = _notifications()
    if area is None:
        log.info("notification (%s): %s", kind, message)
        return
    duration = int(1000 * (seconds if seconds is not None else (ERROR_SECONDS if kind == "error"
                                                                 else SUCCESS_SECONDS)))
    getattr(area, kind if kind in {"info", "success", "warning", "error"} else "info")(message, duration=duration)


def notify_error(exc: BaseException, *, reference: str = "") -> str:
    """Show ``exc`` as an error notification and return the message shown."""
    message = error_message(exc, reference=reference)
    if not isinstance(exc, EngineError) or isinstance(exc, ConfigurationError):
        log.error("dashboard action failed", exc_info=exc, extra={"reference": reference})
    notify(message, "warning" if isinstance(exc, LimitExceeded) else "error")
    return message


def run_action(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """Run a user action with its own request id; errors become notifications. Returns None on error."""
    reference = new_request_id()
    token = request_id_var.set(reference)
    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        notify_error(exc, reference=reference[:12])
        return None
    finally:
        request_id_var.reset(token)


def attempt(fn: Callable[..., Any], *args: Any, success: str = "", **kwargs: Any) -> bool:
    """``run_action`` for actions that return nothing: True when it worked (then ``success`` is shown)."""
    done: list[bool] = []

    def wrapped() -> None:
        fn(*args, **kwargs)
        done.append(True)

    run_action(wrapped)
    if done and success:
        notify(success, "success")
    return bool(done)


def action(fn: Callable[..., T]) -> Callable[..., T | None]:
    """Decorator form of ``run_action`` for button callbacks."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T | None:
        return run_action(fn, *args, **kwargs)

    return wrapper
