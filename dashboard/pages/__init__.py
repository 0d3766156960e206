"""The dashboard's pages: one registry (``PAGES``), one template, one theme.

``applications(settings)`` gives ``pn.serve`` a function per page path. Each function finds the signed-in
user (``dashboard.auth.current_user``), refuses roles without the page's permission (the page shows
"Acesso negado"), builds the page content with its factory and wraps it in the template with the
navigation the role may use. ``configure_panel(settings)`` sets Panel up once per process.

To add a page, append one ``PageSpec`` to ``PAGES`` (and, if it needs a new permission, add it to
``engine.security.PAGE_PERMISSIONS``)::

    PageSpec("importacoes", "Importações", "upload_file", "imports.create", importacoes.ImportsPage.create,
             section="Dados")

Public pages (``public=True``) open without login; their paths are added to ``dashboard.auth.PUBLIC_PAGES``.
"""

from __future__ import annotations

import logging
from typing import Any

import panel as pn

from dashboard import auth
from dashboard.pages import audit, backups, forms, imports, jobs, processos, survey, template, ui, users, webhooks
from dashboard.pages.base import NavEntry, PageContext, PageSpec, navigation
from dashboard.pages.feedback import error_message
from dashboard.session_executor import (
    SessionOrderedExecutor,
    dispatch_browser_changes_at_once,
    keep_unsent_models_new,
    send_changes_once_pulled,
    write_queued_messages,
)
from engine.context import new_request_id, request_id_var
from engine.errors import EngineError
from engine.security import PAGE_PERMISSIONS
from engine.settings import Settings

log = logging.getLogger("oficina.dashboard")

PAGES: list[PageSpec] = [
    PageSpec("jobs", "Jobs", "work_history", PAGE_PERMISSIONS["jobs"], jobs.JobsPage.create,
             section="Operação", description="Trabalhos em segundo plano e o progresso de cada um"),
    processos.PAGE,
    *forms.page_specs(),
    imports.PAGE,
    webhooks.PAGE,
    survey.page_spec(),
    PageSpec("backups", "Backups", "backup", PAGE_PERMISSIONS["backups"], backups.BackupsPage.create,
             section="Administração", description="Cópias do banco de dados"),
    PageSpec("users", "Usuários", "group", PAGE_PERMISSIONS["users"], users.UsersPage.create,
             section="Administração", description="Contas, perfis e tokens de API"),
    PageSpec("audit", "Auditoria", "policy", PAGE_PERMISSIONS["audit"], audit.AuditPage.create,
             section="Administração", description="Quem fez o quê, e quando"),
]

_configured = False


def first_page_for(user: Any) -> str | None:
    """The path of the first page in the navigation that ``user`` may use (where ``/`` sends them)."""
    entries = navigation(PAGES, user)
    return entries[0].path if entries else None


def nav_for(user: Any) -> list[NavEntry]:
    return navigation(PAGES, user)


def _session_args() -> dict[str, str]:
    args: dict[str, str] = {}
    for name, values in (pn.state.session_args or {}).items():
        if values:
            raw = values[0]
            args[name] = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return args


def _serve(settings: Settings, spec: PageSpec) -> Any:
    """Build one page for the browser session being opened (never shows a traceback to the browser)."""
    pn.extension("tabulator", notifications=True)
    token = request_id_var.set(new_request_id())
    try:
        return _build(settings, spec)
    except Exception:
        reference = request_id_var.get()[:12]
        log.exception("page %s failed", spec.slug, extra={"reference": reference})
        return template.build_public_page(title=spec.title, content=ui.html_pane(ui.empty_state(
            f"Não foi possível abrir \u201c{spec.title}\u201d", error_message(RuntimeError(), reference=reference),
            "error_outline")))
    finally:
        request_id_var.reset(token)


def _build(settings: Settings, spec: PageSpec) -> Any:
    args = _session_args()
    if spec.public:
        ctx = PageContext(settings=settings, user=None, slug=spec.slug, args=args)
        return template.build_public_page(title=spec.title, content=_content(spec, ctx))
    cookie = (pn.state.cookies or {}).get(auth.SESSION_COOKIE)
    user = auth.user_from_cookie(settings, cookie)
    if user is None:
        return template.signed_out_page()
    ctx = PageContext(settings=settings, user=user, slug=spec.slug, args=args)
    if spec.allowed(user):
        content = _content(spec, ctx)
    else:
        content = template.refusal(title=spec.title, role=user.role, home=first_page_for(user))
    return template.build_page(settings=settings, user=user, title=spec.title, content=content,
                               nav=nav_for(user), active_slug=spec.slug, cookie=cookie)


def _content(spec: PageSpec, ctx: PageContext) -> Any:
    try:
        return spec.factory(ctx)
    except EngineError as exc:
        return ui.html_pane(ui.empty_state(f"Não foi possível abrir \u201c{spec.title}\u201d",
                                           error_message(exc), "error_outline"))
    except Exception:
        reference = request_id_var.get()[:12]
        log.exception("page %s failed to build", spec.slug, extra={"reference": reference})
        return ui.html_pane(ui.empty_state(f"Não foi possível abrir \u201c{spec.title}\u201d",
                                           error_message(RuntimeError(), reference=reference),
                                           "error_outline"))


def applications(settings: Settings) -> dict[str, Any]:
    """``{path: function}`` for ``pn.serve``: one entry per registered page."""
    apps: dict[str, Any] = {}
    for spec in PAGES:
        if spec.path in apps:
            raise ValueError(f"two pages registered at {spec.path}")
        if spec.public:
            auth.PUBLIC_PAGES.add(spec.path)
        apps[spec.path] = _app(settings, spec)
    return apps


def _app(settings: Settings, spec: PageSpec) -> Any:
    # A plain function: Panel serves functions per session, but would render a ``functools.partial`` as text.
    def app() -> Any:
        return _serve(settings, spec)

    app.__name__ = f"page_{spec.slug}"
    return app


def configure_panel(settings: Settings) -> None:
    """Process-wide Panel settings: notifications, pt-BR messages, the thread pool for callbacks."""
    global _configured
    import panel_material_ui  # noqa: F401 - registers the Material notification area

    pn.config.notifications = True
    pn.config.disconnect_notification = "Conexão com o servidor perdida. Recarregue a página para continuar."
    pn.config.ready_notification = ""
    if settings.web_threads > 0 and not isinstance(pn.state._thread_pool, SessionOrderedExecutor):
        # Blocking callbacks (database, engine) run off the event loop, each session's in browser order.
        if pn.state._thread_pool is not None:
            pn.state._thread_pool.shutdown(wait=False)
        pn.state._thread_pool = SessionOrderedExecutor(settings.web_threads)
        dispatch_browser_changes_at_once()
    send_changes_once_pulled()  # a change made while the page still renders reaches it
    keep_unsent_models_new()  # and a model made while a hold keeps its change back reaches it in full
    write_queued_messages()  # and no queued patch waits for the next update
    if not _configured:
        _warm_up()
    _configured = True


def _warm_up() -> None:
    """Pay the one-off costs (pandas, the job handler modules, Tabulator) at start-up, not on the first
    person's first page."""
    from engine import jobs as job_service

    pn.extension("tabulator", notifications=True)
    job_service.load_handlers()
    ui.table(["a"])


__all__ = ["PAGES", "NavEntry", "PageContext", "PageSpec", "applications", "configure_panel", "first_page_for",
           "nav_for"]
