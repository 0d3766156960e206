"""Uploads, the ``import`` job, and the ``oficina import`` command."""

from __future__ import annotations

import json
import os
import tracemalloc
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from engine import accounts
from engine.cli import main
from engine.db import session_scope
from engine.errors import NotFound, PayloadTooLarge, PermissionDenied
from engine.imports import ImportOptions, UploadWriter, import_status, preview, start_import, sweep_uploads
from engine.imports.reader import FileRefused
from engine.jobs import retry_job
from engine.models import Job, User, utcnow
from engine.models.imports import ImportMapping, Upload
from engine.queue import InlineQueue, RecordingQueue
from engine.security import SYSTEM
from engine.settings import Settings
from engine.storage import get_storage
from tests.imports.conftest import leituras_rows, write

HEADER = "Sensor;Data/Hora;Valor;Unidade\n"


def make_user(settings: Settings, role: str = "analyst", email: str = "ana@example.com") -> User:
    with session_scope(settings) as s:
        user, _ = accounts.create_user(s, actor=SYSTEM, email=email, role=role, password="senha-segura-1")
        return user


def upload_bytes(settings: Settings, actor: object, name: str, chunks: list[bytes]) -> int:
    writer = UploadWriter(settings, filename=name)
    for chunk in chunks:
        writer.write(chunk)
    with session_scope(settings) as s:
        return writer.finish(s, actor=actor).id


