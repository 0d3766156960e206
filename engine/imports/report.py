"""The rejected-rows report: a CSV (UTF-8 with BOM, ``;``-separated, as spreadsheets in Brazil open it)
with one line per refused cell or ragged line: ``linha;coluna;motivo;valor``.

It is written to a temporary file while the import runs (memory stays flat whatever the number of refusals)
and then stored with ``engine.storage``. Every text cell that a spreadsheet would run as a formula
(starting with ``=``, ``+``, ``-``, ``@``, tab or CR) is prefixed with an apostrophe.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path

import polars as pl

from engine.imports.values import neutralize_formula

HEADER = "linha;coluna;motivo;valor\r\n"


class RejectReport:
    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"rejeitadas-{uuid.uuid4().hex}.csv"
        self._file = open(self.path, "wb")  # noqa: SIM115 - closed by close()
        self._file.write("\ufeff".encode() + HEADER.encode())
        self.entries = 0

    def add(self, rejects: pl.DataFrame) -> None:
        if rejects.height == 0:
            return
        safe = rejects.select(
            pl.col("line"),
            neutralize_formula(pl.col("column")).alias("column"),
            neutralize_formula(pl.col("reason")).alias("reason"),
            # A NUL is shown as the symbol for it (U+2400): spreadsheets cut a cell short at the character itself.
            neutralize_formula(pl.col("value").cast(pl.String).str.replace_all("\x00", "\u2400", literal=True))
            .alias("value"),
        )
        self._file.write(
            safe.write_csv(
                include_header=False, separator=";", line_terminator="\r\n", quote_style="non_numeric"
            ).encode()
        )
        self.entries += rejects.height

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    def discard(self) -> None:
        self.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
