"""A PDPJ-like court API simulator: a real HTTP server for demo mode, tests and benchmarks.

It speaks the same API as the real service (``/api/v2/processos/{numero}`` and
``/api/v2/processos/{numero}/documentos/{id}/binario``), checks a JWT bearer token, and answers with
documents that are deterministic per process number: the same número always lists the same documents
with the same bytes, so a test can compute the expected checksum without asking the server.

Faults are configurable, globally (``latency_ms``, ``error_rate``, ``truncate_rate``, ``slow_body_ms``)
or scripted per request path for deterministic tests (``CourtSimulator.script``). Every request is kept
in ``CourtSimulator.requests`` so tests can count what the client really asked for.

Run it alone with ``oficina court-simulator [--port P] [--latency-ms N] [--error-rate R]``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
import re
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

import jwt

from engine.brazil import format_cnj, parse_cnj

# The secret of the demo token: the simulator is a toy, never a real authority.
DEMO_JWT_SECRET = "oficina-simulador-pdpj-demo-nao-use-em-producao"
DEMO_SCOPE = "processos:read"
CHUNK = 64 * 1024

_TYPES = [
    ("Petição Inicial", "peticao"),
    ("Procuração", "procuracao"),
    ("Documentos Pessoais", "anexo"),
    ("Despacho", "despacho"),
    ("Contestação", "contestacao"),
    ("Réplica", "peticao"),
    ("Decisão Interlocutória", "decisao"),
    ("Laudo Pericial", "laudo"),
    ("Ata de Audiência", "ata"),
    ("Sentença", "sentenca"),
    ("Certidão de Publicação", "certidao"),
    ("Acórdão", "acordao"),
]
_CLASSES = [
    "Procedimento Comum Cível",
    "Execução de Título Extrajudicial",
    "Cumprimento de Sentença",
    "Reclamação Trabalhista",
    "Mandado de Segurança Cível",
    "Ação Civil Pública",
]
_ASSUNTOS = [
    "Indenização por Dano Moral",
    "Rescisão do Contrato de Trabalho",
    "Cobrança de Aluguéis",
    "Fornecimento de Energia Elétrica",
    "Obrigação de Fazer",
    "Responsabilidade Civil",
]
_NAMES = [
    "Ana Souza",
    "Bruno Lima",
    "Carla Mendes",
    "Diego Rocha",
    "Eduarda Nunes",
    "Fábio Teixeira",
    "Metalúrgica Paulista Ltda",
    "Comércio Boa Vista S.A.",
    "Transportes Ipiranga Ltda",
]
_UF = [
    "",
    "AC",
    "AL",
    "AP",
    "AM",
    "BA",
    "CE",
    "DF",
    "ES",
    "GO",
    "MA",
    "MT",
    "MS",
    "MG",
    "PA",
    "PB",
    "PR",
    "PE",
    "PI",
    "RJ",
    "RN",
    "RS",
    "RO",
    "RR",
    "SC",
    "SE",
    "SP",
    "TO",
]


def tribunal_sigla(numero: str) -> str:
    """The court's acronym from the J.TR part of a CNJ number (TJSP, TRT2, TRF3...)."""
    j, tr = numero[13], int(numero[14:16])
    if j == "8":
        return f"TJ{_UF[tr]}" if 0 < tr < len(_UF) else f"TJ{tr:02d}"
    return {
        "4": f"TRF{tr}",
        "5": f"TRT{tr}",
        "6": f"TRE{tr:02d}",
        "1": "STF",
        "3": "STJ",
        "7": f"CJM{tr}",
        "9": f"TJM{tr:02d}",
        "2": "CNJ",
    }.get(j, f"J{j}{tr:02d}")


def demo_token(
    *, secret: str = DEMO_JWT_SECRET, scope: str = DEMO_SCOPE, ttl_seconds: int = 12 * 3600
) -> str:
    """A JWT the simulator accepts (demo mode and tests)."""
    now = datetime.now(UTC)
    claims = {"sub": "oficina", "scope": scope, "iat": now, "exp": now + timedelta(seconds=ttl_seconds)}
    return jwt.encode(claims, secret, algorithm="HS256")


# Deterministic content --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SimulatedDocument:
    id: str
    nome: str
    tipo: str
    tamanho: int
    data: str


def _rng(*parts: object) -> random.Random:
    seed = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return random.Random(int.from_bytes(seed[:8], "big"))


