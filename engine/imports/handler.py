"""The ``import`` job handler and the ``oficina import`` command."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from engine.brazil import format_int
from engine.db import session_scope
from engine.errors import NotFound
from engine.imports.service import (
    CANCEL_POLL_SECONDS,
    ImportOptions,
    ImportRefused,
    register_local_file,
    remove_upload_file,
    run_import,
    start_import,
)
from engine.jobs import JobCancelled, JobContext, job_handler
from engine.models import User, utcnow
from engine.models.imports import Upload
from engine.security import SYSTEM

OPTION_NAMES = (
    "kind",
    "mode",
    "mapping",
    "encoding",
    "separator",
    "decimal",
    "quote",
    "sheet",
    "max_invalid_share",
    "timezone",
)


@job_handler("import")
def import_job(ctx: JobContext) -> dict[str, Any]:
    params = ctx.params
    with ctx.session() as s:
        upload = s.get(Upload, params.get("upload_id"))
        if upload is None:
            raise NotFound(f"Arquivo enviado {params.get('upload_id')} não encontrado.", entity="upload")
        if upload.status == "imported" and upload.job_id == ctx.job_id and upload.summary:
            return dict(upload.summary)  # delivered again after the import committed: nothing to redo
        if upload.status == "removed" or not Path(upload.path).is_file():
            raise NotFound(
                f"O arquivo {upload.filename!r} já foi removido do servidor; envie-o de novo.",
                entity="upload",
                key=upload.id,
            )
        owner = s.get(User, ctx.owner_id) if ctx.owner_id is not None else SYSTEM
        upload.status, upload.job_id = "importing", ctx.job_id
        path, file_type, filename, upload_id = upload.path, upload.file_type, upload.filename, upload.id
    options = ImportOptions(**{k: params[k] for k in OPTION_NAMES if k in params})
    last = {"at": 0.0, "value": False}

    def should_cancel() -> bool:
        now = time.monotonic()
        if now - last["at"] >= CANCEL_POLL_SECONDS:
            last["at"], last["value"] = now, ctx.cancel_requested()
        return bool(last["value"])

    def progress(percent: float, phase: str, counters: dict[str, Any]) -> None:
        message = (
            f"{phase}: {format_int(counters.get('rows_read', 0))} linhas lidas, "
            f"{format_int(counters.get('rows_rejected', 0))} rejeitadas"
        )
        ctx.progress(percent, message=message, counters=counters, force=phase == "concluído")

    outcome = "failed"
    try:
        summary = run_import(
            ctx.settings,
            path=path,
            file_type=file_type,
            filename=filename,
            options=options,
            owner=owner,
            job_id=ctx.job_id,
            upload_id=upload_id,
            progress=progress,
            should_cancel=should_cancel,
        )
        outcome = "imported"
        ctx.progress(100, message=_done_message(summary), counters=summary, force=True)
        return summary
    except ImportRefused as exc:
        ctx.progress(message=exc.message, counters=exc.data.get("summary") or {}, force=True)
        _mark(ctx, upload_id, "failed", exc.data.get("summary"))
        raise
    except JobCancelled:
        _mark(ctx, upload_id, "failed", {"status": "cancelled"})
        raise
    except Exception:
        _mark(ctx, upload_id, "failed", None)
        raise
    finally:
        _remove_file(ctx, upload_id, keep_status=outcome == "imported")


def _done_message(summary: dict[str, Any]) -> str:
    seconds = str(summary.get("seconds", 0)).replace(".", ",")
    return (
        f"Importadas {format_int(summary.get('rows_merged', 0))} linhas "
        f"({format_int(summary.get('rows_rejected', 0))} rejeitadas, "
        f"{format_int(summary.get('duplicates', 0))} duplicadas) em {seconds} s"
    )


def _mark(ctx: JobContext, upload_id: int, status: str, summary: dict[str, Any] | None) -> None:
    with ctx.session() as s:
        upload = s.get(Upload, upload_id)
        if upload is not None and upload.status != "imported":
            upload.status = status
            if summary is not None:
                upload.summary = summary


def _remove_file(ctx: JobContext, upload_id: int, *, keep_status: bool) -> None:
    """The uploaded file is not needed once its import ended, whatever the outcome."""
    with ctx.session() as s:
        upload = s.get(Upload, upload_id)
        if upload is None or upload.external:
            return
        remove_upload_file(upload)
        upload.removed_at = utcnow()
        if not keep_status:
            upload.status = "removed"


# CLI ------------------------------------------------------------------------------------------------------


def _parse_map(items: list[str]) -> dict[str, str]:
    from engine.errors import ValidationFailed

    mapping: dict[str, str] = {}
    for item in items:
        column, sep, fname = item.rpartition("=")
        if not sep or not column or not fname:
            raise ValidationFailed(f"--map espera COLUNA=CAMPO, recebido {item!r}.")
        mapping[fname.strip()] = column.strip()
    return mapping


def _progress_line(percent: int, counters: dict[str, Any], message: str | None) -> str:
    """``  42%  12.345 linhas lidas, 3 rejeitadas · <job message>`` for the CLI's stderr."""
    counts = (f"{format_int(counters.get('rows_read', 0))} linhas lidas, "
              f"{format_int(counters.get('rows_rejected', 0))} rejeitadas")
    return f"  {percent:>3}%  {counts}" + (f" · {message}" if message else "")


