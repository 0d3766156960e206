"""Admin page "Webhooks": endpoints with their own secret (shown once), a signed test event, and the log of
every delivery with its attempts and a redeliver button. Everything goes through ``engine.webhooks``."""

from __future__ import annotations

from typing import Any

import panel as pn
import panel_material_ui as pmui
import param

from dashboard.pages import feedback, ui
from dashboard.pages.base import PageContext, PageSpec
from dashboard.pages.processos import DELIVERY_LABELS, DELIVERY_TONES
from engine import webhooks
from engine.db import session_scope
from engine.settings import Settings

SLUG = "webhooks"


class WebhooksViewModel(param.Parameterized):
    new_url = param.String(default="")
    new_description = param.String(default="")
    test_url = param.String(default="")
    revealed_secret = param.String(default="", doc="the secret of the endpoint just created (shown once)")
    endpoints = param.List(default=[])
    deliveries = param.List(default=[])
    last_test = param.Dict(default=None, allow_None=True)
    error = param.String(default="")

    def __init__(self, *, settings: Settings, user: Any, **params: Any) -> None:
        super().__init__(**params)
        self.settings = settings
        self.user = user

    def act(self, fn: Any, *args: Any) -> None:
        self.error = ""
        try:
            fn(*args)
        except Exception as exc:  # every failure gets a message a person can act on
            self.error = feedback.notify_error(exc)

    def load(self) -> None:
        with session_scope(self.settings) as s:
            self.endpoints = [
                webhooks.endpoint_summary(e) for e in webhooks.list_endpoints(s, actor=self.user)
            ]
            rows, _ = webhooks.list_deliveries(s, actor=self.user, limit=50)
            self.deliveries = [webhooks.delivery_summary(d, with_attempts=True) for d in rows]

    def create(self) -> None:
        with session_scope(self.settings) as s:
            _, secret = webhooks.create_endpoint(
                s, actor=self.user, url=self.new_url, description=self.new_description, settings=self.settings
            )
        self.revealed_secret = secret
        self.new_url = self.new_description = ""
        feedback.notify(
            "Endpoint cadastrado. Copie o segredo agora: ele não será mostrado de novo.", "success"
        )
        self.load()

    def deactivate(self, endpoint_id: int) -> None:
        with session_scope(self.settings) as s:
            webhooks.deactivate_endpoint(s, actor=self.user, endpoint_id=endpoint_id)
        self.load()

    def send_test(self) -> None:
        self.last_test = webhooks.send_test(
            lambda: session_scope(self.settings), actor=self.user, url=self.test_url, settings=self.settings
        )
        ok = self.last_test["status"] == "succeeded"
        feedback.notify(
            "Evento de teste entregue." if ok else "O destino não aceitou o evento de teste.",
            "success" if ok else "warning",
        )
        self.load()

    def redeliver(self, delivery_id: int) -> None:
        with session_scope(self.settings) as s:
            webhooks.redeliver(s, actor=self.user, delivery_id=delivery_id)
        feedback.notify(f"Reenvio da entrega {delivery_id} agendado.", "success")
        self.load()


