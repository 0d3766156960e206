"""Panel's callback thread pool, with the events of one browser session kept in order.

With ``--num-threads`` Panel submits every property change and every event of a session to a plain thread pool,
so a click can run before the change that preceded it in the browser: type an e-mail, click "Criar usuário" at
once, and the handler may still see the old, empty value. ``SessionOrderedExecutor`` runs the tasks of one
Bokeh document one after the other, in the order Panel submitted them, while different sessions still run in
parallel on the pool's threads. Tasks that name no document run as in a plain pool.

``dispatch_browser_changes_at_once`` mends what threads do to a document's holds: a callback that updates a pane
on a pool thread holds the document until the next turn of the event loop, and Bokeh collects every change made
meanwhile, the browser's own included, to replay it when the hold ends. Replayed there, a browser change is no
longer recognised as that browser's, so it is sent back to it: a text field gets back the text it had some
keystrokes ago and the keys typed since are lost. Changes that come from a browser are dispatched as they
arrive, as Bokeh does when nothing holds the document, so they are not echoed. The exception is a property
Python changed too during the same hold: that browser change stays behind Python's, in order, as before.

The same patch hands every change a pool thread makes to a server document to the event loop (``serve_on``),
in the order the thread made them. A pool thread's changes are pane updates: callbacks the session schedules on
the loop. Made beside the loop they went wrong in two ways while the loop ended a hold (Panel ends a thread's
hold on the loop's next turn, and the thread goes on updating the page):

* lost: Bokeh adds a held change to the hold's list, and ending a hold copies that list and then replaces it;
  a change added between the two was dropped (a page stayed on "Lendo o arquivo…" with every thread idle);
* out of order: ending a hold releases it before it replays the held changes, so a change made meanwhile was
  scheduled before earlier held ones (the autosave indicator ended on "Salvando…" after "Salvo").

On the loop, a callback a thread scheduled is registered at once, in order; any other change joins the hold, or,
when there is none, is applied in a callback that holds the document's lock.

``send_changes_once_pulled`` mends what Panel does with changes made before a page is ready. Panel counts a
page as connected once the browser's ``document_ready`` is handled (sent when every view has rendered, scripts and
styles loaded), and until then drops the changes a hold collected, on the premise that the document will still
be sent whole. But the browser pulled the whole document when its websocket opened, before rendering it: a change
made in between never reached it. An upload that finished while the page was still loading its component bundles
left step 2 on "Lendo o arquivo…" for good, while the server's own document held the preview. Once the browser
has pulled the document, such changes are sent to it as patches (after a callback that holds the document's
lock, in the order they were made); before the pull they are still dropped, the pull carries them.

``write_queued_messages`` mends Panel's queue of patches it could not write at once (the websocket was busy):
a writer that ends while another update queues more removes the queue's "blocked" mark, and the writer started
for the newer messages then finds no mark and returns, leaving them unwritten until the next update; patches sent
meanwhile by Bokeh's own path overtake them and refer to models they define. A writer now starts again while
messages wait.

``keep_unsent_models_new`` mends what Bokeh does with models it has not sent yet when a browser's patch arrives.
Bokeh sends a new model in full the first time a patch refers to it and by reference afterwards; applying any
patch from the browser marked every model of the document as known to it, those attached while a hold kept their
change back included. When the hold ended, the page got references it could not resolve ("reference p2378 isn't
known", a script error, not a console message) and dropped the patch: after a slow first preview, the upload
component's resent news arrived during the render and the page kept "Lendo o arquivo…". A browser's patch now
leaves the models it could not have known as new.

The same bookkeeping is shared by threads: a pool thread attaches models (adds them to the "not sent yet" set)
while the loop makes a patch of earlier changes and then rebuilds that set without what it sent. A model added
between the rebuild's reading and its replacing was lost from the set (or the rebuild failed with "Set changed
size during iteration" and the patch with it), and the model went out later as a reference the page could not
resolve; a pull counted a model attached after its walk as sent. The set is now read and written under one lock
per document, and models attached while a pull or a browser's patch is taken stay to be sent in full (at worst a
model goes out twice, which the page takes as an update of the one it has).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Any

from bokeh.document import Document
from bokeh.document.callbacks import DocumentCallbackManager, invoke_with_curdoc
from bokeh.document.events import DocumentPatchedEvent, MessageSentEvent, SessionCallbackAdded, SessionCallbackRemoved
from bokeh.document.models import DocumentModelManager
from bokeh.server import session as bokeh_session
from bokeh.server.session import ServerSession


def _document_of(fn: Callable[..., Any], args: tuple[Any, ...]) -> Document | None:
    """Panel passes the document as the first argument (or binds it with ``functools.partial``)."""
    candidates = list(args[:1])
    while isinstance(fn, partial):
        candidates.extend(fn.args[:1])
        fn = fn.func
    return next((c for c in candidates if isinstance(c, Document)), None)


class SessionOrderedExecutor(ThreadPoolExecutor):
    def __init__(self, max_workers: int) -> None:
        super().__init__(max_workers=max_workers, thread_name_prefix="panel-callback")
        self._tails: dict[int, Future[Any]] = {}  # document id -> the last task submitted for it
        self._order_lock = threading.Lock()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        doc = _document_of(fn, args)
        if doc is None:
            return super().submit(fn, *args, **kwargs)
        key = id(doc)
        done: Future[Any] = Future()

        def run() -> None:
            if not done.set_running_or_notify_cancel():
                return
            try:
                done.set_result(fn(*args, **kwargs))
            except BaseException as exc:  # noqa: BLE001 - handed to whoever waits on the future
                done.set_exception(exc)
            finally:
                with self._order_lock:
                    if self._tails.get(key) is done:
                        del self._tails[key]

        def start(_previous: Future[Any] | None = None) -> None:
            try:
                super(SessionOrderedExecutor, self).submit(run)
            except RuntimeError as exc:  # the pool shut down while this task waited its turn
                if done.set_running_or_notify_cancel():
                    done.set_exception(exc)

        with self._order_lock:
            previous = self._tails.get(key)
            self._tails[key] = done
        if previous is None:
            start()
        else:
            previous.add_done_callback(start)
        return done


def _python_changed_it_too(callbacks: DocumentCallbackManager, event: Any) -> bool:
    """Whether a change Python made to the same property waits in the hold. The browser's change then stays
    held behind it, as Bokeh has it: both are replayed in order and the browser gets its own text back after
    Python's, so the page, the model and Python's callbacks all end on the browser's newer text."""
    model, attr = getattr(event, "model", None), getattr(event, "attr", None)
    return any(getattr(held, "model", None) is model and getattr(held, "attr", None) == attr
               for held in list(callbacks._held_events))


