"""Where drafts live: a small documented base class and two implementations.

``DatabaseDraftStore`` keeps drafts in the ``drafts`` table (the embedded default, ``CHECKPOINT_STORAGE=db``);
``RedisDraftStore`` keeps each draft in a Redis hash that expires by itself (``CHECKPOINT_STORAGE=redis``).
Both hold the same record (``StoredDraft``): the canonical JSON payload exactly as it was signed, its HMAC,
the metadata, the version used for compare-and-swap, the step, and when a durable version was last written.

Stores know nothing about forms, signatures or permissions: ``engine.drafts`` does that. They guarantee:

* ``put`` is an atomic compare-and-swap on the version: it stores only when the current version (0 when
  there is none, or it expired) equals ``expected_version``;
* an expired draft is never returned;
* ``hit`` counts an event against a sliding-window rate limit and says how long to wait when over it.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from engine.models.drafts import Draft
from engine.settings import Settings

Clock = Callable[[], float]


@dataclass(frozen=True)
class DraftKey:
    """``user_id:form_slug:object_id``: a draft belongs to one user, one form and one object."""

    user_id: int
    form_slug: str
    object_id: str

    def __str__(self) -> str:
        return f"{self.user_id}:{self.form_slug}:{self.object_id}"

    @classmethod
    def parse(cls, text: str) -> DraftKey:
        user_id, form_slug, object_id = text.split(":", 2)
        return cls(int(user_id), form_slug, object_id)


@dataclass
class StoredDraft:
    key: DraftKey
    body: str
    signature: str
    version: int
    step: int
    updated_at: float
    expires_at: float
    meta: dict[str, Any] = field(default_factory=dict)
    versioned_at: float = 0.0

    @property
    def size(self) -> int:
        return len(self.body.encode())


@dataclass(frozen=True)
class PutResult:
    stored: bool
    current_version: int  # the new version when stored, the version found otherwise
    snapshot: str = ""  # why a durable version is due: "first", "step" or "interval"; "" = not due
    journaled: bool = False  # the save's audit row went into the store's journal with it (Redis)

    @property
    def snapshot_due(self) -> bool:
        return bool(self.snapshot)


class DraftStore:
    """Base class. Methods take the caller's ``session`` (the database store writes in the caller's
    transaction, so a draft and its audit row commit together; the Redis store ignores it)."""

    name = "base"
    #: True when drafts are written in the caller's transaction (so their audit rows belong there too).
    in_session = False
    #: True when the store keeps a journal of audit rows written with its saves (``journal_read``...).
    journal = False

    def get(self, session: Session, key: DraftKey) -> StoredDraft | None:
        """The live draft at ``key``, or None (missing or expired)."""
        raise NotImplementedError

    def put(
        self, session: Session, draft: StoredDraft, *, expected_version: int, snapshot_every: float
    ) -> PutResult:
        """Store ``draft`` (whose ``version`` is the new one) only if the current version equals
        ``expected_version``. ``snapshot`` says why a durable version is due (``first``: there was no
        draft; ``step``: the step changed; ``interval``: the last one is ``snapshot_every`` seconds old), and
        ``versioned_at`` is then reset; it is empty when none is due."""
        raise NotImplementedError

    def delete(self, session: Session, key: DraftKey, *, expected_version: int | None = None) -> bool:
        """Remove the draft (only at ``expected_version`` when given). True when something was removed."""
        raise NotImplementedError

    def list_user(self, session: Session, user_id: int) -> list[StoredDraft]:
        """The user's live drafts, newest first. ``body`` may be left empty."""
        raise NotImplementedError

    def list_all(self, session: Session) -> list[StoredDraft]:
        """Every live draft (admins see that drafts exist), newest first, ``body`` left empty."""
        raise NotImplementedError

    def sweep(self, session: Session) -> int:
        """Delete expired drafts and stale index entries; the number removed."""
        raise NotImplementedError

    def hit(self, bucket: str, *, limit: int, window: float) -> float:
        """Count one event in ``bucket``: 0 when allowed, else the seconds until one is allowed again
        (a refused event is not counted)."""
        raise NotImplementedError

    def hit_and_put(
        self,
        session: Session,
        draft: StoredDraft,
        *,
        expected_version: int,
        snapshot_every: float,
        bucket: str,
        limit: int,
        window: float,
        audit_row: str = "",
    ) -> tuple[float, PutResult | None]:
        """``hit(bucket)`` and, only when it is allowed, ``put(draft)``: ``(0, result)``, or ``(wait, None)``
        when the rate limit refuses (nothing is then stored or counted). Stores that can do both in one
        step (Redis: one script, one round trip) override this; the order and outcomes stay the same.

        ``audit_row`` (``audit.journal_row``): a store with a journal writes it with the draft when no durable
        version is due and says so in ``PutResult.journaled``; the others ignore it (the caller writes it)."""
        wait = self.hit(bucket, limit=limit, window=window)
        if wait > 0:
            return wait, None
        return 0.0, self.put(session, draft, expected_version=expected_version, snapshot_every=snapshot_every)

    def ping(self) -> None:
        """Raise when the store cannot be reached."""
        raise NotImplementedError


