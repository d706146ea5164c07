"""A loopback fake of the OpenAI streaming chat-completions API, for tests (aiohttp.web).

    server = FakeOpenAI()
    base_url = await server.start()                # http://127.0.0.1:PORT/v1
    server.push(Reply(["Hel", "lo", " there."], delay=0.01), Reply(status=500, body="boom"))
    ...                                            # each request takes the next Reply (then `default`)
    server.requests[0]["messages"]; server.disconnects; await server.wait_disconnects(1)
    await server.stop()

A Reply scripts one response: the content pieces, a delay between chunks, an HTTP error, a stall
(keeps the connection open, sending nothing), an abrupt disconnect, a malformed chunk, a missing
``[DONE]``, a gate to wait on before streaming, endless keep-alive comments, an overlong line. The server records each request body, how many
streams the client dropped before their end (``disconnects``) and how many it finished.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class Reply:
    pieces: list[str] = field(default_factory=lambda: ["Hello", " there", "."])
    delay: float = 0.0  # seconds between chunks (real time)
    status: int = 200  # != 200: an error response with `body`
    body: str = ""
    stall_after: int | None = None  # after this many pieces send nothing until the client leaves
    disconnect_after: int | None = None  # after this many pieces drop the connection
    malformed_after: int | None = None  # after this many pieces send a line that is not JSON
    error_after: int | None = None  # after this many pieces send {"error": {...}}
    send_done: bool = True  # send finish_reason + "data: [DONE]" at the end
    gate: asyncio.Event | None = None  # wait for it before the first chunk
    keepalive_after: int | None = None  # after this many pieces send ":" comment lines until the client leaves
    keepalive_gap: float = 0.0  # > 0: a short comment every this many seconds (else 1 kB ones, back to back)
    long_line: int = 0  # > 0: a data line of this many bytes before the first piece


class FakeOpenAI:
    def __init__(self, default: Reply | None = None) -> None:
        self.default = default or Reply()
        self.script: deque[Reply] = deque()
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.disconnects = 0
        self.completed = 0
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.port = 0

    def push(self, *replies: Reply) -> None:
        self.script.extend(replies)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def wait_disconnects(self, n: int, timeout: float = 5.0) -> None:
        async def _wait():
            async with self._changed:
                await self._changed.wait_for(lambda: self.disconnects >= n)
        await asyncio.wait_for(_wait(), timeout)

    async def wait_requests(self, n: int, timeout: float = 5.0) -> None:
        async def _wait():
            async with self._changed:
                await self._changed.wait_for(lambda: len(self.requests) >= n)
        await asyncio.wait_for(_wait(), timeout)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        await self._notify()
        r = self.script.popleft() if self.script else self.default
        if r.status != 200:
            return web.Response(status=r.status, text=r.body or json.dumps({"error": {"message": "fake error"}}))
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        try:
            while r.gate is not None and not r.gate.is_set():
                if self._closing(request):
                    await self._count_disconnect()
                    return resp
                await asyncio.sleep(0.005)
            await self._send(resp, {"choices": [{"index": 0, "delta": {"role": "assistant"}}]})
            if r.long_line:
                await resp.write(b"data: " + b"x" * r.long_line + b"\n\n")
            for i, piece in enumerate(r.pieces):
                if i == r.keepalive_after:
                    while not self._closing(request):
                        await resp.write(b": keep-alive\n\n" if r.keepalive_gap else b": keepalive" + b" " * 1000 + b"\n")
                        await asyncio.sleep(r.keepalive_gap)
                    raise ConnectionResetError
                if i == r.stall_after:
                    await self._until_closed(request)
                    return resp
                if i == r.disconnect_after:
                    request.transport.close()
                    await self._count_disconnect()
                    return resp
                if i == r.malformed_after:
                    await resp.write(b"data: {not json\n\n")
                if i == r.error_after:
                    await self._send(resp, {"error": {"message": "overloaded", "type": "server_error"}})
                await self._send(resp, {"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]})
                if r.delay:
                    await asyncio.sleep(r.delay)
                if self._closing(request):
                    raise ConnectionResetError
            if r.stall_after is not None and r.stall_after >= len(r.pieces):
                await self._until_closed(request)
                return resp
            if r.send_done:
                await self._send(resp, {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
                await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
            self.completed += 1
            await self._notify()
        except (ConnectionResetError, ConnectionError, asyncio.CancelledError):
            await self._count_disconnect()
        return resp

    @staticmethod
    def _closing(request: web.Request) -> bool:
        return request.transport is None or request.transport.is_closing()

    async def _until_closed(self, request: web.Request) -> None:
        while not self._closing(request):
            await asyncio.sleep(0.005)
        await self._count_disconnect()

    async def _count_disconnect(self) -> None:
        self.disconnects += 1
        await self._notify()

    @staticmethod
    async def _send(resp: web.StreamResponse, obj: dict) -> None:
        await resp.write(f"data: {json.dumps(obj)}\n\n".encode())