_LOOP: asyncio.AbstractEventLoop | None = None  # the server's event loop: the thread that owns the documents


def serve_on(loop: asyncio.AbstractEventLoop | None) -> None:
    """Name the event loop whose thread owns the server's documents (``panel_serve`` does, once built)."""
    global _LOOP
    _LOOP = loop


def _off_the_loop(doc: Document) -> bool:
    if _LOOP is None or doc.session_context is None:
        return False
    try:
        return asyncio.get_running_loop() is not _LOOP
    except RuntimeError:  # no loop runs in this thread: a pool thread
        return True


def dispatch_browser_changes_at_once() -> None:
    """Patch Bokeh so that a change a browser sent is not held (and so not echoed back to it), unless Python
    changed the same property during the same hold; and so that a pool thread's changes to a server document
    reach it through the event loop, in order (see the module docstring)."""
    held_trigger = DocumentCallbackManager.trigger_on_change
    if getattr(held_trigger, "dispatches_browser_changes", False):
        return

    def dispatch(self: DocumentCallbackManager, doc: Document, event: Any) -> None:
        # What Bokeh does for an event when nothing holds the document.
        if event.callback_invoker is not None:
            invoke_with_curdoc(doc, event.callback_invoker)

        def invoke_callbacks() -> None:
            for callback in self.change_callbacks():
                callback(event)

        invoke_with_curdoc(doc, invoke_callbacks)

    def arrive_on_loop(self: DocumentCallbackManager, event: Any) -> None:
        doc = self._document()
        if doc is None or not hasattr(self, "_change_callbacks"):  # the page was closed meanwhile (destroyed)
            return
        if isinstance(event, SessionCallbackAdded | SessionCallbackRemoved):
            # A callback scheduled (or dropped) by a pool thread, in the order the thread did it: registered
            # now, never held (Panel releases a thread's hold with one of these).
            dispatch(self, doc, event)
            return
        if self._hold is not None:
            held_trigger(self, event)
            return
        # A change of the page reaches the session inside a callback that holds the document's lock, as it
        # does at the end of a hold.
        try:
            doc.add_next_tick_callback(partial(trigger_on_change, self, event))
        except RuntimeError:  # the session was closed meanwhile: nobody is left to tell
            return

    def trigger_on_change(self: DocumentCallbackManager, event: Any) -> None:
        doc = self._document()
        if doc is None:
            return
        loop = _LOOP
        if loop is not None and _off_the_loop(doc):
            try:
                loop.call_soon_threadsafe(arrive_on_loop, self, event)
                return
            except RuntimeError:  # the loop is closed (the server stops): as Bokeh would
                pass
        if (self._hold is not None and isinstance(getattr(event, "setter", None), ServerSession)
                and not _python_changed_it_too(self, event)):
            # The session is still applying the browser's patch, so it knows which connection sent it and does
            # not send it back there.
            dispatch(self, doc, event)
            return
        held_trigger(self, event)

    trigger_on_change.dispatches_browser_changes = True  # type: ignore[attr-defined]
    DocumentCallbackManager.trigger_on_change = trigger_on_change  # type: ignore[method-assign]


