"""The REST API's one mechanism: endpoints declared once, Tornado routes and OpenAPI generated from them.

A capability declares its endpoints in its own module (``dashboard/api/jobs.py``...) with the registry's
decorator; the function receives a ``Call`` (settings, authenticated user, parsed parameters and body, a
lazily opened database session) and returns a JSON-able value or a ``Reply``::

    JOB = registry.schema("Job", {"type": "object", ...})

    @registry.endpoint(
        "GET", "/api/v1/jobs/{id}", summary="Detalhes de um job", permission="jobs.view",
        params=[path("id", "integer", "Id do job", minimum=1)], returns=Returns(200, JOB),
        errors=[NotFound], tags=["jobs"],
    )
    def get_job(call: Call) -> dict: ...

What the handler does for every request, in order: request id and metrics (``dashboard.web``), method
check (405), declared body size (413, before the body is read when ``Content-Length`` says so), then in a
worker thread with its own ``session_scope``: bearer token (401), endpoint permission (403), path and query
parameters (422, unknown query parameters included), JSON body (415 wrong type, 400 malformed, 422 schema),
the endpoint function, commit. Every failure becomes ``{"error": CODE, "detail": ...}`` through
``dashboard.web.error_reply``.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any

import orjson
from sqlalchemy.orm import Session
from tornado.httputil import HTTPHeaders
from tornado.web import RequestHandler, stream_request_body

from dashboard.web import (
    MethodNotAllowed,
    ObservedHandler,
    UnsupportedMediaType,
    dump_json,
    run_blocking,
)
from engine import audit
from engine.accounts import cached_user_for_token, user_for_token
from engine.db import get_engine, session_scope
from engine.errors import (
    NUL_CHARACTER,
    AuthenticationFailed,
    BadRequest,
    EngineError,
    NotFound,
    PayloadTooLarge,
    ValidationFailed,
)
from engine.models import User
from engine.security import TOKEN_PREFIX, require
from engine.settings import Settings

JSON = dict[str, Any]
API_PREFIX = "/api/v1"
MAX_BODY_BYTES = 1024 * 1024
DRAIN_LIMIT_BYTES = 16 * 1024 * 1024
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
PARAM_TYPES = ("integer", "number", "string", "boolean", "date-time")
INT32_MAX = 2**31 - 1
MAX_TOKEN_LENGTH = 256
_TEMPLATE_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_TOO_BIG, _TOO_BIG_FIX = "Número grande demais no JSON", "envie-o como texto ou com menos dígitos."
# A run of 19 digits: an integer orjson may not hold (or text with such a run: reread too). Found by mapping
# every digit to 1 and the rest to 0 (C speed, a tenth of a regular expression's search).
_DIGIT_MAP = bytes(1 if 0x30 <= b <= 0x39 else 0 for b in range(256))
_LONG_DIGITS = b"\x01" * 19


# Declarations ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Param:
    """A path or query parameter with its type and bounds; ``parse`` turns the raw text into a value."""

    name: str
    location: str
    type: str = "string"
    description: str = ""
    required: bool = False
    default: Any = None
    enum: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    max_length: int = 200

    def __post_init__(self) -> None:
        if self.location not in ("path", "query"):
            raise ValueError(f"parameter {self.name}: location must be path or query")
        if self.type not in PARAM_TYPES:
            raise ValueError(f"parameter {self.name}: type must be one of {PARAM_TYPES}")

    def schema(self) -> JSON:
        if self.type == "date-time":
            schema: JSON = {"type": "string", "format": "date-time"}
        elif self.type == "integer":
            schema = {"type": "integer", "minimum": self.minimum if self.minimum is not None else -INT32_MAX - 1,
                      "maximum": self.maximum if self.maximum is not None else INT32_MAX}
        else:
            schema = {"type": self.type}
            if self.type == "number":
                schema.update({k: v for k, v in (("minimum", self.minimum), ("maximum", self.maximum))
                               if v is not None})
        if self.type == "string":
            schema["maxLength"] = self.max_length
        if self.enum is not None:
            schema["enum"] = list(self.enum)
        if self.default is not None:
            schema["default"] = self.default
        return schema

    def parse(self, raw: str) -> Any:
        """The typed value of ``raw``; ``ValueError`` with a message for a person otherwise."""
        if self.type == "integer":
            if not re.fullmatch(r"[+-]?[0-9]{1,12}", raw.strip()):
                raise ValueError("esperado um número inteiro")
            value: Any = int(raw)
        elif self.type == "number":
            try:
                value = float(raw)
            except ValueError:
                raise ValueError("esperado um número") from None
            if value != value or value in (float("inf"), float("-inf")):
                raise ValueError("esperado um número finito")
        elif self.type == "boolean":
            lowered = raw.strip().lower()
            if lowered not in ("true", "false", "1", "0"):
                raise ValueError("esperado true ou false")
            value = lowered in ("true", "1")
        elif self.type == "date-time":
            value = parse_datetime(raw)
        else:
            value = raw
            if len(value) > self.max_length:
                raise ValueError(f"no máximo {self.max_length} caracteres")
        if self.enum is not None and value not in self.enum:
            raise ValueError(f"use um de: {', '.join(self.enum)}")
        bounds = self.schema()
        if "minimum" in bounds and value < bounds["minimum"]:
            raise ValueError(f"mínimo {bounds['minimum']}")
        if "maximum" in bounds and value > bounds["maximum"]:
            raise ValueError(f"máximo {bounds['maximum']}")
        return value


def path(name: str, type: str = "integer", description: str = "", **options: Any) -> Param:
    return Param(name, "path", type, description, required=True, **options)


def query(name: str, type: str = "string", description: str = "", **options: Any) -> Param:
    return Param(name, "query", type, description, **options)


def parse_datetime(raw: str) -> datetime:
    """ISO 8601 date or date-time; values without an offset are taken as UTC."""
    text = raw.strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            value = datetime.combine(date.fromisoformat(text), time.min)
        else:
            value = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError("esperada data ISO 8601, ex.: 2025-01-31 ou 2025-01-31T13:00:00-03:00") from None
    value = value if value.tzinfo else value.replace(tzinfo=UTC)
    try:
        value.astimezone(UTC)  # 9999-12-31T23:59-23:59 is past the last moment a datetime holds, in UTC
    except OverflowError:
        raise ValueError("data fora do intervalo (de 0001-01-02 a 9999-12-30)") from None
    return value


@dataclass(frozen=True)
class Body:
    """A JSON request body: a JSON Schema (2020-12) or the name of a registered schema."""

    schema: JSON | str
    description: str = ""
    required: bool = True


@dataclass(frozen=True)
class Returns:
    """The success answer: status and schema (a registered name, an inline schema, or None for no body)."""

    status: int = 200
    schema: JSON | str | None = None
    description: str = "OK"
    headers: Mapping[str, str] = field(default_factory=dict)  # name -> description, for the document


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    func: Callable[[Call], Any]
    summary: str
    description: str = ""
    permission: str | None = None
    public: bool = False
    params: tuple[Param, ...] = ()
    body: Body | None = None
    returns: Returns = field(default_factory=Returns)
    errors: tuple[type[EngineError], ...] = ()
    tags: tuple[str, ...] = ()
    operation_id: str = ""
    max_body: int = MAX_BODY_BYTES

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)


@dataclass
class Reply:
    """An answer with a status or headers other than the declared defaults."""

    body: Any = None
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)


class Registry:
    """Endpoints and the named schemas they use. ``registry`` below is the application's."""

    def __init__(self) -> None:
        self.endpoints: list[Endpoint] = []
        self.schemas: dict[str, JSON] = {}
        self._validators: dict[str, Any] = {}
        self._validators_lock = threading.Lock()

    def schema(self, name: str, definition: JSON) -> str:
        """Register a component schema (referred to as ``#/components/schemas/NAME``); returns the name."""
        if name in self.schemas and self.schemas[name] != definition:
            raise ValueError(f"schema {name!r} is already registered with another definition")
        self.schemas[name] = definition
        with self._validators_lock:
            self._validators.clear()  # compiled again on next use, against every schema known by then
        return name

    def validator(self, name: str) -> Any:
        """The JSON Schema validator of the registered schema ``name``, compiled once and then shared
        (validators are immutable, so worker threads may use one at the same time)."""
        validator = self._validators.get(name)
        if validator is None:
            validator = _compile_validator({"$ref": f"#/components/schemas/{name}"}, self)
            with self._validators_lock:
                self._validators[name] = validator
        return validator

    def endpoint(self, method: str, path: str, *, summary: str, description: str = "",
                 permission: str | None = None, public: bool = False, params: Iterable[Param] = (),
                 body: Body | None = None, returns: Returns | None = None,
                 errors: Iterable[type[EngineError]] = (), tags: Iterable[str] = (), operation_id: str = "",
                 max_body: int = MAX_BODY_BYTES) -> Callable[[Callable[[Call], Any]], Callable[[Call], Any]]:
        def register(func: Callable[[Call], Any]) -> Callable[[Call], Any]:
            self.add(Endpoint(method=method.upper(), path=path, func=func, summary=summary,
                              description=description, permission=permission, public=public,
                              params=tuple(params), body=body, returns=returns or Returns(),
                              errors=tuple(errors), tags=tuple(tags),
                              operation_id=operation_id or func.__name__, max_body=max_body))
            return func

        return register

    def add(self, endpoint: Endpoint) -> None:
        where = f"{endpoint.method} {endpoint.path}"
        if endpoint.method not in METHODS:
            raise ValueError(f"{where}: method must be one of {METHODS}")
        if not (endpoint.path == API_PREFIX or endpoint.path.startswith(API_PREFIX + "/")):
            raise ValueError(f"{where}: API paths start with {API_PREFIX}/")
        if endpoint.path.endswith("/"):
            raise ValueError(f"{where}: no trailing slash")
        names = _TEMPLATE_PARAM.findall(endpoint.path)
        declared = [p.name for p in endpoint.params if p.location == "path"]
        if sorted(names) != sorted(declared):
            raise ValueError(f"{where}: path parameters {names} must be declared exactly (declared {declared})")
        if len({p.name for p in endpoint.params}) != len(endpoint.params):
            raise ValueError(f"{where}: a parameter is declared twice")
        for existing in self.endpoints:
            if (existing.method, _shape(existing.path)) == (endpoint.method, _shape(endpoint.path)):
                raise ValueError(f"{where}: already declared as {existing.path}")
            if existing.operation_id == endpoint.operation_id:
                raise ValueError(f"{where}: operation id {endpoint.operation_id!r} is already used")
        for ref in (endpoint.returns.schema, endpoint.body.schema if endpoint.body else None):
            if isinstance(ref, str) and ref not in self.schemas:
                raise ValueError(f"{where}: schema {ref!r} is not registered")
        self.endpoints.append(endpoint)

    def by_path(self) -> dict[str, dict[str, Endpoint]]:
        """Endpoints grouped by path template, literal segments ordered before parameters (so that
        ``/jobs/stats`` is matched before ``/jobs/{id}``)."""
        grouped: dict[str, dict[str, Endpoint]] = {}
        for ep in self.endpoints:
            grouped.setdefault(ep.path, {})[ep.method] = ep
        return dict(sorted(grouped.items(), key=lambda item: _route_order(item[0])))


