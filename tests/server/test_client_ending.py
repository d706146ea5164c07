"""How `kame client` ends when the session does not end normally: a server that never answers
(a bounded wait, a clear error), Ctrl-C (the session is closed, what came is written, exit 130),
a lost connection or a wrong URL (the message says what it means), and a long reply (the
summary line stays short)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from kame.server import client as C
from kame.server import clientreport
from kame.server.client import ChatResult, NoAnswer, chat, main

from .conftest import running_server, tone

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
async def silent_server():
    """A TCP server that accepts connections and never answers: what a stuck process, or
    something that is not an HTTP server, looks like to the client."""
    held = []

    async def hold(reader, writer):
        held.append(writer)
        await reader.read(1 << 16)  # the upgrade request, never answered

    srv = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{srv.sockets[0].getsockname()[1]}"
    finally:
        for w in held:
            w.close()
        srv.close()


async def test_chat_gives_up_on_a_server_that_never_answers_the_upgrade(silent_server, monkeypatch):
    monkeypatch.setattr(C, "UPGRADE_TIMEOUT_S", 0.5)
    with pytest.raises(NoAnswer, match="no answer to the connection or its WebSocket upgrade within 0.5 s"):
        await asyncio.wait_for(chat(silent_server, tone(0.2)), 10)  # (aiohttp's own wait: 5 minutes)


async def test_client_says_the_server_never_answered(silent_server, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(C, "UPGRADE_TIMEOUT_S", 0.5)
    wav = tmp_path / "in.wav"
    sf.write(str(wav), tone(0.2), 24000)
    assert await asyncio.wait_for(asyncio.to_thread(main, [silent_server, str(wav)]), 10) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no answer to the connection or its WebSocket upgrade" in err and "Traceback" not in err


async def test_chat_stop_ends_the_stream_closes_normally_and_keeps_what_came():
    stop = asyncio.Event()
    async with running_server() as (url, server):
        async def interrupt():  # (Ctrl-C) 1 s into the session
            while not server.connections:
                await asyncio.sleep(0.01)
            await asyncio.sleep(1.0)
            stop.set()

        asyncio.create_task(interrupt())
        res = await asyncio.wait_for(chat(url, tone(30.0), tail_s=1.0, stop=stop), 10)
        assert res.interrupted and res.close_code == 1000 and res.failure() is None
        assert 0.5 < res.sent_s < 5 and res.input_s == 30.0 and len(res.audio) > 0
        for _ in range(100):  # the server freed the session
            if not server.connections:
                break
            await asyncio.sleep(0.05)
        assert not server.connections


async def test_client_ctrl_c_closes_the_session_writes_what_came_and_exits_130(tmp_path):
    wav, out, js = tmp_path / "in.wav", tmp_path / "out.wav", tmp_path / "out.json"
    sf.write(str(wav), tone(60.0), 24000)
    async with running_server() as (url, server):
        env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "kame.server.client", url, str(wav), "-o", str(out), "--json", str(js),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        for _ in range(600):  # until its session streams (the process imports numpy, aiohttp, ...)
            if server.connections:
                break
            await asyncio.sleep(0.05)
        assert server.connections
        await asyncio.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 30)
        for _ in range(100):
            if not server.connections:
                break
            await asyncio.sleep(0.05)
        assert not server.connections  # the session ended with the client
    err = stderr.decode()
    assert proc.returncode == 130, err
    assert "interrupted after streaming" in err and "Traceback" not in err
    assert "close 1000" in stdout.decode()
    doc = json.loads(js.read_text())
    assert doc["interrupted"] and doc["close_code"] == 1000 and doc["sent_s"] < 30
    assert sf.info(str(out)).duration > 0.3


@pytest.mark.parametrize("code, said", [(1006, "the connection was lost without a close from the server"),
                                        (1001, "the server is shutting down"),
                                        (1011, "the server failed")])
def test_failure_says_what_a_close_code_means(code, said):
    assert said in ChatResult(close_code=code).failure()
    assert "(going away)" in ChatResult(close_code=1001, close_reason="going away").failure()  # the server's own words first


async def test_a_404_names_the_url_tried():
    async with running_server() as (url, _):
        res = await chat(url + "/nope", tone(0.1))
    assert res.status == 404
    text = res.refusal_text()
    assert text.startswith("refused: HTTP 404 at ws://") and "/nope/api/chat" in text and "no kame server" in text
    assert "404: Not Found" not in text  # (aiohttp's body says no more than the status)


def test_the_summary_line_shows_the_start_of_a_long_text(capsys):
    res = ChatResult(texts=["word "] * 2000, close_code=1000)
    args = argparse.Namespace(fast=False, tail=2.0, max_tail=30.0, json=None, output=None)
    assert clientreport.report(res, args) == 0
    line = capsys.readouterr().out
    assert len(line) < clientreport.TEXT_SHOWN + 200 and "..." in line


def test_an_interrupted_session_is_exit_130_after_its_report(capsys):
    res = ChatResult(audio=np.zeros(2400, np.float32), close_code=1000, interrupted=True, sent_s=1.5, input_s=60.0,
                     handshake=(0, 0))
    args = argparse.Namespace(fast=False, tail=2.0, max_tail=30.0, json=None, output="out.wav")
    assert clientreport.report(res, args) == 130
    assert "interrupted after streaming 1.50 s (the input is 60.00 s); what came is written (out.wav)" \
        in capsys.readouterr().err


async def test_the_end_of_the_input_is_sent_in_opus_without_a_tail():
    """The Opus encoder sends whole 80 ms frames: the input's last part of a frame stayed in it
    (unsent) when no tail followed."""
    from kame.server.echo import EchoAgent

    heard = []

    class Counting(EchoAgent):
        async def open_session(self, session_id=None):
            s = await super().open_session(session_id)
            push = s.push_audio

            async def counted(pcm):
                heard.append(len(pcm))
                await push(pcm)

            s.push_audio = counted
            return s

    async with running_server(Counting(delay_frames=2)) as (url, _):
        res = await chat(url, tone(1.0 + 0.03), tail_s=0.0)  # 12.9 frames
    assert res.close_code == 1000 and sum(heard) >= 24720


async def test_the_client_says_how_it_converted_the_input(tmp_path, capsys):
    wav = tmp_path / "in.wav"
    sf.write(str(wav), np.stack([tone(0.5)[:8000]] * 2, axis=1), 16000)  # 16 kHz stereo
    async with running_server() as (url, _):
        assert await asyncio.to_thread(main, [url, str(wav), "--tail", "0.2"]) == 0
    assert "input " + str(wav) + ": resampled 16000 Hz -> 24 kHz; mixed 2 channels to mono" in capsys.readouterr().out


async def test_no_agent_audio_is_a_warning_saying_why(tmp_path, capsys):
    from kame.runtime.base import AgentAudio
    from kame.server.echo import EchoAgent

    class Mute(EchoAgent):  # an agent that sends everything but audio
        async def open_session(self, session_id=None):
            s = await super().open_session(session_id)
            outputs = s.outputs

            async def no_audio():
                async for out in outputs():
                    if not isinstance(out, AgentAudio):
                        yield out

            s.outputs = no_audio
            return s

    wav = tmp_path / "in.wav"
    sf.write(str(wav), tone(0.3), 24000)
    async with running_server(Mute()) as (url, _):
        assert await asyncio.to_thread(main, [url, str(wav), "--fast", "--tail", "0"]) == 0
        assert await asyncio.to_thread(main, [url, str(wav), "--fast", "--tail", "1"]) == 0
    err = capsys.readouterr().err
    assert "warning: no audio came from the agent; the session ended 0 s after the input was sent (--tail)" in err
    assert "warning: no audio came from the agent; the agent sent none" in err
