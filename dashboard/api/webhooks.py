"""Webhooks over REST: check a URL, send a signed test event, the delivery log with redelivery, and
(admins) endpoints with their own secret, shown only in the answer that creates them."""

from __future__ import annotations

from typing import Any

from dashboard.api.base import API_PREFIX, Body, Call, Reply, Returns, endpoint, path, query, schema
from dashboard.api.processos import DELIVERY
from engine import webhooks
from engine.db import session_scope
from engine.errors import Conflict, NotFound, ValidationFailed
from engine.models.court import DELIVERY_STATUSES

URL_BODY = schema(
    "WebhookUrl",
    {
        "type": "object",
        "required": ["url"],
        "additionalProperties": False,
        "properties": {"url": {"type": "string", "minLength": 1, "maxLength": 2000}},
    },
)

VALIDATION = schema(
    "WebhookUrlCheck",
    {
        "type": "object",
        "required": ["valid", "url"],
        "properties": {
            "valid": {"type": "boolean"},
            "url": {"type": "string"},
            "reason": {
                "type": ["string", "null"],
                "description": "scheme, credentials, host, unresolvable, loopback, private, link-local, "
                "multicast, reserved, unspecified...",
            },
            "detail": {"type": ["string", "null"]},
            "host": {"type": ["string", "null"]},
            "addresses": {"type": "array", "items": {"type": "string"}},
        },
    },
)

ENDPOINT = schema(
    "WebhookEndpoint",
    {
        "type": "object",
        "required": ["id", "url", "description", "is_active", "secret_hint"],
        "properties": {
            "id": {"type": "integer"},
            "url": {"type": "string"},
            "description": {"type": "string"},
            "is_active": {"type": "boolean"},
            "secret_hint": {"type": "string"},
            "created_at": {"type": ["string", "null"]},
            "secret": {"type": "string", "description": "só na criação: guarde-o agora"},
        },
    },
)

DELIVERY_PAGE = schema(
    "WebhookDeliveryPage",
    {
        "type": "object",
        "required": ["items", "total"],
        "properties": {
            "items": {"type": "array", "items": {"$ref": f"#/components/schemas/{DELIVERY}"}},
            "total": {"type": "integer"},
            "offset": {"type": "integer"},
            "limit": {"type": "integer"},
        },
    },
)


@endpoint(
    "POST",
    f"{API_PREFIX}/webhooks/validate",
    summary="Verifica uma URL de webhook sem enviar nada",
    tags=["webhooks"],
    permission="webhooks.use",
    body=Body(URL_BODY),
    returns=Returns(200, VALIDATION),
    description="Esquema, resolução do host e recusa de endereços loopback, privados, link-local, multicast "
    "e reservados (verificados no endereço resolvido), salvo hosts em WEBHOOK_ALLOWED_HOSTS.",
)
def validate(call: Call) -> dict[str, Any]:
    url = call.body["url"]
    try:
        target = webhooks.validate_url(url, settings=call.settings)
    except ValidationFailed as exc:
        return {
            "valid": False,
            "url": url,
            "reason": exc.data.get("reason"),
            "detail": exc.message,
            "host": None,
            "addresses": [],
        }
    return {
        "valid": True,
        "url": target.url,
        "reason": None,
        "detail": None,
        "host": target.host,
        "addresses": list(target.addresses),
    }


@endpoint(
    "POST",
    f"{API_PREFIX}/webhooks/test",
    summary="Envia um evento de teste assinado",
    tags=["webhooks"],
    permission="webhooks.use",
    body=Body(URL_BODY),
    returns=Returns(200, DELIVERY),
    description="Uma tentativa, agora, registrada no log de entregas (sem novas tentativas automáticas).",
    errors=[ValidationFailed],
)
def send_test(call: Call) -> dict[str, Any]:
    return webhooks.send_test(
        lambda: session_scope(call.settings), actor=call.actor, url=call.body["url"], settings=call.settings
    )


