"""Benchmark: REST draft saves against Redis, next to a bare SETEX handler on the same server stack.

    .venv/bin/python bench/drafts.py [--clients 32] [--seconds 10] [--rounds 2]

What it does, in one run:

* creates a throwaway PostgreSQL database (``TEST_PG_ADMIN_URL``, default the local server), migrates it,
  creates one staff user and API token per client;
* starts the real API in a child process (``dashboard.api`` routes, ``CHECKPOINT_STORAGE=redis`` on
  ``TEST_REDIS_URL``, keys under a unique prefix) plus one extra route, ``POST /bench/setex``: an
  ``ObservedHandler`` (same request id, metrics and access log as every API call) that runs, in the same
  thread pool the API uses, only ``SET key body EX ttl`` (SETEX) of the request body;
* drives both with ``--clients`` concurrent keep-alive HTTP clients from this process, alternating rounds
  (bare, full, bare, full...) of ``--seconds`` each after a warm-up, and prints throughput, p50/p99 latency
  and the full/bare ratio.

A full save is: bearer-token lookup, endpoint permission, JSON-schema validation of the body, form check
(types, bounds, field statuses), canonical JSON, size limit, HMAC-SHA256, then one Redis Lua script doing the
per-user rate limit (raised so that it counts without refusing: the deployment's 10 saves per user per minute
would stop a benchmark), the compare-and-swap and the audit row (into the audit journal, which a thread of the
server drains into PostgreSQL); and, when one is due (the clients change step every 50 saves), a durable version
committed with that save's audit row before the answer.

Not a timed test: it prints figures. Keep the machine otherwise idle for meaningful numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

PAYLOAD_DATA = {
    "cnpj": "11.222.333/0001-81",
    "razao_social": "Oficina Mecânica Exemplo Ltda",
    "nome_fantasia": "Oficina",
    "email": "contato@oficina.com.br",
    "telefone": "(11) 91234-5678",
    "cep": "01310-100",
    "logradouro": "Avenida Paulista",
    "numero": "1000",
    "complemento": "conjunto 12",
    "bairro": "Bela Vista",
    "cidade": "São Paulo",
    "uf": "SP",
    "contato_nome": "Maria Souza",
    "contato_email": "maria@oficina.com.br",
}


# Server side (child process) ------------------------------------------------------------------------------


def serve(port: int) -> None:
    import tornado.ioloop
    from tornado.web import Application

    from dashboard import api, web
    from dashboard.api import drafts as _drafts  # noqa: F401  (registers the draft endpoints)
    from engine.logs import configure_logging
    from engine.settings import Settings, set_settings

    settings = Settings.from_environ()
    set_settings(settings)
    configure_logging(settings)
    import logging

    logging.getLogger("oficina.access").setLevel(
        logging.WARNING
    )  # same for both handlers; keeps stdout quiet
    import redis

    client = redis.Redis.from_url(settings.redis_url)
    prefix = f"oficina:{settings.queue_name}:bare:"
    ttl = settings.checkpoint_ttl_seconds

    class BareSetexHandler(web.ObservedHandler):
        def check_xsrf_cookie(self) -> None:
            return None

        async def post(self) -> None:
            body = self.request.body
            key = prefix + (self.request.headers.get("X-Bench-Client") or "0")
            await web.run_blocking(
                lambda: client.set(key, body, ex=ttl), pool="api", workers=max(4, settings.web_threads * 2)
            )
            self.write_json({"ok": True})

    routes = [
        (r"/bench/setex", BareSetexHandler, {"config": settings, "route": "/bench/setex"}),
        *web.routes(settings),
        *api.routes(settings),
    ]
    application = Application(routes)
    web.settle_heap()  # as the real server does once it is built
    application.listen(port, address="127.0.0.1")
    print("ready", flush=True)
    tornado.ioloop.IOLoop.current().start()


# Client side --------------------------------------------------------------------------------------------


class Connection:
    """A minimal keep-alive HTTP/1.1 client on asyncio streams: a load generator must cost far less CPU than
    the server it measures (httpx costs about as much per request as the bare handler itself)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Length: {len(body)}\r\n"
            f"{head}\r\n".encode()
            + body
        )
        assert self.reader is not None
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length = next(
            int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:")
        )
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def drive(
    host: str, port: int, *, clients: int, seconds: float, tokens: list[str], full: bool, versions: list[int]
) -> tuple[list[float], int, int]:
    latencies: list[float] = []
    errors = 0
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker(i: int) -> None:
        nonlocal errors, done
        conn = Connection(host, port)
        headers = {
            "Authorization": f"Bearer {tokens[i]}",
            "Content-Type": "application/json",
            "X-Bench-Client": str(i),
        }
        n = 0
        try:
            while time.perf_counter() < deadline:
                n += 1
                data = dict(PAYLOAD_DATA, complemento=f"conjunto {n}")
                if full:
                    body = {
                        "form_slug": "clientes",
                        "object_id": f"bench-{i}",
                        "payload": {"data": data, "step": (n // 50) % 3},
                        "version": versions[i],
                    }
                    path = "/api/v1/drafts/save"
                else:
                    body = {"data": data, "step": (n // 50) % 3}
                    path = "/bench/setex"
                started = time.perf_counter()
                status, answer = await conn.post(path, json.dumps(body).encode(), headers)
                latencies.append(time.perf_counter() - started)
                if status == 200:
                    done += 1
                    if full:
                        versions[i] = json.loads(answer)["payload"]["version"]
                else:
                    errors += 1
                    if errors <= 3:
                        print(f"  unexpected {status}: {answer[:200]!r}", file=sys.stderr)
        finally:
            conn.close()

    await asyncio.gather(*(worker(i) for i in range(clients)))
    return latencies, done, errors


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def report(
    name: str, latencies: list[float], done: int, errors: int, seconds: float, cpu: float
) -> dict[str, float]:
    ordered = sorted(latencies)
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000
    rps = done / seconds
    per = cpu / max(1, done) * 1e6
    print(
        f"  {name:<22} {rps:8.0f} req/s   p50 {p50:6.1f} ms   p99 {p99:6.1f} ms   errors {errors}   "
        f"server CPU {per:5.0f} us/request"
    )
    return {"rps": rps, "p50": p50, "p99": p99, "cpu_us": per}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return

    import redis

    from engine import accounts
    from engine.db import dispose_engines, session_scope
    from engine.migrate import upgrade
    from engine.security import SYSTEM
    from engine.settings import Settings
    from tests.databases import throwaway_database

    queue_name = f"bench{uuid.uuid4().hex[:8]}"
    database = ExitStack()
    db_url = database.enter_context(throwaway_database("oficina_bench"))
    name = db_url.rsplit("/", 1)[1]
    env = {
        "OFICINA_ENV": "test",
        "SECRET_KEY": "bench-secret-key-that-is-long-enough-0123456789",
        "DATABASE_URL": db_url,
        "REDIS_URL": REDIS_URL,
        "CHECKPOINT_STORAGE": "redis",
        "QUEUE_NAME": queue_name,
        "CHECKPOINT_RATE_LIMIT_PER_MINUTE": "100000000",
        "LOG_JSON": "false",
        "LOG_LEVEL": "WARNING",
        "OFICINA_DATA_DIR": f"/tmp/{name}",
    }
    proc = None
    try:
        settings = Settings.from_environ(env)
        upgrade(settings)
        tokens = []
        with session_scope(settings) as s:
            for i in range(args.clients):
                user, _ = accounts.create_user(
                    s,
                    actor=SYSTEM,
                    email=f"bench{i}@oficina.test",
                    role="staff",
                    password="bench-password-123",
                )
                tokens.append(accounts.create_token(s, actor=SYSTEM, user_id=user.id, name="bench")[1])
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(port)],
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        versions = [0] * args.clients
        print(
            f"{args.clients} clients, {args.seconds:.0f} s per round, PostgreSQL + Redis, one server process "
            f"(web threads {settings.web_threads})"
        )
        asyncio.run(
            drive(
                "127.0.0.1",
                port,
                clients=args.clients,
                seconds=2,
                tokens=tokens,
                full=False,
                versions=versions,
            )
        )
        asyncio.run(
            drive(
                "127.0.0.1",
                port,
                clients=args.clients,
                seconds=2,
                tokens=tokens,
                full=True,
                versions=versions,
            )
        )
        results: dict[str, list[dict[str, float]]] = {"bare": [], "full": []}
        for r in range(args.rounds):
            print(f"round {r + 1}")
            for kind in ("bare", "full"):
                cpu_before = cpu_seconds(proc.pid)
                lat, done, errors = asyncio.run(
                    drive(
                        "127.0.0.1",
                        port,
                        clients=args.clients,
                        seconds=args.seconds,
                        tokens=tokens,
                        full=kind == "full",
                        versions=versions,
                    )
                )
                label = "bare SETEX handler" if kind == "bare" else "full draft save"
                cpu = cpu_seconds(proc.pid) - cpu_before
                results[kind].append(report(label, lat, done, errors, args.seconds, cpu))
        bare = statistics.mean(x["rps"] for x in results["bare"])
        full = statistics.mean(x["rps"] for x in results["full"])
        p99 = max(x["p99"] for x in results["full"])
        cpu_ratio = statistics.mean(x["cpu_us"] for x in results["full"]) / statistics.mean(
            x["cpu_us"] for x in results["bare"]
        )
        print(f"\nserver CPU per request, full / bare: {cpu_ratio:.2f}x")
        print(
            f"full / bare throughput: {full / bare:.0%} (target >= 60%);  full save p99 (worst round): "
            f"{p99:.1f} ms (target < 25 ms)"
        )
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
        dispose_engines()
        database.close()
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=f"oficina:{queue_name}:*", count=1000))
        if keys:
            client.delete(*keys)


if __name__ == "__main__":
    main()
