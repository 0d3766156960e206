"""The generic form wizard with autosave, and "Meus rascunhos".

``DraftWizard`` (view-model) owns one draft: it opens it (restoring data, step and the next field to fill,
with a "Rascunho restaurado" banner and undo), saves what the browser component sends (one save at a time,
coalescing what arrives meanwhile; after a 429 it waits the retry time and sends the latest state), turns a
stale-version conflict into a per-field choice between "meu" and "deles", restores durable versions and
submits. ``FormWizardPage`` lays it out; ``MyDraftsPage`` lists the user's drafts with a link to resume.

Everything here goes through ``engine.drafts``; nothing touches storage directly.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from datetime import datetime
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import panel as pn
import panel_material_ui as pmui
import param

from dashboard.components.autosave import AutosaveForm
from dashboard.pages import ui
from engine import brazil, drafts, forms
from engine.db import session_scope
from engine.errors import (
    Conflict,
    EngineError,
    IntegrityError,
    LimitExceeded,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    ValidationFailed,
)
from engine.forms import flatten, unflatten
from engine.settings import Settings

log = logging.getLogger(__name__)

TZ = ZoneInfo("America/Sao_Paulo")
WIZARD_PATH = "/formularios"
DRAFTS_PATH = "/rascunhos"
DRAFT_FORMS = ("clientes", "processos", "financeiro")
RECORD_LABEL = {
    "clientes": "Cliente cadastrado",
    "processos": "Processo cadastrado",
    "financeiro": "Lançamento registrado",
}


def wizard_url(form_slug: str, object_id: str) -> str:
    return f"{WIZARD_PATH}?{urlencode({'form': form_slug, 'objeto': object_id})}"


def new_object_id() -> str:
    return f"novo-{uuid.uuid4().hex[:10]}"


def hhmm(ts: float | None = None) -> str:
    return datetime.fromtimestamp(ts or time.time(), TZ).strftime("%H:%M")


def request_client() -> tuple[str, str]:
    """(address, user agent) of the browser behind this Panel session, when known."""
    try:
        request = pn.state.curdoc.session_context.request
        agent = request.headers.get("User-Agent", "")
        return str(getattr(request, "remote_ip", "") or ""), agent if isinstance(agent, str) else ""
    except Exception:  # outside a server session (tests of the view-model)
        return "", ""


class DraftWizard(param.Parameterized):
    """One user's draft of one form object, as the browser edits it."""

    banner = param.String(default="", doc="the 'Rascunho restaurado' banner (empty = hidden)")
    notice = param.String(default="", doc="message to the user (errors, results)")
    notice_kind = param.Selector(default="info", objects=["info", "success", "warning", "error"])
    conflict = param.Dict(default=None, allow_None=True, doc="{fields: [{name,label,mine,theirs}], version}")
    versions = param.List(default=[], doc="[(label, id)] of durable versions")
    submitted = param.Boolean(default=False)

    def __init__(
        self,
        *,
        settings: Settings,
        user: Any,
        form_slug: str,
        object_id: str,
        source: str = "web",
        **params: Any,
    ) -> None:
        super().__init__(**params)
        self.settings = settings
        self.user = user
        self.form = forms.require_form(form_slug)
        self.object_id = object_id
        self.source = source
        self.ip, self.user_agent = request_client()
        self._lock = threading.Lock()
        self._pending: dict[str, Any] | None = None
        self._working = False
        self._retry: threading.Timer | None = None
        self._seen_seq = 0
        # A save that failed without an answer from the store (the database down after Redis took it) may
        # have landed: (data, step, version it was based on), so the conflict it causes is recognised as ours.
        self._unsure: tuple[dict[str, Any], int, int] | None = None
        self.values: dict[str, Any] = {}  # what the server last stored or sent (the browser's `values` is
        # only pushed by Python, so the latest typed state lives here)
        self.component = AutosaveForm(
            form=self.form.describe(),
            debounce_ms=settings.autosave_debounce_ms,
            storage_key=f"{getattr(user, 'id', 'anon')}:{self.form.slug}:{object_id}",
            submit_label="Enviar",
            on_message=self.handle_message,
            sizing_mode="stretch_width",
        )

    # Opening -----------------------------------------------------------------------------------------

    def open(self) -> None:
        """Load the draft (if any) into the component: data, step, statuses, the next field, the banner."""
        try:
            with session_scope(self.settings) as s:
                state = drafts.load_draft(
                    s,
                    actor=self.user,
                    form_slug=self.form.slug,
                    object_id=self.object_id,
                    settings=self.settings,
                )
        except IntegrityError as exc:
            self._say(exc.message, "error")
            self.refresh_versions()
            return
        except EngineError as exc:
            self._say(exc.message, "error")
            return
        if state is None:
            self._apply(values={}, step=0, version=0, status={}, errors={})
            self.refresh_versions()
            return
        self._apply_state(state, focus=True)
        when = hhmm(state.timestamp)
        if state.read_only:
            self.component.read_only = True
            self.component.save_state = "readonly"
            self._say(
                " ".join(e["message"] for e in state.errors) + ' Use "Desfazer" para começar de novo; '
                "os dados ficam guardados como versão.",
                "warning",
            )
        step_title = self.form.steps[min(state.step, len(self.form.steps) - 1)].title
        next_label = self._label(state.next_field) if state.next_field else ""
        self.banner = f"Você parou na etapa {state.step + 1} ({step_title}), salva às {when}." + (
            f" Próximo campo: {next_label}." if next_label else ""
        )
        self.refresh_versions()

    def _label(self, name: str | None) -> str:
        f = self.form.field(name or "")
        return f.label if f else (name or "")

    def _apply_state(self, state: drafts.DraftState, *, focus: bool = False) -> None:
        errors = {e["field"]: e["message"] for e in state.errors if e.get("field")}
        self._apply(
            values=flatten(state.data),
            step=state.step,
            version=state.version,
            status=state.fields_status,
            errors=errors,
            focus=state.next_field if focus else None,
        )
        self.component.saved_at = hhmm(state.timestamp)
        self.component.save_state = "saved"

    def _apply(
        self,
        *,
        values: dict[str, Any],
        step: int,
        version: int,
        status: dict[str, str],
        errors: dict[str, str],
        focus: str | None = None,
    ) -> None:
        c = self.component
        self.values = dict(values)
        c.param.update(
            values=values,
            step=step,
            version=version,
            status=status or self.form.fields_status(unflatten(values))[0],
            errors=errors,
            focus_field=focus or "",
        )

    # Messages from the browser -----------------------------------------------------------------------

    def handle_message(self, msg: dict[str, Any]) -> None:
        kind = msg.get("type")
        values = msg.get("values")
        if not isinstance(values, dict):
            return
        step = msg.get("step") if isinstance(msg.get("step"), int) else self.component.step
        seq = msg.get("seq") if isinstance(msg.get("seq"), int) else 0
        if kind in ("save", "submit"):
            with self._lock:
                # The browser resends what it has not seen acknowledged; a sequence already received is
                # stored or queued, so saving it again would only bump the version (and conflict other tabs).
                if kind == "save" and seq and seq <= self._seen_seq:
                    return
                self._seen_seq = max(self._seen_seq, seq)
        if kind == "save":
            self.queue_save(values, step=step, seq=seq)
        elif kind == "local_copy":
            self.offer_local_copy(values, step=step, seq=seq, base_version=msg.get("base_version"))
        elif kind == "submit":
            self.queue_save(values, step=step, seq=seq, then_submit=True)

    def queue_save(self, values: dict[str, Any], *, step: int, seq: int, then_submit: bool = False) -> None:
        """Remember the latest state and save it; while a save runs (or a retry time is pending) only the
        newest state is kept, so the server sees at most one save per turn and nothing typed is lost."""
        with self._lock:
            submit = then_submit or bool(self._pending and self._pending.get("submit"))
            self._pending = {"values": values, "step": step, "seq": seq, "submit": submit}
            if self._working or self._retry is not None:
                return
            self._working = True
        self._drain()

    def _drain(self) -> None:
        while True:
            with self._lock:
                job, self._pending = self._pending, None
                if job is None or self.conflict is not None:
                    if job is not None:
                        self._pending = job  # kept until the conflict is resolved
                    self._working = False
                    return
            if not self._save(job):
                with self._lock:
                    self._working = False
                return
            if job["submit"]:
                self.submit()

    def _save(self, job: dict[str, Any]) -> bool:
        c = self.component
        if c.read_only or self.submitted:
            return True
        c.save_state = "saving"
        data = unflatten(job["values"])
        step = max(0, min(job["step"], len(self.form.steps) - 1))
        try:
            with session_scope(self.settings) as s:
                state = drafts.save_draft(
                    s,
                    actor=self.user,
                    form_slug=self.form.slug,
                    object_id=self.object_id,
                    payload={"data": data, "step": step},
                    version=c.version,
                    source=self.source,
                    user_agent=self.user_agent,
                    ip=self.ip,
                    settings=self.settings,
                )
        except LimitExceeded as exc:
            wait = float(exc.data.get("retry_after") or 5)
            with self._lock:
                self._pending = self._pending or job
                self._retry = threading.Timer(wait, self._retry_now)
                self._retry.daemon = True
                self._retry.start()
            c.message = f"Muitos salvamentos seguidos; enviando em {int(wait)} s (nada foi perdido)."
            c.save_state = "waiting"
            return False
        except Conflict as exc:
            unsure, self._unsure = self._unsure, None
            theirs = (exc.data.get("theirs") or {}).get("payload") or {}
            if (
                unsure is not None
                and unsure[2] == c.version
                and (theirs.get("data"), theirs.get("step")) == unsure[:2]
            ):
                # The draft holds what this page sent last, whose answer was lost: not another tab's work.
                # This save goes on top of it.
                c.version = int(exc.data.get("current") or c.version)
                return self._save(job)
            with self._lock:
                self._pending = job
            self._show_conflict(exc, job["values"])
            return False
        except (ValidationFailed, PayloadTooLarge, PermissionDenied, NotFound, IntegrityError) as exc:
            c.message = exc.message
            c.save_state = "error"
            self._say(exc.message, "error")
            return False
        except Exception:
            self._unsure = (data, step, c.version)
            log.exception("draft save failed")
            c.message = "Erro ao salvar; suas alterações continuam na tela e neste navegador."
            c.save_state = "error"
            return False
        self._unsure = None
        errors = {e["field"]: e["message"] for e in state.errors if e.get("field")}
        self.values = dict(job["values"])
        c.param.update(
            version=state.version,
            status=state.fields_status,
            errors=errors,
            saved_at=hhmm(state.timestamp),
            message="",
            save_state="saved",
            ack_seq=max(c.ack_seq, job["seq"]),
        )
        if c.step != step:
            c.step = step
        if self.notice_kind == "error":
            self._say("", "info")
        return True

    def _retry_now(self) -> None:
        with self._lock:
            self._retry = None
            if self._working:
                return
            self._working = True
        self._drain()

    # Conflicts ---------------------------------------------------------------------------------------

    def _show_conflict(self, exc: Conflict, mine_values: dict[str, Any]) -> None:
        theirs = exc.data.get("theirs") or {}
        theirs_values = flatten((theirs.get("payload") or {}).get("data") or {})
        rows = []
        for f in self.form.fields:
            mine, other = mine_values.get(f.name), theirs_values.get(f.name)
            if (mine or None) != (other or None):
                rows.append(
                    {
                        "name": f.name,
                        "label": f.label,
                        "mine": mine,
                        "theirs": other,
                        "sensitive": f.sensitive,
                    }
                )
        self.component.save_state = "conflict"
        self.conflict = {
            "fields": rows,
            "version": int(exc.data.get("current") or 0),
            "theirs_values": theirs_values,
            "mine_values": dict(mine_values),
            "theirs_step": int((theirs.get("payload") or {}).get("step") or 0),
        }
        self._say(exc.message, "warning")

    def resolve_conflict(self, choices: dict[str, str]) -> None:
        """Keep, per differing field, ``"mine"`` or ``"theirs"`` (default mine); save on top of theirs."""
        conflict = self.conflict
        if conflict is None:
            return
        merged = dict(conflict["theirs_values"])
        for row in conflict["fields"]:
            if choices.get(row["name"], "mine") == "mine":
                if row["mine"] is None:
                    merged.pop(row["name"], None)
                else:
                    merged[row["name"]] = row["mine"]
        c = self.component
        with self._lock:
            pending = self._pending
            self._pending = None
        step = pending["step"] if pending else c.step
        self.values = dict(merged)
        c.param.update(version=conflict["version"], values=merged)
        self.conflict = None
        self._say("Conflito resolvido; salvando a versão combinada.", "info")
        self.queue_save(
            merged,
            step=step,
            seq=pending["seq"] if pending else c.ack_seq,
            then_submit=bool(pending and pending.get("submit")),
        )

    def offer_local_copy(self, values: dict[str, Any], *, step: int, seq: int, base_version: Any) -> None:
        """A copy buffered by a page closed while offline: applied on the same base; dropped when the draft
        already holds exactly it (saved before the page closed, from here or another tab); else a conflict."""
        c = self.component
        merged = {**self.values, **values}
        if merged == self.values:
            c.forget_local_copy()
            return
        if base_version == c.version:
            self.values = merged
            c.values = merged
            self.queue_save(merged, step=step, seq=seq)
            self._say("Alterações guardadas neste navegador sem conexão foram enviadas.", "info")
            return
        theirs = {"payload": {"data": unflatten(self.values), "step": c.step}}
        exc = Conflict(
            "Este navegador guardou alterações sem conexão, mas o rascunho mudou depois "
            f"(versão {c.version}). Escolha o que manter.",
            current=c.version,
            attempted=base_version,
            theirs=theirs,
        )
        with self._lock:
            self._pending = {"values": merged, "step": step, "seq": seq, "submit": False}
        self._show_conflict(exc, merged)

    # Undo, versions, submit ------------------------------------------------------------------------------

    def undo(self) -> None:
        """Back to the empty form; the draft stays restorable as a version."""
        try:
            with session_scope(self.settings) as s:
                drafts.clear_draft(
                    s,
                    actor=self.user,
                    form_slug=self.form.slug,
                    object_id=self.object_id,
                    reason="undo",
                    settings=self.settings,
                )
        except EngineError as exc:
            self._say(exc.message, "error")
            return
        self.banner = ""
        self.component.read_only = False
        self.component.forget_local_copy()
        self._apply(values={}, step=0, version=0, status={}, errors={}, focus=self.form.fields[0].name)
        self.component.save_state = "idle"
        self._say('Formulário em branco. O rascunho anterior ficou guardado em "Versões guardadas".', "info")
        self.refresh_versions()

    def refresh_versions(self) -> None:
        try:
            with session_scope(self.settings) as s:
                rows = drafts.list_versions(
                    s, actor=self.user, form_slug=self.form.slug, object_id=self.object_id
                )
                reasons = {
                    "first": "início",
                    "step": "troca de etapa",
                    "interval": "periódica",
                    "clear": "apagado",
                    "undo": "desfeito",
                    "restore": "restaurada",
                }
                self.versions = [
                    (
                        f"{brazil.format_datetime(v.created_at)} — etapa "
                        f"{int(v.payload.get('step', 0)) + 1} ({reasons.get(v.reason, v.reason)})",
                        v.id,
                    )
                    for v in rows
                ]
        except EngineError:
            self.versions = []

    def restore(self, version_id: int) -> None:
        try:
            with session_scope(self.settings) as s:
                state = drafts.restore_version(
                    s,
                    actor=self.user,
                    form_slug=self.form.slug,
                    object_id=self.object_id,
                    version_id=version_id,
                    version=self.component.version,
                    settings=self.settings,
                )
        except EngineError as exc:
            self._say(exc.message, "error")
            return
        self.component.read_only = False
        self._apply_state(state, focus=True)
        self._say("Versão restaurada.", "success")
        self.refresh_versions()

    def submit(self) -> None:
        try:
            with session_scope(self.settings) as s:
                result = drafts.submit_draft(
                    s,
                    actor=self.user,
                    form_slug=self.form.slug,
                    object_id=self.object_id,
                    data=unflatten(self.values),
                    settings=self.settings,
                )
                rows = result if isinstance(result, list) else [result]
                ids = ", ".join(str(getattr(r, "id", "")) for r in rows)
        except ValidationFailed as exc:
            errors = {e["field"]: e["message"] for e in exc.data.get("errors", []) if e.get("field")}
            status = dict(self.component.status)
            for name in errors:
                status[name] = "invalid" if status.get(name) == "filled" or name in status else "missing"
            first = next(iter(errors), "")
            self.component.param.update(errors=errors, status=status, focus_field=first)
            self._say(exc.message, "error")
            return
        except EngineError as exc:
            self._say(exc.message, "error")
            return
        self.submitted = True
        self.banner = ""
        self.component.forget_local_copy()
        self.component.param.update(read_only=True, save_state="saved", message="")
        self._say(
            f"{RECORD_LABEL.get(self.form.slug, 'Registro criado')} (nº {ids}). O rascunho foi apagado.",
            "success",
        )

    def _say(self, text: str, kind: str) -> None:
        self.param.update(notice=text, notice_kind=kind)


