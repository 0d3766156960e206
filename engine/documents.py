"""Court documents: look a processo up, download its documents in the background, tell where each stands.

``lookup_processo`` stores the process metadata from the court and starts (once) a ``documentos`` job;
asking again while it runs returns that job, asking after it finished returns its result unless
``refresh`` is given, which downloads only what is new or failed. Two concurrent lookups of the same
número are serialised by a per-número lock taken after the court call (a PostgreSQL advisory lock, the
SQLite write lock), so they start one job.

The job streams every document from the court through a size- and checksum-checking reader into blob
storage at ``processos/{numero}/documentos/{id}/{nome}``, a few at a time, with per-document retries.
Each Documento moves ``pending → processing → available | failed`` (and ``failed → pending`` on a
refresh); any other move is refused and logged. The job is safe to run twice: finished documents are
skipped, and a document whose object reached storage before a crash is verified, not downloaded again.

``download_status`` reports progress, counters, per-document state and presigned links (regenerated
when expired) and the webhook state; the same data is the webhook payload.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import random
import re
import sys
import threading
import time
import unicodedata
from collections import deque
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, select, text, update
from sqlalchemy.orm import Session

from engine import audit, jobs
from engine.brazil import format_cnj, parse_cnj
from engine.court.client import (
    CourtAuthError,
    CourtClient,
    CourtError,
    CourtNotFound,
    CourtTransferError,
    RetryPolicy,
)
from engine.errors import Conflict, NotFound, ValidationFailed
from engine.models import Job, JobItem, Processo, utcnow
from engine.models.court import DOCUMENT_STATUSES, DOCUMENT_TRANSITIONS, Documento
from engine.security import SYSTEM, require
from engine.settings import Settings, get_settings

log = logging.getLogger(__name__)

JOB_KIND = "documentos"
EVENT_DONE = "processo.documentos.concluido"
LINK_MARGIN = timedelta(minutes=2)  # a link this close to expiring is replaced


# Options ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DownloadOptions:
    """How a download job behaves; copied into the job's params so a running job never changes."""

    batch_size: int = 5
    attempts: int = 5
    backoff_base: float = 1.0
    backoff_cap: float = 60.0
    max_document_mb: int = 1024
    request_retries: int = 4  # the client's own retries of one request (connection errors, 429, 5xx)
    request_backoff: float = 0.5

    @classmethod
    def from_settings(cls, settings: Settings) -> DownloadOptions:
        return cls(
            batch_size=int(getattr(settings, "court_batch_size", cls.batch_size)),
            attempts=int(getattr(settings, "court_document_attempts", cls.attempts)),
            backoff_base=float(getattr(settings, "court_document_backoff_seconds", cls.backoff_base)),
            max_document_mb=int(getattr(settings, "court_max_document_mb", cls.max_document_mb)),
            request_retries=int(getattr(settings, "court_retries", cls.request_retries)),
            request_backoff=float(getattr(settings, "court_retry_base_seconds", cls.request_backoff)),
        )

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> DownloadOptions:
        known = {k: v for k, v in (params or {}).items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def backoff(self, attempt: int, rng: random.Random) -> float:
        ceiling = min(self.backoff_cap, self.backoff_base * (2**attempt))
        return ceiling / 2 + rng.uniform(0, ceiling / 2)


# States -------------------------------------------------------------------------------------------------


class InvalidTransition(Conflict):
    """A Documento was asked to move between two states the life cycle does not connect."""


def move(
    session: Session, doc_id: int, current: str, to: str, *, reason: str = "", label: str = "", **changes: Any
) -> None:
    """Move document ``doc_id`` from ``current`` to ``to`` in one statement, if the life cycle allows it
    and it is still in ``current`` (a compare-and-swap, so two workers cannot both win)."""
    _check_transition(session, doc_id, current, to, reason=reason, label=label)
    values = {"status": to, "updated_at": utcnow(), **changes}
    result = session.execute(
        update(Documento)
        .where(Documento.id == doc_id, Documento.status == current)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        _lost_race(session, doc_id, to, label=label)


def _check_transition(session: Session, doc_id: int, current: str, to: str, *, reason: str, label: str) -> None:
    """Refuse (log, audit, raise ``InvalidTransition``) a move the life cycle does not allow."""
    if to not in DOCUMENT_STATUSES or to not in DOCUMENT_TRANSITIONS.get(current, frozenset()):
        log.warning(
            "documento %s: refused transition %s -> %s (%s)",
            doc_id,
            current,
            to,
            reason,
            extra={"documento_id": doc_id, "from_status": current, "to_status": to},
        )
        audit.record(
            session,
            actor=SYSTEM,
            action="documento.transition_refused",
            entity_type="documento",
            entity_id=doc_id,
            before={"status": current},
            after={"status": to, "reason": reason},
        )
        raise InvalidTransition(
            f"O documento {label or doc_id} não pode passar de {current} para {to}.",
            entity="documento",
            key=doc_id,
            current=current,
            attempted=to,
        )


def _lost_race(session: Session, doc_id: int, to: str, *, label: str) -> None:
    """The compare-and-swap found the document in another state: raise ``InvalidTransition``."""
    now = session.scalar(select(Documento.status).where(Documento.id == doc_id))
    raise InvalidTransition(
        f"O documento {label or doc_id} mudou de estado enquanto isto acontecia ({now}).",
        entity="documento",
        key=doc_id,
        current=now,
        attempted=to,
    )


def transition(
    session: Session, documento: Documento, to: str, *, reason: str = "", **changes: Any
) -> Documento:
    """``move`` for a loaded Documento; the object reflects the new state afterwards."""
    move(
        session,
        documento.id,
        documento.status,
        to,
        reason=reason,
        label=documento.nome or documento.external_id,
        **changes,
    )
    session.refresh(documento)
    return documento


# Names and keys ---------------------------------------------------------------------------------------

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def sanitize_filename(name: str, *, default: str = "documento", limit: int = 120) -> str:
    """A storage- and URL-safe file name: ASCII letters, digits, ``._-``; no path parts, no leading dot."""
    ascii_name = unicodedata.normalize("NFKD", name or "").encode("ascii", "ignore").decode()
    cleaned = _UNSAFE.sub("-", ascii_name)
    cleaned = re.sub(r"\.{2,}", ".", cleaned)
    cleaned = re.sub(r"-{2,}", "-", cleaned).strip(".-_")
    if not cleaned:
        return default
    if len(cleaned) > limit:
        stem, dot, ext = cleaned.rpartition(".")
        cleaned = (stem[: limit - len(ext) - 1] + "." + ext) if dot and len(ext) <= 10 else cleaned[:limit]
    return cleaned


def storage_key(numero: str, external_id: str, nome: str) -> str:
    return (
        f"processos/{numero}/documentos/{sanitize_filename(external_id, default='sem-id')}/"
        f"{sanitize_filename(nome)}"
    )


def parse_numero(numero: str) -> str:
    try:
        return parse_cnj(str(numero))
    except ValueError as exc:
        raise ValidationFailed(str(exc), errors=[{"field": "numero", "message": str(exc)}]) from exc


def dedupe_key(numero: str) -> str:
    return f"{JOB_KIND}:{numero}"


# A reader that checks what it passes on ---------------------------------------------------------------


class VerifyingReader(io.RawIOBase):
    """A file-like view of a chunk iterator that hashes and counts as it goes.

    It refuses to pass more than ``expected_size`` (or ``max_size``) bytes, and at the end of the stream
    raises ``CourtTransferError`` when the size or the SHA-256 differ from what the court declared, so the
    storage upload reading from it fails instead of keeping a truncated or corrupt object."""

    def __init__(
        self,
        chunks: Iterator[bytes],
        *,
        expected_size: int | None,
        expected_sha256: str = "",
        max_size: int,
        on_end: Any = None,
    ) -> None:
        super().__init__()
        self._chunks = iter(chunks)
        self._buffer = b""
        self._done = False
        self.expected_size = expected_size
        self.expected_sha256 = expected_sha256.lower()
        self.max_size = max_size
        self.size = 0
        self._digest = hashlib.sha256()
        self.on_end = on_end  # called once the whole body arrived and checked

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        while not self._buffer and not self._done:
            try:
                chunk = next(self._chunks)
            except StopIteration:
                self._done = True
                self._verify_end()
                if self.on_end is not None:
                    self.on_end()
                break
            self._accept(chunk)
            self._buffer = chunk
        if not self._buffer:
            return 0
        n = min(len(target), len(self._buffer))
        target[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n

    def _accept(self, chunk: bytes) -> None:
        self.size += len(chunk)
        limit = self.expected_size if self.expected_size is not None else self.max_size
        if self.size > limit:
            raise CourtTransferError(
                f"O documento passou do tamanho esperado ({limit} bytes).",
                reason="too_long",
                size=self.size,
                expected=limit,
            )
        self._digest.update(chunk)

    def _verify_end(self) -> None:
        if self.expected_size is not None and self.size != self.expected_size:
            raise CourtTransferError(
                f"Documento incompleto: recebidos {self.size} de {self.expected_size} bytes.",
                reason="truncated",
                size=self.size,
                expected=self.expected_size,
            )
        if self.expected_sha256 and self.sha256 != self.expected_sha256:
            raise CourtTransferError(
                "O conteúdo recebido não confere com o hash informado pelo tribunal.",
                reason="checksum",
                sha256=self.sha256,
                expected=self.expected_sha256,
            )


def _declared_sha256(raw: str) -> str:
    value = (raw or "").strip().lower()
    if value.startswith("sha256:"):
        value = value[7:]
    return value if re.fullmatch(r"[0-9a-f]{64}", value) else ""


# Lookup -------------------------------------------------------------------------------------------------


@dataclass
class LookupResult:
    processo: Processo
    job: Job | None
    started: bool  # True when this call created the job
    state: str  # "started", "running" (an earlier job is active), "finished" (stored result), "stored"


def get_processo(session: Session, *, numero: str) -> Processo | None:
    return session.scalar(
        select(Processo).where(Processo.numero == numero).execution_options(populate_existing=True)
    )


def latest_job(session: Session, *, numero: str) -> Job | None:
    return session.scalar(
        select(Job)
        .where(Job.dedupe_key == dedupe_key(numero))
        .order_by(Job.id.desc())
        .limit(1)
        .execution_options(populate_existing=True)
    )


def list_documentos(session: Session, *, processo_id: int) -> list[Documento]:
    return list(
        session.scalars(
            select(Documento)
            .where(Documento.processo_id == processo_id)
            .order_by(Documento.data_documento, Documento.id)
            .execution_options(populate_existing=True)
        )
    )


def _lock_numero(session: Session, numero: str) -> None:
    """Hold a lock on this número until the session ends, so concurrent lookups go one at a time."""
    if session.get_bind().dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha256(dedupe_key(numero).encode()).digest()[:8], "big", signed=True)
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
    else:
        # A write that touches nothing still takes SQLite's single write lock until commit.
        session.execute(text("UPDATE processos SET numero = numero WHERE 1 = 0"))


def lookup_processo(
    session: Session,
    *,
    actor: Any,
    numero: str,
    refresh: bool = False,
    webhook_url: str | None = None,
    auto_download: bool | None = None,
    client: CourtClient | None = None,
    options: DownloadOptions | None = None,
    settings: Settings | None = None,
    resolver: Any = None,
) -> LookupResult:
    """Look a processo up and start (once) the download of its documents. Returns at once.

    Only calls the court when the processo is unknown or ``refresh`` is asked for. ``webhook_url`` is
    validated (SSRF guard) and notified when the job ends (at once when it already ended)."""
    from engine import webhooks

    require(actor, "processos.fetch")
    settings = settings or get_settings()
    numero = parse_numero(numero)
    if auto_download is None:
        auto_download = bool(getattr(settings, "court_auto_download", True))
    if webhook_url:
        webhooks.validate_url(webhook_url, settings=settings, resolver=resolver)

    decided = _existing_result(session, numero=numero, refresh=refresh, auto_download=auto_download)
    metadata: dict[str, Any] | None = None
    if decided is None and (refresh or get_processo(session, numero=numero) is None):
        metadata = _fetch_metadata(settings, numero, client)

    _lock_numero(session, numero)
    decided = _existing_result(session, numero=numero, refresh=refresh, auto_download=auto_download)
    if decided is None:
        processo = get_processo(session, numero=numero)
        if metadata is not None:
            processo = _store_metadata(session, actor=actor, numero=numero, metadata=metadata)
        assert processo is not None
        job = None
        if auto_download:
            opts = options or DownloadOptions.from_settings(settings)
            job = jobs.create_job(
                session,
                kind=JOB_KIND,
                owner=actor,
                dedupe_key=dedupe_key(numero),
                params={"processo_id": processo.id, "numero": numero, "refresh": refresh, **asdict(opts)},
            )
        decided = LookupResult(processo, job, started=job is not None, state="started" if job else "stored")
    if webhook_url and decided.job is not None:
        webhooks.subscribe(
            session,
            actor=actor,
            url=webhook_url,
            job=decided.job,
            processo=decided.processo,
            event_type=EVENT_DONE,
            settings=settings,
            resolver=resolver,
        )
    return decided


def _existing_result(
    session: Session, *, numero: str, refresh: bool, auto_download: bool
) -> LookupResult | None:
    processo = get_processo(session, numero=numero)
    if processo is None:
        return None
    job = latest_job(session, numero=numero)
    if job is not None and job.is_active:
        return LookupResult(processo, job, started=False, state="running")
    if refresh:
        return None
    if job is not None:
        return LookupResult(processo, job, started=False, state="finished")
    if not auto_download:
        return LookupResult(processo, None, started=False, state="stored")
    return None


def _fetch_metadata(settings: Settings, numero: str, client: CourtClient | None) -> dict[str, Any]:
    if client is not None:
        return client.get_processo(numero)
    with CourtClient.from_settings(settings) as own:
        return own.get_processo(numero)


def _parse_when(raw: Any) -> datetime | None:
    if not isinstance(raw, str) or not raw:
        return None
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _text(value: Any, limit: int) -> str:
    """Court-provided text as we store it: no control characters (PostgreSQL refuses NUL), bounded."""
    return _CONTROL.sub(" ", str(value if value is not None else "")).strip()[:limit]


def _json_safe(value: Any, depth: int = 0) -> Any:
    """The metadata JSON without NUL characters (which JSONB refuses), nested at most 20 levels."""
    if depth > 20:
        return None
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, list):
        return [_json_safe(v, depth + 1) for v in value]
    if isinstance(value, dict):
        return {str(k).replace("\x00", ""): _json_safe(v, depth + 1) for k, v in value.items()}
    return value


def _store_metadata(session: Session, *, actor: Any, numero: str, metadata: dict[str, Any]) -> Processo:
    """Upsert the processo and its document list: new documents start pending, failed ones go back to
    pending, available ones stay as they are."""
    processo = get_processo(session, numero=numero)
    created = processo is None
    if processo is None:
        processo = Processo(numero=numero)
        session.add(processo)
    metadata = _json_safe(metadata)
    classe = metadata.get("classe")
    assuntos = metadata.get("assuntos") if isinstance(metadata.get("assuntos"), list) else []
    processo.tribunal = _text(metadata.get("tribunal"), 20)
    processo.classe = _text(classe.get("nome") if isinstance(classe, dict) else classe, 200)
    first = assuntos[0] if assuntos else ""
    processo.assunto = _text(first.get("nome") if isinstance(first, dict) else first, 300)
    partes = metadata.get("partes")
    processo.partes = [p for p in partes if isinstance(p, dict)][:200] if isinstance(partes, list) else []
    processo.metadados = {k: v for k, v in metadata.items() if k not in {"documentos", "partes"}}
    processo.last_fetched_at = utcnow()
    session.flush()

    known = {d.external_id: d for d in list_documentos(session, processo_id=processo.id)}
    seen: set[str] = set()
    added = reset = 0
    for raw in metadata.get("documentos") or []:
        if not isinstance(raw, dict) or not str(raw.get("id") or "").strip():
            continue
        ext = _text(raw["id"], 100)
        if ext in seen:  # a court listing the same document twice
            continue
        seen.add(ext)
        tamanho = raw.get("tamanho")
        doc = known.get(ext)
        if doc is None:
            doc = Documento(processo_id=processo.id, external_id=ext, status="pending")
            session.add(doc)
            added += 1
        elif doc.status == "failed":
            transition(session, doc, "pending", reason="refresh", last_error="")
            reset += 1
        if doc.status in ("pending", "failed"):
            doc.nome = _text(raw.get("nome"), 300) or f"documento-{ext}.pdf"
            doc.tipo = _text(raw.get("tipo"), 80)
            doc.data_documento = _parse_when(raw.get("data"))
            doc.tamanho = int(tamanho) if isinstance(tamanho, int) and tamanho >= 0 else None
            doc.hash_declarado = str(raw.get("hash") or "")[:100]
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="processo.fetch" if created else "processo.refresh",
        entity_type="processo",
        entity_id=numero,
        after={"documentos": len(metadata.get("documentos") or []), "novos": added, "reabertos": reset},
    )
    return processo


