"""The callback pool keeps one browser session's events in order and runs sessions in parallel; a change a
browser sends while a pool thread holds the document is never sent back to it."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from functools import partial
from types import SimpleNamespace
from typing import Any

import pytest
from bokeh.core.types import ID
from bokeh.document import Document
from bokeh.document.events import ModelChangedEvent
from bokeh.models import Div, TextInput
from bokeh.protocol import Protocol
from bokeh.server.session import ServerSession

from dashboard.session_executor import (
    SessionOrderedExecutor,
    describe_documents,
    dispatch_browser_changes_at_once,
    keep_unsent_models_new,
    send_changes_once_pulled,
    serve_on,
    write_queued_messages,
)
from tests.async_support import run_in_own_thread


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


class _Browser:
    """A connection of a Bokeh server session: what the server would write to this browser."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    def send_patch_document(self, event: Any) -> _Written:
        self.sent.append(event)
        return _Written()

    def ok(self, message: Any) -> None:
        return None


class _Written:
    def __await__(self) -> Iterator[None]:
        return iter(())


def _session() -> tuple[Document, TextInput, Div, ServerSession, _Browser, list[str]]:
    """A document with a text field and a label, its server session and the one browser connected to it;
    ``seen`` records what Bokeh's own callbacks hear of the field's text."""
    dispatch_browser_changes_at_once()
    dispatch_browser_changes_at_once()  # idempotent
    doc = Document()
    field, label = TextInput(value_input=""), Div(text="")
    doc.add_root(field)
    doc.add_root(label)
    session = ServerSession(ID("s"), doc)
    browser = _Browser()
    session.subscribe(browser)
    seen: list[str] = []
    field.on_change("value_input", lambda _attr, _old, new: seen.append(new))
    return doc, field, label, session, browser, seen


def _typed(session: ServerSession, browser: _Browser, field: TextInput, text: str) -> None:
    """The browser's patch of the field's text, handled as the server handles it."""
    patch = Protocol().create("PATCH-DOC", [ModelChangedEvent(session.document, field, "value_input", text)])
    run_in_own_thread(lambda: session._handle_patch(patch, browser))


def _end_hold(session: ServerSession) -> None:
    session._pending_writes = []  # as when the session runs the callback that ends the hold
    session.document.unhold()


def test_a_browser_change_during_a_hold_is_dispatched_at_once_and_never_sent_back() -> None:
    doc, field, label, session, browser, seen = _session()
    doc.hold("combine")  # a pool thread is updating a pane
    _typed(session, browser, field, "0006060")
    assert field.value_input == "0006060" and seen == ["0006060"]  # dispatched now, not at the hold's end
    label.text = "Faltam 13 dígitos"  # the thread's own change stays held for the hold's end
    _end_hold(session)
    assert [(e.model, e.attr, e.new) for e in browser.sent] == [(label, "text", "Faltam 13 dígitos")]
    assert seen == ["0006060"]


def test_a_browser_change_to_a_property_python_changed_in_the_same_hold_stays_behind_it() -> None:
    doc, field, _label, session, browser, seen = _session()
    doc.hold("combine")
    field.value_input = "formatado"  # Python wrote the very field being typed in
    _typed(session, browser, field, "0006060")
    assert seen == []  # both wait for the hold's end, in order
    _end_hold(session)
    # Replayed in order: the page gets Python's text and then its own newer one, so page, model and callbacks
    # all end on what was typed.
    assert [(e.attr, e.new) for e in browser.sent] == [("value_input", "formatado"), ("value_input", "0006060")]
    assert field.value_input == "0006060" and seen == ["formatado", "0006060"]


def test_the_page_list_of_the_diagnostic_dump_names_a_closed_page_and_never_raises() -> None:
    # Panel keeps a closed page's views for a while after it destroyed its document (its roots are gone). The
    # SIGUSR1 dump reads every view; an exception there would surface in the event loop and stop the server.
    from panel.io.state import state

    open_doc, closed_doc = Document(), Document()
    open_doc.add_root(Div(text="<div class='ofc-empty'><b>Nada ainda</b> <p>Lendo o arquivo…</p></div>"))
    closed_doc.add_root(Div(text="fechada"))
    state._views["test-open"] = (None, None, open_doc, None)
    state._views["test-closed"] = (None, None, closed_doc, None)
    try:
        del closed_doc._roots  # what Panel's destroy() does to a closed page's document (panel.io.document)
        lines = describe_documents()
    finally:
        del state._views["test-open"], state._views["test-closed"]
    assert f"document {id(closed_doc):#x}: closed" in lines
    assert any(line.startswith(f"document {id(open_doc):#x}: hold=None held_events=0 pulled=False connected=False "
                               "loaded=False roots=1 "
                               "write_blocked=False queued_messages=0") for line in lines), lines
    assert "  texts: Nada ainda Lendo o arquivo…" in lines, lines  # what the page shows, tags dropped


