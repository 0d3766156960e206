"""Blob storage: where files live (court documents, imports, reports, chart exports, backups).

``BlobStorage`` documents the port; two implementations follow it:

* ``LocalBlobStorage`` -- a directory (``settings.blob_dir``) with HMAC-signed, expiring download links
  that the web app serves itself (``dashboard/blobs.py``);
* ``S3BlobStorage`` -- S3 or any S3-compatible store through boto3, with SigV4 presigned links.

``get_storage(settings)`` picks S3 when ``S3_BUCKET`` is set and the local directory otherwise.

Every method streams: ``put`` reads its source in chunks while computing the size and the SHA-256,
``open`` returns a reader to consume in chunks. No method holds a whole file in memory (``put_bytes`` and
``get_bytes`` are conveniences for small payloads).

Keys are ``/``-separated relative paths (``processos/0000001-.../documentos/7/peticao.pdf``). They are
validated the same way for every implementation, so a key that works on the local directory works on S3 and
the other way round: no empty, ``.`` or ``..`` segment, no leading ``/``, no backslash, NUL or control
character, at most 1024 bytes in total and 255 per segment, and not under the reserved ``.oficina-`` prefix.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import mimetypes
import os
import re
import tempfile
import threading
import time
import unicodedata
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote, urlencode

from engine.errors import (
    Conflict,
    ExternalServiceError,
    NotFound,
    PayloadTooLarge,
    ValidationFailed,
)
from engine.security import sign, verify_signature
from engine.settings import Settings

CHUNK_SIZE = 1024 * 1024
MAX_KEY_BYTES = 1024
MAX_SEGMENT_BYTES = 255
MAX_SIGNED_URL_SECONDS = 7 * 24 * 3600  # SigV4 presigned URLs cannot live longer than a week
SIGNATURE_PURPOSE = "blob"
RESERVED_PREFIX = ".oficina-"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

__all__ = [
    "BlobInfo", "BlobNotFound", "BlobStorage", "LocalBlobStorage", "S3BlobStorage", "content_disposition",
    "get_storage", "guess_content_type", "make_s3_client", "sanitize_filename", "validate_key",
]


class BlobNotFound(NotFound):
    """The key has no blob."""


@dataclass(frozen=True)
class BlobInfo:
    """What the store knows about one blob.

    ``sha256`` is the hex digest of the content; listings may leave it ``None`` when the store does not
    return it cheaply (S3 listings): call ``stat`` for it."""

    key: str
    size: int
    sha256: str | None
    content_type: str | None = None
    modified_at: datetime | None = None


# Keys and names ----------------------------------------------------------------------------------------

def _invalid(key: object, reason: str) -> ValidationFailed:
    return ValidationFailed(f"Chave de arquivo inválida ({reason}): {key!r}.",
                            errors=[{"field": "key", "message": reason}], key=str(key)[:200])


def validate_key(key: object) -> str:
    """Return ``key`` when it is a safe, portable blob key; raise ``ValidationFailed`` otherwise."""
    if not isinstance(key, str):
        raise _invalid(key, "a chave precisa ser texto")
    if not key:
        raise _invalid(key, "chave vazia")
    if "\\" in key:
        raise _invalid(key, "barra invertida não é permitida")
    if _CONTROL.search(key):
        raise _invalid(key, "caracteres de controle não são permitidos")
    if key.startswith("/"):
        raise _invalid(key, "caminho absoluto não é permitido")
    try:
        encoded = key.encode("utf-8")
    except UnicodeEncodeError:
        raise _invalid(key, "texto UTF-8 inválido") from None
    if len(encoded) > MAX_KEY_BYTES:
        raise _invalid(key, f"mais de {MAX_KEY_BYTES} bytes")
    segments = key.split("/")
    for segment in segments:
        if segment in {"", ".", ".."}:
            raise _invalid(key, "segmento vazio, '.' ou '..'")
        if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
            raise _invalid(key, f"segmento com mais de {MAX_SEGMENT_BYTES} bytes")
    if segments[0].startswith(RESERVED_PREFIX):
        raise _invalid(key, f"o prefixo {RESERVED_PREFIX!r} é reservado")
    return key


def _validate_prefix(prefix: object) -> str:
    if prefix == "":
        return ""
    if not isinstance(prefix, str):
        raise _invalid(prefix, "o prefixo precisa ser texto")
    # A prefix is a key that may end in "/" or in the middle of a segment.
    validate_key(prefix[:-1] if prefix.endswith("/") and len(prefix) > 1 else prefix)
    return prefix


def guess_content_type(key: str) -> str:
    return mimetypes.guess_type(key, strict=False)[0] or "application/octet-stream"


def sanitize_filename(name: str | None, *, default: str = "download") -> str:
    """A file name safe for a Content-Disposition header: no path, quotes, control characters or
    leading dots, at most 200 characters."""
    if not name:
        return default
    name = unicodedata.normalize("NFC", str(name))
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = _CONTROL.sub("", name).replace('"', "").replace(";", "_").strip().lstrip(".").strip()
    if len(name) > 200:
        stem, dot, ext = name.rpartition(".")
        name = (stem[: 200 - len(ext) - 1] + dot + ext) if dot and len(ext) <= 16 else name[:200]
    return name or default


def content_disposition(filename: str | None, *, inline: bool = False) -> str:
    """``attachment; filename="ascii"; filename*=UTF-8''percent-encoded`` (RFC 6266 / 5987)."""
    kind = "inline" if inline else "attachment"
    if not filename:
        return kind
    name = sanitize_filename(filename)
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode() or "download"
    ascii_name = ascii_name.replace('"', "")
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


# Streaming helpers -------------------------------------------------------------------------------------

def _copy_hashing(source: BinaryIO, target: BinaryIO, *, max_size: int | None = None,
                  on_chunk: Callable[[int], None] | None = None) -> tuple[int, str]:
    """Copy ``source`` into ``target`` in chunks; return (size, sha256 hex)."""
    digest = hashlib.sha256()
    size = 0
    while True:
        chunk = source.read(CHUNK_SIZE)
        if not chunk:
            break
        if not isinstance(chunk, bytes | bytearray | memoryview):
            raise ValidationFailed("O conteúdo precisa ser binário (abra o arquivo com 'rb').",
                                   errors=[{"field": "stream", "message": "fluxo de texto"}])
        size += len(chunk)
        if max_size is not None and size > max_size:
            raise PayloadTooLarge(f"O arquivo passa do limite de {max_size} bytes.", size=size,
                                  limit=max_size)
        digest.update(chunk)
        target.write(chunk)
        if on_chunk is not None:
            on_chunk(len(chunk))
    return size, digest.hexdigest()


def _check_expires_in(expires_in: int | None, default: int) -> int:
    value = default if expires_in is None else expires_in
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SIGNED_URL_SECONDS:
        raise ValidationFailed(
            f"Validade do link deve ser de 1 a {MAX_SIGNED_URL_SECONDS} segundos, recebido {value!r}.",
            errors=[{"field": "expires_in", "message": "fora do intervalo"}])
    return value


# The port ----------------------------------------------------------------------------------------------

class BlobStorage:
    """Base class of blob stores. Implementations must be safe to use from several threads."""

    default_ttl: int = 3600

    def put(self, key: str, stream: BinaryIO, *, content_type: str | None = None,
            max_size: int | None = None, on_progress: Callable[[int], None] | None = None) -> BlobInfo:
        """Store the bytes read from ``stream`` (read in chunks until EOF) under ``key``, replacing any blob
        there. The new content becomes visible at once and completely, or not at all. ``content_type``
        defaults to a guess from the key. With ``max_size`` a larger stream raises ``PayloadTooLarge`` and
        nothing is stored. ``on_progress(n)`` is called with the size of each chunk read.
        Returns the key, size and SHA-256 computed while streaming."""
        raise NotImplementedError

    def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> BlobInfo:
        """``put`` for a small in-memory payload."""
        return self.put(key, io.BytesIO(data), content_type=content_type)

    def open(self, key: str) -> BinaryIO:
        """A binary reader of the blob, to read in chunks and close (use it as a context manager).
        Raises ``BlobNotFound`` when there is none."""
        raise NotImplementedError

    def get_bytes(self, key: str) -> bytes:
        """The whole content of a small blob."""
        with self.open(key) as reader:
            return reader.read()

    def exists(self, key: str) -> bool:
        """Whether a blob is stored under ``key``."""
        return self.stat(key) is not None

    def stat(self, key: str) -> BlobInfo | None:
        """Size, SHA-256 and content type of the blob, or ``None`` when there is none."""
        raise NotImplementedError

    def delete(self, key: str) -> None:
        """Remove the blob. Deleting a missing key is not an error."""
        raise NotImplementedError

    def list(self, prefix: str = "") -> Iterator[BlobInfo]:
        """Blobs whose key starts with ``prefix`` (a plain string prefix, as on S3), in key order."""
        raise NotImplementedError

    def signed_url(self, key: str, *, expires_in: int | None = None, filename: str | None = None) -> str:
        """An absolute URL that downloads the blob without logging in, valid ``expires_in`` seconds
        (default ``default_ttl``, at most 7 days). With ``filename`` the browser saves it under that name."""
        raise NotImplementedError

    def ping(self) -> None:
        """Raise ``ExternalServiceError`` when the store cannot be reached or written (health checks)."""
        raise NotImplementedError

    def describe(self) -> str:
        """Where the blobs live, for logs and health pages."""
        return type(self).__name__


# Local directory ---------------------------------------------------------------------------------------

class LocalBlobStorage(BlobStorage):
    """Blobs as files under ``root``. Writes go to a temporary file in ``root/.oficina-tmp`` and are moved
    into place with ``os.replace`` (atomic on one filesystem). Size, SHA-256 and content type are kept in
    a small JSON sidecar under ``root/.oficina-meta`` and recomputed when the file changed behind our back.
    Download links point to ``{public_url}/blobs/{key}`` and are checked by ``verify_signed``."""

    TMP_DIR = RESERVED_PREFIX + "tmp"
    META_DIR = RESERVED_PREFIX + "meta"

    def __init__(self, root: str | Path, secret_key: str, public_url: str, *,
                 default_ttl: int = 3600) -> None:
        if not secret_key:
            raise ValidationFailed("O armazenamento local precisa de SECRET_KEY para assinar links.")
        self.root = Path(root).resolve()
        self.secret_key = secret_key
        self.public_url = public_url.rstrip("/")
        self.default_ttl = default_ttl

    def describe(self) -> str:
        return f"diretório {self.root}"

    # paths
    def _path(self, key: str) -> Path:
        return self.root.joinpath(*validate_key(key).split("/"))

    def _meta_path(self, key: str) -> Path:
        parts = key.split("/")
        return self.root.joinpath(self.META_DIR, *parts[:-1], parts[-1] + ".json")

    def _tmp_dir(self) -> Path:
        path = self.root / self.TMP_DIR
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _inside_root(self, path: Path) -> bool:
        # A symlink planted in the blob directory must not lead reads outside of it.
        real = os.path.realpath(path)
        return real.startswith(str(self.root) + os.sep)

    # writing
    def put(self, key: str, stream: BinaryIO, *, content_type: str | None = None,
            max_size: int | None = None, on_progress: Callable[[int], None] | None = None) -> BlobInfo:
        path = self._path(key)
        content_type = content_type or guess_content_type(key)
        tmp = self._tmp_dir() / f"{uuid.uuid4().hex}.part"
        try:
            with open(tmp, "wb") as out:
                size, digest = _copy_hashing(stream, out, max_size=max_size, on_chunk=on_progress)
                out.flush()
                os.fsync(out.fileno())
            st = tmp.stat()
            meta = {"size": size, "sha256": digest, "content_type": content_type, "mtime_ns": st.st_mtime_ns}
            self._move_into_place(tmp, path, key)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        self._write_meta(key, meta)
        return BlobInfo(key=key, size=size, sha256=digest, content_type=content_type,
                        modified_at=datetime.fromtimestamp(st.st_mtime, UTC))

    def _move_into_place(self, tmp: Path, path: Path, key: str) -> None:
        for _attempt in range(3):  # a concurrent delete may prune the parent directory in between
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                if path.is_dir():
                    raise Conflict(f"A chave {key!r} é uma pasta de outros arquivos.", entity="blob", key=key)
                os.replace(tmp, path)
                return
            except (FileExistsError, NotADirectoryError):
                raise Conflict(f"A chave {key!r} passa por um arquivo existente.", entity="blob",
                               key=key) from None
            except FileNotFoundError:
                continue
        raise ExternalServiceError(f"Não foi possível gravar {key!r} no diretório de arquivos.", key=key)

    def _write_meta(self, key: str, meta: dict[str, Any]) -> None:
        meta_path = self._meta_path(key)
        meta_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._tmp_dir() / f"{uuid.uuid4().hex}.meta"
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, meta_path)

    def _read_meta(self, key: str, st: os.stat_result) -> dict[str, Any] | None:
        try:
            meta = json.loads(self._meta_path(key).read_text())
        except (OSError, ValueError):
            return None
        if meta.get("size") != st.st_size or meta.get("mtime_ns") != st.st_mtime_ns:
            return None  # the file changed after the sidecar was written
        return meta

    # reading
    def open(self, key: str) -> BinaryIO:
        path = self._path(key)
        if not path.is_file() or not self._inside_root(path):
            raise BlobNotFound(f"Arquivo {key!r} não encontrado.", entity="blob", key=key)
        try:
            return open(path, "rb")
        except FileNotFoundError:
            raise BlobNotFound(f"Arquivo {key!r} não encontrado.", entity="blob", key=key) from None

    def stat(self, key: str) -> BlobInfo | None:
        path = self._path(key)
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not path.is_file() or not self._inside_root(path):
            return None
        meta = self._read_meta(key, st)
        if meta is None:  # written by hand or tampered with: hash what is there now
            with open(path, "rb") as reader:
                size, digest = _copy_hashing(reader, _NullWriter())
            meta = {"size": size, "sha256": digest, "mtime_ns": st.st_mtime_ns,
                    "content_type": guess_content_type(key)}
            with contextlib.suppress(OSError):
                self._write_meta(key, meta)
        return BlobInfo(key=key, size=st.st_size, sha256=meta["sha256"],
                        content_type=meta.get("content_type") or guess_content_type(key),
                        modified_at=datetime.fromtimestamp(st.st_mtime, UTC))

    def delete(self, key: str) -> None:
        path = self._path(key)
        for target in (path, self._meta_path(key)):
            with contextlib.suppress(FileNotFoundError, NotADirectoryError, IsADirectoryError):
                target.unlink()
            self._prune(target.parent)

    def _prune(self, directory: Path) -> None:
        stop = {self.root, self.root / self.META_DIR}
        while directory not in stop and self.root in directory.parents:
            try:
                directory.rmdir()
            except OSError:  # not empty (or already gone)
                return
            directory = directory.parent

    def list(self, prefix: str = "") -> Iterator[BlobInfo]:
        prefix = _validate_prefix(prefix)
        base_key = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self.root.joinpath(*base_key.split("/")) if base_key else self.root
        yield from self._walk(start, base_key, prefix)

    def _walk(self, directory: Path, dir_key: str, prefix: str) -> Iterator[BlobInfo]:
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError):
            return
        # Sort as S3 does (by the full key): a directory "a" sorts as "a/", so "a-b" comes before "a/x".
        decorated = []
        for entry in entries:
            if not dir_key and entry.name.startswith(RESERVED_PREFIX):
                continue
            is_dir = entry.is_dir(follow_symlinks=False)
            if not is_dir and not entry.is_file(follow_symlinks=False):
                continue
            key = f"{dir_key}/{entry.name}" if dir_key else entry.name
            decorated.append((key + "/" if is_dir else key, key, is_dir, entry))
        for sort_key, key, is_dir, entry in sorted(decorated):
            if is_dir:
                if sort_key.startswith(prefix) or prefix.startswith(sort_key):
                    yield from self._walk(Path(entry.path), key, prefix)
            elif key.startswith(prefix):
                st = entry.stat(follow_symlinks=False)
                meta = self._read_meta(key, st)
                yield BlobInfo(key=key, size=st.st_size, sha256=meta["sha256"] if meta else None,
                               content_type=(meta or {}).get("content_type") or guess_content_type(key),
                               modified_at=datetime.fromtimestamp(st.st_mtime, UTC))

    # links
    def _signature(self, key: str, expires: int) -> str:
        return sign(self.secret_key, f"{key}\n{expires}".encode(), purpose=SIGNATURE_PURPOSE)

    def signed_url(self, key: str, *, expires_in: int | None = None, filename: str | None = None) -> str:
        validate_key(key)
        # Rounded up: a link is good for at least ``expires_in`` seconds.
        expires = math.ceil(time.time() + _check_expires_in(expires_in, self.default_ttl))
        params = {"expires": str(expires), "sig": self._signature(key, expires)}
        if filename:
            params["filename"] = sanitize_filename(filename)
        return f"{self.public_url}/blobs/{quote(key, safe='/')}?{urlencode(params)}"

    def signature_problem(self, key: str, expires: str | int | None, sig: str | None,
                          now: float | None = None) -> str | None:
        """``None`` when the link is good, ``"invalid"`` (tampered, malformed) or ``"expired"``."""
        try:
            validate_key(key)
            expires_at = int(str(expires))
        except (ValidationFailed, ValueError):
            return "invalid"
        if not sig or not verify_signature(self.secret_key, f"{key}\n{expires_at}".encode(), sig,
                                           purpose=SIGNATURE_PURPOSE):
            return "invalid"
        if (time.time() if now is None else now) > expires_at:
            return "expired"
        return None

    def verify_signed(self, key: str, expires: str | int | None, sig: str | None, now: float | None = None
                      ) -> bool:
        """Whether a download link for ``key`` carries a good signature and has not expired."""
        return self.signature_problem(key, expires, sig, now) is None

    def ping(self) -> None:
        try:
            probe = self._tmp_dir() / f"ping-{uuid.uuid4().hex}"
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as exc:
            raise ExternalServiceError(f"Diretório de arquivos {self.root} inacessível: {exc.strerror}.",
                                       service="storage") from exc


class _NullWriter:
    def write(self, data: bytes) -> int:
        return len(data)


class _Spool:
    """Keeps written bytes in memory up to ``limit``, then in a named temporary file (``path``)."""

    def __init__(self, limit: int, directory: str | None) -> None:
        self.limit = limit
        self.directory = directory
        self.buffer: io.BytesIO | None = io.BytesIO()
        self.file: BinaryIO | None = None
        self.path: str | None = None

    def write(self, data: bytes) -> int:
        if self.buffer is not None and self.buffer.tell() + len(data) > self.limit:
            fd, self.path = tempfile.mkstemp(prefix="oficina-upload-", dir=self.directory)
            self.file = os.fdopen(fd, "wb")
            self.file.write(self.buffer.getbuffer())
            self.buffer = None
        if self.file is not None:
            return self.file.write(data)
        assert self.buffer is not None
        return self.buffer.write(data)

    def getvalue(self) -> bytes:
        assert self.buffer is not None
        return self.buffer.getvalue()

    def __enter__(self) -> _Spool:
        return self

    def close_file(self) -> None:
        if self.file is not None:
            self.file.close()

    def __exit__(self, *exc: object) -> None:
        self.close_file()
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)


# S3 ----------------------------------------------------------------------------------------------------

def make_s3_client(endpoint_url: str | None, region: str, **kwargs: Any) -> Any:
    """A boto3 S3 client signing with SigV4 (path-style addressing for custom endpoints such as MinIO)."""
    import boto3
    from botocore.config import Config

    config = Config(
        signature_version="s3v4",
        s3={"addressing_style": "path" if endpoint_url else "auto"},
        retries={"max_attempts": 5, "mode": "standard"},
        connect_timeout=10,
        read_timeout=60,
    )
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url or None, region_name=region,
                                          config=config, **kwargs)


class S3BlobStorage(BlobStorage):
    """Blobs as objects in an S3 bucket. ``put`` spools the stream (in memory up to 8 MiB, beyond that in
    a temporary file under ``tmp_dir``) while hashing it, so that the SHA-256 can travel in the object's
    metadata, then uploads it (multipart for large files, each part read from disk when it is sent).
    Links are SigV4 presigned GET URLs."""

    SPOOL_MEMORY = 8 * 1024 * 1024

    def __init__(self, bucket: str, endpoint_url: str | None = None, region: str = "us-east-1",
                 client: Any = None, *, default_ttl: int = 3600, tmp_dir: str | Path | None = None) -> None:
        if not bucket:
            raise ValidationFailed("S3_BUCKET não pode ser vazio.")
        self.bucket = bucket
        self.endpoint_url = endpoint_url or None
        self.region = region
        self.client = client if client is not None else make_s3_client(self.endpoint_url, region)
        self.default_ttl = default_ttl
        self.tmp_dir = str(tmp_dir) if tmp_dir is not None else None

    def describe(self) -> str:
        return f"s3://{self.bucket}" + (f" em {self.endpoint_url}" if self.endpoint_url else "")

    def _failure(self, exc: Exception, what: str, key: str | None = None) -> ExternalServiceError:
        return ExternalServiceError(f"Falha no armazenamento S3 ({self.bucket}) ao {what}: {exc}",
                                    service="storage", key=key)

    @staticmethod
    def _is_missing(exc: Exception) -> bool:
        from botocore.exceptions import ClientError

        if not isinstance(exc, ClientError):
            return False
        code = str(exc.response.get("Error", {}).get("Code", ""))
        return code in {"404", "NoSuchKey", "NotFound"}

    def put(self, key: str, stream: BinaryIO, *, content_type: str | None = None,
            max_size: int | None = None, on_progress: Callable[[int], None] | None = None) -> BlobInfo:
        from boto3.s3.transfer import TransferConfig
        from botocore.exceptions import BotoCoreError, ClientError

        validate_key(key)
        content_type = content_type or guess_content_type(key)
        extra: dict[str, Any] = {"ContentType": content_type}
        transfer = TransferConfig(multipart_chunksize=8 * 1024 * 1024, max_concurrency=4)
        with _Spool(self.SPOOL_MEMORY, self.tmp_dir) as spool:
            size, digest = _copy_hashing(stream, spool, max_size=max_size, on_chunk=on_progress)
            spool.close_file()
            extra["Metadata"] = {"sha256": digest}
            try:
                if spool.path is not None:  # large: s3transfer reads each part lazily from the file
                    self.client.upload_file(spool.path, self.bucket, key, ExtraArgs=extra, Config=transfer)
                else:
                    self.client.upload_fileobj(io.BytesIO(spool.getvalue()), self.bucket, key,
                                               ExtraArgs=extra, Config=transfer)
            except (BotoCoreError, ClientError) as exc:
                raise self._failure(exc, f"enviar {key!r}", key) from exc
        return BlobInfo(key=key, size=size, sha256=digest, content_type=content_type,
                        modified_at=datetime.now(UTC))

    def open(self, key: str) -> BinaryIO:
        from botocore.exceptions import BotoCoreError, ClientError

        validate_key(key)
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
        except (BotoCoreError, ClientError) as exc:
            if self._is_missing(exc):
                raise BlobNotFound(f"Arquivo {key!r} não encontrado.", entity="blob", key=key) from None
            raise self._failure(exc, f"ler {key!r}", key) from exc
        return response["Body"]  # botocore's StreamingBody: an io.IOBase read in chunks, closed by `with`

    def stat(self, key: str) -> BlobInfo | None:
        from botocore.exceptions import BotoCoreError, ClientError

        validate_key(key)
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        except (BotoCoreError, ClientError) as exc:
            if self._is_missing(exc):
                return None
            raise self._failure(exc, f"consultar {key!r}", key) from exc
        return BlobInfo(key=key, size=int(head["ContentLength"]),
                        sha256=head.get("Metadata", {}).get("sha256"), content_type=head.get("ContentType"),
                        modified_at=head.get("LastModified"))

    def delete(self, key: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        validate_key(key)
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except (BotoCoreError, ClientError) as exc:
            if not self._is_missing(exc):
                raise self._failure(exc, f"apagar {key!r}", key) from exc

    def list(self, prefix: str = "") -> Iterator[BlobInfo]:
        from botocore.exceptions import BotoCoreError, ClientError

        prefix = _validate_prefix(prefix)
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
            for page in pages:
                for obj in page.get("Contents", []):
                    yield BlobInfo(key=obj["Key"], size=int(obj["Size"]), sha256=None,
                                   modified_at=obj.get("LastModified"))
        except (BotoCoreError, ClientError) as exc:
            raise self._failure(exc, f"listar {prefix!r}") from exc

    def signed_url(self, key: str, *, expires_in: int | None = None, filename: str | None = None) -> str:
        validate_key(key)
        params: dict[str, str] = {"Bucket": self.bucket, "Key": key}
        if filename:
            params["ResponseContentDisposition"] = content_disposition(filename)
        return self.client.generate_presigned_url(
            "get_object", Params=params, ExpiresIn=_check_expires_in(expires_in, self.default_ttl))

    def ping(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError) as exc:
            raise self._failure(exc, "verificar o bucket") from exc


# Choosing one ------------------------------------------------------------------------------------------

_storages: dict[Settings, BlobStorage] = {}
_lock = threading.Lock()


def get_storage(settings: Settings) -> BlobStorage:
    """The store for these settings (S3 when ``S3_BUCKET`` is set, else ``settings.blob_dir``), built once."""
    with _lock:
        storage = _storages.get(settings)
        if storage is None:
            if settings.s3_bucket:
                storage = S3BlobStorage(settings.s3_bucket, settings.s3_endpoint_url or None,
                                        settings.s3_region, default_ttl=settings.signed_url_ttl_seconds)
            else:
                storage = LocalBlobStorage(settings.blob_dir, settings.secret_key, settings.public_url,
                                           default_ttl=settings.signed_url_ttl_seconds)
            _storages[settings] = storage
        return storage
