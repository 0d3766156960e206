"""Hostile and broken files: each gets a message naming the line (and column) and what was expected,
and nothing already imported changes."""

from __future__ import annotations

import codecs
import csv
import io
import zipfile
from pathlib import Path

import openpyxl
import pytest

from engine.errors import ValidationFailed
from engine.imports import ImportRefused, reader
from engine.settings import Settings
from engine.storage import get_storage
from tests.imports.conftest import Importer, leituras_rows, write

HEADER = "Sensor;Data/Hora;Valor;Unidade\n"


@pytest.fixture
def existing(settings: Settings, do_import: Importer, tmp_path: Path) -> list:
    do_import(write(tmp_path, "base.csv", HEADER + "A;01/03/2024 10:00;1;m\nB;01/03/2024 10:00;2;m\n"))
    return leituras_rows(settings)


def refused(do_import: Importer, path: Path, **options: object) -> ImportRefused:
    with pytest.raises(ImportRefused) as caught:
        do_import(path, mode="replace", **options)
    return caught.value


def test_wrong_encoding_declared(
    existing: list, settings: Settings, do_import: Importer, tmp_path: Path
) -> None:
    path = write(
        tmp_path, "latin.csv", HEADER + "A;01/03/2024 10:00;5;m\nÇ;01/03/2024 10:00;3;µ\n", "latin-1"
    )
    exc = refused(do_import, path, encoding="utf-8")
    assert exc.message == (
        "Linha 3: o byte 0xC7 não é UTF-8 válido. O arquivo parece ser Latin-1/Windows-1252: "
        "escolha essa codificação."
    )
    assert exc.data["line"] == 3
    assert leituras_rows(settings) == existing


def test_latin1_bytes_deep_in_a_file_detected_as_utf8(
    existing: list, settings: Settings, do_import: Importer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reader, "SAMPLE_BYTES", 64)  # detection only sees the (ASCII) beginning
    rows = "".join(f"S{i};01/03/2024 10:00;{i};m\n" for i in range(10))
    path = write(
        tmp_path, "mixed.csv", (HEADER + rows).encode() + "Z;01/03/2024 10:00;1;ºC\n".encode("latin-1")
    )
    exc = refused(do_import, path)
    assert exc.message.startswith("Linha 12: o byte 0xBA não é UTF-8 válido.")
    assert leituras_rows(settings) == existing


def test_unclosed_quote(existing: list, settings: Settings, do_import: Importer, tmp_path: Path) -> None:
    path = write(tmp_path, "q.csv", HEADER + 'A;01/03/2024 10:00;5;m\nB;"01/03/2024 10:00;6;m\nC;x;1;m\n')
    exc = refused(do_import, path)
    assert exc.message == "Linha 3: aspas não fechadas — um campo entre aspas vai até o fim do arquivo."
    assert leituras_rows(settings) == existing


def test_malformed_quotes_name_the_line(
    existing: list, settings: Settings, do_import: Importer, tmp_path: Path
) -> None:
    rows = "".join(f"S{i};01/03/2024 10:00;{i};m\n" for i in range(20))
    path = write(tmp_path, "m.csv", HEADER + rows + 'X;"01/03/2024" 10:00;1;m\n' + 'Y;"a";2;"b"\n')
    exc = refused(do_import, path)
    assert exc.message.startswith("Linha 22: aspas mal formadas")
    assert leituras_rows(settings) == existing


def test_a_10_mb_single_line(existing: list, settings: Settings, do_import: Importer, tmp_path: Path) -> None:
    huge = "x" * (10 * 1024 * 1024)
    path = write(tmp_path, "long.csv", HEADER + f"{huge};01/03/2024 10:00;1;m\nC;01/03/2024 10:00;3;m\n")
    with pytest.raises(ImportRefused) as caught:  # the line is refused; 50% invalid is over the limit
        do_import(path, max_invalid_share=0.2)
    summary = caught.value.data["summary"]
    assert summary["rows_rejected"] == 1 and summary["rows_read"] == 2
    assert leituras_rows(settings) == existing


def test_a_10_mb_file_without_line_breaks(
    existing: list, settings: Settings, do_import: Importer, tmp_path: Path
) -> None:
    path = write(tmp_path, "oneline.csv", "Sensor;" + "x" * (10 * 1024 * 1024))
    exc = refused(do_import, path)
    assert exc.message == (
        "A primeira linha (cabeçalho) passa de 64 KiB sem quebra de linha: o arquivo não parece um CSV."
    )
    assert leituras_rows(settings) == existing


