"""The backups page (``/backups``, admins): "Fazer backup agora", the live progress of the backup job, and the
backups kept (date, size, checksum).

``BackupsModel`` calls ``engine.backups`` (``start_backup``, ``list_backups``) and ``engine.jobs`` for the
job's progress; the page polls it every ``POLL_MS`` while a backup runs.
"""

from __future__ import annotations

import threading
from typing import Any

import panel as pn
import panel_material_ui as pmui
import param

from dashboard.pages import ui
from dashboard.pages.base import PageContext
from dashboard.pages.feedback import notify, run_action
from dashboard.pages.jobs import progress_html
from engine import accounts, backups
from engine import jobs as job_service
from engine.db import session_scope
from engine.errors import NotFound
from engine.settings import Settings

POLL_MS = 1000
IDLE_EVERY = 5  # polls between list refreshes when no backup runs
COLUMNS = ["ID", "Criado em", "Tamanho", "Banco", "SHA-256", "Job", "Feito por"]
DIALECTS = {"postgresql": "PostgreSQL", "sqlite": "SQLite"}


class BackupsModel(param.Parameterized):
    backups = param.List(default=[], doc="backups kept, newest first, as dicts")
    job = param.Dict(default=None, allow_None=True, doc="the backup job being followed")
    loaded = param.Boolean(default=False)

    def __init__(self, *, settings: Settings, user: Any, **params: Any) -> None:
        super().__init__(**params)
        self.settings = settings
        self.user = user
        self.job_id: int | None = None
        self._lock = threading.Lock()
        self._ticks = 0

    @property
    def running(self) -> bool:
        return bool(self.job and self.job["active"])

    def start(self) -> int:
        """Queue a backup (or follow the one already queued or running); returns the job id."""
        with session_scope(self.settings) as s:
            job = backups.start_backup(s, actor=self.user)
            s.flush()
            job_id = job.id
        self.job_id = job_id
        self.refresh()
        return job_id

    def refresh(self) -> None:
        if not self._lock.acquire(blocking=False):
            return
        try:
            with session_scope(self.settings) as s:
                rows = backups.list_backups(s, actor=self.user)
                people: dict[int, str] = {}
                for row in rows:
                    if row.created_by_id and row.created_by_id not in people:
                        user = accounts.get_user(s, user_id=row.created_by_id)
                        people[row.created_by_id] = (user.name or user.email) if user else "?"
                listed = [{"id": b.id, "created_at": ui.fmt_datetime(b.created_at), "size": b.size_bytes,
                           "dialect": b.dialect, "sha256": b.sha256, "job_id": b.job_id,
                           "by": people.get(b.created_by_id, "sistema") if b.created_by_id else "sistema"}
                          for b in rows]
                job = self._follow(s)
            updates: dict[str, Any] = {"loaded": True}
            if listed != self.backups:
                updates["backups"] = listed
            if job != self.job:
                updates["job"] = job
            self.param.update(**updates)
        finally:
            self._lock.release()

    def _follow(self, session: Any) -> dict[str, Any] | None:
        """The job started here, else a backup job already queued or running (someone else's, the schedule)."""
        if self.job_id is None:
            active = [j for status in ("running", "queued")
                      for j in job_service.list_jobs(session, actor=self.user, kind="backup", status=status,
                                                     limit=1)[0]]
            if not active:
                return None
            self.job_id = active[0].id
        try:
            job = job_service.get_job(session, actor=self.user, job_id=self.job_id)
        except NotFound:
            self.job_id = None
            return None
        return {"id": job.id, "status": job.status, "status_label": ui.job_status_label(job.status),
                "active": job.is_active, "progress": job.progress, "message": job.message, "error": job.error}

    def poll(self) -> None:
        """Called every second by the page: follow a running backup closely, otherwise look now and then."""
        self._ticks += 1
        if self.running or self._ticks % IDLE_EVERY == 0:
            self.refresh()


