"""Processos over REST: look a process up (starting the download of its documents) and follow it.

``GET /api/v1/processos/{numero}`` answers at once: 202 while the download job is queued or running (a
second request gets the same job), 200 with the stored result once it ended (``refresh=true`` asks the
court again and downloads only what is new or failed). ``/status`` gives the per-document picture with
presigned links, regenerated when expired.
"""

from __future__ import annotations

from typing import Any

from dashboard.api.base import API_PREFIX, Call, Reply, Returns, endpoint, path, query, schema
from engine import documents, webhooks
from engine.errors import ExternalServiceError, NotFound, ValidationFailed
from engine.models.court import DELIVERY_STATUSES, DOCUMENT_STATUSES

_TS = {"type": ["string", "null"], "format": "date-time"}

PROCESSO = schema(
    "Processo",
    {
        "type": "object",
        "required": [
            "numero",
            "numero_formatado",
            "tribunal",
            "classe",
            "assunto",
            "partes",
            "last_fetched_at",
        ],
        "properties": {
            "numero": {
                "type": "string",
                "pattern": "^[0-9]{20}$",
                "description": "os 20 dígitos do número CNJ",
            },
            "numero_formatado": {"type": "string", "description": "NNNNNNN-DD.AAAA.J.TR.OOOO"},
            "tribunal": {"type": "string"},
            "classe": {"type": "string"},
            "assunto": {"type": "string"},
            "partes": {"type": "array", "items": {"type": "object"}},
            "orgao_julgador": {"type": "string"},
            "data_ajuizamento": {"type": ["string", "null"]},
            "last_fetched_at": _TS,
        },
    },
)

DOWNLOAD_JOB = schema(
    "DownloadJob",
    {
        "type": "object",
        "required": ["id", "status", "progress", "counters", "created_at"],
        "properties": {
            "id": {"type": "integer"},
            "status": {"type": "string", "enum": ["queued", "running", "succeeded", "failed", "cancelled"]},
            "progress": {"type": "integer", "minimum": 0, "maximum": 100},
            "counters": {"type": "object", "additionalProperties": {"type": "integer"}},
            "message": {"type": "string"},
            "error": {"type": "string"},
            "attempts": {"type": "integer"},
            "created_at": _TS,
            "started_at": _TS,
            "finished_at": _TS,
            "heartbeat_at": _TS,
        },
    },
)

LOOKUP = schema(
    "ProcessoLookup",
    {
        "type": "object",
        "required": ["state", "started", "processo", "job", "documentos", "status_url"],
        "properties": {
            "state": {
                "type": "string",
                "enum": ["started", "running", "finished", "stored"],
                "description": "started: este pedido criou o job; running: um job anterior ainda roda; "
                "finished: resultado guardado; stored: só metadados (auto_download=false)",
            },
            "started": {"type": "boolean"},
            "processo": {"$ref": f"#/components/schemas/{PROCESSO}"},
            "job": {"oneOf": [{"$ref": f"#/components/schemas/{DOWNLOAD_JOB}"}, {"type": "null"}]},
            "documentos": {"type": "integer", "description": "documentos conhecidos do processo"},
            "status_url": {"type": "string"},
        },
    },
)

DOCUMENTO = schema(
    "DocumentoStatus",
    {
        "type": "object",
        "required": ["id", "nome", "status", "attempts", "download_url"],
        "properties": {
            "id": {"type": "string", "description": "id do documento no tribunal"},
            "nome": {"type": "string"},
            "tipo": {"type": "string"},
            "data": {"type": ["string", "null"]},
            "tamanho": {"type": ["integer", "null"], "description": "tamanho informado pelo tribunal"},
            "status": {"type": "string", "enum": list(DOCUMENT_STATUSES)},
            "size": {"type": ["integer", "null"], "description": "bytes guardados"},
            "sha256": {"type": ["string", "null"]},
            "attempts": {"type": "integer"},
            "last_error": {"type": ["string", "null"]},
            "download_url": {
                "type": ["string", "null"],
                "description": "link pré-assinado (1 h) quando disponível",
            },
            "download_url_expires_at": _TS,
        },
    },
)

DELIVERY = schema(
    "WebhookDelivery",
    {
        "type": "object",
        "required": ["id", "message_id", "event_type", "url", "status", "attempts"],
        "properties": {
            "id": {"type": "integer"},
            "message_id": {"type": "string", "description": "o cabeçalho webhook-id"},
            "event_type": {"type": "string"},
            "url": {"type": "string"},
            "endpoint_id": {"type": ["integer", "null"]},
            "job_id": {"type": ["integer", "null"]},
            "status": {"type": "string", "enum": ["waiting", *DELIVERY_STATUSES]},
            "attempts": {"type": "integer"},
            "last_status_code": {"type": ["integer", "null"]},
            "last_error": {"type": ["string", "null"]},
            "next_attempt_at": _TS,
            "delivered_at": _TS,
            "created_at": _TS,
            "attempt_log": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "number": {"type": "integer"},
                        "trigger": {"type": "string"},
                        "started_at": _TS,
                        "duration_ms": {"type": "integer"},
                        "status_code": {"type": ["integer", "null"]},
                        "response_excerpt": {"type": "string"},
                        "error": {"type": ["string", "null"]},
                    },
                },
            },
        },
    },
)

