"""Page "Importações": send a CSV/XLSX, check how it was read, map its columns, choose the mode, run it as a
job and watch it to the end, with the rejected-rows report to download.

``ImportsViewModel`` holds the state and calls ``engine.imports`` (preview, start, status) and
``engine.jobs`` (cancel). The file itself never goes through the websocket: ``FileUploader`` (a small
browser component) streams it to ``POST /uploads`` with a progress bar and hands the recorded upload to
the view-model. ``ImportsPage`` lays the four steps out and polls the job once a second while it runs.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import panel as pn
import panel_material_ui as pmui
import param
from panel.custom import JSComponent

from dashboard.pages import feedback, ui
from dashboard.pages.base import PageContext, PageSpec
from engine import brazil, imports, jobs
from engine.db import session_scope
from engine.errors import ValidationFailed
from engine.imports.reader import ENCODING_LABELS, SEPARATOR_NAMES
from engine.settings import Settings

log = logging.getLogger(__name__)

SLUG = "importacoes"
POLL_MS = 1000
IGNORE = "— ignorar —"
MODE_LABELS = {
    "insert": "Inserir só chaves novas (as existentes ficam como estão)",
    "upsert": "Atualizar: insere as novas e atualiza as colunas mapeadas das existentes",
    "replace": "Substituir: as linhas das chaves presentes no arquivo são trocadas inteiras",
}
ENCODINGS = {
    "Detectar": "",
    "UTF-8": "utf-8",
    "Latin-1 (ISO-8859-1)": "latin-1",
    "Windows-1252": "cp1252",
    "UTF-16": "utf-16",
}
SEPARATORS = {
    "Detectar": "",
    "Ponto e vírgula (;)": ";",
    "Vírgula (,)": ",",
    "Tabulação": "\t",
    "Barra vertical (|)": "|",
}
DECIMALS = {"Detectar": "", "Vírgula (1.234,56)": ",", "Ponto (1234.56)": "."}
PHASES = {"lendo": "Lendo e validando", "mesclando": "Gravando no banco", "concluído": "Concluído"}


class FileUploader(JSComponent):
    """A file input that streams the chosen file to ``POST /uploads`` (XHR, with progress)."""

    accept = param.String(default=".csv,.txt,.tsv,.xlsx")
    max_mb = param.Integer(default=2048)
    label = param.String(default="Escolher arquivo")
    acknowledged = param.String(default="", doc="the id of the last upload the server took (the page resends "
                                "the news of an upload until it sees it here)")
    resend_ms = param.Integer(default=2500, doc="how long the page waits for that before it resends")

    _esm: ClassVar[str] = """
