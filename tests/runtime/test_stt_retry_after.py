"""A session restarting a failed STT stream waits at least the Retry-After the service asked
(BackendError.retry_after, capped as the oracle caps it), not its usual ~1 s back-off
(kame.runtime.sttloop.STTSupervisor)."""

import asyncio

import pytest

from kame.backend.policy import RestartGate
from kame.errors import BackendError
from kame.runtime.clock import FakeClock
from kame.runtime.sttloop import STTSupervisor


class _RateLimitedSTT:
    """Each stream fails at once with HTTP 429 and the given Retry-After."""

    name = "limited"

    def __init__(self, retry_after):
        self.retry_after, self.streams = retry_after, 0

    async def stream(self, frames):
        self.streams += 1
        exc = BackendError("STT http://127.0.0.1:9/v1/audio/transcriptions: HTTP 429: slow down (rate limited)")
        exc.retry_after = self.retry_after
        raise exc
        yield  # (an async generator)


@pytest.mark.parametrize("asked, wait", [(5.0, 5.0), (3600.0, RestartGate.MAX_RETRY_AFTER), (None, 1.0), (0.2, 1.0)])
async def test_a_restart_waits_the_retry_after(asked, wait):
    clock, waits = FakeClock(0.0), []
    stt = _RateLimitedSTT(asked)
    sup = STTSupervisor(stt, clock, who="c1", retry_s=1.0, on_transcript=lambda tr: asyncio.sleep(0),
                        on_failure=lambda exc, w: waits.append(w))
    task = asyncio.create_task(sup.run())
    try:
        for _ in range(20):
            await asyncio.sleep(0)
        assert waits == [wait] and stt.streams == 1  # the log line says "restart in <wait> s"
        clock.advance(wait - 0.01)
        for _ in range(20):
            await asyncio.sleep(0)
        assert stt.streams == 1  # not called again before the server asked
        clock.advance(0.01)
        for _ in range(20):
            await asyncio.sleep(0)
        assert stt.streams == 2
    finally:
        sup.end()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
