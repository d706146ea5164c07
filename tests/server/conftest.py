"""Fixtures for server tests: a loopback kame server around the echo agent."""

from __future__ import annotations

import asyncio
import contextlib

import numpy as np
from kame.server.app import SERVER_KEY, ServerConfig, make_app
from kame.server.echo import EchoAgent

from ..local_http import serving


@contextlib.asynccontextmanager
async def running_server(agent=None, **cfg):
    agent = agent or EchoAgent(max_sessions=cfg.pop("max_sessions", 8), delay_frames=2)
    app = make_app(agent, ServerConfig(**cfg), manage_agent=True)
    async with serving(app) as (url, _):
        yield url, app[SERVER_KEY]


def tone(seconds: float, freq: float = 440.0, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * 24000)) / 24000
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(pcm: np.ndarray) -> float:
    spec = np.abs(np.fft.rfft(pcm * np.hanning(len(pcm))))
    return float(np.argmax(spec) * 24000 / len(pcm))


class FloodSession:
    """Sends ``make()`` every ``every_s`` seconds, faster than anyone reads it, until closed."""

    def __init__(self, sid, make, every_s):
        self.id, self.closed, self.make, self.every_s = sid, False, make, every_s

    async def push_audio(self, pcm):
        pass

    async def outputs(self):
        while not self.closed:
            yield self.make()
            await asyncio.sleep(self.every_s)

    async def close(self):
        self.closed = True


class FloodAgent:
    """An agent of FloodSessions ("flood1", "flood2", ...): a slow or non-reading client's test."""

    max_sessions = 4

    def __init__(self, make=None, every_s=0.0):
        self.make, self.every_s, self.n = make, every_s, 0

    async def start(self):
        pass

    async def stop(self):
        pass

    async def open_session(self, session_id=None):
        self.n += 1
        return FloodSession(f"flood{self.n}", self.make, self.every_s)
