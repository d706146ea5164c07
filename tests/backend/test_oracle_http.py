"""Oracle producer over the real OpenAI-compatible client and the loopback fake server."""

import asyncio

import pytest

from kame.backend.llm.openai import OpenAIChat
from kame.backend.oracle import OracleProducer
from kame.backend.policy import OraclePolicy
from kame.backend.tokenizer import default_tokenizer
from kame.backend.types import OracleAppend, Transcript, Word
from kame.runtime.clock import FakeClock

from .fake_openai import FakeOpenAI, Reply

SENT = "could you tell me what the weather will be like tomorrow in tokyo".split()


def tr(n, final=False):
    ws = tuple(Word(w, 0.3 * i, 0.3 * i + 0.25) for i, w in enumerate(SENT[:n]))
    return Transcript(ws, final, ws[-1].end + 0.1)


async def until(cond, timeout=5.0):
    for _ in range(int(timeout / 0.005)):
        if cond():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached")


@pytest.fixture
async def setup():
    server = FakeOpenAI()
    await server.start()
    llm = OpenAIChat("fake", base_url=server.base_url, first_token_timeout=5.0, chunk_timeout=5.0)
    clock = FakeClock()
    events = []
    producer = OracleProducer(llm, default_tokenizer(), OraclePolicy(min_interval=0.0, retry_backoff=1.0),
                              clock=clock, on_event=events.append)
    runner = asyncio.create_task(producer.run())
    yield server, producer, clock, events
    await producer.aclose()
    await asyncio.wait_for(runner, 2)
    await llm.aclose()
    await server.stop()


def appended(events, pid):
    return [i for e in events if isinstance(e, OracleAppend) and e.prediction_id == pid for i in e.token_ids]


async def test_restart_disconnects_the_stale_stream(setup):
    server, producer, clock, events = setup
    server.push(Reply([f" word{i}" for i in range(300)], delay=0.01), Reply(["Sunny ", "and ", "warm."]))
    await producer.on_transcript(tr(2))
    await until(lambda: appended(events, 1))
    await producer.on_transcript(tr(5))  # restart: the first request must be dropped
    await server.wait_disconnects(1)
    await until(lambda: producer.stats["completed"] == 1)
    assert appended(events, 2) == default_tokenizer().encode("Sunny and warm.")
    assert server.completed == 1 and len(server.requests) == 2
    n1 = len(appended(events, 1))
    await asyncio.sleep(0.05)
    assert len(appended(events, 1)) == n1  # nothing more from the stale prediction


@pytest.mark.parametrize("failure", [
    Reply(status=500, body="internal error"),
    Reply([" a", " b", " c"], disconnect_after=2, delay=0.02),
    Reply([" a", " b"], malformed_after=1),
])
async def test_failure_then_recovery_when_the_server_comes_back(setup, failure):
    server, producer, clock, events = setup
    server.push(failure, Reply(["It ", "will ", "rain."]))
    await producer.on_transcript(tr(4))
    await until(lambda: producer.stats["failed"] == 1)
    assert not producer.busy
    clock.advance(1.0)  # back-off over: the poll loop retries
    await until(lambda: producer.stats["completed"] == 1)
    assert producer.stats["start_retry"] == 1
    assert appended(events, 2) == default_tokenizer().encode("It will rain.")


async def test_stall_times_out_and_closes_the_request(setup):
    server, producer, clock, events = setup
    server.push(Reply([" Well maybe", " not"], stall_after=1))  # (" Well" is appended at once)
    await producer.on_transcript(tr(3))
    # the first piece came and the producer's timer for the next one runs on the session clock
    # (was: a wall-time wait for the request; on a loaded machine the first piece came after the
    # advance, and its timer started after it: no stall, ever)
    chunk_timeout = producer.policy.chunk_timeout
    await until(lambda: appended(events, 1) and any(t == clock.now() + chunk_timeout for t, _ in clock.sleepers()))
    clock.advance(chunk_timeout + 0.1)  # no piece for chunk_timeout (session clock)
    await until(lambda: producer.stats["failed"] == 1)
    await server.wait_disconnects(1)


async def test_dead_server_backs_off_recovers_and_aclose_drops_the_stream():
    """Connection refused: retries after 1, 2, 4 s (session clock); the server comes back on the
    same port: the next retry streams; aclose mid-stream closes the HTTP request."""
    from aiohttp import web

    down = FakeOpenAI()
    await down.start()
    port, url = down.port, down.base_url
    await down.stop()
    llm = OpenAIChat("fake", base_url=url, connect_timeout=1.0)
    clock, events = FakeClock(), []
    producer = OracleProducer(llm, default_tokenizer(), OraclePolicy(min_interval=0.0, retry_backoff=1.0),
                              clock=clock, on_event=events.append)
    runner = asyncio.create_task(producer.run())
    server = FakeOpenAI(Reply([f" w{i}" for i in range(500)], delay=0.01))
    try:
        await producer.on_transcript(tr(4))
        for n, wait in ((1, 1.0), (2, 2.0), (3, 4.0)):
            await until(lambda: producer.stats["failed"] == n)
            assert producer._gate.retry_at - clock.now() == pytest.approx(wait)  # doubling back-off
            if n < 3:
                clock.advance(wait)
        app = web.Application()  # the server is back, same address
        app.router.add_post("/v1/chat/completions", server._handle)
        server._runner = web.AppRunner(app, handle_signals=False)
        await server._runner.setup()
        await web.TCPSite(server._runner, "127.0.0.1", port).start()
        clock.advance(4.0)
        await until(lambda: appended(events, producer.prediction_id))
        assert producer.stats["start_retry"] == 3 and producer.stats["failed"] == 3
        await producer.aclose()
        await server.wait_disconnects(1)
        assert server.completed == 0
    finally:
        await producer.aclose()
        await asyncio.wait_for(runner, 2)
        await llm.aclose()
        await server.stop()
