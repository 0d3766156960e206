"""Every file format the issue lists parses to the same rows in the target, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import openpyxl
import pytest

from engine.imports import reader
from engine.settings import Settings
from tests.imports.conftest import READINGS, Importer, leituras_rows, write

BR = (
    "Sensor;Data/Hora;Valor;Unidade\r\n"
    "S-01;31/01/2024 10:00;1.234,5;°C\r\n"
    "S-02;31/01/2024 10:00;-0,25;kPa\r\n"
    "S-01;01/02/2024 00:00:30;7;°C\r\n"
)
ISO = (
    "sensor,timestamp,value,unit\n"
    'S-01,2024-01-31T10:00:00-03:00,"1,234.5",°C\n'
    "S-02,2024-01-31 13:00:00Z,-0.25,kPa\n"
    "S-01,2024-02-01 00:00:30,7.0,°C\n"
)

VARIANTS = {
    "utf8-semicolon-decimal-comma": ("a.csv", BR.encode("utf-8")),
    "utf8-bom-comma-iso": ("b.csv", b"\xef\xbb\xbf" + ISO.encode("utf-8")),
    "latin1-semicolon": ("c.csv", BR.encode("latin-1")),
    "cp1252-semicolon": ("d.csv", BR.encode("cp1252")),
    "utf16-tab": ("e.txt", BR.replace(";", "\t").encode("utf-16")),
    "pipe-quoted-lf": (
        "f.csv",
        (
            '"Sensor"|"Data/Hora"|"Valor"|"Unidade"\n'
            '"S-01"|"31/01/2024 10:00"|"1234,5"|"°C"\n'
            '"S-02"|"31/01/2024 10:00"|"-0,25"|"kPa"\n'
            '"S-01"|"01/02/2024 00:00:30"|"7,0"|"°C"'
        ).encode(),
    ),
    "utf8-cr-only": ("h.csv", BR.replace("\r\n", "\r").encode("utf-8")),  # old Mac line ends (was "só cabeçalho")
    "cp1252-cr-only": ("i.csv", BR.replace("\r\n", "\r").encode("cp1252")),
    "no-final-newline-blank-lines": (
        "g.csv",
        (BR.rstrip("\r\n") + "\r\n\r\n").replace("Unidade\r\n", "Unidade\r\n\r\n").encode("utf-8"),
    ),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_csv_variants_import_the_same_rows(
    variant: str, settings: Settings, do_import: Importer, tmp_path: Path
) -> None:
    name, content = VARIANTS[variant]
    summary = do_import(write(tmp_path, name, content))
    assert summary["rows_read"] == 3 and summary["rows_rejected"] == 0, summary
    assert leituras_rows(settings) == sorted(READINGS)


def _xlsx(path: Path) -> Path:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Leituras"
    ws.append(["Sensor", "Data/Hora", "Valor", "Unidade", "Obs"])
    ws.append(["S-01", datetime(2024, 1, 31, 10, 0), 1234.5, "°C", "ignorada"])
    ws.append(["S-02", "31/01/2024 10:00", "-0,25", "kPa", None])  # cells typed as text
    ws.append(["S-01", datetime(2024, 2, 1, 0, 0, 30), 7, "°C", None])
    other = wb.create_sheet("Outra")
    other.append(["x"])
    wb.save(path)
    return path


def test_xlsx_with_typed_and_text_cells_imports_the_same_rows(
    settings: Settings, do_import: Importer, tmp_path: Path
) -> None:
    summary = do_import(_xlsx(tmp_path / "leituras.xlsx"), sheet="Leituras")
    assert summary["rows_rejected"] == 0, summary
    assert leituras_rows(settings) == sorted(READINGS)


def test_records_split_across_many_chunks_keep_their_lines(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    body = "".join(f'S-{i % 7};"linha\n{i}";{i},5\n' for i in range(300))
    path = write(tmp_path, "q.csv", "Sensor;Nota;Valor\n" + body)
    detected = reader.detect_csv(path)
    source = reader.CsvSource(path, detected.format, chunk_bytes=37)
    lines, notes = [], []
    for batch in source.batches():
        lines += batch.lines.tolist()
        notes += batch.frame["c1"].to_list()
        assert (batch.field_counts == 3).all()
    assert notes == [f"linha\n{i}" for i in range(300)]
    assert lines == [2 + 2 * i for i in range(300)]  # each record spans two physical lines


def test_small_chunks_and_several_runs_dedupe_in_the_database(
    monkeypatch: pytest.MonkeyPatch, settings: Settings, do_import: Importer, tmp_path: Path
) -> None:
    from engine.imports import service

    monkeypatch.setattr(reader, "CHUNK_BYTES", 256)
    monkeypatch.setattr(service, "RUN_BUDGET_BYTES", 1)  # every chunk is its own run: dedupe happens in SQL
    monkeypatch.setattr(service, "SPILL_RUN_BYTES", 1)
    rows = [f"S-{i % 5};{1 + i % 28:02d}/01/2024 10:00;{i}" for i in range(200)]
    summary = do_import(write(tmp_path, "runs.csv", "Sensor;Data/Hora;Valor\n" + "\n".join(rows) + "\n"))
    distinct = {(r.split(";")[0], r.split(";")[1]) for r in rows}
    assert summary["rows_read"] == 200
    assert summary["duplicates"] == 200 - len(distinct)
    assert summary["rows_merged"] == len(distinct)
    stored = {(code, ts.astimezone().isoformat()): valor for code, ts, valor, _ in leituras_rows(settings)}
    assert len(stored) == len(distinct)
    last = {}
    for i, r in enumerate(rows):
        last[(r.split(";")[0], r.split(";")[1])] = float(i)
    assert sorted(stored.values()) == sorted(last.values())  # the last occurrence of each key won
