"""Shared look of the pages: pt-BR labels, Brazilian formats, page headers, tables, empty states.

Formatting helpers are plain functions (view-models and tests use them without a server); the builders
return panel-material-ui components styled by ``assets/css/components.css``.
"""

from __future__ import annotations

import html
import json
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import panel as pn
import panel_material_ui as pmui

from engine import brazil

TZ = ZoneInfo("America/Sao_Paulo")
ASSETS = Path(__file__).resolve().parents[2] / "assets"

JOB_STATUS_LABELS = {"queued": "Na fila", "running": "Em execução", "succeeded": "Concluído",
                     "failed": "Falhou", "cancelled": "Cancelado"}
JOB_STATUS_TONES = {"queued": "neutral", "running": "info", "succeeded": "success", "failed": "error",
                    "cancelled": "warning"}
ITEM_STATUS_LABELS = {"pending": "Pendente", "processing": "Processando", "done": "Feito", "failed": "Falhou",
                      "skipped": "Ignorado", "available": "Disponível"}
ITEM_STATUS_TONES = {"pending": "neutral", "processing": "info", "done": "success", "available": "success",
                     "failed": "error", "skipped": "warning"}
ROLE_LABELS = {"admin": "Administrador", "staff": "Equipe", "analyst": "Analista", "viewer": "Leitor",
               "system": "Sistema"}


# Formats ---------------------------------------------------------------------------------------------------

def fmt_datetime(value: datetime | None) -> str:
    """``dd/mm/aaaa HH:MM`` in America/Sao_Paulo; empty for None."""
    return brazil.format_datetime(value) if value else ""


def fmt_date(value: date | datetime | None) -> str:
    return brazil.format_date(value) if value else ""


def fmt_duration(start: datetime | None, end: datetime | None) -> str:
    if start is None:
        return ""
    seconds = max(0, int(((end or datetime.now(start.tzinfo)) - start).total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def fmt_bytes(size: int | None) -> str:
    """``1,5 MB`` style sizes."""
    if size is None:
        return ""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}".replace(".", ",")
        value /= 1024
    return f"{size} B"


def fmt_int(value: int) -> str:
    return brazil.format_int(value)


def day_start(value: date | None) -> datetime | None:
    """The first instant of a local (São Paulo) day, for "from" filters."""
    return datetime.combine(value, time.min, TZ) if value else None


def day_end(value: date | None) -> datetime | None:
    """The first instant after a local day, for inclusive "until" filters."""
    return datetime.combine(value + timedelta(days=1), time.min, TZ) if value else None


def job_status_label(status: str) -> str:
    return JOB_STATUS_LABELS.get(status, status)


def role_label(role: str) -> str:
    return ROLE_LABELS.get(role, role)


def badge(text: str, tone: str = "neutral") -> str:
    """An HTML status badge (tones: neutral, info, success, warning, error)."""
    return f'<span class="ofc-badge ofc-badge--{html.escape(tone)}">{html.escape(text)}</span>'


def job_badge(status: str) -> str:
    return badge(job_status_label(status), JOB_STATUS_TONES.get(status, "neutral"))


def item_badge(status: str) -> str:
    return badge(ITEM_STATUS_LABELS.get(status, status), ITEM_STATUS_TONES.get(status, "neutral"))


def pretty_json(value: Any) -> str:
    if value in (None, {}, []):
        return ""
    return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True, default=str)


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


# Components ------------------------------------------------------------------------------------------------

_css_cache: dict[str, str] = {}


def stylesheet(name: str = "components.css") -> str:
    text = _css_cache.get(name)
    if text is None:
        text = _css_cache[name] = (ASSETS / "css" / name).read_text(encoding="utf-8")
    return text


def html_pane(text: str = "", **kwargs: Any) -> pn.pane.HTML:
    kwargs.setdefault("sizing_mode", "stretch_width")
    kwargs.setdefault("margin", 0)
    kwargs["stylesheets"] = [stylesheet(), *kwargs.get("stylesheets", [])]
    return pn.pane.HTML(text, **kwargs)


def page_header(title: str, subtitle: str = "", *actions: Any) -> pn.viewable.Viewable:
    text = html_pane(f'<div class="ofc-page-header"><h1>{esc(title)}</h1>'
                     + (f"<p>{esc(subtitle)}</p>" if subtitle else "") + "</div>")
    if not actions:
        return pn.Row(text, sizing_mode="stretch_width", margin=(0, 0, 12, 0))
    return pn.Row(text, *actions, sizing_mode="stretch_width", margin=(0, 0, 12, 0))


def card(*objects: Any, title: str = "", **kwargs: Any) -> pmui.Paper:
    kwargs.setdefault("sizing_mode", "stretch_width")
    kwargs.setdefault("margin", (0, 0, 16, 0))
    items = list(objects)
    if title:
        items.insert(0, html_pane(f'<h2 class="ofc-card-title">{esc(title)}</h2>'))
    return pmui.Paper(*items, elevation=0, sx={"p": 2.5, "border": "1px solid", "borderColor": "divider",
                                               "borderRadius": "12px"}, **kwargs)


def empty_state(title: str, hint: str, icon: str = "inbox") -> str:
    """HTML of an empty state that says what to do next."""
    return (f'<div class="ofc-empty"><span class="material-icons-outlined ofc-empty-icon">{esc(icon)}</span>'
            f"<strong>{esc(title)}</strong><p>{esc(hint)}</p></div>")


TABLE_LANG = {"pagination": {"first": "Primeira", "first_title": "Primeira página", "last": "Última",
                              "last_title": "Última página", "prev": "Anterior", "prev_title": "Página anterior",
                              "next": "Próxima", "next_title": "Próxima página", "page_size": "Por página",
                              "all": "Todos", "counter": {"showing": "Mostrando", "of": "de", "rows": "linhas",
                                                          "pages": "páginas"}},
              "data": {"loading": "Carregando", "error": "Erro"}}


def table(columns: list[str], **kwargs: Any) -> pn.widgets.Tabulator:
    """A read-only table for one page of records (paging and sorting happen in engine, not here)."""
    import pandas as pd

    kwargs.setdefault("sizing_mode", "stretch_width")
    kwargs.setdefault("layout", "fit_columns")
    kwargs.setdefault("show_index", False)
    kwargs.setdefault("disabled", True)
    kwargs.setdefault("selectable", False)
    kwargs.setdefault("header_align", "left")
    configuration = {"columnDefaults": {"headerSort": False}, "placeholder": "", "locale": "pt-br",
                     "langs": {"pt-br": TABLE_LANG}}
    configuration.update(kwargs.pop("configuration", {}))
    return pn.widgets.Tabulator(pd.DataFrame(columns=columns), configuration=configuration,
                                stylesheets=[stylesheet("table.css")], **kwargs)


def frame(rows: list[dict[str, Any]], columns: list[str]) -> Any:
    import pandas as pd

    return pd.DataFrame(rows, columns=columns)


def secret_box(label: str, secret: str, note: str) -> str:
    """HTML showing a one-time secret (generated password, API token) with a warning."""
    return (f'<div class="ofc-secret"><div class="ofc-secret-label">{esc(label)}</div>'
            f'<code class="ofc-secret-value">{esc(secret)}</code><p>{esc(note)}</p></div>')
