"""``dashboard.web.run_blocking``: work done in a worker thread, and the futures it leaves for other threads to
finish (the audit writer's commits), reach the event loop with one wake-up per burst, errors and timeouts
included."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import Future
from typing import Any

import pytest

from dashboard.web import run_blocking
from tests.async_support import run_in_own_thread as run


def _counting_wakeups(loop: asyncio.AbstractEventLoop) -> list[int]:
    count = [0]
    original = loop.call_soon_threadsafe

    def counting(*args: Any, **kwargs: Any) -> Any:
        count[0] += 1
        return original(*args, **kwargs)

    loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
    return count


def test_a_burst_of_commits_answers_every_call_with_one_wakeup() -> None:
    async def scenario() -> tuple[list[str], int, int]:
        wakeups = _counting_wakeups(asyncio.get_running_loop())
        commits = [Future() for _ in range(20)]
        returned: list[int] = []

        def call(i: int, waits: list[Future[None]]) -> str:
            waits.append(commits[i])  # its audit row is queued, not committed yet
            returned.append(i)
            return f"r{i}"

        async def request(i: int) -> str:
            waits: list[Future[None]] = []
            return await run_blocking(lambda: call(i, waits), pool=f"test-burst-{id(commits)}", workers=4,
                                      waits=waits)

        tasks = [asyncio.create_task(request(i)) for i in range(20)]
        deadline = time.monotonic() + 5
        while len(returned) < 20 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # every call has returned and waits for its commit
        assert not any(t.done() for t in tasks), "answered before the commit"
        before = wakeups[0]

        def writer() -> None:  # one batch committed: all its futures at once
            for f in commits:
                f.set_result(None)

        thread = threading.Thread(target=writer)
        thread.start()
        thread.join()
        answers = await asyncio.wait_for(asyncio.gather(*tasks), 5)
        return answers, before, wakeups[0] - before

    answers, before, burst = run(scenario)
    assert answers == [f"r{i}" for i in range(20)]
    # Nothing woke the loop when the calls returned (the watchdog that guards the commits started once).
    assert before <= 2
    # One for the burst (20 with a wake-up per future). A writer thread descheduled in the middle of its
    # batch on a loaded machine can let the loop drain once in between, hence a small margin.
    assert 1 <= burst <= 3


def test_answers_finished_together_share_a_wakeup() -> None:
    async def scenario() -> tuple[list[int], int]:
        wakeups = _counting_wakeups(asyncio.get_running_loop())
        gate = threading.Event()
        finished: list[int] = []

        def work(i: int) -> int:
            gate.wait(5)
            finished.append(i)
            return i

        calls = asyncio.gather(*(run_blocking(lambda i=i: work(i), pool=f"test-gate-{id(gate)}", workers=10)
                                 for i in range(10)))
        await asyncio.sleep(0.05)  # every call is in its worker, waiting at the gate
        gate.set()
        deadline = time.monotonic() + 5
        while len(finished) < 10 and time.monotonic() < deadline:
            time.sleep(0.01)  # the loop is busy (blocked) while all ten finish
        time.sleep(0.05)
        return await asyncio.wait_for(calls, 5), wakeups[0]

    answers, wakeups = run(scenario)
    assert answers == list(range(10))
    assert wakeups == 1  # asyncio.wrap_future would wake the loop ten times


def test_the_first_error_is_raised_and_a_commit_done_before_counts() -> None:
    async def scenario() -> None:
        ok, failed = Future(), Future()
        ok.set_result(None)
        threading.Timer(0.05, lambda: failed.set_exception(RuntimeError("o banco caiu"))).start()

        def call(waits: list[Future[None]]) -> str:
            waits.extend([ok, failed])
            return "salvo"

        waits: list[Future[None]] = []
        with pytest.raises(RuntimeError, match="o banco caiu"):
            await run_blocking(lambda: call(waits), waits=waits)

    run(scenario)


def test_an_error_of_the_call_itself_is_raised_without_waiting() -> None:
    async def scenario() -> None:
        never: Future[None] = Future()

        def call(waits: list[Future[None]]) -> str:
            waits.append(never)
            raise ValueError("dados inválidos")

        waits: list[Future[None]] = []
        with pytest.raises(ValueError, match="dados inválidos"):
            await asyncio.wait_for(run_blocking(lambda: call(waits), waits=waits), 2)

    run(scenario)


def test_a_commit_that_never_comes_times_out_and_a_late_one_breaks_nothing() -> None:
    async def scenario() -> str:
        never: Future[None] = Future()
        waits: list[Future[None]] = []
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await run_blocking(lambda: waits.append(never), waits=waits, waits_timeout=0.2)
        assert 0.15 <= time.monotonic() - started < 3
        never.set_result(None)  # finished later: nobody is waiting any more, nothing breaks
        # and the next call is answered as usual
        again: list[Future[None]] = []
        done: Future[None] = Future()
        threading.Timer(0.05, lambda: done.set_result(None)).start()
        return await run_blocking(lambda: (again.append(done), "ok")[1], waits=again, waits_timeout=5)

    assert run(scenario) == "ok"


def test_a_call_raising_stopiteration_fails_alone_and_the_rest_of_its_burst_is_answered() -> None:
    # An asyncio future refuses StopIteration as its exception; raised while a burst is handed over, it would
    # leave every later call of the burst waiting forever.
    async def scenario() -> list[Any]:
        gate = threading.Event()
        finished: list[int] = []
        pool = f"test-stop-{id(gate)}"

        def work(i: int) -> int:
            gate.wait(5)
            finished.append(i)
            if i == 0:
                raise StopIteration
            return i

        calls = asyncio.gather(*(run_blocking(lambda i=i: work(i), pool=pool, workers=6) for i in range(6)),
                               return_exceptions=True)
        await asyncio.sleep(0.05)
        gate.set()
        deadline = time.monotonic() + 5
        while len(finished) < 6 and time.monotonic() < deadline:
            time.sleep(0.01)  # all six finish while the loop is busy: one burst
        time.sleep(0.05)
        return await asyncio.wait_for(calls, 5)

    first, *rest = run(scenario)
    assert isinstance(first, RuntimeError) and "StopIteration" in str(first)
    assert rest == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("gives_up", ["timeout", "cancelled"])
def test_a_caller_that_gives_up_before_its_work_started_cancels_the_work(gives_up: str) -> None:
    async def scenario() -> list[str]:
        ran: list[str] = []
        gate = threading.Event()
        pool = f"test-{gives_up}-{id(ran)}"
        first = asyncio.create_task(run_blocking(lambda: gate.wait(5), pool=pool, workers=1))
        await asyncio.sleep(0.05)  # the pool's only thread is busy: the next call queues
        if gives_up == "timeout":
            with pytest.raises(TimeoutError):
                await run_blocking(lambda: ran.append("tarde"), pool=pool, workers=1, timeout=0.1)
        else:
            queued = asyncio.create_task(run_blocking(lambda: ran.append("tarde"), pool=pool, workers=1))
            await asyncio.sleep(0.05)
            queued.cancel()  # the request went away (client gone, server stopping)
            with pytest.raises(asyncio.CancelledError):
                await queued
        gate.set()
        await first
        await asyncio.sleep(0.1)
        return ran

    assert run(scenario) == []


def test_a_timed_out_call_does_not_keep_its_answer_while_the_commit_hangs() -> None:
    import gc
    import weakref

    class Answer:
        pass

    async def scenario() -> tuple[Any, Future[None]]:
        never: Future[None] = Future()
        waits: list[Future[None]] = []
        made: list[Any] = []

        def call() -> Answer:
            waits.append(never)
            answer = Answer()
            made.append(weakref.ref(answer))
            return answer

        with pytest.raises(TimeoutError):
            await run_blocking(call, waits=waits, waits_timeout=0.1)
        return made[0], never

    ref, never = run(scenario)
    gc.collect()
    assert ref() is None, "the answer of a call given up on is still held by the commit it waited for"
    assert not never.done()
