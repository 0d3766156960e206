"""Request-body validation: the code-generated fast check may only answer "valid" where the reference
validator (jsonschema, Draft 2020-12) does, on every registered body schema and a corpus of awkward values."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from dashboard.api import load_modules
from dashboard.api.base import DEFAULT_REGISTRY, SchemaValidator, _fast_safe, _inline_refs, validate_schema

load_modules()  # every endpoint and schema

AWKWARD: list[Any] = [
    None, True, False, 0, 1, -1, 2, 1.0, 0.5, -0.0, 2**70, -(2**70), 1e308,
    "", " ", "a", "abc\n", "0", "1", "true", "null", "ä" * 61, "x" * 5000, "novo-3f2a", "a b", "\u0000",
    "https://exemplo.com.br/h", "http://127.0.0.1/x", "2024-02-31T10:00:00Z",
    [], [1], ["a"], [None], {}, {"a": 1}, {"data": {}}, {"": None},
]


def _body_schemas() -> list[str]:
    names = {ep.body.schema for ep in DEFAULT_REGISTRY.endpoints
             if ep.body is not None and isinstance(ep.body.schema, str)}
    return sorted(names)


def _candidates(schema: Any, depth: int = 0) -> list[Any]:
    """Objects built from the schema's own properties, each set to every awkward value (nested objects one
    level down too), plus the awkward values themselves."""
    out: list[Any] = list(AWKWARD)
    if not isinstance(schema, dict):
        return out
    props: dict[str, Any] = schema.get("properties", {})
    required = list(schema.get("required", []))
    base: dict[str, Any] = {}
    for name in required:
        sub = props.get(name, {})
        base[name] = _plausible(sub)
    out.append(dict(base))
    for name, sub in props.items():
        values = AWKWARD + ([v for v in _candidates(sub, depth + 1) if isinstance(v, dict)] if depth < 1 else [])
        for value in values:
            out.append({**base, name: value})
    out.append({**base, "campo_extra": 1})
    if isinstance(schema.get("additionalProperties"), dict):
        out.extend({**base, "chave": value} for value in AWKWARD)
    return out


def _plausible(schema: Any) -> Any:
    kind = schema.get("type") if isinstance(schema, dict) else None
    kind = kind[0] if isinstance(kind, list) else kind
    if "enum" in schema:
        return schema["enum"][0]
    return {"string": "abc", "integer": 1, "number": 1, "boolean": True, "array": [], "object": {},
            None: "abc"}.get(kind, "abc")


@pytest.mark.parametrize("name", _body_schemas())
def test_fast_check_never_accepts_what_the_reference_refuses(name: str) -> None:
    validator = DEFAULT_REGISTRY.validator(name)
    assert isinstance(validator, SchemaValidator)
    inlined = _inline_refs(DEFAULT_REGISTRY.schemas[name], DEFAULT_REGISTRY.schemas)
    cases = _candidates(inlined)
    accepted = 0
    for value in cases:
        fast_ok = list(validator.iter_errors(value)) == []
        reference_ok = list(validator.reference.iter_errors(value)) == []
        assert fast_ok == reference_ok, (name, value)
        accepted += reference_ok
    if _fast_safe(inlined):
        assert validator._fast is not None
    assert len(cases) > len(AWKWARD) + 10 and accepted > 0, (name, len(cases), accepted)


def test_the_draft_save_body_takes_the_fast_path_and_keeps_the_reference_messages() -> None:
    validator = DEFAULT_REGISTRY.validator("DraftSave")
    assert validator._fast is not None  # the hot path: a save per keystroke pause
    good = {"form_slug": "clientes", "object_id": "novo-1", "payload": {"data": {"cnpj": "1"}, "step": 0},
            "version": 0}
    assert validate_schema(good, "DraftSave", DEFAULT_REGISTRY) == []
    for bad, field in (({**good, "version": True}, "version"), ({**good, "version": -1}, "version"),
                       ({**good, "object_id": "a/b"}, "object_id"), ({**good, "extra": 1}, ""),
                       ({**good, "payload": {"data": {}, "step": 1.5}}, "payload/step")):
        errors = validate_schema(bad, "DraftSave", DEFAULT_REGISTRY)
        assert errors and errors[0]["field"] == field, (bad, errors)


def test_schemas_using_keywords_that_differ_between_drafts_stay_on_the_reference_validator() -> None:
    for schema in ({"type": "string", "format": "date-time"}, {"enum": [1, 2]}, {"const": True},
                   {"anyOf": [{"type": "string"}]}, {"items": [{"type": "string"}]},
                   {"type": "object", "properties": {"when": {"type": "string", "format": "date-time"}}}):
        assert not _fast_safe(schema), schema
    validator = SchemaValidator({"type": "object", "properties": {"n": {"enum": [1]}}}, DEFAULT_REGISTRY)
    assert validator._fast is None
    assert list(validator.iter_errors({"n": True}))  # jsonschema: True is not 1


def test_integer_and_boolean_edges_agree_on_every_fast_schema() -> None:
    fast = [n for n in _body_schemas() if DEFAULT_REGISTRY.validator(n)._fast is not None]
    assert "DraftSave" in fast and len(fast) >= 4
    schema = {"type": "object", "properties": {"i": {"type": "integer", "minimum": 0, "maximum": 3},
                                                "s": {"type": ["string", "null"], "maxLength": 2},
                                                "b": {"type": "boolean"}, "n": {"type": "number"}},
              "additionalProperties": False}
    validator = SchemaValidator(schema, DEFAULT_REGISTRY)
    assert validator._fast is not None
    for i, s, b, n in itertools.product([0, 3, 4, -1, 1.0, True, "1", None], ["ab", "abc", None, 1, "çã"],
                                         [True, 0, None], [1, 1.5, True, "1"]):
        value = {"i": i, "s": s, "b": b, "n": n}
        assert (list(validator.iter_errors(value)) == []) == (list(validator.reference.iter_errors(value)) == []), value
