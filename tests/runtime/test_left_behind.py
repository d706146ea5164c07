"""A part that swallows its cancellation (a plugin's stream catching CancelledError in a loop)
is left behind by whoever stopped it (kame.runtime.clock.cancel_within) and then hung a program
using the documented ``asyncio.run(main())`` for ever, silently: asyncio.run's end cancels and
awaits every task of the loop. An agent's stop() ends with
kame.runtime.interrupt.end_left_behind: such tasks are cancelled once more, get 5 s, then are
named in a warning and detached from the loop, so asyncio.run ends. A task whose waiter was
itself cancelled (a session's reply cancelled while its stall timer waited for the stream's
``__anext__``) is recorded as left behind too (was: not, so nothing could find it)."""

import asyncio
import subprocess
import sys
import textwrap

import pytest

from kame.runtime import interrupt
from kame.runtime.clock import LEFT_BEHIND, cancel_within


async def test_a_task_whose_waiter_is_cancelled_is_left_behind_and_recorded():
    release = asyncio.Event()

    async def stubborn():
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                pass  # (a plugin that swallows it)

    part = asyncio.create_task(stubborn(), name="part's stream")
    await asyncio.sleep(0)
    try:
        waiter = asyncio.create_task(cancel_within([part], 3600))
        await asyncio.sleep(0)
        waiter.cancel()  # (e.g. the session closing while its reply's timer waits for the stream)
        try:
            await waiter
        except asyncio.CancelledError:
            pass
        assert part in LEFT_BEHIND and not part.done() and part._log_destroy_pending is False
    finally:
        release.set()  # (the test's loop must end)
        await asyncio.wait({part})


SCRIPT = textwrap.dedent("""
    import asyncio, logging, sys
    from kame.runtime import interrupt
    from kame.runtime.clock import cancel_within
    from kame.runtime.interrupt import end_left_behind

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")

    async def stream_chat():  # (a plugin LLM's stream) never ends: asyncio.run's end would wait for ever
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                pass
        yield "x"

    async def reply(stream):  # (kame's own stream reading it)
        async for piece in stream:
            yield piece

    async def main():
        part = asyncio.create_task(reply(stream_chat()).__anext__(), name="next item of LLM mine's reply")
        await asyncio.sleep(0)
        await cancel_within([part], 0.05)  # (a session's close: left behind)
        print("left:", await end_left_behind("cascade", 0.05))  # (the agent's stop())
        print("running:", [t.get_name() for t in asyncio.all_tasks() if t is not asyncio.current_task()])

    if sys.argv[1] == "asyncio.run":
        asyncio.run(main())
    else:  # (kame run, kame client)
        interrupt.run_to_end(main())
    print("asyncio.run returned")
""")


@pytest.mark.parametrize("run", ["asyncio.run", "run_to_end"])
def test_asyncio_run_ends_after_an_agents_stop_left_a_stubborn_task_behind(run):
    out = subprocess.run([sys.executable, "-c", SCRIPT, run], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ['left: ["next item of LLM mine\'s reply"]', "running: []",
                                       "asyncio.run returned"]
    said = out.stderr.splitlines()
    assert said[0] == (
        "WARNING cascade: 1 task(s) did not stop within 0.05 s of their cancellation and are left behind "
        "(a component that ignores cancellation or never finishes closing): next item of LLM mine's reply"
        + interrupt.ASYNCIO_MAY_SAY)
    if run == "run_to_end":  # (its end closes no generator: nothing more is said)
        assert said == said[:1], out.stderr
    # (under asyncio.run, its end's aclose() of the two running generators: asyncio's ERROR lines, as warned)


async def test_the_rounds_of_end_left_behind_share_one_deadline(monkeypatch):
    """Each round (a task that ends may leave another) got the whole ``leave_after`` (was: stop()
    could take 3 x 5 s, where the docs say 5 s)."""
    from kame.runtime import interrupt

    release, given, made = asyncio.Event(), [], []

    async def stubborn():
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                pass

    def another():
        made.append(asyncio.create_task(stubborn(), name=f"part {len(made)}"))
        LEFT_BEHIND.add(made[-1])

    async def waits(tasks, timeout):  # (each round's wait, then one more left behind: the next round's)
        given.append(timeout)
        await asyncio.sleep(timeout)
        another()
        return tasks

    monkeypatch.setattr(interrupt, "cancel_within", waits)
    another()
    try:
        assert await interrupt.end_left_behind("cascade", 0.05) == ["part 0", "part 1", "part 2"]
        assert len(given) == 3 and sum(given) <= 0.05 + 1e-6, given
    finally:
        release.set()
        await asyncio.wait(made)


async def test_nothing_left_behind_is_nothing_said(caplog):
    from kame.runtime.interrupt import end_left_behind

    done = asyncio.create_task(asyncio.sleep(0))
    await cancel_within([done], 1)
    assert await end_left_behind("tandem", 0.05) == [] and not caplog.records
