"""Plain HTTP handlers beside the Panel pages: ``/health``, ``/metrics`` and the base class they share with
the REST API.

``ObservedHandler`` gives every request it serves a request id (``X-Request-ID`` taken from the client,
sanitised, or generated; set in ``engine.context.request_id_var`` while the request runs and echoed in the
response), one JSON access-log line, Prometheus request metrics labelled by route *template*, and JSON
error bodies ``{"error": CODE, "detail": ..., "request_id": ...}``. ``error_reply`` is the one place where
exceptions become HTTP answers. Subclass it for any non-Panel handler (blob downloads, the API...).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import gc
import hmac
import json
import logging
import math
import re
import threading
import time
import weakref
from collections.abc import Callable
from datetime import date, datetime
from typing import Any, TypeVar

import orjson
from tornado.web import HTTPError, RequestHandler

from engine import metrics
from engine.context import new_request_id, request_id_var
from engine.errors import AuthenticationFailed, EngineError, LimitExceeded
from engine.settings import Settings

log = logging.getLogger("oficina.web")
access_log = logging.getLogger("oficina.access")

T = TypeVar("T")

REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID_MAX = 64
_REQUEST_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._:\-]")
HEALTH_CHECK_TIMEOUT = 3.0


class MethodNotAllowed(EngineError):
    status = 405
    code = "method_not_allowed"


class UnsupportedMediaType(EngineError):
    status = 415
    code = "unsupported_media_type"


# Codes for errors Tornado raises itself (unknown HTTP verbs, unreadable requests).
_HTTP_CODES = {400: "bad_request", 401: "unauthenticated", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 413: "payload_too_large", 415: "unsupported_media_type"}


def sanitize_request_id(raw: str | None) -> str:
    """Keep a client's request id when it is made of safe characters (letters, digits, ``._:-``), at most
    64 of them; anything else is dropped so ids cannot inject into logs or headers."""
    return _REQUEST_ID_UNSAFE.sub("", raw or "")[:REQUEST_ID_MAX]


def error_reply(exc: BaseException, *, request_id: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    """The HTTP answer for an exception: (status, JSON body, extra headers). The one mapping for the app."""
    headers: dict[str, str] = {}
    if isinstance(exc, EngineError) and exc.status < 500:
        status, body = exc.status, exc.to_dict()
        if isinstance(exc, AuthenticationFailed):
            headers["WWW-Authenticate"] = 'Bearer realm="oficina"'
        if isinstance(exc, LimitExceeded):
            retry = exc.data.get("retry_after")
            seconds = max(1, math.ceil(float(retry))) if isinstance(retry, int | float) else 60
            headers["Retry-After"] = str(seconds)
            body["retry_after"] = seconds
        allow = exc.data.get("allow")
        if isinstance(exc, MethodNotAllowed) and isinstance(allow, list):
            headers["Allow"] = ", ".join(allow)
    elif isinstance(exc, EngineError):
        # 5xx engine errors keep their code, but internal detail (configuration, upstream URLs) stays in the log.
        status = exc.status
        body = {"error": exc.code, "detail": f"Falha no servidor ({exc.code}). Informe o código {request_id} "
                                             "ao suporte."}
    elif isinstance(exc, HTTPError) and exc.status_code < 500:
        status = exc.status_code
        body = {"error": _HTTP_CODES.get(status, "bad_request"),
                "detail": exc.log_message or exc.reason or "Requisição inválida."}
    else:
        status = 500
        body = {"error": "internal",
                "detail": f"Erro interno inesperado. Informe o código {request_id} ao suporte."}
    body["request_id"] = request_id
    return status, body, headers


def json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME  # dates go through json_default: ``isoformat()`` as before


def dump_json(value: Any) -> bytes:
    """Compact UTF-8 JSON. orjson (several times faster on API answers); what it refuses (integers beyond
    64 bits) goes through the standard library with the same output conventions."""
    try:
        return orjson.dumps(value, default=json_default, option=_ORJSON_OPTIONS)
    except TypeError:
        return json.dumps(value, ensure_ascii=False, default=json_default, separators=(",", ":")).encode()


def settle_heap() -> int:
    """Call once the server is built, before it serves: what exists then (modules, classes, routes, caches
    filled at start-up) lives as long as the process, so it is moved out of the garbage collector's reach
    (``gc.freeze``). Without this, every full collection walks that whole heap again, a pause of tens of
    milliseconds that every request in flight waits through. Returns how many objects were set aside."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


