"""The dashboard's view-models, the session cookie, navigation by role and error messages -- without a server,
against the real engine on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta

import pytest
from tornado.web import create_signed_value

from dashboard import auth, pages
from dashboard.pages import feedback, ui
from dashboard.pages.audit import AuditModel, changes
from dashboard.pages.backups import BackupsModel
from dashboard.pages.base import PageSpec, navigation
from dashboard.pages.jobs import JobDetailModel, JobListModel, progress_html
from dashboard.pages.template import HeaderStatus
from dashboard.pages.users import UsersModel
from engine import accounts, audit, jobs
from engine.db import session_scope
from engine.errors import (
    AuthenticationFailed,
    Conflict,
    ExternalServiceError,
    LimitExceeded,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)
from engine.models import Job, User
from engine.security import SYSTEM
from engine.settings import Settings

PASSWORD = "senha-segura-123"


def make_user(settings: Settings, role: str, email: str | None = None, name: str = "") -> User:
    with session_scope(settings) as s:
        user, _ = accounts.create_user(s, actor=SYSTEM, email=email or f"{role}@oficina.test", role=role,
                                       password=PASSWORD, name=name)
        s.flush()
        s.expunge(user)
    return user


def make_job(settings: Settings, owner: User | None, *, kind: str = "backup", status: str = "queued",
             progress: int = 0, created_at: datetime | None = None) -> int:
    with session_scope(settings) as s:
        job = jobs.create_job(s, kind=kind, owner=owner or SYSTEM)
        job.status, job.progress = status, progress
        if created_at is not None:
            job.created_at = created_at
        s.flush()
        return job.id


# The session cookie and redirects ------------------------------------------------------------------------

def test_session_cookie_names_the_active_user_and_dies_with_tampering_reset_or_deactivation(settings):
    user = make_user(settings, "staff")
    cookie = auth.session_cookie_value(settings, user)
    assert auth.user_from_cookie(settings, cookie).id == user.id

    assert auth.user_from_cookie(settings, None) is None
    assert auth.user_from_cookie(settings, "") is None
    assert auth.user_from_cookie(settings, cookie[:-2] + ("00" if cookie[-2:] != "00" else "11")) is None
    assert auth.user_from_cookie(settings, "x" * 5000) is None
    other_key = settings.with_overrides(secret_key="another-secret-key-that-is-long-enough-987654")
    assert auth.user_from_cookie(other_key, cookie) is None  # signed with SECRET_KEY, nothing else
    forged = create_signed_value(settings.secret_key, auth.SESSION_COOKIE, f"{user.id}:not-the-stamp").decode()
    assert auth.user_from_cookie(settings, forged) is None
    old = create_signed_value(settings.secret_key, auth.SESSION_COOKIE,
                              f"{user.id}:{auth.session_stamp(settings, user)}",
                              clock=lambda: time.time() - (auth.SESSION_HOURS + 1) * 3600).decode()
    assert auth.user_from_cookie(settings, old) is None  # expired

    with session_scope(settings) as s:
        accounts.reset_password(s, actor=SYSTEM, user_id=user.id, password="outra-senha-123")
    assert auth.user_from_cookie(settings, cookie) is None  # the reset ended the session
    with session_scope(settings) as s:
        fresh = accounts.get_user(s, user_id=user.id)
        cookie = auth.session_cookie_value(settings, fresh)
    assert auth.user_from_cookie(settings, cookie) is not None
    with session_scope(settings) as s:
        accounts.update_user(s, actor=SYSTEM, user_id=user.id, is_active=False)
    assert auth.user_from_cookie(settings, cookie) is None


@pytest.mark.parametrize(("raw", "expected"), [
    ("/jobs?id=3", "/jobs?id=3"), ("/users", "/users"), ("", "/"), (None, "/"), (42, "/"),
    ("https://evil.example/", "/"), ("//evil.example", "/"), ("/\\evil.example", "/"), ("\\\\evil", "/"),
    ("javascript:alert(1)", "/"), ("jobs", "/"), ("/login", "/"), ("/logout/", "/"), ("/jobs\r\nX: y", "/"),
    ("/" + "a" * 3000, "/"),
])
def test_next_must_be_a_path_of_this_site(raw, expected):
    assert auth.safe_next(raw) == expected


def test_public_pages_and_their_websockets_open_without_login():
    assert auth.is_public("/pesquisa") and auth.is_public("/pesquisa/ws")
    assert not auth.is_public("/pesquisa-falsa") and not auth.is_public("/jobs") and not auth.is_public("/")


# Navigation ----------------------------------------------------------------------------------------------

def test_navigation_shows_only_what_the_role_may_use(sqlite_settings):
    admin, viewer = make_user(sqlite_settings, "admin"), make_user(sqlite_settings, "viewer")
    staff, analyst = make_user(sqlite_settings, "staff"), make_user(sqlite_settings, "analyst")
    assert [e.slug for e in pages.nav_for(admin)] == [
        "jobs", "processos", "formularios", "rascunhos", "importacoes", "webhooks", "backups", "users", "audit"]
    assert [e.slug for e in pages.nav_for(viewer)] == ["jobs", "processos"]
    assert [e.slug for e in pages.nav_for(staff)] == ["jobs", "processos", "formularios", "rascunhos"]
    assert [e.slug for e in pages.nav_for(analyst)] == [
        "jobs", "processos", "formularios", "rascunhos", "importacoes"]
    assert pages.first_page_for(viewer) == "/jobs" and pages.first_page_for(None) is None
    with session_scope(sqlite_settings) as s:
        accounts.update_user(s, actor=SYSTEM, user_id=admin.id, is_active=False)
        inactive = accounts.get_user(s, user_id=admin.id)
    assert pages.nav_for(inactive) == []

    public = PageSpec("pesquisa", "Pesquisa", "quiz", None, lambda ctx: None, public=True)
    private = PageSpec("x", "X", "star", None, lambda ctx: None)
    assert [e.slug for e in navigation([public, private], viewer)] == ["x"]  # public pages are not in the nav
    assert private.allowed(viewer) and not private.allowed(None) and public.allowed(None)


def test_every_registered_page_is_served_at_its_path(sqlite_settings):
    apps = pages.applications(sqlite_settings)
    assert set(apps) == {"/jobs", "/processos", "/formularios", "/rascunhos", "/importacoes", "/webhooks",
                         "/pesquisa", "/backups", "/users", "/audit"}
    assert all(callable(app) and app.__name__.startswith("page_") for app in apps.values())


# Errors become messages ----------------------------------------------------------------------------------

def test_errors_become_actionable_portuguese_messages():
    denied = PermissionDenied("Seu perfil (viewer) não permite esta ação (users.manage).", action="users.manage")
    assert feedback.error_message(denied).endswith("fale com um administrador.")
    invalid = ValidationFailed("Dados inválidos.", errors=[{"field": "email", "message": "e-mail inválido"}])
    assert feedback.error_message(invalid) == "Dados inválidos. (email: e-mail inválido)"
    assert feedback.error_message(LimitExceeded("Muitas tentativas.", retry_after=3)) == "Muitas tentativas."
    assert "Tente de novo" in feedback.error_message(ExternalServiceError("O S3 não respondeu."))
    assert feedback.error_message(Conflict("O job 3 já terminou.")) == "O job 3 já terminou."
    bug = feedback.error_message(ZeroDivisionError("x"), reference="abc123")
    assert "abc123" in bug and "ZeroDivision" not in bug and "Traceback" not in bug


def test_run_action_notifies_instead_of_raising_and_gives_the_action_a_request_id():
    from engine.context import current_request_id

    seen: list[str] = []
    assert feedback.run_action(lambda: seen.append(current_request_id()) or 7) == 7
    assert seen[0] and current_request_id() == ""
    assert feedback.run_action(lambda: (_ for _ in ()).throw(NotFound("Não achei."))) is None
    assert feedback.attempt(lambda: None) is True
    assert feedback.attempt(lambda: 1 / 0) is False


# Jobs ----------------------------------------------------------------------------------------------------

def test_job_list_pages_filters_and_shows_people_only_their_own_jobs(settings, recording_queue):
    admin = make_user(settings, "admin", name="Ana Admin")
    staff = make_user(settings, "staff", name="Sérgio Staff")
    other = make_user(settings, "staff", email="outro@oficina.test")
    mine = [make_job(settings, staff, kind="diagnostico", status="succeeded", progress=100) for _ in range(12)]
    make_job(settings, staff, kind="backup", status="running", progress=40)
    make_job(settings, other, kind="backup", status="failed", progress=10)

    own = JobListModel(settings=settings, user=staff, page_size=10)
    own.refresh()
    assert own.total == 13 and len(own.rows) == 10 and own.page_count == 2
    assert own.range_label == "1–10 de 13"
    assert {r["owner"] for r in own.rows} == {"Sérgio Staff"}
    assert not own.shows_owner_filter
    assert own.rows[0]["kind_label"] == "Backup do banco de dados" and own.rows[0]["status_label"] == "Em execução"
    own.page = 2
    assert [r["id"] for r in own.rows] == sorted(mine, reverse=True)[9:]
    assert own.range_label == "11–13 de 13"
    own.status = "running"  # a filter change goes back to page 1
    assert own.page == 1 and own.total == 1 and own.rows[0]["progress"] == 40 and own.filtered
    own.clear_filters()
    assert own.total == 13 and not own.filtered

    everyone = JobListModel(settings=settings, user=admin)
    everyone.refresh()
    assert everyone.total == 14 and everyone.shows_owner_filter
    assert other.id in everyone.param.owner_id.objects.values()
    everyone.owner_id = other.id
    assert everyone.total == 1 and everyone.rows[0]["status"] == "failed"
    everyone.owner_id = 0
    everyone.kind = "diagnostico"
    assert everyone.total == 12 and everyone.param.kind.objects["Teste do worker"] == "diagnostico"


def test_job_list_dates_are_sao_paulo_days_and_a_reversed_range_is_refused(settings, recording_queue):
    admin = make_user(settings, "admin")
    # 02:30 UTC on 10/03 is still 09/03 in São Paulo (UTC-3).
    late_evening = make_job(settings, admin, created_at=datetime.fromisoformat("2025-03-10T02:30:00+00:00"))
    make_job(settings, admin, created_at=datetime.fromisoformat("2025-03-10T15:00:00+00:00"))
    vm = JobListModel(settings=settings, user=admin)
    vm.param.update(since=date(2025, 3, 9), until=date(2025, 3, 9))
    assert [r["id"] for r in vm.rows] == [late_evening]
    assert vm.rows[0]["created_at"] == "09/03/2025 23:30"
    vm.until = date(2025, 3, 10)
    assert vm.total == 2
    with pytest.raises(ValidationFailed, match="data inicial é depois"):
        vm.since = date(2025, 3, 11)


def test_job_detail_shows_progress_and_items_and_cancels_and_retries(settings, recording_queue):
    staff = make_user(settings, "staff")
    viewer = make_user(settings, "viewer")
    job_id = make_job(settings, staff, kind="relatorio", status="running", progress=60)
    with session_scope(settings) as s:
        job = s.get(Job, job_id)
        job.counters, job.message, job.params = {"feitos": 3, "total": 5}, "Passo 3 de 5 concluído", {"steps": 5}
    detail = JobDetailModel(settings=settings, user=staff)
    detail.job_id = job_id
    assert detail.job["progress"] == 60 and detail.job["status_label"] == "Em execução"
    assert detail.job["counters"] == {"feitos": 3, "total": 5} and detail.can_cancel and not detail.can_retry

    assert detail.cancel() == "running"  # a running job is asked to stop at its next check
    assert detail.job["cancel_requested"]
    with session_scope(settings) as s:
        s.get(Job, job_id).status = "cancelled"
    detail.refresh()
    assert detail.job["status"] == "cancelled" and detail.can_retry and not detail.can_cancel
    new_id = detail.retry()
    with session_scope(settings) as s:
        assert s.get(Job, new_id).retry_of_id == job_id
    assert recording_queue.enqueued[-1][0] == new_id

    diagnostic = JobDetailModel(settings=settings, user=staff)
    diagnostic.job_id = make_job(settings, staff, kind="diagnostico", status="failed")
    assert diagnostic.job["kind_label"] == "Teste do worker" and not diagnostic.can_retry  # admins only

    stranger = JobDetailModel(settings=settings, user=viewer)
    stranger.job_id = job_id  # not theirs: "not found", never someone else's job
    assert stranger.job is None and "não encontrado" in stranger.missing
    stranger.job_id = 999_999
    assert stranger.job is None and stranger.missing


def test_header_counts_active_jobs_and_notices_a_dead_session(settings, recording_queue):
    staff = make_user(settings, "staff")
    make_job(settings, staff, status="running")
    make_job(settings, staff, status="queued")
    make_job(settings, staff, status="succeeded")
    make_job(settings, None, status="running")  # the system's: not counted for staff
    status = HeaderStatus(settings=settings, user=staff, cookie=auth.session_cookie_value(settings, staff))
    status.refresh()
    assert status.active_jobs == 2 and status.label == "2 jobs ativos" and not status.signed_out
    with session_scope(settings) as s:
        accounts.update_user(s, actor=SYSTEM, user_id=staff.id, is_active=False)
    status.refresh()
    assert status.signed_out


def test_progress_bar_html_is_bounded():
    assert 'data-progress="100"' in progress_html(250, "running")
    assert 'data-progress="0"' in progress_html(-5, "queued")
    assert "is-error" in progress_html(10, "failed")


# Users ---------------------------------------------------------------------------------------------------

def test_users_model_creates_with_a_password_shown_once_and_manages_roles_passwords_and_tokens(settings):
    admin = make_user(settings, "admin")
    vm = UsersModel(settings=settings, user=admin)
    vm.refresh()
    assert [u["email"] for u in vm.users] == ["admin@oficina.test"]

    vm.param.update(new_email="  Nova@Oficina.test ", new_name="Nova Pessoa", new_role="analyst")
    user_id = vm.create()
    password = vm.revealed["value"]
    assert "não será mostrada de novo" in vm.revealed["note"]
    assert vm.selected["email"] == "nova@oficina.test" and vm.selected["role_label"] == "Analista"
    assert vm.new_email == "" and len(vm.users) == 2
    with session_scope(settings) as s:
        assert accounts.authenticate(s, email="nova@oficina.test", password=password).id == user_id
    vm.dismiss_secret()
    assert vm.revealed is None

    vm.role = "viewer"
    vm.save_role()
    assert vm.selected["role"] == "viewer"

    vm.reset_password()
    new_password = vm.revealed["value"]
    assert new_password != password
    with session_scope(settings) as s:
        assert accounts.authenticate(s, email="nova@oficina.test", password=new_password)
    with session_scope(settings) as s, pytest.raises(AuthenticationFailed):
        accounts.authenticate(s, email="nova@oficina.test", password=password)

    vm.token_name = "planilha"
    token_id = vm.create_token()
    clear = vm.revealed["value"]
    assert clear.startswith("ofc_") and [t["name"] for t in vm.tokens] == ["planilha"]
    assert clear not in repr(vm.tokens)  # only the prefix is listed
    with session_scope(settings) as s:
        assert accounts.user_for_token(s, token=clear).id == user_id
    vm.revoke_token(token_id)
    assert vm.tokens[0]["revoked"]
    with session_scope(settings) as s, pytest.raises(AuthenticationFailed):
        accounts.user_for_token(s, token=clear)

    vm.set_active(False)
    assert vm.selected["is_active"] is False
    vm.set_active(True)
    assert vm.selected["is_active"] is True

    vm.selected_id = admin.id
    assert vm.is_self
    with pytest.raises(ValidationFailed, match="própria conta"):
        vm.set_active(False)

    vm.param.update(new_email="nova@oficina.test")
    with pytest.raises(Conflict):
        vm.create()
    vm.param.update(new_email="sem-arroba")
    with pytest.raises(ValidationFailed):
        vm.create()
    vm.param.update(new_email="   ")
    with pytest.raises(ValidationFailed, match="Informe o e-mail"):
        vm.create()

    vm.search = "nova"
    assert [u["email"] for u in vm.users] == ["nova@oficina.test"]
    vm.search = "%_ninguém"
    assert vm.users == []


def test_users_model_refuses_anyone_but_admins(settings):
    staff = make_user(settings, "staff")
    with pytest.raises(PermissionDenied):
        UsersModel(settings=settings, user=staff).refresh()


# Audit ---------------------------------------------------------------------------------------------------

def test_audit_model_filters_pages_and_explains_changes(settings):
    admin = make_user(settings, "admin")
    staff = make_user(settings, "staff")
    with session_scope(settings) as s:
        for i in range(30):
            audit.record(s, actor=staff, action="cliente.update", entity_type="cliente", entity_id=i,
                         before={"nome": f"A{i}", "cidade": "SP"}, after={"nome": f"B{i}", "cidade": "SP"})
    vm = AuditModel(settings=settings, user=admin)
    vm.refresh()
    total = vm.total
    assert total >= 32 and len(vm.rows) == 25 and vm.page_count == -(-total // 25)
    vm.action = "cliente.update"
    assert vm.total == 30 and vm.page == 1 and "cliente.update" in vm.param.action.objects
    vm.page = 2
    assert len(vm.rows) == 5 and vm.range_label == "26–30 de 30"
    vm.actor_id = admin.id
    assert vm.total == 0 and vm.page == 1
    vm.param.update(actor_id=staff.id, search="17")
    assert [r["entity_id"] for r in vm.rows] == ["17"]
    vm.select(vm.rows[0]["id"])
    assert changes(vm.selected["before"], vm.selected["after"]) == [
        {"field": "nome", "before": '"A17"', "after": '"B17"'}]
    vm.param.update(search="", entity_type="user")
    assert vm.total == 0
    vm.clear_filters()
    assert vm.total == total
    vm.since = date.today() + timedelta(days=1)
    assert vm.total == 0
    with pytest.raises(ValidationFailed):
        vm.until = date.today()

    with pytest.raises(PermissionDenied):
        AuditModel(settings=settings, user=staff)


def test_changes_lists_added_removed_and_changed_fields():
    assert changes({"a": 1, "b": 2}, {"b": 3, "c": 4}) == [
        {"field": "a", "before": "1", "after": "—"}, {"field": "b", "before": "2", "after": "3"},
        {"field": "c", "before": "—", "after": "4"}]
    assert changes(None, None) == []


# Backups -------------------------------------------------------------------------------------------------

def test_backups_model_starts_a_backup_follows_the_job_and_lists_it(settings, inline_queue):
    admin = make_user(settings, "admin", name="Ana Admin")
    vm = BackupsModel(settings=settings, user=admin)
    vm.refresh()
    assert vm.backups == [] and vm.job is None and vm.loaded
    job_id = vm.start()  # the inline queue runs it at once
    assert vm.job["id"] == job_id and vm.job["status"] == "succeeded" and vm.job["progress"] == 100
    assert not vm.running
    (backup,) = vm.backups
    assert backup["job_id"] == job_id and backup["by"] == "Ana Admin" and len(backup["sha256"]) == 64
    assert backup["size"] > 0 and backup["dialect"] == ("postgresql" if settings.is_postgres else "sqlite")

    viewer = make_user(settings, "viewer")
    with pytest.raises(PermissionDenied):
        BackupsModel(settings=settings, user=viewer).start()


def test_backups_model_follows_a_backup_someone_else_started(settings, recording_queue):
    admin = make_user(settings, "admin")
    other = make_user(settings, "admin", email="outra@oficina.test")
    running = make_job(settings, other, kind="backup", status="running", progress=30)
    vm = BackupsModel(settings=settings, user=admin)
    vm.refresh()
    assert vm.job["id"] == running and vm.running and vm.job["progress"] == 30


# Formats -------------------------------------------------------------------------------------------------

def test_brazilian_formats():
    moment = datetime.fromisoformat("2025-01-31T23:59:00+00:00")
    assert ui.fmt_datetime(moment) == "31/01/2025 20:59"
    assert ui.fmt_datetime(None) == ""
    assert ui.fmt_bytes(1536) == "1,5 KB" and ui.fmt_bytes(12) == "12 B"
    assert ui.fmt_int(1234567) == "1.234.567"
    assert ui.fmt_duration(moment, moment + timedelta(seconds=125)) == "2 min 05 s"
    assert ui.fmt_duration(moment, moment + timedelta(hours=2, minutes=3)) == "2 h 03 min"
    assert ui.day_start(date(2025, 3, 9)).isoformat() == "2025-03-09T00:00:00-03:00"
    assert ui.day_end(date(2025, 3, 9)).isoformat() == "2025-03-10T00:00:00-03:00"
    assert ui.badge("<b>x</b>") == '<span class="ofc-badge ofc-badge--neutral">&lt;b&gt;x&lt;/b&gt;</span>'
