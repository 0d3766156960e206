"""The browser face end to end: login (and its errors), the live jobs page with a backup started from the
backups page, the worker test job moving live with cancel and retry, role-based navigation and refusals,
logout, and a deactivated user pushed out of an open page."""

from __future__ import annotations

import re
import time

import httpx
import pytest
from playwright.sync_api import expect

from engine import accounts
from engine import jobs as job_service
from engine.db import session_scope
from engine.models import Job
from engine.security import SYSTEM
from tests.stack import PASSWORD, OficinaStack, wait_for_app, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

ADMIN_NAV = ("Backups", "Usuários", "Auditoria")


def nav_labels(page) -> list[str]:  # noqa: ANN001
    return [t.strip() for t in page.locator(".MuiDrawer-paper .MuiListItemText-primary").all_inner_texts()]


def newest_job(stack: OficinaStack, kind: str) -> Job | None:
    with session_scope(stack.settings) as s:
        rows, _ = job_service.list_jobs(s, actor=SYSTEM, kind=kind, limit=1)
        if rows:
            s.expunge(rows[0])
            return rows[0]
    return None


def job_row(page, job_id: int):  # noqa: ANN001, ANN201
    cell = page.locator(".tabulator-cell[tabulator-field='ID']", has_text=re.compile(rf"^\s*{job_id}\s*$"))
    return page.locator(".tabulator-row", has=cell)


def test_wrong_password_shows_the_portuguese_error_and_repeated_failures_are_limited(oficina, browser):
    user = oficina.user("staff")
    page = oficina.new_page(browser)
    page.goto(oficina.url("/jobs"))
    page.wait_for_url(re.compile(r"/login\?next=%2Fjobs$"))
    assert page.title() == "Entrar · Oficina"
    page.fill("#email", user.email)
    page.fill("#password", "senha-errada")
    page.click("button[type=submit]")
    error = page.locator("#login-error")
    assert error.inner_text() == "E-mail ou senha incorretos."
    assert page.input_value("#email") == user.email  # kept, only the password is typed again
    assert not [c for c in page.context.cookies() if c["name"] == "oficina_session"]
    oficina.screenshot(page, "login-erro")

    # The limit is per e-mail and address (5 a minute on this server): a stranger's e-mail gets locked out.
    stranger = f"ninguem-{time.monotonic_ns()}@oficina.test"
    for _ in range(5):
        page.fill("#email", stranger)
        page.fill("#password", "qualquer-coisa")
        page.click("button[type=submit]")
        assert page.locator("#login-error").inner_text() == "E-mail ou senha incorretos."
    page.fill("#password", "qualquer-coisa")
    page.click("button[type=submit]")
    assert page.locator("#login-error").inner_text().startswith("Muitas tentativas. Tente de novo em")

    # The right password still works for the real user, and goes where they were going.
    page.fill("#email", user.email)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(oficina.url("/jobs"))
    wait_for_app(page)
    page.context.close()


def test_admin_starts_a_backup_and_sees_it_reach_100_percent_on_the_jobs_page(oficina, browser):
    admin = oficina.user("admin", name="Ana Admin")
    jobs_page = oficina.new_page(browser)
    oficina.login(jobs_page, admin)
    assert jobs_page.url == oficina.url("/jobs")  # "/" sends an admin to the first page of the navigation
    jobs_page.evaluate("window.__notReloaded = true")

    backups_page = jobs_page.context.new_page()
    backups_page.goto(oficina.url("/backups"))
    wait_for_app(backups_page)
    oficina.screenshot(backups_page, "backups-antes")
    previous = newest_job(oficina, "backup")
    backups_page.get_by_role("button", name="Fazer backup agora").click()
    job = wait_until(lambda: (j := newest_job(oficina, "backup")) and (previous is None or j.id != previous.id)
                     and j, what="the backup job row")
    backups_page.locator(f"[data-job-id='{job.id}'][data-status='succeeded']").wait_for(timeout=60_000)
    backups_page.get_by_text("Backup concluído").first.wait_for()
    oficina.screenshot(backups_page, "backups-concluido")

    # The jobs page, opened before the backup existed, shows it finished without a reload.
    row = job_row(jobs_page, job.id)
    row.locator("[data-progress='100']").wait_for(timeout=30_000)
    assert "Concluído" in row.inner_text()
    assert "Backup do banco de dados" in row.inner_text()
    assert jobs_page.evaluate("window.__notReloaded === true")
    oficina.screenshot(jobs_page, "jobs-lista")

    row.click()
    header = jobs_page.locator(f".ofc-page-header[data-job-id='{job.id}']")
    header.wait_for()
    assert header.get_attribute("data-status") == "succeeded"
    # The header and the body (progress, counters, facts) are two panes updated one after the other: wait for
    # the body rather than read it the instant the header arrives.
    expect(jobs_page.locator(".ofc-progress[data-progress='100']")).to_have_count(1)
    assert jobs_page.evaluate("window.__notReloaded === true")
    jobs_page.wait_for_url(oficina.url("/jobs", id=str(job.id)))  # the address names the job shown
    oficina.screenshot(jobs_page, "jobs-detalhe-backup")
    jobs_page.context.close()


