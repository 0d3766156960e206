"""The import page's view-model without a server: upload message -> preview -> mapping -> job -> summary."""

from __future__ import annotations

import pytest

from dashboard.pages.imports import ImportsPage, ImportsViewModel
from engine import accounts
from engine.db import session_scope
from engine.imports import UploadWriter, upload_info
from engine.queue import InlineQueue, RecordingQueue
from engine.security import SYSTEM
from engine.settings import Settings
from tests.imports.conftest import leituras_rows

CONTENT = (
    "Código;Quando;Medida;Unidade;Extra\n"
    "S1;01/03/2024 10:00;1.234,5;°C;x\n"
    "S2;31/02/2024 10:00;2;°C;y\n"
    "S3;02/03/2024 10:00;=1+1;°C;z\n"
).encode("latin-1")


def _vm(settings: Settings) -> ImportsViewModel:
    with session_scope(settings) as s:
        user, _ = accounts.create_user(
            s, actor=SYSTEM, email="ana@example.com", role="analyst", password="senha-segura-1"
        )
    writer = UploadWriter(settings, filename="leituras.csv")
    writer.write(CONTENT)
    with session_scope(settings) as s:
        info = upload_info(writer.finish(s, actor=user))
    vm = ImportsViewModel(settings=settings, user=user)
    vm.on_upload_message({"type": "uploaded", "upload": info})
    return vm


def test_upload_preview_mapping_and_run(sqlite_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine import queue

    inline = InlineQueue(sqlite_settings)
    queue.install(inline)
    try:
        vm = _vm(sqlite_settings)
        assert vm.error == ""
        assert vm.preview["format"]["encoding"] == "cp1252"
        assert vm.preview["mapping_problems"]  # "Código" matches sensor, but no column for ts/valor
        assert not vm.can_start
        vm.set_mapping("ts", "Quando")
        vm.set_mapping("valor", "Medida")
        assert vm.mapping == {"sensor": "Código", "ts": "Quando", "valor": "Medida", "unidade": "Unidade"}
        assert vm.preview["mapping_problems"] == [] and vm.can_start
        checked = vm.preview["checked"]
        assert checked[0]["values"]["valor"] == 1234.5
        assert checked[1]["errors"] == {"Quando": "Data/hora inexistente: '31/02/2024 10:00'."}
        vm.mode = "upsert"
        vm.act(vm.start)
        assert vm.error == "", vm.error
        assert vm.status["status"] == "succeeded"
        summary = vm.status["summary"]
        assert (summary["rows_read"], summary["rows_rejected"], summary["rows_merged"]) == (3, 2, 1)
        assert summary["report"]["url"]
        assert "Baixar relatório de linhas rejeitadas (2 ocorrências)" in ImportsPage(vm)._summary_html(
            vm.status
        )
        assert [r[0] for r in leituras_rows(sqlite_settings)] == ["S1"]
        vm.act(vm.cancel)  # the job already ended: a clear message, nothing else
        assert "já terminou" in vm.error
    finally:
        queue.install(None)


def test_refusal_and_cancel_messages(sqlite_settings: Settings, recording_queue: RecordingQueue) -> None:
    vm = _vm(sqlite_settings)
    vm.on_upload_message({"type": "error", "detail": "O arquivo passa do limite de 1 MB."})
    assert vm.error == "O arquivo passa do limite de 1 MB."
    vm.set_mapping("ts", "Quando")
    vm.set_mapping("valor", "Medida")
    vm.act(vm.start)
    assert vm.status["status"] == "queued" and vm.running
    vm.act(vm.cancel)
    assert vm.status["status"] == "cancelled" and "Cancelamento pedido" in vm.notice
    vm.set_kind("clientes")
    assert vm.preview["kind"]["name"] == "clientes"
    assert {p["field"] for p in vm.preview["mapping_problems"]} == {"cnpj", "razao_social"}
