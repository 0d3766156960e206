"""Drafts, form declarations and the public survey's progress over REST.

    POST   /api/v1/drafts/save      body {form_slug, object_id, payload: {data, step}, version}
    GET    /api/v1/drafts/load      ?form_slug=&object_id=
    DELETE /api/v1/drafts/clear     ?form_slug=&object_id=
    GET    /api/v1/drafts           the caller's drafts (admins: ?user_id= or ?everyone=true), never content
    GET    /api/v1/drafts/versions  durable versions of one draft;  POST /api/v1/drafts/restore
    POST   /api/v1/drafts/submit    validate everything and create the records
    GET    /api/v1/forms, /api/v1/forms/{slug}   the declarations every front end validates against
    GET/POST/DELETE /api/progress/  the public survey (no token), plus POST /api/progress/submit

Status codes come from the engine's errors: 413 size, 429 rate (with ``Retry-After``), 409 stale version
(the body carries ``current``, ``attempted``, ``theirs`` and ``mine``), 403 another user's draft, 404 none,
400 ``ALREADY_SUBMITTED`` for a survey already sent.
"""

from __future__ import annotations

from typing import Any

from dashboard.api.base import (
    API_PREFIX,
    Body,
    Call,
    Endpoint,
    Reply,
    Returns,
    endpoint,
    path,
    query,
    registry,
    schema,
)
from engine import drafts, forms, survey
from engine.db import MAX_ROW_ID
from engine.errors import (
    BadRequest,
    Conflict,
    IntegrityError,
    LimitExceeded,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    ValidationFailed,
)

OBJECT_ID_PATTERN = "^[A-Za-z0-9_-]{1,64}$"
SLUG = {"type": "string", "maxLength": 60}
STAMP = {"type": ["string", "null"], "format": "date-time"}
FIELD_ERRORS = {
    "type": "array",
    "items": {"type": "object", "properties": {"field": {"type": "string"}, "message": {"type": "string"}}},
}

PAYLOAD_IN = schema(
    "DraftPayloadIn",
    {
        "type": "object",
        "description": "O que o cliente envia: os dados como digitados e a etapa atual. `fields_status`, "
        "`timestamp` e `version` são calculados pelo servidor.",
        "required": ["data"],
        "properties": {
            "data": {
                "type": "object",
                "description": "valores por campo (nomes com ponto = objetos aninhados)",
            },
            "step": {"type": "integer", "minimum": 0, "default": 0},
            "schema_version": {
                "type": "integer",
                "minimum": 1,
                "description": "versão do formulário dos dados; antiga = migrada quando possível",
            },
            "fields_status": {"type": "object", "description": "ignorado (recalculado)"},
            "timestamp": {"description": "ignorado (definido pelo servidor)"},
            "version": {"description": "ignorado: use `version` do corpo"},
        },
        "additionalProperties": False,
    },
)

SAVE_BODY = schema(
    "DraftSave",
    {
        "type": "object",
        "required": ["form_slug", "object_id", "payload", "version"],
        "properties": {
            "form_slug": SLUG,
            "object_id": {
                "type": "string",
                "pattern": OBJECT_ID_PATTERN,
                "description": "o objeto editado (ex.: `novo-3f2a` para um cadastro novo)",
            },
            "payload": {"$ref": f"#/components/schemas/{PAYLOAD_IN}"},
            "version": {
                "type": "integer",
                "minimum": 0,
                "description": "versão em que a edição se baseia (0 = rascunho novo); outra = 409",
            },
            "user_id": {
                "type": "integer",
                "minimum": 1,
                "description": "dono do rascunho (padrão: quem chama); de outra pessoa = 403",
            },
        },
        "additionalProperties": False,
    },
)

PAYLOAD = schema(
    "DraftPayload",
    {
        "type": "object",
        "required": ["data", "fields_status", "step", "timestamp", "version", "schema_version"],
        "properties": {
            "data": {"type": "object"},
            "fields_status": {"type": "object", "additionalProperties": {"enum": list(forms.FIELD_STATUSES)}},
            "step": {"type": "integer", "minimum": 0},
            "timestamp": {"type": "number", "description": "segundos desde 1970 (UTC) do último salvamento"},
            "version": {"type": "integer", "minimum": 1},
            "schema_version": {"type": "integer", "minimum": 1},
        },
    },
)

