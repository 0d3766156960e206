"""Login, logout and the session cookie of the browser face.

``OficinaAuthProvider(settings)`` plugs into Bokeh's server (``pn.serve(auth_provider=...)``):

* ``/login`` shows our own pt-BR page, checks the e-mail and password with ``engine.accounts.authenticate``
  (argon2 runs in a thread, failures are rate limited per e-mail and address), and sets the session cookie;
* ``/logout`` clears it; ``/`` sends a signed-in user to the first page their role may use;
* every page request and websocket is checked by ``get_user_async``: a missing, expired, tampered or
  stale cookie (user deactivated, password changed) means "not signed in" and Panel redirects to the login,
  carrying the page in ``next``.

The session cookie holds ``"{user_id}:{stamp}"`` signed with ``SECRET_KEY`` (Tornado's signed-value
format, with its timestamp checked against ``SESSION_HOURS``). The stamp is an HMAC of the user's password
hash: resetting a password ends every session opened with the old one.

Pages call ``current_user(settings)`` to get the ``User`` of their Panel session. Guest (no login) pages
are listed in ``PUBLIC_PAGES``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import jinja2
from bokeh.server.auth_provider import AuthProvider
from tornado.web import RequestHandler, create_signed_value, decode_signed_value

from engine import accounts, audit
from engine.context import new_request_id, request_id_var
from engine.db import is_row_id, session_scope
from engine.errors import AuthenticationFailed, EngineError, LimitExceeded
from engine.models import User
from engine.security import sign
from engine.settings import Settings

log = logging.getLogger("oficina.auth")

SESSION_COOKIE = "oficina_session"
CSRF_COOKIE = "oficina_login_csrf"
SESSION_HOURS = 12
LOGIN_PATH = "/login"
LOGOUT_PATH = "/logout"
GUEST = "guest"

# Pages anyone may open without signing in (the websocket of each, ``{path}/ws``, is public too).
PUBLIC_PAGES: set[str] = {"/pesquisa"}

MAX_EMAIL = 254
MAX_PASSWORD = 1024
MAX_NEXT = 2000

ASSETS = Path(__file__).resolve().parents[1] / "assets"
_templates = jinja2.Environment(loader=jinja2.FileSystemLoader(str(ASSETS / "templates")),
                                autoescape=True, auto_reload=False)


# The session cookie ----------------------------------------------------------------------------------------

def session_stamp(settings: Settings, user: User) -> str:
    """Changes when the password changes, so a reset ends the sessions opened before it."""
    return sign(settings.secret_key, f"{user.id}:{user.password_hash}".encode(), purpose="session")[:24]


def session_cookie_value(settings: Settings, user: User) -> str:
    """The signed cookie value for ``user`` (what ``/login`` sets)."""
    payload = f"{user.id}:{session_stamp(settings, user)}"
    return create_signed_value(settings.secret_key, SESSION_COOKIE, payload).decode()


def _session_payload(settings: Settings, raw: str | bytes | None) -> tuple[int, str] | None:
    if not raw or len(raw) > 500:
        return None
    decoded = decode_signed_value(settings.secret_key, SESSION_COOKIE, raw, max_age_days=SESSION_HOURS / 24)
    if decoded is None:
        return None
    user_id, _, stamp = decoded.decode("utf-8", "replace").partition(":")
    if not user_id.isdigit() or not stamp or not is_row_id(int(user_id)):
        return None
    return int(user_id), stamp


def user_from_cookie(settings: Settings, raw: str | bytes | None) -> User | None:
    """The active user a session cookie belongs to, or None (missing, expired, tampered, stale)."""
    payload = _session_payload(settings, raw)
    if payload is None:
        return None
    user_id, stamp = payload
    with session_scope(settings) as s:
        user = accounts.get_user(s, user_id=user_id)
        if user is None or not user.is_active:
            return None
        if not secrets.compare_digest(session_stamp(settings, user), stamp):
            return None
        s.expunge(user)
    return user


def current_user(settings: Settings) -> User | None:
    """The signed-in user of the current Panel session (None for guests and stale sessions)."""
    import panel as pn

    cookies = pn.state.cookies or {}
    return user_from_cookie(settings, cookies.get(SESSION_COOKIE))


# Redirect targets ------------------------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def safe_next(raw: Any, default: str = "/") -> str:
    """A same-site path to go to after login, or ``default``: never another host (no open redirect)."""
    if not isinstance(raw, str) or not raw or len(raw) > MAX_NEXT:
        return default
    if not raw.startswith("/") or raw.startswith("//") or "\\" in raw or _CONTROL.search(raw):
        return default
    parts = urlsplit(raw)
    if parts.scheme or parts.netloc:
        return default
    if parts.path.rstrip("/") in {LOGIN_PATH, LOGOUT_PATH}:
        return default
    return raw


def is_public(path: str) -> bool:
    for page in PUBLIC_PAGES:
        if path == page or path == page.rstrip("/") + "/ws":
            return True
    return False


def home_path(user: Any) -> str:
    """Where ``/`` sends this user: the first page of the navigation their role may use."""
    from dashboard.pages import first_page_for  # late: the pages import this module

    return first_page_for(user) or LOGOUT_PATH


# Handlers --------------------------------------------------------------------------------------------------

class _AuthHandler(RequestHandler):
    """Shared by the login, logout and home handlers: settings, request id, cookie helpers."""

    def initialize(self, config: Settings, limiter: accounts.LoginLimiter | None = None) -> None:
        self.config = config
        self.limiter = limiter

    def prepare(self) -> None:
        from dashboard.web import sanitize_request_id

        self.request_id = sanitize_request_id(self.request.headers.get("X-Request-ID")) or new_request_id()
        self.set_header("X-Request-ID", self.request_id)
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Frame-Options", "DENY")
        self.set_header("Referrer-Policy", "same-origin")

    @property
    def secure(self) -> bool:
        return self.config.public_url.startswith("https://")

    def set_session(self, user: User) -> None:
        self.set_cookie(SESSION_COOKIE, session_cookie_value(self.config, user), expires_days=SESSION_HOURS / 24,
                        httponly=True, samesite="Lax", secure=self.secure, path="/")

    def clear_session(self) -> None:
        self.clear_cookie(SESSION_COOKIE, path="/")
        self.clear_cookie("is_guest", path="/")

    def session_user(self) -> User | None:
        return user_from_cookie(self.config, self.get_cookie(SESSION_COOKIE))

    def client(self) -> str:
        return str(self.request.remote_ip or "")

    def get_template_namespace(self) -> dict[str, Any]:  # unused Tornado templates: keep it minimal
        return {}


class LoginHandler(_AuthHandler):
    """``GET`` shows the form; ``POST`` signs in and goes to ``next`` (validated) or the home page."""

    async def get(self) -> None:
        user = await asyncio.to_thread(self.session_user)
        next_url = safe_next(self.get_argument("next", "/"))
        if user is not None:
            self.redirect(next_url if next_url != "/" else home_path(user))
            return
        if self.get_cookie(SESSION_COOKIE):
            self.clear_session()  # stale or tampered: drop it
        notice = ""
        if self.get_argument("saiu", ""):
            notice = "Você saiu da sua conta."
        elif self.get_argument("expirou", ""):
            notice = "Sua sessão terminou. Entre de novo para continuar."
        self.render_form(next_url=next_url, notice=notice)

    async def post(self) -> None:
        email = self.get_body_argument("email", "")[:MAX_EMAIL].strip()
        password = self.get_body_argument("password", "")
        next_url = safe_next(self.get_body_argument("next", "/"))
        token = self.get_body_argument("csrf", "")
        expected = self.get_cookie(CSRF_COOKIE) or ""
        if not expected or not secrets.compare_digest(token.encode(), expected.encode()):
            self.render_form(next_url=next_url, email=email, status=400,
                             error="O formulário expirou. Digite o e-mail e a senha de novo.")
            return
        if not email or not password:
            self.render_form(next_url=next_url, email=email, status=400, error="Informe o e-mail e a senha.")
            return
        if len(password) > MAX_PASSWORD:
            self.render_form(next_url=next_url, email=email, status=401, error="E-mail ou senha incorretos.")
            return
        token_ctx = request_id_var.set(self.request_id)
        try:
            user, failure = await asyncio.to_thread(self._authenticate, email, password)
        finally:
            request_id_var.reset(token_ctx)
        if user is None:
            assert failure is not None
            if isinstance(failure, LimitExceeded):
                self.set_header("Retry-After", str(failure.data.get("retry_after") or 60))
            self.render_form(next_url=next_url, email=email, status=failure.status, error=failure.message)
            return
        self.set_session(user)
        self.clear_cookie(CSRF_COOKIE, path=LOGIN_PATH)
        log.info("login", extra={"user_id": user.id, "request_id": self.request_id})
        self.redirect(next_url if next_url != "/" else home_path(user))

    def _authenticate(self, email: str, password: str) -> tuple[User | None, EngineError | None]:
        failure: EngineError | None = None
        with session_scope(self.config) as s:
            try:
                user = accounts.authenticate(s, email=email, password=password, limiter=self.limiter,
                                             client=self.client())
            except (AuthenticationFailed, LimitExceeded) as exc:
                failure = exc  # the session still commits: the failed-login audit row is kept
            else:
                s.flush()
                s.expunge(user)
        if failure is not None:
            return None, failure
        return user, None

    def render_form(self, *, next_url: str, email: str = "", error: str = "", notice: str = "",
                    status: int = 200) -> None:
        csrf = secrets.token_urlsafe(24)
        self.set_cookie(CSRF_COOKIE, csrf, httponly=True, samesite="Strict", secure=self.secure, path=LOGIN_PATH)
        self.set_status(status)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        html = _templates.get_template("login.html").render(
            action=LOGIN_PATH, next_url=next_url, email=email, error=error, notice=notice, csrf=csrf,
            css=_asset_text("css/login.css"), logo=_asset_text("brand/logo.svg"))
        self.finish(html)


class LogoutHandler(_AuthHandler):
    """Ends the session and shows the login page with "Você saiu da sua conta."."""

    async def get(self) -> None:
        user = await asyncio.to_thread(self.session_user)
        if user is not None:
            token_ctx = request_id_var.set(self.request_id)
            try:
                await asyncio.to_thread(self._audit_logout, user)
            finally:
                request_id_var.reset(token_ctx)
        self.clear_session()
        self.redirect(f"{LOGIN_PATH}?{urlencode({'saiu': '1'})}")

    post = get

    def _audit_logout(self, user: User) -> None:
        try:
            with session_scope(self.config) as s:
                audit.record(s, actor=user, action="logout", entity_type="user", entity_id=user.id, source="web")
        except Exception:  # the logout itself must always work
            log.exception("could not audit the logout of user %s", user.id)


class HomeHandler(_AuthHandler):
    """``/``: the first page the signed-in user's role may use, else the login page."""

    async def get(self) -> None:
        user = await asyncio.to_thread(self.session_user)
        if user is None:
            self.redirect(LOGIN_PATH)
            return
        self.redirect(home_path(user))


