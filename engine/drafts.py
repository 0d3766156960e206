"""Drafts: forms that save themselves and resume exactly where they stopped.

A draft is keyed ``user_id:form_slug:object_id`` and holds the payload
``{data, fields_status, step, timestamp, version, schema_version}`` plus metadata
``{ttl, source, user_agent, ip_masked}`` (never a full address, never a field value). Rules, in the order a
save checks them:

1. only the author may load, save or clear a draft (admins see that drafts exist, not their content);
2. the data must fit the form's declaration by type and bounds (``Form.check_partial``); values that are
   present but wrong are kept and marked ``invalid`` so nothing typed is lost;
3. the canonical payload must fit ``CHECKPOINT_MAX_PAYLOAD_KB`` (``PayloadTooLarge`` with size and limit);
4. at most ``CHECKPOINT_RATE_LIMIT_PER_MINUTE`` saves per user and minute (``LimitExceeded`` with
   ``retry_after``: the client keeps the latest state and sends it then);
5. compare-and-swap on ``version``: a save based on an older version gets ``Conflict`` carrying both versions
   and the stored ("theirs") payload, never a silent overwrite. When the stored draft already holds exactly
   the data and step sent (the same save sent again after its answer was lost), there is nothing to choose:
   the answer is the draft as stored, with no new version.

Every stored payload is signed with HMAC-SHA256 (``SECRET_KEY``, purpose ``draft``) over the key and the
canonical JSON. A stored draft that fails the check is never applied: it is moved to ``QuarantinedDraft``
for an admin, audited, and the caller gets ``IntegrityError``. A draft of an older ``schema_version`` is
migrated by the form's registered function when there is one, otherwise returned read-only.

Durable versions (``DraftVersion``) are written on every step change and at most every
``SNAPSHOT_EVERY_SECONDS``, so a Redis restart loses at most that much; the author can list and restore them.
For a draft kept in Redis, the version and the save's audit row are group-committed in one transaction
(``audit.write_committed(together=...)``) before the answer; a save that writes no version puts its audit row
into the store's journal in the same script as the draft (see "The audit journal" below). In the database
store they are rows of the save's own transaction.
Submitting creates the form's records and deletes the draft and its versions; the ``drafts_sweep`` job
deletes expired drafts, old versions and expired survey progress.
"""

from __future__ import annotations

import argparse
import atexit
import functools
import hashlib
import ipaddress
import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from prometheus_client import Counter, Histogram
from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from engine import audit, forms
from engine.db import is_row_id, session_scope
from engine.draft_stores import DraftKey, DraftStore, StoredDraft, get_store
from engine.errors import (
    BadRequest,
    Conflict,
    EngineError,
    IntegrityError,
    LimitExceeded,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    ValidationFailed,
)
from engine.forms import Form
from engine.jobs import JobContext, create_job, job_handler
from engine.metrics import REGISTRY as METRICS_REGISTRY
from engine.models import utcnow
from engine.models.drafts import DraftVersion, QuarantinedDraft
from engine.security import SYSTEM, is_admin, require, sign, verify_signature
from engine.settings import Settings, get_settings

log = logging.getLogger(__name__)

PURPOSE = "draft"
SNAPSHOT_EVERY_SECONDS = 300
VERSION_RETENTION_DAYS = 30
MAX_VERSIONS_LISTED = 50
RATE_WINDOW_SECONDS = 60
OBJECT_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
SOURCES = ("web", "api", "script", "survey")

# Prometheus, in the registry /metrics exports. Labels stay few: declared forms, fixed actions and outcomes.
OPERATIONS = Counter(
    "oficina_drafts_operations",
    "Draft operations by form, action and outcome.",
    ["form", "action", "outcome"],
    registry=METRICS_REGISTRY,
)
PAYLOAD_BYTES = Histogram(
    "oficina_draft_payload_bytes",
    "Size of saved draft payloads (canonical JSON).",
    ["form"],
    buckets=(256, 1024, 4096, 16384, 32768, 65536, 131072, 262144),
    registry=METRICS_REGISTRY,
)
LATENCY = Histogram(
    "oficina_draft_operation_seconds",
    "Time spent in draft operations (engine side).",
    ["form", "action"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
    registry=METRICS_REGISTRY,
)


@dataclass
class DraftState:
    """A draft as the author sees it."""

    user_id: int
    form_slug: str
    object_id: str
    data: dict[str, Any]
    fields_status: dict[str, str]
    step: int
    timestamp: float
    version: int
    schema_version: int
    meta: dict[str, Any] = field(default_factory=dict)
    errors: list[dict[str, str]] = field(default_factory=list)
    expires_at: float = 0.0
    size: int = 0
    read_only: bool = False
    migrated_from: int | None = None
    next_field: str | None = None

    @property
    def key(self) -> str:
        return f"{self.user_id}:{self.form_slug}:{self.object_id}"

    def payload(self) -> dict[str, Any]:
        return {
            "data": self.data,
            "fields_status": self.fields_status,
            "step": self.step,
            "timestamp": self.timestamp,
            "version": self.version,
            "schema_version": self.schema_version,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "form_slug": self.form_slug,
            "object_id": self.object_id,
            "payload": self.payload(),
            "metadata": self.meta,
            "errors": self.errors,
            "expires_at": _iso(self.expires_at),
            "size": self.size,
            "read_only": self.read_only,
            "migrated_from": self.migrated_from,
            "next_field": self.next_field,
        }


@dataclass
class DraftSummary:
    """What listings show: never the content."""

    user_id: int
    form_slug: str
    form_title: str
    object_id: str
    step: int
    step_title: str
    version: int
    updated_at: float
    expires_at: float
    source: str = ""
    live: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "form_slug": self.form_slug,
            "form_title": self.form_title,
            "object_id": self.object_id,
            "step": self.step,
            "step_title": self.step_title,
            "version": self.version,
            "updated_at": _iso(self.updated_at),
            "expires_at": _iso(self.expires_at),
            "source": self.source,
            "live": self.live,
        }


