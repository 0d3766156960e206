"""Imports over REST: kinds, preview of an uploaded file, start, follow, rejected-rows report, mappings.

The file itself is sent first to ``POST /uploads?filename=NAME`` (raw body, ``Authorization: Bearer``),
which streams it to disk and answers with its ``id``; the endpoints here take that ``upload_id``.
"""

from __future__ import annotations

from typing import Any

from dashboard.api.base import API_PREFIX, Body, Call, Reply, Returns, endpoint, path, schema
from engine import imports
from engine.db import MAX_ROW_ID
from engine.errors import NotFound, PermissionDenied, ValidationFailed

_OPTIONS_PROPS: dict[str, Any] = {
    "kind": {"type": "string", "enum": sorted(imports.KINDS), "description": "o que importar"},
    "mode": {
        "type": "string",
        "enum": list(imports.MODES),
        "default": "insert",
        "description": "insert: só chaves novas; upsert: atualiza as colunas mapeadas das chaves existentes; "
        "replace: substitui a linha inteira das chaves presentes",
    },
    "mapping": {
        "type": "object",
        "additionalProperties": {"type": "string", "maxLength": 300},
        "description": "campo -> nome da coluna no arquivo; vazio = sugerido pelos cabeçalhos",
    },
    "encoding": {
        "type": ["string", "null"],
        "enum": ["utf-8", "utf-8-sig", "latin-1", "cp1252", "utf-16", None],
    },
    "separator": {"type": ["string", "null"], "enum": [";", ",", "\t", "|", None]},
    "decimal": {"type": ["string", "null"], "enum": [",", ".", None]},
    "quote": {"type": ["string", "null"], "enum": ['"', "", None], "description": "'' = arquivo sem aspas"},
    "sheet": {"type": ["string", "null"], "maxLength": 200, "description": "planilha do XLSX"},
    "max_invalid_share": {
        "type": "number",
        "minimum": 0,
        "maximum": 1,
        "default": 1,
        "description": "recusa o arquivo se a fração de linhas inválidas passar disto",
    },
    "timezone": {
        "type": "string",
        "maxLength": 60,
        "default": "America/Sao_Paulo",
        "description": "fuso das datas sem fuso",
    },
}

OPTIONS = schema(
    "ImportOptions",
    {
        "type": "object",
        "required": ["kind"],
        "properties": _OPTIONS_PROPS,
        "additionalProperties": False,
    },
)

START = schema(
    "ImportStart",
    {
        "type": "object",
        "required": ["upload_id", "kind"],
        "properties": {
            "upload_id": {"type": "integer", "minimum": 1, "maximum": MAX_ROW_ID},
            **_OPTIONS_PROPS,
            "remember_mapping": {"type": "boolean", "default": True},
        },
        "additionalProperties": False,
    },
)

KIND = schema(
    "ImportKind",
    {
        "type": "object",
        "required": ["name", "label", "key", "fields"],
        "properties": {
            "name": {"type": "string"},
            "label": {"type": "string"},
            "description": {"type": "string"},
            "key": {"type": "array", "items": {"type": "string"}},
            "fields": {"type": "array", "items": {"type": "object"}},
        },
    },
)

PREVIEW = schema(
    "ImportPreview",
    {
        "type": "object",
        "required": ["upload", "headers", "rows", "mapping", "format"],
        "properties": {
            "upload": {"type": "object"},
            "kind": {"type": "object"},
            "file_type": {"type": "string"},
            "format": {"type": "object", "description": "encoding, separator, decimal, quote, sheet, sheets"},
            "headers": {"type": "array", "items": {"type": "string"}},
            "rows": {
                "type": "array",
                "items": {"type": "array"},
                "description": "primeiras linhas como lidas",
            },
            "mapping": {"type": "object"},
            "saved_mapping": {"type": "object"},
            "mapping_problems": {"type": "array", "items": {"type": "object"}},
            "checked": {
                "type": "array",
                "items": {"type": "object"},
                "description": "cada linha da amostra: valores como seriam importados ou o motivo da recusa",
            },
            "warnings": {"type": "array", "items": {"type": "string"}},
        },
    },
)

STATUS = schema(
    "ImportStatus",
    {
        "type": "object",
        "required": ["job_id", "status", "progress", "summary"],
        "properties": {
            "job_id": {"type": "integer"},
            "status": {"type": "string"},
            "progress": {"type": "integer"},
            "message": {"type": "string"},
            "error": {"type": "string"},
            "params": {"type": "object"},
            "summary": {
                "type": "object",
                "description": "contadores (bytes, linhas lidas, válidas, rejeitadas, "
                "duplicadas, mescladas, ETA) e, ao fim, o resumo com o "
                "link do relatório de linhas rejeitadas",
            },
        },
    },
)

MAPPING = schema("ImportMapping", {"type": "object", "additionalProperties": {"type": "string"}})

_UPLOAD = path("upload_id", "integer", "Id do arquivo enviado (POST /uploads)", minimum=1)
_JOB = path("job_id", "integer", "Id do job de importação", minimum=1)
_KIND = path("kind", "string", "Tipo de importação", enum=tuple(sorted(imports.KINDS)))


