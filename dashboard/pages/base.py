"""What a page is: its registry entry (``PageSpec``) and what it gets when a browser opens it (``PageContext``).

A capability adds a page with one ``PageSpec`` in ``dashboard.pages.PAGES``: the slug is its URL, the
permission decides both who may open it and who sees it in the navigation, and the factory builds its
content (a ``pn.viewable.Viewer``) from the context. The template wraps the content; pages never build
their own header or sidebar.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.security import can
from engine.settings import Settings


@dataclass(frozen=True)
class PageContext:
    """A page's view of the request that opened it."""

    settings: Settings
    user: Any  # engine.models.User; None on public pages opened by a guest
    slug: str
    args: Mapping[str, str] = field(default_factory=dict)  # query arguments (first value of each)

    def arg(self, name: str, default: str = "") -> str:
        return self.args.get(name, default)

    def can(self, permission: str) -> bool:
        return can(self.user, permission)


@dataclass(frozen=True)
class PageSpec:
    """One page of the dashboard."""

    slug: str                                   # URL path without the leading slash: "jobs" -> /jobs
    title: str                                  # pt-BR, in the navigation and the browser tab
    icon: str                                   # Material icon name
    permission: str | None                      # needed to open and to see it; None = any signed-in user
    factory: Callable[[PageContext], Any]       # builds the page content
    section: str = "Operação"                   # navigation group
    description: str = ""                       # shown under the title in the navigation tooltip
    nav: bool = True                            # listed in the navigation
    public: bool = False                        # opens without login (no navigation, no user)

    @property
    def path(self) -> str:
        return f"/{self.slug}"

    def allowed(self, user: Any) -> bool:
        if self.public:
            return True
        if user is None:
            return False
        return self.permission is None or can(user, self.permission)


@dataclass(frozen=True)
class NavEntry:
    slug: str
    title: str
    icon: str
    section: str
    description: str = ""

    @property
    def path(self) -> str:
        return f"/{self.slug}"


def navigation(pages: list[PageSpec], user: Any) -> list[NavEntry]:
    """The entries ``user`` may use, in registry order."""
    return [NavEntry(p.slug, p.title, p.icon, p.section, p.description)
            for p in pages if p.nav and not p.public and p.allowed(user)]