def test_record_longer_than_the_limit(tmp_path: Path) -> None:
    path = write(tmp_path, "r.csv", HEADER + 'A;"' + "x" * 5000 + "\n" * 10)
    detected = reader.detect_csv(path)
    source = reader.CsvSource(path, detected.format, chunk_bytes=1024, max_record_bytes=2048)
    with pytest.raises(reader.FileRefused) as caught:
        list(source.batches())
    assert caught.value.message.startswith("Linha 2: um registro passa de 0 MiB sem terminar")


def test_duplicate_column_names(
    existing: list, settings: Settings, do_import: Importer, tmp_path: Path
) -> None:
    path = write(tmp_path, "dup.csv", "Sensor;Valor;Data/Hora;Valor\nA;1;01/03/2024 10:00;2\n")
    with pytest.raises(ValidationFailed) as caught:
        do_import(path, mapping={"sensor": "Sensor", "ts": "Data/Hora", "valor": "Valor"})
    assert "há 2 colunas chamadas 'Valor' (colunas 2, 4); renomeie-as no arquivo" in caught.value.message
    detected = reader.detect_csv(path)
    assert detected.warnings == [
        "As colunas 2 e 4 têm o mesmo nome 'Valor'; renomeie uma delas se for usá-la."
    ]
    assert leituras_rows(settings) == existing


def test_duplicate_column_names_in_xlsx_are_seen_too(
    existing: list, settings: Settings, do_import: Importer, tmp_path: Path
) -> None:
    # fastexcel renames the second 'Valor' to 'Valor_1': the file imported one of the two without a word.
    path = tmp_path / "dup.xlsx"
    wb = openpyxl.Workbook()
    wb.active.append(["Sensor", "Valor", "Data/Hora", "Valor", "Nota_1"])
    wb.active.append(["A", 1, "01/03/2024 10:00", 2, "x"])
    wb.save(path)
    source = reader.XlsxSource(path)
    assert source.headers == ["Sensor", "Valor", "Data/Hora", "Valor", "Nota_1"]  # a real '_1' name is kept
    assert source.header_warnings == ["As colunas 2 e 4 têm o mesmo nome 'Valor'; renomeie uma delas se for usá-la."]
    with pytest.raises(ValidationFailed) as caught:
        do_import(path, mapping={"sensor": "Sensor", "ts": "Data/Hora", "valor": "Valor"})
    assert "há 2 colunas chamadas 'Valor' (colunas 2, 4); renomeie-as no arquivo" in caught.value.message
    assert leituras_rows(settings) == existing


def test_missing_required_column(
    existing: list, settings: Settings, do_import: Importer, tmp_path: Path
) -> None:
    path = write(tmp_path, "nots.csv", "Sensor;Valor\nA;1\n")
    with pytest.raises(ValidationFailed) as caught:
        do_import(path)
    assert (
        caught.value.message
        == "Mapeamento de colunas inválido — ts: campo obrigatório sem coluna (Data/Hora)."
    )
    assert leituras_rows(settings) == existing


