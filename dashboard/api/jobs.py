"""Jobs over REST: list, detail, cancel, retry.

Visibility follows ``engine.jobs``: admins see every job, everyone else only their own. A job someone may
not see answers 404 (its existence is not revealed). A role without the action at all (a viewer cancelling
or retrying) answers 403 whatever the job, so 403 never tells whether a job exists either.
"""

from __future__ import annotations

from typing import Any

from dashboard.api.base import API_PREFIX, Call, Reply, Returns, endpoint, path, query, schema
from engine import jobs
from engine.errors import Conflict, NotFound
from engine.models import ITEM_STATUSES, JOB_STATUSES, Job, JobItem

_TIMESTAMP = {"type": ["string", "null"], "format": "date-time"}

_JOB_FIELDS: dict[str, Any] = {
    "id": {"type": "integer"},
    "kind": {"type": "string", "description": "tipo do job (backup, documents.download, import...)"},
    "status": {"type": "string", "enum": list(JOB_STATUSES)},
    "progress": {"type": "integer", "minimum": 0, "maximum": 100},
    "message": {"type": "string"},
    "counters": {"type": "object", "description": "contadores por situação (ex.: available, failed)"},
    "owner_id": {"type": ["integer", "null"]},
    "attempts": {"type": "integer", "description": "execuções iniciadas (reentregas incluídas)"},
    "cancel_requested": {"type": "boolean"},
    "retry_of_id": {"type": ["integer", "null"], "description": "job que este repete"},
    "created_at": {"type": "string", "format": "date-time"},
    "started_at": _TIMESTAMP,
    "finished_at": _TIMESTAMP,
    "heartbeat_at": _TIMESTAMP,
}

JOB_ITEM = schema("JobItem", {
    "type": "object",
    "required": ["key", "label", "status", "attempts", "error", "updated_at"],
    "properties": {
        "key": {"type": "string"},
        "label": {"type": "string"},
        "status": {"type": "string", "enum": list(ITEM_STATUSES)},
        "attempts": {"type": "integer"},
        "error": {"type": "string"},
        "updated_at": {"type": "string", "format": "date-time"},
    },
    "additionalProperties": False,
})

JOB = schema("Job", {
    "type": "object",
    "description": "Resumo de um job (como nas listas).",
    "required": list(_JOB_FIELDS),
    "properties": _JOB_FIELDS,
    "additionalProperties": False,
})

_DETAIL_FIELDS: dict[str, Any] = {
    **_JOB_FIELDS,
    "params": {"type": "object", "description": "parâmetros com que o job foi criado"},
    "result": {"type": ["object", "null"], "description": "resultado quando concluído"},
    "error": {"type": "string", "description": "erro da última execução que falhou"},
    "traceback": {"type": "string"},
    "worker": {"type": "string", "description": "worker da última execução"},
    "items": {"type": "array", "items": {"$ref": f"#/components/schemas/{JOB_ITEM}"}},
}

JOB_DETAIL = schema("JobDetail", {
    "type": "object",
    "description": "Um job com itens, erro e traceback.",
    "required": list(_DETAIL_FIELDS),
    "properties": _DETAIL_FIELDS,
    "additionalProperties": False,
})

JOB_PAGE = schema("JobPage", {
    "type": "object",
    "required": ["items", "total", "offset", "limit"],
    "properties": {
        "items": {"type": "array", "items": {"$ref": f"#/components/schemas/{JOB}"}},
        "total": {"type": "integer", "description": "jobs que atendem aos filtros (todas as páginas)"},
        "offset": {"type": "integer"},
        "limit": {"type": "integer"},
    },
    "additionalProperties": False,
})

MAX_PAGE = 200


def job_summary(job: Job) -> dict[str, Any]:
    return {
        "id": job.id, "kind": job.kind, "status": job.status, "progress": job.progress,
        "message": job.message, "counters": dict(job.counters or {}), "owner_id": job.owner_id,
        "attempts": job.attempts, "cancel_requested": bool(job.cancel_requested),
        "retry_of_id": job.retry_of_id, "created_at": job.created_at, "started_at": job.started_at,
        "finished_at": job.finished_at, "heartbeat_at": job.heartbeat_at,
    }