# The download job ---------------------------------------------------------------------------------------


class _Progress:
    """Thread-safe counters for one job run, written through the JobContext."""

    def __init__(self, ctx: jobs.JobContext, counts: dict[str, int]) -> None:
        self.ctx = ctx
        self.counts = counts
        self.lock = threading.Lock()
        self.last_check = 0.0

    def check_cancelled(self, every: float = 0.5) -> None:
        """The job's cancellation check, at most every ``every`` seconds across the download threads."""
        with self.lock:
            due = time.monotonic() - self.last_check >= every
            if due:
                self.last_check = time.monotonic()
        if due:
            self.ctx.check_cancelled()

    def move(self, old: str | None, new: str, *, force: bool = False) -> None:
        with self.lock:
            if old:
                self.counts[old] = max(0, self.counts.get(old, 0) - 1)
            self.counts[new] = self.counts.get(new, 0) + 1
            total = self.counts.get("total", 0) or 1
            done = self.counts.get("available", 0) + self.counts.get("failed", 0)
            counters = dict(self.counts)
        self.ctx.progress(
            100 * done / total,
            counters=counters,
            force=force,
            message=f"{counters.get('available', 0)} de {counters.get('total', 0)} documentos disponíveis",
        )


def _status_counts(session: Session, processo_id: int) -> dict[str, int]:
    rows = session.execute(
        select(Documento.status, func.count(Documento.id))
        .where(Documento.processo_id == processo_id)
        .group_by(Documento.status)
    ).all()
    counts = {status: 0 for status in DOCUMENT_STATUSES}
    counts.update({status: n for status, n in rows})
    counts["total"] = sum(n for _, n in rows)
    return counts