class _Pools:
    """Thread pools for blocking work, created on first use. ``health`` is apart so that hung dependency
    checks can never starve ordinary requests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pools: dict[str, concurrent.futures.ThreadPoolExecutor] = {}

    def get(self, name: str, workers: int) -> concurrent.futures.ThreadPoolExecutor:
        with self._lock:
            pool = self._pools.get(name)
            if pool is None:
                pool = self._pools[name] = concurrent.futures.ThreadPoolExecutor(
                    max_workers=workers, thread_name_prefix=f"oficina-{name}")
            return pool


pools = _Pools()


async def run_blocking(fn: Callable[[], T], *, pool: str = "web", workers: int = 8,
                       timeout: float | None = None, waits: list[concurrent.futures.Future[Any]] | None = None,
                       waits_timeout: float | None = None) -> T:
    """Run ``fn`` in a worker thread with the caller's context variables (request id) and await it. Answers
    reach the loop through ``_Wakeups``: a burst of them finished at once costs the loop one wake-up.

    ``waits``: a list that ``fn`` fills with futures other threads finish (the audit writer's commits, see
    ``audit.deferred_commits``). The answer is ``fn``'s once every one of them is done too (the first one's
    error instead; with ``waits_timeout``, ``TimeoutError`` if they are not done that many seconds after ``fn``
    returned), and the worker is free meanwhile. Waiting for both in one future spares the loop a wake-up per
    call."""
    executor = pools.get(pool, workers)
    loop = asyncio.get_running_loop()
    wakeups = _wakeups.get(loop)
    if wakeups is None:
        wakeups = _wakeups[loop] = _Wakeups(loop)
    if waits is None:
        job = executor.submit(contextvars.copy_context().run, fn)
        answer = job
    else:
        answer = concurrent.futures.Future()

        def then_waits() -> None:
            try:
                result = fn()
            except BaseException as exc:
                answer.set_exception(exc)
                return
            if waits_timeout is not None and any(not w.done() for w in waits):
                wakeups.expire(answer, waits_timeout)
            held = [result]  # dropped once the answer is settled, even if a commit it waited for never ends
            answer.add_done_callback(lambda _: held.clear())
            _answer_after(waits, 0, held, answer)

        job = executor.submit(contextvars.copy_context().run, then_waits)
    waiter = wakeups.watch(answer)
    try:
        return await (waiter if timeout is None else asyncio.wait_for(waiter, timeout))
    except (TimeoutError, asyncio.CancelledError):
        job.cancel()  # given up on (timeout, request or server gone) before it started: it never will
        raise


def _answer_after(waits: list[concurrent.futures.Future[Any]], i: int, held: list[Any],
                  answer: concurrent.futures.Future[Any]) -> None:
    """Finish ``answer`` with the result in ``held`` once ``waits[i:]`` are done, in order, or with the first
    one's error; called again by each pending one as it finishes, in whichever thread finishes it."""
    if answer.done():  # the watchdog gave up on it
        return
    for n in range(i, len(waits)):
        wait = waits[n]
        if not wait.done():
            wait.add_done_callback(lambda _, at=n: _answer_after(waits, at, held, answer))
            return
        error = concurrent.futures.CancelledError() if wait.cancelled() else wait.exception()
        if error is not None:
            _settle(answer, error=error)
            return
    _settle(answer, result=held[0] if held else None)


def _settle(answer: concurrent.futures.Future[Any], *, result: Any = None,
            error: BaseException | None = None) -> None:
    try:
        if error is None:
            answer.set_result(result)
        else:
            answer.set_exception(error)
    except concurrent.futures.InvalidStateError:  # the watchdog gave up on it first
        pass