class _Context:  # what makes a document a server session's (only looked up, never used here)
    pass


@contextlib.asynccontextmanager
async def _server_document() -> AsyncIterator[Document]:
    """A document of a Bokeh server session on the running event loop, named to the patch as the server's loop
    (``serve_on``), as ``panel_serve`` does."""
    from tornado.ioloop import IOLoop

    dispatch_browser_changes_at_once()
    serve_on(asyncio.get_running_loop())
    doc = Document()
    doc.add_root(Div(text=""))
    session = ServerSession(ID("s"), doc, io_loop=IOLoop.current())
    context = _Context()
    doc._session_context = weakref.ref(context)
    try:
        yield doc
    finally:
        session.destroy()
        serve_on(None)


async def _until(done: Callable[[], bool], seconds: float = 2) -> None:
    for _ in range(int(seconds / 0.02)):
        if done():
            return
        await asyncio.sleep(0.02)


class _ScannedSlowly(list):
    """The list of a hold's changes. Bokeh scans it backwards for a change to merge with before it adds a new
    one; with a page's worth of changes held that scan takes a while. Here it lasts until the hold has ended."""

    def __init__(self, scanning: threading.Event, ended: threading.Event) -> None:
        super().__init__()
        self.scanning, self.ended = scanning, ended

    def __reversed__(self) -> Iterator[Any]:
        self.scanning.set()
        self.ended.wait(2)
        return super().__reversed__()


def test_a_pool_threads_change_is_not_lost_while_the_loop_ends_the_hold() -> None:
    # Panel ends a pool thread's hold on the loop's next turn, while the thread goes on updating the page. A
    # change the thread was adding as the loop ended the hold went into the list the loop had just taken and
    # replaced: lost, and the pane it would have updated never changed (the page stayed on "Lendo o arquivo…").
    go, ended, ran = threading.Event(), threading.Event(), threading.Event()

    async def server() -> None:
        async with _server_document() as doc:
            doc.hold("combine")  # a pool thread updated a pane; its hold ends on this loop
            doc.callbacks._held_events = _ScannedSlowly(go, ended)

            def pool_thread() -> None:
                doc.add_next_tick_callback(ran.set)  # the thread's next pane update, for the loop to run
                go.set()

            threading.Thread(target=pool_thread).start()
            go.wait(2)  # the thread is adding its change (or has handed it over)
            doc.unhold()
            ended.set()
            await _until(ran.is_set)

    run_in_own_thread(server)
    assert go.is_set() and ran.is_set(), "the update scheduled while the hold ended was lost"


class _ReplayedSlowly(list):
    """The held changes as the hold's end copies them to replay them, slowly: the hold is already released, and
    a pool thread schedules another update meanwhile."""

    def __init__(self, held: list[Any], copying: threading.Event, scheduled: threading.Event) -> None:
        super().__init__(held)
        self.copying, self.scheduled = copying, scheduled

    def __iter__(self) -> Iterator[Any]:
        items = list(super().__iter__())
        self.copying.set()
        self.scheduled.wait(2)
        return iter(items)


def test_updates_run_in_the_order_they_were_made_when_one_comes_as_the_hold_ends() -> None:
    # Bokeh releases a hold before it replays the held changes: an update a pool thread scheduled in between ran
    # before the held, earlier one (the indicator got "Salvo" and then the older "Salvando…", for good).
    copying, scheduled = threading.Event(), threading.Event()
    order: list[str] = []

    async def server() -> None:
        async with _server_document() as doc:
            doc.hold("combine")
            doc.add_next_tick_callback(lambda: order.append("saving"))  # held: the first update
            doc.callbacks._held_events = _ReplayedSlowly(doc.callbacks._held_events, copying, scheduled)

            def pool_thread() -> None:
                copying.wait(2)
                doc.add_next_tick_callback(lambda: order.append("saved"))  # the next one, as the hold ends
                scheduled.set()

            threading.Thread(target=pool_thread).start()
            doc.unhold()
            await _until(lambda: len(order) == 2)

    run_in_own_thread(server)
    assert copying.is_set() and scheduled.is_set()
    assert order == ["saving", "saved"]


