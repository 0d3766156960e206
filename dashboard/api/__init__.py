"""The REST API under ``/api/v1``.

Each capability declares its endpoints in a module of this package with ``dashboard.api.base.endpoint``;
registering the module is one line in ``MODULES``. ``routes(settings)`` imports them and returns the Tornado
routes that ``panel_serve`` mounts; the OpenAPI document at ``/api/v1/openapi.json`` comes from the same
declarations.
"""

from __future__ import annotations

import importlib
from typing import Any

from tornado.web import RequestHandler

from engine.settings import Settings

MODULES = [
    "dashboard.api.openapi",
    "dashboard.api.account",
    "dashboard.api.jobs",
    "dashboard.api.drafts",
    "dashboard.api.processos",
    "dashboard.api.webhooks",
    "dashboard.api.imports",
]


def load_modules() -> None:
    for name in MODULES:
        importlib.import_module(name)


def routes(settings: Settings) -> list[tuple[str, type[RequestHandler], dict[str, Any]]]:
    """Tornado routes of every declared endpoint, then the JSON 404 for the rest of ``/api/v1``."""
    from dashboard.api.base import build_routes, registry

    load_modules()
    return build_routes(settings, registry)