class WebhooksPage(pn.viewable.Viewer):
    def __init__(self, vm: WebhooksViewModel, **params: Any) -> None:
        super().__init__(**params)
        self.vm = vm

    @classmethod
    def create(cls, ctx: PageContext) -> WebhooksPage:
        vm = WebhooksViewModel(settings=ctx.settings, user=ctx.user)
        vm.act(vm.load)
        return cls(vm)

    def _new_endpoint(self) -> Any:
        url = pmui.TextInput.from_param(
            self.vm.param.new_url,
            label="URL",
            sizing_mode="stretch_width",
            placeholder="https://erp.cliente.example/webhooks/oficina",
        )
        desc = pmui.TextInput.from_param(
            self.vm.param.new_description, label="Descrição", sizing_mode="stretch_width"
        )
        button = pmui.Button(label="Cadastrar", variant="contained", icon="add")
        button.on_click(lambda _e: self.vm.act(self.vm.create))
        secret = pn.bind(
            lambda s: (
                ui.html_pane(
                    ui.secret_box(
                        "Segredo do endpoint",
                        s,
                        "Guarde-o agora no sistema que recebe os eventos: ele verifica a "
                        "assinatura webhook-signature com este segredo e não será mostrado de novo.",
                    )
                )
                if s
                else None
            ),
            self.vm.param.revealed_secret,
        )
        return ui.card(url, desc, button, secret, title="Novo endpoint")

    def _endpoints(self, endpoints: list[dict[str, Any]]) -> Any:
        if not endpoints:
            return ui.card(
                ui.html_pane(
                    ui.empty_state(
                        "Nenhum endpoint cadastrado",
                        "Sem endpoint, os eventos são assinados com WEBHOOK_SECRET. "
                        "Cadastre um para dar ao destino um segredo próprio.",
                        icon="webhook",
                    )
                ),
                title="Endpoints",
            )
        rows = []
        for e in endpoints:
            off = pmui.Button(label="Desativar", variant="outlined", size="small", color="error")
            off.on_click(lambda _e, i=e["id"]: self.vm.act(self.vm.deactivate, i))
            rows.append(
                pmui.Row(
                    ui.html_pane(
                        f"<strong>{ui.esc(e['url'])}</strong> · {ui.esc(e['description'])} · segredo "
                        f"<code>{ui.esc(e['secret_hint'])}</code>"
                    ),
                    off,
                    sizing_mode="stretch_width",
                )
            )
        return ui.card(*rows, title="Endpoints")

    def _test(self) -> Any:
        url = pmui.TextInput.from_param(
            self.vm.param.test_url, label="URL para o evento de teste", sizing_mode="stretch_width"
        )
        button = pmui.Button(label="Enviar teste assinado", variant="outlined", icon="send")
        button.on_click(lambda _e: self.vm.act(self.vm.send_test))
        return ui.card(url, button, title="Testar")

    def _deliveries(self, deliveries: list[dict[str, Any]]) -> Any:
        if not deliveries:
            return ui.card(
                ui.html_pane(
                    ui.empty_state("Nenhuma entrega ainda", "As entregas aparecem aqui com cada tentativa.")
                ),
                title="Entregas",
            )
        rows = []
        for d in deliveries:
            attempts = ", ".join(
                f"#{a['number']} {a['status_code'] or a['error'] or '—'} ({a['duration_ms']} ms)"
                for a in d.get("attempt_log", [])
            )
            badge = ui.badge(
                DELIVERY_LABELS.get(d["status"], d["status"]), DELIVERY_TONES.get(d["status"], "neutral")
            )
            again = pmui.Button(
                label="Reenviar", variant="text", size="small", disabled=d["status"] == "waiting"
            )
            again.on_click(lambda _e, i=d["id"]: self.vm.act(self.vm.redeliver, i))
            rows.append(
                pmui.Row(
                    ui.html_pane(
                        f"{d['id']} · {ui.esc(d['event_type'])} → {ui.esc(d['url'])} {badge}<br><small>"
                        f"{ui.esc(attempts)}</small>"
                    ),
                    again,
                    sizing_mode="stretch_width",
                )
            )
        return ui.card(*rows, title="Entregas")

    def __panel__(self) -> Any:
        return pmui.Column(
            ui.page_header(
                "Webhooks", "Destinos dos eventos assinados (Standard Webhooks) e o registro de entregas."
            ),
            pn.bind(lambda e: pmui.Alert(object=e, severity="error") if e else None, self.vm.param.error),
            self._new_endpoint(),
            pn.bind(self._endpoints, self.vm.param.endpoints),
            self._test(),
            pn.bind(self._deliveries, self.vm.param.deliveries),
            sizing_mode="stretch_width",
        )


PAGE = PageSpec(
    slug=SLUG,
    title="Webhooks",
    icon="webhook",
    permission="webhooks.manage",
    factory=WebhooksPage.create,
    section="Administração",
    description="Endpoints, evento de teste e entregas",
)