class _PullingBrowser:
    """A connection of a Bokeh server session, as far as the session sees it: it is sent patches."""

    def __init__(self) -> None:
        self.protocol = Protocol()
        self.patches: list[tuple[str, Any]] = []

    def send_patch_document(self, event: Any) -> Any:
        self.patches.append((event.attr, event.new))
        return asyncio.sleep(0)


def test_changes_a_hold_collects_before_the_page_is_ready_reach_a_browser_that_pulled_the_document() -> None:
    # Panel drops what a hold collected while the page is not ready (no document_ready yet), as if the document
    # were still to be sent whole; once the browser pulled it, they must follow as patches.
    from panel.io import document as panel_document
    from tornado.ioloop import IOLoop

    send_changes_once_pulled()
    send_changes_once_pulled()  # idempotent

    async def scenario() -> tuple[list[Any], list[Any]]:
        doc = Document()
        div = Div(text="carregando")
        doc.add_root(div)
        session = ServerSession("pagina", doc, IOLoop.current())
        browser = _PullingBrowser()
        session.subscribe(browser)  # type: ignore[arg-type]
        div.on_change("text", lambda _attr, _old, new: echoed.append(new))  # as Panel's models have

        def change_in_a_hold(text: str) -> None:  # what a callback does while the page loads (Panel's hold)
            doc.hold("combine")
            div.text = text
            panel_document._dispatch_events(doc, panel_document._drain_unconnected_events(doc, threading.Lock()))

        change_in_a_hold("antes do pull")  # the pull will carry it
        await asyncio.sleep(0.05)
        before = list(browser.patches)
        reply = await session._handle_pull(SimpleNamespace(header={"msgid": "1"}), browser)
        assert "antes do pull" in reply.content_json
        change_in_a_hold("depois do pull")
        await _until(lambda: browser.patches)
        return before, browser.patches

    echoed: list[str] = []
    before, after = run_in_own_thread(scenario)
    assert before == []
    assert after == [("text", "depois do pull")]
    assert echoed == []  # sent to the browser, not taken for the browser's own change


def test_a_browser_patch_leaves_a_model_not_sent_yet_to_be_sent_in_full() -> None:
    # A model attached while a hold keeps its change back has not reached the browser. Bokeh took any patch from
    # the browser for a sign that it knows every model of the document, so the change went out later with a bare
    # reference the page could not resolve ("reference ... isn't known") and the page dropped it.
    from bokeh.models import Row

    keep_unsent_models_new()
    keep_unsent_models_new()  # idempotent
    doc = Document()
    row, field = Row(children=[]), TextInput(value="")
    doc.add_root(row)
    doc.add_root(field)
    doc.to_json()  # the browser's pull: it knows every model now
    doc.hold("combine")
    preview = Div(text="Lido como UTF-8")
    row.children = [preview]  # a new model, its change held
    keystroke = {"events": [{"kind": "ModelChanged", "model": {"id": field.id}, "attr": "value", "new": "a"}]}
    doc.apply_json_patch(keystroke, setter=None)  # the browser's patch arrives meanwhile
    assert field.value == "a"
    held = [e for e in doc.callbacks._held_events if isinstance(e, ModelChangedEvent) and e.model is row]
    sent = Protocol().create("PATCH-DOC", held).content_json  # what the end of the hold sends
    assert f'"id":"{preview.id}","attributes"' in sent.replace(" ", ""), sent  # the model itself, not a reference
    again = Protocol().create("PATCH-DOC", held).content_json
    assert f'[{{"id":"{preview.id}"}}]' in again.replace(" ", ""), again  # once sent, a reference is enough