@jobs.job_handler(JOB_KIND, label="Download de documentos", permission="processos.fetch")
def run_download_job(ctx: jobs.JobContext) -> dict[str, Any]:
    """Download every pending document of the processo; safe to run twice (see the module docstring)."""
    from engine.storage import get_storage

    opts = DownloadOptions.from_params(ctx.params)
    processo_id = int(ctx.params["processo_id"])
    with ctx.session() as s:
        processo = s.get(Processo, processo_id)
        if processo is None:
            raise NotFound(f"Processo {processo_id} não existe mais.", entity="processo", key=processo_id)
        numero = processo.numero
        job = s.get(Job, ctx.job_id)
        if job is not None and job.retry_of_id is not None:  # "retry" on the jobs page: failed ones again
            for failed in s.scalars(
                select(Documento).where(Documento.processo_id == processo_id, Documento.status == "failed")
            ):
                transition(s, failed, "pending", reason=f"retry by job {ctx.job_id}", last_error="")
        docs = list_documentos(s, processo_id=processo_id)
        counts = _status_counts(s, processo_id)
        todo = [d.id for d in docs if d.status in ("pending", "processing")]
        labels = [(f"doc-{d.external_id}", d.nome or d.external_id) for d in docs]
    ctx.set_items(labels)
    items = ctx.items() if any(d.status in ("available", "failed") for d in docs) else {}
    for d in docs:
        if d.status in ("available", "failed") and items.get(f"doc-{d.external_id}") == "pending":
            ctx.set_item(
                f"doc-{d.external_id}", "skipped" if d.status == "available" else "failed", error=d.last_error
            )
    progress = _Progress(ctx, counts)
    progress.ctx.progress(
        None,
        counters=dict(counts),
        force=True,
        message=f"Baixando {len(todo)} de {counts['total']} documentos",
    )
    storage = get_storage(ctx.settings)
    cancelled = threading.Event()
    retry = RetryPolicy(retries=opts.request_retries, base=opts.request_backoff)
    waiting = deque(todo)
    in_flight: dict[Future[_Outcome], int] = {}
    window = max(1, opts.batch_size)
    # At most `window` requests are open at the court; twice as many threads let storage finish writing
    # one document (fsync, rename) while the next request already runs.
    slots = threading.Semaphore(window)
    with (
        CourtClient.from_settings(ctx.settings, max_connections=window * 2, retry=retry) as client,
        ThreadPoolExecutor(max_workers=2 * window, thread_name_prefix=f"doc-{ctx.job_id}") as pool,
    ):
        try:
            while waiting or in_flight:
                if waiting and len(in_flight) <= 2 * window:
                    # Claim the next small batch in one transaction; keep a batch queued behind the
                    # running ones so the pool never waits for the database.
                    progress.check_cancelled()
                    batch = [waiting.popleft() for _ in range(min(3 * window - len(in_flight), len(waiting)))]
                    for doc in _claim_batch(ctx, batch, progress):
                        future = pool.submit(
                            _download_one,
                            ctx,
                            doc,
                            numero=numero,
                            client=client,
                            storage=storage,
                            opts=opts,
                            cancelled=cancelled,
                            slot=_Slot(slots),
                        )
                        in_flight[future] = doc.id
                    if not in_flight:
                        continue
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                outcomes = []
                for future in done:
                    del in_flight[future]
                    outcomes.append(future.result())
                _record(ctx, outcomes, progress)
        except jobs.JobSuperseded:
            cancelled.set()
            raise  # another run owns the job now: it will notify
        except BaseException:
            cancelled.set()
            with ctx.session() as s:  # failed or cancelled: whoever asked still hears how it ended
                _notify_subscribers(s, ctx.job_id)
            raise
    with ctx.session() as s:
        final = _status_counts(s, processo_id)
        progress.counts.update(final)
        ctx.progress(
            100,
            counters=dict(final),
            force=True,
            message=f"{final['available']} disponíveis, {final['failed']} com falha",
        )
        _notify_subscribers(s, ctx.job_id)
    return {"processo": numero, "counters": final}