def _options(body: dict[str, Any]) -> imports.ImportOptions:
    fields = (
        "kind",
        "mode",
        "mapping",
        "encoding",
        "separator",
        "decimal",
        "quote",
        "sheet",
        "max_invalid_share",
        "timezone",
    )
    return imports.ImportOptions(**{k: body[k] for k in fields if body.get(k) is not None})


_KIND_LIST = {"type": "array", "items": {"$ref": f"#/components/schemas/{KIND}"}}


@endpoint(
    "GET",
    f"{API_PREFIX}/imports/kinds",
    summary="Tipos de importação",
    tags=["imports"],
    permission="imports.run",
    returns=Returns(200, _KIND_LIST),
    description="Campos de cada tipo, com tipo, obrigatoriedade e limites.",
)
def list_kinds(call: Call) -> list[dict[str, Any]]:
    return [kind.describe() for kind in imports.KINDS.values()]


@endpoint(
    "POST",
    f"{API_PREFIX}/imports/uploads/{{upload_id}}/preview",
    summary="Pré-visualiza um arquivo",
    tags=["imports"],
    permission="imports.run",
    params=[_UPLOAD],
    body=Body(OPTIONS),
    returns=Returns(200, PREVIEW),
    errors=[NotFound, ValidationFailed],
    description="Primeiras linhas como lidas com a codificação, o separador e o separador decimal "
    "detectados (ou os informados), o mapeamento sugerido e cada linha verificada.",
)
def preview_upload(call: Call) -> dict[str, Any]:
    return imports.preview(
        call.session, actor=call.actor, upload_id=call.params["upload_id"], options=_options(call.body)
    )


@endpoint(
    "DELETE",
    f"{API_PREFIX}/imports/uploads/{{upload_id}}",
    summary="Descarta um arquivo enviado",
    tags=["imports"],
    permission="imports.run",
    params=[_UPLOAD],
    returns=Returns(204),
    errors=[NotFound, ValidationFailed],
)
def discard_upload(call: Call) -> Reply:
    imports.discard_upload(call.session, actor=call.actor, upload_id=call.params["upload_id"])
    return Reply(status=204)


@endpoint(
    "POST",
    f"{API_PREFIX}/imports",
    summary="Inicia uma importação",
    tags=["imports"],
    permission="imports.run",
    body=Body(START),
    returns=Returns(202, STATUS, "O job criado", headers={"Location": "URL do acompanhamento"}),
    errors=[NotFound, ValidationFailed, PermissionDenied],
    description="Confere o mapeamento com o cabeçalho do arquivo, guarda-o para a próxima vez e cria o "
    "job `import`. Acompanhe em GET /api/v1/imports/{job_id}.",
)
def start(call: Call) -> Reply:
    body = dict(call.body)
    job = imports.start_import(
        call.session,
        actor=call.actor,
        upload_id=body["upload_id"],
        options=_options(body),
        remember_mapping=body.get("remember_mapping", True),
    )
    call.session.flush()
    status = {
        "job_id": job.id,
        "status": job.status,
        "progress": job.progress,
        "message": job.message,
        "error": "",
        "params": dict(job.params),
        "summary": {},
    }
    return Reply(status, headers={"Location": f"{API_PREFIX}/imports/{job.id}"})


@endpoint(
    "GET",
    f"{API_PREFIX}/imports/{{job_id}}",
    summary="Andamento e resumo de uma importação",
    tags=["imports"],
    permission="jobs.view",
    params=[_JOB],
    returns=Returns(200, STATUS),
    errors=[NotFound],
)
def import_status(call: Call) -> dict[str, Any]:
    return imports.import_status(
        call.session, actor=call.actor, job_id=call.params["job_id"], settings=call.settings
    )


@endpoint(
    "GET",
    f"{API_PREFIX}/imports/{{job_id}}/report",
    summary="Relatório de linhas rejeitadas",
    tags=["imports"],
    permission="jobs.view",
    params=[_JOB],
    returns=Returns(
        303,
        None,
        "Redireciona para o CSV (link assinado e com validade)",
        headers={"Location": "link de download"},
    ),
    errors=[NotFound],
)
def report(call: Call) -> Reply:
    url = imports.report_link(
        call.session, actor=call.actor, job_id=call.params["job_id"], settings=call.settings
    )
    return Reply(status=303, headers={"Location": url})


@endpoint(
    "GET",
    f"{API_PREFIX}/imports/mappings/{{kind}}",
    summary="Mapeamento salvo",
    tags=["imports"],
    permission="imports.run",
    params=[_KIND],
    returns=Returns(200, MAPPING),
)
def get_mapping(call: Call) -> dict[str, str]:
    from engine.imports.service import saved_mapping

    return saved_mapping(call.session, user_id=call.actor.id, kind=call.params["kind"])


@endpoint(
    "PUT",
    f"{API_PREFIX}/imports/mappings/{{kind}}",
    summary="Salva o mapeamento",
    tags=["imports"],
    permission="imports.run",
    params=[_KIND],
    body=Body(MAPPING),
    returns=Returns(200, MAPPING),
    errors=[ValidationFailed],
)
def put_mapping(call: Call) -> dict[str, str]:
    imports.save_mapping(call.session, actor=call.actor, kind=call.params["kind"], mapping=dict(call.body))
    return {k: v for k, v in call.body.items() if v}
