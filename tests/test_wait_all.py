"""``dashboard.web.wait_all``: futures finished by another thread (the audit writer's commits) reach the
event loop with one wake-up per burst, errors and timeouts included."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future

import pytest

from dashboard.web import wait_all
from tests.async_support import run_in_own_thread as run


def test_a_burst_of_commits_wakes_the_loop_once_and_every_waiter_gets_its_answer() -> None:
    async def scenario() -> tuple[list[str], int]:
        loop = asyncio.get_running_loop()
        wakeups = 0
        original = loop.call_soon_threadsafe

        def counting(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            nonlocal wakeups
            wakeups += 1
            return original(*args, **kwargs)

        loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
        futures = [Future() for _ in range(20)]
        answers: list[str] = []

        async def request(i: int) -> None:
            await wait_all([futures[i]], timeout=5)
            answers.append(f"r{i}")

        tasks = [asyncio.create_task(request(i)) for i in range(20)]
        await asyncio.sleep(0.05)  # every request is waiting

        def writer() -> None:  # one batch committed: all its futures at once
            for f in futures:
                f.set_result(None)

        thread = threading.Thread(target=writer)
        thread.start()
        thread.join()
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
        return answers, wakeups

    answers, wakeups = run(scenario)
    assert sorted(answers) == sorted(f"r{i}" for i in range(20))
    # One per burst (wrap_future would make it 20). A writer thread descheduled in the middle of its batch on a
    # loaded machine can let the loop drain once in between, hence a small margin.
    assert 1 <= wakeups <= 3


def test_the_first_error_is_raised_and_a_future_finished_before_the_wait_counts() -> None:
    async def scenario() -> None:
        ok, failed = Future(), Future()
        ok.set_result(None)
        threading.Timer(0.05, lambda: failed.set_exception(RuntimeError("o banco caiu"))).start()
        with pytest.raises(RuntimeError, match="o banco caiu"):
            await wait_all([ok, failed], timeout=5)

    run(scenario)


def test_a_commit_that_never_comes_times_out() -> None:
    async def scenario() -> None:
        never: Future[None] = Future()
        with pytest.raises(TimeoutError):
            await wait_all([never], timeout=0.1)
        never.set_result(None)  # finished later: nobody is waiting any more, nothing breaks
        await asyncio.sleep(0.05)

    run(scenario)
