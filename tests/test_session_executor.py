"""The callback pool keeps one browser session's events in order and runs sessions in parallel."""

from __future__ import annotations

import threading
import time
from functools import partial

import pytest
from bokeh.document import Document

from dashboard.session_executor import SessionOrderedExecutor


@pytest.fixture
def pool():
    executor = SessionOrderedExecutor(4)
    yield executor
    executor.shutdown(wait=True)


def test_a_slow_change_finishes_before_the_click_that_followed_it(pool: SessionOrderedExecutor) -> None:
    doc = Document()
    seen: list[str] = []

    def change(_doc: Document) -> None:
        time.sleep(0.2)  # the value watcher is slow (a database call)
        seen.append("value")

    def click(_doc: Document) -> str:
        seen.append("click")
        return "done"

    pool.submit(change, doc)
    result = pool.submit(partial(click, doc))  # Panel also binds the document with partial
    assert result.result(timeout=5) == "done"
    assert seen == ["value", "click"]


def test_sessions_do_not_wait_for_each_other(pool: SessionOrderedExecutor) -> None:
    release = threading.Event()
    slow = pool.submit(lambda _doc: release.wait(5), Document())
    other = pool.submit(lambda _doc: "other session", Document())
    assert other.result(timeout=2) == "other session"
    assert not slow.done()
    release.set()
    assert slow.result(timeout=5) is True


def test_a_failing_task_reports_its_error_and_does_not_block_the_session(pool: SessionOrderedExecutor) -> None:
    doc = Document()

    def boom(_doc: Document) -> None:
        raise ValueError("callback failed")

    failed = pool.submit(boom, doc)
    after = pool.submit(lambda _doc: 42, doc)
    with pytest.raises(ValueError, match="callback failed"):
        failed.result(timeout=5)
    assert after.result(timeout=5) == 42


def test_tasks_without_a_document_run_as_in_a_plain_pool(pool: SessionOrderedExecutor) -> None:
    assert pool.submit(lambda a, b: a + b, 2, 3).result(timeout=5) == 5
