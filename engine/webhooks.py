"""Webhooks: URL validation with an SSRF guard, Standard Webhooks signing, deliveries with retries.

A target URL is checked before anything is stored or sent: http(s) only, no credentials, and every
address its host resolves to must be public (loopback, private, link-local, multicast, reserved and
unspecified ranges are refused, IPv4-mapped IPv6 and the old numeric IPv4 forms included) unless the
host is listed in ``WEBHOOK_ALLOWED_HOSTS``. The request is then sent to the very address that was
checked (the URL is pinned to it; ``Host`` and TLS SNI keep the name), with redirects off, so a DNS
answer that changes between check and connection cannot reach an internal service.

Messages follow https://www.standardwebhooks.com: headers ``webhook-id`` (stable across retries),
``webhook-timestamp`` (unix seconds) and ``webhook-signature`` (``v1,`` + base64 HMAC-SHA256 of
``id.timestamp.body`` keyed with the base64 part of a ``whsec_`` secret). The global secret is
``WEBHOOK_SECRET``; an endpoint registered by an admin carries its own, shown once at creation.

A delivery is a row with its attempt log. The ``webhook`` job makes one attempt; a failure schedules
the next attempt as a new job after the delay the delivery's schedule gives (seconds, then minutes);
a 410 answer stops for good. Deliveries of a download wait for their job ("waiting") and are released
when it ends.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import logging
import re
import secrets
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine import audit, jobs
from engine.errors import ConfigurationError, Conflict, NotFound, ValidationFailed
from engine.models import Job, Processo, utcnow
from engine.models.court import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from engine.security import SYSTEM, require
from engine.settings import Settings, get_settings

log = logging.getLogger(__name__)

JOB_KIND = "webhook"
EVENT_TEST = "webhook.teste"
DEFAULT_SCHEDULE = (5.0, 30.0, 120.0, 600.0, 1800.0)  # waits before attempts 2..6
SECRET_PREFIX = "whsec_"
EXCERPT_CHARS = 1000
TERMINAL = ("succeeded", "failed", "stopped")

Resolver = Callable[[str, int], list[str]]


# Validation ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A validated URL and the addresses it resolved to (the first is the one connected to)."""

    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[str, ...]
    allowed_by_list: bool = False


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: list[str] = []
    for info in infos:
        address = str(info[4][0]).split("%", 1)[0]
        if address not in seen:
            seen.append(address)
    return seen