STATUS = schema(
    "ProcessoStatus",
    {
        "type": "object",
        "required": ["processo", "job", "progress", "counters", "documentos", "webhook"],
        "properties": {
            "processo": {"$ref": f"#/components/schemas/{PROCESSO}"},
            "job": {"oneOf": [{"$ref": f"#/components/schemas/{DOWNLOAD_JOB}"}, {"type": "null"}]},
            "progress": {"type": "integer", "minimum": 0, "maximum": 100},
            "counters": {
                "type": "object",
                "required": [*DOCUMENT_STATUSES, "total"],
                "additionalProperties": {"type": "integer"},
            },
            "documentos": {"type": "array", "items": {"$ref": f"#/components/schemas/{DOCUMENTO}"}},
            "webhook": {
                "oneOf": [
                    {"type": "null"},
                    {
                        "type": "object",
                        "properties": {
                            "status": {"type": "string"},
                            "deliveries": {
                                "type": "array",
                                "items": {"$ref": f"#/components/schemas/{DELIVERY}"},
                            },
                        },
                    },
                ]
            },
        },
    },
)

_NUMERO = path("numero", "string", "Número CNJ, com ou sem máscara", max_length=30)


@endpoint(
    "GET",
    f"{API_PREFIX}/processos/{{numero}}",
    summary="Consulta um processo e baixa seus documentos",
    tags=["processos"],
    permission="processos.fetch",
    description="Guarda os metadados do tribunal e inicia (uma vez) o job que baixa os documentos, "
    "respondendo na hora. 202 enquanto o job está na fila ou rodando (pedidos repetidos recebem o "
    "mesmo job); 200 com o resultado guardado depois que terminou. `refresh=true` consulta o "
    "tribunal de novo e baixa só o que é novo ou falhou. `webhook_url` é validada (endereços "
    "privados, loopback e link-local são recusados) e recebe um evento assinado ao final.",
    params=[
        _NUMERO,
        query("refresh", "boolean", "Consultar o tribunal de novo", default=False),
        query("auto_download", "boolean", "Baixar os documentos (padrão: sim)", default=True),
        query("webhook_url", "string", "URL notificada ao fim do download", max_length=2000),
    ],
    returns=Returns(202, LOOKUP, "Job iniciado ou em andamento (200 quando já terminou)"),
    errors=[ValidationFailed, NotFound, ExternalServiceError],
)
def lookup(call: Call) -> Reply:
    p = call.params
    result = documents.lookup_processo(
        call.session,
        actor=call.actor,
        numero=p["numero"],
        refresh=p["refresh"],
        auto_download=p["auto_download"],
        webhook_url=p["webhook_url"],
        settings=call.settings,
    )
    body: dict[str, Any] = documents.lookup_summary(call.session, result)
    body["status_url"] = f"{API_PREFIX}/processos/{result.processo.numero}/status"
    running = result.job is not None and result.job.is_active
    return Reply(body, status=202 if running else 200, headers={"Location": body["status_url"]})


@endpoint(
    "GET",
    f"{API_PREFIX}/processos/{{numero}}/status",
    summary="Situação do download dos documentos",
    tags=["processos"],
    permission="documentos.read",
    description="Progresso 0–100, contadores por situação, cada documento com sua situação e, quando "
    "disponível, um link pré-assinado válido por 1 hora (um link expirado é trocado por outro), "
    "o job com seus horários e o estado do webhook.",
    params=[_NUMERO],
    returns=Returns(200, STATUS),
    errors=[ValidationFailed, NotFound],
)
def processo_status(call: Call) -> dict[str, Any]:
    return documents.download_status(
        call.session, actor=call.actor, numero=call.params["numero"], settings=call.settings
    )


@endpoint(
    "GET",
    f"{API_PREFIX}/processos/{{numero}}/webhooks",
    summary="Entregas de webhook de um processo",
    tags=["processos", "webhooks"],
    permission="webhooks.use",
    description="O registro de entregas (com cada tentativa: status, duração, trecho da resposta).",
    params=[_NUMERO],
    returns=Returns(200, {"type": "array", "items": {"$ref": f"#/components/schemas/{DELIVERY}"}}),
    errors=[ValidationFailed, NotFound],
)
def processo_deliveries(call: Call) -> list[dict[str, Any]]:
    numero = documents.parse_numero(call.params["numero"])
    processo = documents.get_processo(call.session, numero=numero)
    if processo is None:
        raise NotFound("Processo ainda não consultado.", entity="processo", key=numero)
    rows, _ = webhooks.list_deliveries(call.session, actor=call.actor, processo_id=processo.id, limit=200)
    return [webhooks.delivery_summary(d, with_attempts=True) for d in rows]
