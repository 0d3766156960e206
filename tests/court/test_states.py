"""Documento life cycle, names and the verifying reader; lookup validation."""

from __future__ import annotations

import hashlib
import io

import pytest
from sqlalchemy import select

from engine.brazil import make_cnj
from engine.court import CourtTransferError
from engine.db import session_scope
from engine.documents import InvalidTransition, VerifyingReader, sanitize_filename, storage_key, transition
from engine.errors import NotFound, PermissionDenied, ValidationFailed
from engine.models import AuditEvent, Processo
from engine.models.court import DOCUMENT_STATUSES, DOCUMENT_TRANSITIONS, Documento
from tests.court.conftest import lookup

ALLOWED = {
    ("pending", "processing"),
    ("processing", "available"),
    ("processing", "failed"),
    ("failed", "pending"),
}


def test_the_allowed_transitions_are_exactly_the_life_cycle():
    declared = {(a, b) for a, targets in DOCUMENT_TRANSITIONS.items() for b in targets}
    assert declared == ALLOWED


@pytest.mark.parametrize(
    "start,to", [(a, b) for a in DOCUMENT_STATUSES for b in [*DOCUMENT_STATUSES, "bogus"]]
)
def test_transitions_are_checked_and_refusals_logged(sqlite_settings, start, to, caplog):
    """The rule is the same on every database (the compare-and-swap below runs on both)."""
    with session_scope(sqlite_settings) as s:
        processo = Processo(numero=make_cnj(1, 2020, 8, 26, 1))
        s.add(processo)
        s.flush()
        doc = Documento(processo_id=processo.id, external_id="1", status=start)
        s.add(doc)
        s.flush()
        if (start, to) in ALLOWED:
            assert transition(s, doc, to).status == to
            return
        with pytest.raises(InvalidTransition) as info:
            transition(s, doc, to)
        assert info.value.status == 409 and info.value.current == start and info.value.attempted == to
        assert s.get(Documento, doc.id).status == start
        refused = s.scalar(select(AuditEvent).where(AuditEvent.action == "documento.transition_refused"))
        assert refused is not None and refused.after["status"] == to
    assert any("refused transition" in r.getMessage() for r in caplog.records)


def test_a_stale_transition_loses_the_compare_and_swap(settings):
    with session_scope(settings) as s:
        processo = Processo(numero=make_cnj(2, 2020, 8, 26, 1))
        s.add(processo)
        s.flush()
        doc = Documento(processo_id=processo.id, external_id="1", status="pending")
        s.add(doc)
        s.flush()
        doc_id = doc.id
    with session_scope(settings) as a, session_scope(settings) as b:
        mine, theirs = a.get(Documento, doc_id), b.get(Documento, doc_id)
        assert mine.status == theirs.status == "pending"
        transition(a, mine, "processing")
        a.commit()
        with pytest.raises(InvalidTransition):
            transition(b, theirs, "processing")


@pytest.mark.parametrize(
    "name,expected",
    [
        ("Petição Inicial.pdf", "Peticao-Inicial.pdf"),
        ("../../etc/passwd", "etc-passwd"),
        ("Decisão 2/3.pdf", "Decisao-2-3.pdf"),
        ("..", "documento"),
        ("", "documento"),
        (".bashrc", "bashrc"),
        ("a" * 300 + ".pdf", "a" * 116 + ".pdf"),
        ("nome\x00com\ncontrole.pdf", "nome-com-controle.pdf"),
    ],
)
def test_file_names_are_sanitised(name, expected):
    assert sanitize_filename(name) == expected


def test_storage_keys_have_no_path_tricks():
    key = storage_key("00000012020826000100", "../7", "../../x.pdf")
    assert key == "processos/00000012020826000100/documentos/7/x.pdf"


def _reader(data: bytes, **kwargs) -> VerifyingReader:
    chunks = [data[i : i + 7] for i in range(0, len(data), 7)]
    kwargs.setdefault("max_size", 10_000)
    return VerifyingReader(iter(chunks), **kwargs)


def test_verifying_reader_passes_good_content_in_pieces():
    data = b"conteudo do documento" * 10
    reader = io.BufferedReader(
        _reader(data, expected_size=len(data), expected_sha256=hashlib.sha256(data).hexdigest()),
        buffer_size=16,
    )
    out = b"".join(iter(lambda: reader.read(5), b""))
    assert out == data


@pytest.mark.parametrize(
    "kwargs,reason",
    [
        ({"expected_size": 500}, "truncated"),
        ({"expected_size": 100}, "too_long"),
        ({"expected_size": None, "max_size": 50}, "too_long"),
        ({"expected_size": 210, "expected_sha256": "0" * 64}, "checksum"),
    ],
)
def test_verifying_reader_refuses_wrong_content(kwargs, reason):
    reader = _reader(b"conteudo do documento" * 10, **kwargs)
    with pytest.raises(CourtTransferError) as info:
        while reader.read(64):
            pass
    assert info.value.reason == reason


def test_bad_numbers_are_refused_before_calling_the_court(court_settings, simulator, run_inline):
    for bad in ["123", "0001234-00.2021.8.26.0100", "abc", "0001234-76.2021.0.26.0100"]:
        with pytest.raises(ValidationFailed) as info:
            lookup(court_settings, bad)
        assert info.value.errors[0]["field"] == "numero"
    assert simulator.requests == []


def test_an_unknown_process_stores_nothing(court_settings, simulator, run_inline):
    with pytest.raises(NotFound):
        lookup(court_settings, make_cnj(1404, 2021, 8, 26, 100))
    with session_scope(court_settings) as s:
        assert s.scalar(select(Processo)) is None


def test_viewers_may_not_start_downloads(court_settings, simulator, run_inline):
    from engine import accounts
    from engine.security import SYSTEM

    with session_scope(court_settings) as s:
        viewer, _ = accounts.create_user(
            s, actor=SYSTEM, email="v@example.com", role="viewer", password="senha-longa-123"
        )
    with pytest.raises(PermissionDenied):
        lookup(court_settings, make_cnj(5, 2021, 8, 26, 100), actor=viewer)
    assert simulator.requests == []