class MemoryRateLimiter:
    """Sliding-window limits in this process (each web process limits its own clients)."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._events: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def hit(self, bucket: str, *, limit: int, window: float) -> float:
        now = self._clock()
        with self._lock:
            events = self._events[bucket]
            while events and now - events[0] >= window:
                events.popleft()
            if len(events) >= limit:
                return max(0.001, window - (now - events[0]))
            events.append(now)
            if len(self._events) > 100_000:  # forget idle buckets so memory stays bounded
                for name in [b for b, ev in self._events.items() if not ev or now - ev[-1] >= window]:
                    del self._events[name]
            return 0.0


def _ts(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


class DatabaseDraftStore(DraftStore):
    name = "db"
    in_session = True

    def __init__(self, *, clock: Clock = time.time, limiter: MemoryRateLimiter | None = None) -> None:
        self.clock = clock
        self.limiter = limiter or MemoryRateLimiter()

    _columns = (
        Draft.key,
        Draft.body,
        Draft.signature,
        Draft.version,
        Draft.step,
        Draft.updated_at,
        Draft.expires_at,
        Draft.meta,
        Draft.versioned_at,
    )

    @staticmethod
    def _row(row: Any) -> StoredDraft:
        return StoredDraft(
            key=DraftKey.parse(row.key),
            body=row.body,
            signature=row.signature,
            version=row.version,
            step=row.step,
            updated_at=row.updated_at.timestamp(),
            expires_at=row.expires_at.timestamp(),
            meta=dict(row.meta or {}),
            versioned_at=row.versioned_at or 0.0,
        )

    def get(self, session: Session, key: DraftKey) -> StoredDraft | None:
        row = session.execute(
            select(*self._columns).where(Draft.key == str(key), Draft.expires_at > _ts(self.clock()))
        ).first()
        return self._row(row) if row else None

    def put(
        self, session: Session, draft: StoredDraft, *, expected_version: int, snapshot_every: float
    ) -> PutResult:
        now = self.clock()
        k = str(draft.key)
        found = session.execute(
            select(Draft.version, Draft.step, Draft.versioned_at, Draft.expires_at).where(Draft.key == k)
        ).first()
        live = found is not None and found.expires_at.timestamp() > now
        current = found.version if live else 0
        if current != expected_version:
            return PutResult(False, current)
        if not live:
            snapshot = "first"
        elif found.step != draft.step:
            snapshot = "step"
        elif now - (found.versioned_at or 0) >= snapshot_every:
            snapshot = "interval"
        else:
            snapshot = ""
        values = dict(
            body=draft.body,
            signature=draft.signature,
            version=draft.version,
            step=draft.step,
            meta=draft.meta,
            size=draft.size,
            updated_at=_ts(draft.updated_at),
            expires_at=_ts(draft.expires_at),
            versioned_at=now if snapshot else (found.versioned_at or 0.0),
        )
        if found is not None:
            # The version predicate makes the swap atomic: a concurrent writer leaves rowcount at 0.
            done = session.execute(
                update(Draft)
                .where(Draft.key == k, Draft.version == found.version)
                .values(**values)
                .execution_options(synchronize_session=False)
            ).rowcount
        else:
            inserted = session.execute(
                self._insert(session)
                .values(
                    key=k,
                    user_id=draft.key.user_id,
                    form_slug=draft.key.form_slug,
                    object_id=draft.key.object_id,
                    **values,
                )
                .on_conflict_do_nothing()
                .returning(Draft.__table__.c.id)
            ).first()
            done = 1 if inserted is not None else 0
        if done != 1:
            again = self.get(session, draft.key)
            return PutResult(False, again.version if again else 0)
        return PutResult(True, draft.version, snapshot)

    @staticmethod
    def _insert(session: Session) -> Any:
        if session.get_bind().dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        else:
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        return dialect_insert(Draft.__table__)

    def delete(self, session: Session, key: DraftKey, *, expected_version: int | None = None) -> bool:
        query = delete(Draft).where(Draft.key == str(key))
        if expected_version is not None:
            query = query.where(Draft.version == expected_version)
        return session.execute(query.execution_options(synchronize_session=False)).rowcount > 0

    def _list(self, session: Session, *filters: Any) -> list[StoredDraft]:
        columns = [c for c in self._columns if c is not Draft.body]
        rows = session.execute(
            select(*columns)
            .where(Draft.expires_at > _ts(self.clock()), *filters)
            .order_by(Draft.updated_at.desc())
        ).all()
        return [
            StoredDraft(
                key=DraftKey.parse(r.key),
                body="",
                signature=r.signature,
                version=r.version,
                step=r.step,
                updated_at=r.updated_at.timestamp(),
                expires_at=r.expires_at.timestamp(),
                meta=dict(r.meta or {}),
                versioned_at=r.versioned_at or 0.0,
            )
            for r in rows
        ]

    def list_user(self, session: Session, user_id: int) -> list[StoredDraft]:
        return self._list(session, Draft.user_id == user_id)

    def list_all(self, session: Session) -> list[StoredDraft]:
        return self._list(session)

    def sweep(self, session: Session) -> int:
        return session.execute(
            delete(Draft)
            .where(Draft.expires_at <= _ts(self.clock()))
            .execution_options(synchronize_session=False)
        ).rowcount

    def hit(self, bucket: str, *, limit: int, window: float) -> float:
        return self.limiter.hit(bucket, limit=limit, window=window)

    def ping(self) -> None:
        return None

    def count(self, session: Session) -> int:
        return session.scalar(select(func.count(Draft.id))) or 0


# Redis ---------------------------------------------------------------------------------------------------

_PUT = """
local cur = redis.call('HMGET', KEYS[1], 'v', 'st', 'va')
local curv = tonumber(cur[1]) or 0
if curv ~= tonumber(ARGV[1]) then return {0, curv, 0, 0} end
local now = tonumber(ARGV[7])
local va = tonumber(cur[3]) or 0
local snap = 0
if curv == 0 then snap = 3
elseif cur[2] ~= ARGV[6] then snap = 1
elseif now - va >= tonumber(ARGV[9]) then snap = 2 end
if snap > 0 then va = now end
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'b', ARGV[3], 's', ARGV[4], 'm', ARGV[5], 'st', ARGV[6],
           'u', ARGV[7], 'va', string.format('%.6f', va), 'e', ARGV[11])