def _iso(ts: float) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat() if ts else None


# Helpers ---------------------------------------------------------------------------------------------


# What the standard library would refuse or write otherwise (subclasses, dates, dataclasses) orjson refuses too.
_CANONICAL_OPTIONS = (orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATETIME
                      | orjson.OPT_PASSTHROUGH_DATACLASS)


def canonical(payload: dict[str, Any]) -> str:
    """The one JSON text of a payload that is signed and stored: the standard library's sorted, compact,
    non-ASCII-kept form. orjson writes the same text ten times faster except for floats below 1e-4 in magnitude
    (``1e-05`` vs ``0.00001``, ``1e-07`` vs ``1e-7``: its text then holds ``0.0000`` or ``e-``), what it cannot
    write (integers beyond 64 bits, non-text keys: it raises) and NaN (written as null; payloads are validated
    before they are signed and hold none): those go through the standard library, so the text of a payload never
    depends on which encoder wrote it."""
    try:
        text = orjson.dumps(payload, option=_CANONICAL_OPTIONS)
    except TypeError:
        text = None
    if text is None or b"e-" in text or b"0.0000" in text:
        return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.decode()


def stable_numbers(value: Any) -> Any:
    """``value`` with the floats that PostgreSQL's JSONB would write differently replaced by equal numbers it
    writes back as they are: ``-0.0`` by ``0.0`` and integral floats written with an exponent (``1e16``) by
    ints. A durable version is signed over its canonical JSON and read back from JSONB; without this, such a
    value would fail the check on restore as if the version had been tampered with."""
    if isinstance(value, float):
        if value == 0:
            return 0.0
        return int(value) if "e+" in repr(value) else value
    if isinstance(value, dict):
        return {k: stable_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [stable_numbers(v) for v in value]
    return value


def signature_for(settings: Settings, key: DraftKey | str, body: str) -> str:
    return sign(settings.secret_key, f"{key}\n{body}".encode(), purpose=PURPOSE)


@functools.lru_cache(maxsize=4096)  # a pure function of the address, asked on every save
def mask_ip(address: str) -> str:
    """``203.0.113.45`` -> ``203.0.113.0/24``; IPv6 keeps its /48. Anything unparseable -> ``""``."""
    try:
        ip = ipaddress.ip_address((address or "").strip())
    except ValueError:
        return ""
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


def _form_label(slug: str) -> str:
    return slug if forms.get_form(slug) is not None else "desconhecido"


@contextmanager
def _measured(form_slug: str, action: str) -> Iterator[dict[str, str]]:
    outcome = {"value": "ok"}
    started = time.perf_counter()
    try:
        yield outcome
    except EngineError as exc:
        outcome["value"] = exc.code
        raise
    except Exception:
        outcome["value"] = "error"
        raise
    finally:
        label = _form_label(form_slug)
        _series(OPERATIONS, label, action, outcome["value"]).inc()
        _series(LATENCY, label, action).observe(time.perf_counter() - started)


@functools.lru_cache(maxsize=1024)  # few series (declared forms, fixed actions and outcomes), asked on every save
def _series(metric: Any, *labels: str) -> Any:
    """``metric.labels(*labels)``: the same child every time, without prometheus_client's lock and checks."""
    return metric.labels(*labels)


def _author(actor: Any, user_id: int | None) -> int:
    """The user whose drafts ``actor`` may touch: only their own."""
    own = getattr(actor, "id", None)
    if own is None:
        raise PermissionDenied("Rascunhos pertencem a um usuário; entre com a sua conta.", action="drafts")
    if user_id is not None and user_id != own:
        raise PermissionDenied(
            "Somente o autor pode abrir, salvar ou apagar este rascunho.",
            action="drafts.author",
            user_id=user_id,
        )
    return own


def _drafting_form(actor: Any, form_slug: str) -> Form:
    form = forms.require_form(form_slug)
    if form.public:
        raise BadRequest(f"O formulário {form.title} é público; use /api/progress/.", form_slug=form_slug)
    require(actor, "drafts.save")
    require(actor, form.permission)
    return form


def _check_object_id(object_id: Any) -> str:
    if not isinstance(object_id, str) or not OBJECT_ID_RE.match(object_id):
        raise BadRequest(
            "object_id deve ter de 1 a 64 letras, dígitos, '-' ou '_'.",
            errors=[{"field": "object_id", "message": "formato inválido"}],
        )
    return object_id


def _check_step(form: Form, step: Any) -> int:
    if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step < len(form.steps):
        raise ValidationFailed(
            f"Etapa inválida: {step!r} (o formulário tem {len(form.steps)} etapas).",
            errors=[{"field": "step", "message": "fora do intervalo"}],
        )
    return step


# Reading ---------------------------------------------------------------------------------------------


def _quarantine(
    session: Session, *, settings: Settings, store: DraftStore, stored: StoredDraft, reason: str, actor: Any
) -> IntegrityError:
    """Move a stored draft that failed its integrity check aside and audit it. Commits, because the
    quarantine copy and its audit row must outlive the error the caller is about to raise."""
    key = stored.key
    row = QuarantinedDraft(
        user_id=key.user_id,
        form_slug=key.form_slug,
        object_id=key.object_id,
        store=store.name,
        raw=stored.body[:1_000_000],
        signature=stored.signature[:200],
        reason=reason[:200],
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="draft.tampered",
        entity_type="draft",
        entity_id=str(key),
        after={"reason": reason, "quarantine_id": row.id, "store": store.name},
    )
    store.delete(session, key)
    session.commit()
    log.warning("draft %s failed its integrity check (%s); quarantined as %s", key, reason, row.id)
    form = forms.get_form(key.form_slug)
    title = form.title if form else key.form_slug
    return IntegrityError(
        f"O rascunho salvo de {title} não passou na verificação de integridade e não foi aplicado. "
        "Uma cópia foi guardada para o administrador; restaure uma versão anterior ou comece de novo.",
        key=str(key),
        quarantine_id=row.id,
        reason=reason,
    )


def _decode(
    session: Session, *, settings: Settings, store: DraftStore, stored: StoredDraft, form: Form, actor: Any
) -> DraftState:
    if not verify_signature(
        settings.secret_key, f"{stored.key}\n{stored.body}".encode(), stored.signature, purpose=PURPOSE
    ):
        raise _quarantine(
            session,
            settings=settings,
            store=store,
            stored=stored,
            actor=actor,
            reason="assinatura HMAC não confere",
        )
    try:
        payload = json.loads(stored.body)
        data, step, version = payload["data"], int(payload["step"]), int(payload["version"])
        schema_version = int(payload["schema_version"])
        timestamp = float(payload["timestamp"])
    except (ValueError, KeyError, TypeError) as exc:
        raise _quarantine(
            session,
            settings=settings,
            store=store,
            stored=stored,
            actor=actor,
            reason=f"conteúdo ilegível: {type(exc).__name__}",
        ) from exc
    if version != stored.version:
        raise _quarantine(
            session,
            settings=settings,
            store=store,
            stored=stored,
            actor=actor,
            reason="versão armazenada difere da assinada",
        )
    state = DraftState(
        user_id=stored.key.user_id,
        form_slug=form.slug,
        object_id=stored.key.object_id,
        data=data,
        fields_status=payload.get("fields_status") or {},
        step=step,
        timestamp=timestamp,
        version=version,
        schema_version=schema_version,
        meta=stored.meta,
        expires_at=stored.expires_at,
        size=stored.size,
    )
    _bring_to_current_schema(form, state)
    return state


def _bring_to_current_schema(form: Form, state: DraftState) -> None:
    if state.schema_version != form.schema_version:
        migrated = (
            form.migrate(state.data, state.schema_version)
            if state.schema_version < form.schema_version
            else None
        )
        if migrated is None:
            state.read_only = True
            state.errors = [
                {
                    "field": "",
                    "message": (
                        f"Este rascunho usa a versão {state.schema_version} do formulário e a atual é a "
                        f"{form.schema_version}; ele é mostrado somente para leitura."
                    ),
                }
            ]
            return
        state.migrated_from, state.data, state.schema_version = (
            state.schema_version,
            migrated,
            form.schema_version,
        )
        try:
            form.check_structure(state.data)
        except ValidationFailed as exc:
            state.read_only = True
            state.errors = exc.data.get("errors", [])
            return
        state.step = min(state.step, len(form.steps) - 1)
    state.fields_status, state.errors = form.fields_status(state.data)
    state.next_field = form.next_field(state.data, from_step=state.step)


def load_draft(
    session: Session,
    *,
    actor: Any,
    form_slug: str,
    object_id: str,
    user_id: int | None = None,
    settings: Settings | None = None,
    store: DraftStore | None = None,
) -> DraftState | None:
    """The author's draft, or None. ``IntegrityError`` when the stored copy was tampered with (it is then
    quarantined); a draft of an older schema comes back migrated or ``read_only``."""
    with _measured(form_slug, "load"):
        settings = settings or get_settings()
        store = store or get_store(settings)
        owner = _author(actor, user_id)
        form = _drafting_form(actor, form_slug)
        key = DraftKey(owner, form.slug, _check_object_id(object_id))
        stored = store.get(session, key)
        if stored is None:
            return None
        state = _decode(session, settings=settings, store=store, stored=stored, form=form, actor=actor)
        (audit.record if store.in_session else audit.write_committed)(
            session,
            actor=actor,
            action="draft.load",
            entity_type="draft",
            entity_id=str(key),
            after={"version": state.version, "step": state.step, "read_only": state.read_only},
        )
        return state


# Writing ---------------------------------------------------------------------------------------------


def save_draft(
    session: Session,
    *,
    actor: Any,
    form_slug: str,
    object_id: str,
    payload: Any,
    version: Any,
    user_id: int | None = None,
    source: str = "api",
    user_agent: str = "",
    ip: str = "",
    settings: Settings | None = None,
    store: DraftStore | None = None,
) -> DraftState:
    """Save the author's draft on top of ``version`` (0 for a new draft) and return it at its new version.

    ``payload`` is ``{"data": {...}, "step": n}``; ``fields_status``, ``timestamp`` and ``version`` are
    computed here (whatever the client sent). See the module docstring for the rules and their errors."""
    with _measured(form_slug, "save"):
        settings = settings or get_settings()
        store = store or get_store(settings)
        owner = _author(actor, user_id)
        form = _drafting_form(actor, form_slug)
        key = DraftKey(owner, form.slug, _check_object_id(object_id))
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            raise BadRequest(
                "version deve ser um inteiro >= 0 (0 para um rascunho novo).",
                errors=[{"field": "version", "message": "inteiro >= 0"}],
            )
        if not isinstance(payload, dict):
            raise BadRequest(
                "payload deve ser um objeto com data e step.",
                errors=[{"field": "payload", "message": "deve ser um objeto"}],
            )
        data = payload.get("data", {})
        step = _check_step(form, payload.get("step", 0))
        data = _client_schema(form, data, payload.get("schema_version", form.schema_version))
        return _write(
            session,
            settings=settings,
            store=store,
            form=form,
            key=key,
            actor=actor,
            data=data,
            step=step,
            expected_version=version,
            source=source,
            user_agent=user_agent,
            ip=ip,
            rate_limited=True,
            reason=None,
        )


def _client_schema(form: Form, data: Any, schema_version: Any) -> Any:
    if schema_version == form.schema_version:
        return data
    if (
        isinstance(schema_version, int)
        and not isinstance(schema_version, bool)
        and 1 <= schema_version < form.schema_version
        and isinstance(data, dict)
    ):
        migrated = form.migrate(data, schema_version)
        if migrated is not None:
            return migrated
    raise ValidationFailed(
        f"Os dados seguem a versão {schema_version!r} do formulário {form.title}, e a atual é a "
        f"{form.schema_version}; recarregue o formulário.",
        errors=[{"field": "schema_version", "message": f"esperado {form.schema_version}"}],
    )


def _write(
    session: Session,
    *,
    settings: Settings,
    store: DraftStore,
    form: Form,
    key: DraftKey,
    actor: Any,
    data: Any,
    step: int,
    expected_version: int,
    source: str,
    user_agent: str,
    ip: str,
    rate_limited: bool,
    reason: str | None,
) -> DraftState:
    data = stable_numbers(data)
    fields_status, errors = form.check_partial(data)
    now = time.time()
    new_version = expected_version + 1
    payload = {
        "data": data,
        "fields_status": fields_status,
        "step": step,
        "timestamp": now,
        "version": new_version,
        "schema_version": form.schema_version,
    }
    body = canonical(payload)
    size = len(body.encode())
    limit = settings.checkpoint_max_payload_kb * 1024
    if size > limit:
        raise PayloadTooLarge(
            f"O rascunho tem {size / 1024:.1f} KB e o limite é {settings.checkpoint_max_payload_kb} KB; "
            "reduza os textos longos.",
            size=size,
            limit=limit,
        )
    ttl = settings.checkpoint_ttl_seconds
    meta = {
        "ttl": ttl,
        "source": source if source in SOURCES else "api",
        "user_agent": (user_agent or "")[:200],
        "ip_masked": mask_ip(ip),
    }
    stored = StoredDraft(
        key=key,
        body=body,
        signature=signature_for(settings, key, body),
        version=new_version,
        step=step,
        updated_at=now,
        expires_at=now + ttl,
        meta=meta,
    )
    event = {
        "actor": actor,
        "action": "draft.save",
        "entity_type": "draft",
        "entity_id": str(key),
        "after": {"version": new_version, "step": step, "size": size, "source": meta["source"]},
        "source": meta["source"],
    }
    if rate_limited:
        # The rate limit, then (only when it allows) the compare-and-swap, and the audit row into the store's
        # journal: one step in stores that can.
        wait, put = store.hit_and_put(
            session,
            stored,
            expected_version=expected_version,
            snapshot_every=SNAPSHOT_EVERY_SECONDS,
            bucket=f"save:{key.user_id}",
            limit=settings.checkpoint_rate_limit_per_minute,
            window=RATE_WINDOW_SECONDS,
            # A call with a reason writes a version with its audit row: never journaled.
            audit_row=_journal_entry(settings, event) if store.journal and reason is None else "",
        )
        if put is None:
            seconds = max(1, int(wait + 0.999))
            raise LimitExceeded(
                f"Muitos salvamentos seguidos: tente de novo em {seconds} s. O que você digitou continua na "
                "tela e será enviado.",
                retry_after=seconds,
            )
        result = put
    else:
        result = store.put(
            session, stored, expected_version=expected_version, snapshot_every=SNAPSHOT_EVERY_SECONDS
        )
    _series(PAYLOAD_BYTES, form.slug).observe(size)
    if not result.stored:
        stored_now = store.get(session, key)
        theirs = (
            None
            if stored_now is None
            else _decode(session, settings=settings, store=store, stored=stored_now, form=form, actor=actor)
        )
        if theirs is not None and not theirs.read_only and theirs.step == step and theirs.data == data:
            # The draft already holds exactly this: a save whose answer was lost, sent again, or another tab
            # that typed the same. There is nothing to choose, so no conflict; the answer is the draft as it is.
            event["after"].update(version=theirs.version, unchanged=True)
            _audit_save(session, store, event, None)
            return theirs
        raise _conflict(
            form=form,
            key=key,
            attempted=expected_version,
            current=result.current_version,
            theirs=theirs,
            data=data,
            step=step,
        )
    version_row = None
    if result.snapshot_due or reason:
        version_row = {
            "user_id": key.user_id,
            "form_slug": key.form_slug,
            "object_id": key.object_id,
            "payload": payload,
            "hash": stored.signature,
            "reason": reason or result.snapshot,
            "created_at": utcnow(),
        }
    if result.journaled:
        _drain_in_background(settings, store)
    else:
        _audit_save(session, store, event, version_row)
    state = DraftState(
        user_id=key.user_id,
        form_slug=form.slug,
        object_id=key.object_id,
        data=data,
        fields_status=fields_status,
        step=step,
        timestamp=now,
        version=new_version,
        schema_version=form.schema_version,
        meta=meta,
        errors=errors,
        expires_at=now + ttl,
        size=size,
    )
    state.next_field = form.next_field(data, from_step=step, status=fields_status)
    return state


def _audit_save(
    session: Session, store: DraftStore, event: dict[str, Any], version_row: dict[str, Any] | None
) -> None:
    if store.in_session:
        # The draft is a row of this transaction: its version and audit rows go in it (Core inserts, no
        # unit-of-work flush on the hot path).
        if version_row is not None:
            session.execute(insert(DraftVersion), [version_row])
        audit.insert_event(session, **event)
    else:
        # A draft kept in Redis: its audit row, and its durable version when one is due, are group-committed
        # in one transaction before the answer. A step change by many users at once costs one commit, not one
        # session and one commit on an API thread each.
        together = [(DraftVersion.__table__, version_row)] if version_row is not None else []
        audit.write_committed(session, together=together, **event)


# The audit journal ------------------------------------------------------------------------------------
#
# A save kept in Redis writes its audit row into the store's journal in the same script as the draft (see
# ``audit.journal_row``): the row exists exactly when the save does, and the answer waits for no database commit.
# A thread per process moves journaled rows into ``audit_events`` every ``JOURNAL_DRAIN_SECONDS`` (one drainer at
# a time across processes, by a lease in Redis); readers of the trail drain first; the periodic sweep and a
# process that exits drain what is left. While the database is unreachable the rows wait in Redis (up to
# ``draft_stores.JOURNAL_MAX_ROWS``; past that, saves audit synchronously again and fail as they did before).
# Saves that write a durable version, restores, loads and clears are audited in the database before they answer,
# as before.

JOURNAL_DRAIN_SECONDS = 0.2
JOURNAL_BATCH = 500
JOURNAL_IDLE_SECONDS = 30.0
JOURNAL_LEASE_SECONDS = 30.0
JOURNAL_PURPOSE = "audit-journal"
_SIGNATURE_CHARS = 64


def _journal_entry(settings: Settings, event: dict[str, Any]) -> str:
    """A journal entry: the HMAC of the audit row (Redis is no more trusted with it than with the draft),
    then the row."""
    row = audit.journal_row(**event)
    return sign(settings.secret_key, row.encode(), purpose=JOURNAL_PURPOSE) + row


def _verified_row(settings: Settings, entry: bytes | None) -> str | None:
    """The row of a journal entry whose signature holds, else None (tampered, truncated, not text)."""
    if not entry or len(entry) <= _SIGNATURE_CHARS:
        return None
    signature, row = entry[:_SIGNATURE_CHARS], entry[_SIGNATURE_CHARS:]
    if not signature.isascii() or not verify_signature(settings.secret_key, row, signature.decode(),
                                                       purpose=JOURNAL_PURPOSE):
        return None
    try:
        return row.decode()
    except UnicodeDecodeError:
        return None


def drain_audit_journal(settings: Settings | None = None, store: DraftStore | None = None, *,
                        wait: float = 0.0) -> int:
    """Move the audit rows waiting in the draft store's journal into the database, each once, oldest first;
    returns how many entries left the journal. Another process draining at the moment is waited for up to
    ``wait`` seconds (then 0: it drains them). An entry that cannot be written (a signature that does not hold,
    or a row the database refuses even without its author's id, the author deleted meanwhile) is moved aside
    (``journal_refused_key``) for an admin and an ``audit.journal_refused`` event is written; never dropped."""
    settings = settings or get_settings()
    store = store or get_store(settings)
    if not store.journal:
        return 0
    deadline = time.monotonic() + wait
    while (token := store.journal_lease(JOURNAL_LEASE_SECONDS)) is None:
        if time.monotonic() >= deadline:
            return 0
        time.sleep(0.01)
    try:
        return _drain(settings, store)
    finally:
        store.journal_release(token)


def _drain(settings: Settings, store: DraftStore) -> int:
    from engine.db import get_engine

    moved = 0
    while True:
        entries = store.journal_read(JOURNAL_BATCH)
        if not entries:
            return moved
        rows: list[tuple[str, bytes, str]] = []
        for entry_id, entry in entries:
            row = _verified_row(settings, entry)
            if row is None:
                _set_aside(settings, store, entry_id, entry, "assinatura inválida")
            else:
                rows.append((entry_id, entry or b"", row))
        written = [entry_id for entry_id, _, _ in rows]
        try:
            audit.insert_journaled(get_engine(settings), [row for _, _, row in rows])
        except (*audit.REFUSED, ValueError, KeyError, TypeError) as exc:  # the latter: a row that is not one
            log.warning("audit journal batch refused (%s); writing its rows one by one", exc)
            written = []
            for entry_id, entry, row in rows:
                if _drain_one(settings, row):
                    written.append(entry_id)
                else:
                    _set_aside(settings, store, entry_id, entry, "recusada pelo banco de dados")
        store.journal_remove(written)
        moved += len(entries)
        if len(entries) < JOURNAL_BATCH:
            return moved


def _drain_one(settings: Settings, row: str) -> bool:
    """Write one row alone; without its author's id when only that is refused. False when it cannot be."""
    from engine.db import get_engine

    engine = get_engine(settings)
    try:
        audit.insert_journaled(engine, [row])
        return True
    except (*audit.REFUSED, ValueError, KeyError, TypeError):
        pass
    try:
        orphan = json.loads(row)
        orphan["actor_id"] = None  # the author was deleted since: the label still says who it was
        audit.insert_journaled(engine, [json.dumps(orphan, separators=(",", ":"))])
        return True
    except (*audit.REFUSED, ValueError, KeyError, TypeError) as exc:
        log.error("audit journal row refused by the database: %s", exc)
        return False


def _set_aside(settings: Settings, store: DraftStore, entry_id: str, entry: bytes | None, reason: str) -> None:
    """Say in the trail that a journal entry cannot be written (once: the event's own ``journal_id`` comes
    from the entry), then move the entry aside for an admin, out of the journal, in one step."""
    from engine.db import get_engine

    where = hashlib.sha256(store.journal_key.encode()).hexdigest()[:8]
    event = audit.journal_row(journal_id=f"r{where}{entry_id}"[:32], actor=SYSTEM, action="audit.journal_refused",
                              entity_type="audit_journal", entity_id=entry_id, after={"reason": reason},
                              source="worker")
    audit.insert_journaled(get_engine(settings), [event])
    store.journal_refuse(entry_id, entry)
    log.error("audit journal entry %s set aside: %s", entry_id, reason)


class _Drainer:
    """The thread that drains one store's journal for this process. It leaves after ``JOURNAL_IDLE_SECONDS``
    with nothing to drain (a later save starts another); it keeps trying, more slowly, while the database fails.
    No lock is held across a call to Redis or the database."""

    def __init__(self, settings: Settings, store: DraftStore) -> None:
        self.settings, self.store = settings, store
        self.ident = _drainer_key(settings)
        self.leaving = False
        self.stopped = threading.Event()
        threading.Thread(target=self._run, name="audit-journal", daemon=True).start()

    def drain(self, wait: float = 0.0) -> int | None:
        try:
            return drain_audit_journal(self.settings, self.store, wait=wait)
        except Exception:
            log.warning("audit journal not drained; trying again", exc_info=True)
            return None

    def _run(self) -> None:
        delay, idle = JOURNAL_DRAIN_SECONDS, 0.0
        while not self.stopped.wait(delay):
            moved = self.drain()
            if moved is None:
                delay = min(delay * 2, 30.0)
                continue
            delay = JOURNAL_DRAIN_SECONDS
            idle = 0.0 if moved else idle + delay
            if idle < JOURNAL_IDLE_SECONDS:
                continue
            with _drainers_lock:  # from here a save that journals starts another drainer
                self.leaving = True
                if _drainers.get(self.ident) is self:
                    del _drainers[self.ident]
            # What was journaled by a save that still saw this one staying is drained here.
            if self.drain(wait=1.0) == 0:
                return
            with _drainers_lock:
                if self.ident in _drainers:  # another one took over
                    return
                _drainers[self.ident] = self
                self.leaving, idle = False, 0.0


_drainers: dict[tuple[int, str, str, str], _Drainer] = {}
_drainers_lock = threading.Lock()


def _after_fork() -> None:
    global _drainers_lock
    _drainers_lock = threading.Lock()  # another thread of the parent may have held it at the fork
    _drainers.clear()  # their threads are the parent's


os.register_at_fork(after_in_child=_after_fork)


@atexit.register
def _drain_at_exit() -> None:
    """A process that journaled rows (a script, a worker) drains them once more as it exits, instead of leaving
    them to another process's drainer or the periodic sweep."""
    for drainer in list(_drainers.values()):
        drainer.drain(wait=1.0)


def stop_drainers() -> None:
    """Stop this process's drainer threads (tests that change settings); rows left stay in the journal."""
    with _drainers_lock:
        drainers = list(_drainers.values())
        _drainers.clear()
    for drainer in drainers:
        drainer.stopped.set()


def _drainer_key(settings: Settings) -> tuple[int, str, str, str]:
    return (os.getpid(), settings.redis_url, settings.queue_name, settings.resolved_database_url)


def _drain_in_background(settings: Settings, store: DraftStore) -> None:
    """Make sure this process drains ``store``'s journal (called after a row was journaled)."""
    ident = _drainer_key(settings)
    drainer = _drainers.get(ident)
    if drainer is not None and not drainer.leaving:
        return
    with _drainers_lock:
        if ident not in _drainers:
            _drainers[ident] = _Drainer(settings, store)


def _drain_for_readers(engine: Any) -> int:
    """``audit.list_events``'s journal source: the configured draft store's journal, when it is kept for
    ``engine``'s database (whether or not this process journaled anything)."""
    settings = get_settings()
    if settings.checkpoint_storage != "redis":
        return 0
    from engine.db import get_engine

    own = get_engine(settings)
    if own is not engine and own.url.render_as_string(False) != engine.url.render_as_string(False):
        return 0
    return drain_audit_journal(settings, wait=1.0)


audit.add_journal_source(_drain_for_readers)


def _conflict(
    *,
    form: Form,
    key: DraftKey,
    attempted: int,
    current: int,
    theirs: DraftState | None,
    data: Any,
    step: int,
) -> Conflict:
    if current == 0:
        message = (
            f"O rascunho de {form.title} que você editava (versão {attempted}) não existe mais: foi "
            "enviado, apagado ou expirou em outra aba ou dispositivo. Salve como novo (versão 0)."
        )
    else:
        message = (
            f"Este rascunho foi alterado em outra aba ou dispositivo: a versão salva é a {current} e você "
            f"editou a {attempted}. Compare campo a campo e escolha o que manter."
        )
    differing = []
    if theirs is not None and isinstance(data, dict):
        mine_flat, theirs_flat = forms.flatten(data), forms.flatten(theirs.data)
        differing = sorted(
            n for n in set(mine_flat) | set(theirs_flat) if mine_flat.get(n) != theirs_flat.get(n)
        )
    return Conflict(
        message,
        entity="draft",
        key=str(key),
        current=current,
        attempted=attempted,
        theirs=theirs.to_dict() if theirs else None,
        mine={"data": data, "step": step},
        fields=differing,
    )


def clear_draft(
    session: Session,
    *,
    actor: Any,
    form_slug: str,
    object_id: str,
    user_id: int | None = None,
    keep_version: bool = True,
    reason: str = "clear",
    settings: Settings | None = None,
    store: DraftStore | None = None,
) -> bool:
    """Delete the author's draft. With ``keep_version`` its payload stays restorable as a version (undo
    and "começar de novo" use this). False when there was none."""
    with _measured(form_slug, "clear"):
        settings = settings or get_settings()
        store = store or get_store(settings)
        owner = _author(actor, user_id)
        form = _drafting_form(actor, form_slug)
        key = DraftKey(owner, form.slug, _check_object_id(object_id))
        stored = store.get(session, key)
        if stored is None:
            return False
        if keep_version:
            state = _decode(session, settings=settings, store=store, stored=stored, form=form, actor=actor)
            session.add(
                DraftVersion(
                    user_id=owner,
                    form_slug=form.slug,
                    object_id=key.object_id,
                    payload=json.loads(stored.body),
                    hash=stored.signature,
                    reason=reason,
                )
            )
            version = state.version
        else:
            version = stored.version
        removed = store.delete(session, key)
        audit.record(
            session,
            actor=actor,
            action="draft.clear",
            entity_type="draft",
            entity_id=str(key),
            after={"version": version, "kept_version": keep_version, "reason": reason},
        )
        return removed


# Versions --------------------------------------------------------------------------------------------


def list_versions(
    session: Session, *, actor: Any, form_slug: str, object_id: str, user_id: int | None = None
) -> list[DraftVersion]:
    """The author's durable versions of a draft, newest first."""
    owner = _author(actor, user_id)
    form = _drafting_form(actor, form_slug)
    return list(
        session.scalars(
            select(DraftVersion)
            .where(
                DraftVersion.user_id == owner,
                DraftVersion.form_slug == form.slug,
                DraftVersion.object_id == _check_object_id(object_id),
            )
            .order_by(DraftVersion.created_at.desc(), DraftVersion.id.desc())
            .limit(MAX_VERSIONS_LISTED)
        )
    )


def restore_version(
    session: Session,
    *,
    actor: Any,
    form_slug: str,
    object_id: str,
    version_id: int,
    version: int,
    user_id: int | None = None,
    source: str = "web",
    settings: Settings | None = None,
    store: DraftStore | None = None,
) -> DraftState:
    """Make an earlier version the current draft (compare-and-swap on ``version``, the live one)."""
    with _measured(form_slug, "restore"):
        settings = settings or get_settings()
        store = store or get_store(settings)
        owner = _author(actor, user_id)
        form = _drafting_form(actor, form_slug)
        key = DraftKey(owner, form.slug, _check_object_id(object_id))
        row = session.get(DraftVersion, version_id) if is_row_id(version_id) else None
        if row is None or (row.user_id, row.form_slug, row.object_id) != (owner, form.slug, key.object_id):
            raise NotFound(
                f"Versão {version_id} deste rascunho não encontrada.", entity="draft_version", key=version_id
            )
        if not verify_signature(
            settings.secret_key, f"{key}\n{canonical(row.payload)}".encode(), row.hash, purpose=PURPOSE
        ):
            audit.record(
                session,
                actor=actor,
                action="draft.tampered",
                entity_type="draft_version",
                entity_id=row.id,
                after={"key": str(key)},
            )
            session.commit()
            raise IntegrityError(
                f"A versão {version_id} não passou na verificação de integridade e não foi restaurada.",
                key=str(key),
                version_id=version_id,
            )
        data = _client_schema(form, row.payload.get("data", {}), row.payload.get("schema_version"))
        step = min(int(row.payload.get("step", 0)), len(form.steps) - 1)
        state = _write(
            session,
            settings=settings,
            store=store,
            form=form,
            key=key,
            actor=actor,
            data=data,
            step=step,
            expected_version=version,
            source=source,
            user_agent="",
            ip="",
            rate_limited=False,
            reason="restore",
        )
        audit.record(
            session,
            actor=actor,
            action="draft.restore",
            entity_type="draft",
            entity_id=str(key),
            after={"version_id": version_id, "version": state.version},
        )
        return state


# Submitting ------------------------------------------------------------------------------------------


def submit_draft(
    session: Session,
    *,
    actor: Any,
    form_slug: str,
    object_id: str,
    data: Any = None,
    user_id: int | None = None,
    settings: Settings | None = None,
    store: DraftStore | None = None,
) -> Any:
    """Validate everything, create the form's records, delete the draft and its versions. ``data``
    defaults to the stored draft. Returns what the form's ``submit`` created."""
    with _measured(form_slug, "submit"):
        settings = settings or get_settings()
        store = store or get_store(settings)
        owner = _author(actor, user_id)
        form = _drafting_form(actor, form_slug)
        key = DraftKey(owner, form.slug, _check_object_id(object_id))
        if data is None:
            state = load_draft(
                session, actor=actor, form_slug=form.slug, object_id=object_id, settings=settings, store=store
            )
            if state is None:
                raise NotFound("Não há rascunho para enviar.", entity="draft", key=str(key))
            if state.read_only:
                raise ValidationFailed(
                    "Este rascunho é de uma versão antiga do formulário; copie os dados "
                    "para um novo antes de enviar.",
                    errors=state.errors,
                )
            data = state.data
        values = form.clean(data)
        assert form.submit is not None, f"form {form.slug} has no submit"
        record = form.submit(session, actor=actor, values=values, data=data)
        _forget(session, store, key)
        audit.record(session, actor=actor, action="draft.submit", entity_type="draft", entity_id=str(key))
        return record


def _forget(session: Session, store: DraftStore, key: DraftKey) -> None:
    session.execute(
        delete(DraftVersion)
        .where(
            DraftVersion.user_id == key.user_id,
            DraftVersion.form_slug == key.form_slug,
            DraftVersion.object_id == key.object_id,
        )
        .execution_options(synchronize_session=False)
    )
    if store.name == "db":
        store.delete(session, key)
    else:
        # Outside the database the draft goes only once the records exist: a failed commit keeps it.
        from sqlalchemy import event

        event.listen(session, "after_commit", lambda _s: store.delete(session, key), once=True)


# Listings --------------------------------------------------------------------------------------------


def _summary(
    form_slug: str,
    d: StoredDraft | None = None,
    *,
    user_id: int = 0,
    object_id: str = "",
    step: int = 0,
    version: int = 0,
    updated_at: float = 0.0,
    live: bool = True,
) -> DraftSummary:
    form = forms.get_form(form_slug)
    if d is not None:
        user_id, object_id, step, version, updated_at = (
            d.key.user_id,
            d.key.object_id,
            d.step,
            d.version,
            d.updated_at,
        )
    step_title = form.steps[step].title if form and 0 <= step < len(form.steps) else str(step)
    return DraftSummary(
        user_id=user_id,
        form_slug=form_slug,
        form_title=form.title if form else form_slug,
        object_id=object_id,
        step=step,
        step_title=step_title,
        version=version,
        updated_at=updated_at,
        expires_at=d.expires_at if d else 0.0,
        source=(d.meta.get("source", "") if d else ""),
        live=live,
    )


def list_drafts(
    session: Session,
    *,
    actor: Any,
    user_id: int | None = None,
    everyone: bool = False,
    include_recoverable: bool = True,
    settings: Settings | None = None,
    store: DraftStore | None = None,
) -> list[DraftSummary]:
    """Summaries of drafts (never their content), newest first. Anyone lists their own (with drafts whose
    live copy expired but whose durable versions remain, ``live=False``); admins may list another user's
    or ``everyone``'s."""
    settings = settings or get_settings()
    store = store or get_store(settings)
    own = getattr(actor, "id", None)
    if everyone or (user_id is not None and user_id != own):
        if not is_admin(actor):
            raise PermissionDenied(
                "Somente administradores veem rascunhos de outros usuários.", action="drafts.list_all"
            )
    else:
        require(actor, "drafts.save")
        user_id = own
    if everyone:
        return [_summary(d.key.form_slug, d) for d in store.list_all(session)]
    assert user_id is not None
    live = [_summary(d.key.form_slug, d) for d in store.list_user(session, user_id)]
    if not include_recoverable:
        return live
    seen = {(s.form_slug, s.object_id) for s in live}
    newest = (
        select(DraftVersion.form_slug, DraftVersion.object_id, func.max(DraftVersion.id).label("id"))
        .where(DraftVersion.user_id == user_id)
        .group_by(DraftVersion.form_slug, DraftVersion.object_id)
        .subquery()
    )
    rows = session.execute(select(DraftVersion).join(newest, DraftVersion.id == newest.c.id)).scalars().all()
    recoverable = [
        _summary(
            v.form_slug,
            user_id=user_id,
            object_id=v.object_id,
            step=int(v.payload.get("step", 0)),
            version=int(v.payload.get("version", 0)),
            updated_at=v.created_at.timestamp(),
            live=False,
        )
        for v in rows
        if (v.form_slug, v.object_id) not in seen and forms.get_form(v.form_slug) is not None
    ]
    return live + sorted(recoverable, key=lambda s: s.updated_at, reverse=True)


def list_quarantined(session: Session, *, actor: Any, limit: int = 100) -> list[QuarantinedDraft]:
    if not is_admin(actor):
        raise PermissionDenied("Somente administradores veem rascunhos em quarentena.", action="drafts.admin")
    return list(session.scalars(select(QuarantinedDraft).order_by(QuarantinedDraft.id.desc()).limit(limit)))


# Sweeping --------------------------------------------------------------------------------------------


def sweep_expired(
    session: Session,
    *,
    settings: Settings | None = None,
    store: DraftStore | None = None,
    now: datetime | None = None,
) -> dict[str, int]:
    """Delete expired drafts, versions older than the retention, and expired survey progress; drain the audit
    journal (what a stopped process left there)."""
    from engine import survey

    settings = settings or get_settings()
    store = store or get_store(settings)
    now = now or datetime.now(UTC)
    try:
        journaled = drain_audit_journal(settings, store, wait=1.0)
    except Exception:  # the sweep goes on; the rows stay journaled for the next drain
        log.warning("audit journal not drained by the sweep", exc_info=True)
        journaled = 0
    drafts = store.sweep(session)
    cutoff = now - timedelta(days=VERSION_RETENTION_DAYS)
    versions = session.execute(
        delete(DraftVersion)
        .where(DraftVersion.created_at < cutoff)
        .execution_options(synchronize_session=False)
    ).rowcount
    progress = survey.sweep_expired(session, now=now)
    counts = {"drafts": drafts, "versions": versions, "survey_progress": progress}
    if any(counts.values()):
        audit.record(
            session, actor=SYSTEM, action="drafts.sweep", entity_type="draft", after=counts, source="worker"
        )
    return {**counts, "audit_journal": journaled}


@job_handler("drafts_sweep")
def _sweep_job(ctx: JobContext) -> dict[str, int]:
    with ctx.session() as session:
        counts = sweep_expired(session, settings=ctx.settings)
    ctx.progress(
        100,
        message=f"Removidos: {counts['drafts']} rascunhos, {counts['versions']} versões, "
        f"{counts['survey_progress']} pesquisas.",
        counters=counts,
        force=True,
    )
    return counts


def schedule_sweep(*, settings: Settings | None = None) -> int:
    """Create (once) a ``drafts_sweep`` job; the periodic task calls this. Returns the job id."""
    with session_scope(settings) as session:
        job = create_job(session, kind="drafts_sweep", owner=SYSTEM, dedupe_key="drafts_sweep")
        return job.id


# CLI -------------------------------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    from engine import accounts

    with session_scope() as session:
        user = accounts.get_user_by_email(session, email=args.user)
        if user is None:
            raise NotFound(f"Usuário {args.user} não encontrado.", entity="user", key=args.user)
        rows = list_drafts(session, actor=SYSTEM, user_id=user.id)
        for s in rows:
            if args.json:
                print(json.dumps(s.to_dict(), ensure_ascii=False))
            else:
                state = "ativo" if s.live else "expirado (versão guardada)"
                print(
                    f"{s.form_slug:<11} {s.object_id:<24} etapa {s.step + 1} ({s.step_title})  "
                    f"v{s.version}  {_iso(s.updated_at)}  {state}"
                )
        if not args.json:
            print(f"{len(rows)} rascunho(s) de {user.email}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    with session_scope() as session:
        counts = sweep_expired(session)
    print(json.dumps(counts))
    return 0
