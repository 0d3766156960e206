"""Blob storage: one shared contract (``BlobStorageContract``) run against the local directory store and
against S3 (moto's ThreadedMotoServer over real HTTP), plus what is particular to each: the local store's
signed links served by ``dashboard/blobs.py`` from a real Tornado server, and SigV4 presigned URLs."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import threading
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application

from dashboard import blobs as blob_routes
from engine.errors import ExternalServiceError, PayloadTooLarge, ValidationFailed
from engine.settings import Settings
from engine.storage import (
    BlobNotFound,
    BlobStorage,
    LocalBlobStorage,
    S3BlobStorage,
    content_disposition,
    get_storage,
    make_s3_client,
    sanitize_filename,
)
from tests.conftest import base_environ

# One moto server per xdist worker is enough: keep this file's tests together.
pytestmark = pytest.mark.xdist_group("blob-storage")

MB = 1024 * 1024
BAD_KEYS = ["", "/etc/passwd", "../fora", "a/../../b", "a/./b", "a//b", "a/", "a\\b", "a\x00b", "a\nb",
            "x" * 300, "a/" + "y" * 1030, ".oficina-meta/x.json", ".oficina-tmp/p"]


class GeneratedStream:
    """A binary stream of ``size`` pseudo-random bytes made on demand (never held whole in memory).
    It remembers every read size asked for, to prove the store reads in bounded chunks."""

    def __init__(self, size: int, seed: bytes = b"oficina", fail_after: int | None = None) -> None:
        self.size = size
        self.position = 0
        self.block = hashlib.sha256(seed).digest() * 2048  # 64 KiB pattern, shifted per block
        self.digest = hashlib.sha256()
        self.read_sizes: list[int | None] = []
        self.fail_after = fail_after

    def read(self, n: int | None = -1) -> bytes:
        self.read_sizes.append(n)
        if self.fail_after is not None and self.position >= self.fail_after:
            raise OSError("conexão interrompida no meio do envio")
        if n is None or n < 0:
            n = self.size - self.position
        n = min(n, self.size - self.position)
        out = bytearray()
        while len(out) < n:
            index, offset = divmod(self.position, len(self.block))
            piece = self.block[offset: offset + n - len(out)]
            piece = bytes((b + index) % 256 for b in piece[:64]) + piece[64:]
            out += piece
            self.position += len(piece)
        self.digest.update(out)
        return bytes(out)


def read_all_in_chunks(reader, chunk: int = 64 * 1024) -> tuple[int, str, int]:
    digest = hashlib.sha256()
    size = reads = 0
    while True:
        data = reader.read(chunk)
        if not data:
            return size, digest.hexdigest(), reads
        reads += 1
        size += len(data)
        digest.update(data)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# The contract every implementation passes ---------------------------------------------------------------

class BlobStorageContract:
    """huey's StorageTests idea: subclasses provide the ``storage`` fixture and ``expired_link_refused``."""

    def test_large_file_round_trip_streams_in_chunks_with_checksum(self, storage: BlobStorage) -> None:
        source = GeneratedStream(20 * MB)
        info = storage.put("grandes/arquivo.bin", source)
        expected = source.digest.hexdigest()
        assert (info.key, info.size, info.sha256) == ("grandes/arquivo.bin", 20 * MB, expected)
        # The store asked for bounded chunks, many times, never "everything".
        assert all(n is not None and 0 < n <= 8 * MB for n in source.read_sizes)
        assert len(source.read_sizes) >= 3
        stat = storage.stat("grandes/arquivo.bin")
        assert stat is not None and (stat.size, stat.sha256) == (20 * MB, expected)
        with storage.open("grandes/arquivo.bin") as reader:
            size, digest, reads = read_all_in_chunks(reader)
        assert (size, digest) == (20 * MB, expected)
        assert reads >= 20 * MB // (64 * 1024)

    def test_overwrite_replaces_content_and_checksum(self, storage: BlobStorage) -> None:
        storage.put_bytes("doc/a.txt", b"primeira versao")
        info = storage.put_bytes("doc/a.txt", b"segunda")
        assert info.sha256 == sha(b"segunda")
        assert storage.get_bytes("doc/a.txt") == b"segunda"
        stat = storage.stat("doc/a.txt")
        assert stat is not None and (stat.size, stat.sha256) == (7, sha(b"segunda"))

    def test_failed_upload_keeps_the_previous_blob(self, storage: BlobStorage) -> None:
        storage.put_bytes("doc/estavel.bin", b"conteudo salvo")
        with pytest.raises(OSError, match="interrompida"):
            storage.put("doc/estavel.bin", GeneratedStream(3 * MB, fail_after=2 * MB))
        assert storage.get_bytes("doc/estavel.bin") == b"conteudo salvo"
        with pytest.raises(OSError):
            storage.put("doc/novo.bin", GeneratedStream(3 * MB, fail_after=MB))
        assert storage.stat("doc/novo.bin") is None
        assert [b.key for b in storage.list("doc/")] == ["doc/estavel.bin"]

    def test_size_limit_refuses_and_stores_nothing(self, storage: BlobStorage) -> None:
        with pytest.raises(PayloadTooLarge) as exc:
            storage.put("limite/grande.bin", GeneratedStream(3 * MB), max_size=2 * MB)
        assert exc.value.limit == 2 * MB
        assert not storage.exists("limite/grande.bin")
        info = storage.put("limite/ok.bin", GeneratedStream(MB), max_size=2 * MB)
        assert info.size == MB

    def test_text_stream_is_refused(self, storage: BlobStorage) -> None:
        with pytest.raises(ValidationFailed, match="binário"):
            storage.put("texto.txt", io.StringIO("não é binário"))  # type: ignore[arg-type]
        assert storage.stat("texto.txt") is None

    def test_progress_callback_sees_every_byte(self, storage: BlobStorage) -> None:
        seen: list[int] = []
        storage.put("prog/x.bin", GeneratedStream(3 * MB + 5), on_progress=seen.append)
        assert sum(seen) == 3 * MB + 5 and len(seen) >= 4

    def test_delete(self, storage: BlobStorage) -> None:
        storage.put_bytes("apagar/um.txt", b"1")
        storage.put_bytes("apagar/dois.txt", b"2")
        storage.delete("apagar/um.txt")
        assert not storage.exists("apagar/um.txt") and storage.stat("apagar/um.txt") is None
        assert storage.exists("apagar/dois.txt")
        storage.delete("apagar/um.txt")  # deleting again is not an error
        storage.delete("nunca/existiu.txt")
        with pytest.raises(BlobNotFound):
            storage.open("apagar/um.txt")

    def test_list_by_prefix_in_key_order(self, storage: BlobStorage) -> None:
        for key, body in [("p/a/1.txt", b"1"), ("p/a/2.txt", b"22"), ("p/a-b/3.txt", b"333"),
                          ("p/ab/4.txt", b"4444"), ("p/b.txt", b"5"), ("q/6.txt", b"6")]:
            storage.put_bytes(key, body)
        assert [(b.key, b.size) for b in storage.list("p/a/")] == [("p/a/1.txt", 1), ("p/a/2.txt", 2)]
        # A plain string prefix, as on S3, ordered by the whole key ("a-b" < "a/" < "ab").
        assert [b.key for b in storage.list("p/a")] == ["p/a-b/3.txt", "p/a/1.txt", "p/a/2.txt", "p/ab/4.txt"]
        assert [b.key for b in storage.list("p/")] == ["p/a-b/3.txt", "p/a/1.txt", "p/a/2.txt", "p/ab/4.txt",
                                                      "p/b.txt"]
        assert [b.key for b in storage.list("")] == [b.key for b in storage.list("p")] + ["q/6.txt"]
        assert list(storage.list("nada/")) == []
        for info in storage.list("p/a/"):
            assert info.sha256 in (None, sha(b"1"), sha(b"22"))

    def test_missing_blob(self, storage: BlobStorage) -> None:
        assert storage.stat("nao/existe.pdf") is None
        assert storage.exists("nao/existe.pdf") is False
        with pytest.raises(BlobNotFound) as exc:
            storage.open("nao/existe.pdf")
        assert exc.value.status == 404 and "não encontrado" in exc.value.message

    @pytest.mark.parametrize("key", BAD_KEYS)
    def test_bad_keys_are_refused(self, storage: BlobStorage, key: str) -> None:
        calls: list[Callable[[], object]] = [
            lambda: storage.put_bytes(key, b"x"), lambda: storage.open(key), lambda: storage.stat(key),
            lambda: storage.delete(key), lambda: storage.signed_url(key),
        ]
        for call in calls:
            with pytest.raises(ValidationFailed, match="Chave de arquivo inválida"):
                call()

    def test_bad_values_refused(self, storage: BlobStorage) -> None:
        for bad in (None, 42, b"bytes/key"):
            with pytest.raises(ValidationFailed):
                storage.put_bytes(bad, b"x")  # type: ignore[arg-type]
        with pytest.raises(ValidationFailed):
            list(storage.list("../"))
        for expires_in in (0, -5, 8 * 24 * 3600, "60", True):
            with pytest.raises(ValidationFailed, match="Validade"):
                storage.signed_url("ok.txt", expires_in=expires_in)  # type: ignore[arg-type]

    def test_unicode_keys_and_content_type(self, storage: BlobStorage) -> None:
        key = "processos/0000001-45.2024.8.26.0100/documentos/7/Petição inicial #1.pdf"
        info = storage.put_bytes(key, b"%PDF-1.7 fake")
        assert info.content_type == "application/pdf"
        storage.put_bytes("graficos/g.bin", b"\x89PNG", content_type="image/png")
        stat = storage.stat("graficos/g.bin")
        assert stat is not None and stat.content_type == "image/png"
        assert [b.key for b in storage.list("processos/")] == [key]
        assert storage.get_bytes(key) == b"%PDF-1.7 fake"

    def test_signed_url_downloads_over_http(self, storage: BlobStorage) -> None:
        body = os.urandom(300 * 1024)
        key = "relatorios/2024/relatório final.pdf"
        storage.put_bytes(key, body)
        response = httpx.get(storage.signed_url(key, expires_in=120), timeout=10)
        assert response.status_code == 200 and response.content == body
        named = httpx.get(storage.signed_url(key, filename="Relatório Março.pdf"), timeout=10)
        assert named.status_code == 200 and named.content == body
        disposition = named.headers["content-disposition"]
        assert disposition.startswith("attachment")
        assert "filename*=UTF-8''Relat%C3%B3rio%20Mar%C3%A7o.pdf" in disposition

    def test_expired_signed_url(self, storage: BlobStorage) -> None:
        storage.put_bytes("expira/x.txt", b"temporario")
        url = storage.signed_url("expira/x.txt", expires_in=1)
        self.expired_link_refused(url)

    def expired_link_refused(self, url: str) -> None:
        raise NotImplementedError

    def test_ping(self, storage: BlobStorage) -> None:
        storage.ping()