def test_upload_streams_to_disk_in_bounded_memory(sqlite_settings: Settings) -> None:
    user = make_user(sqlite_settings)
    line = b"S-0001;01/03/2024 10:00;1234,56;kPa\n"
    chunk = line * (64 * 1024 // len(line))
    writer = UploadWriter(sqlite_settings, filename="grande.csv")
    tracemalloc.start()
    try:
        writer.write(HEADER.encode())
        for _ in range(800):  # ~50 MB through 64 KiB chunks
            writer.write(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    with session_scope(sqlite_settings) as s:
        upload = writer.finish(s, actor=user)
        size, path = upload.size, upload.path
    assert size > 50_000_000 and os.path.getsize(path) == size
    assert peak < 2 * 1024 * 1024, f"peak {peak} bytes while receiving {size} bytes"


def test_upload_size_limit_and_type_checks(sqlite_settings: Settings) -> None:
    settings = sqlite_settings.with_overrides(upload_max_mb=1)
    user = make_user(settings)
    writer = UploadWriter(settings, filename="x.csv")
    with pytest.raises(PayloadTooLarge, match="limite de 1 MB"):
        for _ in range(20):
            writer.write(b"a;b\n" * 20_000)
    assert not writer.path.exists()
    with pytest.raises(PayloadTooLarge):
        UploadWriter(settings, filename="x.csv", expected_size=5 * 2**20)
    with pytest.raises(FileRefused, match="extensão .xlsx, mas o conteúdo é texto"):
        upload_bytes(settings, user, "planilha.xlsx", [b"a;b\n1;2\n"])
    with pytest.raises(FileRefused, match="Tipo de arquivo não aceito"):
        upload_bytes(settings, user, "virus.exe", [b"a;b\n1;2\n"])
    assert list((settings.data_dir / "uploads").iterdir()) == []
    viewer = make_user(settings, "viewer", "vi@example.com")
    with pytest.raises(PermissionDenied):
        upload_bytes(settings, viewer, "x.csv", [b"a;b\n1;2\n"])


def test_preview_suggests_mapping_and_checks_rows(settings: Settings) -> None:
    user = make_user(settings)
    content = (
        "Código do Sensor;Data da Leitura;Valor;Unidade;Obs\n"
        "S1;01/03/2024 10:00;1.234,5;m;x\nS2;31/02/2024 10:00;2;m;y\n"
    ).encode("cp1252")
    upload_id = upload_bytes(settings, user, "p.csv", [content])
    with session_scope(settings) as s:
        result = preview(s, actor=user, upload_id=upload_id, options=ImportOptions(kind="leituras"))
    assert result["format"]["encoding"] == "cp1252" and result["format"]["separator"] == ";"
    assert result["format"]["decimal"] == ","
    assert result["headers"] == ["Código do Sensor", "Data da Leitura", "Valor", "Unidade", "Obs"]
    assert result["mapping"] == {
        "sensor": "Código do Sensor",
        "ts": "Data da Leitura",
        "valor": "Valor",
        "unidade": "Unidade",
    }
    assert result["checked"][0]["values"]["valor"] == 1234.5
    assert result["checked"][1]["errors"] == {"Data da Leitura": "Data/hora inexistente: '31/02/2024 10:00'."}


def test_import_job_end_to_end(settings: Settings, inline_queue: InlineQueue) -> None:
    user = make_user(settings)
    upload_id = upload_bytes(
        settings, user, "l.csv", [(HEADER + "A;01/03/2024 10:00;1,5;m\nA;x;2;m\n").encode()]
    )
    with session_scope(settings) as s:
        mapping = {"sensor": "Sensor", "ts": "Data/Hora", "valor": "Valor"}
        job = start_import(
            s, actor=user, upload_id=upload_id, options=ImportOptions(kind="leituras", mapping=mapping)
        )
        job_id = job.id
    with session_scope(settings) as s:
        job = s.get(Job, job_id)
        assert job.status == "succeeded", job.error
        assert job.result["rows_merged"] == 1 and job.result["rows_rejected"] == 1
        assert job.counters["rows_read"] == 2 and job.progress == 100
        upload = s.get(Upload, upload_id)
        assert upload.status == "imported" and upload.summary["rows_merged"] == 1
        assert not Path(upload.path).exists()  # the file is removed when the import ends
        saved = s.scalar(select(ImportMapping).where(ImportMapping.user_id == user.id))
        assert saved.kind == "leituras" and saved.mapping == mapping
        status = import_status(s, actor=user, job_id=job_id, settings=settings)
    assert status["summary"]["report"]["url"].startswith(settings.public_url)
    assert leituras_rows(settings)[0][2] == 1.5
    with session_scope(settings) as s:  # running it again needs the file again
        again = retry_job(s, actor=user, job_id=job_id).id
    with session_scope(settings) as s:
        assert "já foi removido do servidor; envie-o de novo" in s.get(Job, again).error


def test_refused_import_job_keeps_summary_and_report(settings: Settings, inline_queue: InlineQueue) -> None:
    user = make_user(settings)
    upload_id = upload_bytes(settings, user, "bad.csv", [(HEADER + "A;x;1;m\nB;01/03/2024;y;m\n").encode()])
    with session_scope(settings) as s:
        job_id = start_import(
            s, actor=user, upload_id=upload_id, options=ImportOptions(kind="leituras", max_invalid_share=0.1)
        ).id
    with session_scope(settings) as s:
        job = s.get(Job, job_id)
        assert job.status == "failed" and "Nenhuma linha válida" not in job.error
        assert "2 de 2 linhas (100,0%) são inválidas" in job.message
        assert job.counters["rows_rejected"] == 2 and job.counters["report"]["entries"] == 2
        assert s.get(Upload, upload_id).status == "removed"
        key = job.counters["report"]["key"]
    assert get_storage(settings).exists(key)
    assert leituras_rows(settings) == []


def test_sweep_removes_abandoned_uploads(sqlite_settings: Settings) -> None:
    user = make_user(sqlite_settings)
    upload_id = upload_bytes(sqlite_settings, user, "old.csv", [b"a;b\n1;2\n"])
    with session_scope(sqlite_settings) as s:
        upload = s.get(Upload, upload_id)
        path = upload.path
        assert sweep_uploads(s, sqlite_settings)["uploads_removed"] == 0
        result = sweep_uploads(s, sqlite_settings, now=utcnow() + timedelta(days=2))
    assert result["uploads_removed"] == 1 and not Path(path).exists()
    with session_scope(sqlite_settings) as s, pytest.raises(NotFound):
        start_import(s, actor=user, upload_id=upload_id, options=ImportOptions(kind="leituras"))


def test_cli_import_inline_prints_the_summary(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path, "cli.csv", "Codigo;Quando;Medida\nA;01/03/2024 10:00;1,5\nA;01/03/2024 10:00;2,5\n"
    )
    code = main(
        [
            "import",
            str(path),
            "--kind",
            "leituras",
            "--inline",
            "--quiet",
            "--map",
            "Codigo=sensor",
            "--map",
            "Quando=ts",
            "--map",
            "Medida=valor",
        ]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    summary = json.loads(out.out)
    assert {
        k: summary[k] for k in ("rows_read", "rows_valid", "rows_rejected", "duplicates", "rows_merged")
    } == {"rows_read": 2, "rows_valid": 2, "rows_rejected": 0, "duplicates": 1, "rows_merged": 1}
    assert summary["seconds"] > 0
    assert path.exists()  # a file given on the command line is read in place and kept
    assert leituras_rows(settings)[0][2] == 2.5


def test_cli_refused_file_exits_non_zero(
    sqlite_settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "bad.csv", HEADER + "A;ontem;1;m\n")
    code = main(
        ["import", str(path), "--kind", "leituras", "--inline", "--quiet", "--max-invalid-share", "0"]
    )
    out = capsys.readouterr()
    assert code == 1
    assert json.loads(out.out)["rows_rejected"] == 1
    assert "são inválidas" in out.err


def test_cli_without_a_worker_says_so(
    sqlite_settings: Settings,
    recording_queue: RecordingQueue,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = write(tmp_path, "w.csv", HEADER + "A;01/03/2024 10:00;1;m\n")
    code = main(["import", str(path), "--kind", "leituras", "--wait-start", "0.5", "--quiet"])
    out = capsys.readouterr()
    assert code == 2
    assert "nenhum worker pegou o job" in out.err and "oficina worker" in out.err
    assert len(recording_queue.enqueued) == 1
    with session_scope(sqlite_settings) as s:
        assert s.get(Job, recording_queue.enqueued[0][0]).status == "cancelled"
