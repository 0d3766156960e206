"""The parsers of engine's capability commands (``oficina backup``, ``drafts``, ``processos``, ``import``...).

They live here, not in the capability modules, so that building the parser loads nothing heavy: each
command's function is imported only when that command runs (``lazy``). ``oficina --help`` and the light
commands start without polars, httpx, boto3 or Huey."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable

Command = Callable[[argparse.Namespace], int | None]

# What ``oficina import`` offers; tests check them against engine.imports (KINDS, MODES).
IMPORT_KINDS = ("clientes", "leituras")
IMPORT_MODES = ("insert", "upsert", "replace")


def lazy(target: str) -> Command:
    """The command ``module:function``, imported when it runs."""
    module, _, name = target.partition(":")

    def run(args: argparse.Namespace) -> int | None:
        return getattr(importlib.import_module(module), name)(args)

    run.__name__ = run.__qualname__ = name
    return run


def register_backups(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("backup", help="back up the database to blob storage now (prints id, key, sha256)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=lazy("engine.backups:cmd_backup"))

    p = sub.add_parser("restore", help="restore a backup after verifying its checksum (replaces ALL data)")
    p.add_argument("backup", metavar="BACKUP_ID", help="backup id (see `oficina backups`) or its storage key")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.add_argument("--target-url", default=None, help="restore into this database instead of DATABASE_URL")
    p.set_defaults(func=lazy("engine.backups:cmd_restore"))

    p = sub.add_parser("backups", help="list backups, newest first")
    p.add_argument("--json", action="store_true", help="print JSON lines")
    p.add_argument("--storage", action="store_true",
                   help="list the dumps found in blob storage instead (e.g. after losing the database)")
    p.set_defaults(func=lazy("engine.backups:cmd_backups"))


def register_drafts(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("drafts", help="form drafts (rascunhos)")
    dsub = p.add_subparsers(dest="drafts_command", required=True)
    c = dsub.add_parser("list", help="list a user's drafts (never their content)")
    c.add_argument("--user", required=True, metavar="EMAIL")
    c.add_argument("--json", action="store_true", help="print JSON lines")
    c.set_defaults(func=lazy("engine.drafts:cmd_list"))
    c = dsub.add_parser("sweep", help="delete expired drafts, old versions and expired survey progress")
    c.set_defaults(func=lazy("engine.drafts:cmd_sweep"))


def register_documents(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("processos", help="court processes and their documents")
    psub = p.add_subparsers(dest="processos_command", required=True)
    f = psub.add_parser("fetch", help="look a process up and download its documents in the background")
    f.add_argument("numero", help="CNJ number, masked or 20 digits")
    f.add_argument(
        "--refresh", action="store_true", help="ask the court again; fetch new or failed documents"
    )
    f.add_argument("--webhook-url", default=None, help="notify this URL when the download ends")
    f.add_argument("--no-download", action="store_true", help="store the metadata only")
    f.add_argument("--wait", action="store_true", help="wait for the job and print the final status")
    f.add_argument("--timeout", type=float, default=600, help="seconds to wait with --wait")
    f.set_defaults(func=lazy("engine.documents:cmd_fetch"))

    s = psub.add_parser("status", help="print the download status of a process as JSON")
    s.add_argument("numero")
    s.set_defaults(func=lazy("engine.documents:cmd_status"))

    c = sub.add_parser("court-simulator", help="serve the PDPJ-like court API simulator (demo and tests)")
    c.add_argument("--port", type=int, default=8790)
    c.add_argument("--host", default="127.0.0.1")
    c.add_argument("--latency-ms", type=int, default=0)
    c.add_argument("--error-rate", type=float, default=0.0, help="fraction of requests answered 429/5xx")
    c.add_argument("--truncate-rate", type=float, default=0.0, help="fraction of documents cut short")
    c.add_argument("--documents", type=int, default=None, help="documents per process (default 3-9)")
    c.add_argument("--document-size", type=int, default=None, help="bytes per document (default varies)")
    c.add_argument("--print-token", action="store_true", help="print a token the simulator accepts and exit")
    c.set_defaults(func=lazy("engine.documents:cmd_court_simulator"))


def register_imports(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import",
        help="importa um arquivo CSV ou XLSX (leituras, clientes)",
        description="Importa FILE pelo worker (ou no próprio processo com --inline) e imprime o "
        "resumo em JSON. Código de saída 1 quando o arquivo é recusado.",
    )
    p.add_argument("file", metavar="FILE")
    p.add_argument("--kind", required=True, choices=IMPORT_KINDS)
    p.add_argument(
        "--mode",
        default="insert",
        choices=IMPORT_MODES,
        help="insert: só chaves novas; upsert: atualiza as existentes; replace: substitui as linhas "
        "das chaves presentes",
    )
    p.add_argument("--encoding", help="utf-8, latin-1, cp1252 ou utf-16 (padrão: detectada)")
    p.add_argument("--separator", help="separador do CSV (padrão: detectado)")
    p.add_argument("--decimal", choices=[",", "."], help="separador decimal (padrão: detectado)")
    p.add_argument("--sheet", help="planilha do XLSX (padrão: a primeira)")
    p.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="COLUMN=FIELD",
        help="liga a coluna do arquivo ao campo (pode repetir)",
    )
    p.add_argument(
        "--max-invalid-share",
        type=float,
        default=1.0,
        help="recusa o arquivo se a fração de linhas inválidas passar disto (0 a 1; padrão 1)",
    )
    p.add_argument("--timezone", default="America/Sao_Paulo", help="fuso de datas sem fuso")
    p.add_argument("--inline", action="store_true", help="roda no próprio processo, sem worker")
    p.add_argument(
        "--wait-start",
        type=float,
        default=20.0,
        help="segundos esperando um worker pegar o job antes de desistir (padrão 20)",
    )
    p.add_argument("--quiet", action="store_true", help="sem progresso no stderr")
    p.set_defaults(func=lazy("engine.imports.handler:cmd_import"))