_PULLED: weakref.WeakSet[Document] = weakref.WeakSet()  # documents a browser has pulled (has as a whole)


def _hold_lock(doc: Document) -> threading.Lock:
    """The lock Panel's ``hold`` takes around a document's hold and its end (``panel.io.document._HOLD_LOCK``)."""
    from panel.io import document as panel_document

    return panel_document._HOLD_LOCK.setdefault(doc, threading.Lock())


def send_changes_once_pulled() -> None:
    """Patch Bokeh's PULL-DOC handler to note the pulled document, and Panel's end of a hold on a page that is not
    ready yet to send that page what the hold collected instead of dropping it (see the module docstring)."""
    from panel.io import document as panel_document

    handle_pull = ServerSession._handle_pull
    if getattr(handle_pull, "notes_the_pull", False):
        return
    pull = handle_pull.__wrapped__  # the handler inside Bokeh's document lock

    def pull_and_note(self: ServerSession, message: Any, connection: Any) -> Any:
        # Under the hold lock, so that no hold ends between the document being serialized and noted as pulled:
        # a change it collected meanwhile is sent (again, at worst), never dropped.
        with _hold_lock(self.document):
            reply = pull(self, message, connection)
            _PULLED.add(self.document)
        return reply

    def drain_unconnected_events(doc: Document, lock: threading.Lock) -> list[Any]:
        # Panel 1.9's ``_drain_unconnected_events``: the callbacks scheduled meanwhile are registered, the custom
        # messages wait for the page to be ready, the changes of models are dropped as the document goes out whole;
        # unless the browser already has the document, then they follow in a locked callback, in order.
        with lock:
            events = list(doc.callbacks._held_events or [])
            doc.callbacks._held_events = []
            doc.callbacks._hold = None
            pulled = doc in _PULLED
            dispatch, deferred = [], []
            for event in events:
                if isinstance(event, SessionCallbackAdded | SessionCallbackRemoved):
                    dispatch.append(event)
                elif not isinstance(event, DocumentPatchedEvent) or isinstance(event, MessageSentEvent):
                    deferred.append(event)
                elif pulled:
                    # Sent to the browser, not echoed into Python: the model callbacks of a change Python made
                    # would take it, after the change's own bookkeeping ended, for the browser's (Panel dropped
                    # these events whole, callbacks included; replayed with them, a page's busy flag went round
                    # and round).
                    event.callback_invoker = None
                    dispatch.append(event)
            if deferred:
                panel_document._UNCONNECTED_EVENTS.setdefault(doc, []).extend(deferred)
        if pulled and dispatch:
            doc.add_next_tick_callback(partial(panel_document.retrigger_events, doc, dispatch))
            return []
        return dispatch

    locked = bokeh_session._needs_document_lock(pull_and_note)
    locked.notes_the_pull = True  # type: ignore[attr-defined]
    ServerSession._handle_pull = locked  # type: ignore[method-assign]
    panel_document._drain_unconnected_events = drain_unconnected_events