class _Wakeups:
    """Concurrent futures finished by other threads, handed to one event loop with one wake-up per burst.

    ``asyncio.wrap_future`` wakes the loop once per future. Worker threads under load, and a writer thread that
    commits a batch, finish the futures of many requests at nearly the same moment; here the first of them
    schedules one call on the loop and the rest join it, so a burst of N costs one wake-up instead of N.

    ``expire`` fails a future that is still pending after a delay (a commit that never comes), checked by one
    timer on the loop while any such deadline is pending."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = weakref.ref(loop)  # the registry below must not keep a closed loop alive
        self._lock = threading.Lock()
        self._ready: list[tuple[concurrent.futures.Future[Any], asyncio.Future[Any]]] = []
        self._scheduled = False
        self._deadlines: dict[concurrent.futures.Future[Any], float] = {}
        self._watching = False

    def _call(self, callback: Callable[[], None]) -> None:
        target = self._loop()
        if target is not None and not target.is_closed():
            # In a context of its own: not the request's whose thread happens to schedule it.
            target.call_soon_threadsafe(callback, context=contextvars.Context())

    def watch(self, done: concurrent.futures.Future[Any]) -> asyncio.Future[Any]:
        """An asyncio future of this loop (called on it) that gets ``done``'s outcome."""
        loop = self._loop()
        assert loop is not None
        waiter = loop.create_future()

        def finished(future: concurrent.futures.Future[Any]) -> None:
            with self._lock:
                self._ready.append((future, waiter))
                if self._scheduled:
                    return
                self._scheduled = True
            self._call(self._drain)

        done.add_done_callback(finished)
        return waiter

    def _drain(self) -> None:
        with self._lock:
            ready, self._ready = self._ready, []
            self._scheduled = False
        for future, waiter in ready:
            if waiter.done():  # its request gave up waiting (timeout, closed connection)
                continue
            if future.cancelled():
                waiter.cancel()
            elif (exc := future.exception()) is not None:
                if isinstance(exc, StopIteration):  # an asyncio future refuses it (and the rest of the burst with it)
                    exc = RuntimeError(f"StopIteration numa tarefa em segundo plano: {exc!r}")
                waiter.set_exception(exc)
            else:
                waiter.set_result(future.result())

    def expire(self, done: concurrent.futures.Future[Any], seconds: float) -> None:
        """Fail ``done`` with ``TimeoutError`` if it is still pending ``seconds`` from now (any thread). The
        timer runs at most a second apart while deadlines are pending, so a deadline shorter than one already
        pending may be seen up to a second late."""
        with self._lock:
            self._deadlines[done] = time.monotonic() + seconds
            start = not self._watching
            self._watching = True
        done.add_done_callback(self._forget)
        if start:
            self._call(self._check)

    def _forget(self, done: concurrent.futures.Future[Any]) -> None:
        with self._lock:
            self._deadlines.pop(done, None)

    def _check(self) -> None:
        now = time.monotonic()
        with self._lock:
            overdue = [done for done, deadline in self._deadlines.items() if deadline <= now]
            following = min(self._deadlines.values(), default=None)
            self._watching = following is not None
        for done in overdue:
            _settle(done, error=TimeoutError("Uma gravação em segundo plano não foi confirmada a tempo."))
        target = self._loop()
        if following is not None and target is not None and not target.is_closed():
            target.call_later(min(1.0, max(0.01, following - now)), self._check, context=contextvars.Context())


_wakeups: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Wakeups] = weakref.WeakKeyDictionary()