def test_worker_test_job_moves_live_and_can_be_retried_and_cancelled(oficina, browser):
    admin = oficina.user("admin")
    page = oficina.new_page(browser)
    oficina.login(page, admin, next_path="/jobs")
    page.evaluate("window.__notReloaded = true")
    page.locator("button", has_text="Testar worker").click()
    header = page.locator(".ofc-page-header[data-job-id]")
    header.wait_for()
    job_id = int(header.get_attribute("data-job-id"))

    seen: list[int] = []

    def finished() -> bool:
        value = page.locator(".ofc-progress").get_attribute("data-progress")
        if value is not None and (not seen or seen[-1] != int(value)):
            seen.append(int(value))
        return page.locator(f".ofc-page-header[data-job-id='{job_id}']").get_attribute("data-status") == "succeeded"

    wait_until(finished, timeout=40, interval=0.1, what="the worker test job to succeed")
    page.locator(".ofc-progress[data-progress='100']").wait_for()
    finished()
    assert seen[-1] == 100
    assert any(0 < v < 100 for v in seen), f"no intermediate progress seen: {seen}"
    assert seen == sorted(seen)
    assert page.evaluate("window.__notReloaded === true")
    assert "Passo 5 de 5" in page.locator(".tabulator-row").last.inner_text()
    oficina.screenshot(page, "jobs-teste-do-worker")

    page.get_by_role("button", name="Executar de novo").click()  # a finished job runs again as a new attempt
    retry_header = page.locator(f".ofc-page-header[data-job-id]:not([data-job-id='{job_id}'])")
    retry_header.wait_for()
    retry_id = int(retry_header.get_attribute("data-job-id"))
    page.get_by_role("button", name="Cancelar").click()
    page.locator(f".ofc-page-header[data-job-id='{retry_id}'][data-status='cancelled']").wait_for(timeout=30_000)
    with session_scope(oficina.settings) as s:
        retried = s.get(Job, retry_id)
        assert retried.retry_of_id == job_id and retried.status == "cancelled" and retried.progress < 100
    oficina.screenshot(page, "jobs-cancelado")
    page.context.close()


def test_viewer_sees_no_admin_navigation_and_is_refused_on_admin_pages(oficina, browser):
    viewer = oficina.user("viewer", name="Vera Leitora")
    page = oficina.new_page(browser)
    oficina.login(page, viewer)
    assert page.url == oficina.url("/jobs")
    page.locator(".MuiDrawer-paper").get_by_text("Jobs").wait_for()
    labels = nav_labels(page)
    assert "Jobs" in labels
    assert not set(ADMIN_NAV) & set(labels), labels
    assert "Leitor" in page.locator(".ofc-user").inner_text()
    oficina.screenshot(page, "leitor-jobs")

    for path in ("/users", "/backups", "/audit"):
        page.goto(oficina.url(path))
        refusal = page.locator(".ofc-refusal[data-refusal]")
        refusal.wait_for()
        assert "Acesso negado" in refusal.inner_text()
        assert page.locator(".tabulator").count() == 0
    oficina.screenshot(page, "leitor-acesso-negado")
    page.context.close()


def test_logout_ends_the_session(oficina, browser):
    user = oficina.user("analyst")
    page = oficina.new_page(browser)
    oficina.login(page, user)
    page.locator("a:has-text('Sair'), button:has-text('Sair')").first.click()
    page.wait_for_url(re.compile(r"/login\?saiu=1$"))
    assert "Você saiu da sua conta." in page.inner_text("body")
    assert not [c for c in page.context.cookies() if c["name"] == "oficina_session"]
    page.goto(oficina.url("/jobs"))
    page.wait_for_url(re.compile(r"/login\?next="))
    page.context.close()


def test_a_deactivated_user_is_sent_out_of_an_open_page(oficina, browser):
    user = oficina.user("staff")
    page = oficina.new_page(browser)
    oficina.login(page, user)
    with session_scope(oficina.settings) as s:
        accounts.update_user(s, actor=SYSTEM, user_id=user.id, is_active=False)
    page.wait_for_url(re.compile(r"/login\?expirou=1$"), timeout=20_000)
    page.get_by_text("Sua sessão terminou").wait_for(timeout=10_000)
    page.goto(oficina.url("/jobs"))
    page.wait_for_url(re.compile(r"/login\?next="))
    page.context.close()


