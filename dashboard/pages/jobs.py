"""The jobs page (``/jobs``): a live list with filters and server-side paging, and a live detail view with
progress, counters, per-item status, attempts, error and traceback, "Cancelar" and "Tentar novamente".

``JobListModel`` and ``JobDetailModel`` hold the state and call ``engine.jobs``; ``JobsPage`` lays them out
and polls the visible one every ``POLL_MS`` (in Panel's thread pool), pushing changes to the browser only
when something changed. ``?id=N`` opens a job's detail directly (the backups page links there).
"""

from __future__ import annotations

import inspect
import threading
from typing import Any

import panel as pn
import panel_material_ui as pmui
import param

from dashboard.pages import ui
from dashboard.pages.base import PageContext
from dashboard.pages.feedback import notify, run_action
from engine import accounts
from engine import jobs as job_service
from engine.db import session_scope
from engine.errors import ValidationFailed
from engine.models import JOB_STATUSES, Job
from engine.security import can, is_admin
from engine.settings import Settings

POLL_MS = 1000
PAGE_SIZES = (10, 25, 50, 100)
MAX_ITEMS_SHOWN = 500

SORTS = {"-created_at": "Mais recentes primeiro", "created_at": "Mais antigos primeiro",
         "-progress": "Maior progresso", "progress": "Menor progresso", "kind": "Tipo (A–Z)",
         "status": "Situação"}
LIST_COLUMNS = ["ID", "Tipo", "Situação", "Progresso", "Mensagem", "Responsável", "Criado em"]
ITEM_COLUMNS = ["Item", "Descrição", "Situação", "Tentativas", "Erro", "Atualizado em"]
RETRY_LABELS = {"succeeded": "Executar de novo"}


def sorting_supported() -> bool:
    """Whether ``engine.jobs.list_jobs`` sorts on request (``order=``); until then the newest come first."""
    return "order" in inspect.signature(job_service.list_jobs).parameters


def progress_html(percent: int, status: str, *, big: bool = False) -> str:
    tone = {"succeeded": " is-success", "failed": " is-error", "cancelled": " is-warning"}.get(status, "")
    percent = max(0, min(100, int(percent or 0)))
    prefix = "ofc-progress" if big else "ofc-bar"
    return (f'<div class="{prefix}" data-progress="{percent}"><div class="{prefix}-track">'
            f'<div class="{prefix}-fill{tone}" style="width:{percent}%"></div></div>'
            f'<span class="{prefix}-value">{percent}%</span></div>')


def _owner_labels(session: Any, owner_ids: set[int]) -> dict[int, str]:
    labels = {}
    for owner_id in owner_ids:
        user = accounts.get_user(session, user_id=owner_id)
        if user is not None:
            labels[owner_id] = user.name or user.email
    return labels


def job_row(job: Job, owner: str) -> dict[str, Any]:
    """The list's view of a job (plain values; the page renders them)."""
    return {
        "id": job.id, "kind": job.kind, "kind_label": job_service.kind_label(job.kind), "status": job.status,
        "status_label": ui.job_status_label(job.status), "progress": job.progress, "message": job.message,
        "owner": owner, "created_at": ui.fmt_datetime(job.created_at),
        "duration": ui.fmt_duration(job.started_at, job.finished_at),
    }


