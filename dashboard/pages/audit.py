"""The audit page (``/audit``, admins): who did what, when, to which entity, with the state before and after.

``AuditModel`` pages and filters on the server through ``engine.audit.list_events`` (action, entity type,
actor, date range, free text on the entity id or the actor); clicking a row shows what changed.
"""

from __future__ import annotations

import json
from typing import Any

import panel as pn
import panel_material_ui as pmui
import param

from dashboard.pages import ui
from dashboard.pages.base import PageContext
from dashboard.pages.feedback import run_action
from engine import accounts, audit
from engine.db import session_scope
from engine.errors import ValidationFailed
from engine.settings import Settings

PAGE_SIZES = (25, 50, 100)
COLUMNS = ["ID", "Data e hora", "Quem", "Ação", "Entidade", "Origem", "Request ID"]
SOURCES = {"web": "navegador", "api": "API", "cli": "linha de comando", "job": "job"}


def changes(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[dict[str, str]]:
    """Field-by-field differences between two snapshots (values as compact JSON)."""
    before, after = before or {}, after or {}
    out = []
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key, None), after.get(key, None)
        if key in before and key in after and old == new:
            continue
        out.append({"field": key,
                    "before": json.dumps(old, ensure_ascii=False, default=str) if key in before else "—",
                    "after": json.dumps(new, ensure_ascii=False, default=str) if key in after else "—"})
    return out


