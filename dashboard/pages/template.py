"""The one page template and theme: panel-material-ui ``Page`` with the navigation the role may use, a
header with the live count of active jobs, the user and "Sair", and the page content.

``HeaderStatus`` (view-model) refreshes the count every ``HEADER_REFRESH_MS`` and notices when the session
stopped being valid (user deactivated, password reset, cookie expired): the browser is then sent to the
login page.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import panel as pn
import panel_material_ui as pmui
import param

from dashboard.auth import LOGIN_PATH, LOGOUT_PATH, SESSION_COOKIE, user_from_cookie
from dashboard.pages import ui
from dashboard.pages.base import NavEntry
from engine import jobs
from engine.db import session_scope
from engine.settings import Settings

BRAND = Path(__file__).resolve().parents[2] / "assets" / "brand"
HEADER_REFRESH_MS = 2000
APP_NAME = "Oficina"

PRIMARY = "#1F4E79"
ACCENT = "#E8833A"
BACKGROUND = "#F3F5F8"

THEME_CONFIG: dict[str, Any] = {
    "palette": {
        "primary": {"main": PRIMARY},
        "secondary": {"main": ACCENT},
        "background": {"default": BACKGROUND, "paper": "#FFFFFF"},
        "success": {"main": "#2E7D46"},
        "error": {"main": "#C0392B"},
    },
    "shape": {"borderRadius": 8},
    "typography": {
        "fontFamily": "Roboto, 'Segoe UI', 'Helvetica Neue', Arial, sans-serif",
        "button": {"textTransform": "none", "fontWeight": 600},
    },
}

PAGE_SX: dict[str, Any] = {
    "& main": {"backgroundColor": BACKGROUND},
    "& .MuiDrawer-paper": {"backgroundColor": "#FFFFFF"},
}


class HeaderStatus(param.Parameterized):
    """The header's live facts: active jobs the user can see; whether the session is still valid."""

    active_jobs = param.Integer(default=0, bounds=(0, None))
    signed_out = param.Boolean(default=False)

    def __init__(self, *, settings: Settings, user: Any, cookie: str | None = None, **params: Any) -> None:
        super().__init__(**params)
        self.settings = settings
        self.user = user
        self.cookie = cookie
        self._lock = threading.Lock()

    @property
    def label(self) -> str:
        n = self.active_jobs
        if n == 0:
            return "Nenhum job ativo"
        return "1 job ativo" if n == 1 else f"{ui.fmt_int(n)} jobs ativos"

    def refresh(self) -> None:
        if not self._lock.acquire(blocking=False):
            return  # the previous refresh is still running
        try:
            if self.cookie is not None:
                user = user_from_cookie(self.settings, self.cookie)
                if user is None:
                    self.signed_out = True
                    return
                self.user = user
            with session_scope(self.settings) as s:
                self.active_jobs = jobs.count_active(s, actor=self.user)
        finally:
            self._lock.release()


def _nav_menu(nav: list[NavEntry], active_slug: str) -> list[Any]:
    objects: list[Any] = []
    sections: dict[str, list[NavEntry]] = {}
    for entry in nav:
        sections.setdefault(entry.section, []).append(entry)
    for section, entries in sections.items():
        objects.append(ui.html_pane(f'<div class="ofc-nav-section">{ui.esc(section)}</div>',
                                    stylesheets=[_NAV_CSS], margin=(12, 0, 0, 0)))
        active = next((i for i, e in enumerate(entries) if e.slug == active_slug), None)
        items = [{"label": e.title, "icon": e.icon, "href": e.path, "tooltip": e.description or None}
                 for e in entries]
        objects.append(pmui.MenuList(items=[{k: v for k, v in item.items() if v is not None} for item in items],
                                     active=active, dense=False, sizing_mode="stretch_width",
                                     css_classes=["ofc-nav"]))
    return objects


_NAV_CSS = """
.ofc-nav-section { padding: 0 16px; font-size: 11px; font-weight: 700; letter-spacing: .08em;
                   text-transform: uppercase; color: #7b8696; font-family: Roboto, Arial, sans-serif; }
"""

_HEADER_CSS = """
.ofc-user { color: #fff; text-align: right; font-family: Roboto, Arial, sans-serif; line-height: 1.2; }
.ofc-user-name { font-size: 14px; font-weight: 600; }
.ofc-user-role { font-size: 12px; opacity: .8; }
"""