export function render({ model, el }) {
  const box = document.createElement("div");
  box.className = "ofc-upload";
  const input = document.createElement("input");
  input.type = "file";
  input.accept = model.accept;
  input.className = "ofc-upload-input";
  input.id = "ofc-upload-" + Math.random().toString(36).slice(2);
  input.setAttribute("aria-label", model.label);
  // The browser's own file button speaks the browser's language ("Choose File"): ours is a label for
  // the (visually hidden, still focusable) input, inside a zone that also takes a dropped file.
  const zone = document.createElement("label");
  zone.className = "ofc-upload-zone";
  zone.htmlFor = input.id;
  const button = document.createElement("span");
  button.className = "ofc-upload-button";
  button.textContent = model.label;
  const hint = document.createElement("span");
  hint.className = "ofc-upload-hint";
  hint.textContent = `ou arraste o arquivo para cá (CSV ou XLSX, até ${model.max_mb.toLocaleString("pt-BR")} MB)`;
  zone.append(button, hint);
  const bar = document.createElement("progress");
  bar.max = 100; bar.value = 0; bar.className = "ofc-upload-bar"; bar.hidden = true;
  const text = document.createElement("span");
  text.className = "ofc-upload-text";
  text.textContent = "Nenhum arquivo escolhido.";
  const mb = (n) => (n / 1048576).toFixed(1).replace(".", ",") + " MB";
  let uploads = 0;
  const send = (file) => {
    if (!file || input.disabled) return;
    if (file.size > model.max_mb * 1048576) {
      text.textContent = `O arquivo tem ${mb(file.size)}; o limite é ${model.max_mb.toLocaleString("pt-BR")} MB.`;
      model.send_msg({type: "error", detail: text.textContent});
      return;
    }
    const mine = ++uploads;  // an older file's news stops going out once this one starts
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/uploads?filename=" + encodeURIComponent(file.name));
    xhr.setRequestHeader("X-Oficina-Upload", "1");
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    bar.hidden = false; bar.value = 0; input.disabled = true; box.classList.add("ofc-busy");
    text.textContent = `Enviando ${file.name}…`;
    model.send_msg({type: "started", filename: file.name, size: file.size});
    xhr.upload.onprogress = (e) => {
      if (!e.lengthComputable) return;
      bar.value = Math.round(100 * e.loaded / e.total);
      text.textContent = `Enviando ${file.name}: ${bar.value}% (${mb(e.loaded)} de ${mb(e.total)})`;
    };
    xhr.onload = () => {
      input.disabled = false; input.value = ""; box.classList.remove("ofc-busy");
      let body = {};
      try { body = JSON.parse(xhr.responseText); } catch (err) { body = {detail: xhr.statusText}; }
      if (xhr.status === 201) {
        bar.value = 100;
        text.textContent = `${file.name} enviado (${mb(file.size)}).`;
        // The file is on the server; so that the page cannot miss it, the news goes again until the server
        // says it took it (a message lost on a busy connection would otherwise leave the page waiting).
        let tries = 0;
        const tell = () => {
          if (mine !== uploads || model.acknowledged === String(body.id)) return;  // taken, or a newer file
          if (tries++ >= 8) {
            text.textContent = `${file.name} está no servidor, mas a página não recebeu a confirmação. ` +
              "Recarregue a página e envie de novo.";
            model.send_msg({type: "error", detail: text.textContent});
            return;
          }
          model.send_msg({type: "uploaded", upload: body});
          setTimeout(tell, model.resend_ms);
        };
        tell();
      } else {
        bar.hidden = true;
        text.textContent = body.detail || `Falha no envio (${xhr.status}).`;
        model.send_msg({type: "error", detail: text.textContent, status: xhr.status});
      }
    };
    xhr.onerror = () => {
      input.disabled = false; bar.hidden = true; box.classList.remove("ofc-busy");
      text.textContent = "A conexão caiu durante o envio. Tente de novo.";
      model.send_msg({type: "error", detail: text.textContent});
    };
    xhr.send(file);
  };
  input.addEventListener("change", () => send(input.files[0]));
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("ofc-over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("ofc-over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault(); zone.classList.remove("ofc-over");
    if (e.dataTransfer && e.dataTransfer.files.length) send(e.dataTransfer.files[0]);
  });
  box.append(input, zone, bar, text);
  el.append(box);
}
"""
    _stylesheets: ClassVar[list[str]] = [
        """
