"""Headless Chromium on the real server and worker: upload a Latin-1, ';'-separated file with decimal commas,
map a column by hand, run the import, watch its progress and download the rejected-rows report."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.imports.conftest import leituras_rows
from tests.stack import OficinaStack, running_stack, wait_for_app, wait_for_preview, wait_shown

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("imports-browser")]

@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[OficinaStack]:
    with running_stack(tmp_path_factory.mktemp("oficina-imports-browser"), redis_url) as running:
        yield running


def _file(path: Path, rows: int) -> Path:
    lines = ["Sensor;Data/Hora;Leitura (kPa);Unidade;Observação"]
    for i in range(rows):
        lines.append(
            f"S-{i % 40:02d};{1 + i // 1440 % 28:02d}/03/2024 {i // 60 % 24:02d}:{i % 60:02d};"
            f"{i % 900 + 1}.{i % 1000:03d},{i % 10};kPa;ração"
        )
    lines.insert(5, "S-99;31/02/2024 10:00;1,5;kPa;data que não existe")  # line 6
    lines.insert(9, "S-98;01/03/2024 10:00;=1+1;kPa;fórmula")  # line 10
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("latin-1"))
    return path


def test_upload_map_run_watch_and_download_the_report(
    stack: OficinaStack, browser: Any, tmp_path: Path
) -> None:
    rows = 20_000
    source = _file(tmp_path / "leituras-latin1.csv", rows)
    user = stack.user("analyst", name="Ana Analista")
    page = stack.new_page(browser, accept_downloads=True)
    stack.login(page, user, next_path="/importacoes")
    wait_for_app(page)
    page.locator(".ofc-upload-input").set_input_files(str(source))

    detected = wait_for_preview(stack, page)
    assert "Windows-1252" in detected.inner_text() and "ponto e vírgula" in detected.inner_text()
    assert "decimal «,»" in detected.inner_text()
    raw = page.locator(".ofc-imp-raw")
    assert "ração" in raw.inner_text() and "Leitura (kPa)" in raw.inner_text()
    wait_shown(stack, page, page.locator(".ofc-imp-problem").first,  # "Valor" has no column yet
               "the mapping step does not say that 'Valor' has no column")
    stack.screenshot(page, "importacoes-preview")

    page.locator(".ofc-imp-map-valor [role=combobox]").click()
    page.locator("[role=listbox] li", has_text="Leitura (kPa)").click()  # MUI menu items
    page.locator(".ofc-imp-problem").wait_for(state="detached", timeout=30_000)
    checked = page.locator(".ofc-imp-checked")
    checked.wait_for()
    assert "Data/hora inexistente: '31/02/2024 10:00'." in checked.inner_text()
    stack.screenshot(page, "importacoes-mapeamento")

    start = page.locator(".ofc-imp-start button")
    start.wait_for()
    page.wait_for_function("el => !el.disabled", arg=start.element_handle(), timeout=30_000)
    start.click()
    page.locator(".ofc-imp-progress").wait_for(timeout=30_000)
    seen = set()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = page.locator(".ofc-imp-status").get_attribute("data-status")
        seen.add(status)
        if status in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.2)
    assert status == "succeeded", (seen, page.locator(".ofc-imp-status").inner_text(), stack.log_tail())
    counters = page.locator(".ofc-imp-counters").inner_text()
    assert "Rejeitadas\n2" in counters and f"Linhas lidas\n{rows + 2:,}".replace(",", ".") in counters
    stack.screenshot(page, "importacoes-concluida")

    with page.expect_download() as info:
        page.locator(".ofc-imp-report").click()
    report = Path(info.value.path()).read_bytes().decode("utf-8-sig").splitlines()
    assert report[0] == "linha;coluna;motivo;valor"
    assert report[1].startswith('6;"Data/Hora";"Data/hora inexistente')
    # the raw cell "=1+1" is neutralised so a spreadsheet shows it instead of running it
    assert report[2] == '10;"Leitura (kPa)";"Número inválido: \'=1+1\' (use 1.234,56).";"\'=1+1"'

    assert len(leituras_rows(stack.settings)) == rows
    assert stack.blocked == []
    page.context.close()