# Local directory ----------------------------------------------------------------------------------------

@contextmanager
def blob_server(tmp_path: Path) -> Iterator[tuple[Settings, str]]:
    """A real Tornado server on 127.0.0.1 (free port) serving ``dashboard.blobs.routes(settings)``."""
    sockets = bind_sockets(0, "127.0.0.1")
    port = sockets[0].getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    settings = Settings.from_environ(base_environ(tmp_path / "var", PUBLIC_URL=base))
    app = Application(blob_routes.routes(settings))
    ready = threading.Event()
    state: dict[str, object] = {}

    def run() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        server = HTTPServer(app)
        server.add_sockets(sockets)
        state.update(loop=loop, server=server)
        ready.set()
        loop.run_forever()
        loop.close()

    thread = threading.Thread(target=run, daemon=True, name="blob-server")
    thread.start()
    ready.wait(5)
    try:
        yield settings, base
    finally:
        loop = state["loop"]
        loop.call_soon_threadsafe(state["server"].stop)  # type: ignore[attr-defined]
        loop.call_soon_threadsafe(loop.stop)  # type: ignore[attr-defined]
        thread.join(5)


class TestLocalBlobStorage(BlobStorageContract):
    @pytest.fixture
    def served(self, tmp_path: Path) -> Iterator[tuple[Settings, str]]:
        with blob_server(tmp_path) as served:
            yield served

    @pytest.fixture
    def storage(self, served: tuple[Settings, str]) -> LocalBlobStorage:
        storage = get_storage(served[0])
        assert isinstance(storage, LocalBlobStorage)
        return storage

    def expired_link_refused(self, url: str) -> None:
        expires = int(parse_qs(urlsplit(url).query)["expires"][0])
        time.sleep(max(0.0, expires - time.time()) + 0.2)
        response = httpx.get(url, timeout=10)
        # "expirou" (not "inválido"): the signature was good, only the time ran out.
        assert response.status_code == 403
        assert "Este link de download expirou" in response.text

    def test_files_live_under_the_blob_dir_and_writes_are_atomic(self, storage: LocalBlobStorage,
                                                                  served: tuple[Settings, str]) -> None:
        settings = served[0]
        storage.put_bytes("a/b/c.txt", b"abc")
        assert storage.root == settings.blob_dir.resolve()
        assert (settings.blob_dir / "a" / "b" / "c.txt").read_bytes() == b"abc"
        assert list((settings.blob_dir / ".oficina-tmp").iterdir()) == []  # no leftovers
        storage.delete("a/b/c.txt")
        assert not (settings.blob_dir / "a").exists()  # empty folders are pruned

    def test_streaming_keeps_memory_bounded(self, storage: LocalBlobStorage) -> None:
        tracemalloc.start()
        try:
            storage.put("mem/grande.bin", GeneratedStream(20 * MB))
            with storage.open("mem/grande.bin") as reader:
                read_all_in_chunks(reader, chunk=1 * MB)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 6 * MB, f"peak {peak / MB:.1f} MiB"

    def test_file_changed_on_disk_gets_a_fresh_checksum(self, storage: LocalBlobStorage) -> None:
        storage.put_bytes("t/x.bin", b"original")
        (storage.root / "t" / "x.bin").write_bytes(b"alterado")
        stat = storage.stat("t/x.bin")
        assert stat is not None and stat.sha256 == sha(b"alterado")

    def test_key_through_an_existing_file_conflicts(self, storage: LocalBlobStorage) -> None:
        from engine.errors import Conflict

        storage.put_bytes("arq", b"1")
        with pytest.raises(Conflict):
            storage.put_bytes("arq/dentro.txt", b"2")
        assert storage.get_bytes("arq") == b"1"

    def test_symlink_out_of_the_root_is_not_served(self, storage: LocalBlobStorage, tmp_path: Path) -> None:
        secret = tmp_path / "segredo.txt"
        secret.write_text("senha")
        storage.root.mkdir(parents=True, exist_ok=True)
        (storage.root / "link.txt").symlink_to(secret)
        assert storage.stat("link.txt") is None
        with pytest.raises(BlobNotFound):
            storage.open("link.txt")
        response = httpx.get(storage.signed_url("link.txt"), timeout=10)
        assert response.status_code == 404 and "senha" not in response.text

    def test_tampered_links_are_refused(self, storage: LocalBlobStorage) -> None:
        storage.put_bytes("priv/a.txt", b"a")
        storage.put_bytes("priv/b.txt", b"b")
        url = storage.signed_url("priv/a.txt")
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        base = f"{parts.scheme}://{parts.netloc}"
        sig, expires = query["sig"][0], query["expires"][0]
        flipped = ("0" if sig[0] != "0" else "1") + sig[1:]
        attempts = [
            f"{base}/blobs/priv/a.txt?expires={expires}&sig={flipped}",            # altered signature
            f"{base}/blobs/priv/b.txt?expires={expires}&sig={sig}",                # other key, same signature
            f"{base}/blobs/priv/a.txt?expires={int(expires) + 3600}&sig={sig}",    # extended expiry
            f"{base}/blobs/priv/a.txt?expires={expires}",                          # no signature
            f"{base}/blobs/priv/a.txt",                                            # nothing
            f"{base}/blobs/priv/a.txt?expires=amanha&sig={sig}",                   # garbage
            f"{base}/blobs/priv/%2E%2E/priv/a.txt?expires={expires}&sig={sig}",    # encoded traversal
        ]
        for attempt in attempts:
            response = httpx.get(attempt, timeout=10)
            assert response.status_code == 403, attempt
            assert "Link de download inválido" in response.text
        assert httpx.get(url, timeout=10).text == "a"

    def test_verify_signed(self, storage: LocalBlobStorage) -> None:
        signed_at = time.time()
        query = parse_qs(urlsplit(storage.signed_url("v/x.txt", expires_in=60)).query)
        expires, sig = query["expires"][0], query["sig"][0]
        assert signed_at + 60 <= int(expires) <= signed_at + 61  # good for at least the time asked
        assert storage.verify_signed("v/x.txt", expires, sig)
        assert storage.verify_signed("v/x.txt", int(expires), sig, now=int(expires))
        assert not storage.verify_signed("v/x.txt", expires, sig, now=int(expires) + 1)
        assert storage.signature_problem("v/x.txt", expires, sig, now=int(expires) + 1) == "expired"
        assert storage.signature_problem("v/y.txt", expires, sig) == "invalid"
        other = LocalBlobStorage(storage.root, "another-secret-key-for-another-deployment", "http://x")
        assert not other.verify_signed("v/x.txt", expires, sig)

    def test_download_headers_ranges_and_head(self, storage: LocalBlobStorage) -> None:
        body = bytes(range(256)) * 40
        storage.put_bytes("h/dados.csv", body)
        storage.put_bytes("h/pagina.html", b"<script>alert(1)</script>")
        url = storage.signed_url("h/dados.csv")
        full = httpx.get(url, timeout=10)
        assert full.headers["content-type"].startswith("text/csv")
        assert full.headers["content-length"] == str(len(body))
        assert full.headers["x-content-type-options"] == "nosniff"
        assert full.headers["content-disposition"].startswith("inline")
        part = httpx.get(url, headers={"Range": "bytes=10-19"}, timeout=10)
        assert part.status_code == 206 and part.content == body[10:20]
        assert part.headers["content-range"] == f"bytes 10-19/{len(body)}"
        tail = httpx.get(url, headers={"Range": "bytes=-5"}, timeout=10)
        assert tail.status_code == 206 and tail.content == body[-5:]
        bad = httpx.get(url, headers={"Range": f"bytes={len(body)}-"}, timeout=10)
        assert bad.status_code == 416 and bad.headers["content-range"] == f"bytes */{len(body)}"
        # More digits than Python's int() takes (it was a 500): past the end, or the whole file as a suffix.
        beyond = httpx.get(url, headers={"Range": "bytes=" + "9" * 5000 + "-"}, timeout=10)
        assert beyond.status_code == 416
        whole = httpx.get(url, headers={"Range": "bytes=-" + "9" * 5000}, timeout=10)
        assert whole.status_code == 206 and whole.content == body
        capped = httpx.get(url, headers={"Range": "bytes=5-" + "9" * 5000}, timeout=10)
        assert capped.status_code == 206 and capped.content == body[5:]
        head = httpx.head(url, timeout=10)
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == str(len(body))
        # Active content is never shown inline in the app's origin.
        html = httpx.get(storage.signed_url("h/pagina.html"), timeout=10)
        assert html.headers["content-disposition"].startswith("attachment")
        # A hostile file name is sanitised in the header.
        # (the name is not signed: someone may edit it in a good link, the handler sanitises it again)
        hostile_url = url + "&filename=" + quote('../../x"; evil=1\r\n.csv')
        hostile = httpx.get(hostile_url, timeout=10)
        assert hostile.status_code == 200
        assert hostile.headers["content-disposition"] == (
            "attachment; filename=\"x_ evil=1.csv\"; filename*=UTF-8''x_%20evil%3D1.csv")

    def test_missing_file_with_good_link_is_404(self, storage: LocalBlobStorage) -> None:
        storage.put_bytes("some/x.txt", b"x")
        url = storage.signed_url("some/x.txt")
        storage.delete("some/x.txt")
        response = httpx.get(url, timeout=10)
        assert response.status_code == 404 and "não encontrado" in response.text

    def test_ping_fails_when_the_directory_cannot_be_used(self, tmp_path: Path) -> None:
        blocker = tmp_path / "arquivo"
        blocker.write_text("não é pasta")
        with pytest.raises(ExternalServiceError, match="inacessível"):
            LocalBlobStorage(blocker / "blobs", "k" * 40, "http://127.0.0.1").ping()