def _notify_subscribers(session: Session, job_id: int) -> None:
    from engine import webhooks

    webhooks.release_waiting(session, job_id=job_id)


# The download loop's per-document writes, built once. Executing a prebuilt Core statement only binds
# parameters: no statement construction, cache key or ORM bulk-update setup per document, which cost
# ~1 ms of CPU each on the job's main thread, holding the GIL the download threads need to read their
# responses. Each is the same compare-and-swap as ``move`` (the row changes only while still in the
# expected state), run through ``_swap`` which applies ``move``'s life-cycle check first.
_DOCS = Documento.__table__
_ITEMS = JobItem.__table__


def _doc_swap(current: str, to: str, **values: Any) -> Any:
    return (
        update(_DOCS)
        .where(_DOCS.c.id == bindparam("b_doc"), _DOCS.c.status == current)
        .values(status=to, updated_at=bindparam("b_now"), **values)
    )


_TO_PROCESSING = _doc_swap("pending", "processing", job_id=bindparam("b_job"))
_TO_AVAILABLE = _doc_swap(
    "processing",
    "available",
    size=bindparam("b_size"),
    sha256=bindparam("b_sha256"),
    storage_key=bindparam("b_key"),
    content_type=bindparam("b_type"),
    last_error="",
    available_at=bindparam("b_now"),
    link_url="",
    link_expires_at=None,
    attempts=_DOCS.c.attempts + bindparam("b_attempts"),
)
_TO_FAILED = _doc_swap("processing", "failed", last_error=bindparam("b_error"))
_TAKE_OVER = (  # a processing document whose job died (or is this one) becomes this job's
    update(_DOCS)
    .where(
        _DOCS.c.id == bindparam("b_doc"),
        _DOCS.c.status == "processing",
        _DOCS.c.job_id.is_not_distinct_from(bindparam("b_holder")),  # the holder may be NULL (job deleted)
    )
    .values(job_id=bindparam("b_job"), updated_at=bindparam("b_now"))
)
_CLAIMABLE = (
    select(
        _DOCS.c.id,
        _DOCS.c.status,
        _DOCS.c.job_id,
        _DOCS.c.external_id,
        _DOCS.c.nome,
        _DOCS.c.tamanho,
        _DOCS.c.hash_declarado,
    )
    .where(_DOCS.c.id.in_(bindparam("b_docs", expanding=True)))
    .order_by(_DOCS.c.id)
)
_ITEM_STATUS = (
    update(_ITEMS)
    .where(_ITEMS.c.job_id == bindparam("b_job"), _ITEMS.c.key == bindparam("b_item"))
    .values(
        status=bindparam("b_status"),
        error=bindparam("b_error"),
        updated_at=bindparam("b_now"),
        attempts=_ITEMS.c.attempts + bindparam("b_attempts"),
    )
)
_ITEMS_PROCESSING = (
    update(_ITEMS)
    .where(_ITEMS.c.job_id == bindparam("b_job"), _ITEMS.c.key.in_(bindparam("b_items", expanding=True)))
    .values(status="processing", updated_at=bindparam("b_now"))
)