def _shape(template: str) -> str:
    return _TEMPLATE_PARAM.sub("{}", template)


def _route_order(template: str) -> tuple[tuple[int, str], ...]:
    return tuple((1 if _TEMPLATE_PARAM.fullmatch(seg) else 0, seg) for seg in template.split("/"))


def template_to_pattern(template: str) -> str:
    """``/api/v1/jobs/{id}`` -> ``/api/v1/jobs/(?P<id>[^/]+)`` (Tornado anchors it at both ends)."""
    parts = _TEMPLATE_PARAM.split(template)
    out = []
    for i, part in enumerate(parts):
        out.append(f"(?P<{part}>[^/]+)" if i % 2 else re.escape(part))
    return "".join(out)


registry = Registry()
DEFAULT_REGISTRY = registry
endpoint = registry.endpoint
schema = registry.schema


# Running a call -----------------------------------------------------------------------------------------

@dataclass
class Call:
    """What an endpoint function receives. ``session`` opens on first use and commits when the function
    returned without error (rolls back otherwise)."""

    endpoint: Endpoint
    settings: Settings
    registry: Registry
    request_id: str
    headers: HTTPHeaders
    params: dict[str, Any] = field(default_factory=dict)
    body: Any = None
    user: User | None = None
    _stack: ExitStack = field(default_factory=ExitStack, repr=False)
    _session: Session | None = field(default=None, repr=False)

    @property
    def session(self) -> Session:
        if self._session is None:
            self._session = self._stack.enter_context(session_scope(self.settings))
        return self._session

    @property
    def session_on_demand(self) -> Session:
        """``session`` for work that may need no database at all (a draft kept in Redis, audited by the group
        writer): opened on first use, not before; see ``SessionOnDemand``."""
        return self._session if self._session is not None else SessionOnDemand(self)  # type: ignore[return-value]

    @property
    def actor(self) -> User:
        if self.user is None:
            raise AuthenticationFailed("Este endpoint exige um usuário autenticado.")
        return self.user