class AuditModel(param.Parameterized):
    action = param.Selector(default="", objects={"Todas as ações": ""}, check_on_set=False, label="Ação")
    entity_type = param.String(default="", label="Tipo de entidade")
    actor_id = param.Selector(default=0, objects={"Todas as pessoas": 0}, check_on_set=False, label="Quem")
    since = param.CalendarDate(default=None, allow_None=True, label="De")
    until = param.CalendarDate(default=None, allow_None=True, label="até")
    search = param.String(default="", label="Busca")  # entity id or actor e-mail
    page = param.Integer(default=1, bounds=(1, None))
    page_size = param.Selector(default=25, objects=list(PAGE_SIZES), label="Por página")

    rows = param.List(default=[])
    total = param.Integer(default=0)
    loaded = param.Boolean(default=False)
    selected = param.Dict(default=None, allow_None=True)

    def __init__(self, *, settings: Settings, user: Any, **params: Any) -> None:
        super().__init__(**params)
        self.settings = settings
        self.user = user
        self._events: dict[int, dict[str, Any]] = {}
        self.refresh_options()

    def refresh_options(self) -> None:
        with session_scope(self.settings) as s:
            actions = audit.distinct_actions(s)
            users = accounts.list_users(s, actor=self.user)
            people = {"Todas as pessoas": 0, **{u.email: u.id for u in users}}
        self.param.action.objects = {"Todas as ações": "", **{a: a for a in actions}}
        self.param.actor_id.objects = people

    @property
    def filtered(self) -> bool:
        return bool(self.action or self.entity_type or self.actor_id or self.since or self.until or self.search)

    @property
    def page_count(self) -> int:
        return max(1, -(-self.total // int(self.page_size)))

    @property
    def range_label(self) -> str:
        if not self.total:
            return "Nenhum registro"
        first = (self.page - 1) * int(self.page_size) + 1
        return f"{ui.fmt_int(first)}–{ui.fmt_int(first + len(self.rows) - 1)} de {ui.fmt_int(self.total)}"

    def clear_filters(self) -> None:
        self.param.update(action="", entity_type="", actor_id=0, since=None, until=None, search="")

    @param.depends("action", "entity_type", "actor_id", "since", "until", "search", "page_size", watch=True)
    def _filters_changed(self) -> None:
        if self.page != 1:
            self.page = 1
        else:
            self.refresh()

    @param.depends("page", watch=True)
    def _page_changed(self) -> None:
        self.refresh()

    def refresh(self) -> None:
        if self.since and self.until and self.since > self.until:
            raise ValidationFailed("A data inicial é depois da data final.",
                                   errors=[{"field": "since", "message": "depois da data final"}])
        with session_scope(self.settings) as s:
            events, total = audit.list_events(
                s, actor=self.user, action=self.action or None, entity_type=self.entity_type.strip() or None,
                actor_id=int(self.actor_id) or None, since=ui.day_start(self.since), until=ui.day_end(self.until),
                search=self.search.strip()[:200] or None, offset=(self.page - 1) * int(self.page_size),
                limit=int(self.page_size))
            rows = [{"id": e.id, "created_at": ui.fmt_datetime(e.created_at), "actor": e.actor_label,
                     "action": e.action, "entity_type": e.entity_type, "entity_id": e.entity_id,
                     "source": SOURCES.get(e.source, e.source), "request_id": e.request_id,
                     "before": e.before, "after": e.after} for e in events]
        self._events = {r["id"]: r for r in rows}
        self.param.update(rows=rows, total=total, loaded=True)

    def select(self, event_id: int | None) -> None:
        self.selected = self._events.get(event_id) if event_id is not None else None


class AuditPage(pn.viewable.Viewer):
    def __init__(self, ctx: PageContext, **params: Any) -> None:
        super().__init__(**params)
        self.ctx = ctx
        vm = self.model = AuditModel(settings=ctx.settings, user=ctx.user)
        date_opts = dict(format="DD/MM/YYYY", clearable=True, width=150, size="small")
        self.clear_button = pmui.Button(label="Limpar filtros", icon="filter_alt_off", variant="text",
                                        align="center", on_click=lambda _: run_action(vm.clear_filters))
        self.filters = pn.FlexBox(
            pmui.Select.from_param(vm.param.action, width=190, size="small"),
            pmui.TextInput.from_param(vm.param.entity_type, placeholder="user, job, backup…", width=160,
                                      size="small"),
            pmui.Select.from_param(vm.param.actor_id, width=200, size="small"),
            pmui.DatePicker.from_param(vm.param.since, **date_opts),
            pmui.DatePicker.from_param(vm.param.until, **date_opts),
            pmui.TextInput.from_param(vm.param.search, placeholder="ID da entidade ou e-mail", width=200,
                                      size="small"),
            self.clear_button, gap="12px", align_items="center", sizing_mode="stretch_width")
        self.table = ui.table(COLUMNS, widths={"ID": 64, "Data e hora": 160, "Origem": 130, "Request ID": 130},
                              css_classes=["ofc-audit-table"])
        self.table.on_click(self._on_click)
        self.empty = ui.html_pane(visible=False)
        self.range_text = ui.html_pane(width=260, height=24, sizing_mode="fixed", align="center")
        self.pager = pmui.Pagination(count=1, value=1, align="center")
        self.pager.param.watch(lambda e: run_action(setattr, vm, "page", int(e.new or 1)), "value")
        self.detail = ui.html_pane()
        self.dialog = pmui.Dialog(self.detail, title="O que mudou", open=False, close_on_click=True,
                                  show_close_button=True, width_option="md", css_classes=["ofc-audit-dialog"])
        vm.param.watch(self._show_rows, ["rows", "total", "loaded"])
        vm.param.watch(self._show_detail, ["selected"])
        run_action(vm.refresh)
        self._show_rows()

    @classmethod
    def create(cls, ctx: PageContext) -> AuditPage:
        return cls(ctx)

    def _on_click(self, event: Any) -> None:
        try:
            self.model.select(int(self.table.value.iloc[event.row]["ID"]))
        except (IndexError, KeyError, ValueError, TypeError):
            return
        self.dialog.open = self.model.selected is not None

    def _show_rows(self, *_: Any) -> None:
        vm = self.model
        rows = [{"ID": r["id"], "Data e hora": r["created_at"], "Quem": r["actor"], "Ação": r["action"],
                 "Entidade": f"{r['entity_type']} {r['entity_id']}".strip(), "Origem": r["source"],
                 "Request ID": r["request_id"][:12]} for r in vm.rows]
        self.table.value = ui.frame(rows, COLUMNS)
        self.table.visible = bool(rows)
        if not rows and vm.loaded:
            self.empty.object = (ui.empty_state("Nada encontrado com estes filtros",
                                                "Mude a ação, a pessoa ou as datas, ou clique em \u201cLimpar "
                                                "filtros\u201d.", "filter_alt") if vm.filtered else
                                 ui.empty_state("Nenhum registro ainda", "Logins, mudanças de usuários, jobs e "
                                                "backups aparecem aqui assim que acontecem.", "policy"))
        self.empty.visible = not rows and vm.loaded
        self.range_text.object = f'<span class="ofc-pager">{ui.esc(vm.range_label)}</span>'
        self.pager.count = vm.page_count
        if self.pager.value != vm.page:
            self.pager.value = vm.page
        self.clear_button.visible = vm.filtered

    def _show_detail(self, *_: Any) -> None:
        event = self.model.selected
        if event is None:
            self.dialog.open = False
            return
        diff = changes(event["before"], event["after"])
        lines = "".join(f"<tr><td><b>{ui.esc(c['field'])}</b></td><td>{ui.esc(c['before'])}</td>"
                        f"<td>{ui.esc(c['after'])}</td></tr>" for c in diff)
        table = (f'<table class="ofc-diff"><thead><tr><th>Campo</th><th>Antes</th><th>Depois</th></tr></thead>'
                 f"<tbody>{lines}</tbody></table>" if diff else
                 '<p class="ofc-muted">Este registro não guarda estado antes/depois.</p>')
        self.detail.object = (
            f'<h2 class="ofc-card-title">{ui.esc(event["action"])} · {ui.esc(event["entity_type"])} '
            f'{ui.esc(event["entity_id"])}</h2>'
            f'<p class="ofc-kv">{ui.esc(event["created_at"])} · {ui.esc(event["actor"])} · origem: '
            f'{ui.esc(event["source"] or "—")} · request id: <span class="ofc-mono">'
            f'{ui.esc(event["request_id"] or "—")}</span></p>{table}')

    def __panel__(self) -> Any:
        return pn.Column(
            ui.page_header("Auditoria", "Quem fez o quê, quando e em qual registro, com o estado antes e depois. "
                                        "Clique em uma linha para ver o que mudou."),
            ui.card(self.filters, self.table, self.empty,
                    pn.Row(self.range_text, pn.HSpacer(),
                           pmui.Select.from_param(self.model.param.page_size, width=110, size="small"),
                           self.pager, sizing_mode="stretch_width", margin=(8, 0, 0, 0))),
            self.dialog, sizing_mode="stretch_width")