METADATA = schema(
    "DraftMetadata",
    {
        "type": "object",
        "description": "Nunca traz o IP completo nem valores de campos.",
        "properties": {
            "ttl": {"type": "integer", "description": "segundos de vida desde o último salvamento"},
            "source": {"type": "string", "enum": list(drafts.SOURCES)},
            "user_agent": {"type": "string"},
            "ip_masked": {"type": "string", "description": "rede /24 (IPv4) ou /48 (IPv6)"},
        },
    },
)

DRAFT = schema(
    "Draft",
    {
        "type": "object",
        "required": ["key", "form_slug", "object_id", "payload", "metadata", "errors", "read_only"],
        "properties": {
            "key": {"type": "string", "description": "user_id:form_slug:object_id"},
            "form_slug": {"type": "string"},
            "object_id": {"type": "string"},
            "payload": {"$ref": f"#/components/schemas/{PAYLOAD}"},
            "metadata": {"$ref": f"#/components/schemas/{METADATA}"},
            "errors": {
                **FIELD_ERRORS,
                "description": "campos preenchidos mas inválidos (guardados mesmo assim)",
            },
            "expires_at": STAMP,
            "size": {"type": "integer", "description": "bytes do payload canônico"},
            "read_only": {
                "type": "boolean",
                "description": "versão antiga do formulário sem migração: somente leitura",
            },
            "migrated_from": {"type": ["integer", "null"]},
            "next_field": {"type": ["string", "null"], "description": "próximo campo a preencher"},
        },
    },
)

SUMMARY = schema(
    "DraftSummary",
    {
        "type": "object",
        "required": [
            "user_id",
            "form_slug",
            "form_title",
            "object_id",
            "step",
            "step_title",
            "version",
            "updated_at",
            "live",
        ],
        "properties": {
            "user_id": {"type": "integer"},
            "form_slug": {"type": "string"},
            "form_title": {"type": "string"},
            "object_id": {"type": "string"},
            "step": {"type": "integer"},
            "step_title": {"type": "string"},
            "version": {"type": "integer"},
            "updated_at": STAMP,
            "expires_at": STAMP,
            "source": {"type": "string"},
            "live": {
                "type": "boolean",
                "description": "false = expirado, mas com versão guardada para restaurar",
            },
        },
    },
)

SUMMARY_LIST = schema(
    "DraftSummaryList",
    {
        "type": "object",
        "required": ["items"],
        "properties": {"items": {"type": "array", "items": {"$ref": f"#/components/schemas/{SUMMARY}"}}},
    },
)

VERSION_LIST = schema(
    "DraftVersionList",
    {
        "type": "object",
        "required": ["items"],
        "properties": {
            "items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["id", "created_at", "reason", "step", "version"],
                    "properties": {
                        "id": {"type": "integer"},
                        "created_at": STAMP,
                        "reason": {
                            "type": "string",
                            "description": "first, step, interval, clear, undo, restore",
                        },
                        "step": {"type": "integer"},
                        "version": {"type": "integer"},
                        "filled": {"type": "integer", "description": "campos preenchidos"},
                    },
                },
            }
        },
    },
)

RESTORE_BODY = schema(
    "DraftRestore",
    {
        "type": "object",
        "required": ["form_slug", "object_id", "version_id", "version"],
        "properties": {
            "form_slug": SLUG,
            "object_id": {"type": "string", "pattern": OBJECT_ID_PATTERN},
            "version_id": {"type": "integer", "minimum": 1, "maximum": MAX_ROW_ID},
            "version": {"type": "integer", "minimum": 0, "description": "versão atual do rascunho"},
        },
        "additionalProperties": False,
    },
)

SUBMIT_BODY = schema(
    "DraftSubmit",
    {
        "type": "object",
        "required": ["form_slug", "object_id"],
        "properties": {
            "form_slug": SLUG,
            "object_id": {"type": "string", "pattern": OBJECT_ID_PATTERN},
            "data": {"type": "object", "description": "padrão: os dados do rascunho salvo"},
        },
        "additionalProperties": False,
    },
)

SUBMITTED = schema(
    "DraftSubmitted",
    {
        "type": "object",
        "required": ["form_slug", "records"],
        "properties": {
            "form_slug": {"type": "string"},
            "records": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"entity": {"type": "string"}, "id": {"type": "integer"}},
                },
            },
        },
    },
)

