"""Imports through a real Huey consumer (PostgreSQL + Redis): cancel while it runs, and the CLI waiting
for the worker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from engine.cli import main
from engine.db import session_scope
from engine.imports import ImportOptions, UploadWriter, run_import, start_import
from engine.jobs import cancel_job
from engine.models.imports import Upload
from engine.security import SYSTEM
from engine.settings import Settings
from tests.imports.conftest import leituras_rows, write
from tests.worker_support import WorkerPool, wait_for, wait_for_job

pytestmark = pytest.mark.xdist_group("imports-worker")


@pytest.fixture
def worker_settings(pg_settings: Settings, redis_url: str, tmp_path: Path) -> Iterator[Settings]:
    with WorkerPool(tmp_path / "workers") as pool:
        settings = pool.queue_settings(pg_settings, redis_url=redis_url)
        pool.start(settings, args=("--workers", "1"))
        yield settings


def _big_csv(path: Path, rows: int) -> Path:
    ids = pl.int_range(0, rows, eager=True)
    frame = pl.DataFrame({"id": ids}).select(
        (pl.col("id") % 500).cast(pl.String).alias("Sensor"),
        (pl.datetime(2024, 1, 1) + pl.duration(minutes=pl.col("id") // 500)).dt.strftime("%d/%m/%Y %H:%M")
        .alias("Data/Hora"),
        pl.lit("1,5").alias("Valor"),
    )
    frame.write_csv(path, separator=";")
    return path


def test_cancel_a_running_import(worker_settings: Settings, tmp_path: Path) -> None:
    settings = worker_settings
    seed = write(tmp_path, "seed.csv", "Sensor;Data/Hora;Valor\nA;01/03/2024 10:00;1\n")
    run_import(settings, path=str(seed), file_type="csv", filename="seed.csv",
               options=ImportOptions(kind="leituras"), owner=SYSTEM)
    before = leituras_rows(settings)
    path = _big_csv(tmp_path / "grande.csv", 1_000_000)
    writer = UploadWriter(settings, filename="grande.csv")
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            writer.write(chunk)
    with session_scope(settings) as s:
        upload = writer.finish(s, actor=SYSTEM)
        job_id = start_import(s, actor=SYSTEM, upload_id=upload.id, options=ImportOptions(kind="leituras")).id
        upload_id, upload_path = upload.id, upload.path
    wait_for_job(settings, job_id, "running", timeout=60)
    with session_scope(settings) as s:
        cancel_job(s, actor=SYSTEM, job_id=job_id)
    job = wait_for_job(settings, job_id, ("cancelled", "succeeded", "failed"), timeout=120)
    assert job.status == "cancelled", (job.status, job.error)
    assert leituras_rows(settings) == before
    wait_for(lambda: not Path(upload_path).exists(), timeout=10, message="upload file removed")
    with session_scope(settings) as s:
        assert s.get(Upload, upload_id).status == "removed"


def test_cli_runs_through_the_worker_and_waits(worker_settings: Settings, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "w.csv", "Sensor;Data/Hora;Valor\nA;01/03/2024 10:00;1,5\nB;01/03/2024 10:00;x\n")
    code = main(["import", str(path), "--kind", "leituras"])
    out = capsys.readouterr()
    assert code == 0, out.err
    summary = json.loads(out.out)
    assert summary["job_status"] == "succeeded"
    assert (summary["rows_read"], summary["rows_rejected"], summary["rows_merged"]) == (2, 1, 1)
    assert "linhas lidas" in out.err  # progress lines while it waited
