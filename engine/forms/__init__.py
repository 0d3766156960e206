"""Forms declared once: the registry of every form, and the four shipped ones.

    from engine import forms
    form = forms.get_form("clientes")
    status, errors = form.check_partial(data)     # what a draft may hold
    values = form.clean(data)                     # everything, for submission

A form's schema changes bump ``schema_version``; a function registered with ``@migration(slug, from_version)``
brings data of that version one step forward. Drafts of an older version without a path are shown read-only.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from engine.errors import NotFound
from engine.forms.types import FIELD_STATUSES, Field, Form, Step, flatten, get_path, unflatten

__all__ = [
    "FIELD_STATUSES",
    "Field",
    "Form",
    "Step",
    "all_forms",
    "flatten",
    "get_form",
    "get_path",
    "migration",
    "register_form",
    "require_form",
    "unflatten",
    "unregister_form",
]

_forms: dict[str, Form] = {}


def register_form(form: Form) -> Form:
    _forms[form.slug] = form
    return form


def unregister_form(slug: str) -> None:
    _forms.pop(slug, None)


def get_form(slug: str) -> Form | None:
    _load_builtin()
    return _forms.get(slug)


def require_form(slug: str) -> Form:
    form = get_form(slug)
    if form is None:
        known = ", ".join(sorted(_forms))
        raise NotFound(
            f"Formulário {slug!r} não existe (disponíveis: {known}).", entity="form", key=str(slug)
        )
    return form


def all_forms(*, public: bool | None = None) -> list[Form]:
    _load_builtin()
    return [f for f in _forms.values() if public is None or f.public == public]


Migration = Callable[[dict[str, Any]], dict[str, Any]]


def migration(slug: str, from_version: int) -> Callable[[Migration], Migration]:
    """Register ``fn(data) -> data`` bringing ``slug`` drafts from ``from_version`` to the next version."""

    def register(fn: Migration) -> Migration:
        form = _forms.get(slug)
        if form is None:
            raise LookupError(f"form {slug!r} is not registered")
        form.migrations[from_version] = fn
        return fn

    return register


_loaded = False
_load_lock = threading.Lock()


def _load_builtin() -> None:
    global _loaded
    if _loaded:
        return
    with _load_lock:  # web threads may ask for a form at the same moment on first use
        if _loaded:
            return
        from engine.forms import clientes, financeiro, pesquisa, processos

        for module in (clientes, processos, financeiro, pesquisa):
            _forms.setdefault(module.FORM.slug, module.FORM)
        _loaded = True
