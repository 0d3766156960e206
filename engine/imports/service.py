"""Import services: receiving files, previewing them, starting an import job, and the import itself.

Flow: ``UploadWriter`` streams a file to the data disk and records an ``Upload`` (type checked by
content) → ``preview`` shows the first rows as parsed with the detected encoding, separator and decimal
mark, and a column mapping suggested from the headers (and the one the user saved last time) →
``start_import`` records the mapping and creates a job of kind ``import`` → the worker runs
``run_import``: read in chunks, validate, write refusals to the report, stage, merge, commit.

Uploaded files are removed when their import ends (whatever the outcome) and by ``sweep_uploads`` when
nobody imported them within ``UPLOAD_TTL_HOURS``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from engine import audit
from engine.db import is_row_id
from engine.errors import NotFound, PayloadTooLarge, ValidationFailed
from engine.imports.kinds import ImportKind, get_kind, resolve_mapping, suggest_mapping, validate_batch
from engine.imports.loader import MODES, CancelWatcher, Loader, make_loader
from engine.imports.reader import (
    CsvFormat,
    CsvSource,
    FileRefused,
    RawBatch,
    XlsxSource,
    check_xlsx,
    detect_csv,
    detect_xlsx,
    normalize_encoding,
    refuse,
    sniff_file_type,
)
from engine.imports.report import RejectReport
from engine.imports.values import DEFAULT_TZ
from engine.models import Job, utcnow
from engine.models.imports import ImportMapping, Upload
from engine.security import is_admin, require
from engine.settings import Settings

log = logging.getLogger(__name__)

UPLOAD_TTL_HOURS = 24
PART_TTL_HOURS = 2
RUN_BUDGET_BYTES = 32 * 1024 * 1024  # a file whose validated rows fit is sorted whole in memory
SPILL_RUN_BYTES = 8 * 1024 * 1024  # a bigger one is staged in sorted runs of this size
SNIFF_BYTES = 64 * 1024
FILE_TYPES = ("csv", "xlsx")
ALLOWED_SUFFIXES = {".csv": "csv", ".txt": "csv", ".tsv": "csv", ".xlsx": "xlsx", ".xlsm": "xlsx"}
MERGE_ROWS_PER_SECOND = {"postgresql": 300_000, "sqlite": 150_000}
CANCEL_POLL_SECONDS = 0.5
_COMPARE_STEP = 1 << 16


class ImportRefused(FileRefused):
    """The file was refused as a whole (too many invalid rows, nothing to import...); carries ``summary``."""


# Uploads -----------------------------------------------------------------------------------------------


def uploads_dir(settings: Settings) -> Path:
    path = settings.data_dir / "uploads"
    path.mkdir(parents=True, exist_ok=True)
    return path


def work_dir(settings: Settings) -> Path:
    path = settings.data_dir / "imports-tmp"
    path.mkdir(parents=True, exist_ok=True)
    return path


def max_upload_bytes(settings: Settings) -> int:
    return settings.upload_max_mb * 1024 * 1024


class UploadWriter:
    """Receives a file chunk by chunk (never whole in memory) into ``uploads/<uuid>.part``.

    ``write`` enforces the size limit as bytes arrive; ``finish`` checks the type by content, moves the
    file into place and records the ``Upload``; ``abort`` removes the partial file."""

    def __init__(self, settings: Settings, *, filename: str, expected_size: int | None = None) -> None:
        self.settings = settings
        self.filename = _clean_filename(filename)
        self.limit = max_upload_bytes(settings)
        if expected_size is not None and expected_size > self.limit:
            raise PayloadTooLarge(
                f"O arquivo tem {_mb(expected_size)}; o limite é {settings.upload_max_mb} MB.",
                size=expected_size,
                limit=self.limit,
            )
        self.token = uuid.uuid4().hex
        self.path = uploads_dir(settings) / f"{self.token}.part"
        self._file = open(self.path, "wb")  # noqa: SIM115 - closed by finish()/abort()
        self._digest = hashlib.sha256()
        self._head = bytearray()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            self.abort()
            raise PayloadTooLarge(
                f"O arquivo passa do limite de {self.settings.upload_max_mb} MB.",
                size=self.size,
                limit=self.limit,
            )
        if len(self._head) < SNIFF_BYTES:
            self._head += chunk[: SNIFF_BYTES - len(self._head)]
        self._digest.update(chunk)
        self._file.write(chunk)

    def finish(self, session: Session, *, actor: Any) -> Upload:
        require(actor, "imports.run")
        self._file.close()
        try:
            file_type = _check_type(bytes(self._head), self.filename, self.path)
        except Exception:
            self.abort()
            raise
        final = self.path.with_suffix(f".{file_type}")
        os.replace(self.path, final)
        upload = Upload(
            owner_id=getattr(actor, "id", None),
            filename=self.filename,
            path=str(final),
            external=False,
            file_type=file_type,
            size=self.size,
            sha256=self._digest.hexdigest(),
            status="received",
        )
        session.add(upload)
        session.flush()
        audit.record(
            session,
            actor=actor,
            action="import.upload",
            entity_type="upload",
            entity_id=upload.id,
            after={"filename": upload.filename, "size": upload.size, "type": file_type},
        )
        return upload

    def abort(self) -> None:
        if not self._file.closed:
            self._file.close()
        for path in (self.path, self.path.with_suffix(".csv"), self.path.with_suffix(".xlsx")):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _mb(size: int) -> str:
    return f"{size / 2**20:.1f} MB".replace(".", ",")


def _clean_filename(name: str) -> str:
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1].strip()
    base = "".join(ch for ch in base if ch.isprintable())[:200]
    return base or "arquivo"


def _check_type(head: bytes, filename: str, path: Path) -> str:
    suffix = Path(filename).suffix.lower()
    if suffix and suffix not in ALLOWED_SUFFIXES:
        raise refuse(f"Tipo de arquivo não aceito ({suffix}); envie um .csv ou .xlsx.")
    file_type = sniff_file_type(head, filename)
    declared = ALLOWED_SUFFIXES.get(suffix)
    if declared and declared != file_type:
        found = "uma planilha XLSX" if file_type == "xlsx" else "texto (CSV)"
        raise refuse(f"O arquivo {filename!r} tem extensão {suffix}, mas o conteúdo é {found}.")
    if file_type == "xlsx":
        check_xlsx(path)
    return file_type


def register_local_file(session: Session, *, actor: Any, path: str | Path) -> Upload:
    """An ``Upload`` for a file already on this machine (the CLI): read in place, never removed."""
    require(actor, "imports.run")
    source = Path(path).expanduser().resolve()
    if not source.is_file():
        raise NotFound(f"Arquivo {path} não encontrado.", entity="file", key=str(path))
    with open(source, "rb") as f:
        head = f.read(SNIFF_BYTES)
    file_type = _check_type(head, source.name, source)
    upload = Upload(
        owner_id=getattr(actor, "id", None),
        filename=source.name[:200],
        path=str(source),
        external=True,
        file_type=file_type,
        size=source.stat().st_size,
        status="received",
    )
    session.add(upload)
    session.flush()
    return upload


def get_upload(session: Session, *, actor: Any, upload_id: int) -> Upload:
    require(actor, "imports.run")
    upload = session.get(Upload, upload_id) if is_row_id(upload_id) else None
    if upload is None or not (is_admin(actor) or upload.owner_id == getattr(actor, "id", None)):
        raise NotFound(f"Arquivo enviado {upload_id} não encontrado.", entity="upload", key=upload_id)
    if upload.status == "removed" or not Path(upload.path).is_file():
        raise NotFound(
            f"O arquivo {upload.filename!r} já foi removido do servidor; envie-o de novo.",
            entity="upload",
            key=upload_id,
        )
    return upload


def remove_upload_file(upload: Upload) -> None:
    if not upload.external:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(upload.path)


def discard_upload(session: Session, *, actor: Any, upload_id: int) -> None:
    upload = get_upload(session, actor=actor, upload_id=upload_id)
    if upload.status == "importing":
        raise ValidationFailed("O arquivo está sendo importado; cancele o job antes.")
    remove_upload_file(upload)
    upload.status = "removed"
    upload.removed_at = utcnow()


def sweep_uploads(session: Session, settings: Settings, *, now: Any = None) -> dict[str, int]:
    """Remove files of uploads nobody imported within ``UPLOAD_TTL_HOURS`` and stale partial files."""
    now = now or utcnow()
    cutoff = now - timedelta(hours=UPLOAD_TTL_HOURS)
    removed = 0
    stale = session.scalars(
        select(Upload).where(Upload.status.in_(("received", "failed")), Upload.created_at < cutoff)
    ).all()
    for upload in stale:
        remove_upload_file(upload)
        upload.status = "removed"
        upload.removed_at = now
        removed += 1
    parts = 0
    limit = time.time() - PART_TTL_HOURS * 3600
    for directory in (uploads_dir(settings), work_dir(settings)):
        for entry in directory.iterdir():
            if (
                entry.suffix in (".part", ".csv")
                and entry.stat().st_mtime < limit
                and (entry.suffix == ".part" or directory == work_dir(settings))
            ):
                with contextlib.suppress(FileNotFoundError):
                    entry.unlink()
                    parts += 1
    return {"uploads_removed": removed, "partial_files_removed": parts}


def upload_info(upload: Upload) -> dict[str, Any]:
    return {
        "id": upload.id,
        "filename": upload.filename,
        "file_type": upload.file_type,
        "size": upload.size,
        "sha256": upload.sha256,
        "status": upload.status,
        "job_id": upload.job_id,
        "created_at": upload.created_at,
    }


# Options and preview ------------------------------------------------------------------------------------


@dataclass
class ImportOptions:
    kind: str
    mode: str = "insert"
    mapping: dict[str, str] = field(default_factory=dict)
    encoding: str | None = None
    separator: str | None = None
    decimal: str | None = None
    quote: str | None = None
    sheet: str | None = None
    max_invalid_share: float = 1.0
    timezone: str = DEFAULT_TZ

    def check(self) -> ImportOptions:
        get_kind(self.kind)
        if self.mode not in MODES:
            raise ValidationFailed(
                f"Modo desconhecido {self.mode!r}; use insert, upsert ou replace.",
                errors=[{"field": "mode", "message": "modo desconhecido"}],
            )
        if not 0 <= float(self.max_invalid_share) <= 1:
            raise ValidationFailed(
                "A fração máxima de linhas inválidas vai de 0 a 1 (ex.: 0,05 = 5%).",
                errors=[{"field": "max_invalid_share", "message": "fora de 0..1"}],
            )
        if self.encoding:
            self.encoding = normalize_encoding(self.encoding)
        try:
            from zoneinfo import ZoneInfo

            ZoneInfo(self.timezone)
        except Exception:
            raise ValidationFailed(
                f"Fuso horário desconhecido {self.timezone!r}.",
                errors=[{"field": "timezone", "message": "fuso desconhecido"}],
            ) from None
        return self

    def as_params(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "mode": self.mode,
            "mapping": dict(self.mapping),
            "encoding": self.encoding,
            "separator": self.separator,
            "decimal": self.decimal,
            "quote": self.quote,
            "sheet": self.sheet,
            "max_invalid_share": float(self.max_invalid_share),
            "timezone": self.timezone,
        }


def _detect(upload: Upload, options: ImportOptions) -> Any:
    if upload.file_type == "xlsx":
        return detect_xlsx(upload.path, sheet=options.sheet)
    return detect_csv(
        upload.path,
        encoding=options.encoding,
        separator=options.separator,
        decimal=options.decimal,
        quote=options.quote,
    )


def saved_mapping(session: Session, *, user_id: int | None, kind: str) -> dict[str, str]:
    row = session.scalar(
        select(ImportMapping).where(ImportMapping.user_id == user_id, ImportMapping.kind == kind)
    )
    return dict(row.mapping) if row else {}


def save_mapping(session: Session, *, actor: Any, kind: str, mapping: dict[str, str]) -> None:
    require(actor, "imports.run")
    get_kind(kind)
    user_id = getattr(actor, "id", None)
    row = session.scalar(
        select(ImportMapping).where(ImportMapping.user_id == user_id, ImportMapping.kind == kind)
    )
    clean = {k: v for k, v in mapping.items() if v}
    if row is None:
        session.add(ImportMapping(user_id=user_id, kind=kind, mapping=clean))
    else:
        row.mapping = clean


def preview(session: Session, *, actor: Any, upload_id: int, options: ImportOptions) -> dict[str, Any]:
    """Headers, the first rows as parsed, the detected format and a suggested mapping, with each preview
    row checked against the kind (values as they would be imported, or the reason they would be refused)."""
    options.check()
    upload = get_upload(session, actor=actor, upload_id=upload_id)
    kind = get_kind(options.kind)
    detected = _detect(upload, options)
    saved = saved_mapping(session, user_id=getattr(actor, "id", None), kind=kind.name)
    mapping = options.mapping or suggest_mapping(kind, detected.headers, saved)
    checked: list[dict[str, Any]] = []
    problems: list[dict[str, str]] = []
    try:
        columns = resolve_mapping(kind, detected.headers, mapping)
    except ValidationFailed as exc:
        columns = None
        problems = list(exc.data.get("errors", []))
    if columns is not None and detected.rows:
        checked = _check_preview(kind, detected, columns, options.timezone)
    fmt = detected.format.describe() if detected.format else {}
    return {
        "upload": upload_info(upload),
        "kind": kind.describe(),
        "file_type": detected.file_type,
        "format": {
            **fmt,
            "decimal": "," if detected.decimal_comma else ".",
            "sheet": detected.sheet,
            "sheets": detected.sheets,
        },
        "headers": detected.headers,
        "rows": detected.rows,
        "mapping": mapping,
        "saved_mapping": saved,
        "mapping_problems": problems,
        "checked": checked,
        "warnings": detected.warnings,
    }


def _check_preview(kind: ImportKind, detected: Any, columns: dict[str, int], tz: str) -> list[dict[str, Any]]:
    width = len(detected.headers)
    rows = [list(r[:width]) + [""] * (width - len(r)) for r in detected.rows]
    frame = pl.DataFrame(
        [[r[i] for r in rows] for i in range(width)],
        schema={f"c{i}": pl.String for i in range(width)},
        orient="col",
    )
    counts = (
        np.array([len(r) for r in detected.rows], dtype=np.int64) if detected.file_type == "csv" else None
    )
    batch = RawBatch(
        frame=frame, lines=np.arange(2, 2 + len(rows), dtype=np.int64), field_counts=counts, bytes_done=0
    )
    result = validate_batch(
        kind, batch, headers=detected.headers, columns=columns, decimal_comma=detected.decimal_comma, tz=tz
    )
    by_line: dict[int, dict[str, Any]] = {}
    for row in result.valid.iter_rows(named=True):
        line = row.pop("line")
        by_line[line] = {"line": line, "values": {k: _display(v) for k, v in row.items()}, "errors": {}}
    for rej in result.rejects.iter_rows(named=True):
        entry = by_line.setdefault(rej["line"], {"line": rej["line"], "values": {}, "errors": {}})
        entry["errors"][rej["column"] or "linha"] = rej["reason"]
    return [by_line[k] for k in sorted(by_line)]


def _display(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


# Starting and following -----------------------------------------------------------------------------------


def start_import(
    session: Session, *, actor: Any, upload_id: int, options: ImportOptions, remember_mapping: bool = True
) -> Job:
    """Check the mapping against the file, remember it for the user, and create the import job."""
    from engine.jobs import create_job

    require(actor, "imports.run")
    options.check()
    upload = get_upload(session, actor=actor, upload_id=upload_id)
    if upload.status == "importing":
        raise ValidationFailed(
            f"O arquivo {upload.filename!r} já está sendo importado (job {upload.job_id})."
        )
    kind = get_kind(options.kind)
    detected = _detect(upload, options)
    if not options.mapping:
        options.mapping = suggest_mapping(
            kind, detected.headers, saved_mapping(session, user_id=getattr(actor, "id", None), kind=kind.name)
        )
    resolve_mapping(kind, detected.headers, options.mapping)
    if remember_mapping:
        save_mapping(session, actor=actor, kind=kind.name, mapping=options.mapping)
    job = create_job(
        session,
        kind="import",
        owner=actor,
        params={"upload_id": upload.id, "filename": upload.filename, **options.as_params()},
    )
    upload.job_id = job.id
    upload.status = "importing"
    return job


def import_status(session: Session, *, actor: Any, job_id: int, settings: Settings) -> dict[str, Any]:
    """The job's progress and summary, with a fresh download link for the rejected-rows report."""
    from engine.jobs import get_job

    job = get_job(session, actor=actor, job_id=job_id)
    if job.kind != "import":
        raise NotFound(f"O job {job_id} não é uma importação.", entity="job", key=job_id)
    summary = dict(job.result or job.counters or {})
    report = summary.get("report") or {}
    if report.get("key"):
        from engine.storage import get_storage

        report = dict(report)
        report["url"] = get_storage(settings).signed_url(report["key"], filename=report.get("filename"))
        summary["report"] = report
    return {
        "job_id": job.id,
        "status": job.status,
        "progress": job.progress,
        "message": job.message,
        "error": job.error,
        "params": dict(job.params or {}),
        "summary": summary,
    }


