"""A Panel server with the forms pages only, for the browser tests of this package.

Run as ``python -m tests.forms.browser_app PORT`` with the test settings in the environment. The user of a
session is named by the ``u`` query argument (test-only: the real server takes it from the login); the
pages, view-models, browser component and engine services are the real ones.
"""

from __future__ import annotations

import sys

import panel as pn

from dashboard.pages.forms import MyDraftsPage, wizard_view
from dashboard.pages.survey import survey_view
from engine import accounts
from engine.db import session_scope
from engine.settings import Settings, set_settings


def main(port: int) -> None:
    settings = Settings.from_environ()
    set_settings(settings)
    pn.extension()

    def arg(name: str) -> str:
        values = pn.state.session_args.get(name) or [b""]
        return values[0].decode()

    def user():  # noqa: ANN202
        with session_scope(settings) as s:
            return accounts.get_user_by_email(s, email=arg("u"))

    def formularios():  # noqa: ANN202
        return wizard_view(settings, user(), form_slug=arg("form"), object_id=arg("objeto"))

    def rascunhos():  # noqa: ANN202
        return MyDraftsPage(settings=settings, user=user())

    def pesquisa():  # noqa: ANN202
        return survey_view(settings, survey_id=arg("id") or None, email=arg("email") or None)

    pn.serve(
        {"formularios": formularios, "rascunhos": rascunhos, "pesquisa": pesquisa},
        port=port,
        address="127.0.0.1",
        websocket_origin=[f"127.0.0.1:{port}"],
        show=False,
        num_threads=4,
        title="Oficina (teste)",
    )


if __name__ == "__main__":
    main(int(sys.argv[1]))
