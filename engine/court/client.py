"""``CourtClient``: the PDPJ-style court API over httpx.

Every request carries the JWT bearer token from settings and has timeouts. Connection errors, 429 and
5xx answers are retried with exponential backoff and jitter, honouring ``Retry-After`` (seconds or an
HTTP date). Document bytes are streamed: ``open_document`` yields a ``DocumentStream`` whose
``iter_bytes`` never holds more than one chunk. 401/403 become ``CourtAuthError`` (fix the token),
404 becomes ``CourtNotFound``.
"""

from __future__ import annotations

import functools
import logging
import random
import ssl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import httpx

from engine.brazil import format_cnj
from engine.errors import ConfigurationError, ExternalServiceError, NotFound
from engine.settings import Settings

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class CourtError(ExternalServiceError):
    """The court API failed in a way retrying right now will not fix."""


class CourtUnavailable(CourtError):
    """Connection errors, 429 or 5xx persisted through every retry. Carries ``retry_after`` when known."""


class CourtAuthError(CourtError):
    """401/403: the token is missing, expired or lacks the scope."""


class CourtNotFound(NotFound):
    """404: no such process or document at the court."""


class CourtTransferError(CourtError):
    """A document body ended early, was too long or did not match its checksum (retryable)."""


@dataclass(frozen=True)
class RetryPolicy:
    """``retries`` after the first try; delays ``base * 2**n`` with equal jitter, capped at ``cap``.
    A ``Retry-After`` longer than ``max_retry_after`` is not waited for: the call fails with it."""

    retries: int = 4
    base: float = 0.5
    cap: float = 30.0
    max_retry_after: float = 120.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        ceiling = min(self.cap, self.base * (2**attempt))
        return ceiling / 2 + rng.uniform(0, ceiling / 2)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date); None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@functools.lru_cache(maxsize=1)
def _tls_context() -> ssl.SSLContext:
    """httpx's default verifying TLS context (certifi, or ``SSL_CERT_FILE``/``SSL_CERT_DIR``), built once per
    process: loading the CA bundle costs ~20 ms of CPU, which every new client would otherwise pay. A
    context is safe to share between clients and threads."""
    return httpx.create_ssl_context()


class DocumentStream:
    """An open document download. ``content_length`` is what the server announced (may be None)."""

    def __init__(self, response: httpx.Response, *, chunk_size: int) -> None:
        self.response = response
        self.chunk_size = chunk_size
        raw = response.headers.get("Content-Length")
        self.content_length = int(raw) if raw and raw.isdigit() else None
        self.content_type = response.headers.get("Content-Type", "application/octet-stream")

    def iter_bytes(self) -> Iterator[bytes]:
        try:
            yield from self.response.iter_raw(self.chunk_size)
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.ReadTimeout) as exc:
            raise CourtTransferError(
                f"A transferência foi interrompida: {exc}.", reason="interrupted"
            ) from exc