_asset_cache: dict[str, str] = {}


def _asset_text(name: str) -> str:
    text = _asset_cache.get(name)
    if text is None:
        text = _asset_cache[name] = (ASSETS / name).read_text(encoding="utf-8")
    return text


# The provider ----------------------------------------------------------------------------------------------

class OficinaAuthProvider(AuthProvider):
    """Bokeh auth provider: our login and logout pages, the cookie check on every page and websocket."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.limiter = accounts.LoginLimiter(settings.login_rate_limit_per_minute)
        self._cache: dict[str, tuple[float, str | None]] = {}
        super().__init__()

    # A signed-in request costs a primary-key lookup; static files of a page come in bursts, so a verdict
    # is remembered for a couple of seconds (a deactivation still takes effect almost at once).
    CACHE_SECONDS = 2.0

    @property
    def get_user_async(self):  # noqa: ANN201 - Bokeh's protocol
        async def get_user(handler: RequestHandler) -> str | None:
            raw = handler.get_cookie(SESSION_COOKIE)
            user_id = await self._user_id(raw) if raw else None
            if user_id is not None:
                return user_id
            if is_public(handler.request.path):
                return GUEST
            return None

        return get_user

    async def _user_id(self, raw: str) -> str | None:
        now = time.monotonic()
        hit = self._cache.get(raw)
        if hit is not None and now - hit[0] < self.CACHE_SECONDS:
            return hit[1]
        user = await asyncio.to_thread(user_from_cookie, self.settings, raw)
        verdict = str(user.id) if user is not None else None
        if len(self._cache) > 5000:
            self._cache.clear()
        self._cache[raw] = (now, verdict)
        return verdict

    @property
    def login_url(self) -> str:
        return LOGIN_PATH

    @property
    def logout_url(self) -> str:
        return LOGOUT_PATH

    @property
    def login_handler(self) -> type[RequestHandler]:
        return LoginHandler

    @property
    def logout_handler(self) -> type[RequestHandler]:
        return LogoutHandler

    @property
    def endpoints(self) -> list[tuple[str, type[RequestHandler], dict[str, Any]]]:  # type: ignore[override]
        kwargs = {"config": self.settings, "limiter": self.limiter}
        return [
            (LOGIN_PATH, LoginHandler, kwargs),
            (LOGOUT_PATH, LogoutHandler, kwargs),
            ("/", HomeHandler, kwargs),
        ]