def test_corrupt_xlsx(existing: list, settings: Settings, do_import: Importer, tmp_path: Path) -> None:
    good = tmp_path / "good.xlsx"
    wb = openpyxl.Workbook()
    wb.active.append(["Sensor", "Data/Hora", "Valor"])
    wb.save(good)
    data = good.read_bytes()
    broken = write(tmp_path, "broken.xlsx", data[: len(data) // 2])
    exc = refused(do_import, broken)
    assert exc.message.startswith("O arquivo XLSX está corrompido")
    assert leituras_rows(settings) == existing


def _workbook_zip(path: Path, parts: dict[str, str | bytes]) -> Path:
    """A minimal XLSX archive: the parts every workbook has, then ``parts``."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
        zf.writestr("xl/workbook.xml", "<workbook/>")
        for name, content in parts.items():
            zf.writestr(name, content)
    return path


def test_zip_bomb_xlsx(
    existing: list, settings: Settings, do_import: Importer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _workbook_zip(tmp_path / "bomb.xlsx", {"xl/worksheets/sheet1.xml": b"<" + b"a" * (40 * 1024 * 1024)})
    assert path.stat().st_size < 200_000
    exc = refused(do_import, path)
    assert exc.message.startswith("O XLSX parece uma bomba de compressão")
    monkeypatch.setattr(reader, "XLSX_MAX_RATIO", 10**9)  # sizes declared honestly but still too big
    monkeypatch.setattr(reader, "XLSX_MAX_XML_BYTES", 8 * 1024 * 1024)
    exc = refused(do_import, path)
    assert exc.message.startswith("A planilha é grande demais para XLSX")
    assert leituras_rows(settings) == existing


def test_a_blown_up_part_other_than_a_sheet_is_refused(
    existing: list, settings: Settings, do_import: Importer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only the sheets and their strings used to be inflated and counted: a styles part of gigabytes (its size
    # in the directory falsified) cost the reader 2.2 GB of memory or half a minute per open.
    path = _workbook_zip(tmp_path / "styles.xlsx", {"xl/worksheets/sheet1.xml": "<worksheet/>",
                                                    "xl/styles.xml": b"<styleSheet>" + b"<xf/>" * (4 * 1024 * 1024)})
    monkeypatch.setattr(reader, "XLSX_MAX_RATIO", 10**9)  # past the directory's checks, as a falsified size is
    exc = refused(do_import, path)
    assert exc.message.startswith("O XLSX tem uma parte (xl/styles.xml) que descompacta para mais de 16 MiB")
    assert leituras_rows(settings) == existing


def test_xlsx_over_the_cell_cap_says_to_use_csv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.xlsx"
    wb = openpyxl.Workbook()
    for i in range(30):
        wb.active.append([f"S{i}", "01/03/2024", i])
    wb.save(path)
    monkeypatch.setattr(reader, "XLSX_MAX_CELLS", 50)
    with pytest.raises(reader.FileRefused) as caught:
        reader.XlsxSource(path)
    assert caught.value.message.startswith("A planilha 'Sheet' tem 90 células; o limite para XLSX é 50")
    assert "Salve-a como CSV" in caught.value.message


def test_unknown_sheet(tmp_path: Path) -> None:
    path = tmp_path / "s.xlsx"
    wb = openpyxl.Workbook()
    wb.active.title = "Dados"
    wb.save(path)
    with pytest.raises(reader.FileRefused) as caught:
        reader.XlsxSource(path, "Outra")
    assert caught.value.message == "A planilha 'Outra' não existe; planilhas do arquivo: Dados."


@pytest.mark.parametrize(
    "head,message",
    [
        (b"%PDF-1.7 ...", "O arquivo x.csv é um PDF, não um CSV ou XLSX."),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "Planilha no formato antigo do Excel (.xls) não é aceita"),
        (b"\x89PNG\r\n\x1a\n", "O arquivo x.csv é um imagem PNG, não um CSV ou XLSX."),
        (b"abc\x00\x00\x00def" * 100, "O arquivo não é texto (apesar do nome .csv): o conteúdo é binário."),
        ("Sensor;Valor\nA;1\n".encode("utf-32"), "O arquivo está em UTF-32, que não é aceito"),  # was read as UTF-16
        (codecs.BOM_UTF32_BE + "Sensor;Valor\n".encode("utf-32-be"), "O arquivo está em UTF-32"),
    ],
)
def test_type_is_checked_by_content(head: bytes, message: str) -> None:
    with pytest.raises(reader.FileRefused) as caught:
        reader.sniff_file_type(head, "x.csv")
    assert caught.value.message.startswith(message)


def test_a_nul_character_deep_in_a_text_cell_rejects_only_its_row(
    existing: list, settings: Settings, do_import: Importer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Beyond the sniffed beginning, a NUL is text to the reader; PostgreSQL keeps no NUL in text, so the whole
    # import failed with the database's error.
    monkeypatch.setattr(reader, "SAMPLE_BYTES", 64)
    rows = "".join(f"S{i};01/03/2024 10:00;{i};m\n" for i in range(10))
    path = write(tmp_path, "nul.csv", HEADER + rows + "Z\x00Z;01/03/2024 10:00;1;m\n")
    summary = do_import(path, mode="replace")
    assert (summary["rows_read"], summary["rows_rejected"], summary["rows_merged"]) == (11, 1, 10)
    raw = get_storage(settings).get_bytes(summary["report"]["key"])
    report = list(csv.reader(io.StringIO(raw.decode("utf-8-sig")), delimiter=";"))
    assert report[1] == ["12", "Sensor", "contém o caractere nulo (U+0000), que não pode ser guardado", "Z\u2400Z"]
    assert {r[0] for r in leituras_rows(settings)} == {"A", "B"} | {f"S{i}" for i in range(10)}