class SessionOnDemand:
    """Stands for the call's session until something uses it, which then opens it (``Call.session``: committed
    with the call). ``get_bind()`` names the database without opening one. A save that only touches Redis
    then costs no session at all (bench/drafts.py: with the Prometheus series cached too, about 60 us less
    server CPU per save)."""

    def __init__(self, call: Call) -> None:
        self._call = call

    def get_bind(self, *args: Any, **kwargs: Any) -> Any:
        opened = self._call._session
        return opened.get_bind(*args, **kwargs) if opened is not None else get_engine(self._call.settings)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._call.session, name)


@dataclass
class Request:
    """The parts of an HTTP request the API looks at (kept apart from Tornado so calls can run in a thread)."""

    method: str
    path_args: Mapping[str, str]
    query: Mapping[str, list[bytes]]
    headers: HTTPHeaders
    body: bytes
    request_id: str


def bearer_token(headers: HTTPHeaders) -> str:
    raw = headers.get("Authorization") or ""
    scheme, _, token = raw.partition(" ")
    token = token.strip()
    if not raw:
        raise AuthenticationFailed(f"Informe um token de API no cabeçalho 'Authorization: Bearer {TOKEN_PREFIX}...'.")
    if scheme.lower() != "bearer" or not token or len(token) > MAX_TOKEN_LENGTH:
        raise AuthenticationFailed("Cabeçalho Authorization inválido; use 'Bearer <token>'.")
    return token