def _user_block(user: Any) -> pn.pane.HTML:
    name = ui.esc(getattr(user, "name", "") or getattr(user, "email", ""))
    detail = ui.esc(f"{getattr(user, 'email', '')} · {ui.role_label(getattr(user, 'role', ''))}")
    return pn.pane.HTML(f'<div class="ofc-user"><div class="ofc-user-name">{name}</div>'
                        f'<div class="ofc-user-role">{detail}</div></div>',
                        stylesheets=[_HEADER_CSS], margin=(0, 12), align="center")


def build_page(*, settings: Settings, user: Any, title: str, content: Any, nav: list[NavEntry],
               active_slug: str, cookie: str | None, live: bool = True) -> pmui.Page:
    """The shell around ``content`` for a signed-in ``user``."""
    status = HeaderStatus(settings=settings, user=user, cookie=cookie)
    status.refresh()
    counter = pmui.Button(label=status.label, icon="sync", href="/jobs", variant="text", color="light",
                          description="Jobs na fila ou em execução", align="center",
                          css_classes=["ofc-job-counter"])

    def show_count(*_: Any) -> None:
        counter.label = status.label
        counter.icon = "sync" if status.active_jobs else "task_alt"

    status.param.watch(show_count, "active_jobs")
    show_count()

    def on_signed_out(event: Any) -> None:
        if event.new and pn.state.location is not None:
            pn.state.location.param.update(pathname=LOGIN_PATH, search="?expirou=1", reload=True)

    status.param.watch(on_signed_out, "signed_out")
    if live:
        pn.state.add_periodic_callback(status.refresh, period=HEADER_REFRESH_MS)

    logout = pmui.Button(label="Sair", icon="logout", href=LOGOUT_PATH, variant="outlined", color="light",
                         align="center", description="Encerrar a sessão")
    header = [pn.HSpacer(), counter, _user_block(user), logout]
    page = pmui.Page(
        title=APP_NAME,
        logo=str(BRAND / "logo-header.svg"),
        favicon=str(BRAND / "favicon.svg"),
        site_url="/",
        header=header,
        sidebar=_nav_menu(nav, active_slug),
        main=[pn.Column(content, margin=(20, 28, 40, 28), sizing_mode="stretch_width")],
        theme_config=THEME_CONFIG,
        theme_toggle=False,
        sidebar_width=248,
        main_width=1440,
        meta_title=f"{title} · {APP_NAME}",
        sx=PAGE_SX,
        busy_indicator=None,  # the pages poll every second: a busy bar would flicker all the time
    )
    page.header_status = status  # type: ignore[attr-defined]  # tests and pages reach the live facts
    return page


def build_public_page(*, title: str, content: Any) -> pmui.Page:
    """The shell of a page opened without login (no navigation, no user)."""
    return pmui.Page(title=APP_NAME, logo=str(BRAND / "logo-header.svg"), favicon=str(BRAND / "favicon.svg"),
                     main=[pn.Column(content, margin=(20, 28, 40, 28), sizing_mode="stretch_width")],
                     theme_config=THEME_CONFIG, theme_toggle=False, main_width=1100,
                     meta_title=f"{title} · {APP_NAME}", sx=PAGE_SX, busy_indicator=None)


def refusal(*, title: str, role: str, home: str | None) -> pn.viewable.Viewable:
    """Content shown when a role opens a page it may not use."""
    hint = (f"Seu perfil ({ui.role_label(role)}) não permite abrir \u201c{title}\u201d. "
            "Se precisar desse acesso, peça a um administrador.")
    link = f'<p><a class="ofc-link" href="{ui.esc(home)}">Ir para a sua página inicial</a></p>' if home else ""
    return ui.html_pane(f'<div class="ofc-refusal" data-refusal="1"><span class="ofc-empty-icon">block</span>'
                        f"<h1>Acesso negado</h1><p>{ui.esc(hint)}</p>{link}</div>")


def signed_out_page() -> pmui.Page:
    """Shown when the session ended between the HTTP check and the page build: go to the login."""
    if pn.state.location is not None:
        pn.state.location.param.update(pathname=LOGIN_PATH, search="?expirou=1", reload=True)
    content = ui.html_pane('<div class="ofc-refusal"><span class="ofc-empty-icon">lock</span>'
                           "<h1>Sessão encerrada</h1><p>Entre de novo para continuar.</p>"
                           f'<p><a class="ofc-link" href="{LOGIN_PATH}">Ir para o login</a></p></div>')
    return build_public_page(title="Sessão encerrada", content=content)


__all__ = ["HeaderStatus", "build_page", "build_public_page", "refusal", "signed_out_page", "SESSION_COOKIE"]