def _pdf_head(numero: str, doc: SimulatedDocument) -> bytes:
    """A tiny valid one-page PDF naming the process and the document."""
    text = f"Processo {format_cnj(numero)} - {doc.nome}".encode("latin-1", "replace").replace(b"(", b"[")
    text = text.replace(b")", b"]")
    stream = b"BT /F1 14 Tf 50 780 Td (" + text + b") Tj ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


@functools.lru_cache(maxsize=64)
def _padding_block(numero: str, doc_id: str) -> bytes:
    """64 KiB of PDF comment lines after %%EOF: deterministic filler that viewers ignore."""
    line = b"%" + hashlib.sha256(f"{numero}/{doc_id}".encode()).hexdigest().encode() * 2 + b"\n"
    return (line * (CHUNK // len(line) + 1))[:CHUNK]


def document_chunks(numero: str, doc: SimulatedDocument, *, chunk_size: int = CHUNK):
    """The document's bytes, ``doc.tamanho`` of them, in chunks (never all in memory)."""
    head = _pdf_head(numero, doc)[: doc.tamanho]
    yield head
    remaining = doc.tamanho - len(head)
    block = _padding_block(numero, doc.id)
    while remaining > 0:
        piece = block[: min(remaining, chunk_size, len(block))]
        remaining -= len(piece)
        yield piece


@functools.lru_cache(maxsize=4096)
def document_sha256(numero: str, doc: SimulatedDocument) -> str:
    digest = hashlib.sha256()
    for chunk in document_chunks(numero, doc):
        digest.update(chunk)
    return digest.hexdigest()


# Configuration and scripted faults ---------------------------------------------------------------------


@dataclass
class Fault:
    """One scripted answer. ``kind``: status (answer ``status`` with ``headers``), truncate (promise the
    full length, send half, drop the connection), short (send half with a matching length: only the
    size or checksum tells), corrupt (right length, wrong bytes), slow (pause ``seconds`` mid-body),
    hang (pause ``seconds`` before answering)."""

    kind: str = "status"
    status: int = 503
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class SimulatorConfig:
    latency_ms: int = 0
    error_rate: float = 0.0
    truncate_rate: float = 0.0
    slow_body_ms: int = 0
    jwt_secret: str = DEMO_JWT_SECRET
    require_token: bool = True
    documents_per_process: int | None = None
    document_size: int | None = None
    seed: int = 0
    missing: frozenset[str] = frozenset()


class CourtSimulator:
    """The simulator's state: configuration, deterministic catalogue, scripted faults, request log."""

    CATALOGUE_CACHE = 256  # processes whose document list is kept in memory

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.config = config or SimulatorConfig()
        self.requests: list[dict[str, Any]] = []
        self._scripts: list[tuple[re.Pattern[str], deque[Fault]]] = []
        self._lock = threading.Lock()
        self._random = random.Random(self.config.seed)
        self._catalogues: dict[
            tuple[str, int, int | None, int | None],
            tuple[tuple[SimulatedDocument, ...], dict[str, SimulatedDocument]],
        ] = {}
        self.server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # Catalogue -------------------------------------------------------------------------------------
    def _catalogue(self, numero: str) -> tuple[tuple[SimulatedDocument, ...], dict[str, SimulatedDocument]]:
        """The process's documents (and by id), built once per número and catalogue settings: building
        them costs milliseconds of CPU for a long list, which every binary request would otherwise pay
        while holding the GIL, adding latency to the other requests in flight."""
        key = (numero, self.config.seed, self.config.documents_per_process, self.config.document_size)
        with self._lock:
            cached = self._catalogues.get(key)
        if cached is None:
            docs = tuple(self._build_documents(numero))
            cached = (docs, {d.id: d for d in docs})
            with self._lock:
                self._catalogues[key] = cached
                while len(self._catalogues) > self.CATALOGUE_CACHE:
                    self._catalogues.pop(next(iter(self._catalogues)))
        return cached

    def documents(self, numero: str) -> list[SimulatedDocument]:
        return list(self._catalogue(numero)[0])

    def _build_documents(self, numero: str) -> list[SimulatedDocument]:
        rng = _rng("docs", numero, self.config.seed)
        count = self.config.documents_per_process or rng.randint(3, 9)
        start = datetime(2020, 1, 6, 9, tzinfo=UTC) + timedelta(days=rng.randint(0, 1200))
        docs = []
        for index in range(count):
            label, tipo = _TYPES[index % len(_TYPES)] if index < len(_TYPES) else rng.choice(_TYPES)
            nome = f"{label}.pdf" if index < len(_TYPES) else f"{label} {index + 1}.pdf"
            size = self.config.document_size or rng.randint(6_000, 240_000)
            doc_id = f"{int(numero[:7]) % 9973:04d}{index + 1:05d}"
            when = start + timedelta(days=index * rng.randint(3, 40), minutes=rng.randint(0, 600))
            docs.append(
                SimulatedDocument(
                    id=doc_id,
                    nome=nome,
                    tipo=tipo,
                    tamanho=size,
                    data=when.isoformat().replace("+00:00", "Z"),
                )
            )
        return docs

    def find_document(self, numero: str, doc_id: str) -> SimulatedDocument | None:
        return self._catalogue(numero)[1].get(doc_id)

    def exists(self, numero: str) -> bool:
        return numero not in self.config.missing and not numero[:7].endswith("404")

    def metadata(self, numero: str) -> dict[str, Any]:
        rng = _rng("meta", numero, self.config.seed)
        docs = self.documents(numero)
        partes = [
            {"polo": "ativo", "nome": rng.choice(_NAMES)},
            {"polo": "passivo", "nome": rng.choice(_NAMES)},
        ]
        return {
            "numeroProcesso": numero,
            "numeroFormatado": format_cnj(numero),
            "tribunal": tribunal_sigla(numero),
            "grau": "G1",
            "classe": {"codigo": 7 + rng.randint(0, 900), "nome": rng.choice(_CLASSES)},
            "assuntos": [{"codigo": 10_000 + rng.randint(0, 9000), "nome": rng.choice(_ASSUNTOS)}],
            "orgaoJulgador": f"{rng.randint(1, 45)}ª Vara Cível",
            "dataAjuizamento": docs[0].data if docs else None,
            "partes": partes,
            "documentos": [
                {
                    "id": d.id,
                    "nome": d.nome,
                    "tipo": d.tipo,
                    "tamanho": d.tamanho,
                    "data": d.data,
                    "hash": "sha256:" + document_sha256(numero, d),
                }
                for d in docs
            ],
        }

    # Faults ----------------------------------------------------------------------------------------
    def script(self, path_pattern: str, *faults: Fault) -> None:
        """Answer the next requests whose path matches ``path_pattern`` (regex) with ``faults`` in order."""
        with self._lock:
            self._scripts.append((re.compile(path_pattern), deque(faults)))

    def clear_scripts(self) -> None:
        with self._lock:
            self._scripts.clear()

    def _next_fault(self, path: str) -> Fault | None:
        with self._lock:
            for pattern, queue in self._scripts:
                if queue and pattern.search(path):
                    return queue.popleft()
        return None

    def _random_fault(self, *, binary: bool) -> Fault | None:
        with self._lock:
            roll = self._random.random()
            if roll < self.config.error_rate:
                status = self._random.choice([500, 502, 503, 429])
                headers = {"Retry-After": "0"} if status in (429, 503) else {}
                return Fault("status", status, headers)
            if binary and self._random.random() < self.config.truncate_rate:
                return Fault("truncate")
        return None

    # Request log -----------------------------------------------------------------------------------
    def log(self, **entry: Any) -> dict[str, Any]:
        """Record a request as it arrives (its status is filled in when the answer is sent)."""
        with self._lock:
            self.requests.append(entry)
        return entry

    def count(self, path_contains: str = "", *, status: int | None = None) -> int:
        with self._lock:
            return sum(
                1
                for r in self.requests
                if path_contains in r["path"] and (status is None or r["status"] == status)
            )

    def reset_log(self) -> None:
        with self._lock:
            self.requests.clear()

    # Serving ---------------------------------------------------------------------------------------
    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve in a background thread; returns the base URL."""
        handler = type("BoundHandler", (_Handler,), {"simulator": self})
        self.server = _Server((host, port), handler)
        self._thread = threading.Thread(
            target=self.server.serve_forever, args=(0.05,), name="court-simulator", daemon=True
        )
        self._thread.start()
        return self.url

    @property
    def url(self) -> str:
        assert self.server is not None, "simulator not started"
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def serve_forever(self, host: str = "127.0.0.1", port: int = 8790) -> None:
        handler = type("BoundHandler", (_Handler,), {"simulator": self})
        self.server = _Server((host, port), handler)
        self.server.serve_forever()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


_ROUTE = re.compile(r"^/api/v2/processos/(?P<numero>[^/]+)(?:/documentos/(?P<doc>[^/]+)/binario)?/?$")


class _Handler(BaseHTTPRequestHandler):
    simulator: CourtSimulator
    protocol_version = "HTTP/1.1"
    server_version = "PDPJ-Simulador/2"
    disable_nagle_algorithm = True  # headers and body go out as separate writes: no 40 ms delayed-ACK stall

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        return  # the simulator keeps its own request log

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        sim = self.simulator
        path = unquote(urlsplit(self.path).path)
        started = time.monotonic()
        entry = sim.log(method="GET", path=path, status=None, at=time.time(), seconds=None)
        entry["status"] = self._dispatch(sim, path)
        entry["seconds"] = round(time.monotonic() - started, 4)

    def _dispatch(self, sim: CourtSimulator, path: str) -> int:
        if path in ("/health", "/api/v2/health"):
            return self._json(200, {"status": "ok"})
        match = _ROUTE.match(path)
        if match is None:
            return self._json(404, {"erro": "Recurso inexistente."})
        if sim.config.latency_ms:
            time.sleep(sim.config.latency_ms / 1000)
        denied = self._check_token(sim)
        if denied:
            return denied
        binary = match["doc"] is not None
        fault = sim._next_fault(path) or sim._random_fault(binary=binary)
        if fault is not None and fault.kind == "hang":
            time.sleep(fault.seconds)
            fault = None
        if fault is not None and fault.kind == "status":
            return self._json(fault.status, {"erro": f"Falha simulada {fault.status}."}, fault.headers)
        try:
            numero = parse_cnj(match["numero"])
        except ValueError as exc:
            return self._json(400, {"erro": str(exc)})
        if not sim.exists(numero):
            return self._json(404, {"erro": f"Processo {format_cnj(numero)} não encontrado."})
        if not binary:
            return self._json(200, sim.metadata(numero))
        doc = sim.find_document(numero, match["doc"])
        if doc is None:
            return self._json(404, {"erro": f"Documento {match['doc']} não encontrado."})
        return self._send_document(sim, numero, doc, fault)

    def _check_token(self, sim: CourtSimulator) -> int | None:
        if not sim.config.require_token:
            return None
        header = self.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return self._json(401, {"erro": "Token ausente."}, {"WWW-Authenticate": "Bearer"})
        try:
            claims = jwt.decode(
                header[7:], sim.config.jwt_secret, algorithms=["HS256"], options={"require": ["exp"]}
            )
        except jwt.PyJWTError as exc:
            return self._json(
                401, {"erro": f"Token inválido: {exc}."}, {"WWW-Authenticate": 'Bearer error="invalid_token"'}
            )
        if DEMO_SCOPE not in str(claims.get("scope", "")).split():
            return self._json(403, {"erro": f"O token não tem o escopo {DEMO_SCOPE}."})
        return None

    def _send_document(
        self, sim: CourtSimulator, numero: str, doc: SimulatedDocument, fault: Fault | None
    ) -> int:
        kind = fault.kind if fault else ""
        declared = doc.tamanho
        cut = doc.tamanho // 2 if kind in ("truncate", "short") else None
        self.send_response(200)
        self.send_header("Content-Type", "application/pdf")
        self.send_header("Content-Disposition", f"attachment; filename*=UTF-8''{doc.id}.pdf")
        self.send_header("Content-Length", str(cut if kind == "short" else declared))
        self.end_headers()
        sent = 0
        try:
            for chunk in document_chunks(numero, doc):
                if cut is not None and sent + len(chunk) >= cut:
                    chunk = chunk[: cut - sent]
                if kind == "corrupt" and sent == 0:
                    chunk = bytes([chunk[0] ^ 0xFF]) + chunk[1:]
                self.wfile.write(chunk)
                sent += len(chunk)
                if kind == "slow" and sent >= declared // 2 and fault is not None:
                    self.wfile.flush()
                    time.sleep(fault.seconds)
                    kind = ""
                if sim.config.slow_body_ms and sent < declared:
                    self.wfile.flush()
                    time.sleep(sim.config.slow_body_ms / 1000)
                if cut is not None and sent >= cut:
                    break
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            return 499
        if kind == "truncate":
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return 206
        return 200

    def _json(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> int:
        data = json.dumps(body, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        return status