.ofc-upload { display: flex; flex-direction: column; gap: 8px; font-family: Roboto, Arial, sans-serif; }
.ofc-upload-input { position: absolute; width: 1px; height: 1px; opacity: 0; overflow: hidden; }
.ofc-upload-zone { display: flex; align-items: center; gap: 14px; padding: 14px 16px; cursor: pointer;
  border: 2px dashed #b8c2cc; border-radius: 8px; background: #f7f9fb; }
.ofc-upload-zone.ofc-over { border-color: #1565c0; background: #e8f1fb; }
.ofc-upload-input:focus-visible + .ofc-upload-zone { outline: 2px solid #1565c0; outline-offset: 2px; }
.ofc-busy .ofc-upload-zone { opacity: 0.6; cursor: progress; }
.ofc-upload-button { background: #1565c0; color: #fff; padding: 8px 16px; border-radius: 4px;
  font-weight: 500; letter-spacing: 0.02em; white-space: nowrap; }
.ofc-upload-hint { color: #52606d; font-size: 0.9rem; }
.ofc-upload-bar { width: 100%; height: 10px; }
.ofc-upload-text { font-size: 0.9rem; color: #394452; }
"""
    ]

    def __init__(self, *, on_message: Any = None, **params: Any) -> None:
        super().__init__(**params)
        self._on_message = on_message

    def _handle_msg(self, data: Any) -> None:
        if not isinstance(data, dict):
            return
        upload = data.get("upload") if data.get("type") == "uploaded" else None
        if isinstance(upload, dict) and upload.get("id"):
            if self.acknowledged == str(upload["id"]):
                return  # the page sent it again before it saw the acknowledgement
            self.acknowledged = str(upload["id"])
        if self._on_message is not None:
            self._on_message(data)


class ImportsViewModel(param.Parameterized):
    kind = param.Selector(default="leituras", objects=sorted(imports.KINDS))
    upload = param.Dict(default=None, allow_None=True, doc="the recorded upload (from POST /uploads)")
    preview = param.Dict(default=None, allow_None=True)
    mapping = param.Dict(default={}, doc="field -> column header")
    encoding = param.String(default="")
    separator = param.String(default="")
    decimal = param.String(default="")
    sheet = param.String(default="")
    mode = param.Selector(default="insert", objects=list(imports.MODES))
    refuse_over_percent = param.Number(
        default=100.0, bounds=(0, 100), doc="refuse the file when more than this % of rows is invalid"
    )
    job_id = param.Integer(default=None, allow_None=True)
    status = param.Dict(default=None, allow_None=True)
    busy = param.Boolean(default=False)
    error = param.String(default="")
    notice = param.String(default="")

    def __init__(self, *, settings: Settings, user: Any, **params: Any) -> None:
        super().__init__(**params)
        self.settings = settings
        self.user = user

    # actions ---------------------------------------------------------------------------------------------
    def act(self, fn: Any, *args: Any) -> None:
        """Run a user action: an error becomes a notification and the message above the steps."""
        self.error = ""
        try:
            fn(*args)
        except Exception as exc:  # every failure gets a message a person can act on
            self.error = feedback.notify_error(exc)

    def on_upload_message(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        log.info("upload component: %s", kind, extra={"upload": (message.get("upload") or {}).get("id")})
        if kind == "started":
            self.error, self.notice = "", ""
        elif kind == "uploaded":
            self.upload = dict(message.get("upload") or {})
            self.preview, self.mapping, self.job_id, self.status = None, {}, None, None
            self.encoding = self.separator = self.decimal = self.sheet = ""
            self.act(self.load_preview)
        elif kind == "error":
            self.error = str(message.get("detail") or "Falha no envio.")
            feedback.notify(self.error, "error")

    def options(self, *, with_mapping: bool = True) -> imports.ImportOptions:
        return imports.ImportOptions(
            kind=self.kind,
            mode=self.mode,
            mapping=dict(self.mapping) if with_mapping else {},
            encoding=self.encoding or None,
            separator=self.separator or None,
            decimal=self.decimal or None,
            sheet=self.sheet or None,
            max_invalid_share=self.refuse_over_percent / 100,
        )

    def load_preview(self, *, keep_mapping: bool = False) -> None:
        if not self.upload:
            raise ValidationFailed("Envie um arquivo primeiro.")
        self.busy = True
        try:
            with session_scope(self.settings) as s:
                result = imports.preview(
                    s,
                    actor=self.user,
                    upload_id=self.upload["id"],
                    options=self.options(with_mapping=keep_mapping),
                )
            self.mapping = dict(result["mapping"])
            self.preview = result
            log.info("import preview read", extra={"upload": self.upload["id"]})
        finally:
            self.busy = False

    def set_format(self, **changes: str) -> None:
        self.param.update(**changes)
        self.act(self.load_preview)

    def set_kind(self, kind: str) -> None:
        self.kind = kind
        self.mapping = {}
        if self.upload:
            self.act(self.load_preview)

    def set_mapping(self, field: str, column: str) -> None:
        mapping = {k: v for k, v in self.mapping.items() if v != column or not column}
        if column:
            mapping[field] = column
        else:
            mapping.pop(field, None)
        self.mapping = mapping
        self.act(lambda: self.load_preview(keep_mapping=True))

    def start(self) -> None:
        if not self.upload:
            raise ValidationFailed("Envie um arquivo primeiro.")
        with session_scope(self.settings) as s:
            job = imports.start_import(
                s, actor=self.user, upload_id=self.upload["id"], options=self.options()
            )
            s.flush()
            self.job_id = job.id
        self.notice = f"Importação iniciada (job {self.job_id}). Acompanhe abaixo."
        self.refresh_status()

    def cancel(self) -> None:
        if self.job_id is None:
            return
        with session_scope(self.settings) as s:
            jobs.cancel_job(s, actor=self.user, job_id=self.job_id)
        self.notice = (
            "Cancelamento pedido: a importação para no próximo ponto de verificação, sem gravar nada."
        )
        self.refresh_status()

    def refresh_status(self) -> None:
        if self.job_id is None:
            return
        with session_scope(self.settings) as s:
            self.status = imports.import_status(
                s, actor=self.user, job_id=self.job_id, settings=self.settings
            )

    @property
    def running(self) -> bool:
        return bool(self.status) and self.status["status"] in ("queued", "running")

    def poll(self) -> None:
        if self.running:
            try:
                self.refresh_status()
            except Exception:  # a missed poll is retried a second later
                log.warning("import status poll failed", exc_info=True)

    @property
    def can_start(self) -> bool:
        return bool(self.preview) and not self.preview.get("mapping_problems") and not self.running


# Layout ---------------------------------------------------------------------------------------------


def _counter(label: str, value: Any) -> str:
    return f"<div class='ofc-imp-counter'><span>{ui.esc(label)}</span><strong>{ui.esc(value)}</strong></div>"


def _eta(seconds: Any) -> str:
    if seconds in (None, ""):
        return "—"
    seconds = int(round(float(seconds)))
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60} min {seconds % 60:02d} s"


class ImportsPage(pn.viewable.Viewer):
    def __init__(self, vm: ImportsViewModel, **params: Any) -> None:
        super().__init__(**params)
        self.vm = vm
        self._poller: Any = None

    @classmethod
    def create(cls, ctx: PageContext) -> ImportsPage:
        return cls(ImportsViewModel(settings=ctx.settings, user=ctx.user))

    # step 1
    def _file_step(self) -> Any:
        kinds = {k.label: k.name for k in imports.KINDS.values()}
        kind = pmui.RadioButtonGroup(
            label="O que importar", options=kinds, value=self.vm.kind, css_classes=["ofc-imp-kind"]
        )
        kind.param.watch(lambda e: self.vm.set_kind(e.new), "value")
        uploader = FileUploader(
            on_message=self.vm.on_upload_message,
            max_mb=self.vm.settings.upload_max_mb,
            sizing_mode="stretch_width",
            css_classes=["ofc-imp-upload"],
        )
        hint = ui.html_pane(
            "<small>CSV (UTF-8, Latin-1 ou Windows-1252; separado por ponto e vírgula, vírgula ou tabulação) "
            "ou "
            f"XLSX. Até {brazil.format_int(self.vm.settings.upload_max_mb)} MB. O arquivo vai direto para o "
            "servidor, em partes."
            "</small>"
        )
        return ui.card(kind, uploader, hint, title="1. Arquivo")

    # step 2
    def _preview_step(self, preview: dict[str, Any] | None, busy: bool) -> Any:
        if not preview:
            text = "Lendo o arquivo…" if busy else "Envie um arquivo para ver como ele foi lido."
            return ui.card(
                ui.html_pane(ui.empty_state("Nada para mostrar ainda", text, "table_view")),
                title="2. Como o arquivo foi lido",
            )
        fmt = preview["format"]
        controls: list[Any] = []
        if preview["file_type"] == "csv":
            controls += [
                self._select("Codificação", ENCODINGS, fmt.get("encoding"), "encoding"),
                self._select("Separador", SEPARATORS, fmt.get("separator"), "separator"),
                self._select("Decimal", DECIMALS, fmt.get("decimal"), "decimal"),
            ]
        else:
            sheets = {s: s for s in fmt.get("sheets") or []}
            controls.append(self._select("Planilha", sheets, fmt.get("sheet"), "sheet"))
        encoding = ENCODING_LABELS.get(fmt.get("encoding") or "", fmt.get("encoding") or "")
        separator = SEPARATOR_NAMES.get(fmt.get("separator") or "", fmt.get("separator") or "")
        detected = (
            f"Lido como {ui.esc(encoding or 'planilha XLSX')}"
            + (f", separador {ui.esc(separator)}" if separator else "")
            + f", decimal «{ui.esc(fmt.get('decimal'))}»."
        )
        warnings = "".join(
            f"<div class='ofc-imp-warning'>{ui.esc(w)}</div>" for w in preview.get("warnings", [])
        )
        head = "".join(f"<th>{ui.esc(h)}</th>" for h in preview["headers"])
        body = "".join(
            "<tr>" + "".join(f"<td>{ui.esc(c)}</td>" for c in row) + "</tr>" for row in preview["rows"]
        )
        table = (
            f"<div class='ofc-imp-scroll'><table class='ofc-imp-table ofc-imp-raw'><thead><tr>{head}</tr>"
            f"</thead><tbody>{body}</tbody></table></div>"
        )
        return ui.card(
            pmui.Row(*controls, sizing_mode="stretch_width"),
            self._html(f"<p class='ofc-imp-detected'>{detected}</p>{warnings}{table}"),
            title="2. Como o arquivo foi lido",
        )

    def _select(self, label: str, options: dict[str, str], current: str | None, name: str) -> Any:
        chosen = getattr(self.vm, name) or ""
        values = dict(options)
        if current and current not in values.values():
            values[current] = current
        widget = pmui.Select(
            label=label,
            options=values,
            value=chosen or (current or ""),
            width=220,
            css_classes=[f"ofc-imp-{name}"],
        )
        widget.param.watch(lambda e: self.vm.act(lambda: self.vm.set_format(**{name: e.new or ""})), "value")
        return widget

    # step 3
    def _mapping_step(self, preview: dict[str, Any] | None, mapping: dict[str, str]) -> Any:
        if not preview:
            return ui.card(
                ui.html_pane("<small>As colunas aparecem aqui depois do envio.</small>"), title="3. Colunas"
            )
        fields = preview["kind"]["fields"]
        options = {IGNORE: ""} | {h: h for h in preview["headers"]}
        selects = []
        for f in fields:
            label = f"{f['label']}{' *' if f['required'] else ''}"
            widget = pmui.Select(
                label=label,
                options=options,
                value=mapping.get(f["name"], ""),
                width=230,
                description=f.get("help") or None,
                css_classes=[f"ofc-imp-map-{f['name']}"],
            )
            widget.param.watch(lambda e, name=f["name"]: self.vm.set_mapping(name, e.new or ""), "value")
            selects.append(widget)
        problems = "".join(
            f"<div class='ofc-imp-problem'>{ui.esc(p['field'])}: {ui.esc(p['message'])}</div>"
            for p in preview.get("mapping_problems", [])
        )
        checked = preview.get("checked") or []
        rows = []
        for row in checked:
            cells = []
            for f in fields:
                column = mapping.get(f["name"], "")
                err = row["errors"].get(column) if column else None
                value = row["values"].get(f["name"], "")
                cells.append(
                    f"<td class='ofc-imp-bad' title='{ui.esc(err)}'>{ui.esc(err)}</td>"
                    if err
                    else f"<td>{ui.esc(value)}</td>"
                )
            line_error = row["errors"].get("linha")
            if line_error:
                cells = [f"<td class='ofc-imp-bad' colspan='{len(fields)}'>{ui.esc(line_error)}</td>"]
            rows.append(f"<tr><td>{row['line']}</td>{''.join(cells)}</tr>")
        head = "<th>Linha</th>" + "".join(f"<th>{ui.esc(f['label'])}</th>" for f in fields)
        table = (
            (
                "<div class='ofc-imp-scroll'><table class='ofc-imp-table ofc-imp-checked'>"
                f"<thead><tr>{head}</tr>"
                f"</thead><tbody>{''.join(rows)}</tbody></table></div>"
            )
            if rows
            else ""
        )
        intro = (
            "<small>Colunas ligadas pelo nome (ou pelo que você usou da última vez); colunas extras são "
            "ignoradas. * = obrigatório. Abaixo, as primeiras linhas como seriam importadas.</small>"
        )
        return ui.card(
            self._html(intro),
            pmui.FlexBox(*selects, sizing_mode="stretch_width"),
            self._html(problems + table),
            title="3. Colunas",
        )

    # step 4
    def _run_step(
        self, preview: dict[str, Any] | None, mapping: dict[str, str], status: dict[str, Any] | None
    ) -> Any:
        mode = pmui.RadioBoxGroup(
            options={v: k for k, v in MODE_LABELS.items()}, value=self.vm.mode, css_classes=["ofc-imp-mode"]
        )
        mode.param.watch(lambda e: setattr(self.vm, "mode", e.new), "value")
        share = pmui.IntInput(
            label="Recusar o arquivo se mais de (%) das linhas forem inválidas",
            value=int(self.vm.refuse_over_percent),
            start=0,
            end=100,
            width=420,
            css_classes=["ofc-imp-share"],
        )
        share.param.watch(lambda e: setattr(self.vm, "refuse_over_percent", float(e.new or 0)), "value")
        start = pmui.Button(
            label="Importar",
            variant="contained",
            icon="upload",
            disabled=not self.vm.can_start,
            css_classes=["ofc-imp-start"],
        )
        start.on_click(lambda _e: self.vm.act(self.vm.start))
        note = ui.html_pane(
            "<small>Com 100%, as linhas válidas são importadas e as inválidas vão para o "
            "relatório. Uma importação que falha ou é cancelada não grava nada.</small>"
        )
        return ui.card(mode, share, note, start, title="4. Importar")

    # progress
    def _progress(self, status: dict[str, Any] | None) -> Any:
        self._ensure_polling()
        if not status:
            return pmui.Column(sizing_mode="stretch_width")
        s = status["summary"] or {}
        state = status["status"]
        phase = PHASES.get(s.get("phase", ""), s.get("phase", "") or ui.job_status_label(state))
        counters = "".join(
            [
                _counter(
                    "Lido",
                    f"{ui.fmt_bytes(s.get('bytes_read', 0))} de {ui.fmt_bytes(s.get('bytes_total', 0))}",
                ),
                _counter("Linhas lidas", ui.fmt_int(s.get("rows_read", 0))),
                _counter("Válidas", ui.fmt_int(s.get("rows_valid", 0))),
                _counter("Rejeitadas", ui.fmt_int(s.get("rows_rejected", 0))),
                _counter("Duplicadas", ui.fmt_int(s.get("duplicates", 0))),
                _counter("Gravadas", ui.fmt_int(s.get("rows_merged", 0))),
                _counter("Tempo restante", _eta(s.get("eta_seconds")) if state == "running" else "—"),
            ]
        )
        parts: list[Any] = [
            pmui.LinearProgress(
                value=status["progress"],
                variant="determinate",
                sizing_mode="stretch_width",
                css_classes=["ofc-imp-progress"],
            ),
            self._html(
                f"<div class='ofc-imp-status' data-status='{ui.esc(state)}'>{ui.job_badge(state)} "
                f"{ui.esc(phase)} · {status['progress']}% — {ui.esc(status.get('message') or '')}</div>"
                f"<div class='ofc-imp-counters'>{counters}</div>"
            ),
        ]
        if state in ("queued", "running"):
            cancel = pmui.Button(
                label="Cancelar",
                variant="outlined",
                color="error",
                icon="cancel",
                css_classes=["ofc-imp-cancel"],
            )
            cancel.on_click(lambda _e: self.vm.act(self.vm.cancel))
            parts.append(cancel)
        else:
            parts.append(self._html(self._summary_html(status)))
        return ui.card(*parts, title=f"Andamento (job {status['job_id']})")

    def _summary_html(self, status: dict[str, Any]) -> str:
        s = status["summary"] or {}
        lines = []
        if status["status"] == "succeeded":
            lines.append(
                f"<p class='ofc-imp-done'>Importação concluída em {ui.esc(s.get('seconds'))} s "
                f"({ui.fmt_int(s.get('rows_per_second') or 0)} linhas/s): "
                f"{ui.fmt_int(s.get('rows_inserted', 0))}"
                f" inseridas, {ui.fmt_int(s.get('rows_updated', 0))} atualizadas, "
                f"{ui.fmt_int(s.get('rows_skipped', 0))} sem mudança.</p>"
            )
        elif status["status"] == "failed":
            lines.append(
                f"<p class='ofc-imp-failed'>{ui.esc(status.get('message') or status.get('error'))}</p>"
            )
        elif status["status"] == "cancelled":
            lines.append("<p class='ofc-imp-failed'>Importação cancelada: nada foi gravado.</p>")
        report = s.get("report") or {}
        if report.get("url"):
            lines.append(
                f"<p><a class='ofc-imp-report' href='{ui.esc(report['url'])}' download "
                f"target='_blank' rel='noopener'>Baixar relatório de linhas rejeitadas "
                f"({ui.fmt_int(report.get('entries', 0))} ocorrências)</a></p>"
            )
        return "".join(lines)

    def _messages(self, error: str, notice: str, busy: bool) -> Any:
        items: list[Any] = []
        if busy:
            items.append(pmui.LinearProgress(variant="indeterminate", sizing_mode="stretch_width"))
        if error:
            items.append(
                pmui.Alert(
                    object=error, severity="error", sizing_mode="stretch_width", css_classes=["ofc-imp-error"]
                )
            )
        if notice:
            items.append(pmui.Alert(object=notice, severity="info", sizing_mode="stretch_width"))
        return pmui.Column(*items, sizing_mode="stretch_width")

    def _html(self, text: str) -> Any:
        return pn.pane.HTML(text, sizing_mode="stretch_width", stylesheets=[ui.stylesheet(), _CSS], margin=0)

    def _ensure_polling(self) -> None:
        if self._poller is None and pn.state.curdoc is not None:
            self._poller = pn.state.add_periodic_callback(self.vm.poll, period=POLL_MS)

    def __panel__(self) -> Any:
        vm = self.vm
        return pmui.Column(
            ui.page_header(
                "Importações", "Leituras de sensores e clientes a partir de planilhas CSV ou XLSX."
            ),
            pn.bind(self._messages, vm.param.error, vm.param.notice, vm.param.busy),
            self._file_step(),
            pn.bind(self._preview_step, vm.param.preview, vm.param.busy),
            pn.bind(self._mapping_step, vm.param.preview, vm.param.mapping),
            pn.bind(self._run_step, vm.param.preview, vm.param.mapping, vm.param.status),
            pn.bind(self._progress, vm.param.status),
            sizing_mode="stretch_width",
        )


_CSS = """
.ofc-imp-scroll { overflow-x: auto; max-height: 360px; }
.ofc-imp-table { border-collapse: collapse; width: 100%; font-size: 0.88rem; }
.ofc-imp-table th { text-align: left; border-bottom: 2px solid #cbd2d9; padding: 0.3rem 0.5rem;
                   white-space: nowrap; }
.ofc-imp-table td { border-bottom: 1px solid #eef2f7; padding: 0.3rem 0.5rem; white-space: pre-wrap; }
.ofc-imp-bad { color: #9b1c1c; background: #fdecea; }
.ofc-imp-warning, .ofc-imp-problem { color: #8a4b00; background: #fff4e5; padding: 6px 10px;
                                     border-radius: 6px;
                                     margin: 4px 0; }
.ofc-imp-problem { color: #9b1c1c; background: #fdecea; }
.ofc-imp-detected { margin: 4px 0 8px; color: #394452; }
.ofc-imp-counters { display: flex; flex-wrap: wrap; gap: 12px; margin-top: 8px; }
.ofc-imp-counter { display: flex; flex-direction: column; min-width: 110px; padding: 6px 10px;
                   border: 1px solid #e3e8ef; border-radius: 8px; }
.ofc-imp-counter span { font-size: 0.75rem; color: #6b7785; }
.ofc-imp-counter strong { font-size: 1.05rem; }
.ofc-imp-failed { color: #9b1c1c; }
.ofc-imp-done { color: #2e7d46; }
"""


PAGE = PageSpec(
    slug=SLUG,
    title="Importações",
    icon="upload_file",
    permission="imports.run",
    factory=ImportsPage.create,
    section="Dados",
    description="Leituras e clientes a partir de CSV ou XLSX",
)