def parse_params(ep: Endpoint, path_args: Mapping[str, str], query: Mapping[str, list[bytes]]) -> dict[str, Any]:
    errors: list[dict[str, str]] = []
    values: dict[str, Any] = {}
    for name in query:
        param = ep.param(name)
        if param is None or param.location != "query":
            known = ", ".join(p.name for p in ep.params if p.location == "query") or "nenhum"
            errors.append({"field": name, "message": f"parâmetro desconhecido (aceitos: {known})"})
    for param in ep.params:
        if param.location == "path":
            raw: str | None = path_args.get(param.name)
        else:
            given = query.get(param.name, [])
            if len(given) > 1:
                errors.append({"field": param.name, "message": "informe um único valor"})
                continue
            try:
                raw = given[0].decode("utf-8") if given else None
            except UnicodeDecodeError:
                errors.append({"field": param.name, "message": "texto UTF-8 inválido"})
                continue
        if raw is not None and "\x00" in raw:  # the database would fail on it: a 500, not a miss
            errors.append({"field": param.name, "message": NUL_CHARACTER})
            continue
        if raw is None or (raw == "" and param.location == "query"):
            if param.required:
                errors.append({"field": param.name, "message": "obrigatório"})
            else:
                values[param.name] = param.default
            continue
        try:
            values[param.name] = param.parse(raw)
        except ValueError as exc:
            errors.append({"field": param.name, "message": str(exc)})
    if errors:
        summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        raise ValidationFailed(f"Parâmetros inválidos — {summary}.", errors=errors)
    return values


