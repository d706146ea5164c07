"""An aiohttp app served on a free loopback port, for tests that talk HTTP to a fake service
(OpenAI-compatible LLM/STT/TTS servers) or to kame's own server.

    async with serving(app) as (url, runner):   # url = "http://127.0.0.1:PORT"
        ...
"""

from __future__ import annotations

import contextlib

from aiohttp import web


@contextlib.asynccontextmanager
async def serving(app: web.Application, shutdown_timeout: float = 2.0):
    runner = web.AppRunner(app, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", runner
    finally:
        await runner.cleanup()
