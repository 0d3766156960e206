"""Real HTTP servers for API tests: the app's Tornado routes on 127.0.0.1:0 in a background thread.

Typical fixture in a test module (the settings fixture picks SQLite and PostgreSQL)::

    from tests.api_support import LiveServer, serve_app

    @pytest.fixture
    def server(settings, recording_queue) -> Iterator[LiveServer]:
        with serve_app(settings) as srv:
            yield srv

    def test_something(server):
        token = server.token_for("ana@example.com", role="staff")
        r = server.client(token).get("/api/v1/jobs")

``serve_app`` mounts exactly what ``panel_serve`` mounts from ``dashboard.web`` and ``dashboard.api`` (so an
API module registered in ``dashboard.api.MODULES`` is served here too), plus ``extra_routes``. It does not
start Panel pages: use the real Panel server for browser tests.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import httpx
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application

from engine import accounts
from engine.db import session_scope
from engine.security import SYSTEM
from engine.settings import Settings

Route = tuple[Any, ...]


class LiveServer:
    """A Tornado application served from its own thread and event loop until ``stop()``."""

    def __init__(self, routes: Sequence[Route], *, settings: Settings) -> None:
        self.settings = settings
        self.application = Application(list(routes))
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: HTTPServer | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="test-http-server", daemon=True)
        self._clients: list[httpx.Client] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LiveServer:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("test server did not start within 10 s")
        if self._error is not None:
            raise RuntimeError("test server failed to start") from self._error
        return self

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            sockets = bind_sockets(0, "127.0.0.1")
            self.port = sockets[0].getsockname()[1]

            async def listen() -> None:
                self._server = HTTPServer(self.application)
                self._server.add_sockets(sockets)

            loop.run_until_complete(listen())
        except BaseException as exc:  # reported to start()
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            assert self._server is not None
            self._server.stop()
            loop.run_until_complete(self._server.close_all_connections())
            loop.close()

    def stop(self) -> None:
        for client in self._clients:
            client.close()
        if self._loop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    # Conveniences -------------------------------------------------------------------------------------
    def client(self, token: str | None = None, **kwargs: Any) -> httpx.Client:
        """An httpx client on this server (closed with the server); with ``token``, it sends it as bearer."""
        headers = dict(kwargs.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        client = httpx.Client(base_url=self.url, headers=headers, timeout=kwargs.pop("timeout", 30), **kwargs)
        self._clients.append(client)
        return client

    def openapi(self) -> dict[str, Any]:
        """The served OpenAPI document."""
        response = self.client().get("/api/v1/openapi.json")
        response.raise_for_status()
        return response.json()

    def token_for(self, email: str, *, role: str = "viewer") -> str:
        """Create the user when missing and a fresh API token for it; returns the clear token."""
        with session_scope(self.settings) as session:
            user = accounts.get_user_by_email(session, email=email)
            if user is None:
                user, _ = accounts.create_user(session, actor=SYSTEM, email=email, role=role,
                                               password="senha-de-teste-123")
            _, clear = accounts.create_token(session, actor=SYSTEM, user_id=user.id)
        return clear

    def user_id(self, email: str) -> int:
        with session_scope(self.settings) as session:
            user = accounts.get_user_by_email(session, email=email)
            assert user is not None, email
            return user.id


def app_routes(settings: Settings) -> list[Route]:
    """Exactly the HTTP routes ``panel_serve`` mounts beside the pages."""
    import panel_serve

    return panel_serve.http_routes(settings)


@contextmanager
def serve(routes: Sequence[Route], *, settings: Settings) -> Iterator[LiveServer]:
    """Serve ``routes`` on 127.0.0.1:0 for the duration of the block."""
    server = LiveServer(routes, settings=settings).start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def serve_app(settings: Settings, *, extra_routes: Sequence[Route] = ()) -> Iterator[LiveServer]:
    """Serve the app's web and API routes (and ``extra_routes`` first) on 127.0.0.1:0."""
    with serve([*extra_routes, *app_routes(settings)], settings=settings) as server:
        yield server


def openapi_operation(document: dict[str, Any], method: str, template: str) -> dict[str, Any]:
    return document["paths"][template][method.lower()]


def assert_matches_document(document: dict[str, Any], method: str, template: str,
                            response: httpx.Response) -> None:
    """Fail unless ``response`` has a status the document declares for the operation and its JSON body
    validates against the declared schema."""
    from jsonschema import Draft202012Validator

    operation = openapi_operation(document, method, template)
    declared = operation["responses"].get(str(response.status_code))
    assert declared is not None, (
        f"{method} {template} answered {response.status_code}, not declared in the OpenAPI document "
        f"(declared: {sorted(operation['responses'])}); body: {response.text[:300]}"
    )
    content = declared.get("content", {}).get("application/json")
    if content is None:
        assert not response.content, f"{method} {template}: undeclared body {response.text[:200]}"
        return
    root = dict(content["schema"])
    root["components"] = document["components"]
    validator = Draft202012Validator(root, format_checker=Draft202012Validator.FORMAT_CHECKER)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(response.json())]
    assert not errors, f"{method} {template} {response.status_code} body does not match its schema: {errors}"