def parse_body(ep: Endpoint, registry: Registry, headers: HTTPHeaders, raw: bytes) -> Any:
    """The request's JSON body, validated against the endpoint's schema. Endpoints without a declared body
    accept an empty body or ``{}`` only, so a client never believes an ignored field was applied."""
    if not raw.strip():
        if ep.body is not None and ep.body.required:
            raise BadRequest("Corpo JSON obrigatório neste endpoint.")
        return None
    content_type = (headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
    if content_type != "application/json" and not content_type.endswith("+json"):
        raise UnsupportedMediaType("Envie o corpo como JSON ('Content-Type: application/json').",
                                   content_type=content_type)
    try:
        value = orjson.loads(raw)  # strict JSON: no NaN/Infinity, no lone surrogates, UTF-8 only
    except orjson.JSONDecodeError as exc:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest("Corpo não está em UTF-8.") from None
        if str(exc).startswith("number is infinity"):  # valid JSON, a number no float holds (1e400)
            raise BadRequest(f"{_TOO_BIG} ({str(exc)[:200]}); {_TOO_BIG_FIX}") from None
        raise BadRequest(f"JSON malformado: {str(exc)[:200]}") from None
    if _LONG_DIGITS in raw.translate(_DIGIT_MAP):
        # orjson reads an integer beyond 64 bits as a float, which would store another number than the one
        # sent; the standard parser reads it exactly (what else it would accept, orjson refused above).
        try:
            value = json.loads(raw)
        except ValueError:  # more digits than Python converts (4,300)
            raise BadRequest(f"{_TOO_BIG}; {_TOO_BIG_FIX}") from None
        except RecursionError:
            raise BadRequest("JSON aninhado demais; use menos níveis de objetos e listas.") from None
    if b"u0000" in raw and (where := _nul_path(value)) is not None:
        raise ValidationFailed(
            f"Corpo inválido — {where or '(raiz)'}: {NUL_CHARACTER}, que não pode ser guardado; remova-o e "
            "envie de novo.",
            errors=[{"field": where, "message": NUL_CHARACTER}])
    if ep.body is None:
        if value in ({}, None):
            return None
        raise BadRequest("Este endpoint não aceita corpo na requisição.")
    errors = validate_schema(value, ep.body.schema, registry)
    if errors:
        summary = "; ".join(f"{e['field'] or '(raiz)'}: {e['message']}" for e in errors[:5])
        raise ValidationFailed(f"Corpo inválido — {summary}.", errors=errors)
    return value


def _nul_path(value: Any, path: str = "") -> str | None:
    """Where in a parsed body a NUL character is (``a/0/b``; a key counts as its own place), or None:
    such a body would fail in the database only once half of it was stored."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            here = f"{path}/{key}" if path else str(key)
            if "\x00" in key or (here := _nul_path(item, here)) is not None:
                return here
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if (here := _nul_path(item, f"{path}/{i}" if path else str(i))) is not None:
                return here
    return None


_REF = "#/components/schemas/"


def _inline_refs(node: Any, schemas: Mapping[str, JSON], seen: tuple[str, ...] = ()) -> Any:
    """``node`` with every ``{"$ref": "#/components/schemas/X"}`` replaced by X itself (a ref that would
    recurse is left in place). Resolving refs is most of jsonschema's time on our bodies; the errors and
    their paths are the same."""
    if isinstance(node, list):
        return [_inline_refs(item, schemas, seen) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith(_REF) and len(node) == 1:
        name = ref[len(_REF):]
        if name in schemas and name not in seen:
            return _inline_refs(schemas[name], schemas, (*seen, name))
        return node
    return {key: _inline_refs(value, schemas, seen) for key, value in node.items()}


# Keywords that mean the same in JSON Schema 2020-12 (jsonschema, the reference) and in draft-07 as
# fastjsonschema generates it. Not here, so never on the fast path: format (fastjsonschema's date-time
# accepts month 19), enum/const of non-strings (it has True == 1), $ref, combinators, tuple ``items``.
_FAST_KEYWORDS = frozenset({
    "type", "properties", "required", "additionalProperties", "items", "minItems", "maxItems",
    "minLength", "maxLength", "pattern", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
    "enum", "const", "description", "title", "default", "examples", "deprecated", "readOnly", "writeOnly",
})


def _fast_safe(node: Any) -> bool:
    if isinstance(node, bool):
        return True
    if not isinstance(node, dict) or not set(node) <= _FAST_KEYWORDS:
        return False
    if "enum" in node and not all(isinstance(v, str) for v in node["enum"]):
        return False
    if "const" in node and not isinstance(node["const"], str):
        return False
    if not all(_fast_safe(sub) for sub in node.get("properties", {}).values()):
        return False
    return all(_fast_safe(node[k]) for k in ("additionalProperties", "items") if k in node)


class SchemaValidator:
    """jsonschema's Draft 2020-12 validator (the errors the API reports), behind a code-generated check
    (fastjsonschema) that answers "valid" about ten times faster when the schema only uses keywords that mean
    the same in both. A body the fast check refuses goes to jsonschema, whose verdict and messages stand."""

    def __init__(self, schema: JSON, registry: Registry) -> None:
        import fastjsonschema
        from jsonschema import Draft202012Validator

        inlined = _inline_refs(schema, registry.schemas)
        root: JSON = {**inlined, "components": {"schemas": registry.schemas}}
        self.reference = Draft202012Validator(root, format_checker=Draft202012Validator.FORMAT_CHECKER)
        self._fast = (fastjsonschema.compile(inlined, use_default=False, use_formats=False)
                      if _fast_safe(inlined) else None)
        self._refused = fastjsonschema.JsonSchemaException

    def iter_errors(self, value: Any) -> Iterator[Any]:
        if self._fast is not None:
            try:
                self._fast(value)
            except self._refused:
                pass
            else:
                return iter(())
        return self.reference.iter_errors(value)


def _compile_validator(schema: JSON, registry: Registry) -> SchemaValidator:
    return SchemaValidator(schema, registry)


def validate_schema(value: Any, schema_or_name: JSON | str, registry: Registry) -> list[dict[str, str]]:
    """Errors of ``value`` against a JSON Schema 2020-12 (``#/components/schemas/...`` refs resolve). A
    registered schema's validator is compiled once per registry; an inline schema's on each call."""
    validator = (registry.validator(schema_or_name) if isinstance(schema_or_name, str)
                 else _compile_validator(schema_or_name, registry))
    return [{"field": "/".join(str(p) for p in err.absolute_path), "message": err.message[:300]}
            for err in sorted(validator.iter_errors(value), key=lambda e: list(map(str, e.absolute_path)))]


def execute(ep: Endpoint, request: Request, *, settings: Settings, registry: Registry,
            on_user: Callable[[int], None] = lambda _uid: None,
            audit_waits: list[Future[None]] | None = None) -> tuple[int, bytes | None, dict[str, str]]:
    """Run one API call to its end (blocking): auth, permission, parsing, the function, commit.
    Returns (status, JSON bytes or None, headers). With ``audit_waits``, audit rows written outside the
    call's transaction (``audit.write_committed``) are not waited for here: their commit futures are added
    to the list, and the caller must wait for them before answering."""
    call = Call(endpoint=ep, settings=settings, registry=registry, request_id=request.request_id,
                headers=request.headers)
    with call._stack:
        if audit_waits is not None:
            call._stack.enter_context(audit.deferred_commits(audit_waits))
        if not ep.public:
            token = bearer_token(request.headers)
            cache = settings.api_token_cache_seconds
            call.user = (cache > 0 and cached_user_for_token(token)) or user_for_token(
                call.session, token=token, cache_seconds=cache)
            on_user(call.user.id)
            if ep.permission:
                require(call.user, ep.permission)
        call.params = parse_params(ep, request.path_args, request.query)
        call.body = parse_body(ep, registry, request.headers, request.body)
        result = ep.func(call)
        reply = result if isinstance(result, Reply) else Reply(result)
        status = reply.status or ep.returns.status
        if status == 204 or (reply.body is None and ep.returns.schema is None):
            payload = None
        else:
            payload = dump_json(reply.body)
    return status, payload, reply.headers


# Tornado handlers ---------------------------------------------------------------------------------------

@stream_request_body
class ApiHandler(ObservedHandler):
    """Serves every endpoint declared for one path template (one route per template, dispatch by method)."""

    endpoints: dict[str, Endpoint]
    registry: Registry

    def initialize(self, *, config: Settings, route: str | None = None,
                   endpoints: dict[str, Endpoint] | None = None, registry: Registry | None = None,
                   **_: Any) -> None:
        super().initialize(config=config, route=route)
        self.endpoints = endpoints or {}
        self.registry = registry if registry is not None else DEFAULT_REGISTRY
        self._body = bytearray()
        self._too_large = False

    # Bearer tokens cannot be sent by a browser on its own, so cookie/origin CSRF checks do not apply.
    def check_xsrf_cookie(self) -> None:
        return None

    def check_trusted_origin(self, origin: str) -> bool:
        return True

    @property
    def ep(self) -> Endpoint:
        ep = self.endpoints.get(self.request.method or "")
        if ep is None:
            allowed = sorted(self.endpoints)
            raise MethodNotAllowed(f"Método {self.request.method} não aceito em {self.route}; use "
                                   f"{', '.join(allowed)}.", allow=allowed)
        return ep

    def prepare(self) -> Any:
        super().prepare()
        ep = self.ep
        length = self.request.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > ep.max_body:
            self._too_large = True
            # A client that is still uploading sees a reset, not our answer, if we reply and close at once:
            # bodies a little over the limit are read and dropped so the 413 arrives; huge ones are refused
            # before a byte of them is read.
            if int(length) > ep.max_body + DRAIN_LIMIT_BYTES:
                self._too_large_error(int(length))
        return None

    def _too_large_error(self, size: int | None) -> None:
        limit = self.ep.max_body
        shown = f"{limit // 1024} KiB" if limit % 1024 == 0 else f"{limit} bytes"
        raise PayloadTooLarge(f"Corpo maior que o limite de {shown} deste endpoint.",
                              size=size, limit=limit)

    def data_received(self, chunk: bytes) -> None:
        if self._too_large:
            return  # drain and drop: memory stays bounded whatever the client sends
        if len(self._body) + len(chunk) > self.ep.max_body:
            self._too_large = True
            self._body = bytearray()
            return
        self._body.extend(chunk)

    async def _dispatch(self, **path_args: str) -> None:
        ep = self.ep
        if self._too_large:
            length = self.request.headers.get("Content-Length", "")
            self._too_large_error(int(length) if length.isdigit() else None)
        request = Request(method=ep.method, path_args=path_args, query=self.request.query_arguments,
                          headers=self.request.headers, body=bytes(self._body), request_id=self.request_id)

        def remember_user(user_id: int) -> None:
            self.user_id = user_id

        audit_waits: list[Future[None]] = []
        # The answer leaves only once the audit rows are committed.
        status, payload, headers = await run_blocking(
            lambda: execute(ep, request, settings=self.config, registry=self.registry, on_user=remember_user,
                            audit_waits=audit_waits),
            pool="api", workers=max(4, self.config.web_threads * 2), waits=audit_waits,
            waits_timeout=audit.WRITE_TIMEOUT_SECONDS)
        self.set_status(status)
        for name, value in headers.items():
            self.set_header(name, value)
        if payload is None:
            self.finish()
            return
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(payload)

    async def get(self, **path_args: str) -> None:
        await self._dispatch(**path_args)

    async def post(self, **path_args: str) -> None:
        await self._dispatch(**path_args)

    async def put(self, **path_args: str) -> None:
        await self._dispatch(**path_args)

    async def patch(self, **path_args: str) -> None:
        await self._dispatch(**path_args)

    async def delete(self, **path_args: str) -> None:
        await self._dispatch(**path_args)


class ApiNotFoundHandler(ObservedHandler):
    """Anything under /api/v1 that no endpoint declares: 404 in the API's JSON shape."""

    def check_xsrf_cookie(self) -> None:
        return None

    def check_trusted_origin(self, origin: str) -> bool:
        return True

    def prepare(self) -> Any:
        super().prepare()
        raise NotFound(f"Rota da API inexistente: {self.request.method} {self.request.path}. "
                       f"Veja {API_PREFIX}/openapi.json.", entity="route", key=self.request.path)


def build_routes(settings: Settings, reg: Registry) -> list[tuple[str, type[RequestHandler], dict[str, Any]]]:
    """Tornado routes for every endpoint of ``reg``, then the JSON 404 for the rest of /api/v1."""
    routes: list[tuple[str, type[RequestHandler], dict[str, Any]]] = [
        (template_to_pattern(template), ApiHandler,
         {"config": settings, "route": template, "endpoints": endpoints, "registry": reg})
        for template, endpoints in reg.by_path().items()
    ]
    routes.append((re.escape(API_PREFIX) + r"(?:/.*)?", ApiNotFoundHandler,
                   {"config": settings, "route": "unmatched"}))
    return routes
