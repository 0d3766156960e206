"""Download of local blobs through signed, expiring links: ``/blobs/{key}?expires=...&sig=...``.

Only the local directory store needs this handler (S3 links go straight to S3), so ``routes`` returns no
route when S3 is configured. The link itself is the authorisation: no login is required, and a link that
was tampered with or has expired gets a 403 with a message in Portuguese. Files are streamed in chunks
read off the event loop; single byte ranges are honoured (PDF viewers and media players ask for them).
"""

from __future__ import annotations

import re
import time
from typing import Any

from tornado.ioloop import IOLoop
from tornado.iostream import StreamClosedError
from tornado.web import RequestHandler

from engine.settings import Settings
from engine.storage import (
    BlobNotFound,
    LocalBlobStorage,
    content_disposition,
    get_storage,
    guess_content_type,
)

READ_CHUNK = 256 * 1024
# Types a browser may show in the app's own origin without running scripts; everything else downloads.
INLINE_TYPES = frozenset({
    "application/pdf", "image/png", "image/jpeg", "image/gif", "image/webp", "text/plain", "text/csv",
    "audio/mpeg", "video/mp4",
})
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")

MESSAGES = {
    "invalid": "Link de download inválido. Peça um novo link a quem o enviou.",
    "expired": "Este link de download expirou. Gere um novo link na página do arquivo.",
    "missing": "Arquivo não encontrado: ele pode ter sido removido.",
    "range": "Intervalo de bytes inválido para este arquivo.",
}


class BlobDownloadHandler(RequestHandler):
    """Streams one blob of a ``LocalBlobStorage`` after checking the link's signature and expiry."""

    def initialize(self, storage: LocalBlobStorage) -> None:
        self.storage = storage

    def _refuse(self, status: int, reason: str, **headers: str) -> None:
        self.clear()
        self.set_status(status)
        for name, value in headers.items():
            self.set_header(name.replace("_", "-"), value)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(MESSAGES[reason] + "\n")

    def head(self, key: str) -> Any:
        return self.get(key, send_body=False)

    async def get(self, key: str, send_body: bool = True) -> None:
        expires = self.get_query_argument("expires", None)
        problem = self.storage.signature_problem(key, expires, self.get_query_argument("sig", None))
        if problem is not None:
            return self._refuse(403, problem)
        info = self.storage.stat(key)
        if info is None:
            return self._refuse(404, "missing")
        try:
            reader = self.storage.open(key)
        except BlobNotFound:
            return self._refuse(404, "missing")
        with reader:
            start, end = 0, info.size - 1
            requested = self.request.headers.get("Range")
            if requested and info.size > 0:
                parsed = _parse_range(requested, info.size)
                if parsed is None:
                    return self._refuse(416, "range", Content_Range=f"bytes */{info.size}")
                start, end = parsed
                self.set_status(206)
                self.set_header("Content-Range", f"bytes {start}-{end}/{info.size}")
            self._set_headers(key, info.content_type, expires)
            self.set_header("Content-Length", str(max(0, end - start + 1)))
            if not send_body:
                return self.finish()
            loop = IOLoop.current()
            if start:
                await loop.run_in_executor(None, reader.seek, start)
            remaining = end - start + 1
            while remaining > 0:
                chunk = await loop.run_in_executor(None, reader.read, min(READ_CHUNK, remaining))
                if not chunk:
                    break
                remaining -= len(chunk)
                self.write(chunk)
                try:
                    await self.flush()
                except StreamClosedError:  # the client went away
                    return None
        self.finish()

    def _set_headers(self, key: str, content_type: str | None, expires: str | None) -> None:
        content_type = content_type or guess_content_type(key)
        filename = self.get_query_argument("filename", None)
        inline = content_type in INLINE_TYPES and not filename
        self.set_header("Content-Type", content_type)
        self.set_header("Content-Disposition",
                        content_disposition(filename or key.rsplit("/", 1)[-1], inline=inline))
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Accept-Ranges", "bytes")
        remaining = max(0, int(expires or 0) - int(time.time()))
        self.set_header("Cache-Control", f"private, max-age={min(remaining, 3600)}")


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """(start, end) inclusive for a single ``bytes=`` range, or None when it cannot be satisfied."""
    match = _RANGE.match(header.strip())
    if not match or match.groups() == ("", ""):
        return None
    # More digits than any file has bytes mean "past the end" (int() refuses beyond 4,300 digits)
    first, last = (g if len(g) <= 18 else "9" * 18 for g in match.groups())
    if first == "":  # suffix: the last N bytes
        length = int(last)
        if length == 0:
            return None
        return max(0, size - length), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or end < start:
        return None
    return start, end


def routes(settings: Settings) -> list[tuple[str, type[RequestHandler], dict[str, Any]]]:
    """Tornado routes for ``extra_patterns``; none when blobs live on S3."""
    storage = get_storage(settings)
    if not isinstance(storage, LocalBlobStorage):
        return []
    return [(r"/blobs/(.+)", BlobDownloadHandler, {"storage": storage})]
