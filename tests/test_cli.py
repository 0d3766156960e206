"""The `oficina` command line: its parser is built without loading any capability's heavy modules, and
each command's module loads when that command runs."""

from __future__ import annotations

import subprocess
import sys

from engine import commands
from engine.imports import KINDS, MODES

HEAVY = ("polars", "numpy", "huey", "httpx", "boto3", "sqlalchemy", "panel", "redis", "psycopg", "weasyprint",
         "tornado", "engine.imports", "engine.documents", "engine.backups", "engine.drafts")


def _loaded_after(code: str) -> list[str]:
    probe = (f"import sys\n{code}\n"
             f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    return [m for m in out.stdout.strip().split(",") if m]


def test_building_the_parser_loads_no_capability_module() -> None:
    assert _loaded_after("from engine.cli import build_parser\nbuild_parser()") == []


def test_help_lists_every_command_without_loading_them() -> None:
    out = subprocess.run([sys.executable, "-m", "engine.cli", "--help"], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    for name in ("db", "user", "token", "jobs", "worker", "serve", "backup", "restore", "drafts", "processos",
                 "court-simulator", "import"):
        assert name in out, name


def test_a_command_loads_its_module_when_it_runs() -> None:
    code = ("from engine.cli import build_parser\n"
            "args = build_parser().parse_args(['court-simulator', '--print-token'])\n"
            "import contextlib, io\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    args.func(args)")
    loaded = _loaded_after(code)
    assert "engine.documents" in loaded and "engine.imports" not in loaded


def test_the_import_command_offers_exactly_the_declared_kinds_and_modes() -> None:
    assert set(commands.IMPORT_KINDS) == set(KINDS)
    assert tuple(commands.IMPORT_MODES) == tuple(MODES)
