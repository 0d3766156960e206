"""``POST /uploads``: files for import, streamed to disk as they arrive (never whole in memory, never
through the Panel websocket).

The body is the file itself (``Content-Type: application/octet-stream`` or the file's own type) and the
name travels in ``?filename=``. The answer (201) is the recorded upload: ``{"id", "filename", "size",
"file_type", ...}``; its ``id`` is what the import page and ``/api/v1/imports`` use next.

Who may send: a signed-in browser (the session cookie, plus the ``X-Oficina-Upload: 1`` header that a
cross-site form cannot add, and a same-origin ``Origin`` when the browser sends one) or a script with
``Authorization: Bearer <API token>``. The size limit is ``UPLOAD_MAX_MB``: a ``Content-Length`` over it is
refused before any byte is read, a body that grows over it is cut and its partial file removed. The type is
checked by content once the file is complete (``engine.imports``); a client that disconnects leaves nothing
behind.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

from tornado.web import stream_request_body

from dashboard.auth import SESSION_COOKIE, user_from_cookie
from dashboard.web import ObservedHandler
from engine.accounts import user_for_token
from engine.db import session_scope
from engine.errors import (
    AuthenticationFailed,
    EngineError,
    PayloadTooLarge,
    PermissionDenied,
    ValidationFailed,
)
from engine.imports import UploadWriter, upload_info
from engine.models import User
from engine.security import require
from engine.settings import Settings

UPLOAD_HEADER = "X-Oficina-Upload"
DRAIN_LIMIT_BYTES = 16 * 1024 * 1024
MAX_FILENAME = 255


@stream_request_body
class UploadHandler(ObservedHandler):
    route = "/uploads"

    def initialize(self, *, config: Settings, route: str | None = None, **_: Any) -> None:
        super().initialize(config=config, route=route)
        self.writer: UploadWriter | None = None
        self.user: User | None = None
        self.too_large = False
        self.done = False
        self.refusal: EngineError | None = None

    # Our own CSRF defence (custom header + origin) replaces Tornado's cookie check.
    def check_xsrf_cookie(self) -> None:
        return None

    async def prepare(self) -> None:
        super().prepare()
        if self.request.method != "POST":
            return
        limit = self.config.upload_max_mb * 1024 * 1024
        self.request.connection.set_max_body_size(limit + DRAIN_LIMIT_BYTES)  # type: ignore[attr-defined]
        length = self.request.headers.get("Content-Length", "")
        size = int(length) if length.isdigit() else None
        try:
            if size is not None and size > limit:
                raise PayloadTooLarge(
                    f"O arquivo tem {size // 2**20} MB; o limite é {self.config.upload_max_mb} MB.",
                    size=size,
                    limit=limit,
                )
            self.user = await asyncio.to_thread(self._authenticate)
            self.user_id = self.user.id
            filename = (self.get_query_argument("filename", "") or "").strip()
            if not filename or len(filename) > MAX_FILENAME:
                raise ValidationFailed(
                    "Informe o nome do arquivo em ?filename= (até 255 caracteres).",
                    errors=[{"field": "filename", "message": "obrigatório"}],
                )
            self.writer = await asyncio.to_thread(
                UploadWriter, self.config, filename=filename, expected_size=size
            )
        except EngineError as exc:
            # A client still sending sees a reset instead of our answer if we reply at once: a small body is
            # read and dropped so the error arrives; a big one is refused before it is read.
            if size is None or size > DRAIN_LIMIT_BYTES:
                raise
            self.refusal = exc

    def _authenticate(self) -> User:
        header = self.request.headers.get("Authorization")
        if header:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise AuthenticationFailed("Cabeçalho Authorization inválido; use 'Bearer <token>'.")
            with session_scope(self.config) as s:
                user = user_for_token(s, token=token.strip())
                require(user, "imports.run")
                s.expunge(user)
            return user
        user = user_from_cookie(self.config, self.get_cookie(SESSION_COOKIE))
        if user is None:
            raise AuthenticationFailed("Entre no sistema (ou envie um token de API) para enviar arquivos.")
        if self.request.headers.get(UPLOAD_HEADER) != "1" or not self._same_origin():
            raise PermissionDenied(
                "Envio recusado: faça-o pela página de importação.", action="imports.upload"
            )
        require(user, "imports.run")
        return user

    def _same_origin(self) -> bool:
        origin = self.request.headers.get("Origin")
        if not origin:
            return True  # same-origin fetches may omit it; the custom header already rules out forms
        host = urlsplit(origin).netloc.lower()
        allowed = {
            self.request.host.lower(),
            urlsplit(self.config.public_url).netloc.lower(),
            *(o.lower() for o in self.config.allowed_origins),
        }
        return host in allowed

    async def data_received(self, chunk: bytes) -> None:
        if self.writer is None or self.too_large or self.refusal is not None:
            return
        try:
            await asyncio.to_thread(self.writer.write, chunk)  # awaited: Tornado reads no more meanwhile
        except PayloadTooLarge:
            self.too_large = True  # the writer removed its file; the rest of the body is dropped

    async def post(self) -> None:
        if self.refusal is not None:
            raise self.refusal
        assert self.writer is not None and self.user is not None
        if self.too_large:
            self.done = True
            raise PayloadTooLarge(
                f"O arquivo passa do limite de {self.config.upload_max_mb} MB.",
                limit=self.config.upload_max_mb * 1024 * 1024,
            )
        info = await asyncio.to_thread(self._finish)
        self.done = True
        self.write_json(info, status=201)

    def _finish(self) -> dict[str, Any]:
        assert self.writer is not None
        with session_scope(self.config) as s:
            upload = self.writer.finish(s, actor=self.user)
            return upload_info(upload)

    def on_connection_close(self) -> None:
        # The client went away mid-upload: remove what was received.
        if self.writer is not None and not self.done:
            self.writer.abort()
        super().on_connection_close()

    def on_finish(self) -> None:
        if self.writer is not None and not self.done:
            self.writer.abort()
        super().on_finish()


def routes(settings: Settings) -> list[tuple[str, type, dict[str, Any]]]:
    """The upload route (``panel_serve`` adds it to the server's extra patterns)."""
    return [(r"/uploads", UploadHandler, {"config": settings, "route": "/uploads"})]