def _literal_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a host spells directly, including the legacy IPv4 forms (``127.1``, ``2130706433``,
    ``0x7f000001``, ``0177.0.0.1``) that resolvers still accept."""
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        pass
    if re.fullmatch(r"[0-9a-fA-Fx.]+", host) and re.search(r"\d", host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def blocked_reason(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why an address may not receive webhooks (``None`` when it is a public unicast address)."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return blocked_reason(address.ipv4_mapped)
        if address.sixtofour is not None and blocked_reason(address.sixtofour):
            return blocked_reason(address.sixtofour)
        if address in ipaddress.IPv6Network("64:ff9b::/96"):
            return blocked_reason(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    checks = (
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("unspecified", address.is_unspecified),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
        ("reserved", not address.is_global),
    )
    return next((name for name, hit in checks if hit), None)


_REASONS_PT = {
    "loopback": "a própria máquina (loopback)",
    "link-local": "um endereço link-local",
    "multicast": "um endereço multicast",
    "unspecified": "um endereço não especificado",
    "private": "uma rede privada",
    "reserved": "um endereço reservado",
}


def _invalid(message: str, reason: str, **data: Any) -> ValidationFailed:
    return ValidationFailed(
        message, errors=[{"field": "webhook_url", "message": message}], reason=reason, **data
    )


def validate_url(url: str, *, settings: Settings | None = None, resolver: Resolver | None = None) -> Target:
    """Check a webhook URL without sending anything; ``ValidationFailed`` (with ``reason``) if refused."""
    settings = settings or get_settings()
    resolver = resolver or system_resolver
    if not isinstance(url, str) or not url.strip():
        raise _invalid("Informe a URL do webhook.", "empty")
    url = url.strip()
    if len(url) > 2000:
        raise _invalid("A URL do webhook é longa demais (máximo 2000 caracteres).", "too_long")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise _invalid(f"URL do webhook inválida: {exc}.", "malformed") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise _invalid("A URL do webhook precisa começar com https:// (ou http://).", "scheme")
    if (
        settings.is_production
        and scheme != "https"
        and (parts.hostname or "") not in settings.webhook_allowed_hosts
    ):
        raise _invalid("Em produção a URL do webhook precisa usar https://.", "scheme")
    if parts.username is not None or parts.password is not None:
        raise _invalid("A URL do webhook não pode conter usuário ou senha.", "credentials")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise _invalid("A URL do webhook não tem um host.", "host")
    port = port or (443 if scheme == "https" else 80)
    allowed = host in {h.lower().rstrip(".") for h in settings.webhook_allowed_hosts}
    literal = _literal_ip(host)
    if literal is not None:
        addresses = [str(literal)]
    else:
        if not allowed and (host == "localhost" or host.endswith(".localhost")):
            raise _invalid(
                "A URL do webhook aponta para a própria máquina (localhost).", "loopback", address="localhost"
            )
        try:
            addresses = resolver(host, port)
        except (OSError, UnicodeError) as exc:
            raise _invalid(f"Não foi possível resolver o host {host} do webhook.", "unresolvable") from exc
        if not addresses:
            raise _invalid(f"O host {host} do webhook não tem endereço.", "unresolvable")
    if not allowed:
        for raw in addresses:
            try:
                address = ipaddress.ip_address(raw)
            except ValueError as exc:
                raise _invalid(f"Endereço inválido para {host}: {raw}.", "unresolvable") from exc
            reason = blocked_reason(address)
            if reason:
                raise _invalid(
                    f"A URL do webhook aponta para {_REASONS_PT[reason]} ({address}); "
                    "use um endereço público.",
                    reason,
                    address=str(address),
                )
    return Target(
        url=url, scheme=scheme, host=host, port=port, addresses=tuple(addresses), allowed_by_list=allowed
    )


# Signing -------------------------------------------------------------------------------------------------


def generate_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _secret_key(secret: str) -> bytes:
    raw = secret[len(SECRET_PREFIX) :] if secret.startswith(SECRET_PREFIX) else secret
    try:
        key = base64.b64decode(raw, validate=True)
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(
            "WEBHOOK_SECRET deve ser whsec_ seguido de base64.", variable="WEBHOOK_SECRET"
        ) from exc
    if len(key) < 16:
        raise ConfigurationError("WEBHOOK_SECRET curto demais (mínimo 16 bytes).", variable="WEBHOOK_SECRET")
    return key


def signing_secret(settings: Settings) -> str:
    """``WEBHOOK_SECRET``; outside production, when unset, a secret derived from ``SECRET_KEY``."""
    if settings.webhook_secret:
        _secret_key(settings.webhook_secret)
        return settings.webhook_secret
    if settings.is_production:
        raise ConfigurationError(
            "WEBHOOK_SECRET é obrigatório em produção (whsec_...).", variable="WEBHOOK_SECRET"
        )
    derived = hmac.new(settings.secret_key.encode(), b"oficina-webhooks", hashlib.sha256).digest()
    return SECRET_PREFIX + base64.b64encode(derived).decode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value for one message."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def schedule_from_settings(settings: Settings) -> list[float]:
    raw = getattr(settings, "webhook_retry_schedule", None)
    if not raw:
        return list(DEFAULT_SCHEDULE)
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    try:
        values = [float(x) for x in items if str(x).strip()]
    except ValueError as exc:
        raise ConfigurationError(
            "WEBHOOK_RETRY_SCHEDULE: segundos separados por vírgula.", variable="WEBHOOK_RETRY_SCHEDULE"
        ) from exc
    return values or list(DEFAULT_SCHEDULE)


# Endpoints -----------------------------------------------------------------------------------------------


def create_endpoint(
    session: Session,
    *,
    actor: Any,
    url: str,
    description: str = "",
    settings: Settings | None = None,
    resolver: Resolver | None = None,
) -> tuple[WebhookEndpoint, str]:
    """Register a target with its own secret. Returns the endpoint and the secret (shown only now)."""
    require(actor, "webhooks.manage")
    target = validate_url(url, settings=settings, resolver=resolver)
    if session.scalar(
        select(WebhookEndpoint).where(WebhookEndpoint.url == target.url, WebhookEndpoint.is_active.is_(True))
    ):
        raise Conflict("Já existe um endpoint ativo com esta URL.", entity="webhook_endpoint", key=target.url)
    secret = generate_secret()
    endpoint = WebhookEndpoint(
        url=target.url,
        description=description.strip()[:300],
        secret=secret,
        created_by_id=getattr(actor, "id", None),
    )
    session.add(endpoint)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="webhook_endpoint.create",
        entity_type="webhook_endpoint",
        entity_id=endpoint.id,
        after={"url": endpoint.url, "description": endpoint.description},
    )
    return endpoint, secret


def list_endpoints(session: Session, *, actor: Any, include_inactive: bool = False) -> list[WebhookEndpoint]:
    require(actor, "webhooks.manage")
    query = select(WebhookEndpoint).order_by(WebhookEndpoint.id.desc())
    if not include_inactive:
        query = query.where(WebhookEndpoint.is_active.is_(True))
    return list(session.scalars(query))


def deactivate_endpoint(session: Session, *, actor: Any, endpoint_id: int) -> WebhookEndpoint:
    require(actor, "webhooks.manage")
    endpoint = session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None:
        raise NotFound(f"Endpoint {endpoint_id} não encontrado.", entity="webhook_endpoint", key=endpoint_id)
    endpoint.is_active = False
    audit.record(
        session,
        actor=actor,
        action="webhook_endpoint.deactivate",
        entity_type="webhook_endpoint",
        entity_id=endpoint.id,
    )
    return endpoint


def endpoint_summary(endpoint: WebhookEndpoint) -> dict[str, Any]:
    return {
        "id": endpoint.id,
        "url": endpoint.url,
        "description": endpoint.description,
        "is_active": endpoint.is_active,
        "secret_hint": endpoint.secret[:10] + "…",
        "created_at": endpoint.created_at.isoformat() if endpoint.created_at else None,
    }


def _endpoint_for(session: Session, url: str) -> WebhookEndpoint | None:
    return session.scalar(
        select(WebhookEndpoint)
        .where(WebhookEndpoint.url == url, WebhookEndpoint.is_active.is_(True))
        .limit(1)
    )


# Deliveries ----------------------------------------------------------------------------------------------


def _new_delivery(
    session: Session,
    *,
    actor: Any,
    url: str,
    event_type: str,
    payload: dict[str, Any],
    status: str,
    job_id: int | None,
    processo_id: int | None,
    schedule: list[float],
) -> WebhookDelivery:
    endpoint = _endpoint_for(session, url)
    delivery = WebhookDelivery(
        message_id=f"msg_{uuid.uuid4().hex}",
        event_type=event_type,
        url=url,
        endpoint_id=endpoint.id if endpoint else None,
        job_id=job_id,
        processo_id=processo_id,
        payload=payload,
        status=status,
        schedule=schedule,
        created_by_id=getattr(actor, "id", None),
    )
    session.add(delivery)
    session.flush()
    return delivery


def _schedule_attempt(session: Session, delivery: WebhookDelivery, *, delay: float, trigger: str) -> Job:
    due = utcnow() + timedelta(seconds=delay)
    delivery.next_attempt_at = due
    job = jobs.create_job(
        session,
        kind=JOB_KIND,
        owner=SYSTEM,
        delay=delay,
        params={"delivery_id": delivery.id, "expected_attempts": delivery.attempts, "trigger": trigger},
    )
    if delay:
        # The sweep re-enqueues queued jobs silent for a while; a delayed one is silent until it is due.
        job.heartbeat_at = due
    return job


def subscribe(
    session: Session,
    *,
    actor: Any,
    url: str,
    job: Job,
    processo: Processo | None,
    event_type: str,
    settings: Settings | None = None,
    resolver: Resolver | None = None,
) -> WebhookDelivery:
    """Notify ``url`` when ``job`` ends (at once if it already ended). One delivery per job and URL."""
    require(actor, "webhooks.use")
    settings = settings or get_settings()
    target = validate_url(url, settings=settings, resolver=resolver)
    existing = session.scalar(
        select(WebhookDelivery)
        .where(WebhookDelivery.job_id == job.id, WebhookDelivery.url == target.url)
        .limit(1)
    )
    if existing is not None:
        return existing
    delivery = _new_delivery(
        session,
        actor=actor,
        url=target.url,
        event_type=event_type,
        payload={},
        status="waiting",
        job_id=job.id,
        processo_id=processo.id if processo else None,
        schedule=schedule_from_settings(settings),
    )
    audit.record(
        session,
        actor=actor,
        action="webhook.subscribe",
        entity_type="webhook_delivery",
        entity_id=delivery.id,
        after={"url": target.url, "job_id": job.id},
    )
    if not job.is_active:
        release_waiting(session, job_id=job.id)
    return delivery


def release_waiting(session: Session, *, job_id: int) -> list[int]:
    """Schedule the deliveries waiting for ``job_id`` (called when the job ends; safe to call twice)."""
    waiting = session.scalars(
        select(WebhookDelivery)
        .where(WebhookDelivery.job_id == job_id, WebhookDelivery.status == "waiting")
        .with_for_update()
    ).all()
    for delivery in waiting:
        delivery.status = "pending"
        _schedule_attempt(session, delivery, delay=0, trigger="auto")
    return [d.id for d in waiting]


def _payload(session: Session, delivery: WebhookDelivery, settings: Settings) -> dict[str, Any]:
    """The message body, rebuilt at every attempt so document links are never stale."""
    data: dict[str, Any] = dict(delivery.payload or {})
    if delivery.processo_id is not None and delivery.event_type != EVENT_TEST:
        from engine.documents import build_status

        processo = session.get(Processo, delivery.processo_id)
        if processo is not None:
            status = build_status(session, numero=processo.numero, settings=settings)
            status.pop("webhook", None)
            counters, job = status["counters"], status.get("job")
            if (
                job
                and job["status"] in ("queued", "running")
                and not counters["pending"] + counters["processing"]
            ):
                # Sent as the download job returns, a moment before its row says so.
                job.update(status="succeeded", progress=100, finished_at=utcnow().isoformat())
                status["progress"] = 100
            data = status
    return {"type": delivery.event_type, "timestamp": utcnow().isoformat(), "data": data}


def _pinned_request(target: Target, body: bytes, headers: dict[str, str]) -> tuple[str, dict[str, str], dict]:
    """Rewrite the URL to the checked address; the name travels in Host and TLS SNI."""
    parts = urlsplit(target.url)
    address = target.addresses[0]
    shown = f"[{address}]" if ":" in address else address
    default_port = 443 if target.scheme == "https" else 80
    netloc = shown if target.port == default_port else f"{shown}:{target.port}"
    pinned = urlunsplit((target.scheme, netloc, parts.path or "/", parts.query, ""))
    host_header = target.host if target.port == default_port else f"{target.host}:{target.port}"
    if ":" in target.host:
        host_header = f"[{target.host}]" if target.port == default_port else f"[{target.host}]:{target.port}"
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    return pinned, {**headers, "Host": host_header}, extensions


@dataclass
class AttemptOutcome:
    status_code: int | None
    duration_ms: int
    excerpt: str
    error: str

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def _post(
    target: Target,
    body: bytes,
    headers: dict[str, str],
    *,
    timeout: float,
    transport: httpx.BaseTransport | None,
) -> AttemptOutcome:
    url, headers, extensions = _pinned_request(target, body, headers)
    started = time.monotonic()
    try:
        with (
            httpx.Client(
                timeout=timeout, follow_redirects=False, transport=transport, trust_env=False
            ) as http,
            http.stream("POST", url, content=body, headers=headers, extensions=extensions) as response,
        ):
            excerpt = b""
            for chunk in response.iter_bytes():
                excerpt += chunk
                if len(excerpt) >= EXCERPT_CHARS:
                    break
            text = excerpt[:EXCERPT_CHARS].decode("utf-8", "replace")
            return AttemptOutcome(response.status_code, int((time.monotonic() - started) * 1000), text, "")
    except httpx.HTTPError as exc:
        return AttemptOutcome(
            None, int((time.monotonic() - started) * 1000), "", f"{type(exc).__name__}: {exc}"
        )


def attempt_delivery(
    session_factory: Callable[[], Any],
    delivery_id: int,
    *,
    settings: Settings,
    trigger: str = "auto",
    transport: httpx.BaseTransport | None = None,
    resolver: Resolver | None = None,
    schedule_retry: bool = True,
) -> WebhookDelivery:
    """Make one attempt: sign, POST to the checked address, log it, and schedule the next one if due.

    ``session_factory`` opens a session scope; the HTTP call happens between two short transactions."""
    with session_factory() as s:
        delivery = s.get(WebhookDelivery, delivery_id)
        if delivery is None:
            raise NotFound(
                f"Entrega {delivery_id} não encontrada.", entity="webhook_delivery", key=delivery_id
            )
        endpoint = s.get(WebhookEndpoint, delivery.endpoint_id) if delivery.endpoint_id else None
        secret = endpoint.secret if endpoint is not None else signing_secret(settings)
        body = json.dumps(_payload(s, delivery, settings), ensure_ascii=False, separators=(",", ":")).encode()
        url, msg_id = delivery.url, delivery.message_id
    timestamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "user-agent": "Oficina-Webhooks/1",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
    }
    started_at = utcnow()
    try:
        target = validate_url(url, settings=settings, resolver=resolver)
    except ValidationFailed as exc:
        outcome = AttemptOutcome(None, 0, "", f"recusado: {exc.message}")
        refused = True
    else:
        outcome = _post(
            target,
            body,
            headers,
            timeout=float(getattr(settings, "webhook_timeout_seconds", 10)),
            transport=transport,
        )
        refused = False
    with session_factory() as s:
        delivery = s.get(WebhookDelivery, delivery_id, with_for_update=True)
        delivery.attempts += 1
        s.add(
            WebhookAttempt(
                delivery_id=delivery.id,
                number=delivery.attempts,
                trigger=trigger,
                started_at=started_at,
                duration_ms=outcome.duration_ms,
                status_code=outcome.status_code,
                response_excerpt=outcome.excerpt,
                error=outcome.error,
            )
        )
        delivery.last_status_code = outcome.status_code
        delivery.last_error = outcome.error or ("" if outcome.ok else f"HTTP {outcome.status_code}")
        delivery.next_attempt_at = None
        if outcome.ok:
            delivery.status = "succeeded"
            delivery.delivered_at = utcnow()
            delivery.last_error = ""
        elif outcome.status_code == 410:
            delivery.status = "stopped"
            delivery.last_error = "O destino respondeu 410 (Gone): novas tentativas canceladas."
        elif refused:
            delivery.status = "failed"
        else:
            waits = list(delivery.schedule or [])
            auto_done = (
                s.scalar(
                    select(func.count(WebhookAttempt.id)).where(
                        WebhookAttempt.delivery_id == delivery.id, WebhookAttempt.trigger == "auto"
                    )
                )
                or 0
            )
            if schedule_retry and trigger == "auto" and auto_done <= len(waits):
                delivery.status = "retrying"
                s.flush()
                _schedule_attempt(s, delivery, delay=float(waits[auto_done - 1]), trigger="auto")
            else:
                delivery.status = "failed"
        s.flush()
        return delivery


@jobs.job_handler(JOB_KIND, label="Entrega de webhook", permission="webhooks.use")
def run_delivery_job(ctx: jobs.JobContext) -> dict[str, Any]:
    delivery_id = int(ctx.params["delivery_id"])
    with ctx.session() as s:
        delivery = s.get(WebhookDelivery, delivery_id)
        if delivery is None:
            return {"skipped": "entrega removida"}
        if delivery.status in TERMINAL or delivery.status == "waiting":
            return {"skipped": f"entrega já {delivery.status}"}
        expected = ctx.params.get("expected_attempts")
        if expected is not None and delivery.attempts != int(expected) and ctx.attempt == 1:
            return {"skipped": "outra tentativa já aconteceu"}
        early = (delivery.next_attempt_at - utcnow()).total_seconds() if delivery.next_attempt_at else 0
        if early > 1 and ctx.params.get("trigger", "auto") == "auto":
            # Delivered ahead of time (a sweep re-enqueued it): keep the schedule with a new job.
            _schedule_attempt(s, delivery, delay=early, trigger="auto")
            return {"rescheduled_in": round(early, 1)}
    delivery = attempt_delivery(
        ctx.session, delivery_id, settings=ctx.settings, trigger=str(ctx.params.get("trigger", "auto"))
    )
    return {
        "delivery_id": delivery_id,
        "status": delivery.status,
        "status_code": delivery.last_status_code,
        "attempts": delivery.attempts,
    }


def redeliver(session: Session, *, actor: Any, delivery_id: int) -> tuple[WebhookDelivery, Job]:
    """Send a delivery again now (same ``webhook-id``, fresh payload); one manual attempt in the worker."""
    require(actor, "webhooks.use")
    delivery = session.get(WebhookDelivery, delivery_id)
    if delivery is None or not _may_see(session, actor, delivery):
        raise NotFound(f"Entrega {delivery_id} não encontrada.", entity="webhook_delivery", key=delivery_id)
    if delivery.status == "waiting":
        raise Conflict(
            "Esta entrega aguarda o fim do download; não há o que reenviar ainda.",
            entity="webhook_delivery",
            key=delivery_id,
            current=delivery.status,
        )
    before = delivery.status
    delivery.status = "pending"
    job = _schedule_attempt(session, delivery, delay=0, trigger="manual")
    audit.record(
        session,
        actor=actor,
        action="webhook.redeliver",
        entity_type="webhook_delivery",
        entity_id=delivery.id,
        before={"status": before},
        after={"job_id": job.id},
    )
    return delivery, job


def send_test(
    session_factory: Callable[[], Any],
    *,
    actor: Any,
    url: str,
    settings: Settings | None = None,
    transport: httpx.BaseTransport | None = None,
    resolver: Resolver | None = None,
) -> dict[str, Any]:
    """Validate ``url`` and send one signed test event now; returns the delivery with its attempt."""
    require(actor, "webhooks.use")
    settings = settings or get_settings()
    target = validate_url(url, settings=settings, resolver=resolver)
    with session_factory() as s:
        delivery = _new_delivery(
            s,
            actor=actor,
            url=target.url,
            event_type=EVENT_TEST,
            payload={
                "mensagem": "Evento de teste da Oficina.",
                "enviado_por": getattr(actor, "email", "sistema"),
            },
            status="pending",
            job_id=None,
            processo_id=None,
            schedule=[],
        )
        audit.record(
            s,
            actor=actor,
            action="webhook.test",
            entity_type="webhook_delivery",
            entity_id=delivery.id,
            after={"url": target.url},
        )
        delivery_id = delivery.id
    attempt_delivery(
        session_factory,
        delivery_id,
        settings=settings,
        trigger="test",
        transport=transport,
        resolver=resolver,
        schedule_retry=False,
    )
    with session_factory() as s:
        return delivery_summary(s.get(WebhookDelivery, delivery_id), with_attempts=True)


# Reading -------------------------------------------------------------------------------------------------


def _may_see(session: Session, actor: Any, delivery: WebhookDelivery) -> bool:
    from engine.security import is_admin

    return (
        is_admin(actor) or delivery.created_by_id == getattr(actor, "id", None) or delivery.job_id is not None
    )


def delivery_summary(delivery: WebhookDelivery, *, with_attempts: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": delivery.id,
        "message_id": delivery.message_id,
        "event_type": delivery.event_type,
        "url": delivery.url,
        "endpoint_id": delivery.endpoint_id,
        "job_id": delivery.job_id,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "last_status_code": delivery.last_status_code,
        "last_error": delivery.last_error or None,
        "next_attempt_at": delivery.next_attempt_at.isoformat() if delivery.next_attempt_at else None,
        "delivered_at": delivery.delivered_at.isoformat() if delivery.delivered_at else None,
        "created_at": delivery.created_at.isoformat() if delivery.created_at else None,
    }
    if with_attempts:
        out["attempt_log"] = [
            {
                "number": a.number,
                "trigger": a.trigger,
                "started_at": a.started_at.isoformat(),
                "duration_ms": a.duration_ms,
                "status_code": a.status_code,
                "response_excerpt": a.response_excerpt,
                "error": a.error or None,
            }
            for a in delivery.attempt_log
        ]
    return out


def list_deliveries(
    session: Session,
    *,
    actor: Any,
    job_id: int | None = None,
    processo_id: int | None = None,
    status: str | None = None,
    offset: int = 0,
    limit: int = 50,
) -> tuple[list[WebhookDelivery], int]:
    require(actor, "webhooks.use")
    filters = []
    if job_id is not None:
        filters.append(WebhookDelivery.job_id == job_id)
    if processo_id is not None:
        filters.append(WebhookDelivery.processo_id == processo_id)
    if status:
        filters.append(WebhookDelivery.status == status)
    total = session.scalar(select(func.count(WebhookDelivery.id)).where(*filters)) or 0
    rows = session.scalars(
        select(WebhookDelivery)
        .where(*filters)
        .order_by(WebhookDelivery.id.desc())
        .offset(offset)
        .limit(min(max(limit, 1), 200))
    ).all()
    return list(rows), total


def get_delivery(session: Session, *, actor: Any, delivery_id: int) -> WebhookDelivery:
    require(actor, "webhooks.use")
    delivery = session.get(WebhookDelivery, delivery_id)
    if delivery is None or not _may_see(session, actor, delivery):
        raise NotFound(f"Entrega {delivery_id} não encontrada.", entity="webhook_delivery", key=delivery_id)
    return delivery


def state_for_job(session: Session, *, job_id: int) -> dict[str, Any] | None:
    """The webhook side of a download job: every delivery with its attempt log (None when none asked)."""
    rows = session.scalars(
        select(WebhookDelivery)
        .where(WebhookDelivery.job_id == job_id)
        .order_by(WebhookDelivery.id)
        .execution_options(populate_existing=True)
    ).all()
    if not rows:
        return None
    return {"status": rows[-1].status, "deliveries": [delivery_summary(d, with_attempts=True) for d in rows]}


def sweep_due_deliveries(*, settings: Settings | None = None, now: datetime | None = None) -> list[int]:
    """Re-schedule retries whose job was lost (a queue that dropped a delayed task); safe to run often."""
    from engine.db import session_scope

    settings = settings or get_settings()
    now = now or utcnow()
    requeued: list[int] = []
    with session_scope(settings) as s:
        due = s.scalars(
            select(WebhookDelivery)
            .where(
                WebhookDelivery.status.in_(("pending", "retrying")),
                WebhookDelivery.next_attempt_at < now - timedelta(minutes=5),
            )
            .with_for_update(skip_locked=True)
        ).all()
        for delivery in due:
            active = s.scalar(
                select(func.count(Job.id)).where(
                    Job.kind == JOB_KIND,
                    Job.status.in_(("queued", "running")),
                    Job.params["delivery_id"].as_integer() == delivery.id,
                )
            )
            if not active:
                _schedule_attempt(s, delivery, delay=0, trigger="auto")
                requeued.append(delivery.id)
    return requeued


__all__ = [
    "Target",
    "attempt_delivery",
    "blocked_reason",
    "create_endpoint",
    "redeliver",
    "send_test",
    "sign",
    "signing_secret",
    "subscribe",
    "validate_url",
]