def _swap(
    session: Session, statement: Any, params: dict[str, Any], *, current: str, to: str, reason: str = ""
) -> None:
    """``move`` with one of the prebuilt statements above (``params["b_doc"]`` is the document)."""
    doc_id = params["b_doc"]
    _check_transition(session, doc_id, current, to, reason=reason, label="")
    if session.execute(statement, {"b_now": utcnow(), **params}).rowcount != 1:
        _lost_race(session, doc_id, to, label="")


def _mark_item(
    session: Session, job_id: int, key: str, status: str, *, error: str = "", attempt: bool = False
) -> None:
    """The job's per-item status, written in the same transaction as the document's own change."""
    session.execute(
        _ITEM_STATUS,
        {
            "b_job": job_id,
            "b_item": key,
            "b_status": status,
            "b_error": error[:4000],
            "b_now": utcnow(),
            "b_attempts": 1 if attempt else 0,
        },
    )


@dataclass(frozen=True)
class _Doc:
    """What a download thread needs of a Documento (no ORM object crosses threads)."""

    id: int
    external_id: str
    nome: str
    tamanho: int | None
    hash_declarado: str

    @property
    def item(self) -> str:
        return f"doc-{self.external_id}"


@dataclass
class _Outcome:
    doc: _Doc
    status: str  # available, failed, cancelled
    key: str = ""
    size: int = 0
    sha256: str = ""
    content_type: str = ""
    downloaded: bool = False
    error: str = ""


