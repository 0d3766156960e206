"""The import itself on SQLite and PostgreSQL: modes, deduplication, the rejected-rows report, refusals,
and that a failed or cancelled import leaves the target exactly as it was."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from engine.db import session_scope
from engine.imports import ImportRefused, loader, service
from engine.jobs import JobCancelled
from engine.models import AuditEvent, Cliente
from engine.models.imports import Sensor
from engine.settings import Settings
from engine.storage import get_storage
from tests.imports.conftest import Importer, clientes_rows, leituras_rows, write

HEADER = "Sensor;Data/Hora;Valor;Unidade\n"


def _ts(day: int, hour: int) -> datetime:
    return datetime(2024, 3, day, hour + 3, tzinfo=UTC)


def test_insert_counts_duplicates_and_keeps_the_last_occurrence(
    settings: Settings, do_import: Importer, tmp_path: Path
) -> None:
    body = (
        "A;01/03/2024 10:00;1;m\n"
        "B;01/03/2024 10:00;2;m\n"
        "A;01/03/2024 10:00;3;m\n"  # same key as line 2: wins over it
        "A;02/03/2024 10:00;4;m\n"
        "A;01/03/2024 10:00;5;m\n"
    )  # and this one wins over both
    summary = do_import(write(tmp_path, "d.csv", HEADER + body))
    assert (summary["rows_read"], summary["rows_valid"], summary["duplicates"], summary["rows_merged"]) == (
        5,
        5,
        2,
        3,
    )
    assert summary["sensors_created"] == 2
    assert leituras_rows(settings) == [
        ("A", _ts(1, 10), 5.0, "m"),
        ("A", _ts(2, 10), 4.0, "m"),
        ("B", _ts(1, 10), 2.0, "m"),
    ]


def test_modes_insert_upsert_replace(settings: Settings, do_import: Importer, tmp_path: Path) -> None:
    do_import(write(tmp_path, "1.csv", HEADER + "A;01/03/2024 10:00;1;m\nA;02/03/2024 10:00;2;m\n"))
    second = write(
        tmp_path, "2.csv", "Sensor;Data/Hora;Valor\nA;01/03/2024 10:00;10\nA;03/03/2024 10:00;30\n"
    )

    summary = do_import(second, mode="insert")  # existing key untouched, new key added
    assert (summary["rows_inserted"], summary["rows_updated"], summary["rows_skipped"]) == (1, 0, 1)
    assert leituras_rows(settings) == [
        ("A", _ts(1, 10), 1.0, "m"),
        ("A", _ts(2, 10), 2.0, "m"),
        ("A", _ts(3, 10), 30.0, ""),
    ]

    summary = do_import(second, mode="upsert")  # value updated, unmapped unit kept, identical row skipped
    assert (summary["rows_inserted"], summary["rows_updated"], summary["rows_skipped"]) == (0, 1, 1)
    assert leituras_rows(settings)[0] == ("A", _ts(1, 10), 10.0, "m")

    summary = do_import(second, mode="replace")  # whole row replaced: the unmapped unit is reset
    assert (summary["rows_inserted"], summary["rows_updated"]) == (0, 1)
    assert leituras_rows(settings) == [
        ("A", _ts(1, 10), 10.0, ""),
        ("A", _ts(2, 10), 2.0, "m"),
        ("A", _ts(3, 10), 30.0, ""),
    ]

    summary = do_import(second, mode="upsert")  # nothing changed: nothing written
    assert (summary["rows_inserted"], summary["rows_updated"], summary["rows_skipped"]) == (0, 0, 2)


CLIENTES = (
    "CNPJ;Razão Social;Nome Fantasia;E-mail;Telefone;Cidade\n"
    "11.222.333/0001-81;Oficina Ltda;Oficina;CONTATO@OFICINA.COM.BR;(11) 4000-0000;São Paulo\n"
    '11.444.777/0001-61;"Café\nExpresso S.A.";;;;Campinas\n'
)


def test_clientes_by_cnpj_with_modes(settings: Settings, do_import: Importer, tmp_path: Path) -> None:
    summary = do_import(write(tmp_path, "c.csv", CLIENTES, "cp1252"), kind="clientes")
    assert summary["rows_merged"] == 2 and summary["format"]["encoding"] == "cp1252"
    rows = clientes_rows(settings)
    assert [r["cnpj"] for r in rows] == ["11222333000181", "11444777000161"]
    assert rows[0]["email"] == "contato@oficina.com.br" and rows[1]["razao_social"] == "Café\nExpresso S.A."
    first_id = rows[0]["id"]

    update = write(tmp_path, "u.csv", "cnpj;razao social\n11222333000181;Oficina Nova Ltda\n")
    summary = do_import(update, kind="clientes", mode="upsert")
    assert summary["rows_updated"] == 1
    row = clientes_rows(settings)[0]
    assert (row["id"], row["razao_social"], row["nome_fantasia"]) == (
        first_id,
        "Oficina Nova Ltda",
        "Oficina",
    )

    summary = do_import(update, kind="clientes", mode="replace")
    row = clientes_rows(settings)[0]
    assert (row["id"], row["nome_fantasia"], row["email"]) == (first_id, "", "")  # unmapped fields reset
    with session_scope(settings) as s:
        assert s.scalar(select(Cliente.endereco).where(Cliente.id == first_id)) == {}


def test_rejected_rows_report_lines_columns_reasons_and_neutralised_cells(
    settings: Settings, do_import: Importer, tmp_path: Path
) -> None:
    body = (
        "A;01/03/2024 10:00;1;m\n"
        '=HYPERLINK("http://x");01/03/2024 10:00;2;m\n'  # fine as a code, but the report must be safe
        "B;31/02/2024 10:00;1.2.3;m\n"  # two bad cells
        "C;01/03/2024 10:00;-5;@unidade-longa-demais\n"  # unit too long; raw value starts with @
        "D;01/03/2024 10:00\n"  # ragged
        "E;02/03/2024 10:00;+7;m\n"
        "F;01/03/2024 10:00;3;m;a mais;a mais\n"  # more fields than the header: its row, not the file (was refused)
    )
    summary = do_import(write(tmp_path, "r.csv", HEADER + body))
    assert (summary["rows_read"], summary["rows_rejected"], summary["rows_merged"]) == (7, 4, 3)
    report = summary["report"]
    assert report["entries"] == 5 and report["key"].endswith(".csv")
    raw = get_storage(settings).get_bytes(report["key"])
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig")), delimiter=";"))
    assert rows[0] == ["linha", "coluna", "motivo", "valor"]
    assert rows[1] == ["4", "Data/Hora", "Data/hora inexistente: '31/02/2024 10:00'.", "31/02/2024 10:00"]
    assert rows[2] == ["4", "Valor", "Número inválido: '1.2.3' (use 1.234,56).", "1.2.3"]
    assert rows[3] == ["5", "Unidade", "texto com 21 caracteres; o máximo é 16", "'@unidade-longa-demais"]
    assert rows[4][:3] == ["6", "", "a linha tem 2 campos; o cabeçalho tem 4"]
    assert rows[5][:3] == ["8", "", "a linha tem 6 campos; o cabeçalho tem 4"]
    assert all(not cell.startswith(("=", "+", "-", "@")) for row in rows for cell in row)
    codes = {r[0] for r in leituras_rows(settings)}
    assert codes == {"A", '=HYPERLINK("http://x")', "E"}


def test_too_many_invalid_rows_refuses_the_file_and_changes_nothing(
    settings: Settings, do_import: Importer, tmp_path: Path
) -> None:
    do_import(write(tmp_path, "ok.csv", HEADER + "A;01/03/2024 10:00;1;m\n"))
    before = leituras_rows(settings)
    bad = write(
        tmp_path, "bad.csv", HEADER + "A;01/03/2024 10:00;99;m\nX;ontem;1;m\nY;hoje;2;m\nZ;01/03/2024;3;m\n"
    )
    with pytest.raises(ImportRefused) as caught:
        do_import(bad, mode="upsert", max_invalid_share=0.25)
    assert "2 de 4 linhas (50,0%) são inválidas, acima do limite de 25,0%" in caught.value.message
    summary = caught.value.data["summary"]
    assert (
        summary["status"] == "refused" and summary["rows_rejected"] == 2 and summary["report"]["entries"] == 2
    )
    assert summary["rows_merged"] == 0
    assert leituras_rows(settings) == before
    with session_scope(settings) as s:  # the sensors of the refused file were not created either
        assert s.scalar(select(func.count(Sensor.id))) == 1


@pytest.mark.parametrize(
    "content,message",
    [
        (b"", "O arquivo está vazio."),
        (HEADER.encode(), "O arquivo só tem o cabeçalho; nenhuma linha de dados."),
        (
            b"\x00\x01\x02binary\x00" * 50,
            "O arquivo não é texto (apesar do nome .csv): o conteúdo é binário.",
        ),
    ],
)
def test_files_without_rows_are_refused(
    content: bytes, message: str, settings: Settings, do_import: Importer, tmp_path: Path
) -> None:
    with pytest.raises(ImportRefused) as caught:
        do_import(write(tmp_path, "x.csv", content))
    assert caught.value.message.startswith(message.split(" (")[0]) or caught.value.message == message


def test_a_failure_in_the_merge_rolls_everything_back(
    settings: Settings, do_import: Importer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    do_import(write(tmp_path, "ok.csv", HEADER + "A;01/03/2024 10:00;1;m\n"))
    before = leituras_rows(settings)
    original = loader.Loader.merge
    seen_inside: list[int] = []

    def merge_then_fail(self: loader.Loader, **kwargs: object) -> loader.MergeCounts:
        original(self, **kwargs)  # the rows are in the target table, inside the transaction...
        seen_inside.append(self.conn.execute(text("SELECT count(*) FROM leituras")).scalar_one())
        raise RuntimeError("disco cheio")  # ...when something fails before the commit

    monkeypatch.setattr(loader.Loader, "merge", merge_then_fail)
    new = write(tmp_path, "new.csv", HEADER + "A;01/03/2024 10:00;50;m\nN;01/03/2024 10:00;2;m\n")
    with pytest.raises(RuntimeError, match="disco cheio"):
        do_import(new, mode="upsert")
    assert seen_inside == [2]
    assert leituras_rows(settings) == before
    with session_scope(settings) as s:
        assert s.scalar(select(func.count(Sensor.id))) == 1
        assert s.scalar(select(func.count(AuditEvent.id)).where(AuditEvent.action == "import.run")) == 1


def test_a_cancelled_import_leaves_the_target_untouched(
    settings: Settings, do_import: Importer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from engine.imports import reader

    do_import(write(tmp_path, "ok.csv", HEADER + "A;01/03/2024 10:00;1;m\n"))
    before = leituras_rows(settings)
    monkeypatch.setattr(reader, "CHUNK_BYTES", 64)
    monkeypatch.setattr(service, "CANCEL_POLL_SECONDS", 0)
    monkeypatch.setattr(service, "RUN_BUDGET_BYTES", 1)  # rows reach the staging table before the cancel
    monkeypatch.setattr(service, "SPILL_RUN_BYTES", 1)
    polls = []

    def cancel_on_third_poll() -> bool:
        polls.append(1)
        return len(polls) >= 3

    rows = "".join(f"S{i};01/03/2024 10:00;{i};m\n" for i in range(40))
    path = write(tmp_path, "big.csv", HEADER + "A;01/03/2024 10:00;99;m\n" + rows)
    with pytest.raises(JobCancelled):
        service.run_import(
            settings,
            path=str(path),
            file_type="csv",
            filename="big.csv",
            options=service.ImportOptions(kind="leituras", mode="upsert"),
            owner=None,
            should_cancel=cancel_on_third_poll,
        )
    assert len(polls) == 3
    assert leituras_rows(settings) == before
