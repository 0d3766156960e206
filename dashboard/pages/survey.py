"""The public survey at ``/pesquisa`` (no login): identified by e-mail, resumes where it stopped.

``SurveySession`` (view-model) starts or resumes a respondent's progress through ``engine.survey`` and saves
what the autosave component sends, one save at a time with the newest state (rate limits are waited out,
nothing typed is lost). ``SurveyPage`` lays it out.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import panel as pn
import panel_material_ui as pmui
import param

from dashboard.components.autosave import AutosaveForm
from dashboard.pages import ui
from dashboard.pages.forms import hhmm, request_client
from engine import survey
from engine.db import session_scope
from engine.errors import Conflict, EngineError, LimitExceeded, ValidationFailed
from engine.forms import flatten, unflatten
from engine.settings import Settings

log = logging.getLogger(__name__)

SURVEY_PATH = "/pesquisa"
DEFAULT_SURVEY = "pesquisa"


class SurveySession(param.Parameterized):
    email = param.String(default="")
    started = param.Boolean(default=False)
    done = param.Boolean(default=False)
    banner = param.String(default="")
    notice = param.String(default="")
    notice_kind = param.Selector(default="info", objects=["info", "success", "warning", "error"])

    def __init__(self, *, settings: Settings, survey_id: str = DEFAULT_SURVEY, **params: Any) -> None:
        super().__init__(**params)
        self.settings = settings
        self.form = survey.survey_form(survey_id)
        self.ip, _ = request_client()
        self._lock = threading.Lock()
        self._pending: dict[str, Any] | None = None
        self._working = False
        self._retry: threading.Timer | None = None
        self._seen_seq = 0
        self.values: dict[
            str, Any
        ] = {}  # the latest state the browser sent (its `values` is Python -> JS only)
        self.component = AutosaveForm(
            form=self.form.describe(),
            debounce_ms=settings.autosave_debounce_ms,
            submit_label="Enviar respostas",
            on_message=self.handle_message,
            sizing_mode="stretch_width",
        )

    def start(self, email: str) -> None:
        try:
            normalized = survey.normalize_email(email)
            with session_scope(self.settings) as s:
                state = survey.load_progress(
                    s, email=normalized, survey_id=self.form.slug, client=self.ip, settings=self.settings
                )
        except survey.AlreadySubmitted as exc:
            self.param.update(done=True, notice=exc.message, notice_kind="success")
            return
        except EngineError as exc:
            self.param.update(notice=exc.message, notice_kind="error")
            return
        c = self.component
        c.storage_key = f"pesquisa:{self.form.slug}:{normalized}"
        if state is None:
            values = {"email": normalized}
            self.values = dict(values)
            c.param.update(
                values=values,
                step=0,
                version=0,
                status=self.form.fields_status(unflatten(values))[0],
                focus_field="nome",
            )
            self.banner = ""
        else:
            errors = {e["field"]: e["message"] for e in state.errors if e.get("field")}
            self.values = flatten(state.data)
            c.param.update(
                values=flatten(state.data),
                step=state.step,
                version=state.version,
                status=state.fields_status,
                errors=errors,
                focus_field=state.next_field or "",
                saved_at=hhmm(state.updated_at.timestamp()),
                save_state="saved",
            )
            self.banner = (
                f"Suas respostas foram restauradas: você estava na tela {state.step + 1} "
                f"({self.form.steps[state.step].title})."
            )
        self.param.update(email=normalized, started=True, notice="")

    def handle_message(self, msg: dict[str, Any]) -> None:
        values = msg.get("values")
        if not isinstance(values, dict) or not self.started or self.done:
            return
        seq = msg.get("seq") if isinstance(msg.get("seq"), int) else 0
        with self._lock:
            if msg.get("type") != "submit" and seq and seq <= self._seen_seq:
                return  # a resend of what is already stored or queued
            self._seen_seq = max(self._seen_seq, seq)
        job = {
            "values": values,
            "step": msg.get("step") if isinstance(msg.get("step"), int) else 0,
            "seq": msg.get("seq") if isinstance(msg.get("seq"), int) else 0,
            "submit": msg.get("type") == "submit",
        }
        with self._lock:
            if self._pending and self._pending.get("submit"):
                job["submit"] = True
            self._pending = job
            if self._working or self._retry is not None:
                return
            self._working = True
        self._drain()

    def _drain(self) -> None:
        while True:
            with self._lock:
                job, self._pending = self._pending, None
                if job is None:
                    self._working = False
                    return
            if not self._save(job):
                with self._lock:
                    self._working = False
                return
            if job["submit"]:
                self.submit()

    def _save(self, job: dict[str, Any]) -> bool:
        c = self.component
        c.save_state = "saving"
        step = max(0, min(job["step"], len(self.form.steps) - 1))
        try:
            with session_scope(self.settings) as s:
                state = survey.save_progress(
                    s,
                    email=self.email,
                    survey_id=self.form.slug,
                    data=unflatten(job["values"]),
                    step=step,
                    version=c.version,
                    client=self.ip,
                    settings=self.settings,
                )
        except LimitExceeded as exc:
            wait = float(exc.data.get("retry_after") or 5)
            with self._lock:
                self._pending = self._pending or job
                self._retry = threading.Timer(wait, self._retry_now)
                self._retry.daemon = True
                self._retry.start()
            c.param.update(
                message=f"Aguarde {int(wait)} s para salvar (nada foi perdido).", save_state="waiting"
            )
            return False
        except survey.AlreadySubmitted as exc:
            self.param.update(done=True, notice=exc.message, notice_kind="success")
            c.param.update(read_only=True, save_state="readonly")
            return False
        except Conflict as exc:
            c.param.update(message=exc.message, save_state="conflict")
            self.param.update(
                notice=exc.message + " Recarregue a página para continuar.", notice_kind="warning"
            )
            return False
        except EngineError as exc:
            c.param.update(message=exc.message, save_state="error")
            self.param.update(notice=exc.message, notice_kind="error")
            return False
        errors = {e["field"]: e["message"] for e in state.errors if e.get("field")}
        self.values = dict(job["values"])
        c.param.update(
            version=state.version,
            status=state.fields_status,
            errors=errors,
            message="",
            saved_at=hhmm(state.updated_at.timestamp()),
            save_state="saved",
            ack_seq=max(c.ack_seq, job["seq"]),
        )
        return True

    def _retry_now(self) -> None:
        with self._lock:
            self._retry = None
            if self._working:
                return
            self._working = True
        self._drain()

    def submit(self) -> None:
        c = self.component
        try:
            with session_scope(self.settings) as s:
                survey.submit_survey(
                    s,
                    email=self.email,
                    survey_id=self.form.slug,
                    data=unflatten(self.values),
                    client=self.ip,
                    settings=self.settings,
                )
        except ValidationFailed as exc:
            errors = {e["field"]: e["message"] for e in exc.data.get("errors", []) if e.get("field")}
            c.param.update(errors=errors, focus_field=next(iter(errors), ""))
            self.param.update(notice=exc.message, notice_kind="error")
            return
        except EngineError as exc:
            self.param.update(notice=exc.message, notice_kind="error")
            return
        c.forget_local_copy()
        c.param.update(read_only=True, save_state="saved")
        self.param.update(
            done=True, banner="", notice="Obrigado! Suas respostas foram enviadas.", notice_kind="success"
        )


class SurveyPage(pn.viewable.Viewer):
    def __init__(self, session: SurveySession, **params: Any) -> None:
        super().__init__(**params)
        self.session = session
        self._email = pmui.TextInput(
            label="E-mail para começar ou continuar", placeholder="nome@empresa.com.br", width=360
        )
        self._start = pmui.Button(label="Começar ou continuar", color="primary")
        self._start.on_click(lambda _e: self.session.start(self._email.value))
        self._banner = pmui.Alert(
            object="",
            severity="info",
            title="Respostas restauradas",
            visible=False,
            sizing_mode="stretch_width",
        )
        self._notice = pmui.Alert(object="", severity="info", visible=False, sizing_mode="stretch_width")
        self._entry = pmui.Column(
            pmui.Typography(
                "Informe seu e-mail para começar. Se você já começou, continuará de onde parou "
                "(guardamos seu progresso por 30 dias).",
                variant="body1",
            ),
            pmui.Row(self._email, self._start),
        )
        self._form = pmui.Column(session.component, visible=False, sizing_mode="stretch_width")
        session.param.watch(self._sync, ["started", "done", "banner", "notice", "notice_kind"])
        self._sync()

    def _sync(self, *_: Any) -> None:
        s = self.session
        self._entry.visible = not s.started and not s.done
        self._form.visible = s.started
        self._banner.param.update(object=s.banner, visible=bool(s.banner))
        self._notice.param.update(object=s.notice, severity=s.notice_kind, visible=bool(s.notice))

    def __panel__(self) -> Any:
        return pmui.Column(
            ui.page_header(self.session.form.title, self.session.form.description),
            self._banner,
            self._notice,
            self._entry,
            self._form,
            sizing_mode="stretch_width",
            max_width=960,
        )


def survey_view(settings: Settings, *, survey_id: str | None = None, email: str | None = None) -> Any:
    """The page body for ``/pesquisa?id=...&email=...`` (the e-mail may come from an invitation link)."""
    try:
        session = SurveySession(settings=settings, survey_id=survey_id or DEFAULT_SURVEY)
    except EngineError as exc:
        return pmui.Alert(object=exc.message, severity="error")
    page = SurveyPage(session)
    if email:
        page._email.value = email
        session.start(email)
    return page


def pesquisa_page(ctx: Any) -> Any:
    """``/pesquisa`` (public, no login): ``ctx`` is a ``dashboard.pages.base.PageContext``."""
    return survey_view(ctx.settings, survey_id=ctx.arg("id") or None, email=ctx.arg("email") or None)


def page_spec() -> Any:
    """The ``PageSpec`` of the public survey, for ``dashboard.pages.PAGES`` (``/pesquisa`` is already in
    ``dashboard.auth.PUBLIC_PAGES``)."""
    from dashboard.pages.base import PageSpec

    return PageSpec(
        slug="pesquisa",
        title="Pesquisa de satisfação",
        icon="poll",
        permission=None,
        factory=pesquisa_page,
        nav=False,
        public=True,
    )