def _claim_batch(ctx: jobs.JobContext, doc_ids: list[int], progress: _Progress) -> list[_Doc]:
    """Take documents for this job in one transaction: pending ones move to processing; a processing one
    is taken over when its job is this one (a re-run) or no longer active (its worker died)."""
    taken: list[_Doc] = []
    newly = 0
    if not doc_ids:
        return taken
    with ctx.session() as s:
        for doc in s.execute(_CLAIMABLE, {"b_docs": doc_ids}).all():
            if doc.status == "pending":
                try:
                    _swap(
                        s,
                        _TO_PROCESSING,
                        {"b_doc": doc.id, "b_job": ctx.job_id},
                        current="pending",
                        to="processing",
                        reason=f"job {ctx.job_id}",
                    )
                except InvalidTransition:
                    continue
                newly += 1
            elif doc.status == "processing":
                holder = s.get(Job, doc.job_id) if doc.job_id else None
                if doc.job_id != ctx.job_id and holder is not None and holder.is_active:
                    continue
                result = s.execute(
                    _TAKE_OVER, {"b_doc": doc.id, "b_holder": doc.job_id, "b_job": ctx.job_id, "b_now": utcnow()}
                )
                if result.rowcount != 1:
                    continue
            else:
                continue
            taken.append(_Doc(doc.id, doc.external_id, doc.nome, doc.tamanho, doc.hash_declarado))
        if taken:
            s.execute(_ITEMS_PROCESSING, {"b_job": ctx.job_id, "b_items": [d.item for d in taken], "b_now": utcnow()})
    for _ in range(newly):  # after the commit: progress writes through its own session
        progress.move("pending", "processing")
    return taken


def _record(ctx: jobs.JobContext, outcomes: list[_Outcome], progress: _Progress) -> None:
    """Write what finished, in one transaction however many documents it is."""
    moved: list[_Outcome] = []
    with ctx.session() as s:
        for out in outcomes:
            if out.status == "cancelled":
                continue
            try:
                if out.status == "available":
                    _swap(
                        s,
                        _TO_AVAILABLE,
                        {
                            "b_doc": out.doc.id,
                            "b_size": out.size,
                            "b_sha256": out.sha256,
                            "b_key": out.key,
                            "b_type": out.content_type,
                            "b_attempts": 1 if out.downloaded else 0,
                        },
                        current="processing",
                        to="available",
                        reason=f"job {ctx.job_id}",
                    )
                    _mark_item(s, ctx.job_id, out.doc.item, "done", attempt=True)
                else:
                    _swap(
                        s,
                        _TO_FAILED,
                        {"b_doc": out.doc.id, "b_error": out.error[:4000]},
                        current="processing",
                        to="failed",
                        reason=out.error[:200],
                    )
                    _mark_item(s, ctx.job_id, out.doc.item, "failed", error=out.error)
            except InvalidTransition:
                log.warning("documento %s changed state under job %s", out.doc.id, ctx.job_id)
                continue
            moved.append(out)
    for out in moved:
        progress.move("processing", out.status)


def _download_one(
    ctx: jobs.JobContext,
    doc: _Doc,
    *,
    numero: str,
    client: CourtClient,
    storage: Any,
    opts: DownloadOptions,
    cancelled: threading.Event,
    slot: _Slot | None = None,
) -> _Outcome:
    """One document with its retries, streamed to storage. Writes only the count of failed attempts;
    the final state is recorded by the job's main thread with the others that finished meanwhile."""
    key = storage_key(numero, doc.external_id, doc.nome)
    expected_sha = _declared_sha256(doc.hash_declarado)
    rng = random.Random()
    error = ""
    for attempt in range(max(1, opts.attempts)):
        if cancelled.is_set():
            return _Outcome(doc, "cancelled")
        try:
            stored = _already_stored(storage, key, doc.tamanho, expected_sha)
            downloaded = stored is None
            if stored is None:
                stored = _fetch_to_storage(
                    client,
                    storage,
                    numero=numero,
                    doc=doc,
                    key=key,
                    expected_sha=expected_sha,
                    opts=opts,
                    slot=slot,
                )
            size, sha, content_type = stored
            return _Outcome(
                doc,
                "available",
                key=key,
                size=size,
                sha256=sha,
                content_type=content_type,
                downloaded=downloaded,
            )
        except (CourtNotFound, CourtAuthError) as exc:
            _count_attempt(ctx, doc.id, error=exc.message)
            return _Outcome(doc, "failed", error=exc.message)
        except Exception as exc:  # transfer, court, storage: retry this document
            error = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
            _count_attempt(ctx, doc.id, error=error)
            log.info("documento %s attempt %d failed: %s", doc.external_id, attempt + 1, error)
            if attempt + 1 < opts.attempts:
                wait_for = getattr(exc, "retry_after", None)
                delay = float(wait_for) if isinstance(wait_for, int | float) else opts.backoff(attempt, rng)
                if cancelled.wait(min(delay, opts.backoff_cap)):
                    return _Outcome(doc, "cancelled")
    return _Outcome(doc, "failed", error=error)