class FormWizardPage(pn.viewable.Viewer):
    """The wizard page for any declared form: banner with undo, conflict chooser, the component, versions."""

    def __init__(self, wizard: DraftWizard, **params: Any) -> None:
        super().__init__(**params)
        self.wizard = wizard
        self._banner = pmui.Alert(
            object="",
            severity="info",
            title="Rascunho restaurado",
            visible=False,
            sizing_mode="stretch_width",
        )
        self._undo = pmui.Button(label="Desfazer", variant="outlined", visible=False)
        self._undo.on_click(lambda _e: self.wizard.undo())
        self._notice = pmui.Alert(object="", severity="info", visible=False, sizing_mode="stretch_width")
        self._conflict = pmui.Column(visible=False, sizing_mode="stretch_width")
        self._versions = pmui.Select(label="Versões guardadas", options={}, width=420)
        self._restore = pmui.Button(label="Restaurar versão", variant="outlined")
        self._restore.on_click(self._on_restore)
        wizard.param.watch(self._sync, ["banner", "notice", "notice_kind", "conflict", "versions"])
        self._sync()

    def _sync(self, *_: Any) -> None:
        w = self.wizard
        self._banner.param.update(object=w.banner, visible=bool(w.banner))
        self._undo.visible = bool(w.banner) or w.component.read_only
        self._notice.param.update(object=w.notice, severity=w.notice_kind, visible=bool(w.notice))
        options = {label: vid for label, vid in w.versions}
        self._versions.param.update(options=options, value=next(iter(options.values()), None))
        self._build_conflict()

    def _build_conflict(self) -> None:
        conflict = self.wizard.conflict
        if conflict is None:
            self._conflict.param.update(objects=[], visible=False)
            return
        choosers = {}
        rows: list[Any] = [
            pmui.Typography(
                "Conflito: o rascunho foi salvo em outra aba ou dispositivo. Para cada "
                "campo, escolha o que manter.",
                variant="subtitle1",
            )
        ]
        for row in conflict["fields"]:

            def shown(v: Any, sensitive: bool = row["sensitive"]) -> str:
                if v in (None, ""):
                    return "(vazio)"
                return "•••• (sensível)" if sensitive else str(v)

            chooser = pmui.RadioButtonGroup(
                label=row["label"],
                options={f"Meu: {shown(row['mine'])}": "mine", f"Deles: {shown(row['theirs'])}": "theirs"},
                value="mine",
            )
            choosers[row["name"]] = chooser
            rows.append(chooser)
        apply = pmui.Button(label="Aplicar escolhas", color="primary")
        apply.on_click(lambda _e: self.wizard.resolve_conflict({n: c.value for n, c in choosers.items()}))
        keep_theirs = pmui.Button(label="Ficar com a versão deles", variant="outlined")
        keep_theirs.on_click(lambda _e: self.wizard.resolve_conflict({n: "theirs" for n in choosers}))
        rows.append(pmui.Row(apply, keep_theirs))
        self._conflict.param.update(
            objects=[pmui.Paper(pmui.Column(*rows), elevation=2, margin=(10, 0))], visible=True
        )

    def _on_restore(self, _event: Any) -> None:
        if self._versions.value:
            self.wizard.restore(int(self._versions.value))

    def __panel__(self) -> Any:
        w = self.wizard
        return pmui.Column(
            ui.page_header(
                w.form.title,
                "Salvo automaticamente enquanto você digita; continue de qualquer dispositivo.",
                pmui.Button(label="Meus rascunhos", href=DRAFTS_PATH, variant="text"),
            ),
            pmui.Row(self._banner, self._undo, sizing_mode="stretch_width"),
            self._notice,
            self._conflict,
            w.component,
            pmui.Accordion(
                ("Versões guardadas", pmui.Row(self._versions, self._restore)),
                active=[],
                sizing_mode="stretch_width",
            ),
            sizing_mode="stretch_width",
        )