FORM = schema(
    "FormDeclaration",
    {
        "type": "object",
        "required": ["slug", "title", "schema_version", "steps"],
        "properties": {
            "slug": {"type": "string"},
            "title": {"type": "string"},
            "schema_version": {"type": "integer"},
            "public": {"type": "boolean"},
            "description": {"type": "string"},
            "steps": {"type": "array", "items": {"type": "object"}},
        },
    },
)

FORM_LIST = schema(
    "FormDeclarationList",
    {
        "type": "object",
        "required": ["items"],
        "properties": {"items": {"type": "array", "items": {"$ref": f"#/components/schemas/{FORM}"}}},
    },
)

_FORM_SLUG = query(
    "form_slug", "string", "Formulário (clientes, processos, financeiro)", required=True, max_length=60
)
_OBJECT_ID = query("object_id", "string", "Objeto editado", required=True, max_length=64)
_USER_ID = query(
    "user_id", "integer", "Dono do rascunho (padrão: quem chama); de outra pessoa = 403", minimum=1
)
_DRAFT_ERRORS = [NotFound, PermissionDenied, ValidationFailed, BadRequest]


def _client(call: Call) -> tuple[str, str]:
    """The caller's address and user agent (the address only as the engine masks it)."""
    ip = getattr(call, "remote_ip", "") or ""
    return ip, (call.headers.get("User-Agent") or "")[:200]


@endpoint(
    "POST",
    f"{API_PREFIX}/drafts/save",
    summary="Salva um rascunho (compare-and-swap)",
    tags=["rascunhos"],
    permission="drafts.save",
    description="Grava o rascunho do usuário em cima de `version` (0 para um novo). Dados parciais são "
    "validados só por tipo e tamanho: valores inválidos são guardados e marcados em "
    "`fields_status`. 409 quando outra aba ou dispositivo salvou antes (o corpo traz `current`, "
    "`attempted`, `theirs`, `mine` e os campos diferentes em `fields`); 413 acima de "
    "CHECKPOINT_MAX_PAYLOAD_KB (com `size` e `limit`); 429 acima de "
    "CHECKPOINT_RATE_LIMIT_PER_MINUTE, com `Retry-After`.",
    body=Body(SAVE_BODY),
    returns=Returns(200, DRAFT, "O rascunho na nova versão"),
    errors=[*_DRAFT_ERRORS, Conflict, PayloadTooLarge, LimitExceeded, IntegrityError],
)
def save_draft(call: Call) -> dict[str, Any]:
    body = call.body
    ip, user_agent = _client(call)
    payload = {k: v for k, v in body["payload"].items() if k in ("data", "step", "schema_version")}
    state = drafts.save_draft(
        call.session_on_demand,
        actor=call.actor,
        form_slug=body["form_slug"],
        object_id=body["object_id"],
        payload=payload,
        version=body["version"],
        user_id=body.get("user_id"),
        source="api",
        user_agent=user_agent,
        ip=ip,
        settings=call.settings,
    )
    return state.to_dict()


@endpoint(
    "GET",
    f"{API_PREFIX}/drafts/load",
    summary="Abre um rascunho",
    tags=["rascunhos"],
    permission="drafts.save",
    description="Somente o autor. 404 quando não há rascunho; 422 `integrity_failed` quando a cópia "
    "guardada foi adulterada (ela é posta de lado para o administrador e nunca aplicada). "
    "Rascunho de versão antiga do formulário: migrado, ou `read_only` com os dados.",
    params=[_FORM_SLUG, _OBJECT_ID, _USER_ID],
    returns=Returns(200, DRAFT),
    errors=[*_DRAFT_ERRORS, IntegrityError],
)
def load_draft(call: Call) -> dict[str, Any]:
    p = call.params
    state = drafts.load_draft(
        call.session_on_demand,
        actor=call.actor,
        form_slug=p["form_slug"],
        object_id=p["object_id"],
        user_id=p["user_id"],
        settings=call.settings,
    )
    if state is None:
        raise NotFound(
            f"Não há rascunho de {p['form_slug']} para {p['object_id']}.",
            entity="draft",
            key=f"{call.actor.id}:{p['form_slug']}:{p['object_id']}",
        )
    return state.to_dict()