def _count_attempt(ctx: jobs.JobContext, doc_id: int, *, error: str | None = None) -> None:
    values: dict[str, Any] = {"attempts": Documento.attempts + 1, "updated_at": utcnow()}
    if error is not None:
        values["last_error"] = error[:4000]
    with ctx.session() as s:
        s.execute(update(Documento).where(Documento.id == doc_id).values(**values))


def _already_stored(storage: Any, key: str, size: int | None, sha: str) -> tuple[int, str, str] | None:
    """The stored object's (size, sha256, type) if a previous run stored it completely; else None.
    Verifying reads the object back, which never writes it again."""
    info = storage.stat(key)
    if info is None or (size is not None and info.size != size):
        return None
    digest = info.sha256
    if not digest:
        hasher = hashlib.sha256()
        with storage.open(key) as fh:
            for chunk in iter(lambda: fh.read(256 * 1024), b""):
                hasher.update(chunk)
        digest = hasher.hexdigest()
    if sha and digest != sha:
        return None
    return int(info.size), digest, info.content_type or "application/pdf"


class _Slot:
    """One place in the court-request window, released at most once per acquire."""

    def __init__(self, semaphore: threading.Semaphore) -> None:
        self.semaphore = semaphore
        self.held = False
        self.lock = threading.Lock()

    def acquire(self) -> None:
        self.semaphore.acquire()
        with self.lock:
            self.held = True

    def release(self) -> None:
        with self.lock:
            if not self.held:
                return
            self.held = False
        self.semaphore.release()


def _fetch_to_storage(
    client: CourtClient,
    storage: Any,
    *,
    numero: str,
    doc: _Doc,
    key: str,
    expected_sha: str,
    opts: DownloadOptions,
    slot: _Slot | None = None,
) -> tuple[int, str, str]:
    """Stream one document into storage. ``slot`` limits the requests open at the court: it is taken
    before the request and given back as soon as the body has arrived, before storage finishes its write."""
    if slot is not None:
        slot.acquire()
    try:
        return _stream_to_storage(
            client,
            storage,
            numero=numero,
            doc=doc,
            key=key,
            expected_sha=expected_sha,
            opts=opts,
            on_end=slot.release if slot is not None else None,
        )
    finally:
        if slot is not None:
            slot.release()


def _stream_to_storage(
    client: CourtClient,
    storage: Any,
    *,
    numero: str,
    doc: _Doc,
    key: str,
    expected_sha: str,
    opts: DownloadOptions,
    on_end: Any,
) -> tuple[int, str, str]:
    with client.open_document(numero, doc.external_id) as stream:
        expected = doc.tamanho if doc.tamanho is not None else stream.content_length
        reader = VerifyingReader(
            stream.iter_bytes(),
            expected_size=expected,
            expected_sha256=expected_sha,
            max_size=opts.max_document_mb * 1024 * 1024,
            on_end=on_end,
        )
        buffered = io.BufferedReader(reader, buffer_size=256 * 1024)
        storage.put(key, buffered, content_type=stream.content_type)
        return reader.size, reader.sha256, stream.content_type


# Status ------------------------------------------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def job_summary(job: Job | None) -> dict[str, Any] | None:
    if job is None:
        return None
    return {
        "id": job.id,
        "status": job.status,
        "progress": job.progress,
        "counters": dict(job.counters or {}),
        "message": job.message,
        "error": job.error,
        "attempts": job.attempts,
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
        "heartbeat_at": _iso(job.heartbeat_at),
    }


def processo_summary(processo: Processo) -> dict[str, Any]:
    return {
        "numero": processo.numero,
        "numero_formatado": format_cnj(processo.numero),
        "tribunal": processo.tribunal,
        "classe": processo.classe,
        "assunto": processo.assunto,
        "partes": processo.partes,
        "orgao_julgador": (processo.metadados or {}).get("orgaoJulgador", ""),
        "data_ajuizamento": (processo.metadados or {}).get("dataAjuizamento"),
        "last_fetched_at": _iso(processo.last_fetched_at),
    }


def refresh_links(
    session: Session,
    docs: list[Documento],
    *,
    settings: Settings,
    storage: Any = None,
    now: datetime | None = None,
) -> None:
    """Give every available document a presigned link valid for a while; replace expired ones."""
    now = now or utcnow()
    ttl = int(settings.signed_url_ttl_seconds)
    for doc in docs:
        if doc.status != "available" or not doc.storage_key:
            continue
        margin = min(LINK_MARGIN, timedelta(seconds=ttl / 10))
        if doc.link_url and doc.link_expires_at and doc.link_expires_at - margin > now:
            continue
        if storage is None:
            from engine.storage import get_storage

            storage = get_storage(settings)
        doc.link_url = storage.signed_url(
            doc.storage_key, expires_in=ttl, filename=sanitize_filename(doc.nome)
        )
        doc.link_expires_at = now + timedelta(seconds=ttl)
    session.flush()


