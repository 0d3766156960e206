"""Fixtures for court documents and webhooks: the simulator over real HTTP on 127.0.0.1, a webhook
receiver that records what it gets, a blob server for presigned links, and settings pointing at them."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application

from engine.court.simulator import CourtSimulator, SimulatorConfig
from engine.db import session_scope
from engine.documents import DownloadOptions, LookupResult, lookup_processo
from engine.security import SYSTEM
from engine.settings import Settings

FAST = DownloadOptions(
    batch_size=3, attempts=4, backoff_base=0.01, backoff_cap=0.05, request_retries=1, request_backoff=0.01
)


@pytest.fixture
def simulator() -> Iterator[CourtSimulator]:
    sim = CourtSimulator(SimulatorConfig())
    sim.start("127.0.0.1", 0)
    yield sim
    sim.stop()


@pytest.fixture
def court_settings(settings: Settings, simulator: CourtSimulator) -> Settings:
    from engine.settings import set_settings

    result = settings.with_overrides(
        court_api_url=simulator.url,
        webhook_allowed_hosts=("127.0.0.1",),
        webhook_secret="whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    )
    set_settings(result)
    return result


def lookup(settings: Settings, numero: str, **kwargs: Any) -> LookupResult:
    kwargs.setdefault("options", FAST)
    with session_scope(settings) as s:
        result = lookup_processo(
            s, actor=kwargs.pop("actor", SYSTEM), numero=numero, settings=settings, **kwargs
        )
        s.expunge_all()
        return result


# Webhook receiver ----------------------------------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Answers POSTs with the scripted (status, body, headers) in order, then 200; records every request."""

    server: ThreadingHTTPServer
    requests: list[Received] = field(default_factory=list)
    answers: list[tuple[int, str, dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/hook"

    def answer(self, *answers: tuple[int, str, dict[str, str]] | int) -> None:
        with self.lock:
            for item in answers:
                self.answers.append((item, "", {}) if isinstance(item, int) else item)

    def next_answer(self) -> tuple[int, str, dict[str, str]]:
        with self.lock:
            return self.answers.pop(0) if self.answers else (200, "recebido", {})


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    holder: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            return

        def do_POST(self) -> None:  # noqa: N802
            rec = holder["r"]
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            with rec.lock:
                rec.requests.append(
                    Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
            status, text, headers = rec.next_answer()
            data = text.encode()
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST  # noqa: N815 - a followed redirect would show up as a GET

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    holder["r"] = Receiver(server)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield holder["r"]
    server.shutdown()
    server.server_close()


# Blob links served over HTTP -----------------------------------------------------------------------------


@contextmanager
def serve_routes(
    routes_for: Callable[[Settings], list[Any]], settings_for: Callable[[str], Settings]
) -> Iterator[tuple[Settings, str]]:
    """A Tornado server on a free 127.0.0.1 port; ``settings_for(base_url)`` builds its settings."""
    sockets = bind_sockets(0, "127.0.0.1")
    base = f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
    settings = settings_for(base)
    state: dict[str, Any] = {}
    ready = threading.Event()

    def run() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        server = HTTPServer(Application(routes_for(settings)))
        server.add_sockets(sockets)
        state.update(loop=loop, server=server)
        ready.set()
        loop.run_forever()
        loop.close()

    thread = threading.Thread(target=run, daemon=True, name="court-test-http")
    thread.start()
    ready.wait(5)
    try:
        yield settings, base
    finally:
        state["loop"].call_soon_threadsafe(state["server"].stop)
        state["loop"].call_soon_threadsafe(state["loop"].stop)
        thread.join(5)


@pytest.fixture
def run_inline(court_settings: Settings) -> Iterator[Any]:
    """Jobs run in the calling thread, with the court settings."""
    from engine import queue as queue_port

    q = queue_port.InlineQueue(court_settings)
    queue_port.install(q)
    yield q
    queue_port.install(None)