class MyDraftsPage(pn.viewable.Viewer):
    """'Meus rascunhos': every open draft with form, object, step and last save; resume or start one."""

    def __init__(self, *, settings: Settings, user: Any, **params: Any) -> None:
        super().__init__(**params)
        self.settings = settings
        self.user = user

    def rows(self) -> list[drafts.DraftSummary]:
        with session_scope(self.settings) as s:
            return drafts.list_drafts(s, actor=self.user, settings=self.settings)

    def __panel__(self) -> Any:
        new_buttons = []
        for slug in DRAFT_FORMS:
            form = forms.get_form(slug)
            new_buttons.append(
                pmui.Button(
                    label=f"Novo: {form.title}", variant="outlined", href=wizard_url(slug, new_object_id())
                )
            )
        try:
            rows = self.rows()
        except EngineError as exc:
            return pmui.Alert(object=exc.message, severity="error")
        if not rows:
            listing: Any = ui.html_pane(
                ui.empty_state(
                    "Nenhum rascunho aberto",
                    "Comece um formulário abaixo: ele se salva sozinho enquanto você digita.",
                    icon="edit_note",
                )
            )
        else:
            cells = [
                "<table class='rascunhos'><thead><tr><th>Formulário</th><th>Objeto</th><th>Etapa</th>"
                "<th>Salvo em</th><th>Situação</th><th></th></tr></thead><tbody>"
            ]
            for r in rows:
                saved = (
                    brazil.format_datetime(datetime.fromtimestamp(r.updated_at, TZ)) if r.updated_at else ""
                )
                state = "aberto" if r.live else "expirado — versão guardada"
                cells.append(
                    f"<tr data-object='{_esc(r.object_id)}'><td>{_esc(r.form_title)}</td>"
                    f"<td>{_esc(r.object_id)}</td>"
                    f"<td>{r.step + 1}. {_esc(r.step_title)}</td><td>{saved}</td><td>{state}</td>"
                    f"<td><a href='{_esc(wizard_url(r.form_slug, r.object_id))}'>Continuar</a></td></tr>"
                )
            cells.append("</tbody></table>")
            listing = pn.pane.HTML("".join(cells), sizing_mode="stretch_width", stylesheets=[_TABLE_CSS])
        return pmui.Column(
            ui.page_header("Meus rascunhos", "Formulários começados e não enviados; continue de onde parou."),
            ui.card(listing, title="Rascunhos"),
            ui.card(pmui.Row(*new_buttons), title="Começar um novo"),
            sizing_mode="stretch_width",
        )


