"""Allocator options for polars in a process that imports files (``engine.imports`` imports this first).

polars allocates through its own jemalloc, which by default keeps freed pages for a second or so before
returning them. An import frees and allocates batch after batch, so its transient peaks add up; returning
freed pages at once (decay 0) keeps the RSS near what the import really needs. (Measured on a 10M-row CSV
with the former whole-run sort: 380-450 MB peak with polars' default, 295 MB with decay 0. The runs are
now sorted without such bursts and the peak is about the same either way, so this is a safeguard.)

jemalloc reads ``_RJEM_MALLOC_CONF`` once, when polars is first imported, so this works only before that.
polars itself writes its defaults into that variable on import (followed by whatever was there), so the child
of any process that imported polars first (a benchmark, a test run, a notebook) inherits
``dirty_decay_ms:500,muzzy_decay_ms:1000``: that is polars' default, not an operator's choice, and must not
stop ours. A decay an operator set wins.
"""

from __future__ import annotations

import os
import sys

VARIABLE = "_RJEM_MALLOC_CONF"
POLARS_DEFAULTS = ("dirty_decay_ms:500", "muzzy_decay_ms:1000")
DECAY = "dirty_decay_ms:0,muzzy_decay_ms:0"


def malloc_conf(inherited: str) -> str:
    """The value to use given the inherited one: ours appended (later options win), unless it sets a decay
    other than polars' default."""
    own = [o for o in inherited.split(",") if o and o not in POLARS_DEFAULTS]
    if any(o.startswith(("dirty_decay_ms:", "muzzy_decay_ms:")) for o in own):
        return inherited
    return ",".join([*own, DECAY])


def configure() -> None:
    if "polars" not in sys.modules:
        os.environ[VARIABLE] = malloc_conf(os.environ.get(VARIABLE, ""))


configure()