def test_filenames_are_sanitised() -> None:
    assert sanitize_filename("../../etc/passwd") == "passwd"
    assert sanitize_filename('a"b\r\n;c.pdf') == "ab_c.pdf"
    assert sanitize_filename("..") == "download" and sanitize_filename(None) == "download"
    long_name = sanitize_filename("x" * 500 + ".pdf")
    assert len(long_name) == 200 and long_name.endswith(".pdf")
    assert content_disposition("Março.pdf") == (
        "attachment; filename=\"Marco.pdf\"; filename*=UTF-8''Mar%C3%A7o.pdf")


# S3 through moto over HTTP --------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def s3_client(moto_endpoint: str):  # noqa: ANN201 - a boto3 client
    return make_s3_client(moto_endpoint, "us-east-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing")


class TestS3BlobStorage(BlobStorageContract):
    @pytest.fixture
    def storage(self, s3_client, tmp_path: Path) -> Iterator[S3BlobStorage]:  # noqa: ANN001
        bucket = f"oficina-{uuid.uuid4().hex[:16]}"
        s3_client.create_bucket(Bucket=bucket)
        yield S3BlobStorage(bucket, s3_client.meta.endpoint_url, "us-east-1", client=s3_client,
                            tmp_dir=tmp_path)
        for info in S3BlobStorage(bucket, client=s3_client).list(""):
            s3_client.delete_object(Bucket=bucket, Key=info.key)
        s3_client.delete_bucket(Bucket=bucket)

    def expired_link_refused(self, url: str) -> None:
        # moto (5.2) does not enforce the expiry of presigned URLs, so the HTTP refusal cannot be observed
        # here; what we own is the SigV4 query signature carrying the expiry, which S3 and MinIO enforce.
        query = parse_qs(urlsplit(url).query)
        assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
        assert query["X-Amz-Expires"] == ["1"]
        assert "X-Amz-Signature" in query and "/us-east-1/s3/aws4_request" in query["X-Amz-Credential"][0]
        signed_at = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        assert abs((datetime.now(UTC) - signed_at).total_seconds()) < 5
        assert httpx.get(url, timeout=10).content == b"temporario"  # valid while fresh

    def test_checksum_travels_in_object_metadata(self, storage: S3BlobStorage, s3_client) -> None:  # noqa: ANN001
        storage.put_bytes("m/x.txt", b"metadados")
        head = s3_client.head_object(Bucket=storage.bucket, Key="m/x.txt")
        assert head["Metadata"]["sha256"] == sha(b"metadados")

    def test_large_uploads_spill_to_disk_and_clean_up(self, storage: S3BlobStorage, tmp_path: Path) -> None:
        storage.put("spill/grande.bin", GeneratedStream(9 * MB))
        assert [p for p in tmp_path.iterdir() if p.name.startswith("oficina-upload-")] == []
        assert storage.stat("spill/grande.bin").size == 9 * MB  # type: ignore[union-attr]

    def test_unreachable_bucket_fails_ping(self, s3_client) -> None:  # noqa: ANN001
        with pytest.raises(ExternalServiceError, match="S3"):
            S3BlobStorage("nao-existe-" + uuid.uuid4().hex[:8], client=s3_client).ping()


def test_get_storage_picks_s3_with_sigv4_when_a_bucket_is_set(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # Credentials from the environment, so boto3 never looks for instance metadata on the network.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    s3_settings = Settings.from_environ(base_environ(
        tmp_path, S3_BUCKET="docs", S3_ENDPOINT_URL="http://127.0.0.1:9", S3_REGION="sa-east-1"))
    storage = get_storage(s3_settings)
    assert isinstance(storage, S3BlobStorage) and storage is get_storage(s3_settings)
    assert storage.client.meta.config.signature_version == "s3v4"
    assert storage.client.meta.region_name == "sa-east-1"
    assert blob_routes.routes(s3_settings) == []
    local_settings = Settings.from_environ(base_environ(tmp_path))
    local = get_storage(local_settings)
    assert isinstance(local, LocalBlobStorage) and local.root == (tmp_path / "blobs").resolve()
    assert [pattern for pattern, _, _ in blob_routes.routes(local_settings)] == [r"/blobs/(.+)"]
