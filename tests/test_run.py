"""``oficina run`` (what ``make run`` calls) on an empty data directory: migrates, prints the demo admin's
password once, starts the simulator, the worker and the web server, the admin can sign in and look a process up
through the worker, and a stop signal takes every child down."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from engine.brazil import make_cnj
from tests.conftest import base_environ
from tests.stack import free_port, wait_until
from tests.worker_support import oficina_command

pytestmark = pytest.mark.slow


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "kill"])
def test_run_starts_everything_and_stops_every_child(tmp_path: Path, stop_signal: signal.Signals) -> None:
    port, simulator_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "S3_BUCKET"}}
    env.update(base_environ(tmp_path / "var", ALLOWED_ORIGINS=f"127.0.0.1:{port}",
                            PUBLIC_URL=f"http://127.0.0.1:{port}"))
    log = tmp_path / "run.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([*oficina_command(), "run", "--port", str(port), "--simulator-port",
                                 str(simulator_port)], cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            try:
                return httpx.get(f"{base}/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                assert proc.poll() is None, log.read_text(errors="replace")[-4000:]
                return False

        wait_until(healthy, timeout=120, interval=0.5, what="oficina run to answer /health")
        printed = log.read_text(errors="replace")
        found = re.search(r"Administrador de demonstração: (\S+)\s+senha: (\S+)", printed)
        assert found, printed[-3000:]
        email, password = found.groups()

        with httpx.Client(base_url=base, follow_redirects=False, timeout=30) as client:
            form = client.get("/login")
            csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
            signed_in = client.post("/login", data={"email": email, "password": password, "csrf": csrf,
                                                    "next": ""})
            assert signed_in.status_code == 302 and signed_in.headers["location"] == "/jobs"
            assert client.get("/jobs").status_code == 200

            # The simulator and the worker are really there: a lookup's documents arrive.
            token = _token(tmp_path, env, email)
            api = {"Authorization": f"Bearer {token}"}
            numero = make_cnj(777, 2024, 8, 26, 100)
            assert client.get(f"/api/v1/processos/{numero}", headers=api).status_code in (200, 202)

            def downloaded() -> bool:
                status = client.get(f"/api/v1/processos/{numero}/status", headers=api).json()
                return status["progress"] == 100 and status["counters"]["available"] > 0

            wait_until(downloaded, timeout=60, interval=0.5, what="the demo documents to be downloaded")
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, stop_signal)
    assert proc.wait(timeout=30) in (0, 130)
    wait_until(lambda: not _group_alive(proc.pid), timeout=20, what="every child of oficina run to exit")
    assert "Já existem usuários" not in log.read_text(errors="replace")


def _token(directory: Path, env: dict[str, str], email: str) -> str:
    done = subprocess.run([*oficina_command(), "token", "create", email], cwd=directory, env=env,
                          capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.strip().split()[-1]
