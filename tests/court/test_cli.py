"""The command line: `oficina court-simulator` serves the API; `oficina processos fetch --wait` looks a
process up and waits for a real consumer (SQLite + SqliteHuey, the embedded default) to finish it."""

from __future__ import annotations

import json
import subprocess

import httpx
import pytest

from engine.brazil import format_cnj, make_cnj
from engine.court.simulator import demo_token
from tests.stack import free_port, wait_until
from tests.worker_support import WorkerPool, oficina_command, settings_environ

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("court-worker")]


def test_court_simulator_command_serves_the_api(sqlite_settings, tmp_path):
    port = free_port()
    log_path = tmp_path / "simulator.log"
    with open(log_path, "wb") as log:  # a file, not a pipe: reading it never waits for the process to end
        proc = subprocess.Popen(
            [*oficina_command(), "court-simulator", "--port", str(port), "--latency-ms", "5"],
            env=settings_environ(sqlite_settings),
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        base = f"http://127.0.0.1:{port}"

        def up() -> bool:
            assert proc.poll() is None, f"the simulator exited with {proc.returncode}:\n{log_path.read_text()}"
            try:
                return httpx.get(f"{base}/health", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        try:
            wait_until(up, timeout=20, what="the simulator's /health")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{log_path.read_text()}") from None
        numero = make_cnj(10, 2020, 8, 26, 1)
        assert httpx.get(f"{base}/api/v2/processos/{numero}", timeout=5).status_code == 401
        ok = httpx.get(
            f"{base}/api/v2/processos/{format_cnj(numero)}",
            timeout=5,
            headers={"Authorization": f"Bearer {demo_token()}"},
        )
        assert ok.status_code == 200 and ok.json()["numeroProcesso"] == numero
    finally:
        proc.terminate()
        proc.wait(10)


def test_fetch_and_wait_with_a_real_consumer(sqlite_settings, simulator, tmp_path):
    numero = make_cnj(11, 2020, 8, 26, 1)
    with WorkerPool(tmp_path / "workers") as pool:
        settings = pool.queue_settings(sqlite_settings, court_api_url=simulator.url)
        pool.start(settings)
        done = subprocess.run(
            [*oficina_command(), "processos", "fetch", format_cnj(numero), "--wait", "--timeout", "60"],
            env=settings_environ(settings),
            cwd=tmp_path,
            capture_output=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr.decode()[-3000:]
        lines = done.stdout.decode()
        first = json.loads(lines.splitlines()[0])
        final = json.loads(lines[lines.index("\n") + 1 :])
        assert first["state"] == "started" and first["processo"]["numero"] == numero
        assert final["job"]["status"] == "succeeded" and final["progress"] == 100
        assert final["counters"]["available"] == len(simulator.documents(numero))
