"""The openai STT honours an HTTP 429's Retry-After (seconds or an HTTP-date, capped as the oracle
caps it) before its next request, and the log says so. Was: it called a rate-limited server
about once a second (a partial every ``request_interval``, a restarted stream each second)."""

import asyncio
import email.utils
import logging
import time

import numpy as np
import pytest
from aiohttp import web

from kame import registry
from kame.errors import BackendError
from kame.runtime.clock import FakeClock

from ..local_http import serving


@pytest.fixture
async def limited():
    """POST /v1/audio/transcriptions: 429 with ``srv.retry_after`` while ``srv.limit`` > 0 (one
    used per request), then "hello"."""
    class Srv:
        limit, retry_after, requests = 1, "5", 0

    srv = Srv()

    async def handle(request):
        await request.read()
        srv.requests += 1
        if srv.limit > 0:
            srv.limit -= 1
            return web.json_response({"error": {"message": "Rate limit reached"}}, status=429,
                                     headers={"Retry-After": srv.retry_after})
        return web.json_response({"text": "hello"})

    app = web.Application()
    app.router.add_post("/v1/audio/transcriptions", handle)
    async with serving(app) as (url, _):
        srv.url = url + "/v1"
        yield srv


def _recognizer(srv, clock):
    stt = registry.create("stt", "openai:whisper-1", base_url=srv.url, api_key="sk-test", clock=clock,
                          request_interval=0.5)
    stt._loop = asyncio.get_running_loop()  # (as stream() sets it: requests run on this loop)
    rec = stt.new_recognizer()
    rec.accept(np.zeros(16000, np.float32))  # 1 s of audio: a partial is due
    return stt, rec


async def _partial(rec):
    words = await asyncio.to_thread(rec.partial)
    if rec.pending is not None:  # (wait for it; the next partial() reads its result)
        await asyncio.wait([fut := asyncio.wrap_future(rec.pending)])
        fut.exception()  # (else asyncio logs "Future exception was never retrieved")
    return words


@pytest.mark.parametrize("header, wait", [("5", 5.0), ("3600", 60.0), ("date", 5.0)])
async def test_a_429_stops_requests_for_its_retry_after(limited, caplog, header, wait):
    clock = FakeClock(100.0)
    # (an HTTP-date 4-5 s ahead: it has whole seconds)
    limited.retry_after = email.utils.formatdate(time.time() + 5, usegmt=True) if header == "date" else header
    stt, rec = _recognizer(limited, clock)
    caplog.set_level(logging.WARNING)
    try:
        await _partial(rec)  # sent: the server answers 429
        assert await _partial(rec) is None and limited.requests == 1  # its result read: no new request
        left = stt.wait_left()
        assert wait / 2 < left <= wait, left  # (a date: whole seconds, read a moment later)
        assert f"rate-limited kame (HTTP 429): no transcription request for {left:.1f} s" in caplog.text
        assert ("kame waits at most 60 s" in caplog.text) == (header == "3600")

        rec.accept(np.zeros(16000, np.float32))
        assert await _partial(rec) is None and limited.requests == 1  # a partial is due, but not sent
        with pytest.raises(BackendError, match=r"final transcription not sent: .*HTTP 429.*Retry-After") as err:
            await asyncio.to_thread(rec.final)
        assert limited.requests == 1 and 0 < err.value.retry_after <= wait  # (a restart waits it out)

        clock.advance(wait)  # the wait is over: requests again
        words = await asyncio.to_thread(rec.final)
        assert [w.text for w in words] == ["hello"] and limited.requests == 2
    finally:
        await stt.aclose()