class ObservedHandler(RequestHandler):
    """Request id, access log, metrics and JSON errors for a plain Tornado handler.

    ``route`` is the template used as the metrics label; ``config`` the application settings (Tornado
    already uses ``self.settings`` for its own)."""

    route = "unmatched"
    config: Settings
    request_id = ""
    user_id: int | None = None

    def initialize(self, *, config: Settings, route: str | None = None, **_: Any) -> None:
        self.config = config
        if route is not None:
            self.route = route

    def set_default_headers(self) -> None:
        # Also called again after clear() on errors, so the header survives error answers.
        if not self.request_id:
            self.request_id = sanitize_request_id(self.request.headers.get(REQUEST_ID_HEADER)) or new_request_id()
        self.set_header(REQUEST_ID_HEADER, self.request_id)
        self.set_header("Cache-Control", "no-store")

    def prepare(self) -> Any:
        request_id_var.set(self.request_id)  # lives in this request's own task context
        return None

    # Answers --------------------------------------------------------------------------------------------
    def write_json(self, body: Any, *, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(dump_json(body))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc_info = kwargs.get("exc_info")
        exc = exc_info[1] if exc_info else HTTPError(status_code)
        status, body, headers = error_reply(exc, request_id=self.request_id)
        for name, value in headers.items():
            self.set_header(name, value)
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(dump_json(body))

    def log_exception(self, typ: Any, value: BaseException | None, tb: Any) -> None:
        if isinstance(value, EngineError) and value.status < 500:
            return  # expected outcome (404, 409...): the access line records it
        if isinstance(value, HTTPError) and value.status_code < 500:
            return
        log.error("unhandled error on %s %s", self.request.method, self.request.path,
                  exc_info=(typ, value, tb), extra={"request_id": self.request_id})

    # Observation ----------------------------------------------------------------------------------------
    def _log(self) -> None:
        """Replaces Tornado's ``tornado.access`` line: ``on_finish`` writes our structured one instead."""

    def on_finish(self) -> None:
        seconds = self.request.request_time()
        status = self.get_status()
        metrics.observe_request(method=self.request.method or "", route=self.route, status=status,
                                seconds=seconds)
        level = logging.ERROR if status >= 500 else logging.WARNING if status >= 400 else logging.INFO
        access_log.log(level, "%s %s %s", self.request.method, self.request.path, status, extra={
            "request_id": self.request_id, "method": self.request.method, "path": self.request.path,
            "route": self.route, "status": status, "duration_ms": round(seconds * 1000, 2),
            "user_id": self.user_id, "client": self.request.remote_ip,
        })


class HealthHandler(ObservedHandler):
    """``GET /health``: 200 when the database, the queue and blob storage answer, else 503, with each
    check's status and latency. Failure details go to the log, not to this public answer."""

    checks: dict[str, Callable[[], None]]
    timeout: float

    def initialize(self, *, config: Settings, route: str | None = None,
                   checks: dict[str, Callable[[], None]] | None = None,
                   timeout: float = HEALTH_CHECK_TIMEOUT, **_: Any) -> None:
        super().initialize(config=config, route=route)
        self.checks = checks if checks is not None else metrics.health_checks(config)
        self.timeout = timeout

    async def _run(self, name: str, check: Callable[[], None]) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            await run_blocking(check, pool="health", workers=6, timeout=self.timeout)
            result: dict[str, Any] = {"status": "ok"}
        except TimeoutError:
            log.warning("health check %s timed out after %.1f s", name, self.timeout)
            result = {"status": "failed", "error": "timeout"}
        except Exception as exc:
            log.warning("health check %s failed", name, exc_info=True)
            result = {"status": "failed", "error": type(exc).__name__}
        result["latency_ms"] = round((time.perf_counter() - started) * 1000, 2)
        return result

    async def get(self) -> None:
        names = list(self.checks)
        results = await asyncio.gather(*(self._run(name, self.checks[name]) for name in names))
        checks = dict(zip(names, results, strict=True))
        healthy = all(r["status"] == "ok" for r in results)
        self.write_json({"status": "ok" if healthy else "failed", "checks": checks},
                        status=200 if healthy else 503)


class MetricsHandler(ObservedHandler):
    """``GET /metrics``: Prometheus text. With ``METRICS_TOKEN`` set it needs ``Authorization: Bearer``."""

    async def get(self) -> None:
        expected = self.config.metrics_token
        if expected:
            scheme, _, given = (self.request.headers.get("Authorization") or "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
                raise AuthenticationFailed("Informe o token de métricas em 'Authorization: Bearer <token>'.")
        body, content_type = await run_blocking(lambda: metrics.render_metrics(self.config), pool="health",
                                                workers=6)
        self.set_header("Content-Type", content_type)
        self.finish(body)


def routes(settings: Settings) -> list[tuple[str, type[RequestHandler], dict[str, Any]]]:
    """Tornado routes for ``/health`` and ``/metrics`` (``panel_serve`` passes them as extra patterns)."""
    return [
        (r"/health", HealthHandler, {"config": settings, "route": "/health"}),
        (r"/metrics", MetricsHandler, {"config": settings, "route": "/metrics"}),
    ]