def write_queued_messages() -> None:
    """Patch Panel's writer of queued patches so that messages queued while it ran are written too (see the
    module docstring)."""
    from panel.io import document as panel_document

    write = panel_document._dispatch_msgs
    if getattr(write, "writes_what_waits", False):
        return

    async def write_and_follow(doc: Document) -> None:
        await write(doc)
        if panel_document._WRITE_MSGS.get(doc) and doc not in panel_document._WRITE_BLOCK:
            panel_document._WRITE_BLOCK[doc] = True  # what the writer needs to see to write them
            panel_document._dispatch_write_task(doc, write_and_follow, doc)

    write_and_follow.writes_what_waits = True  # type: ignore[attr-defined]
    panel_document._dispatch_msgs = write_and_follow


def _models_lock(models: DocumentModelManager) -> threading.RLock:
    """The lock of a document's bookkeeping of its models (which are attached, which were not sent yet). Taken
    on every recompute: made once per document (``setdefault`` keeps the first of two threads' locks)."""
    lock = models.__dict__.get("_oficina_lock")
    return lock if lock is not None else models.__dict__.setdefault("_oficina_lock", threading.RLock())


@contextlib.contextmanager
def _attached_meanwhile_stay_new(models: DocumentModelManager, *, unsent_too: bool = False) -> Iterator[None]:
    """Models attached while the block runs, by any thread, are still to be sent in full after it: the block
    serializes the document or takes a browser's patch and then counts every model it saw as known. With
    ``unsent_too``, so are those not sent when it began (a browser's patch cannot have referred to them)."""
    attached: set[Any] = set()
    with _models_lock(models):  # one hold: no model is attached between the snapshot and the watching
        models.__dict__.setdefault("_oficina_watchers", []).append(attached)
        if unsent_too:
            attached |= models._new_models
    try:
        yield
    finally:
        with _models_lock(models):
            models.__dict__["_oficina_watchers"].remove(attached)
            models._new_models |= {model for model in attached if models._models.get(model.id) is model}


def keep_unsent_models_new() -> None:
    """Patch Bokeh's bookkeeping of the models not sent to the browser yet so that they stay to be sent in full:
    through a browser's patch, through a pull, and while a pool thread attaches models (see the module
    docstring)."""
    apply_json_patch = Document.apply_json_patch
    if getattr(apply_json_patch, "keeps_unsent_models_new", False):
        return
    to_json = Document.to_json
    recompute = DocumentModelManager.recompute
    flush_synced = DocumentModelManager.flush_synced

    def apply_and_keep_unsent(self: Document, patch_json: Any, *, setter: Any = None) -> None:
        with _attached_meanwhile_stay_new(self.models, unsent_too=True):
            apply_json_patch(self, patch_json, setter=setter)

    def to_json_keeping_late_models_new(self: Document, *args: Any, **kwargs: Any) -> Any:
        with _attached_meanwhile_stay_new(self.models):
            return to_json(self, *args, **kwargs)

    def locked_recompute(self: DocumentModelManager) -> None:
        with _models_lock(self):
            watchers = self.__dict__.get("_oficina_watchers")
            before = set(self._new_models) if watchers else None
            recompute(self)
            if watchers and before is not None:
                attached = self._new_models - before
                for watcher in watchers:
                    watcher |= attached

    def locked_flush_synced(self: DocumentModelManager, is_still_new: Any = None) -> None:
        with _models_lock(self):
            flush_synced(self, is_still_new)

    apply_and_keep_unsent.keeps_unsent_models_new = True  # type: ignore[attr-defined]
    Document.apply_json_patch = apply_and_keep_unsent  # type: ignore[method-assign]
    Document.to_json = to_json_keeping_late_models_new  # type: ignore[method-assign]
    DocumentModelManager.recompute = locked_recompute  # type: ignore[method-assign]
    DocumentModelManager.flush_synced = locked_flush_synced  # type: ignore[method-assign]


def _lock_state(lock: Any) -> str:
    """A Tornado ``locks.Lock``: free, or held with how many coroutines wait for it."""
    block = getattr(lock, "_block", None)
    if block is None:
        return "?"
    return "free" if block._value > 0 else f"held({len(block._waiters)} waiting)"


