"""Headless Chromium against a real Panel server: resume on another device, undo, offline buffer,
conflicts between two contexts, and the public survey resumed by e-mail."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any
from urllib.parse import urlencode

import pytest

from engine import drafts
from engine.db import session_scope
from engine.models import User
from tests.stack import BOKEH_SOCKET, OficinaStack, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

class FormsStack:
    """The real server and worker (the ``oficina`` stack), with the real login."""

    def __init__(self, stack: OficinaStack) -> None:
        self.stack = stack
        self.settings = stack.settings

    def url(self, path: str, **query: str) -> str:
        return self.stack.url(path, **query)

    def user(self) -> User:
        return self.stack.user("staff")

    def open(self, browser: Any, path: str, user: User | None, *, prepare: Any = None, **query: str) -> Any:
        """A page in a fresh browser context (another device), signed in as ``user`` when given; ``prepare``
        gets the page first (websocket routes, init scripts)."""
        page = self.stack.new_page(browser)
        if prepare is not None:
            prepare(page)
        target = path + (f"?{urlencode(query)}" if query else "")
        if user is not None:
            self.stack.login(page, user, next_path=target)
        if page.url != self.url(path, **query):
            page.goto(self.url(path, **query))
        return page

    def draft(self, user: User, object_id: str, form_slug: str = "clientes") -> drafts.DraftState | None:
        with session_scope(self.settings) as s:
            return drafts.load_draft(
                s, actor=user, form_slug=form_slug, object_id=object_id, settings=self.settings
            )

    @property
    def debounce(self) -> float:
        return self.settings.autosave_debounce_ms / 1000


@pytest.fixture(scope="session")
def forms_stack(oficina: OficinaStack) -> FormsStack:
    return FormsStack(oficina)


def open_wizard(
    browser: Any, stack: FormsStack, user: User, object_id: str, form_slug: str = "clientes", *,
    prepare: Any = None,
) -> Any:
    page = stack.open(browser, "/formularios", user, prepare=prepare, form=form_slug, objeto=object_id)
    page.wait_for_selector(".autosave-field input, .autosave-field select", timeout=60000)
    return page


def indicator(page: Any) -> str:
    return page.inner_text(".autosave-indicator")


def wait_indicator(page: Any, prefix: str, timeout: float = 20, stack: FormsStack | None = None) -> None:
    seen: list[str] = []

    def check() -> bool:
        seen.append(indicator(page))
        return seen[-1].startswith(prefix)

    try:
        wait_until(check, timeout=timeout, what=f"indicator {prefix!r}")
    except AssertionError as exc:
        detail = ""
        if stack is not None:  # what the server was doing while the page waited
            detail = f"\n{stack.stack.log_tail()}\nserver threads:\n{stack.stack.thread_dump()}"
        basis = page.get_attribute(".autosave-indicator", "data-basis")
        raise AssertionError(f"{exc}; indicator showed {sorted(set(seen))} from {basis}{detail}") from None


def focused_field(page: Any) -> str | None:
    return page.evaluate("""() => { let a = document.activeElement;
        while (a && a.shadowRoot && a.shadowRoot.activeElement) a = a.shadowRoot.activeElement;
        return a ? a.name : null; }""")


def local_copies(page: Any) -> dict[str, Any]:
    raw = page.evaluate("() => Object.fromEntries(Object.entries(localStorage))")
    return {k: json.loads(v) for k, v in raw.items() if k.startswith("oficina-rascunho:")}


def test_half_filled_form_resumes_on_another_device_with_banner_and_undo(browser, forms_stack):
    user = forms_stack.user()
    page = open_wizard(browser, forms_stack, user, "novo-resume")
    page.fill("[data-field='cnpj'] input", "11222333000181")
    assert page.input_value("[data-field='cnpj'] input") == "11.222.333/0001-81"  # masked while typing
    page.fill("[data-field='razao_social'] input", "Oficina Retomada Ltda")
    page.click(".autosave-next")
    page.fill("[data-field='cep'] input", "01310100")
    wait_until(
        lambda: (d := forms_stack.draft(user, "novo-resume")) and d.data.get("cep") == "01310-100",
        what="the CEP saved",
    )
    wait_indicator(page, "Salvo às")
    page.context.close()

    page2 = open_wizard(browser, forms_stack, user, "novo-resume")  # another device
    assert page2.input_value("[data-field='cep'] input") == "01310-100"
    assert page2.get_attribute("[data-field='cep']", "data-status") == "filled"
    assert "current" in page2.get_attribute(".autosave-step[data-step='1']", "class")
    page2.get_by_text("Rascunho restaurado").first.wait_for(timeout=10000)
    wait_until(lambda: focused_field(page2) == "logradouro", what="focus on the next field to fill")
    page2.click(".autosave-back")
    assert page2.input_value("[data-field='razao_social'] input") == "Oficina Retomada Ltda"

    page2.get_by_role("button", name="Desfazer").click()
    wait_until(lambda: page2.input_value("[data-field='cnpj'] input") == "", what="empty form after undo")
    wait_until(lambda: not page2.get_by_text("Rascunho restaurado").first.is_visible(), what="banner hidden")
    assert forms_stack.draft(user, "novo-resume") is None
    with session_scope(forms_stack.settings) as s:
        versions = drafts.list_versions(s, actor=user, form_slug="clientes", object_id="novo-resume")
        assert versions[0].reason == "undo" and versions[0].payload["data"]["cep"] == "01310-100"
    page2.context.close()


def test_offline_typing_is_kept_in_the_browser_and_saved_when_back(browser, forms_stack):
    user = forms_stack.user()
    page = open_wizard(browser, forms_stack, user, "novo-offline")
    context = page.context
    page.fill("[data-field='razao_social'] input", "Antes da queda")
    wait_until(lambda: (d := forms_stack.draft(user, "novo-offline")) and d.version == 1, what="first save")
    page.click(".autosave-step[data-step='2']")
    wait_until(lambda: forms_stack.draft(user, "novo-offline").step == 2, what="step saved")

    context.set_offline(True)
    page.fill("[data-field='contato_nome'] input", "Digitado sem rede")
    page.fill("[data-field='contato_cpf'] input", "52998224725")
    wait_until(lambda: indicator(page) == "Sem conexão — guardado neste navegador", what="offline indicator")
    time.sleep(
        forms_stack.debounce + 0.7
    )  # well past the debounce: nothing may reach the server while offline
    (copy,) = local_copies(page).values()
    assert copy["values"]["contato_nome"] == "Digitado sem rede"
    assert "contato_cpf" not in copy["values"]  # sensitive: never in the browser's storage
    assert "contato_nome" not in forms_stack.draft(user, "novo-offline").data

    context.set_offline(False)
    saved = wait_until(
        lambda: (
            (d := forms_stack.draft(user, "novo-offline"))
            and d.data.get("contato_nome") == "Digitado sem rede"
            and d
        ),
        what="saved after reconnect",
    )
    assert saved.data["contato_cpf"] == "529.982.247-25"  # sensitive values reach the server, not storage
    wait_until(lambda: local_copies(page) == {}, what="local copy removed once acknowledged")
    wait_indicator(page, "Salvo às")
    context.close()


def test_two_contexts_on_one_draft_get_a_conflict_not_a_silent_overwrite(browser, forms_stack):
    user = forms_stack.user()
    page1 = open_wizard(browser, forms_stack, user, "novo-conflito")
    page1.fill("[data-field='razao_social'] input", "Original")
    wait_until(lambda: forms_stack.draft(user, "novo-conflito"), what="first save")
    page2 = open_wizard(browser, forms_stack, user, "novo-conflito")
    assert page2.input_value("[data-field='razao_social'] input") == "Original"

    page2.fill("[data-field='razao_social'] input", "Versão do tablet")
    wait_until(lambda: forms_stack.draft(user, "novo-conflito").version == 2, what="tablet saved")
    page1.fill("[data-field='razao_social'] input", "Versão do computador")
    wait_indicator(page1, "Conflito", stack=forms_stack)
    page1.get_by_text("Conflito: o rascunho foi salvo em outra aba").first.wait_for(timeout=10000)
    time.sleep(0.6)
    stored = forms_stack.draft(user, "novo-conflito")
    assert stored.data["razao_social"] == "Versão do tablet" and stored.version == 2  # not overwritten

    page1.get_by_role("button", name="Aplicar escolhas").click()  # keep mine
    merged = wait_until(
        lambda: (d := forms_stack.draft(user, "novo-conflito")) and d.version == 3 and d, what="merged save"
    )
    assert merged.data["razao_social"] == "Versão do computador"
    wait_indicator(page1, "Salvo às", stack=forms_stack)
    page1.context.close()
    page2.context.close()


def test_public_survey_resumes_by_email_without_login(browser, forms_stack):
    email = f"resp-{uuid.uuid4().hex[:8]}@empresa.com.br"
    page = forms_stack.open(browser, "/pesquisa", None)
    page.get_by_label("E-mail para começar ou continuar").first.fill(email)
    page.get_by_role("button", name="Começar ou continuar").click()
    page.wait_for_selector("[data-field='nome'] input", timeout=60000)
    page.fill("[data-field='nome'] input", "Carla")
    page.click(".autosave-next")
    page.select_option("[data-field='satisfacao'] select", "4")
    wait_indicator(page, "Salvo às")
    page.context.close()

    page2 = forms_stack.open(browser, "/pesquisa", None)  # another device, still no login
    page2.get_by_label("E-mail para começar ou continuar").first.fill(email.upper())
    page2.get_by_role("button", name="Começar ou continuar").click()
    page2.wait_for_selector("[data-field='satisfacao'] select", timeout=60000)
    assert page2.input_value("[data-field='satisfacao'] select") == "4"
    page2.get_by_text("Suas respostas foram restauradas").first.wait_for(timeout=10000)
    page2.select_option("[data-field='recomendaria'] select", "9")
    page2.click(".autosave-step:has-text('Revisão')")
    page2.click(".autosave-submit")
    page2.get_by_text("Obrigado! Suas respostas foram enviadas.").first.wait_for(timeout=15000)
    page2.context.close()

    page3 = forms_stack.open(browser, "/pesquisa", None, email=email)
    page3.get_by_text("já foi respondida").first.wait_for(timeout=30000)
    page3.context.close()


def test_the_indicator_says_salvo_only_once_the_server_has_the_latest_save(browser, forms_stack):
    # A page closed while it says "Salvo" must have nothing in flight: hold the page's messages to the server
    # and the indicator must stay "Salvando…" after the debounce sends the new text, until the server stores it.
    user = forms_stack.user()
    held: list[Any] = []
    holding = {"on": False, "server": None}

    def route(ws: Any) -> None:
        server = ws.connect_to_server()
        holding["server"] = server
        server.on_message(ws.send)
        ws.on_message(lambda message: held.append(message) if holding["on"] else server.send(message))

    page = open_wizard(browser, forms_stack, user, "novo-salvo",
                       prepare=lambda p: p.route_web_socket(BOKEH_SOCKET, route))
    page.fill("[data-field='razao_social'] input", "Primeira")
    wait_indicator(page, "Salvo às")

    holding["on"] = True
    page.fill("[data-field='razao_social'] input", "Segunda")
    page.wait_for_timeout(forms_stack.debounce * 1000 + 800)  # the debounce has sent it; the server has not
    assert held, "the page sent nothing to hold"
    assert forms_stack.draft(user, "novo-salvo").data["razao_social"] == "Primeira"
    assert indicator(page).startswith("Salvando"), indicator(page)

    holding["on"] = False
    for message in held:
        holding["server"].send(message)
    wait_indicator(page, "Salvo às")
    assert forms_stack.draft(user, "novo-salvo").data["razao_social"] == "Segunda"
    page.context.close()


def test_a_save_made_before_the_page_offers_its_local_copy_is_no_conflict_with_itself(browser, forms_stack):
    # Once drawn, the page offers the server any copy a page closed offline left behind (after 300 ms). A
    # quick user, or a busy machine, can save before that: the copy kept until that save is acknowledged is
    # then this page's own, and offering it came back as a conflict with the user's own save. Here the offer
    # is stretched to 4 s, and the server's answers are held from the moment the save went out, so that the
    # copy is still there when the offer runs.
    user = forms_stack.user()
    held: list[Any] = []
    link: dict[str, Any] = {"holding": False, "page": None}

    def route(ws: Any) -> None:
        server = ws.connect_to_server()
        link["page"] = ws

        def from_page(message: Any) -> None:
            server.send(message)
            if isinstance(message, str) and "Rápida" in message:
                link["holding"] = True

        server.on_message(lambda message: held.append(message) if link["holding"] else ws.send(message))
        ws.on_message(from_page)

    def prepare(page: Any) -> None:
        page.add_init_script("""(() => { const later = window.setTimeout;
            window.setTimeout = (fn, ms, ...rest) =>
                later(fn, fn && fn.name === "offerLocalCopy" ? 4000 : ms, ...rest);
        })();""")
        page.route_web_socket(BOKEH_SOCKET, route)

    page = open_wizard(browser, forms_stack, user, "novo-rapido", prepare=prepare)
    page.fill("[data-field='razao_social'] input", "Rápida")
    # The routes run only while this thread is inside a Playwright call: poll the store between short waits.
    wait_until(lambda: page.wait_for_timeout(50) or ((d := forms_stack.draft(user, "novo-rapido")) and d.version),
               what="the first save")
    assert local_copies(page), "the page keeps no copy while its save is unacknowledged"
    page.wait_for_timeout(4500)  # the offer has run meanwhile
    link["holding"] = False
    for message in held:
        link["page"].send(message)
    wait_indicator(page, "Salvo às")
    page.wait_for_timeout(1000)  # an answer to an offer would be here by now
    assert page.get_by_text("mudou depois").count() == 0, "the page's own save came back as a conflict"
    assert indicator(page).startswith("Salvo às"), indicator(page)
    draft = forms_stack.draft(user, "novo-rapido")
    assert draft.version == 1 and draft.data == {"razao_social": "Rápida"}
    page.context.close()
