"""Bulk imports of CSV and XLSX files (sensor readings, clients): streamed, validated, deduplicated and
merged into their table in one transaction. See ``engine.imports.service`` for the flow.

Importing this package registers the ``import`` job handler (``oficina import`` is declared in
``engine.commands``).
"""

from __future__ import annotations

from engine.imports import allocator  # noqa: F401  (first: it must run before polars is imported)
from engine.imports.handler import import_job
from engine.imports.kinds import KINDS, ImportKind, get_kind, suggest_mapping
from engine.imports.loader import MODES
from engine.imports.reader import FileRefused
from engine.imports.service import (
    ImportOptions,
    ImportRefused,
    UploadWriter,
    discard_upload,
    get_upload,
    import_status,
    preview,
    register_local_file,
    report_link,
    run_import,
    save_mapping,
    start_import,
    sweep_uploads,
    upload_info,
)

__all__ = [
    "KINDS",
    "MODES",
    "FileRefused",
    "ImportKind",
    "ImportOptions",
    "ImportRefused",
    "UploadWriter",
    "discard_upload",
    "get_kind",
    "get_upload",
    "import_job",
    "import_status",
    "preview",
    "register_local_file",
    "report_link",
    "run_import",
    "save_mapping",
    "start_import",
    "suggest_mapping",
    "sweep_uploads",
    "upload_info",
]