class JobListModel(param.Parameterized):
    """Filters, paging and the current page of jobs visible to ``user``."""

    kind = param.Selector(default="", objects={"Todos os tipos": ""}, check_on_set=False, label="Tipo")
    status = param.Selector(default="", objects={"Todas as situações": ""}, label="Situação")
    owner_id = param.Selector(default=0, objects={"Todos os responsáveis": 0}, check_on_set=False,
                              label="Responsável")
    since = param.CalendarDate(default=None, allow_None=True, label="Criados de")
    until = param.CalendarDate(default=None, allow_None=True, label="até")
    sort = param.Selector(default="-created_at", objects={v: k for k, v in SORTS.items()}, label="Ordenar por")
    page = param.Integer(default=1, bounds=(1, None))
    page_size = param.Selector(default=25, objects=list(PAGE_SIZES), label="Por página")

    rows = param.List(default=[], doc="the current page, as dicts (see job_row)")
    total = param.Integer(default=0)
    loaded = param.Boolean(default=False)

    def __init__(self, *, settings: Settings, user: Any, **params: Any) -> None:
        super().__init__(**params)
        self.settings = settings
        self.user = user
        self._lock = threading.Lock()
        self.param.status.objects = {"Todas as situações": "",
                                     **{ui.job_status_label(s): s for s in JOB_STATUSES}}
        self.refresh_kinds()
        if is_admin(user):
            self.refresh_owners()

    # Options ---------------------------------------------------------------------------------------------
    def refresh_kinds(self) -> None:
        job_service.load_handlers()
        kinds = sorted(set(job_service._handlers) | set(job_service.KIND_LABELS), key=job_service.kind_label)
        self.param.kind.objects = {"Todos os tipos": "", **{job_service.kind_label(k): k for k in kinds}}

    def refresh_owners(self) -> None:
        with session_scope(self.settings) as s:
            users = accounts.list_users(s, actor=self.user)
            options = {"Todos os responsáveis": 0}
            options.update({f"{u.name} ({u.email})" if u.name else u.email: u.id for u in users})
        self.param.owner_id.objects = options

    @property
    def shows_owner_filter(self) -> bool:
        return is_admin(self.user)

    # Paging ----------------------------------------------------------------------------------------------
    @property
    def page_count(self) -> int:
        return max(1, -(-self.total // int(self.page_size)))

    @property
    def range_label(self) -> str:
        if not self.total:
            return "Nenhum job"
        first = (self.page - 1) * int(self.page_size) + 1
        last = min(self.total, first + len(self.rows) - 1)
        return f"{ui.fmt_int(first)}–{ui.fmt_int(last)} de {ui.fmt_int(self.total)}"

    @property
    def filtered(self) -> bool:
        return bool(self.kind or self.status or self.owner_id or self.since or self.until)

    def clear_filters(self) -> None:
        self.param.update(kind="", status="", owner_id=0, since=None, until=None)

    @param.depends("kind", "status", "owner_id", "since", "until", "sort", "page_size", watch=True)
    def _filters_changed(self) -> None:
        if self.page != 1:
            self.page = 1  # triggers the refresh below
        else:
            self.refresh()

    @param.depends("page", watch=True)
    def _page_changed(self) -> None:
        self.refresh()

    # Loading ---------------------------------------------------------------------------------------------
    def query(self) -> dict[str, Any]:
        if self.since and self.until and self.since > self.until:
            raise ValidationFailed("A data inicial é depois da data final.",
                                   errors=[{"field": "since", "message": "depois da data final"}])
        query: dict[str, Any] = dict(kind=self.kind or None, status=self.status or None,
                                     since=ui.day_start(self.since), until=ui.day_end(self.until),
                                     offset=(self.page - 1) * int(self.page_size), limit=int(self.page_size))
        if is_admin(self.user) and self.owner_id:
            query["owner_id"] = int(self.owner_id)
        if sorting_supported():
            query["order"] = self.sort
        return query

    def refresh(self) -> None:
        """Load the current page (skipped if a refresh is already running)."""
        if not self._lock.acquire(blocking=False):
            return
        try:
            query = self.query()
            with session_scope(self.settings) as s:
                found, total = job_service.list_jobs(s, actor=self.user, **query)
                owners = _owner_labels(s, {j.owner_id for j in found if j.owner_id is not None})
                rows = [job_row(j, owners.get(j.owner_id, "sistema") if j.owner_id else "sistema")
                        for j in found]
            if total and not rows and self.page > 1:  # the page emptied (jobs deleted, filter): go back
                self.page = max(1, -(-total // int(self.page_size)))
                return
            updates: dict[str, Any] = {"loaded": True}
            if rows != self.rows:
                updates["rows"] = rows
            if total != self.total:
                updates["total"] = total
            self.param.update(**updates)
        finally:
            self._lock.release()

    # Actions ---------------------------------------------------------------------------------------------
    def start_diagnostic(self, *, steps: int = 5, step_seconds: float = 1.0) -> int:
        """Start a "Teste do worker" job (admins) and return its id."""
        with session_scope(self.settings) as s:
            job = job_service.start_diagnostic(s, actor=self.user, steps=steps, step_seconds=step_seconds)
            s.flush()
            job_id = job.id
        self.refresh()
        return job_id


class JobDetailModel(param.Parameterized):
    """One job as its owner (or an admin) sees it, reloaded on ``refresh``."""

    job_id = param.Integer(default=None, allow_None=True)
    job = param.Dict(default=None, allow_None=True, doc="snapshot of the job (see snapshot)")
    items = param.List(default=[])
    item_total = param.Integer(default=0)
    missing = param.String(default="", doc="why the job cannot be shown (not found / not yours)")

    def __init__(self, *, settings: Settings, user: Any, **params: Any) -> None:
        super().__init__(**params)
        self.settings = settings
        self.user = user
        self._lock = threading.Lock()

    @param.depends("job_id", watch=True)
    def _job_changed(self) -> None:
        self.param.update(job=None, items=[], item_total=0, missing="")
        if self.job_id is not None:
            self.refresh()

    @property
    def can_cancel(self) -> bool:
        return bool(self.job and self.job["active"] and can(self.user, "jobs.cancel"))

    @property
    def can_retry(self) -> bool:
        if not self.job or self.job["active"] or not can(self.user, "jobs.retry"):
            return False
        needed = job_service.KIND_PERMISSIONS.get(self.job["kind"])  # a retry runs the kind's service again
        return needed is None or can(self.user, needed)

    def refresh(self) -> None:
        if self.job_id is None or not self._lock.acquire(blocking=False):
            return
        try:
            from engine.errors import NotFound

            try:
                with session_scope(self.settings) as s:
                    job = job_service.get_job(s, actor=self.user, job_id=self.job_id)
                    snapshot = self.snapshot(s, job)
                    all_items = job.items
                    item_total = len(all_items)
                    items = [{"key": i.key, "label": i.label, "status": i.status, "attempts": i.attempts,
                              "error": i.error, "updated_at": ui.fmt_datetime(i.updated_at)}
                             for i in all_items[:MAX_ITEMS_SHOWN]]
            except NotFound as exc:
                self.param.update(job=None, items=[], item_total=0, missing=exc.message)
                return
            updates: dict[str, Any] = {"missing": ""}
            if snapshot != self.job:
                updates["job"] = snapshot
            if items != self.items:
                updates["items"] = items
            if item_total != self.item_total:
                updates["item_total"] = item_total
            self.param.update(**updates)
        finally:
            self._lock.release()

    @staticmethod
    def snapshot(session: Any, job: Job) -> dict[str, Any]:
        owner = accounts.get_user(session, user_id=job.owner_id) if job.owner_id else None
        return {
            "id": job.id, "kind": job.kind, "kind_label": job_service.kind_label(job.kind),
            "status": job.status, "status_label": ui.job_status_label(job.status), "active": job.is_active,
            "progress": job.progress, "message": job.message, "counters": dict(job.counters or {}),
            "params": job.params, "result": job.result, "attempts": job.attempts, "error": job.error,
            "traceback": job.traceback, "cancel_requested": job.cancel_requested,
            "retry_of_id": job.retry_of_id, "worker": job.worker,
            "owner": (owner.name or owner.email) if owner else "sistema",
            "created_at": ui.fmt_datetime(job.created_at), "started_at": ui.fmt_datetime(job.started_at),
            "finished_at": ui.fmt_datetime(job.finished_at), "heartbeat_at": ui.fmt_datetime(job.heartbeat_at),
            "duration": ui.fmt_duration(job.started_at, job.finished_at),
        }

    def cancel(self) -> str:
        """Cancel (queued) or ask to stop (running); returns the job's status afterwards."""
        with session_scope(self.settings) as s:
            status = job_service.cancel_job(s, actor=self.user, job_id=self.job_id).status
        self.refresh()
        return status

    def retry(self) -> int:
        """Start a new attempt; returns the new job's id."""
        with session_scope(self.settings) as s:
            new = job_service.retry_job(s, actor=self.user, job_id=self.job_id)
            s.flush()
            new_id = new.id
        return new_id


# The page --------------------------------------------------------------------------------------------------

COUNTER_LABELS = {"bytes_dumped": "Dump", "bytes_uploaded": "Enviado", "bytes_total": "Tamanho",
                  "dump_seconds": "Dump (s)", "backups_removed": "Backups removidos", "feitos": "Feitos",
                  "total": "Total"}


def counter_label(key: str) -> str:
    return COUNTER_LABELS.get(key, key.replace("_", " ").capitalize())


def counter_value(key: str, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if key.startswith("bytes"):
        return ui.fmt_bytes(int(value))
    if isinstance(value, float):
        return f"{value:.2f}".replace(".", ",")
    return ui.fmt_int(value)


def _counters_html(counters: dict[str, Any]) -> str:
    if not counters:
        return ""
    chips = "".join(f'<span class="ofc-counter">{ui.esc(counter_label(str(k)))}'
                    f"<b>{ui.esc(counter_value(str(k), v))}</b></span>" for k, v in sorted(counters.items()))
    return f'<div class="ofc-counters">{chips}</div>'


def _facts_html(facts: list[tuple[str, Any]]) -> str:
    cells = "".join(f'<div class="ofc-fact"><dt>{ui.esc(k)}</dt><dd>{ui.esc(v) or "—"}</dd></div>'
                    for k, v in facts)
    return f'<dl class="ofc-facts">{cells}</dl>'


class JobsPage(pn.viewable.Viewer):
    """Lays out the list and the detail; only one is visible at a time."""

    def __init__(self, ctx: PageContext, **params: Any) -> None:
        super().__init__(**params)
        self.ctx = ctx
        self.listing = JobListModel(settings=ctx.settings, user=ctx.user)
        self.detail = JobDetailModel(settings=ctx.settings, user=ctx.user)
        self._build_list()
        self._build_detail()
        self.listing.param.watch(self._show_rows, ["rows", "total", "loaded"])
        self.detail.param.watch(self._show_job, ["job", "items", "item_total", "missing"])
        start = ctx.arg("id").strip()
        if start.isdigit():
            self.detail.job_id = int(start)
        else:
            run_action(self.listing.refresh)
        self._show_rows()
        self._show_job()
        self._callback = pn.state.add_periodic_callback(self._poll, period=POLL_MS) if pn.state.curdoc else None

    @classmethod
    def create(cls, ctx: PageContext) -> JobsPage:
        return cls(ctx)

    # Polling ---------------------------------------------------------------------------------------------
    def _poll(self) -> None:
        if self.detail.job_id is not None:
            run_action(self.detail.refresh)
        else:
            run_action(self.listing.refresh)

    # List ------------------------------------------------------------------------------------------------
    def _build_list(self) -> None:
        vm = self.listing
        date_opts = dict(format="DD/MM/YYYY", clearable=True, width=140, size="small")
        filters: list[Any] = [
            pmui.Select.from_param(vm.param.kind, width=190, size="small"),
            pmui.Select.from_param(vm.param.status, width=190, size="small"),
        ]
        if vm.shows_owner_filter:
            filters.append(pmui.Select.from_param(vm.param.owner_id, width=200, size="small"))
        filters += [pmui.DatePicker.from_param(vm.param.since, **date_opts),
                    pmui.DatePicker.from_param(vm.param.until, **date_opts)]
        if sorting_supported():
            filters.append(pmui.Select.from_param(vm.param.sort, width=200, size="small"))
        self.clear_button = pmui.Button(label="Limpar filtros", icon="filter_alt_off", variant="text",
                                        on_click=lambda _: run_action(vm.clear_filters), align="center")
        filters.append(self.clear_button)
        columns = LIST_COLUMNS if vm.shows_owner_filter else [c for c in LIST_COLUMNS if c != "Responsável"]
        self.table = ui.table(columns, formatters={"Situação": {"type": "html"}, "Progresso": {"type": "html"},
                                                   "Mensagem": {"type": "textarea"}, "Tipo": {"type": "textarea"}},
                              widths={"ID": 60, "Tipo": 190, "Situação": 120, "Progresso": 160,
                                      "Responsável": 130, "Criado em": 150},
                              css_classes=["ofc-jobs-table"])
        self.columns = columns
        self.table.on_click(self._on_row_click)
        self.empty = ui.html_pane(visible=False)
        self.range_text = ui.html_pane(width=260, height=24, sizing_mode="fixed", align="center")
        self.pager = pmui.Pagination(count=1, value=1, align="center", margin=(0, 0))
        self.pager.param.watch(lambda e: setattr(vm, "page", int(e.new or 1)), "value")
        page_size = pmui.Select.from_param(vm.param.page_size, width=110, size="small", label="Por página")
        self.pager_row = pn.Row(self.range_text, pn.HSpacer(), page_size, self.pager, sizing_mode="stretch_width",
                                margin=(8, 0, 0, 0))
        actions: list[Any] = []
        if self.ctx.can("jobs.diagnostic"):
            actions.append(pmui.Button(label="Testar worker", icon="health_and_safety", variant="outlined",
                                       description="Inicia um job curto de teste para ver se os workers "
                                                   "estão rodando e reportando progresso",
                                       on_click=lambda _: self._start_diagnostic()))
        self.list_view = pn.Column(
            ui.page_header("Jobs", "Trabalhos em segundo plano: backups, downloads, importações e relatórios. "
                           "A lista se atualiza sozinha.", *actions),
            ui.card(pn.FlexBox(*filters, gap="12px", align_items="center", sizing_mode="stretch_width"),
                    self.table, self.empty, self.pager_row),
            sizing_mode="stretch_width",
        )

    def _show_rows(self, *_: Any) -> None:
        vm = self.listing
        rows = [{"ID": r["id"], "Tipo": r["kind_label"], "Situação": ui.job_badge(r["status"]),
                 "Progresso": progress_html(r["progress"], r["status"]), "Mensagem": r["message"],
                 "Responsável": r["owner"], "Criado em": r["created_at"]}
                for r in vm.rows]
        self.table.value = ui.frame(rows, self.columns)
        has_rows = bool(rows)
        self.table.visible = has_rows
        if not has_rows and vm.loaded:
            if vm.filtered:
                self.empty.object = ui.empty_state("Nenhum job com estes filtros",
                                                   "Mude o tipo, a situação ou as datas, ou clique em "
                                                   "\u201cLimpar filtros\u201d para ver todos.", "filter_alt")
            else:
                hint = ("Jobs aparecem aqui quando alguém inicia um backup, uma importação, um download de "
                        "documentos ou um relatório.")
                if self.ctx.can("backups.create"):
                    hint += " Para começar, faça um backup na página Backups ou clique em \u201cTestar worker\u201d."
                self.empty.object = ui.empty_state("Nenhum job ainda", hint, "work_history")
        self.empty.visible = not has_rows and vm.loaded
        self.range_text.object = f'<span class="ofc-pager">{ui.esc(vm.range_label)}</span>'
        self.pager_row.visible = vm.total > 0
        self.pager.count = vm.page_count
        if self.pager.value != vm.page:
            self.pager.value = vm.page
        self.clear_button.visible = vm.filtered

    def _on_row_click(self, event: Any) -> None:
        try:
            job_id = int(self.table.value.iloc[event.row]["ID"])
        except (IndexError, KeyError, ValueError, TypeError):
            return
        self.open_job(job_id)

    def open_job(self, job_id: int | None) -> None:
        self.detail.job_id = job_id
        location = pn.state.location
        if location is not None:
            location.search = f"?id={job_id}" if job_id is not None else ""
        if job_id is None:
            run_action(self.listing.refresh)
        self._show_job()

    def _start_diagnostic(self) -> None:
        job_id = run_action(self.listing.start_diagnostic, steps=5, step_seconds=1.0)
        if job_id is not None:
            notify(f"Teste do worker iniciado (job {job_id}).", "success")
            self.open_job(job_id)

    # Detail ----------------------------------------------------------------------------------------------
    def _build_detail(self) -> None:
        self.back_button = pmui.Button(label="Voltar para a lista", icon="arrow_back", variant="text",
                                       on_click=lambda _: self.open_job(None))
        self.cancel_button = pmui.Button(label="Cancelar", icon="cancel", color="error", variant="outlined",
                                         on_click=lambda _: self._cancel())
        self.retry_button = pmui.Button(label="Tentar novamente", icon="replay", color="primary",
                                        on_click=lambda _: self._retry())
        self.detail_header = ui.html_pane()
        self.detail_body = ui.html_pane()
        self.items_title = ui.html_pane()
        self.items_table = ui.table(ITEM_COLUMNS, formatters={"Situação": {"type": "html"},
                                                              "Erro": {"type": "textarea"}},
                                    widths={"Item": 150, "Situação": 130, "Tentativas": 110, "Atualizado em": 150},
                                    css_classes=["ofc-items-table"])
        self.items_card = ui.card(self.items_title, self.items_table)
        self.problem = ui.html_pane()
        self.detail_view = pn.Column(
            pn.Row(self.back_button, pn.HSpacer(), self.cancel_button, self.retry_button,
                   sizing_mode="stretch_width"),
            ui.card(self.detail_header, self.detail_body),
            self.items_card,
            sizing_mode="stretch_width", visible=False,
        )
        self.missing_view = pn.Column(self.problem, sizing_mode="stretch_width", visible=False)

    def _show_job(self, *_: Any) -> None:
        vm = self.detail
        showing_detail = vm.job_id is not None
        self.list_view.visible = not showing_detail
        self.detail_view.visible = showing_detail and vm.job is not None
        self.missing_view.visible = showing_detail and vm.job is None
        if not showing_detail:
            return
        if vm.job is None:
            text = vm.missing or "Carregando…"
            self.problem.object = (
                '<div class="ofc-refusal"><span class="ofc-empty-icon">search_off</span>'
                f"<h1>Job não encontrado</h1><p>{ui.esc(text)}</p>"
                '<p><a class="ofc-link" href="/jobs">Voltar para a lista de jobs</a></p></div>'
                if vm.missing else f'<p class="ofc-muted">{ui.esc(text)}</p>')
            return
        job = vm.job
        self.detail_header.object = (
            f'<div class="ofc-page-header" data-job-id="{job["id"]}" data-status="{ui.esc(job["status"])}">'
            f'<h1>{ui.esc(job["kind_label"])} <span class="ofc-muted">#{job["id"]}</span> '
            f'{ui.job_badge(job["status"])}</h1></div>')
        body = [progress_html(job["progress"], job["status"], big=True)]
        if job["message"]:
            body.append(f'<p class="ofc-message">{ui.esc(job["message"])}</p>')
        if job["cancel_requested"] and job["active"]:
            body.append('<p class="ofc-message"><b>Cancelamento solicitado.</b> O job para no próximo passo.</p>')
        body.append(_counters_html(job["counters"]))
        facts = [("Responsável", job["owner"]), ("Tentativas", job["attempts"]), ("Criado em", job["created_at"]),
                 ("Iniciado em", job["started_at"]), ("Terminado em", job["finished_at"]),
                 ("Duração", job["duration"]), ("Último sinal", job["heartbeat_at"]), ("Worker", job["worker"])]
        if job["retry_of_id"]:
            facts.append(("Nova tentativa do job", f"#{job['retry_of_id']}"))
        body.append(_facts_html(facts))
        if job["error"]:
            body.append(f'<div class="ofc-error"><strong>Erro:</strong> {ui.esc(job["error"])}</div>')
        if job["traceback"]:
            body.append('<details><summary class="ofc-kv">Traceback (para o suporte)</summary>'
                        f'<pre class="ofc-pre">{ui.esc(job["traceback"])}</pre></details>')
        if job["params"]:
            body.append('<details><summary class="ofc-kv">Parâmetros</summary>'
                        f'<pre class="ofc-pre ofc-json">{ui.esc(ui.pretty_json(job["params"]))}</pre></details>')
        if job["result"]:
            body.append('<details><summary class="ofc-kv">Resultado</summary>'
                        f'<pre class="ofc-pre ofc-json">{ui.esc(ui.pretty_json(job["result"]))}</pre></details>')
        self.detail_body.object = "".join(body)
        self.cancel_button.visible = vm.can_cancel
        self.cancel_button.disabled = bool(job["cancel_requested"])
        self.retry_button.visible = vm.can_retry
        self.retry_button.label = RETRY_LABELS.get(job["status"], "Tentar novamente")
        shown = len(vm.items)
        more = f" (mostrando {shown} de {ui.fmt_int(vm.item_total)})" if vm.item_total > shown else ""
        self.items_title.object = (f'<h2 class="ofc-card-title">Itens '
                                   f'<span class="ofc-muted">{ui.fmt_int(vm.item_total)}{more}</span></h2>')
        rows = [{"Item": i["key"], "Descrição": i["label"], "Situação": ui.item_badge(i["status"]),
                 "Tentativas": i["attempts"], "Erro": i["error"], "Atualizado em": i["updated_at"]}
                for i in vm.items]
        self.items_table.value = ui.frame(rows, ITEM_COLUMNS)
        self.items_card.visible = bool(rows)  # most jobs have no items: no empty card for them

    def _cancel(self) -> None:
        status = run_action(self.detail.cancel)
        if status == "cancelled":
            notify("Job cancelado.", "success")
        elif status is not None:
            notify("Cancelamento solicitado: o job para no próximo passo.", "info")

    def _retry(self) -> None:
        new_id = run_action(self.detail.retry)
        if new_id is not None:
            notify(f"Nova tentativa iniciada (job {new_id}).", "success")
            self.open_job(new_id)

    def __panel__(self) -> Any:
        return pn.Column(self.list_view, self.detail_view, self.missing_view, sizing_mode="stretch_width")