def cmd_import(args: argparse.Namespace) -> int:
    from engine import queue as queue_port
    from engine.jobs import cancel_job
    from engine.models import Job
    from engine.settings import get_settings

    settings = get_settings()
    options = ImportOptions(
        kind=args.kind,
        mode=args.mode,
        mapping=_parse_map(args.map),
        encoding=args.encoding,
        separator=args.separator,
        decimal=args.decimal,
        sheet=args.sheet,
        max_invalid_share=args.max_invalid_share,
        timezone=args.timezone,
    ).check()
    if args.inline:
        queue_port.install(queue_port.InlineQueue(settings))
    with session_scope(settings) as s:
        upload = register_local_file(s, actor=SYSTEM, path=args.file)
        job = start_import(s, actor=SYSTEM, upload_id=upload.id, options=options, remember_mapping=False)
        job_id = job.id
    started = time.monotonic()
    last_line = ""
    try:
        while True:
            with session_scope(settings) as s:
                job = s.get(Job, job_id)
                assert job is not None
                status, counters, result, message, percent = (
                    job.status,
                    dict(job.counters or {}),
                    job.result,
                    job.message,
                    job.progress,
                )
                error = job.error
            line = _progress_line(percent, counters, message)
            if status not in ("queued", "running"):
                if not args.quiet and line != last_line:
                    print(line, file=sys.stderr)  # the last word, even for a job quicker than one poll
                break
            if status == "queued" and time.monotonic() - started > args.wait_start:
                with session_scope(settings) as s, contextlib.suppress(Exception):
                    cancel_job(s, actor=SYSTEM, job_id=job_id)
                print(
                    f"erro: nenhum worker pegou o job {job_id} em {args.wait_start:g} s (fila "
                    f"{settings.queue_name!r}). Inicie `oficina worker` ou use --inline. "
                    "O job foi cancelado.",
                    file=sys.stderr,
                )
                return 2
            if not args.quiet and status == "running" and line != last_line:
                print(line, file=sys.stderr)
                last_line = line
            time.sleep(0.5)
    except KeyboardInterrupt:
        with session_scope(settings) as s, contextlib.suppress(Exception):
            cancel_job(s, actor=SYSTEM, job_id=job_id)
        print(f"Cancelamento do job {job_id} pedido.", file=sys.stderr)
        return 130
    summary = dict(result or counters)
    summary.setdefault("job_id", job_id)
    summary["job_status"] = status
    print(json.dumps(summary, ensure_ascii=False, default=str, indent=2))
    if status != "succeeded":
        print(f"erro: {message or error}", file=sys.stderr)
        return 1
    return 0