redis.call('PEXPIRE', KEYS[1], ARGV[8])
redis.call('ZADD', KEYS[2], ARGV[11], ARGV[10])
redis.call('ZADD', KEYS[3], ARGV[11], ARGV[10])
local journaled = 0
if snap == 0 and ARGV[16] and ARGV[16] ~= '' and redis.call('XLEN', KEYS[5]) < tonumber(ARGV[17]) then
  redis.call('XADD', KEYS[5], '*', 'r', ARGV[16])
  journaled = 1
end
return {1, tonumber(ARGV[2]), snap, journaled}
"""

_DELETE = """
if ARGV[1] ~= '' then
  local cur = tonumber(redis.call('HGET', KEYS[1], 'v')) or 0
  if cur ~= tonumber(ARGV[1]) then return 0 end
end
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZREM', KEYS[3], ARGV[2])
return redis.call('DEL', KEYS[1])
"""

_HIT = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return tostring(tonumber(oldest[2]) + window - now)
end
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000))
return '0'
"""

# _HIT on KEYS[4] with ARGV[12..15], then (only when allowed) _PUT: the save's two checks in one round trip.
# Returns {-1, 0, 0, wait} when the rate limit refuses, else _PUT's answer. With an audit row in ARGV[16],
# _PUT appends it to the journal stream KEYS[5] when it stores and no durable version is due (that save's row
# goes to the database with its version, in one transaction) and the journal holds fewer than ARGV[17] rows;
# its answer's fourth item says whether it did.
_HIT_AND_PUT = """
local rnow = tonumber(ARGV[12])
local window = tonumber(ARGV[13])
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', rnow - window)
if redis.call('ZCARD', KEYS[4]) >= tonumber(ARGV[14]) then
  local oldest = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
  return {-1, 0, 0, tostring(tonumber(oldest[2]) + window - rnow)}
end
redis.call('ZADD', KEYS[4], rnow, ARGV[15])
redis.call('PEXPIRE', KEYS[4], math.ceil(window * 1000))
""" + _PUT