def document_summary(doc: Documento) -> dict[str, Any]:
    available = doc.status == "available"
    return {
        "id": doc.external_id,
        "nome": doc.nome,
        "tipo": doc.tipo,
        "data": _iso(doc.data_documento),
        "tamanho": doc.tamanho,
        "status": doc.status,
        "size": doc.size,
        "sha256": doc.sha256 or None,
        "attempts": doc.attempts,
        "last_error": doc.last_error or None,
        "download_url": doc.link_url if available else None,
        "download_url_expires_at": _iso(doc.link_expires_at) if available else None,
    }


def build_status(
    session: Session,
    *,
    numero: str,
    settings: Settings | None = None,
    storage: Any = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Everything known about a processo's download (no permission check: callers check)."""
    from engine import webhooks

    settings = settings or get_settings()
    processo = get_processo(session, numero=numero)
    if processo is None:
        raise NotFound(
            f"Processo {format_cnj(numero)} ainda não foi consultado.", entity="processo", key=numero
        )
    docs = list_documentos(session, processo_id=processo.id)
    refresh_links(session, docs, settings=settings, storage=storage, now=now)
    counts = {status: 0 for status in DOCUMENT_STATUSES}
    for d in docs:
        counts[d.status] = counts.get(d.status, 0) + 1
    counts["total"] = len(docs)
    job = latest_job(session, numero=numero)
    done = counts["available"] + counts["failed"]
    progress = 100 if not docs else int(100 * done / len(docs))
    if job is not None and job.is_active:
        progress = min(progress, 99)
    return {
        "processo": processo_summary(processo),
        "job": job_summary(job),
        "progress": progress,
        "counters": counts,
        "documentos": [document_summary(d) for d in docs],
        "webhook": webhooks.state_for_job(session, job_id=job.id) if job else None,
    }


def download_status(
    session: Session,
    *,
    actor: Any,
    numero: str,
    storage: Any = None,
    now: datetime | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Progress 0-100, counters per status, per-document status with presigned links, job and webhook."""
    require(actor, "documentos.read")
    return build_status(session, numero=parse_numero(numero), settings=settings, storage=storage, now=now)


def lookup_summary(session: Session, result: LookupResult) -> dict[str, Any]:
    """What the API and the CLI answer to a lookup."""
    return {
        "state": result.state,
        "started": result.started,
        "processo": processo_summary(result.processo),
        "job": job_summary(result.job),
        "documentos": len(list_documentos(session, processo_id=result.processo.id)),
    }


# CLI ----------------------------------------------------------------------------------------------------


def cmd_fetch(args: argparse.Namespace) -> int:
    from engine.db import session_scope

    settings = get_settings()
    with session_scope(settings) as s:
        result = lookup_processo(
            s,
            actor=SYSTEM,
            numero=args.numero,
            refresh=args.refresh,
            webhook_url=args.webhook_url,
            auto_download=not args.no_download,
        )
        summary = lookup_summary(s, result)
    print(json.dumps(summary, ensure_ascii=False))
    if not args.wait or summary["job"] is None:
        return 0
    deadline = time.monotonic() + args.timeout
    while True:
        with session_scope(settings) as s:
            job = s.get(Job, summary["job"]["id"])
            active = job is not None and job.is_active
            if not active or time.monotonic() > deadline:
                status = build_status(s, numero=summary["processo"]["numero"], settings=settings)
                break
        print(f"\r{job.progress if job else 0:3d}%", end="", file=sys.stderr, flush=True)
        time.sleep(0.5)
    print("", file=sys.stderr)
    print(json.dumps(status, ensure_ascii=False, indent=2))
    if active:
        print("erro: o job ainda não terminou (tempo de espera esgotado).", file=sys.stderr)
        return 1
    return 0 if status["counters"]["failed"] == 0 and status["job"]["status"] == "succeeded" else 1


def cmd_status(args: argparse.Namespace) -> int:
    from engine.db import session_scope

    with session_scope() as s:
        print(json.dumps(download_status(s, actor=SYSTEM, numero=args.numero), ensure_ascii=False, indent=2))
    return 0


def cmd_court_simulator(args: argparse.Namespace) -> int:
    from engine.court.simulator import CourtSimulator, SimulatorConfig, demo_token

    if args.print_token:
        print(demo_token())
        return 0
    config = SimulatorConfig(
        latency_ms=args.latency_ms,
        error_rate=args.error_rate,
        truncate_rate=args.truncate_rate,
        documents_per_process=args.documents,
        document_size=args.document_size,
    )
    simulator = CourtSimulator(config)
    print(
        f"Simulador da API do tribunal em http://{args.host}:{args.port}/api/v2/ "
        f"(latência {args.latency_ms} ms, erros {args.error_rate:.0%})",
        flush=True,
    )
    try:
        simulator.serve_forever(args.host, args.port)
    except KeyboardInterrupt:
        pass
    return 0


__all__ = [
    "CourtError",
    "DownloadOptions",
    "InvalidTransition",
    "LookupResult",
    "VerifyingReader",
    "build_status",
    "download_status",
    "lookup_processo",
    "sanitize_filename",
    "storage_key",
    "transition",
]