def test_login_refuses_open_redirects_and_forged_forms(oficina):
    user = oficina.user("viewer")
    with httpx.Client(base_url=oficina.base_url, follow_redirects=False, timeout=30) as client:
        def login(next_url: str, *, csrf: str | None = None) -> httpx.Response:
            form = client.get("/login")
            token = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
            return client.post("/login", data={"email": user.email, "password": PASSWORD, "next": next_url,
                                               "csrf": token if csrf is None else csrf})

        forged = login("/jobs", csrf="forjado")
        assert forged.status_code == 400 and "O formulário expirou" in forged.text
        for hostile in ("https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)",
                        "/logout"):
            client.cookies.clear()
            answer = login(hostile)
            assert answer.status_code == 302, hostile
            assert answer.headers["location"] == "/jobs", (hostile, answer.headers["location"])
        client.cookies.clear()
        assert login("/users?x=1").headers["location"] == "/users?x=1"  # a same-site path is kept
        tampered = client.cookies.get("oficina_session").replace("|", "|0", 1)
        client.cookies.clear()
        client.cookies.set("oficina_session", tampered)
        assert client.get("/jobs").status_code == 302  # back to the login
        assert client.get("/jobs").headers["location"].startswith("./login")


def test_admin_creates_a_user_whose_one_time_password_works(oficina, browser):
    admin = oficina.user("admin")
    page = oficina.new_page(browser)
    oficina.login(page, admin, next_path="/users")
    page.locator("button", has_text="Novo usuário").click()
    email = f"nova-{time.monotonic_ns()}@oficina.test"
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Nome", exact=True).fill("Nina Nova")
    page.locator("button", has_text="Criar usuário").click()
    secret = page.locator(".ofc-secret-value")
    secret.wait_for()
    password = secret.inner_text().strip()
    assert "não será mostrada de novo" in page.locator(".ofc-secret").inner_text()
    oficina.screenshot(page, "usuarios-senha-inicial")
    page.locator("button", has_text="Já copiei").click()
    secret.wait_for(state="detached")
    assert page.locator(".ofc-page-header[data-user-id]").inner_text().startswith("Nina Nova")
    page.context.close()

    with session_scope(oficina.settings) as s:
        created = accounts.get_user_by_email(s, email=email)
        assert created.role == "staff" and created.name == "Nina Nova"
        s.expunge(created)
    newcomer = oficina.new_page(browser)
    oficina.login(newcomer, created, password=password)
    assert "Nina Nova" in newcomer.locator(".ofc-user").inner_text()
    newcomer.context.close()


def test_the_server_serves_with_its_start_up_heap_kept_out_of_full_collections(oficina: OficinaStack) -> None:
    # Panel, Bokeh and the app's modules are a heap of several hundred thousand objects; walked by every full
    # collection, it pauses each request in flight by tens of milliseconds (bench/drafts.py shows the tail).
    response = httpx.get(oficina.url("/metrics"), timeout=10)
    assert response.status_code == 200
    frozen = re.search(r"^oficina_gc_frozen_objects ([0-9.e+]+)$", response.text, re.M)
    assert frozen is not None, "the server does not report its frozen heap"
    assert float(frozen.group(1)) > 100_000


def test_the_server_writes_its_threads_and_open_pages_on_sigusr1(oficina: OficinaStack, browser) -> None:  # noqa: ANN001
    # Operations (and a failing browser test) can see what a stuck page waits for without stopping the server.
    # A page closed just before is among Panel's views for a while as a destroyed document: the dump must say so
    # and not raise (an exception in a signal handler would stop the server).
    closed = oficina.new_page(browser)
    oficina.login(closed, oficina.user("staff"))
    closed.context.close()
    page = oficina.new_page(browser)
    oficina.login(page, oficina.user("staff"))
    idle = re.compile(r"document 0x[0-9a-f]+: hold=None held_events=0 pulled=True connected=True loaded=True roots=\d+ "
                      r"write_blocked=False queued_messages=0 write_tasks=0 session_lock=free write_locks=\[free\]")
    dumps: list[str] = []
    try:
        while len(dumps) < 10 and not (dumps and idle.search(dumps[-1])):  # the page settles after login
            dumps.append(oficina.thread_dump())
    finally:
        page.context.close()
    for dump in dumps:
        assert "most recent call first" in dump and "panel_serve.py" in dump, dump[-2000:]
        assert "open pages:" in dump and "event loop tasks:" in dump and "Traceback" not in dump, dump[-2000:]
    assert idle.search(dumps[-1]), dumps[-1][-2000:]
    assert httpx.get(oficina.url("/health"), timeout=10).status_code == 200  # it goes on serving
