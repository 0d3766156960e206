"""Start the real Oficina web server (``panel_serve``) for the imports browser test, making sure the imports
page, its REST endpoints and ``POST /uploads`` are mounted. Each addition is skipped when the application
already registers it (``dashboard.pages.PAGES``, ``dashboard.api.MODULES``, ``panel_serve``), so once they
are wired in, this runs exactly the production server.

    python tests/imports/serve_app.py PORT
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main(port: int) -> None:
    import dashboard.api as api
    import dashboard.pages as pages
    import panel_serve
    from dashboard import uploads
    from dashboard.pages import imports as imports_page

    if not any(spec.slug == imports_page.SLUG for spec in pages.PAGES):
        pages.PAGES.append(imports_page.PAGE)
    if "dashboard.api.imports" not in api.MODULES:
        api.MODULES.append("dashboard.api.imports")
    build = panel_serve.build_server_options

    def build_with_uploads(settings: Any) -> dict[str, Any]:
        options = build(settings)
        if not any(route[0] == "/uploads" for route in options["extra_patterns"]):
            options["extra_patterns"] = [*uploads.routes(settings), *options["extra_patterns"]]
        return options

    panel_serve.build_server_options = build_with_uploads
    panel_serve.main(port=port, address="127.0.0.1")


if __name__ == "__main__":
    main(int(sys.argv[1]))
