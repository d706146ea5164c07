"""The browser page end to end in headless Chromium (fake microphone from a wav file), driven
over the DevTools protocol: microphone -> 0x08 PCM -> echo agent -> PCM playback + metadata.
Skips when no Chromium is installed (Debian: apt-get install chromium)."""

from __future__ import annotations

import asyncio
import os

import aiohttp
import numpy as np
import pytest
import soundfile as sf

from .cdp import Chromium, find_chromium
from kame.server.client import chat_url
from kame.server.echo import EchoAgent

from .conftest import peak_hz, running_server

pytestmark = pytest.mark.skipif(find_chromium() is None, reason="chromium not installed (apt-get install -y chromium)")


async def _wait_for(page, expr: str, timeout: float = 40.0):
    for _ in range(int(timeout / 0.2)):
        value = await page.eval(expr)
        if value:
            return value
        await asyncio.sleep(0.2)
    state = await page.eval("JSON.stringify(window.kame)")
    raise AssertionError(f"timed out waiting for {expr}; window.kame = {state}; console: {page.console[-10:]}")


@pytest.mark.parametrize("query", ["", "?resample"])  # 24 kHz AudioContext / native rate + worklet resampling
async def test_browser_page_roundtrip(tmp_path, query):
    mic = tmp_path / "mic.wav"
    t = np.arange(48000 * 3) / 48000
    sf.write(mic, (0.4 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 48000, subtype="PCM_16")
    agent, heard = EchoAgent(max_sessions=2, delay_frames=2), []
    open_session = agent.open_session

    async def recording_open_session(session_id=None):  # keep what the server hands the agent
        s = await open_session(session_id)
        push = s.push_audio

        async def push_audio(pcm):
            heard.append(np.array(pcm))
            await push(pcm)

        s.push_audio = push_audio
        return s

    agent.open_session = recording_open_session
    async with running_server(agent=agent) as (url, server):
        async with Chromium(url + "/" + query, fake_audio=str(mic)) as page:
            await _wait_for(page, "typeof window.kameStart === 'function' && document.readyState === 'complete'")
            await page.eval("window.kameStart()")
            await _wait_for(page, "window.kame.audioOut >= 25 && window.kame.oracleResets >= 1 && window.kame.texts >= 1")
            k = await page.eval("window.kame")
            assert k["handshake"] == {"protocol": 0, "model": 0}
            assert k["audioIn"] > 10 and k["errors"] == []
            assert k["outRmsMax"] > 0.05  # the echoed microphone tone came back and was played
            assert "step_time" in k["metrics"] and k["oracle"].startswith("echo after")
            assert (k["contextRate"] == 24000) == (query == "")
            # The microphone's 440 Hz tone reached the agent at 24 kHz (right pitch => right rate).
            assert abs(peak_hz(np.concatenate(heard)[-24000:]) - 440) < 15
            assert server.total_sessions == 1 and len(server.connections) == 1
            await page.eval("document.getElementById('transcript').scrollIntoView()")
            png = await page.screenshot()
            (tmp_path / "page.png").write_bytes(png)
            if os.environ.get("KAME_SCREENSHOT"):
                with open(os.environ["KAME_SCREENSHOT"], "wb") as f:
                    f.write(png)
            await page.eval("window.kameStop()")
            for _ in range(100):
                if not server.connections:
                    break
                await asyncio.sleep(0.05)
            assert not server.connections and server.agent.active_sessions == 0


async def test_browser_page_explains_token_and_full_server(tmp_path):
    mic = tmp_path / "mic.wav"
    sf.write(mic, np.zeros(24000, np.float32), 24000, subtype="PCM_16")
    ready = "typeof window.kameStart === 'function' && document.readyState === 'complete'"
    log = "document.getElementById('log').textContent"
    async with running_server(auth_token="s3cret", max_sessions=1) as (url, server):
        async with Chromium(url + "/", fake_audio=str(mic)) as page:
            await _wait_for(page, ready)
            await page.eval("window.kameStart()")
            await _wait_for(page, log + ".includes('needs a token')")
            assert await page.eval("document.getElementById('status').textContent") == "cannot connect"
            # the only session is taken: the page says the server is full instead of failing silently
            async with aiohttp.ClientSession() as http:
                async with http.ws_connect(chat_url(url, token="s3cret")) as ws:
                    await ws.receive(timeout=10)  # handshake: the session is live
                    await page.navigate(url + "/?token=s3cret")
                    await _wait_for(page, ready + " && !" + log + ".includes('needs a token')")
                    await page.eval("window.kameStart()")
                    await _wait_for(page, log + ".includes('server is full')")
                    assert await page.eval("document.getElementById('status').textContent") == "server full"
                    assert server.total_sessions == 1


async def test_the_page_shows_the_input_the_server_dropped():
    """The server's own stats ({"type": "stats", "session", "dropped_input_s"}, no frames). (was:
    stored as the front-end's stats: the drop was never shown and the step_time line went blank)"""
    async with running_server() as (url, _):
        async with Chromium(url + "/") as page:
            await _wait_for(page, "typeof window.kameStart === 'function' && document.readyState === 'complete'")
            text = "document.getElementById('{}').textContent".format
            await page.eval("onMeta({type: 'stats', session: 's1', dropped_input_s: 4.26})")
            await page.eval("onMeta({type: 'metric', name: 'step_time', value: 0.05})")
            assert await page.eval(text("in-drop")) == "4.3"
            assert await page.eval(text("frames")) == "step 50 ms of the 80 ms budget"
            # the front-end's stats (with the same merged total) take the line over; the drop stays
            await page.eval("onMeta({type: 'stats', frames: 100, missed_deadlines: 0, dropped_input_s: 4.26})")
            assert (await page.eval(text("frames"))).startswith("front-end: 100 frames")
            assert await page.eval(text("in-drop")) == "4.3"
            await page.eval("onMeta({type: 'stats', session: 's1', dropped_input_s: 6})")
            assert await page.eval(text("in-drop")) == "6.0"