class _SlowSocket:
    """A websocket whose writes finish when the test says (Panel writes through ``send`` what is not Tornado's)."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.pending: list[asyncio.Future[None]] = []

    def send(self, text_data: str = "", binary_data: bytes = b"") -> asyncio.Future[None]:
        self.sent.append(text_data)
        future = asyncio.get_running_loop().create_future()
        self.pending.append(future)
        return future

    def finish_writes(self) -> None:
        for future in self.pending:
            if not future.done():
                future.set_result(None)


class _Connection:  # a Bokeh server connection as Panel's writer sees it (hashable, as it keys the queue)
    def __init__(self, socket: _SlowSocket) -> None:
        self._socket = socket
        self.protocol = Protocol()


def test_a_patch_queued_while_panels_writer_finishes_is_written() -> None:
    # Panel queues patches while the websocket is busy and a writer task drains the queue. A writer ending
    # while an update queues more removed the queue's mark; the writer started for those found no mark and
    # left them unwritten, and patches sent meanwhile by Bokeh referred to models only they defined.
    from bokeh.document.events import ModelChangedEvent as Changed
    from panel.io import document as panel_document

    write_queued_messages()
    write_queued_messages()  # idempotent

    async def scenario() -> list[str]:
        doc = Document()
        div = Div(text="")
        doc.add_root(div)
        socket = _SlowSocket()
        conn = _Connection(socket)

        def changed(text: str) -> Changed:
            div.text = text
            return Changed(doc, div, "text", text)

        panel_document.schedule_write_events(doc, [conn], [changed("primeiro")])  # type: ignore[list-item]
        await _until(lambda: socket.pending)  # the writer is waiting for the first patch's frames
        socket.finish_writes()  # they finish...
        panel_document.schedule_write_events(doc, [conn], [changed("segundo")])  # ...as an update queues more
        for _ in range(20):
            await asyncio.sleep(0.01)
            socket.finish_writes()
        return [text for text in socket.sent if '"text"' in text]

    written = run_in_own_thread(scenario)
    assert len(written) == 2 and "primeiro" in written[0] and "segundo" in written[1], written


def _attach_from_a_thread(row: Any, model: Any, *, wait: float = 0.3) -> threading.Thread:
    """What a pool thread does while the loop works on the same document: ``row`` gets ``model`` (attaching
    it). Waits up to ``wait`` seconds for it, so a thread that can go on does so now."""
    thread = threading.Thread(target=lambda: setattr(row, "children", [*row.children, model]))
    thread.start()
    thread.join(wait)
    return thread


def test_a_model_a_pool_thread_attaches_while_the_loop_makes_a_patch_stays_to_be_sent_in_full() -> None:
    # Making a patch, the loop rebuilds the document's set of models not sent yet without those it sent; a model
    # a pool thread attached meanwhile was lost from the set (or the rebuild failed, "Set changed size during
    # iteration", and the patch with it) and later went out as a reference the page could not resolve.
    from bokeh.models import Row

    keep_unsent_models_new()
    doc = Document()
    row = Row(children=[])
    doc.add_root(row)
    doc.to_json()  # the browser's pull
    row.children = [Div(text="enviado")]  # attached, to go in the patch being made
    late = Div(text="Lido como UTF-8")
    threads: list[threading.Thread] = []

    def sent_in_this_patch(model: Any) -> bool:  # what the serializer answers, model by model
        if not threads:
            threads.append(_attach_from_a_thread(row, late))
        return False

    doc.models.flush_synced(lambda model: not sent_in_this_patch(model))
    threads[0].join(5)
    assert late in doc.models._new_models
    sent = Protocol().create("PATCH-DOC", [ModelChangedEvent(doc, row, "children", row.children)]).content_json
    assert f'"id":"{late.id}","attributes"' in sent.replace(" ", ""), sent  # the model itself, not a reference


def test_a_model_attached_while_the_document_is_pulled_stays_to_be_sent_in_full(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A pull serializes the document and then counts every model as sent: one a pool thread attached after the
    # walk was counted too, and its first patch carried a bare reference.
    from bokeh.document.models import DocumentModelManager
    from bokeh.models import Row

    keep_unsent_models_new()
    doc = Document()
    row = Row(children=[])
    doc.add_root(row)
    late = Div(text="Lido como UTF-8")
    flush = DocumentModelManager.flush_synced

    def walked_then_flushed(self: Any, *args: Any) -> None:  # the thread attaches between the walk and the count
        _attach_from_a_thread(row, late).join(5)
        flush(self, *args)

    monkeypatch.setattr(DocumentModelManager, "flush_synced", walked_then_flushed)
    pulled = doc.to_json()
    monkeypatch.undo()
    assert late.id not in str(pulled)  # the pull did not carry it
    assert late in doc.models._new_models
