"""Builds the web server: pages, login, REST handlers, static assets. Nothing else lives here.

``python panel_serve.py`` or ``oficina serve`` starts it. ``build_server_options(settings)`` returns the
keyword arguments for ``pn.serve`` so tests start the very same server on a free port.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

import panel as pn

from dashboard import api, auth, blobs, pages, session_executor, uploads, web
from engine import queue
from engine.logs import configure_logging
from engine.settings import Settings, get_settings

ASSETS = Path(__file__).parent / "assets"


def http_routes(settings: Settings) -> list[tuple[str, Any, dict[str, Any]]]:
    """Every Tornado route beside the Panel pages: login and health, signed blob downloads, streamed
    uploads and the REST API (whose catch-all JSON 404 comes last)."""
    return [*web.routes(settings), *blobs.routes(settings), *uploads.routes(settings), *api.routes(settings)]


def build_server_options(settings: Settings) -> dict[str, Any]:
    extra_patterns = http_routes(settings)
    return dict(
        panels=pages.applications(settings),
        title="Oficina",
        extra_patterns=extra_patterns,
        auth_provider=auth.OficinaAuthProvider(settings),
        cookie_secret=settings.secret_key,
        static_dirs={"assets": str(ASSETS)},
        websocket_origin=list(settings.allowed_origins),
        show=False,
        admin=False,
    )


def _describe_documents(_signum: int, _frame: Any) -> None:
    # A signal handler's exception surfaces in whatever the main thread was doing (the event loop) and would
    # stop the server: whatever goes wrong here is printed instead.
    for title, describe in (("threads:", session_executor.describe_threads),
                            ("open pages:", session_executor.describe_documents),
                            ("event loop tasks:", session_executor.describe_tasks)):
        try:
            lines = describe()
        except Exception as exc:  # noqa: BLE001
            lines = [f"unreadable ({type(exc).__name__}: {exc})"]
        print(title, *lines, sep="\n  ", file=sys.stderr, flush=True)


def main(*, port: int | None = None, address: str | None = None, num_threads: int | None = None,
         settings: Settings | None = None) -> None:
    settings = settings or get_settings()
    if num_threads is not None:
        settings = settings.with_overrides(web_threads=num_threads)
    configure_logging(settings)
    # ``kill -USR1 PID`` writes every thread's stack and the state of every open page to stderr: what a page
    # that seems stuck is waiting for, at no cost and without stopping the server.
    signal.signal(signal.SIGUSR1, _describe_documents)
    queue.get_queue(settings)  # the Huey queue from the entry point, ready before the first request
    pages.configure_panel(settings)  # owns the callback thread pool (WEB_THREADS, ordered per session)
    options = build_server_options(settings)
    port = port if port is not None else settings.web_port
    address = address or settings.web_address
    if address not in {"127.0.0.1", "localhost"} and not settings.allowed_origins:
        raise SystemExit("ALLOWED_ORIGINS must list the public host when binding beyond localhost")
    server = pn.serve(port=port, address=address, start=False, **options)
    session_executor.serve_on(server.io_loop.asyncio_loop)  # pool threads hand held changes to this loop
    web.settle_heap()  # the heap built so far lives as long as the process: keep full collections short
    print(f"Oficina em http://{'localhost' if address in {'127.0.0.1', '0.0.0.0'} else address}:{port}")
    server.start()
    server.io_loop.start()


if __name__ == "__main__":
    main()