def _session_locks(doc: Document) -> str:
    """The Bokeh session's document lock (every scheduled update runs under it) and each connection's write
    lock: held with coroutines waiting means an update is stuck behind a write or a callback that never ends."""
    session = getattr(getattr(doc, "session_context", None), "_session", None)
    if session is None:
        return ""
    writes = ",".join(_lock_state(getattr(c._socket, "write_lock", None)) for c in session._subscribed_connections)
    return f" session_lock={_lock_state(session._lock)} write_locks=[{writes}]"


def describe_threads() -> list[str]:
    """Every thread's stack, read with the interpreter's lock held. (``faulthandler`` reads other threads' frames
    while they run, and once crashed the server in the middle of a dump.)"""
    import sys
    import traceback

    names = {thread.ident: thread.name for thread in threading.enumerate()}
    lines = []
    for ident, frame in sys._current_frames().items():
        lines.append(f"Thread {ident:#x} {names.get(ident, '?')} (most recent call first):")
        stack = reversed(traceback.extract_stack(frame))
        lines += [f'  File "{f.filename}", line {f.lineno} in {f.name}' for f in stack]
    return lines


def describe_tasks(limit: int = 40) -> list[str]:
    """The event loop's pending tasks with the line each one waits on (call on the loop's thread)."""
    import asyncio

    try:
        tasks = list(asyncio.all_tasks())
    except RuntimeError:  # no running loop in this thread
        return []
    lines = []
    for task in tasks[:limit]:
        stack = task.get_stack(limit=1)
        where = f"{stack[0].f_code.co_filename.rsplit('/', 2)[-1]}:{stack[0].f_lineno}" if stack else "?"
        lines.append(f"task {task.get_coro().__qualname__} at {where}")
    if len(tasks) > limit:
        lines.append(f"... and {len(tasks) - limit} more tasks")
    return lines


def _texts(doc: Document, *, each: int = 70, limit: int = 1500) -> str:
    """What the page's text models hold on the server (tags dropped, each shortened): compared with the screenshot,
    it tells an update the server never made from one the browser never got."""
    import html
    import re

    texts: list[str] = []
    size = 0
    for model in list(doc.models):
        try:
            if "text" not in model.properties():
                continue
            raw = str(model.text or "")[: each * 40]  # the start of a big pane is enough
            text = " ".join(re.sub(r"<[^>]*>", " ", html.unescape(raw)).split())[:each]
        except Exception as exc:  # noqa: BLE001 - one unreadable model must not hide the others
            text = f"(unreadable {type(model).__name__}: {type(exc).__name__})"
        if text:
            texts.append(text)
            size += len(text) + 3
            if size >= limit:
                break
    return " | ".join(texts)[:limit]


def describe_documents() -> list[str]:
    """One line per open page (Bokeh document): whether it is held and how many changes wait in the hold,
    whether its browser is connected, and the messages Panel queued for its websocket and has not written.
    A page whose updates never arrive while every thread is idle shows here as a document held with changes
    waiting, or with writes queued (written with the thread dump on ``SIGUSR1``); the line after it holds the
    texts the page shows on the server. Never raises: a page closed meanwhile (a destroyed document) is listed
    as such."""
    from panel.io import document as panel_document
    from panel.io.state import state

    documents = {id(doc): doc for _view, _root, doc, _comm in list(state._views.values()) if doc is not None}
    lines = []
    for doc in documents.values():
        try:
            if not hasattr(doc, "_roots"):
                lines.append(f"document {id(doc):#x}: closed")
                continue
            callbacks = doc.callbacks
            queued = sum(len(m) for m in panel_document._WRITE_MSGS.get(doc, {}).values())
            lines.append(
                f"document {id(doc):#x}: hold={callbacks._hold!r} held_events={len(callbacks._held_events)} "
                f"pulled={doc in _PULLED} connected={bool(state._connected.get(doc))} "
                f"loaded={bool(state._loaded.get(doc))} roots={len(doc.roots)} "
                f"write_blocked={doc in panel_document._WRITE_BLOCK} queued_messages={queued} "
                f"write_tasks={len(panel_document._write_tasks.get(doc, []))}{_session_locks(doc)}")
            lines.append(f"  texts: {_texts(doc)}")
        except Exception as exc:  # noqa: BLE001 - a diagnostic must not fail on a page it cannot read
            lines.append(f"document {id(doc):#x}: unreadable ({type(exc).__name__}: {exc})")
    return lines