def report_link(session: Session, *, actor: Any, job_id: int, settings: Settings) -> str:
    status = import_status(session, actor=actor, job_id=job_id, settings=settings)
    report = status["summary"].get("report") or {}
    if not report.get("url"):
        raise NotFound("Esta importação não tem linhas rejeitadas.", entity="report", key=job_id)
    return report["url"]


# Running --------------------------------------------------------------------------------------------------

ProgressFn = Callable[[float, str, dict[str, Any]], None]


class _Prefetch:
    """Runs a generator in a thread, one item ahead, so parsing overlaps the database work."""

    _END = object()

    def __init__(self, items: Iterator[Any], depth: int = 1) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(items,), name="import-reader", daemon=True)
        self._thread.start()

    def _run(self, items: Iterator[Any]) -> None:
        try:
            for item in items:
                while not self._stop.is_set():
                    try:
                        self._queue.put((True, item), timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
            self._put((True, self._END))
        except BaseException as exc:  # handed to the consumer, raised there
            self._put((False, exc))

    def _put(self, item: Any) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def __iter__(self) -> Iterator[Any]:
        while True:
            ok, item = self._queue.get()
            if not ok:
                raise item
            if item is self._END:
                return
            yield item

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                self._queue.get_nowait()
        self._thread.join(timeout=10)


@dataclass
class _Counters:
    bytes_total: int = 0
    bytes_read: int = 0
    rows_read: int = 0
    rows_valid: int = 0
    rows_rejected: int = 0
    blank_lines: int = 0
    duplicates: int = 0
    rows_merged: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class _Run:
    """Validated rows on their way to the staging table, staged as runs sorted by key and deduplicated.

    A file whose rows fit in ``RUN_BUDGET_BYTES`` is one run: the database then inserts it in key order
    with no DISTINCT. A bigger file is deduplicated by the database anyway (``Loader.merge`` does it when
    there are several runs), so once the budget is passed the rows are staged in runs of
    ``SPILL_RUN_BYTES`` (sorted runs still make the database's sort quicker). Memory stays at one run whatever
    the file size."""

    def __init__(self, kind: ImportKind, loader: Loader, counters: _Counters) -> None:
        self.kind = kind
        self.loader = loader
        self.counters = counters
        self.frames: list[pl.DataFrame] = []
        self.size = 0
        self.spilling = False

    def add(self, frame: pl.DataFrame) -> None:
        self.frames.append(frame)
        self.size += frame.estimated_size()
        if self.size > (SPILL_RUN_BYTES if self.spilling else RUN_BUDGET_BYTES):
            self.spilling = True
            self._spill()

    def finish(self) -> None:
        if self.spilling:
            self._spill()
        elif self.frames:
            self._stage(self.frames)
            self.size = 0

    def _spill(self) -> None:
        while self.frames:  # the batches held, regrouped into runs of at most SPILL_RUN_BYTES
            part = [self.frames.pop(0)]
            size = part[0].estimated_size()
            while self.frames and size + self.frames[0].estimated_size() <= SPILL_RUN_BYTES:
                size += self.frames[0].estimated_size()
                part.append(self.frames.pop(0))
            self._stage(part)
        self.size = 0

    def _stage(self, frames: list[pl.DataFrame]) -> None:
        rows = sum(f.height for f in frames)
        deduped = _sort_and_dedupe(self.kind, frames)
        self.counters.duplicates += rows - deduped.height
        self.loader.stage(deduped)


def _sort_and_dedupe(kind: ImportKind, frames: list[pl.DataFrame]) -> pl.DataFrame:
    """The rows of ``frames`` (emptied: their memory is released as the rows move) sorted by key, so the
    index is filled in order, keeping the last occurrence of each key.

    Memory stays near one copy of the run: the batches are joined one column at a time (each batch gives its
    column up as it is copied), an index is sorted instead of the rows, and the rows are moved one column at
    a time."""
    names = frames[0].columns
    columns: dict[str, pl.Series] = {}
    for name in names:
        columns[name] = pl.concat([f[name] for f in frames], rechunk=True) if len(frames) > 1 else frames[0][name]
        frames[:] = [f.drop(name) for f in frames]
    frames.clear()
    order = _key_order(columns) if list(kind.key) == ["sensor_id", "ts"] else None
    if order is None:
        key_columns = list(kind.key)
        ranked = pl.DataFrame(columns).sort(key_columns, maintain_order=True)
        differs = pl.any_horizontal([(pl.col(k) != pl.col(k).shift(-1)) for k in key_columns])
        return ranked.filter(differs.fill_null(True))
    for name in names:
        columns[name] = columns[name].gather(order)  # the unsorted column is freed here
    return pl.DataFrame(columns)


def _key_order(columns: dict[str, pl.Series]) -> pl.Series | None:
    """Positions of the last row of each (sensor_id, ts), in key order; None when one int64 cannot hold the
    key (or a key is null): the caller then sorts by both columns."""
    ids, ts = columns["sensor_id"], columns["ts"]
    if not len(ids) or ids.null_count() or ts.null_count():
        return None
    us = ts.dt.epoch("us").to_numpy()
    lo, hi = int(us.min()), int(us.max())
    top = max(abs(int(ids.min())), abs(int(ids.max())))  # SQLite uses provisional negative ids
    if (top + 1) * (hi - lo + 1) >= 2**62:
        return None
    key = ids.to_numpy().astype(np.int64)  # in place from here: one int64 array, no temporaries
    key *= hi - lo + 1
    key -= lo
    key += us
    del us
    order = np.argsort(key)  # quick (SIMD), but the order of equal keys is arbitrary...
    last = _last_of_key(key, order)
    if not last.all():  # ...so when keys repeat, sort again keeping the file order: the last one comes last
        order = np.argsort(key, kind="stable")
        order = order[_last_of_key(key, order)]
    del key
    return pl.Series("order", order.astype(np.uint32))


def _last_of_key(key: np.ndarray, order: np.ndarray) -> np.ndarray:
    """For each position of ``order`` (which sorts ``key``): is the next row's key different?"""
    last = np.empty(len(order), dtype=bool)
    last[-1] = True
    for start in range(0, len(order) - 1, _COMPARE_STEP):  # in slices: no sorted copy of the whole key
        ranked = key[order[start : start + _COMPARE_STEP + 1]]
        np.not_equal(ranked[1:], ranked[:-1], out=last[start : start + len(ranked) - 1])
    return last


def _stage_frame(kind: ImportKind, valid: pl.DataFrame, loader: Loader) -> pl.DataFrame:
    """Validated rows in the staging table's shape (the leituras kind resolves sensor codes to ids)."""
    frame = valid.with_columns(pl.col("line").cast(pl.Int32))
    if kind.name == "leituras":
        codes = frame["sensor"].unique().to_list()
        ids = loader.sensor_ids(codes)
        lookup = pl.DataFrame(
            {"sensor": list(ids), "sensor_id": list(ids.values())},
            schema={"sensor": pl.String, "sensor_id": pl.Int32},
        )
        frame = frame.join(lookup, on="sensor", how="left", maintain_order="left")
    frame = frame.select([c.name for c in kind.stage])
    return loader.encode_dictionaries(frame)


def _open_source(
    path: str, file_type: str, options: ImportOptions
) -> tuple[Any, list[str], bool, dict[str, Any]]:
    if file_type == "xlsx":
        source = XlsxSource(path, options.sheet)
        decimal_comma = options.decimal != "."
        return source, source.headers, decimal_comma, {"sheet": source.sheet}
    detected = detect_csv(
        path,
        encoding=options.encoding,
        separator=options.separator,
        decimal=options.decimal,
        quote=options.quote,
    )
    fmt = detected.format
    assert isinstance(fmt, CsvFormat)
    source = CsvSource(path, fmt)
    return source, detected.headers, fmt.decimal_comma, fmt.describe()


def _prepare_xlsx(source: XlsxSource, kind: ImportKind, columns: dict[str, int]) -> None:
    """Mixed spreadsheet columns (numbers and text): reload numeric/date cells with their type."""
    for name, index in columns.items():
        spec = kind.field(name)
        column = f"c{index}"
        if source.frame.schema[column] != pl.String or spec.type not in ("decimal", "timestamp"):
            continue
        typed = source.reload_column(index, "float" if spec.type == "decimal" else "datetime")
        source.frame = source.frame.with_columns(typed.alias(f"{column}__typed"))


def run_import(
    settings: Settings,
    *,
    path: str,
    file_type: str,
    filename: str,
    options: ImportOptions,
    owner: Any,
    job_id: int | None = None,
    upload_id: int | None = None,
    progress: ProgressFn | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Import one file. Returns the summary; raises ``ImportRefused`` (with the summary) when the file is
    refused, ``engine.jobs.JobCancelled`` when cancelled. The target changes only if this returns."""
    from engine.jobs import JobCancelled

    options.check()
    kind = get_kind(options.kind)
    started = time.monotonic()
    progress = progress or (lambda *_: None)
    should_cancel = should_cancel or (lambda: False)
    counters = _Counters(bytes_total=os.path.getsize(path))
    summary: dict[str, Any] = {"kind": kind.name, "mode": options.mode, "filename": filename}
    report = RejectReport(work_dir(settings))
    loader = make_loader(settings, kind, mode=options.mode, owner_id=getattr(owner, "id", None))
    reader: _Prefetch | None = None
    try:
        source, headers, decimal_comma, fmt = _open_source(path, file_type, options)
        if not options.mapping:
            options.mapping = suggest_mapping(kind, headers)
        summary.update(mapping=dict(options.mapping), format=fmt)
        columns = resolve_mapping(kind, headers, options.mapping)
        if isinstance(source, XlsxSource):
            _prepare_xlsx(source, kind, columns)
        loader.begin()
        run = _Run(kind, loader, counters)
        last_poll = 0.0

        def report_progress(phase: str, fraction: float) -> None:
            elapsed = time.monotonic() - started
            eta = elapsed / fraction - elapsed if fraction > 0.02 else None
            rate = counters.rows_read / elapsed if elapsed > 0 else 0
            progress(
                fraction * 100,
                phase,
                {
                    **counters.as_dict(),
                    "phase": phase,
                    "eta_seconds": round(eta, 1) if eta is not None else None,
                    "rows_per_second": round(rate),
                },
            )

        merge_share = _merge_share(settings, counters.bytes_total)
        timings = summary.setdefault("timings", {"validate": 0.0, "stage": 0.0})
        reader = _Prefetch(source.batches())
        for batch in reader:
            mark = time.monotonic()
            result = validate_batch(
                kind,
                batch,
                headers=headers,
                columns=columns,
                decimal_comma=decimal_comma,
                tz=options.timezone,
            )
            report.add(result.rejects)
            timings["validate"] += time.monotonic() - mark
            counters.bytes_read = batch.bytes_done
            counters.rows_read += result.rows_read
            counters.rows_rejected += result.rows_rejected
            counters.rows_valid += result.valid.height
            counters.blank_lines += batch.blank_lines
            if result.valid.height:
                mark = time.monotonic()
                run.add(_stage_frame(kind, result.valid, loader))
                timings["stage"] += time.monotonic() - mark
            del batch, result  # not held while the next batch is awaited
            now = time.monotonic()
            if now - last_poll >= CANCEL_POLL_SECONDS:
                last_poll = now
                if should_cancel():
                    raise JobCancelled()
                read_share = counters.bytes_read / max(1, counters.bytes_total)
                report_progress("lendo", read_share * (1 - merge_share))
        reader.close()
        reader = None
        timings["read_total"] = time.monotonic() - started
        mark = time.monotonic()
        run.finish()
        timings["stage"] += time.monotonic() - mark
        report.close()
        summary.update(counters.as_dict())
        summary["report"] = _store_report(settings, report, job_id=job_id, filename=filename)
        _check_refusal(counters, options, summary)
        if should_cancel():
            raise JobCancelled()
        report_progress("mesclando", 1 - merge_share)
        mark = time.monotonic()
        with CancelWatcher(loader, should_cancel) as watcher:
            try:
                merged = loader.merge(mapped=set(columns))
            except Exception:
                if watcher.fired:
                    raise JobCancelled() from None
                raise
        timings["merge"] = time.monotonic() - mark
        summary.update(merged.as_dict(loader.staged_rows))
        summary["duplicates"] += counters.duplicates
        summary["sensors_created"] = loader.sensors_created
        summary["rows_skipped"] = summary.pop("rows_unchanged")
        counters.duplicates = summary["duplicates"]
        counters.rows_merged = summary["rows_merged"]
        seconds = time.monotonic() - started
        summary["seconds"] = round(seconds, 3)
        summary["rows_per_second"] = round(counters.rows_read / seconds) if seconds > 0 else None
        summary["status"] = "imported"
        loader.drop_stage()
        _record_outcome(loader, summary, owner=owner, upload_id=upload_id, job_id=job_id)
        if should_cancel():
            raise JobCancelled()
        mark = time.monotonic()
        loader.commit()
        timings["commit"] = time.monotonic() - mark
        summary["timings"] = {k: round(v, 3) for k, v in timings.items()}
        progress(100, "concluído", {**counters.as_dict(), "phase": "concluído", "eta_seconds": 0})
        return summary
    except ImportRefused as exc:
        _finish_refused(exc.data.setdefault("summary", summary), started)
        raise
    except FileRefused as exc:
        report.close()
        summary.update(counters.as_dict())
        summary["report"] = _store_report(settings, report, job_id=job_id, filename=filename)
        summary.update(status="refused", reason=exc.message, line=exc.data.get("line"))
        _finish_refused(summary, started)
        raise ImportRefused(
            exc.message, summary=summary, line=exc.data.get("line"), errors=exc.data.get("errors")
        ) from None
    finally:
        if reader is not None:
            reader.close()
        loader.close()
        report.discard()


def _finish_refused(summary: dict[str, Any], started: float) -> None:
    for name in ("duplicates", "rows_merged", "rows_inserted", "rows_updated", "rows_skipped"):
        summary[name] = 0
    summary["seconds"] = round(time.monotonic() - started, 3)


def _merge_share(settings: Settings, size: int) -> float:
    # Share of the total time the merge takes, for progress and ETA (measured: about half on PostgreSQL).
    return 0.5 if settings.is_postgres else 0.4


def _check_refusal(counters: _Counters, options: ImportOptions, summary: dict[str, Any]) -> None:
    if counters.rows_read == 0:
        summary.update(status="refused", reason="O arquivo só tem o cabeçalho; nenhuma linha de dados.")
        raise ImportRefused(summary["reason"], summary=summary)
    share = counters.rows_rejected / counters.rows_read
    if share > options.max_invalid_share:
        pct = f"{share * 100:.1f}".replace(".", ",")
        limit = f"{options.max_invalid_share * 100:.1f}".replace(".", ",")
        summary.update(
            status="refused",
            reason=(
                f"Arquivo recusado: {counters.rows_rejected} de {counters.rows_read} linhas ({pct}%) "
                f"são inválidas, "
                f"acima do limite de {limit}%. Nada foi importado; veja o relatório de linhas rejeitadas."
            ),
        )
        raise ImportRefused(summary["reason"], summary=summary)
    if counters.rows_valid == 0:
        summary.update(status="refused", reason="Nenhuma linha válida para importar; veja o relatório.")
        raise ImportRefused(summary["reason"], summary=summary)


def _store_report(
    settings: Settings, report: RejectReport, *, job_id: int | None, filename: str
) -> dict[str, Any] | None:
    if report.entries == 0:
        return None
    from engine.storage import get_storage

    stem = Path(filename).stem[:80] or "importacao"
    name = f"rejeitadas-{stem}.csv"
    key = f"imports/{job_id or uuid.uuid4().hex}/rejeitadas.csv"
    with open(report.path, "rb") as f:
        info = get_storage(settings).put(key, f, content_type="text/csv")
    return {"key": key, "filename": name, "entries": report.entries, "size": info.size}


def _record_outcome(
    loader: Loader, summary: dict[str, Any], *, owner: Any, upload_id: int | None, job_id: int | None
) -> None:
    """Upload status and audit row, in the import's own transaction (atomic with the data)."""
    with loader.session() as session:
        if upload_id is not None:
            session.execute(
                update(Upload)
                .where(Upload.id == upload_id)
                .values(status="imported", summary=summary, job_id=job_id)
            )
        audit.record(
            session,
            actor=owner,
            action="import.run",
            entity_type="import",
            entity_id=job_id or "",
            after={
                k: summary.get(k)
                for k in (
                    "kind",
                    "mode",
                    "filename",
                    "rows_read",
                    "rows_rejected",
                    "rows_merged",
                    "duplicates",
                )
            },
        )
        session.commit()  # releases the savepoint; the import's transaction commits later