_TABLE_CSS = """
.rascunhos { border-collapse: collapse; width: 100%; font-family: Roboto, sans-serif; font-size: 0.95rem; }
.rascunhos th { text-align: left; border-bottom: 2px solid #cbd2d9; padding: 0.4rem; }
.rascunhos td { border-bottom: 1px solid #eef2f7; padding: 0.4rem; }
"""


def _esc(text: str) -> str:
    import html

    return html.escape(str(text), quote=True)


def wizard_view(settings: Settings, user: Any, *, form_slug: str | None, object_id: str | None) -> Any:
    """The page body for ``/formularios?form=...&objeto=...`` (a chooser when the form is missing)."""
    form = forms.get_form(form_slug or "")
    if form is None or form.public or form_slug not in DRAFT_FORMS:
        buttons = [
            pmui.Button(
                label=f"Novo: {forms.get_form(s).title}",
                variant="outlined",
                href=wizard_url(s, new_object_id()),
            )
            for s in DRAFT_FORMS
        ]
        return pmui.Column(
            ui.page_header(
                "Formulários",
                "Escolha o formulário. Ele se salva sozinho enquanto você digita e pode ser retomado em "
                "qualquer dispositivo.",
                pmui.Button(label="Meus rascunhos", href=DRAFTS_PATH, variant="text"),
            ),
            ui.card(pmui.Row(*buttons), title="Começar"),
            sizing_mode="stretch_width",
        )
    if not object_id or not drafts.OBJECT_ID_RE.match(object_id):
        object_id = new_object_id()
    wizard = DraftWizard(settings=settings, user=user, form_slug=form.slug, object_id=object_id)
    wizard.open()
    return FormWizardPage(wizard)


