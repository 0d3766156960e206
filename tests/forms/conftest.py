"""Fixtures for forms, drafts and the survey: both draft stores, users of each role, valid form data."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from engine import brazil
from engine.db import session_scope
from engine.draft_stores import DraftStore, RedisDraftStore, get_store, reset_stores
from engine.models import User
from engine.security import hash_password
from engine.settings import Settings, set_settings


def _drop_prefix(redis_url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


# Each store on the database it is deployed with, and the database store on both databases: the Redis store
# keeps only audit rows and versions in the database, so running it on SQLite too would prove nothing more.
COMBINATIONS = [("sqlite", "db"), ("postgresql", "db"), ("postgresql", "redis")]


@pytest.fixture(params=COMBINATIONS, ids=[f"{d}-{s}" for d, s in COMBINATIONS])
def combination(request: pytest.FixtureRequest) -> tuple[str, str]:
    return request.param


@pytest.fixture
def store_kind(combination: tuple[str, str]) -> str:
    return combination[1]


@pytest.fixture
def settings(request: pytest.FixtureRequest, combination: tuple[str, str]) -> Settings:
    """Overrides the root ``settings`` (both databases) with the database of this combination."""
    return request.getfixturevalue("sqlite_settings" if combination[0] == "sqlite" else "pg_settings")


@pytest.fixture
def draft_settings(settings: Settings, store_kind: str, redis_url: str) -> Iterator[Settings]:
    """Settings on each database (via ``settings``) and each draft store; Redis keys under a unique prefix."""
    reset_stores()
    configured = settings.with_overrides(
        checkpoint_storage=store_kind, redis_url=redis_url, queue_name=f"t{uuid.uuid4().hex[:12]}"
    )
    set_settings(configured)
    yield configured
    from engine.drafts import stop_drainers

    stop_drainers()  # the audit journal's threads of this test's store
    if store_kind == "redis":
        _drop_prefix(redis_url, f"oficina:{configured.queue_name}:")
    reset_stores()
    set_settings(settings)


@pytest.fixture
def store(draft_settings: Settings) -> DraftStore:
    return get_store(draft_settings)


def make_settings(draft_settings: Settings, **changes: Any) -> Settings:
    """Same database and store, other limits (the store instance is shared, so keys stay under the prefix)."""
    return draft_settings.with_overrides(**changes)


PASSWORD = "senha-segura-123"
_password_hash: list[str] = []


def password_hash() -> str:
    """One argon2 hash per test process: hashing is deliberately slow and these tests make many users."""
    if not _password_hash:
        _password_hash.append(hash_password(PASSWORD))
    return _password_hash[0]


def add_users(settings: Settings) -> dict[str, User]:
    with session_scope(settings) as s:
        made = {}
        for name, role in (
            ("autor", "staff"),
            ("outro", "staff"),
            ("admin", "admin"),
            ("leitor", "viewer"),
            ("analista", "analyst"),
        ):
            user = User(
                email=f"{name}@oficina.test", name=name.title(), role=role, password_hash=password_hash()
            )
            s.add(user)
            made[name] = user
        s.flush()
    return made


@pytest.fixture
def users(draft_settings: Settings) -> dict[str, User]:
    return add_users(draft_settings)


def redis_client(store: DraftStore) -> Any:
    assert isinstance(store, RedisDraftStore)
    return store.redis


CNPJ_OK = "11.222.333/0001-81"
CNPJ_OTHER = brazil.format_cnpj("45723174000110")
CPF_OK = "529.982.247-25"


def clientes_data(**overrides: Any) -> dict[str, Any]:
    data = {
        "cnpj": CNPJ_OK,
        "razao_social": "Oficina Mecânica Ltda",
        "nome_fantasia": "Oficina",
        "email": "contato@oficina.com.br",
        "telefone": "(11) 91234-5678",
        "guest_code": "CONVITE-1",
        "cep": "01310-100",
        "logradouro": "Avenida Paulista",
        "numero": "1000",
        "complemento": "",
        "bairro": "Bela Vista",
        "cidade": "São Paulo",
        "uf": "SP",
        "contato_nome": "Maria Souza",
        "contato_email": "maria@oficina.com.br",
        "contato_telefone": "",
        "contato_cpf": CPF_OK,
        "contato2_nome": "",
        "contato2_email": "",
    }
    data.update(overrides)
    return data


def processos_data(**overrides: Any) -> dict[str, Any]:
    data = {
        "numero": brazil.format_cnj(brazil.make_cnj(1234, 2024, 8, 26, 100)),
        "tribunal": "TJSP",
        "classe": "Procedimento Comum",
        "assunto": "Cobrança",
        "autor_nome": "Oficina Mecânica Ltda",
        "autor_documento": CNPJ_OK,
        "reu_nome": "João da Silva",
        "reu_documento": CPF_OK,
        "advogado": "Dra. Ana",
        "cliente": CNPJ_OK,
    }
    data.update(overrides)
    return data


def financeiro_data(**overrides: Any) -> dict[str, Any]:
    data = {
        "tipo": "receita",
        "descricao": "Honorários de março",
        "categoria": "honorarios",
        "valor": "1.000,00",
        "vencimento": "31/01/2025",
        "parcelas": "3",
        "cliente": CNPJ_OK,
        "chave_pix": "pix@oficina.com.br",
        "observacoes": "",
    }
    data.update(overrides)
    return data


def pesquisa_data(email: str = "cliente@empresa.com.br", **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "email": email,
        "nome": "Carla",
        "guestCodeResponse": {"guestCode": "CONVITE-1"},
        "satisfacao": "5",
        "recomendaria": "9",
        "atendimento": "Ótimo",
        "pontos_fortes": "Rapidez",
        "melhorias": "",
        "contato_autorizado": True,
    }
    data.update(overrides)
    return data
