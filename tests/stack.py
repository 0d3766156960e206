"""The real Oficina for browser tests: ``oficina serve`` and ``oficina worker`` subprocesses on a fresh SQLite
database, a Redis queue of their own (unique ``QUEUE_NAME``), and Playwright driving Debian's ``/usr/bin/chromium``.

Registered as a plugin by the root ``conftest.py``, so every test package gets the same two session fixtures:
``oficina`` (the running stack: URLs, settings, users) and ``browser`` (one Chromium per test process; a second
``sync_playwright`` in the same process would fail). Open pages with ``oficina.new_page(browser)`` (every request to
another address is blocked and counted, so a test fails if the app reaches outside) and sign in with
``oficina.login(page, user)``. A test that needs other settings (a court simulator, say) starts its own stack with
``running_stack(directory, redis_url, COURT_API_URL=...)``. Browser tests share the ``browser`` xdist group::

    pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

    def test_something(oficina, browser):
        page = oficina.new_page(browser)
        oficina.login(page, oficina.user("staff"))
        page.goto(oficina.url("/minha-pagina"))
        oficina.screenshot(page, "minha-pagina")
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from engine import accounts
from engine.db import dispose_engines, session_scope
from engine.migrate import upgrade
from engine.models import User
from engine.security import SYSTEM
from engine.settings import Settings
from tests.conftest import base_environ
from tests.worker_support import WorkerPool, oficina_command, settings_environ

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "screenshots"
PASSWORD = "senha-de-teste-123"
START_TIMEOUT = 120.0
VIEWPORT = {"width": 1366, "height": 860}


_RESERVED_PORTS: list[socket.socket] = []


def free_port() -> int:
    """A port of 127.0.0.1 for a server a test starts, that nothing else gets meanwhile: the socket that found it
    stays bound (not listening, ``SO_REUSEADDR``) as long as the test process lives, so neither a bind to port
    0 nor an outgoing connection of any process takes it, while the server binds it all the same (Tornado and
    ``http.server`` set ``SO_REUSEADDR``; a bound socket only refuses a listening one). Closed at once, the
    port went back to the system during the seconds a server takes to start, and another stack could get it:
    its server then failed to bind while its pages reached the first one."""
    reserved = socket.socket()
    reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    reserved.bind(("127.0.0.1", 0))
    _RESERVED_PORTS.append(reserved)
    return reserved.getsockname()[1]


def wait_until(check: Callable[[], Any], *, timeout: float = 20, interval: float = 0.1, what: str = "") -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or check} (last: {last!r})")


BOKEH_SOCKET = re.compile(r".*/ws(\?.*)?$")  # a page's Bokeh websocket, for routes that hold or drop its messages
_BUSY_ONLY = re.compile(r'\{"events":\[\{"kind":"ModelChanged","model":\{"id":"\w+"\},'
                        r'"attr":"busy","new":(true|false)\}\]\}')


class PageLog:
    """What a page printed, threw (an exception in a page's script is not a console message) and received on its
    websocket, the last lines of it: a failure's message says what the browser did with the server's updates."""

    def __init__(self, page: Any, keep: int = 120) -> None:
        self.lines: deque[str] = deque(maxlen=keep)
        self.errors: list[str] = []
        self.sockets_opened = self.sockets_closed = self.frames_received = 0
        self.updates = 0  # frames that change the page (no headers, acknowledgements or busy flips)
        self.last_update = 0.0  # time.monotonic() of the last of them
        page.on("console", lambda message: self.lines.append(f"console {message.type}: {message.text}"))
        page.on("pageerror", self._error)
        page.on("websocket", self._socket)

    def _error(self, error: Any) -> None:
        self.errors.append(str(error))
        self.lines.append(f"page error: {error}")

    def _socket(self, ws: Any) -> None:
        self.sockets_opened += 1
        self.lines.append(f"websocket open {ws.url}")
        ws.on("framereceived", self._received)
        ws.on("close", self._closed)

    def _closed(self, _ws: Any) -> None:
        self.sockets_closed += 1
        self.lines.append("websocket closed")

    def summary(self) -> str:
        first = f" (the first: {self.errors[0][:160]})" if self.errors else ""
        last = f", the last {time.monotonic() - self.last_update:.1f} s ago" if self.updates else ""
        return (f"{self.sockets_opened} websocket(s) opened, {self.sockets_closed} closed, "
                f"{self.frames_received} frame(s) received, {self.updates} of them updates{last}, "
                f"{len(self.errors)} script error(s){first}")

    def _received(self, payload: Any) -> None:
        self.frames_received += 1
        text = str(payload)
        if (text == "{}" or '"msgtype": "PATCH-DOC"' in text or '"msgtype": "OK"' in text
                or _BUSY_ONLY.fullmatch(text)):
            return  # metadata, headers of patches and acknowledgements, the busy indicator's flips
        self.updates += 1
        self.last_update = time.monotonic()
        self.lines.append(f"from server: {text[:300]}")

    def tail(self, lines: int = 40) -> str:
        return "\n".join(list(self.lines)[-lines:])


@dataclass
class OficinaStack:
    """The running server and worker, and helpers to drive them."""

    settings: Settings
    port: int
    server_log: Path
    workers: WorkerPool
    blocked: list[str] = field(default_factory=list)
    server_pid: int = 0
    page_logs: weakref.WeakKeyDictionary[Any, PageLog] = field(default_factory=weakref.WeakKeyDictionary)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str, **query: str) -> str:
        return self.base_url + path + (f"?{urlencode(query)}" if query else "")

    def user(self, role: str = "staff", *, name: str = "", password: str = PASSWORD) -> User:
        """A new active user of ``role`` with ``password``, created through engine."""
        email = f"{role}-{uuid.uuid4().hex[:8]}@oficina.test"
        with session_scope(self.settings) as s:
            user, _ = accounts.create_user(s, actor=SYSTEM, email=email, role=role, password=password,
                                           name=name or f"{role.title()} de Teste")
            s.flush()
            s.expunge(user)
        return user

    def new_page(self, browser: Any, **context_options: Any) -> Any:
        """A page in a fresh context (no cookies), pt-BR, with every non-local request blocked."""
        context = browser.new_context(locale="pt-BR", timezone_id="America/Sao_Paulo", viewport=VIEWPORT,
                                      **context_options)
        prefix = self.base_url + "/"

        def guard(route: Any) -> None:
            url = route.request.url
            if url.startswith(prefix) or url == self.base_url or url.startswith(("data:", "blob:")):
                route.continue_()
            else:
                self.blocked.append(url)
                route.abort()

        context.route("**/*", guard)
        context.set_default_timeout(30_000)
        page = context.new_page()
        self.page_logs[page] = PageLog(page)
        return page

    def page_log(self, page: Any, lines: int = 40, *, summary: bool = False) -> str:
        """The last ``lines`` the page printed, threw and received, or with ``summary`` their counts."""
        log = self.page_logs.get(page)
        if log is None:
            return "(a page this stack did not open)"
        return log.summary() if summary else log.tail(lines)

    def login(self, page: Any, user: User, *, password: str = PASSWORD, next_path: str = "") -> None:
        page.goto(self.url("/login", **({"next": next_path} if next_path else {})))
        page.fill("#email", user.email)
        page.fill("#password", password)
        page.click("button[type=submit]")
        page.wait_for_url(lambda url: "/login" not in url, timeout=30_000)
        wait_for_app(page)

    def screenshot(self, page: Any, name: str) -> Path:
        SCREENSHOTS.mkdir(exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    def log_tail(self, chars: int = 6000) -> str:
        return self.server_log.read_text(errors="replace")[-chars:] if self.server_log.exists() else ""

    def thread_dump(self, chars: int = 12000) -> str:
        """Every thread's stack in the server (``SIGUSR1``, see ``panel_serve.main``): for a failure in which
        the page waits on the server and nothing happens."""
        if not self.server_pid:
            return "(no server pid)"
        size = self.server_log.stat().st_size if self.server_log.exists() else 0
        try:
            os.kill(self.server_pid, signal.SIGUSR1)
        except OSError as exc:
            return f"(could not signal the server: {exc})"
        time.sleep(1.0)
        with open(self.server_log, "rb") as log:
            log.seek(size)
            return log.read().decode(errors="replace")[-chars:]


_PAGE_TEXT = """() => {
  const parts = [];
  const walk = (node) => {
    if (node.nodeType === Node.TEXT_NODE) { if (node.textContent.trim()) parts.push(node.textContent.trim()); return; }
    if (node.nodeName === "STYLE" || node.nodeName === "SCRIPT") return;
    if (node.shadowRoot) walk(node.shadowRoot);
    for (const child of node.childNodes) walk(child);
  };
  walk(document.body);
  return parts.join(" ");
}"""


def page_text(page: Any, limit: int = 2000) -> str:
    """The text the page shows, components' shadow roots included (``inner_text`` stops at them)."""
    try:
        return " ".join(str(page.evaluate(_PAGE_TEXT)).split())[:limit]
    except Exception as exc:  # noqa: BLE001 - a diagnostic of a failure must not hide it
        return f"(page text unreadable: {exc})"


_EMAIL = re.compile(r"[\w.+-]+@oficina\.test")
# server log lines that place a lost update: the page's websocket, the upload's news, the preview, a failure
_LOG_MARKS = {"websocket opened": "WebSocket connection opened", "websocket closed": "WebSocket connection closed",
              "upload news": "upload component: uploaded", "preview read": "import preview read",
              "errors": '"level": "error"'}


# the text of every model with a ``text`` property in the page's Bokeh documents (what the server's dump lists
# for its own document), without tags
_BROWSER_DOCUMENT_TEXTS = """() => {
  const parser = new DOMParser();
  const texts = [];
  for (const doc of (window.Bokeh && window.Bokeh.documents) || []) {
    for (const model of doc.all_models) {
      let value;
      try { value = model.text; } catch (err) { continue; }
      if (typeof value !== "string" || !value) continue;
      // Panel sends markup escaped (the view unescapes it): unescape, then drop the tags
      const text = (html) => parser.parseFromString(html, "text/html").body.textContent;
      texts.push(text(text(value)));
    }
  }
  return texts.join(" ");
}"""


def _squeezed(text: str) -> str:
    return "".join(text.split())


def _where_texts_stop(page: Any, server_texts: str, shown: str) -> list[str]:
    """Which of the server's texts for this page its browser document lacks (a patch that never came or was not
    applied), and which the browser document has but the page (``shown``) does not show (a view that did not
    update)."""
    try:
        in_document = _squeezed(str(page.evaluate(_BROWSER_DOCUMENT_TEXTS)))
    except Exception as exc:  # noqa: BLE001 - a diagnostic must not hide the failure
        return [f"    the browser's document is unreadable ({type(exc).__name__})"]
    on_page = _squeezed(shown)
    texts = [t.strip() for t in server_texts.split(" | ") if t.strip()]
    texts = [t for t in texts if not t.startswith("(unreadable")]
    not_in_document = [t for t in texts if _squeezed(t) not in in_document]
    not_shown = [t for t in texts if _squeezed(t) in in_document and _squeezed(t) not in on_page]
    return [f"    of its {len(texts)} texts, not in the browser's document: {not_in_document or 'none'}"[:600],
            f"    in the browser's document, not on the page: {not_shown or 'none'}"[:600]]


def server_pages(dump: str) -> list[tuple[str, str]]:
    """The open pages of a ``SIGUSR1`` dump (``OficinaStack.thread_dump``): each page's state (``hold=...``) and
    the texts its document holds on the server."""
    lines = [line.strip() for line in dump.splitlines()]
    return [(line.split(": ", 1)[-1], texts.split(": ", 1)[-1])
            for line, texts in zip(lines, lines[1:], strict=False)
            if line.startswith("document ") and texts.startswith("texts:")]


def diagnosis(stack: OficinaStack, page: Any, dump: str, log: str, shown: str) -> str:
    """A few lines that say where an update stopped: what the page's websocket did, which server ``log`` lines
    came, and each page the server holds (its state, whose it is: this page's or another's). ``shown`` is the
    page's text."""
    mine = _EMAIL.search(shown)
    counts = ", ".join(f"{name} x{log.count(mark)}" for name, mark in _LOG_MARKS.items())
    first_error = next((line[:220] for line in log.splitlines() if _LOG_MARKS["errors"] in line), "")
    pages = server_pages(dump)
    lines = []
    for state, texts in pages:
        owner = _EMAIL.search(texts)
        whose = "this page's" if mine and owner and owner.group() == mine.group() else (
            owner.group() if owner else "nobody's")
        lines.append(f"  {whose}: {state[:200]}")
        if whose == "this page's":
            lines.append(f"    texts: {texts[:400]}")
            lines.extend(_where_texts_stop(page, texts, shown))
    return "\n".join([
        f"page: {page.url} of {mine.group() if mine else '(no user shown)'}; {stack.page_log(page, summary=True)}",
        f"server log: {counts}", *([f"server's first error: {first_error}"] if first_error else []),
        f"server pages ({len(pages)}):", *lines])


def wait_shown(stack: OficinaStack, page: Any, locator: Any, what: str, *, timeout: float = 30_000) -> Any:
    """``locator`` once visible. Failing, the message is a short diagnosis (under ``CI`` pytest's summary at the
    end of the run repeats each failure's whole message, and a CI log keeps the start and the end of a long
    output); the test's captured output gets the rest: the page's text, console, script errors and received
    patches, the server's upload log lines, log tail and dump (whose per-page texts tell an update the server
    never made from one the browser never got), and ``screenshots/`` a picture."""
    try:
        locator.wait_for(timeout=timeout)
    except Exception:
        try:
            stack.screenshot(page, "failed-" + "-".join(what.split()[:4]))
        except Exception:  # noqa: BLE001 - the diagnostics below still go out
            pass
        dump = stack.thread_dump()
        try:  # a slow page shows it by now (the dump took a second); a lost update does not
            late = "shown a second later: " + ("yes" if locator.is_visible() else "no")
        except Exception as exc:  # noqa: BLE001
            late = f"unreadable a second later ({type(exc).__name__})"
        log = stack.log_tail(400_000)
        shown = page_text(page, limit=1_000_000)
        about_uploads = [line for line in log.splitlines() if "upload" in line.lower()]
        print(f"page text: {shown[:2000]!r}\nthe page's console, errors and websocket:\n{stack.page_log(page)}\n"
              "server log about uploads:\n" + "\n".join(about_uploads[-12:])
              + f"\nserver log:\n{log[-4000:]}\nserver threads and pages:\n{dump[-5000:]}")
        # from None: Playwright's timeout adds a long traceback that says no more than "not visible in time"
        raise AssertionError(f"{what} (not visible within {timeout / 1000:g} s; {late})\n"
                             f"{diagnosis(stack, page, dump, log, shown)}") from None
    return locator


def wait_for_preview(stack: OficinaStack, page: Any, *, timeout: float = 60_000) -> Any:
    """The import page's "how the file was read" line, once the preview after an upload is shown."""
    return wait_shown(stack, page, page.locator(".ofc-imp-detected"), "no preview after the upload",
                      timeout=timeout)


def wait_for_app(page: Any, timeout: float = 60_000) -> None:
    """Wait until the Panel page is rendered (the template's navigation or main content is in the DOM)."""
    page.wait_for_selector(".ofc-page-header, .ofc-refusal", timeout=timeout)


def _start_server(settings: Settings, port: int, directory: Path) -> tuple[subprocess.Popen[bytes], Path]:
    log_path = directory / "server.log"
    env = settings_environ(settings)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([*oficina_command(), "serve", "--port", str(port), "--address", "127.0.0.1"],
                                cwd=directory, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"oficina serve exited with {proc.returncode}:\n"
                                 f"{log_path.read_text(errors='replace')[-6000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc, log_path
        except OSError:
            time.sleep(0.2)
    _stop(proc)
    raise AssertionError(f"oficina serve did not listen within {START_TIMEOUT}s:\n"
                         f"{log_path.read_text(errors='replace')[-6000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@contextmanager
def running_stack(directory: Path, redis_url: str, **environ: str) -> Iterator[OficinaStack]:
    """``oficina serve`` + ``oficina worker`` (2 threads, no periodic tasks) on a fresh SQLite database under
    ``directory`` and a Redis queue of their own; ``environ`` adds settings."""
    port = free_port()
    base = Settings.from_environ(base_environ(
        directory / "var", ALLOWED_ORIGINS=f"127.0.0.1:{port}", PUBLIC_URL=f"http://127.0.0.1:{port}",
        WEB_THREADS="4", **environ))
    upgrade(base)
    with WorkerPool(directory / "workers") as pool:
        settings = pool.queue_settings(base, redis_url=redis_url)
        pool.start(settings, args=("--workers", "2", "--no-periodic"))
        proc, log_path = _start_server(settings, port, directory)
        try:
            yield OficinaStack(settings=settings, port=port, server_log=log_path, workers=pool, server_pid=proc.pid)
        finally:
            _stop(proc)
            dispose_engines()


@pytest.fixture(scope="session")
def oficina(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[OficinaStack]:
    """The shared stack of the ``browser`` xdist group."""
    with running_stack(tmp_path_factory.mktemp("oficina-browser"), redis_url,
                       LOGIN_RATE_LIMIT_PER_MINUTE="5", BACKUP_KEEP="3") as stack:
        yield stack


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(autouse=True)
def _close_pages(request: pytest.FixtureRequest) -> Iterator[None]:
    """A browser test's pages are closed when it ends (after the failure screenshots): left open, every earlier
    page of a shared stack kept polling its server, and the pages of stopped servers piled up in the one
    Chromium of the test worker."""
    yield
    browser = getattr(request.node, "funcargs", {}).get("browser")
    for context in list(browser.contexts) if browser is not None else []:
        try:
            context.close()
        except Exception:  # noqa: BLE001 - a page that crashed is gone already
            pass


@pytest.fixture(autouse=True)
def _no_outside_traffic(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every browser test proves the app made no request beyond the test server."""
    if "oficina" not in request.fixturenames:
        yield
        return
    stack: OficinaStack = request.getfixturevalue("oficina")
    before = len(stack.blocked)
    yield
    assert stack.blocked[before:] == [], f"requests outside the test server: {stack.blocked[before:]}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    """A failed browser test leaves a screenshot of every page it had open (``screenshots/failed-*.png``)."""
    report = yield
    browser = getattr(item, "funcargs", {}).get("browser")
    if report.failed and call.when == "call" and browser is not None:
        SCREENSHOTS.mkdir(exist_ok=True)
        for i, context in enumerate(browser.contexts):
            for j, page in enumerate(context.pages):
                try:
                    page.screenshot(path=str(SCREENSHOTS / f"failed-{item.name[:80]}-{i}-{j}.png"), full_page=True)
                except Exception:  # noqa: BLE001 - a page that cannot be captured must not hide the failure
                    pass
    return report
