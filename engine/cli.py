"""The `oficina` command line.

Subcommands come from the ``oficina.cli`` entry points: engine registers its own here, ``jobs`` adds
``worker`` and ``dashboard`` adds ``serve``, so each layer keeps its imports to itself. A command
function gets the parsed arguments and returns an exit code; an ``EngineError`` becomes a one-line
message on stderr and exit code 1 (2 for usage errors), never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points
from typing import Any

from engine import commands
from engine.errors import EngineError
from engine.settings import get_settings


def register_engine_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("db", help="database migrations")
    dbsub = p.add_subparsers(dest="db_command", required=True)
    dbsub.add_parser("upgrade", help="apply every pending migration").set_defaults(func=cmd_db_upgrade)

    p = sub.add_parser("user", help="manage users")
    usub = p.add_subparsers(dest="user_command", required=True)
    c = usub.add_parser("create", help="create a user (password from stdin, or generated and printed)")
    c.add_argument("email")
    c.add_argument("--role", required=True, choices=["admin", "staff", "analyst", "viewer"])
    c.add_argument("--name", default="")
    c.set_defaults(func=cmd_user_create)

    p = sub.add_parser("token", help="API tokens")
    tsub = p.add_subparsers(dest="token_command", required=True)
    c = tsub.add_parser("create", help="create a token for a user and print it (shown once)")
    c.add_argument("email")
    c.add_argument("--name", default="cli")
    c.set_defaults(func=cmd_token_create)

    p = sub.add_parser("jobs", help="list background jobs")
    p.add_argument("--status", choices=["queued", "running", "succeeded", "failed", "cancelled"])
    p.add_argument("--kind")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true", help="print JSON lines")
    p.set_defaults(func=cmd_jobs)

    p = sub.add_parser("sweep", help="re-enqueue jobs whose worker stopped")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("demo-admin", help="create the demo admin when there are no users")
    p.set_defaults(func=cmd_demo_admin)

    p = sub.add_parser("run", help="migrate, create the demo admin, start simulator, worker and web server")
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--simulator-port", type=int, default=8790)
    p.set_defaults(func=cmd_run)

    # The capabilities' own commands: their parsers are light, their modules load when a command runs.
    for register in (commands.register_backups, commands.register_drafts, commands.register_documents,
                     commands.register_imports):
        register(sub)


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from engine.migrate import upgrade

    upgrade(get_settings())
    print("Banco de dados atualizado.")
    return 0


def cmd_user_create(args: argparse.Namespace) -> int:
    from engine import accounts
    from engine.db import session_scope
    from engine.security import SYSTEM

    password = None
    if not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\n") or None
    with session_scope() as s:
        user, generated = accounts.create_user(s, actor=SYSTEM, email=args.email, role=args.role,
                                               password=password, name=args.name)
        print(f"Usuário {user.email} criado com perfil {user.role}.")
        if generated:
            print(f"Senha gerada (mostrada uma única vez): {generated}")
    return 0


def cmd_token_create(args: argparse.Namespace) -> int:
    from engine import accounts
    from engine.db import session_scope
    from engine.errors import NotFound
    from engine.security import SYSTEM

    with session_scope() as s:
        user = accounts.get_user_by_email(s, email=args.email)
        if user is None:
            raise NotFound(f"Usuário {args.email} não encontrado.", entity="user", key=args.email)
        _, clear = accounts.create_token(s, actor=SYSTEM, user_id=user.id, name=args.name)
    print(clear)
    return 0


def job_summary(job: Any) -> dict[str, Any]:
    return {"id": job.id, "kind": job.kind, "status": job.status, "progress": job.progress,
            "message": job.message, "attempts": job.attempts,
            "created_at": job.created_at.isoformat() if job.created_at else None,
            "finished_at": job.finished_at.isoformat() if job.finished_at else None}


def cmd_jobs(args: argparse.Namespace) -> int:
    from engine import jobs
    from engine.db import session_scope
    from engine.security import SYSTEM

    with session_scope() as s:
        rows, total = jobs.list_jobs(s, actor=SYSTEM, status=args.status, kind=args.kind, limit=args.limit)
        for job in rows:
            if args.json:
                print(json.dumps(job_summary(job), ensure_ascii=False))
            else:
                print(f"{job.id:>6}  {job.kind:<12} {job.status:<10} {job.progress:>3}%  {job.message}")
        if not args.json:
            print(f"{len(rows)} de {total} jobs")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from engine.jobs import sweep_stale_jobs

    print(json.dumps(sweep_stale_jobs()))
    return 0


def cmd_demo_admin(args: argparse.Namespace) -> int:
    from engine import accounts
    from engine.db import session_scope

    with session_scope() as s:
        created = accounts.ensure_demo_admin(s)
    if created:
        user, password = created
        print(f"Administrador de demonstração: {user.email}  senha: {password}  (mostrada uma única vez)")
    else:
        print("Já existem usuários; nenhum administrador de demonstração criado.")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Everything on one machine (`make run`): Ctrl-C stops every child cleanly."""
    import os
    import signal
    import subprocess
    import time

    from engine.migrate import upgrade

    def stop(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    # Ctrl-C and `kill` both stop every child. Installing the handlers also undoes an inherited "ignore
    # SIGINT" (a shell's background job), which the children would otherwise inherit too.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, stop)
    settings = get_settings()
    upgrade(settings)
    cmd_demo_admin(args)
    exe = [sys.executable, "-m", "engine.cli"]
    env = dict(os.environ)
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    available = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    if not settings.court_api_url and "court-simulator" in available:
        env["COURT_API_URL"] = f"http://127.0.0.1:{args.simulator_port}"
        children.append(("simulador", subprocess.Popen([*exe, "court-simulator", "--port",
                                                        str(args.simulator_port)], env=env)))
    children.append(("worker", subprocess.Popen([*exe, "worker"], env=env)))
    serve = [*exe, "serve"] + (["--port", str(args.port)] if args.port else [])
    children.append(("web", subprocess.Popen(serve, env=env)))
    port = args.port or settings.web_port
    print(f"Oficina rodando em http://localhost:{port}  (Ctrl-C para parar)", flush=True)
    exit_code = 0
    try:
        while True:
            for name, proc in children:
                if proc.poll() is not None:
                    print(f"erro: o processo {name} terminou (código {proc.returncode}); parando tudo.",
                          file=sys.stderr)
                    exit_code = 1
                    raise KeyboardInterrupt
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for _name, proc in children:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 15
        for _name, proc in children:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
    return exit_code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="oficina", description="Oficina: operations dashboard and engine.")
    sub = parser.add_subparsers(dest="command", required=True)
    for ep in sorted(entry_points(group="oficina.cli"), key=lambda e: e.name):
        ep.load()(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except EngineError as exc:
        print(f"erro: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
