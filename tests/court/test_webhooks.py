"""Webhooks: SSRF guard, Standard Webhooks signatures checked by an independent verifier, retries, 410,
delivery log and redelivery. No request ever leaves 127.0.0.1."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import httpx
import pytest
from sqlalchemy import select

from engine import webhooks
from engine.brazil import make_cnj
from engine.db import session_scope
from engine.errors import ValidationFailed
from engine.jobs import run_job
from engine.models import Job
from engine.models.court import WebhookDelivery
from engine.security import SYSTEM
from tests.court.conftest import lookup

NUMERO = make_cnj(2024, 2024, 8, 26, 100)
LOOPBACK_FORMS = [
    "127.0.0.1",
    "localhost",
    "[::1]",
    "0x7f000001",
    "2130706433",
    "127.1",
    "[::ffff:127.0.0.1]",
    "0177.0.0.1",
    "127.0.0.1.",
    "LOCALHOST",
    "api.localhost",
]


class Verifier:
    """Standard Webhooks verification written from the spec (https://www.standardwebhooks.com), sharing
    no code with engine.webhooks."""

    def __init__(self, secret: str, tolerance: int = 300) -> None:
        assert secret.startswith("whsec_")
        self.key = base64.b64decode(secret.removeprefix("whsec_"))
        self.tolerance = tolerance

    def verify(self, headers: dict[str, str], body: bytes) -> bool:
        msg_id, stamp = headers["webhook-id"], headers["webhook-timestamp"]
        if abs(time.time() - int(stamp)) > self.tolerance:
            return False
        expected = base64.b64encode(
            hmac.new(self.key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
        ).decode()
        given = [part.split(",", 1) for part in headers["webhook-signature"].split(" ")]
        return any(version == "v1" and hmac.compare_digest(sig, expected) for version, sig in given)


def refusing_resolver(host: str, port: int) -> list[str]:
    raise AssertionError(f"the resolver must not be asked about {host}")


class FailingTransport(httpx.BaseTransport):
    def handle_request(self, request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"no request may be sent, got {request.method} {request.url}")


@pytest.mark.parametrize("host", LOOPBACK_FORMS)
def test_loopback_forms_are_refused(sqlite_settings, host):
    with pytest.raises(ValidationFailed) as info:
        webhooks.validate_url(
            f"http://{host}:8080/hook", settings=sqlite_settings, resolver=refusing_resolver
        )
    assert info.value.reason == "loopback"
    assert "webhook" in info.value.message


@pytest.mark.parametrize(
    "addresses,reason",
    [
        (["10.0.0.5"], "private"),
        (["192.168.1.10"], "private"),
        (["172.16.3.4"], "private"),
        (["169.254.169.254"], "link-local"),
        (["fe80::1"], "link-local"),
        (["fd00::1"], "private"),
        (["224.0.0.1"], "multicast"),
        (["0.0.0.0"], "unspecified"),
        (["100.64.0.1"], "reserved"),
        (["240.0.0.1"], "reserved"),
        (["::ffff:10.1.2.3"], "private"),
        (["93.184.216.34", "10.0.0.1"], "private"),
    ],
)
def test_private_and_link_local_resolutions_are_refused_without_sending(sqlite_settings, addresses, reason):
    asked: list[str] = []

    def resolver(host: str, port: int) -> list[str]:
        asked.append(host)
        return addresses

    with pytest.raises(ValidationFailed) as info:
        webhooks.validate_url("https://hooks.cliente.example/x", settings=sqlite_settings, resolver=resolver)
    assert info.value.reason == reason and asked == ["hooks.cliente.example"]
    with pytest.raises(ValidationFailed):
        webhooks.send_test(
            lambda: session_scope(sqlite_settings),
            actor=SYSTEM,
            url="https://hooks.cliente.example/x",
            settings=sqlite_settings,
            resolver=resolver,
            transport=FailingTransport(),
        )


def test_a_public_address_passes_and_is_the_one_connected_to(sqlite_settings):
    target = webhooks.validate_url(
        "https://hooks.cliente.example:8443/x?a=1",
        settings=sqlite_settings,
        resolver=lambda h, p: ["93.184.216.34"],
    )
    assert target.addresses == ("93.184.216.34",) and target.port == 8443
    url, headers, ext = webhooks._pinned_request(target, b"{}", {})
    assert url == "https://93.184.216.34:8443/x?a=1"
    assert headers["Host"] == "hooks.cliente.example:8443" and ext == {
        "sni_hostname": "hooks.cliente.example"
    }


def test_dns_rebinding_between_check_and_send_is_refused(court_settings, receiver):
    """Deliveries re-check the address when sending: a name that later resolves inside is refused."""
    answers = iter([["93.184.216.34"], ["10.0.0.7"]])
    resolver = lambda host, port: next(answers)  # noqa: E731
    with session_scope(court_settings) as s:
        delivery = webhooks._new_delivery(
            s,
            actor=SYSTEM,
            url="http://hooks.cliente.example/x",
            event_type="webhook.teste",
            payload={},
            status="pending",
            job_id=None,
            processo_id=None,
            schedule=[1],
        )
        delivery_id = delivery.id
    webhooks.validate_url("http://hooks.cliente.example/x", settings=court_settings, resolver=resolver)
    result = webhooks.attempt_delivery(
        lambda: session_scope(court_settings),
        delivery_id,
        settings=court_settings,
        resolver=resolver,
        transport=FailingTransport(),
    )
    assert result.status == "failed" and "rede privada" in result.last_error


@pytest.mark.parametrize(
    "url,reason",
    [
        ("ftp://example.com/x", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("http://user:pw@example.com/", "credentials"),
        ("http:///nohost", "host"),
        ("", "empty"),
        ("http://example.com:99999/", "malformed"),
        ("javascript:alert(1)", "scheme"),
        ("http://" + "a" * 2100 + ".com/", "too_long"),
    ],
)
def test_malformed_urls_are_refused(sqlite_settings, url, reason):
    with pytest.raises(ValidationFailed) as info:
        webhooks.validate_url(url, settings=sqlite_settings, resolver=refusing_resolver)
    assert info.value.reason == reason


def test_allowed_hosts_bypass_the_private_check(court_settings):
    target = webhooks.validate_url(
        "http://127.0.0.1:9/x", settings=court_settings, resolver=refusing_resolver
    )
    assert target.allowed_by_list and target.addresses == ("127.0.0.1",)


def test_download_webhook_is_signed_and_carries_every_document(
    court_settings, simulator, receiver, run_inline
):
    result = lookup(court_settings, NUMERO, webhook_url=receiver.url)
    assert len(receiver.requests) == 1
    got = receiver.requests[0]
    assert Verifier(court_settings.webhook_secret).verify(got.headers, got.body)
    assert not Verifier("whsec_" + base64.b64encode(b"x" * 32).decode()).verify(got.headers, got.body)
    tampered = got.body.replace(b"available", b"failed")
    assert not Verifier(court_settings.webhook_secret).verify(got.headers, tampered)
    assert got.headers["webhook-id"].startswith("msg_")
    payload = got.json()
    assert payload["type"] == "processo.documentos.concluido"
    data = payload["data"]
    assert data["processo"]["numero"] == NUMERO and data["job"]["id"] == result.job.id
    assert data["job"]["status"] == "succeeded" and data["progress"] == 100
    assert len(data["documentos"]) == len(simulator.documents(NUMERO))
    assert all(d["status"] == "available" and d["download_url"] for d in data["documentos"])
    with session_scope(court_settings) as s:
        delivery = s.scalar(select(WebhookDelivery))
        assert delivery.status == "succeeded" and delivery.attempts == 1
        assert (
            delivery.attempt_log[0].status_code == 200
            and delivery.attempt_log[0].response_excerpt == "recebido"
        )


def test_asking_with_a_webhook_after_the_job_ended_notifies_at_once(
    court_settings, simulator, receiver, run_inline
):
    lookup(court_settings, NUMERO)
    assert receiver.requests == []
    again = lookup(court_settings, NUMERO, webhook_url=receiver.url)
    assert again.state == "finished" and len(receiver.requests) == 1
    lookup(court_settings, NUMERO, webhook_url=receiver.url)
    assert len(receiver.requests) == 1, "one delivery per job and URL"


def _drive(settings, queue, *, until: int = 50) -> list[float]:
    """Run every job the recording queue got, in order; return the delays they were scheduled with."""
    delays: list[float] = []
    seen = 0
    while seen < len(queue.enqueued) and seen < until:
        job_id, delay = queue.enqueued[seen]
        seen += 1
        with session_scope(settings) as s:
            if s.get(Job, job_id).kind != "webhook":
                continue
            s.get(Job, job_id).heartbeat_at = None
        delays.append(delay)
        with session_scope(settings) as s:  # pretend the delay passed
            for d in s.scalars(select(WebhookDelivery)):
                d.next_attempt_at = None
        run_job(job_id, settings=settings)
    return delays


def test_failures_follow_the_retry_schedule_then_give_up(
    court_settings, simulator, receiver, recording_queue
):
    court_settings = court_settings.with_overrides()
    receiver.answer(*[(500, "quebrado " * 300, {})] * 10)
    job = lookup(court_settings, NUMERO, webhook_url=receiver.url).job
    run_job(job.id, settings=court_settings)  # the download
    delays = _drive(court_settings, recording_queue)
    assert delays == [0, *webhooks.DEFAULT_SCHEDULE]
    assert len(webhooks.DEFAULT_SCHEDULE) + 1 >= 5
    with session_scope(court_settings) as s:
        delivery = s.scalar(select(WebhookDelivery))
        assert delivery.status == "failed" and delivery.attempts == len(webhooks.DEFAULT_SCHEDULE) + 1
        log = delivery.attempt_log
        assert [a.status_code for a in log] == [500] * len(log)
        assert all(len(a.response_excerpt) == webhooks.EXCERPT_CHARS and a.duration_ms >= 0 for a in log)
    ids = {r.headers["webhook-id"] for r in receiver.requests}
    assert len(ids) == 1 and len(receiver.requests) == len(webhooks.DEFAULT_SCHEDULE) + 1


def test_a_410_stops_retries_and_redelivery_sends_the_same_message(
    court_settings, simulator, receiver, recording_queue
):
    receiver.answer(500, (410, "gone", {}))
    job = lookup(court_settings, NUMERO, webhook_url=receiver.url).job
    run_job(job.id, settings=court_settings)
    assert _drive(court_settings, recording_queue) == [0, webhooks.DEFAULT_SCHEDULE[0]]
    with session_scope(court_settings) as s:
        delivery = s.scalar(select(WebhookDelivery))
        assert delivery.status == "stopped" and "410" in delivery.last_error
        delivery_id = delivery.id
    before = len(recording_queue.enqueued)
    with session_scope(court_settings) as s:
        _, redo = webhooks.redeliver(s, actor=SYSTEM, delivery_id=delivery_id)
    assert len(recording_queue.enqueued) == before + 1
    run_job(redo.id, settings=court_settings)
    with session_scope(court_settings) as s:
        delivery = s.get(WebhookDelivery, delivery_id)
        assert delivery.status == "succeeded"
        assert [a.trigger for a in delivery.attempt_log] == ["auto", "auto", "manual"]
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == 1 and len(receiver.requests) == 3


def test_redirects_are_not_followed(court_settings, receiver):
    receiver.answer((302, "", {"Location": "http://127.0.0.1:1/elsewhere"}))
    result = webhooks.send_test(
        lambda: session_scope(court_settings), actor=SYSTEM, url=receiver.url, settings=court_settings
    )
    assert result["status"] == "failed" and result["attempt_log"][0]["status_code"] == 302
    assert len(receiver.requests) == 1


def test_test_event_and_endpoint_with_its_own_secret(court_settings, receiver):
    with session_scope(court_settings) as s:
        endpoint, secret = webhooks.create_endpoint(s, actor=SYSTEM, url=receiver.url, description="ERP")
        summary = webhooks.endpoint_summary(endpoint)
    assert secret.startswith("whsec_") and secret not in str(summary)
    result = webhooks.send_test(
        lambda: session_scope(court_settings), actor=SYSTEM, url=receiver.url, settings=court_settings
    )
    assert result["status"] == "succeeded" and result["endpoint_id"] == summary["id"]
    got = receiver.requests[0]
    assert Verifier(secret).verify(got.headers, got.body)
    assert not Verifier(court_settings.webhook_secret).verify(got.headers, got.body)
    assert got.json()["type"] == "webhook.teste"


def test_delayed_retries_are_not_rushed_by_the_sweep(court_settings, receiver, recording_queue):
    from datetime import timedelta

    from engine.jobs import sweep_stale_jobs
    from engine.models import utcnow

    receiver.answer(500)
    with session_scope(court_settings) as s:
        delivery = webhooks._new_delivery(
            s,
            actor=SYSTEM,
            url=receiver.url,
            event_type="webhook.teste",
            payload={},
            status="pending",
            job_id=None,
            processo_id=None,
            schedule=[600],
        )
        first = webhooks._schedule_attempt(s, delivery, delay=0, trigger="auto")
    run_job(first.id, settings=court_settings)
    retry_id, delay = recording_queue.enqueued[-1]
    assert delay == 600
    recording_queue.enqueued.clear()
    sweep_stale_jobs(settings=court_settings, now=utcnow() + timedelta(seconds=120))
    assert recording_queue.enqueued == []
    run_job(retry_id, settings=court_settings)  # delivered early anyway: it re-schedules itself
    assert len(receiver.requests) == 1
    assert recording_queue.enqueued and recording_queue.enqueued[-1][1] > 590


def test_a_retry_whose_job_was_lost_is_scheduled_again(court_settings, recording_queue):
    from datetime import timedelta

    from engine.models import utcnow

    with session_scope(court_settings) as s:
        delivery = webhooks._new_delivery(
            s,
            actor=SYSTEM,
            url="http://127.0.0.1:9/x",
            event_type="webhook.teste",
            payload={},
            status="retrying",
            job_id=None,
            processo_id=None,
            schedule=[5],
        )
        delivery.next_attempt_at = utcnow() - timedelta(minutes=10)
        lost = delivery.id
        kept = webhooks._new_delivery(
            s,
            actor=SYSTEM,
            url="http://127.0.0.1:9/y",
            event_type="webhook.teste",
            payload={},
            status="retrying",
            job_id=None,
            processo_id=None,
            schedule=[5],
        )
        webhooks._schedule_attempt(s, kept, delay=0, trigger="auto")
        kept.next_attempt_at = utcnow() - timedelta(minutes=10)
    assert webhooks.sweep_due_deliveries(settings=court_settings) == [lost]
    assert webhooks.sweep_due_deliveries(settings=court_settings) == []
