"""Page "Processos": look a process up, watch its documents arrive, download them, follow the webhook.

``ProcessosViewModel`` holds the state and calls ``engine.documents`` / ``engine.webhooks``; it checks the
número as it is typed (mask and check digits), starts the lookup (the court call runs in Panel's thread
pool, never on the event loop), and polls the status once a second while the download job runs.
``ProcessosPage`` lays it out: metadata, progress bar with counters, the documents table with live status
and download links, and the webhook delivery log with a redeliver button per delivery. Errors go through
``dashboard.pages.feedback`` (a notification) and stay visible above the results.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import panel as pn
import panel_material_ui as pmui
import param

from dashboard.pages import feedback, ui
from dashboard.pages.base import PageContext, PageSpec
from engine import brazil, documents, webhooks
from engine.db import session_scope
from engine.errors import NotFound, ValidationFailed
from engine.settings import Settings

log = logging.getLogger(__name__)

SLUG = "processos"
POLL_MS = 1000
STATUS_LABELS = {
    "pending": "Na fila",
    "processing": "Baixando",
    "available": "Disponível",
    "failed": "Falhou",
}
STATUS_TONES = {"pending": "neutral", "processing": "info", "available": "success", "failed": "error"}
DELIVERY_LABELS = {
    "waiting": "aguardando o fim do download",
    "pending": "na fila",
    "retrying": "nova tentativa agendada",
    "succeeded": "entregue",
    "failed": "falhou",
    "stopped": "interrompida (410)",
}
DELIVERY_TONES = {
    "waiting": "neutral",
    "pending": "neutral",
    "retrying": "warning",
    "succeeded": "success",
    "failed": "error",
    "stopped": "warning",
}


def mask_cnj(text: str) -> str:
    """Progressive mask NNNNNNN-DD.AAAA.J.TR.OOOO over the digits typed so far."""
    d = brazil.digits(text or "")[:20]
    out = ""
    for i, ch in enumerate(d):
        if i == 7:
            out += "-"
        elif i in (9, 13, 14, 16):
            out += "."
        out += ch
    return out


def check_cnj(text: str) -> tuple[str | None, str]:
    """(20 digits or None, hint for the person typing)."""
    d = brazil.digits(text or "")
    if not d:
        return None, "Formato NNNNNNN-DD.AAAA.J.TR.OOOO"
    if len(d) < 20:
        return None, f"Faltam {20 - len(d)} dígitos"
    try:
        return brazil.parse_cnj(mask_cnj(d)), "Número válido"
    except ValueError as exc:
        return None, str(exc)


# mask_cnj in the browser, once the 20 digits are there (while typing, the field keeps what was typed).
_MASK_CNJ_JS = """
const typed = cb_obj.value_input || "";
const d = typed.replace(/\\D/g, "").slice(0, 20);
if (d.length === 20) {
  let out = "";
  for (let i = 0; i < d.length; i++) {
    if (i === 7) out += "-";
    else if (i === 9 || i === 13 || i === 14 || i === 16) out += ".";
    out += d[i];
  }
  if (out !== typed) { cb_obj.value_input = out; }
}
"""


class ProcessosViewModel(param.Parameterized):
    numero_input = param.String(default="", doc="what the person typed")
    numero = param.String(default="", doc="the 20 digits when valid")
    numero_hint = param.String(default="Formato NNNNNNN-DD.AAAA.J.TR.OOOO")
    numero_valid = param.Boolean(default=False)
    webhook_url = param.String(default="")
    busy = param.Boolean(default=False)
    error = param.String(default="")
    notice = param.String(default="")
    status = param.Dict(default=None, allow_None=True)

    def __init__(self, *, settings: Settings, user: Any, **params: Any) -> None:
        super().__init__(**params)
        self.settings = settings
        self.user = user

    @param.depends("numero_input", watch=True)
    def _validate(self) -> None:
        numero, hint = check_cnj(self.numero_input)
        self.numero_hint = hint
        self.numero_valid = numero is not None
        self.numero = numero or ""

    @property
    def running(self) -> bool:
        job = (self.status or {}).get("job") or {}
        return job.get("status") in ("queued", "running")

    def act(self, fn: Any, *args: Any) -> None:
        """Run a user action: errors become a notification (``feedback``) and the inline message."""
        self.error = ""
        try:
            fn(*args)
        except Exception as exc:  # every failure gets a message a person can act on
            self.error = feedback.notify_error(exc)

    def lookup(self, refresh: bool = False) -> None:
        """Look the process up (court call + job start) and load its status; raises EngineError."""
        self.notice = ""
        if not self.numero_valid:
            raise ValidationFailed(self.numero_hint if self.numero_input else "Digite o número do processo.")
        self.busy = True
        try:
            with session_scope(self.settings) as s:
                result = documents.lookup_processo(
                    s,
                    actor=self.user,
                    numero=self.numero,
                    refresh=refresh,
                    webhook_url=self.webhook_url.strip() or None,
                    settings=self.settings,
                )
                state = result.state
            self.notice = {
                "started": "Download iniciado: os documentos aparecem abaixo conforme chegam.",
                "running": "Este processo já está sendo baixado; acompanhando o mesmo job.",
                "finished": "Resultado guardado da última consulta (use Atualizar do tribunal para buscar "
                "novidades).",
                "stored": "Metadados guardados.",
            }[state]
            self.refresh_status()
        finally:
            self.busy = False

    def refresh_status(self) -> None:
        if not self.numero:
            return
        try:
            with session_scope(self.settings) as s:
                self.status = documents.download_status(
                    s, actor=self.user, numero=self.numero, settings=self.settings
                )
        except NotFound:
            self.status = None

    def poll(self) -> None:
        if self.running:
            try:
                self.refresh_status()
            except Exception:  # a missed poll is retried a second later
                log.warning("status poll failed", exc_info=True)

    def redeliver(self, delivery_id: int) -> None:
        with session_scope(self.settings) as s:
            webhooks.redeliver(s, actor=self.user, delivery_id=delivery_id)
        self.notice = f"Reenvio da entrega {delivery_id} agendado."
        feedback.notify(self.notice, "success")
        self.refresh_status()


def _date(value: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if value else None
    except ValueError:
        return None


class ProcessosPage(pn.viewable.Viewer):
    def __init__(self, vm: ProcessosViewModel, **params: Any) -> None:
        super().__init__(**params)
        self.vm = vm
        self._poller: Any = None

    def _numero_widget(self) -> Any:
        field = pmui.TextInput(
            label="Número do processo (CNJ)",
            placeholder="0000000-00.0000.0.00.0000",
            max_length=25,
            sizing_mode="stretch_width",
            css_classes=["ofc-numero"],
        )

        # The mask is applied in the browser: a value written back by the server arrives after the keys typed
        # in the meantime and would replace them (a stale "cleared" or "masked" field eats what follows).
        field.jscallback(value_input=_MASK_CNJ_JS)
        field.param.watch(lambda e: setattr(self.vm, "numero_input", mask_cnj(e.new)), "value_input")
        field.param.watch(lambda e: setattr(self.vm, "numero_input", mask_cnj(e.new)), "value")
        if self.vm.numero_input:
            field.value = self.vm.numero_input
        return field

    def _form(self) -> Any:
        field = self._numero_widget()
        hook = pmui.TextInput.from_param(
            self.vm.param.webhook_url,
            label="Webhook ao terminar (opcional)",
            placeholder="https://seu-sistema.example/webhooks/oficina",
            sizing_mode="stretch_width",
        )
        search = pmui.Button(
            label="Consultar", variant="contained", icon="search", css_classes=["ofc-consultar"]
        )
        refresh = pmui.Button(label="Atualizar do tribunal", variant="outlined", icon="refresh")
        search.on_click(lambda _e: self.vm.act(self.vm.lookup))
        refresh.on_click(lambda _e: self.vm.act(self.vm.lookup, True))

        def enable(*_: Any) -> None:
            search.disabled = refresh.disabled = self.vm.busy or not self.vm.numero_valid
            search.loading = self.vm.busy

        self.vm.param.watch(enable, ["busy", "numero_valid"])
        enable()
        hint = pn.bind(
            lambda h, ok: ui.html_pane(f'<span class="ofc-hint {"ok" if ok else ""}">{ui.esc(h)}</span>'),
            self.vm.param.numero_hint,
            self.vm.param.numero_valid,
        )
        return ui.card(field, hint, hook, pmui.Row(search, refresh), title="Consultar processo")

    def _messages(self, error: str, notice: str, busy: bool) -> Any:
        items: list[Any] = []
        if busy:
            items.append(pmui.LinearProgress(variant="indeterminate", sizing_mode="stretch_width"))
        if error:
            items.append(pmui.Alert(object=error, severity="error", sizing_mode="stretch_width"))
        if notice:
            items.append(pmui.Alert(object=notice, severity="info", sizing_mode="stretch_width"))
        return pmui.Column(*items, sizing_mode="stretch_width")

    def _body(self, status: dict[str, Any] | None) -> Any:
        self._ensure_polling()
        if not status:
            return ui.html_pane(
                ui.empty_state(
                    "Nenhum processo consultado",
                    "Digite um número CNJ acima e clique em Consultar: os documentos "
                    "são baixados em segundo plano e aparecem aqui.",
                    icon="gavel",
                )
            )
        p, job, counters = status["processo"], status["job"], status["counters"]
        partes = "; ".join(f"{x.get('nome', '')} ({x.get('polo', '')})" for x in p.get("partes") or [])
        meta = ui.html_pane(
            f"<div class='ofc-processo'><strong>{ui.esc(p['numero_formatado'])}</strong> · "
            f"{ui.esc(p['tribunal'])}<br>{ui.esc(p['classe'])} — {ui.esc(p['assunto'])}<br>"
            f"{ui.esc(p.get('orgao_julgador'))}<br><small>{ui.esc(partes)}</small></div>"
        )
        summary = (
            f"{counters['available']} de {counters['total']} disponíveis · {counters['processing']} "
            f"baixando · {counters['pending']} na fila · {counters['failed']} com falha"
        )
        job_line = ""
        if job:
            job_line = f"Job {job['id']} · {ui.job_badge(job['status'])} {ui.esc(job.get('message') or '')}"
        progress = pmui.Column(
            pmui.LinearProgress(value=status["progress"], variant="determinate", sizing_mode="stretch_width"),
            ui.html_pane(
                f"<span class='ofc-progresso'>{status['progress']}% · {ui.esc(summary)}</span>"
                f"<br><small>{job_line}</small>"
            ),
            sizing_mode="stretch_width",
        )
        return pmui.Column(
            ui.card(meta, progress, title="Processo"),
            self._documents(status["documentos"]),
            self._deliveries(status.get("webhook")),
            sizing_mode="stretch_width",
        )

    def _documents(self, docs: list[dict[str, Any]]) -> Any:
        if not docs:
            return ui.card(
                ui.html_pane(
                    ui.empty_state("Sem documentos", "O tribunal não listou documentos para este processo.")
                ),
                title="Documentos",
            )
        rows = []
        for d in docs:
            link = (
                f"<a href='{ui.esc(d['download_url'])}' target='_blank' rel='noopener'>Baixar</a>"
                if d.get("download_url")
                else ""
            )
            error = f"<div class='ofc-erro'>{ui.esc(d['last_error'])}</div>" if d.get("last_error") else ""
            badge = ui.badge(
                STATUS_LABELS.get(d["status"], d["status"]), STATUS_TONES.get(d["status"], "neutral")
            )
            rows.append(
                f"<tr data-doc='{ui.esc(d['id'])}' data-status='{ui.esc(d['status'])}'>"
                f"<td>{ui.esc(d['nome'])}{error}</td><td>{ui.esc(d.get('tipo'))}</td>"
                f"<td>{ui.fmt_date(_date(d.get('data')))}</td>"
                f"<td>{ui.fmt_bytes(d.get('size') or d.get('tamanho'))}</td><td>{badge}</td>"
                f"<td>{d.get('attempts', 0)}</td><td>{link}</td></tr>"
            )
        table = (
            "<table class='ofc-docs'><thead><tr><th>Documento</th><th>Tipo</th><th>Data</th>"
            "<th>Tamanho</th><th>Situação</th><th>Tentativas</th><th></th></tr></thead><tbody>"
            + "".join(rows)
            + "</tbody></table>"
        )
        return ui.card(
            pn.pane.HTML(table, sizing_mode="stretch_width", stylesheets=[ui.stylesheet(), _CSS]),
            title="Documentos",
        )

    def _deliveries(self, webhook: dict[str, Any] | None) -> Any:
        if not webhook:
            return ui.card(
                ui.html_pane(
                    "<small>Nenhum webhook pedido para este download. Informe uma URL "
                    "acima para ser avisado quando terminar.</small>"
                ),
                title="Webhook",
            )
        rows: list[Any] = []
        for d in webhook["deliveries"]:
            attempts = "".join(
                f"<li>#{a['number']} ({a['trigger']}) · {a['status_code'] or ui.esc(a['error']) or '—'} · "
                f"{a['duration_ms']} ms · {ui.fmt_datetime(_date(a['started_at']))}"
                + (
                    f"<br><code>{ui.esc(a['response_excerpt'][:200])}</code>"
                    if a.get("response_excerpt")
                    else ""
                )
                + "</li>"
                for a in d.get("attempt_log", [])
            )
            button = pmui.Button(
                label="Reenviar",
                variant="outlined",
                size="small",
                icon="send",
                disabled=d["status"] == "waiting",
            )
            button.on_click(lambda _e, i=d["id"]: self.vm.act(self.vm.redeliver, i))
            badge = ui.badge(
                DELIVERY_LABELS.get(d["status"], d["status"]), DELIVERY_TONES.get(d["status"], "neutral")
            )
            text = ui.html_pane(
                f"<div class='ofc-entrega'>{ui.esc(d['url'])} {badge}"
                f" · {d['attempts']} tentativa(s)<ul>{attempts}</ul></div>"
            )
            rows.append(pmui.Row(text, button, sizing_mode="stretch_width"))
        return ui.card(*rows, title="Webhook")

    def _ensure_polling(self) -> None:
        if self._poller is None and pn.state.curdoc is not None:
            self._poller = pn.state.add_periodic_callback(self.vm.poll, period=POLL_MS)

    def __panel__(self) -> Any:
        return pmui.Column(
            ui.page_header(
                "Processos", "Consulte um processo pelo número CNJ e acompanhe o download dos documentos."
            ),
            self._form(),
            pn.bind(self._messages, self.vm.param.error, self.vm.param.notice, self.vm.param.busy),
            pn.bind(self._body, self.vm.param.status),
            sizing_mode="stretch_width",
        )


_CSS = """
.ofc-docs { border-collapse: collapse; width: 100%; font-size: 0.92rem; }
.ofc-docs th { text-align: left; border-bottom: 2px solid #cbd2d9; padding: 0.4rem; }
.ofc-docs td { border-bottom: 1px solid #eef2f7; padding: 0.4rem; vertical-align: top; }
.ofc-erro { color: #9b1c1c; font-size: 0.8rem; }
"""


def processos_view(settings: Settings, user: Any, *, numero: str | None = None) -> ProcessosPage:
    """The page body for ``/processos`` (``?numero=...`` opens a process directly)."""
    vm = ProcessosViewModel(settings=settings, user=user)
    if numero:
        vm.numero_input = mask_cnj(numero)
        if vm.numero_valid:
            vm.act(vm.refresh_status)
    return ProcessosPage(vm)


def page(ctx: PageContext) -> ProcessosPage:
    return processos_view(ctx.settings, ctx.user, numero=ctx.arg("numero") or None)


PAGE = PageSpec(
    slug=SLUG,
    title="Processos",
    icon="gavel",
    permission="documentos.read",
    factory=page,
    section="Operação",
    description="Consulta de processos e download de documentos",
)