# Page registry entries (``dashboard.pages.PAGES`` lists them) -------------------------------------------


def formularios_page(ctx: Any) -> Any:
    """``/formularios?form=clientes&objeto=novo-...``: ``ctx`` is a ``dashboard.pages.base.PageContext``."""
    return wizard_view(
        ctx.settings, ctx.user, form_slug=ctx.arg("form") or None, object_id=ctx.arg("objeto") or None
    )


def rascunhos_page(ctx: Any) -> Any:
    """``/rascunhos``: the signed-in user's drafts."""
    return MyDraftsPage(settings=ctx.settings, user=ctx.user)


def page_specs() -> list[Any]:
    """The ``PageSpec`` entries of this module, for ``dashboard.pages.PAGES``."""
    from dashboard.pages.base import PageSpec

    return [
        PageSpec(
            slug="formularios",
            title="Formulários",
            icon="edit_note",
            permission="drafts.save",
            factory=formularios_page,
            section="Cadastros",
            description="Clientes, processos e lançamentos com salvamento automático",
        ),
        PageSpec(
            slug="rascunhos",
            title="Meus rascunhos",
            icon="drafts",
            permission="drafts.save",
            factory=rascunhos_page,
            section="Cadastros",
            description="Continue de onde parou, em qualquer dispositivo",
        ),
    ]