def job_item(item: JobItem) -> dict[str, Any]:
    return {"key": item.key, "label": item.label, "status": item.status, "attempts": item.attempts,
            "error": item.error, "updated_at": item.updated_at}


def job_detail(job: Job) -> dict[str, Any]:
    return {
        **job_summary(job), "params": dict(job.params or {}), "result": job.result, "error": job.error,
        "traceback": job.traceback, "worker": job.worker, "items": [job_item(i) for i in job.items],
    }


_ID = path("id", "integer", "Id do job", minimum=1)


@endpoint(
    "GET", f"{API_PREFIX}/jobs", summary="Lista jobs", tags=["jobs"], permission="jobs.view",
    description="Mais recentes primeiro. Administradores veem todos (e podem filtrar por `owner_id`); os "
                "demais veem apenas os seus, e `owner_id` é ignorado.",
    params=[
        query("kind", "string", "Tipo do job", max_length=50),
        query("status", "string", "Situação", enum=JOB_STATUSES),
        query("owner_id", "integer", "Dono (somente administradores)", minimum=1),
        query("since", "date-time", "Criados a partir de (ISO 8601; sem fuso = UTC)"),
        query("until", "date-time", "Criados antes de (ISO 8601; sem fuso = UTC)"),
        query("offset", "integer", "Quantos pular", minimum=0, default=0),
        query("limit", "integer", f"Tamanho da página (1–{MAX_PAGE})", minimum=1, maximum=MAX_PAGE, default=50),
    ],
    returns=Returns(200, JOB_PAGE),
)
def list_jobs(call: Call) -> dict[str, Any]:
    p = call.params
    rows, total = jobs.list_jobs(call.session, actor=call.actor, kind=p["kind"], status=p["status"],
                                 owner_id=p["owner_id"], since=p["since"], until=p["until"],
                                 offset=p["offset"], limit=p["limit"])
    return {"items": [job_summary(j) for j in rows], "total": total, "offset": p["offset"], "limit": p["limit"]}


@endpoint(
    "GET", f"{API_PREFIX}/jobs/{{id}}", summary="Detalhes de um job", tags=["jobs"], permission="jobs.view",
    description="Com itens, contadores, tentativas, erro e traceback. Job de outra pessoa (para quem não é "
                "administrador): 404, como se não existisse.",
    params=[_ID], returns=Returns(200, JOB_DETAIL), errors=[NotFound],
)
def get_job(call: Call) -> dict[str, Any]:
    return job_detail(jobs.get_job(call.session, actor=call.actor, job_id=call.params["id"]))


@endpoint(
    "POST", f"{API_PREFIX}/jobs/{{id}}/cancel", summary="Cancela um job", tags=["jobs"],
    permission="jobs.cancel",
    description="Um job na fila é cancelado na hora; um em execução recebe o pedido e para no próximo "
                "ponto de verificação (`cancel_requested` = true). Job já concluído: 409. Perfil sem "
                "`jobs.cancel`: 403 para qualquer job; job de outra pessoa (sem ser administrador): 404.",
    params=[_ID], returns=Returns(200, JOB_DETAIL, "O job com o pedido de cancelamento registrado"),
    errors=[NotFound, Conflict],
)
def cancel_job(call: Call) -> dict[str, Any]:
    return job_detail(jobs.cancel_job(call.session, actor=call.actor, job_id=call.params["id"]))


@endpoint(
    "POST", f"{API_PREFIX}/jobs/{{id}}/retry", summary="Repete um job concluído", tags=["jobs"],
    permission="jobs.retry",
    description="Cria um novo job com o mesmo tipo e parâmetros (`retry_of_id` aponta o original). Job "
                "ainda ativo: 409.",
    params=[_ID],
    returns=Returns(201, JOB_DETAIL, "O novo job", headers={"Location": "URL do novo job"}),
    errors=[NotFound, Conflict],
)
def retry_job(call: Call) -> Reply:
    new = jobs.retry_job(call.session, actor=call.actor, job_id=call.params["id"])
    return Reply(job_detail(new), headers={"Location": f"{API_PREFIX}/jobs/{new.id}"})