@endpoint(
    "GET",
    f"{API_PREFIX}/webhooks/deliveries",
    summary="Log de entregas de webhook",
    tags=["webhooks"],
    permission="webhooks.use",
    params=[
        query("job_id", "integer", "Do job de download", minimum=1),
        query("status", "string", "Situação", enum=("waiting", *DELIVERY_STATUSES)),
        query("offset", "integer", "Quantos pular", minimum=0, default=0),
        query("limit", "integer", "Tamanho da página", minimum=1, maximum=200, default=50),
    ],
    returns=Returns(200, DELIVERY_PAGE),
)
def list_deliveries(call: Call) -> dict[str, Any]:
    p = call.params
    rows, total = webhooks.list_deliveries(
        call.session,
        actor=call.actor,
        job_id=p["job_id"],
        status=p["status"],
        offset=p["offset"],
        limit=p["limit"],
    )
    return {
        "items": [webhooks.delivery_summary(d, with_attempts=True) for d in rows],
        "total": total,
        "offset": p["offset"],
        "limit": p["limit"],
    }


_ID = path("id", "integer", "Id da entrega", minimum=1)


@endpoint(
    "GET",
    f"{API_PREFIX}/webhooks/deliveries/{{id}}",
    summary="Uma entrega com suas tentativas",
    tags=["webhooks"],
    permission="webhooks.use",
    params=[_ID],
    returns=Returns(200, DELIVERY),
    errors=[NotFound],
)
def get_delivery(call: Call) -> dict[str, Any]:
    delivery = webhooks.get_delivery(call.session, actor=call.actor, delivery_id=call.params["id"])
    return webhooks.delivery_summary(delivery, with_attempts=True)


@endpoint(
    "POST",
    f"{API_PREFIX}/webhooks/deliveries/{{id}}/redeliver",
    summary="Reenvia uma entrega",
    tags=["webhooks"],
    permission="webhooks.use",
    params=[_ID],
    description="Mesma `webhook-id`, conteúdo e links atualizados; uma tentativa manual feita pelo worker.",
    returns=Returns(
        202,
        {
            "type": "object",
            "required": ["delivery", "job_id"],
            "properties": {
                "delivery": {"$ref": f"#/components/schemas/{DELIVERY}"},
                "job_id": {"type": "integer"},
            },
        },
    ),
    errors=[NotFound, Conflict],
)
def redeliver(call: Call) -> Reply:
    delivery, job = webhooks.redeliver(call.session, actor=call.actor, delivery_id=call.params["id"])
    call.session.flush()
    return Reply({"delivery": webhooks.delivery_summary(delivery), "job_id": job.id}, status=202)


@endpoint(
    "GET",
    f"{API_PREFIX}/webhooks/endpoints",
    summary="Endpoints de webhook cadastrados",
    tags=["webhooks"],
    permission="webhooks.manage",
    returns=Returns(200, {"type": "array", "items": {"$ref": f"#/components/schemas/{ENDPOINT}"}}),
)
def list_endpoints(call: Call) -> list[dict[str, Any]]:
    return [webhooks.endpoint_summary(e) for e in webhooks.list_endpoints(call.session, actor=call.actor)]


@endpoint(
    "POST",
    f"{API_PREFIX}/webhooks/endpoints",
    summary="Cadastra um endpoint com segredo próprio",
    tags=["webhooks"],
    permission="webhooks.manage",
    body=Body(
        {
            "type": "object",
            "required": ["url"],
            "additionalProperties": False,
            "properties": {
                "url": {"type": "string", "minLength": 1, "maxLength": 2000},
                "description": {"type": "string", "maxLength": 300},
            },
        }
    ),
    returns=Returns(201, ENDPOINT, "O endpoint, com o segredo (mostrado só agora)"),
    errors=[ValidationFailed, Conflict],
)
def create_endpoint(call: Call) -> Reply:
    created, secret = webhooks.create_endpoint(
        call.session,
        actor=call.actor,
        url=call.body["url"],
        description=call.body.get("description", ""),
        settings=call.settings,
    )
    return Reply({**webhooks.endpoint_summary(created), "secret": secret}, status=201)


@endpoint(
    "DELETE",
    f"{API_PREFIX}/webhooks/endpoints/{{id}}",
    summary="Desativa um endpoint",
    tags=["webhooks"],
    permission="webhooks.manage",
    params=[path("id", "integer", "Id do endpoint", minimum=1)],
    returns=Returns(200, ENDPOINT),
    errors=[NotFound],
)
def deactivate_endpoint(call: Call) -> dict[str, Any]:
    return webhooks.endpoint_summary(
        webhooks.deactivate_endpoint(call.session, actor=call.actor, endpoint_id=call.params["id"])
    )