class CourtClient:
    """Talks to the court API. Thread-safe: one instance (and its connection pool) per job is enough."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        max_connections: int = 20,
        chunk_size: int = 64 * 1024,
    ) -> None:
        if not base_url:
            raise ConfigurationError("COURT_API_URL não configurada.", variable="COURT_API_URL")
        self.base_url = base_url.rstrip("/")
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.chunk_size = chunk_size
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={
                "Accept": "application/json",
                "User-Agent": "oficina-court-client/1",
                **({"Authorization": f"Bearer {token.strip()}"} if token and token.strip() else {}),
            },
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            transport=transport,
            verify=_tls_context(),
            follow_redirects=False,
        )

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> CourtClient:
        token = settings.court_api_token
        if not token:
            if settings.is_production:
                raise ConfigurationError(
                    "COURT_API_TOKEN é obrigatório em produção.", variable="COURT_API_TOKEN"
                )
            from engine.court.simulator import demo_token

            token = demo_token()
        retry = RetryPolicy(
            retries=int(getattr(settings, "court_retries", 4)),
            base=float(getattr(settings, "court_retry_base_seconds", 0.5)),
        )
        kwargs.setdefault("retry", retry)
        kwargs.setdefault("timeout", float(getattr(settings, "court_timeout_seconds", 30)))
        return cls(settings.court_api_url, token, **kwargs)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> CourtClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # API -------------------------------------------------------------------------------------------
    def get_processo(self, numero: str) -> dict[str, Any]:
        """Metadata and document list of a process (``numero``: its 20 digits)."""
        response = self._send(
            "GET", f"/api/v2/processos/{quote(numero)}", what=f"processo {format_cnj(numero)}"
        )
        try:
            body = response.json()
        except ValueError as exc:
            raise CourtError("A API do tribunal respondeu algo que não é JSON.", reason="bad_json") from exc
        finally:
            response.close()
        if not isinstance(body, dict) or not isinstance(body.get("documentos", []), list):
            raise CourtError("Resposta da API do tribunal sem a lista de documentos.", reason="bad_shape")
        return body

    @contextmanager
    def open_document(self, numero: str, doc_id: str) -> Iterator[DocumentStream]:
        """Stream one document's bytes (never all in memory)::

        with client.open_document(numero, doc_id) as doc:
            for chunk in doc.iter_bytes(): ...
        """
        path = f"/api/v2/processos/{quote(numero)}/documentos/{quote(doc_id, safe='')}/binario"
        response = self._send("GET", path, stream=True, what=f"documento {doc_id}")
        try:
            yield DocumentStream(response, chunk_size=self.chunk_size)
        finally:
            response.close()

    # Transport with retries ------------------------------------------------------------------------
    def _send(self, method: str, path: str, *, stream: bool = False, what: str) -> httpx.Response:
        attempt = 0
        while True:
            wait: float | None = None
            try:
                request = self._http.build_request(method, path)
                response = self._http.send(request, stream=stream)
            except httpx.LocalProtocolError as exc:  # our own request is malformed: retrying will not help
                raise CourtError(f"Pedido inválido à API do tribunal: {exc}.", reason="local") from exc
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}"
                response = None
            else:
                if response.status_code < 400:
                    return response
                problem = f"HTTP {response.status_code}"
                wait = parse_retry_after(response.headers.get("Retry-After"))
                if response.status_code not in RETRY_STATUSES:
                    self._raise_for(response, what)
                response.close()
            if attempt >= self.retry.retries:
                raise CourtUnavailable(
                    f"A API do tribunal não respondeu ao pedido do {what} após {attempt + 1} tentativas "
                    f"({problem}). Tente de novo em alguns minutos.",
                    reason=problem,
                    retry_after=wait,
                )
            if wait is not None and wait > self.retry.max_retry_after:
                raise CourtUnavailable(
                    f"A API do tribunal pediu para esperar {int(wait)} s antes de novo pedido do {what}.",
                    reason=problem,
                    retry_after=wait,
                )
            delay = wait if wait is not None else self.retry.delay(attempt, self.rng)
            log.info(
                "court API %s %s failed (%s); retry %d in %.2fs", method, path, problem, attempt + 1, delay
            )
            self.sleep(delay)
            attempt += 1

    def _raise_for(self, response: httpx.Response, what: str) -> None:
        try:
            if response.is_stream_consumed is False:
                response.read()
            detail = str(response.json().get("erro", ""))[:300]
        except Exception:  # the body is only a hint for the message
            detail = ""
        finally:
            response.close()
        status = response.status_code
        if status in (401, 403):
            raise CourtAuthError(
                f"A API do tribunal recusou o token ({status}{': ' + detail if detail else ''}). "
                "Verifique COURT_API_TOKEN (expirado ou sem o escopo processos:read).",
                status_code=status,
            )
        if status == 404:
            raise CourtNotFound(f"O tribunal não encontrou o {what}.", entity="court", key=what)
        raise CourtError(
            f"A API do tribunal respondeu {status} ao pedido do {what}{': ' + detail if detail else ''}.",
            status_code=status,
        )