_REFUSE = """
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return redis.call('XDEL', KEYS[1], ARGV[1])
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class _LeanScript:
    """A registered Lua script called on a connection of the calling thread's own, past redis-py's client,
    pool, retry and reply layers: the command is packed by hiredis, written to the connection's socket and its
    reply read by a hiredis reader of the thread's own (two thirds of the CPU of a call through the client's
    connection, which was itself a third of a call through the client).

    The connection is redis-py's (it connects, authenticates, selects the database and sets timeouts as the
    client would). Whatever this path cannot do goes through the client as before: a script the server does
    not know (NOSCRIPT after a restart) or a server still loading its data is left to it (it loads the script,
    or waits and retries), and a connection error or a connection closed before it answered drops the thread's
    connection and leaves the retry and reconnect to it. A timeout once the command was sent is raised
    (``TimeoutError``), not retried: the script may have run, and running it again would count the rate limit
    twice and lose the durable version it marked as written. Other error replies are raised as the client
    raises them (``ResponseError`` and its subclasses), the connection kept. RESP3 pushes are skipped."""

    def __init__(self, client: Any, script: Any) -> None:
        import hiredis
        from redis import exceptions
        from redis._parsers.base import BaseParser

        self.client = client
        self.script = script
        self._local = threading.local()
        self._pack = hiredis.pack_command
        self._reply_error = hiredis.ReplyError
        self._parse_error = BaseParser.parse_error
        encoder = client.get_encoder()
        self._reader_options = (
            {"encoding": encoder.encoding, "errors": encoder.encoding_errors} if encoder.decode_responses else {}
        )
        self._new_reader = hiredis.Reader
        self._push = hiredis.PushNotification
        self._not_run = (exceptions.NoScriptError, exceptions.ConnectionError)  # BusyLoadingError is one
        self._timeout = exceptions.TimeoutError
        self._timeouts = (exceptions.TimeoutError, TimeoutError)  # socket.timeout is TimeoutError
        self._dropped = (exceptions.ConnectionError, OSError)

    def _connection(self) -> Any:
        owned = getattr(self._local, "owned", None)
        if owned is None or owned[0] != os.getpid():  # a forked child never shares its parent's socket
            owned = self._local.owned = (os.getpid(), self.client.connection_pool.make_connection())
        return owned[1]

    def _socket_and_reader(self, conn: Any) -> tuple[Any, Any]:
        if conn._sock is None:
            conn.connect()
        sock = conn._sock
        if getattr(self._local, "sock", None) is not sock:  # a new connection: a reader with nothing pending
            self._local.sock, self._local.reader = sock, self._new_reader(**self._reader_options)
        return sock, self._local.reader

    def __call__(self, *, keys: list[str], args: list[Any]) -> Any:
        conn = self._connection()
        sent = False
        try:
            sock, reader = self._socket_and_reader(conn)
            sock.sendall(self._pack(("EVALSHA", self.script.sha, len(keys), *keys, *args)))
            sent = True
            while True:
                reply = reader.gets()
                if reply is False:
                    chunk = sock.recv(65536)
                    if not chunk:  # closed before any reply: the server had dropped the idle connection
                        raise ConnectionError("Redis fechou a conexão")
                    reader.feed(chunk)
                elif not isinstance(reply, self._push):  # RESP3 pushes (invalidations, notices) are not it
                    break
        except self._timeouts as exc:
            self._drop(conn)
            if sent:  # the script may have run: running it again could count or apply the save twice
                raise self._timeout("Redis não respondeu a tempo ao salvamento do rascunho.") from exc
            return self.script(keys=keys, args=args)
        except self._dropped:
            self._drop(conn)
            return self.script(keys=keys, args=args)
        except BaseException:  # e.g. interrupted between send and read: never leave a reply unread
            self._drop(conn)
            raise
        if isinstance(reply, self._reply_error):
            error = self._parse_error(str(reply))
            if isinstance(error, self._not_run):  # NOSCRIPT, LOADING: the script did not run; the client
                return self.script(keys=keys, args=args)  # loads it or waits and retries
            raise error
        return reply

    def _drop(self, conn: Any) -> None:
        conn.disconnect()
        self._local.sock = self._local.reader = None


_SNAPSHOT_REASONS = ("", "step", "interval", "first")
#: Past this many rows waiting in the journal (the database unreachable for long), saves write their audit row
#: to the database before answering again, as they do without a journal: Redis memory stays bounded.
JOURNAL_MAX_ROWS = 100_000
_META_FIELDS = ("v", "s", "m", "st", "u", "va", "e")


class RedisDraftStore(DraftStore):
    """Each draft is a hash ``{prefix}d:{key}`` with a TTL; sorted sets index them per user and overall
    (scored by expiry, pruned on read and by ``sweep``). Compare-and-swap and rate limits are Lua scripts,
    so they are atomic across every web process sharing the Redis."""

    name = "redis"
    journal = True

    def __init__(self, client: Any, *, prefix: str = "oficina:drafts:", clock: Clock = time.time) -> None:
        self.redis = client
        self.prefix = prefix
        self.clock = clock
        self._put = _LeanScript(client, client.register_script(_PUT))
        self._delete = client.register_script(_DELETE)
        self._hit = client.register_script(_HIT)
        self._hit_and_put = _LeanScript(client, client.register_script(_HIT_AND_PUT))
        self._refuse = client.register_script(_REFUSE)
        self._release = client.register_script(_RELEASE)
        self._seq = 0
        self._seq_lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> RedisDraftStore:
        import redis

        return cls(redis.Redis.from_url(url, decode_responses=True, health_check_interval=30), **kwargs)

    def _hkey(self, key: DraftKey | str) -> str:
        return f"{self.prefix}d:{key}"

    def _ukey(self, user_id: int) -> str:
        return f"{self.prefix}u:{user_id}"

    @property
    def _allkey(self) -> str:
        return f"{self.prefix}all"

    @staticmethod
    def _decode(key: DraftKey, h: dict[str, str], body: str = "") -> StoredDraft:
        return StoredDraft(
            key=key,
            body=h.get("b", body),
            signature=h.get("s", ""),
            version=int(h.get("v", 0)),
            step=int(h.get("st", 0)),
            updated_at=float(h.get("u", 0)),
            expires_at=float(h.get("e", 0)),
            meta=json.loads(h.get("m") or "{}"),
            versioned_at=float(h.get("va", 0)),
        )

    def get(self, session: Session, key: DraftKey) -> StoredDraft | None:
        h = self.redis.hgetall(self._hkey(key))
        if not h or "v" not in h:
            return None
        return self._decode(key, h)

    def _put_keys(self, draft: StoredDraft) -> list[str]:
        return [self._hkey(draft.key), self._ukey(draft.key.user_id), self._allkey]

    @staticmethod
    def _put_args(draft: StoredDraft, expected_version: int, snapshot_every: float) -> list[Any]:
        ttl_ms = max(1, int(round((draft.expires_at - draft.updated_at) * 1000)))
        return [
            expected_version,
            draft.version,
            draft.body,
            draft.signature,
            orjson.dumps(draft.meta).decode(),  # texts and an integer TTL, read back by json.loads
            draft.step,
            f"{draft.updated_at:.6f}",
            ttl_ms,
            snapshot_every,
            str(draft.key),
            f"{draft.expires_at:.6f}",
        ]

    def put(
        self, session: Session, draft: StoredDraft, *, expected_version: int, snapshot_every: float
    ) -> PutResult:
        stored, version, snap, _ = self._put(
            keys=self._put_keys(draft), args=self._put_args(draft, expected_version, snapshot_every)
        )
        return PutResult(bool(stored), int(version), _SNAPSHOT_REASONS[int(snap)])

    def hit_and_put(
        self,
        session: Session,
        draft: StoredDraft,
        *,
        expected_version: int,
        snapshot_every: float,
        bucket: str,
        limit: int,
        window: float,
        audit_row: str = "",
    ) -> tuple[float, PutResult | None]:
        now = self.clock()
        answer = self._hit_and_put(
            keys=[*self._put_keys(draft), f"{self.prefix}r:{bucket}", self.journal_key],
            args=[
                *self._put_args(draft, expected_version, snapshot_every),
                f"{now:.6f}",
                window,
                limit,
                self._member(now),
                audit_row,
                JOURNAL_MAX_ROWS,
            ],
        )
        if int(answer[0]) < 0:
            return max(0.001, float(answer[3])), None
        stored, version, snap, journaled = answer
        return 0.0, PutResult(bool(stored), int(version), _SNAPSHOT_REASONS[int(snap)], bool(journaled))

    @property
    def journal_key(self) -> str:
        """The stream of audit rows written with their saves, waiting to be drained into the database."""
        return f"{self.prefix}audit"

    def journal_read(self, count: int) -> list[tuple[str, bytes | None]]:
        """The oldest ``count`` journal entries: (entry id, the entry's bytes, None when it has none), read as
        bytes whatever was written there (decoded, bytes that are not UTF-8 would fail the whole read)."""
        entries = self.redis.execute_command("XRANGE", self.journal_key, "-", "+", "COUNT", count,
                                             NEVER_DECODE=True)
        return [(entry_id.decode(), fields.get(b"r")) for entry_id, fields in entries]

    def journal_remove(self, entry_ids: list[str]) -> None:
        if entry_ids:
            self.redis.xdel(self.journal_key, *entry_ids)

    def journal_length(self) -> int:
        return int(self.redis.xlen(self.journal_key))

    @property
    def journal_refused_key(self) -> str:
        """A hash of the entries that could not be written (entry id -> entry bytes), kept for an admin."""
        return f"{self.journal_key}:refused"

    def journal_refuse(self, entry_id: str, entry: bytes | None) -> None:
        """Move an entry out of the journal into ``journal_refused_key``, in one step (done twice, once)."""
        self._refuse(keys=[self.journal_key, self.journal_refused_key], args=[entry_id, entry or b""])

    def journal_lease(self, seconds: float) -> str | None:
        """The right to drain the journal for ``seconds`` (one drainer at a time across processes), or None
        while another holds it."""
        token = os.urandom(8).hex()
        taken = self.redis.set(f"{self.journal_key}:lease", token, nx=True, px=max(1, int(seconds * 1000)))
        return token if taken else None

    def journal_release(self, token: str) -> None:
        self._release(keys=[f"{self.journal_key}:lease"], args=[token])

    def delete(self, session: Session, key: DraftKey, *, expected_version: int | None = None) -> bool:
        removed = self._delete(
            keys=[self._hkey(key), self._ukey(key.user_id), self._allkey],
            args=["" if expected_version is None else expected_version, str(key)],
        )
        return int(removed) > 0

    def _list(self, index: str) -> list[StoredDraft]:
        now = self.clock()
        self.redis.zremrangebyscore(index, "-inf", now)
        members = self.redis.zrangebyscore(index, now, "+inf")
        if not members:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for member in members:
            pipe.hmget(self._hkey(member), *_META_FIELDS)
        drafts = []
        for member, values in zip(members, pipe.execute(), strict=True):
            h = {k: v for k, v in zip(_META_FIELDS, values, strict=True) if v is not None}
            if "v" in h:
                drafts.append(self._decode(DraftKey.parse(member), h))
        return sorted(drafts, key=lambda d: d.updated_at, reverse=True)

    def list_user(self, session: Session, user_id: int) -> list[StoredDraft]:
        return self._list(self._ukey(user_id))

    def list_all(self, session: Session) -> list[StoredDraft]:
        return self._list(self._allkey)

    def sweep(self, session: Session) -> int:
        """Redis expires drafts itself; this prunes the indexes of what expired."""
        now = self.clock()
        removed = int(self.redis.zremrangebyscore(self._allkey, "-inf", now))
        for ukey in self.redis.scan_iter(match=f"{self.prefix}u:*", count=500):
            self.redis.zremrangebyscore(ukey, "-inf", now)
        return removed

    def _member(self, now: float) -> str:
        """A unique sorted-set member for one counted event."""
        with self._seq_lock:
            self._seq += 1
            return f"{now:.6f}:{id(self)}:{self._seq}"

    def hit(self, bucket: str, *, limit: int, window: float) -> float:
        member = self._member(self.clock())
        wait = self._hit(
            keys=[f"{self.prefix}r:{bucket}"], args=[f"{self.clock():.6f}", window, limit, member]
        )
        return max(0.0, float(wait))

    def ping(self) -> None:
        self.redis.ping()


_stores: dict[tuple[str, str, str], DraftStore] = {}
_stores_lock = threading.Lock()


def get_store(settings: Settings) -> DraftStore:
    """The process-wide store chosen by ``CHECKPOINT_STORAGE`` (Redis keys are prefixed by ``QUEUE_NAME`` so
    deployments sharing a Redis stay apart)."""
    ident = (settings.checkpoint_storage, settings.redis_url, settings.queue_name)
    with _stores_lock:
        store = _stores.get(ident)
        if store is None:
            if settings.checkpoint_storage == "redis":
                store = RedisDraftStore.from_url(
                    settings.redis_url, prefix=f"oficina:{settings.queue_name}:drafts:"
                )
            else:
                store = DatabaseDraftStore()
            _stores[ident] = store
        return store


def reset_stores() -> None:
    """Forget the process-wide stores (tests that change settings)."""
    with _stores_lock:
        _stores.clear()
