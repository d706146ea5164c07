"""Fixtures of the back-end tests."""

import pytest
from aiohttp import web

from ..local_http import serving


@pytest.fixture
async def server():
    """A loopback OpenAI-compatible server (POST /v1/...) whose one handler the test sets:
    ``srv.handler = async fn(request)``; its base URL is ``srv.url``. (A test module may define
    its own ``server``.)"""
    class Srv:
        handler = None

    srv = Srv()

    async def handle(request):
        await request.read()
        return await srv.handler(request)

    app = web.Application()
    app.router.add_post("/v1/{tail:.*}", handle)
    async with serving(app) as (url, _):
        srv.url = url + "/v1"
        yield srv
