"""The OpenAPI 3.1 document, generated from the endpoint registry (the same declarations the routes come
from, so the two cannot drift), and the endpoint that serves it."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from dashboard.api.base import (
    API_PREFIX,
    JSON,
    Call,
    Endpoint,
    Registry,
    Returns,
    endpoint,
)
from engine.errors import (
    AuthenticationFailed,
    BadRequest,
    EngineError,
    PayloadTooLarge,
    PermissionDenied,
    ValidationFailed,
)
from engine.security import TOKEN_PREFIX
from engine.settings import Settings

TITLE = "Oficina API"
VERSION = "1.0.0"

ERROR_SCHEMA: JSON = {
    "type": "object",
    "description": "Toda resposta de erro. Campos extras trazem os dados do erro (entidade, chave, estado...).",
    "required": ["error", "detail", "request_id"],
    "properties": {
        "error": {"type": "string", "description": "código estável para programas (ex.: not_found)"},
        "detail": {"type": "string", "description": "mensagem para pessoas, em português"},
        "request_id": {"type": "string", "description": "o mesmo do cabeçalho X-Request-ID"},
        "errors": {"type": "array", "description": "erros por campo (validação)",
                   "items": {"type": "object", "properties": {"field": {"type": "string"},
                                                               "message": {"type": "string"}}}},
        "retry_after": {"type": "integer", "description": "segundos até poder tentar de novo (429)"},
    },
    "additionalProperties": True,
}

STATUS_TEXT = {
    400: "Requisição malformada (JSON inválido, corpo inesperado).",
    401: "Token de API ausente, inválido ou revogado.",
    403: "O perfil do usuário não permite esta ação.",
    404: "Não encontrado (ou não visível para este usuário).",
    405: "Método não aceito nesta rota.",
    409: "Conflito com o estado atual do recurso.",
    413: "Corpo maior que o limite do endpoint.",
    415: "O corpo precisa ser JSON (Content-Type: application/json).",
    422: "Parâmetros ou corpo inválidos; veja `errors`.",
    429: "Limite de requisições atingido; tente após `Retry-After` segundos.",
    500: "Erro interno; informe o request_id ao suporte.",
    502: "Um serviço externo falhou.",
}


def _ref(name: str) -> JSON:
    return {"$ref": f"#/components/schemas/{name}"}


def _schema(value: JSON | str) -> JSON:
    return _ref(value) if isinstance(value, str) else value


def _error_codes(ep: Endpoint) -> dict[int, set[str]]:
    """Every error status the endpoint can answer, with the codes behind it."""
    from dashboard.web import UnsupportedMediaType

    classes: list[type[EngineError]] = [*ep.errors]
    if not ep.public:
        classes.append(AuthenticationFailed)
    if ep.permission:
        classes.append(PermissionDenied)
    if ep.params:
        classes.append(ValidationFailed)
    if ep.method in ("POST", "PUT", "PATCH", "DELETE"):
        classes += [BadRequest, PayloadTooLarge, UnsupportedMediaType]
        if ep.body is not None:
            classes.append(ValidationFailed)
    codes: dict[int, set[str]] = defaultdict(set)
    for cls in classes:
        codes[cls.status].add(cls.code)
    codes[500].add("internal")
    return dict(sorted(codes.items()))


def _success(returns: Returns) -> JSON:
    response: JSON = {"description": returns.description,
                      "headers": {"X-Request-ID": {"$ref": "#/components/headers/RequestId"}}}
    for name, text in returns.headers.items():
        response["headers"][name] = {"description": text, "schema": {"type": "string"}}
    if returns.schema is not None:
        response["content"] = {"application/json": {"schema": _schema(returns.schema)}}
    return response


def _operation(ep: Endpoint) -> JSON:
    description = ep.description
    if ep.permission:
        description = f"{description}\n\nPermissão: `{ep.permission}`.".strip()
    op: JSON = {"operationId": ep.operation_id, "summary": ep.summary, "tags": list(ep.tags)}
    if description:
        op["description"] = description
    if ep.permission:
        op["x-oficina-permission"] = ep.permission
    if ep.public:
        op["security"] = []
    if ep.params:
        op["parameters"] = [
            {"name": p.name, "in": p.location, "required": p.required, "description": p.description,
             "schema": p.schema()}
            for p in ep.params
        ]
    if ep.body is not None:
        op["requestBody"] = {"required": ep.body.required, "description": ep.body.description,
                             "content": {"application/json": {"schema": _schema(ep.body.schema)}}}
    responses: JSON = {str(ep.returns.status): _success(ep.returns)}
    for status, codes in _error_codes(ep).items():
        response: JSON = {
            "description": f"{STATUS_TEXT.get(status, 'Erro.')} Códigos: {', '.join(sorted(codes))}.",
            "headers": {"X-Request-ID": {"$ref": "#/components/headers/RequestId"}},
            "content": {"application/json": {"schema": _ref("Error")}},
        }
        if status == 429:
            response["headers"]["Retry-After"] = {"description": "segundos até poder tentar de novo",
                                                  "schema": {"type": "integer"}}
        responses[str(status)] = response
    op["responses"] = responses
    return op


def build_document(reg: Registry, settings: Settings) -> JSON:
    """The OpenAPI 3.1 document of every endpoint in ``reg``."""
    paths: dict[str, dict[str, Any]] = {}
    for template, endpoints in reg.by_path().items():
        paths[template] = {method.lower(): _operation(ep) for method, ep in sorted(endpoints.items())}
    tags = sorted({tag for ep in reg.endpoints for tag in ep.tags})
    return {
        "openapi": "3.1.0",
        "info": {
            "title": TITLE,
            "version": VERSION,
            "description": (
                "API REST da Oficina. Autentique com `Authorization: Bearer "
                f"{TOKEN_PREFIX}...` (crie o token em Admin › Usuários ou com `oficina token create EMAIL`). "
                "Erros respondem `{\"error\": CÓDIGO, \"detail\": mensagem, \"request_id\": ...}`; envie "
                "`X-Request-ID` para rastrear uma chamada nos logs."
            ),
        },
        "servers": [{"url": settings.public_url.rstrip("/")}],
        "security": [{"bearerAuth": []}],
        "tags": [{"name": tag} for tag in tags],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer",
                               "description": f"Token de API ({TOKEN_PREFIX}...), revogável."},
            },
            "headers": {
                "RequestId": {"description": "id da requisição (o enviado pelo cliente ou um gerado)",
                              "schema": {"type": "string", "maxLength": 64}},
            },
            "schemas": {"Error": ERROR_SCHEMA, **dict(sorted(reg.schemas.items()))},
        },
    }


@endpoint("GET", f"{API_PREFIX}/openapi.json", summary="Documento OpenAPI desta API", public=True,
          returns=Returns(200, {"type": "object"}, "Documento OpenAPI 3.1"), tags=["meta"])
def openapi_document(call: Call) -> JSON:
    return build_document(call.registry, call.settings)