class BackupsPage(pn.viewable.Viewer):
    def __init__(self, ctx: PageContext, **params: Any) -> None:
        super().__init__(**params)
        self.ctx = ctx
        self.model = BackupsModel(settings=ctx.settings, user=ctx.user)
        s = ctx.settings
        self.start_button = pmui.Button(label="Fazer backup agora", icon="backup", color="primary",
                                        size="large", on_click=lambda _: self._start())
        self.progress = ui.html_pane()
        self.progress_card = ui.card(self.progress, title="Backup em andamento", visible=False)
        self.table = ui.table(COLUMNS, widths={"ID": 70, "SHA-256": 200}, formatters={"SHA-256": {"type": "html"},
                                                                                     "Job": {"type": "html"}})
        self.empty = ui.html_pane(ui.empty_state(
            "Nenhum backup ainda",
            "Clique em \u201cFazer backup agora\u201d para criar o primeiro. Depois disso, um backup automático "
            f"roda todo dia às {s.backup_hour} h.", "backup"), visible=False)
        self.header = ui.page_header(
            "Backups",
            "Cópias completas e consistentes do banco de dados, guardadas no armazenamento de arquivos com "
            f"soma de verificação (SHA-256). Os {s.backup_keep} mais recentes são mantidos; um backup "
            f"automático roda todo dia às {s.backup_hour} h.", self.start_button)
        self.note = ui.html_pane(
            '<p class="ofc-muted">Para restaurar, rode <code>oficina restore ID</code> no servidor: a soma de '
            "verificação é conferida antes e a restauração substitui todos os dados atuais.</p>")
        self.model.param.watch(self._show, ["backups", "job", "loaded"])
        run_action(self.model.refresh)
        self._show()
        if pn.state.curdoc:
            pn.state.add_periodic_callback(lambda: run_action(self.model.poll), period=POLL_MS)

    @classmethod
    def create(cls, ctx: PageContext) -> BackupsPage:
        return cls(ctx)

    def _start(self) -> None:
        job_id = run_action(self.model.start)
        if job_id is not None:
            notify(f"Backup iniciado (job {job_id}). Acompanhe o progresso aqui ou na página de jobs.", "success")

    def _show(self, *_: Any) -> None:
        model = self.model
        job = model.job
        self.progress_card.visible = job is not None
        self.start_button.disabled = model.running
        if job is not None:
            parts = [f'<div data-job-id="{job["id"]}" data-status="{ui.esc(job["status"])}">',
                     f'<p class="ofc-message">{ui.job_badge(job["status"])} &nbsp;Job #{job["id"]}</p>',
                     progress_html(job["progress"], job["status"], big=True)]
            if job["message"]:
                parts.append(f'<p class="ofc-message">{ui.esc(job["message"])}</p>')
            if job["error"]:
                parts.append(f'<div class="ofc-error"><strong>Erro:</strong> {ui.esc(job["error"])}</div>')
            parts.append(f'<p><a class="ofc-link" href="/jobs?id={job["id"]}">Ver detalhes na página de '
                         "jobs</a></p></div>")
            self.progress.object = "".join(parts)
            self.progress_card.objects[0].object = (
                '<h2 class="ofc-card-title">'
                + ("Backup em andamento" if job["active"] else "Último backup iniciado aqui") + "</h2>")
        rows = [{"ID": b["id"], "Criado em": b["created_at"], "Tamanho": ui.fmt_bytes(b["size"]),
                 "Banco": DIALECTS.get(b["dialect"], b["dialect"]),
                 "SHA-256": f'<span class="ofc-mono" title="{ui.esc(b["sha256"])}">{ui.esc(b["sha256"][:16])}…</span>',
                 "Job": (f'<a href="/jobs?id={b["job_id"]}">#{b["job_id"]}</a>' if b["job_id"] else "—"),
                 "Feito por": b["by"]} for b in model.backups]
        self.table.value = ui.frame(rows, COLUMNS)
        self.table.visible = bool(rows)
        self.empty.visible = model.loaded and not rows

    def __panel__(self) -> Any:
        return pn.Column(self.header, self.progress_card,
                         ui.card(self.table, self.empty, self.note, title="Backups guardados"),
                         sizing_mode="stretch_width")