@endpoint(
    "DELETE",
    f"{API_PREFIX}/drafts/clear",
    summary="Apaga um rascunho",
    tags=["rascunhos"],
    permission="drafts.save",
    description="Somente o autor. O conteúdo fica como versão restaurável (`keep_version=false` apaga sem "
    "guardar). 404 quando não há rascunho.",
    params=[
        _FORM_SLUG,
        _OBJECT_ID,
        _USER_ID,
        query("keep_version", "boolean", "Guardar como versão", default=True),
    ],
    returns=Returns(204, None, "Apagado"),
    errors=[*_DRAFT_ERRORS, IntegrityError],
)
def clear_draft(call: Call) -> Reply:
    p = call.params
    removed = drafts.clear_draft(
        call.session,
        actor=call.actor,
        form_slug=p["form_slug"],
        object_id=p["object_id"],
        user_id=p["user_id"],
        keep_version=p["keep_version"],
        settings=call.settings,
    )
    if not removed:
        raise NotFound(
            f"Não há rascunho de {p['form_slug']} para {p['object_id']}.",
            entity="draft",
            key=f"{call.actor.id}:{p['form_slug']}:{p['object_id']}",
        )
    return Reply(None, status=204)


@endpoint(
    "GET",
    f"{API_PREFIX}/drafts",
    summary="Lista rascunhos (sem conteúdo)",
    tags=["rascunhos"],
    permission="drafts.save",
    description="Os rascunhos do usuário, mais recentes primeiro, incluindo os expirados que ainda têm "
    "versão guardada (`live=false`). Administradores podem ver os de outro usuário (`user_id`) "
    "ou de todos (`everyone=true`): só que existem, nunca o conteúdo.",
    params=[
        query("user_id", "integer", "Outro usuário (administradores)", minimum=1),
        query("everyone", "boolean", "Todos os usuários (administradores)", default=False),
    ],
    returns=Returns(200, SUMMARY_LIST),
    errors=[PermissionDenied],
)
def list_drafts(call: Call) -> dict[str, Any]:
    p = call.params
    rows = drafts.list_drafts(
        call.session, actor=call.actor, user_id=p["user_id"], everyone=p["everyone"], settings=call.settings
    )
    return {"items": [s.to_dict() for s in rows]}


@endpoint(
    "GET",
    f"{API_PREFIX}/drafts/versions",
    summary="Versões guardadas de um rascunho",
    tags=["rascunhos"],
    permission="drafts.save",
    description="Gravadas a cada troca de etapa, no máximo a cada poucos minutos, e ao apagar/desfazer.",
    params=[_FORM_SLUG, _OBJECT_ID],
    returns=Returns(200, VERSION_LIST),
    errors=_DRAFT_ERRORS,
)
def list_versions(call: Call) -> dict[str, Any]:
    p = call.params
    rows = drafts.list_versions(
        call.session, actor=call.actor, form_slug=p["form_slug"], object_id=p["object_id"]
    )
    return {
        "items": [
            {
                "id": v.id,
                "created_at": v.created_at,
                "reason": v.reason,
                "step": int(v.payload.get("step", 0)),
                "version": int(v.payload.get("version", 0)),
                "filled": sum(1 for s in (v.payload.get("fields_status") or {}).values() if s == "filled"),
            }
            for v in rows
        ]
    }


@endpoint(
    "POST",
    f"{API_PREFIX}/drafts/restore",
    summary="Restaura uma versão guardada",
    tags=["rascunhos"],
    permission="drafts.save",
    description="A versão escolhida vira o rascunho atual (compare-and-swap em `version`, 409 se mudou).",
    body=Body(RESTORE_BODY),
    returns=Returns(200, DRAFT),
    errors=[*_DRAFT_ERRORS, Conflict, IntegrityError],
)
def restore_version(call: Call) -> dict[str, Any]:
    b = call.body
    state = drafts.restore_version(
        call.session,
        actor=call.actor,
        form_slug=b["form_slug"],
        object_id=b["object_id"],
        version_id=b["version_id"],
        version=b["version"],
        source="api",
        settings=call.settings,
    )
    return state.to_dict()


def _records(result: Any) -> list[dict[str, Any]]:
    items = result if isinstance(result, list) else [result]
    return [
        {
            "entity": type(r).__tablename__ if hasattr(type(r), "__tablename__") else type(r).__name__,
            "id": getattr(r, "id", None),
        }
        for r in items
    ]


