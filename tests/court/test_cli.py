"""The command line: `oficina court-simulator` serves the API; `oficina processos fetch --wait` looks a
process up and waits for a real consumer (SQLite + SqliteHuey, the embedded default) to finish it."""

from __future__ import annotations

import json
import subprocess
import time

import httpx
import pytest

from engine.brazil import format_cnj, make_cnj
from engine.court.simulator import demo_token
from tests.stack import free_port
from tests.worker_support import WorkerPool, oficina_command, settings_environ

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("court-worker")]


def test_court_simulator_command_serves_the_api(sqlite_settings, tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [*oficina_command(), "court-simulator", "--port", str(port), "--latency-ms", "5"],
        env=settings_environ(sqlite_settings),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                exited = proc.poll()
                proc.kill()  # first: its output ends only when it does
                output = proc.communicate(timeout=10)[0].decode()
                raise AssertionError(f"the simulator did not answer /health within 20 s "
                                     f"({'exited with ' + str(exited) if exited is not None else 'still running'}):"
                                     f"\n{output}")
            time.sleep(0.1)
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
