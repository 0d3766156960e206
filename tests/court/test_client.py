"""CourtClient against the simulator over real HTTP: auth, 404, retries with backoff and Retry-After."""

from __future__ import annotations

import hashlib
import random
import socket
import time
from email.utils import formatdate

import pytest

from engine.brazil import make_cnj
from engine.court import (
    CourtAuthError,
    CourtClient,
    CourtNotFound,
    CourtTransferError,
    CourtUnavailable,
    RetryPolicy,
    parse_retry_after,
)
from engine.court.simulator import DEMO_JWT_SECRET, CourtSimulator, Fault, demo_token, document_sha256

NUMERO = make_cnj(1234, 2021, 8, 26, 100)


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def client(sim: CourtSimulator, token: str | None = None, **kwargs) -> CourtClient:
    kwargs.setdefault("retry", RetryPolicy(retries=4, base=0.5, cap=30))
    return CourtClient(sim.url, demo_token() if token is None else token, **kwargs)


def test_metadata_and_bytes_are_deterministic_per_number(simulator):
    with client(simulator) as c:
        first, second = c.get_processo(NUMERO), c.get_processo(NUMERO)
        other = c.get_processo(make_cnj(1235, 2021, 8, 26, 100))
        assert first == second
        assert first["tribunal"] == "TJSP" and first["numeroProcesso"] == NUMERO
        assert [d["id"] for d in first["documentos"]] != [d["id"] for d in other["documentos"]]
        doc = first["documentos"][0]
        digest = hashlib.sha256()
        with c.open_document(NUMERO, doc["id"]) as stream:
            chunks = list(stream.iter_bytes())
        for chunk in chunks:
            digest.update(chunk)
        assert max(len(ch) for ch in chunks) <= c.chunk_size
        assert sum(map(len, chunks)) == doc["tamanho"]
        assert "sha256:" + digest.hexdigest() == doc["hash"]
        assert chunks[0].startswith(b"%PDF-1.4")


@pytest.mark.parametrize(
    "token,status",
    [
        ("", 401),
        ("not-a-jwt", 401),
        (demo_token(secret="another-secret-of-enough-length-0123456789"), 401),
        (demo_token(ttl_seconds=-10), 401),
        (demo_token(scope="outra:coisa"), 403),
    ],
)
def test_bad_tokens_give_an_auth_error_without_retrying(simulator, token, status):
    sleeps = Sleeps()
    with client(simulator, token=token, sleep=sleeps) as c, pytest.raises(CourtAuthError) as info:
        c.get_processo(NUMERO)
    assert info.value.status_code == status and "COURT_API_TOKEN" in info.value.message
    assert sleeps == [] and len(simulator.requests) == 1
    assert DEMO_JWT_SECRET not in info.value.message


def test_unknown_process_or_document_is_not_found(simulator):
    with client(simulator) as c:
        with pytest.raises(CourtNotFound):
            c.get_processo(make_cnj(404, 2021, 8, 26, 100))
        with pytest.raises(CourtNotFound), c.open_document(NUMERO, "999999"):
            pass
    assert len(simulator.requests) == 2


def test_5xx_is_retried_with_exponential_backoff_and_jitter(simulator):
    simulator.script(r"/processos/\d+$", Fault("status", 503), Fault("status", 500), Fault("status", 502))
    sleeps = Sleeps()
    with client(simulator, sleep=sleeps, rng=random.Random(7)) as c:
        assert c.get_processo(NUMERO)["numeroProcesso"] == NUMERO
    assert len(sleeps) == 3
    for attempt, slept in enumerate(sleeps):
        ceiling = 0.5 * 2**attempt
        assert ceiling / 2 <= slept <= ceiling
    assert sleeps[0] < sleeps[2]


def test_retry_after_is_honoured_in_seconds_and_as_a_date(simulator):
    simulator.script(
        r"/processos/\d+$",
        Fault("status", 429, {"Retry-After": "3"}),
        Fault("status", 503, {"Retry-After": formatdate(time.time() + 5, usegmt=True)}),
    )
    sleeps = Sleeps()
    with client(simulator, sleep=sleeps) as c:
        c.get_processo(NUMERO)
    assert sleeps[0] == 3.0
    assert 3.5 <= sleeps[1] <= 5.0


def test_retry_after_really_waits(simulator):
    simulator.script("/binario", Fault("status", 429, {"Retry-After": "1"}))
    doc = simulator.documents(NUMERO)[0]
    started = time.monotonic()
    with client(simulator) as c, c.open_document(NUMERO, doc.id) as stream:
        size = sum(len(ch) for ch in stream.iter_bytes())
    assert size == doc.tamanho
    assert time.monotonic() - started >= 1.0
    gap = simulator.requests[1]["at"] - simulator.requests[0]["at"]
    assert gap >= 0.99


def test_retries_run_out_with_a_clear_error(simulator):
    simulator.script(r"/processos/\d+$", *[Fault("status", 503)] * 10)
    sleeps = Sleeps()
    with (
        client(simulator, sleep=sleeps, retry=RetryPolicy(retries=2, base=0.1)) as c,
        pytest.raises(CourtUnavailable) as info,
    ):
        c.get_processo(NUMERO)
    assert "3 tentativas" in info.value.message and len(simulator.requests) == 3 and len(sleeps) == 2


def test_a_retry_after_too_long_is_not_waited_for(simulator):
    simulator.script(r"/processos/\d+$", Fault("status", 503, {"Retry-After": "3600"}))
    sleeps = Sleeps()
    with client(simulator, sleep=sleeps) as c, pytest.raises(CourtUnavailable) as info:
        c.get_processo(NUMERO)
    assert sleeps == [] and info.value.retry_after == 3600


def test_connection_errors_are_retried():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sleeps = Sleeps()
    with (
        CourtClient(
            f"http://127.0.0.1:{port}", demo_token(), sleep=sleeps, retry=RetryPolicy(retries=2, base=0.01)
        ) as c,
        pytest.raises(CourtUnavailable) as info,
    ):
        c.get_processo(NUMERO)
    assert len(sleeps) == 2 and "ConnectError" in info.value.message


def test_a_body_cut_short_raises_a_transfer_error(simulator):
    doc = simulator.documents(NUMERO)[0]
    simulator.script("/binario", Fault("truncate"))
    with client(simulator) as c, pytest.raises(CourtTransferError), c.open_document(NUMERO, doc.id) as stream:
        for _ in stream.iter_bytes():
            pass
    assert document_sha256(NUMERO, doc)


def test_parse_retry_after():
    assert parse_retry_after("12") == 12.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after(formatdate(1000, usegmt=True), now=990) == pytest.approx(10, abs=1)
    assert parse_retry_after(formatdate(1000, usegmt=True), now=2000) == 0