@endpoint(
    "POST",
    f"{API_PREFIX}/drafts/submit",
    summary="Envia o formulário",
    tags=["rascunhos"],
    permission="drafts.save",
    description="Valida tudo (obrigatórios, formatos, regras entre campos), cria os registros e apaga o "
    "rascunho e suas versões. 422 com `errors` por campo; 409 para registro duplicado.",
    body=Body(SUBMIT_BODY),
    returns=Returns(201, SUBMITTED, "Registros criados"),
    errors=[*_DRAFT_ERRORS, Conflict, IntegrityError],
)
def submit_draft(call: Call) -> Reply:
    b = call.body
    result = drafts.submit_draft(
        call.session,
        actor=call.actor,
        form_slug=b["form_slug"],
        object_id=b["object_id"],
        data=b.get("data"),
        settings=call.settings,
    )
    call.session.flush()
    return Reply({"form_slug": b["form_slug"], "records": _records(result)}, status=201)


@endpoint(
    "GET",
    f"{API_PREFIX}/forms",
    summary="Formulários declarados",
    tags=["formulários"],
    description="Etapas, campos, tipos, limites e máscaras: a mesma declaração que o servidor usa "
    "para validar rascunhos e envios.",
    returns=Returns(200, FORM_LIST),
)
def list_forms(call: Call) -> dict[str, Any]:
    call.actor  # noqa: B018 - any authenticated user
    return {"items": [f.describe() for f in forms.all_forms()]}


@endpoint(
    "GET",
    f"{API_PREFIX}/forms/{{slug}}",
    summary="Um formulário declarado",
    tags=["formulários"],
    params=[path("slug", "string", "Formulário", max_length=60)],
    returns=Returns(200, FORM),
    errors=[NotFound],
)
def get_form(call: Call) -> dict[str, Any]:
    call.actor  # noqa: B018
    return forms.require_form(call.params["slug"]).describe()


# The public survey ------------------------------------------------------------------------------------------
# The issue fixes these paths outside /api/v1 (``/api/progress/``). The registry's ``add`` only accepts
# /api/v1 paths without a trailing slash, so they are appended after the same checks it would make;
# Tornado routes and the OpenAPI document come from the registry exactly as for every other endpoint.

PROGRESS_PATH = "/api/progress/"

PROGRESS = schema(
    "SurveyProgress",
    {
        "type": "object",
        "required": ["survey_id", "email", "step", "data", "version", "updated_at", "expires_at"],
        "properties": {
            "survey_id": {"type": "string"},
            "email": {"type": "string"},
            "step": {"type": "integer", "description": "tela atual"},
            "data": {"type": "object"},
            "version": {"type": "integer"},
            "updated_at": STAMP,
            "expires_at": {**STAMP, "description": "30 dias após o último salvamento"},
            "fields_status": {"type": "object"},
            "errors": FIELD_ERRORS,
            "next_field": {"type": ["string", "null"]},
        },
    },
)

PROGRESS_BODY = schema(
    "SurveyProgressSave",
    {
        "type": "object",
        "required": ["email", "survey_id", "data"],
        "properties": {
            "email": {"type": "string", "maxLength": 254},
            "survey_id": SLUG,
            "data": {
                "type": "object",
                "description": "respostas; o código de convidado vai em data.guestCodeResponse.guestCode",
            },
            "step": {"type": "integer", "minimum": 0, "default": 0},
            "version": {
                "type": ["integer", "null"],
                "minimum": 0,
                "description": "versão lida (opcional): outra = 409",
            },
        },
        "additionalProperties": False,
    },
)

SURVEY_SUBMIT_BODY = schema(
    "SurveySubmit",
    {
        "type": "object",
        "required": ["email", "survey_id"],
        "properties": {
            "email": {"type": "string", "maxLength": 254},
            "survey_id": SLUG,
            "data": {"type": "object", "description": "padrão: as respostas salvas"},
        },
        "additionalProperties": False,
    },
)

SURVEY_SUBMITTED = schema(
    "SurveySubmitted",
    {
        "type": "object",
        "required": ["id", "survey_id", "cliente_id"],
        "properties": {
            "id": {"type": "integer"},
            "survey_id": {"type": "string"},
            "cliente_id": {
                "type": ["integer", "null"],
                "description": "empresa do código de convidado, quando confere",
            },
        },
    },
)

