"""Helpers for import tests: writing files in many formats and reading the target tables back."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from engine.db import session_scope
from engine.imports import ImportOptions, run_import
from engine.models import Cliente
from engine.models.imports import Leitura, Sensor
from engine.security import SYSTEM
from engine.settings import Settings

# The same three readings, written in every format the tests try.
READINGS = [
    ("S-01", datetime(2024, 1, 31, 13, 0, tzinfo=UTC), 1234.5, "°C"),
    ("S-02", datetime(2024, 1, 31, 13, 0, tzinfo=UTC), -0.25, "kPa"),
    ("S-01", datetime(2024, 2, 1, 3, 0, 30, tzinfo=UTC), 7.0, "°C"),
]


def write(directory: Path, name: str, content: bytes | str, encoding: str = "utf-8") -> Path:
    path = directory / name
    path.write_bytes(content.encode(encoding) if isinstance(content, str) else content)
    return path


def leituras_rows(settings: Settings) -> list[tuple[str, datetime, float, str]]:
    with session_scope(settings) as s:
        rows = s.execute(
            select(Sensor.codigo, Leitura.ts, Leitura.valor, Leitura.unidade)
            .join(Sensor, Sensor.id == Leitura.sensor_id)
            .order_by(Sensor.codigo, Leitura.ts)
        ).all()
    return [tuple(r) for r in rows]


def clientes_rows(settings: Settings) -> list[dict[str, Any]]:
    with session_scope(settings) as s:
        rows = s.scalars(select(Cliente).order_by(Cliente.cnpj)).all()
        return [
            {
                "id": c.id,
                "cnpj": c.cnpj,
                "razao_social": c.razao_social,
                "nome_fantasia": c.nome_fantasia,
                "email": c.email,
                "telefone": c.telefone,
            }
            for c in rows
        ]


Importer = Callable[..., dict[str, Any]]


@pytest.fixture
def do_import(settings: Settings) -> Importer:
    """Run an import in-process (no job): ``do_import(path, kind=..., mode=..., mapping=..., ...)``."""

    def run(path: Path, *, kind: str = "leituras", owner: Any = SYSTEM, **options: Any) -> dict[str, Any]:
        file_type = "xlsx" if path.suffix == ".xlsx" else "csv"
        opts = ImportOptions(kind=kind, **options)
        return run_import(
            settings, path=str(path), file_type=file_type, filename=path.name, options=opts, owner=owner
        )

    return run