_EMAIL = query("email", "string", "E-mail de quem responde", required=True, max_length=254)
_SURVEY = query("survey_id", "string", "Pesquisa (ex.: pesquisa)", required=True, max_length=60)
_SURVEY_ERRORS = [NotFound, BadRequest, ValidationFailed, LimitExceeded, IntegrityError]
_SURVEY_NOTE = (
    " Sem token. Limitado por e-mail e por endereço do cliente (429 com `Retry-After`). "
    "Depois do envio, 400 com `error` = `ALREADY_SUBMITTED`."
)


def _public(
    method: str,
    path_: str,
    func: Any,
    *,
    summary: str,
    description: str,
    params: list[Any] = (),
    body: Body | None = None,
    returns: Returns,
    errors: list[Any],
) -> None:
    candidate = Endpoint(
        method=method,
        path=path_,
        func=func,
        summary=summary,
        description=description,
        public=True,
        params=tuple(params),
        body=body,
        returns=returns,
        errors=tuple(errors),
        tags=("pesquisa",),
        operation_id=func.__name__,
    )
    for existing in registry.endpoints:
        if (existing.method, existing.path) == (method, path_) or existing.operation_id == func.__name__:
            return  # already declared (module imported twice)
    registry.endpoints.append(candidate)


def get_progress(call: Call) -> dict[str, Any]:
    p = call.params
    ip, _ = _client(call)
    state = survey.load_progress(
        call.session, email=p["email"], survey_id=p["survey_id"], client=ip, settings=call.settings
    )
    if state is None:
        raise NotFound(
            "Nenhum progresso salvo para este e-mail nesta pesquisa.",
            entity="survey_progress",
            key=p["survey_id"],
        )
    return state.to_dict()


def save_progress(call: Call) -> dict[str, Any]:
    b = call.body
    ip, _ = _client(call)
    state = survey.save_progress(
        call.session,
        email=b["email"],
        survey_id=b["survey_id"],
        data=b["data"],
        step=b.get("step", 0),
        version=b.get("version"),
        client=ip,
        settings=call.settings,
    )
    return state.to_dict()


def clear_progress(call: Call) -> Reply:
    p = call.params
    ip, _ = _client(call)
    if not survey.clear_progress(
        call.session, email=p["email"], survey_id=p["survey_id"], client=ip, settings=call.settings
    ):
        raise NotFound(
            "Nenhum progresso salvo para este e-mail nesta pesquisa.",
            entity="survey_progress",
            key=p["survey_id"],
        )
    return Reply(None, status=204)


def submit_survey(call: Call) -> Reply:
    b = call.body
    ip, _ = _client(call)
    response = survey.submit_survey(
        call.session,
        email=b["email"],
        survey_id=b["survey_id"],
        data=b.get("data"),
        client=ip,
        settings=call.settings,
    )
    return Reply(
        {"id": response.id, "survey_id": response.survey_id, "cliente_id": response.cliente_id}, status=201
    )


_public(
    "GET",
    PROGRESS_PATH,
    get_progress,
    summary="Progresso salvo da pesquisa",
    description="A tela e as respostas salvas (guardadas 30 dias). 404 quando não há." + _SURVEY_NOTE,
    params=[_EMAIL, _SURVEY],
    returns=Returns(200, PROGRESS),
    errors=_SURVEY_ERRORS,
)
_public(
    "POST",
    PROGRESS_PATH,
    save_progress,
    summary="Salva o progresso da pesquisa",
    description="Grava a tela atual e as respostas (validadas por tipo e tamanho)." + _SURVEY_NOTE,
    body=Body(PROGRESS_BODY),
    returns=Returns(200, PROGRESS),
    errors=[*_SURVEY_ERRORS, Conflict, PayloadTooLarge],
)
_public(
    "DELETE",
    PROGRESS_PATH,
    clear_progress,
    summary="Apaga o progresso da pesquisa",
    description="Recomeçar do zero. 404 quando não há progresso." + _SURVEY_NOTE,
    params=[_EMAIL, _SURVEY],
    returns=Returns(204, None, "Apagado"),
    errors=_SURVEY_ERRORS,
)
_public(
    "POST",
    PROGRESS_PATH + "submit",
    submit_survey,
    summary="Envia a pesquisa",
    description="Valida todas as respostas, registra e apaga o progresso; a empresa é vinculada por "
    "data.guestCodeResponse.guestCode." + _SURVEY_NOTE,
    body=Body(SURVEY_SUBMIT_BODY),
    returns=Returns(201, SURVEY_SUBMITTED, "Resposta registrada"),
    errors=_SURVEY_ERRORS,
)
