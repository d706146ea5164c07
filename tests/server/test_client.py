"""The chat client's command line (`kame client URL IN.wav ...`, or `python -m kame.server.client`): every
failure is `error: ...` and exit 1 (or an argparse error, exit 2), never a traceback, and what
can be checked before connecting is checked before connecting. A failed session (a fatal server
error, a close other than 1000) is exit 1 too; server errors and dropped input are printed; a
cascade still answering after --tail gets more silence, up to --max-tail."""

from __future__ import annotations

import asyncio
import logging
import contextlib
import json
import re
from pathlib import Path
from urllib.parse import quote

import aiohttp
import numpy as np
import pytest
import soundfile as sf

from kame import registry
from kame.config import load_config
from kame.runtime.base import ErrorEvent
from kame.server.client import chat, chat_url, main
from kame.server.echo import EchoAgent

from ..runtime.fakes import FakeLLM, FakeSTT, FakeTTS, QuestionSTT
from .conftest import running_server, tone

DEAD = "http://127.0.0.1:1"  # nothing listens on port 1: connecting fails at once


@pytest.fixture
def wav(tmp_path) -> Path:
    path = tmp_path / "in.wav"
    sf.write(str(path), tone(0.5), 24000)
    return path


async def _main(argv) -> int:
    """main() runs its own event loop: in a thread, while the test's loop serves."""
    return await asyncio.to_thread(main, [str(a) for a in argv])


async def test_client_writes_audio_and_json(wav, tmp_path, capsys):
    out, js = tmp_path / "out.wav", tmp_path / "sub" / "out.json"
    async with running_server() as (url, _):
        assert await _main([url, wav, "-o", out, "--json", js, "--fast", "--tail", "0.5"]) == 0
    assert sf.info(str(out)).duration > 0.3
    assert json.loads(js.read_text())["close_code"] == 1000
    assert "audio" in capsys.readouterr().out


@pytest.mark.parametrize("option", ["--tail", "--max-tail"])
@pytest.mark.parametrize("tail", ["-5", "nan", "inf", "-inf", "3600", "x"])
def test_client_bad_tail_is_an_error_before_connecting(wav, option, tail, capsys):
    """Checked as parsed, as `kame run --tail` is (kame.cliargs.tail_seconds): exit 2 naming the
    option (was: exit 1 after parsing); DEAD is never tried."""
    with pytest.raises(SystemExit) as e:
        main([DEAD, str(wav), f"{option}={tail}"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and f"argument {option}: " in err, err
    if tail != "x":
        assert "must be seconds in [0, 3600)" in err or "expected a finite number" in err, err


def test_a_program_s_own_bad_tail_is_still_an_error_before_connecting(wav, capsys):
    import argparse

    a = argparse.Namespace(url=DEAD, input=str(wav), output=None, json=None, token=None, pcm=False, tail=-5.0,
                           max_tail=10.0, fast=False)
    assert main(a) == 1 and "--tail must be seconds in [0, 3600)" in capsys.readouterr().err


def test_python_m_client_takes_the_out_alias_as_kame_client_does(wav, tmp_path, capsys):
    """(review1 #6) `python -m kame.server.client` parses with kame.cli's parser: --out is -o's alias
    there, not only an abbreviation of --output (which another --out... option would end)."""
    from kame.server.client import build_parser

    ap = build_parser()
    ap.allow_abbrev = False
    assert ap.parse_args([DEAD, str(wav), "--out", "x.wav"]).output == "x.wav"
    assert "--out " not in ap.format_help()  # (hidden, as in `kame client --help`)
    assert main([DEAD, str(wav), "--out", str(tmp_path / "x.txt")]) == 1  # (checked, so taken as -o)
    assert "x.txt" in capsys.readouterr().err


@pytest.mark.parametrize("url, said", [
    (DEAD, "cannot connect to http://127.0.0.1:1: connection refused (is `kame serve` running there"),  # (was:
    # "Connect call failed ('127.0.0.1', 1)")
    ("foo://bar", "foo://bar: the URL must start with ws://, wss://, http:// or https://"),
    ("ws://127.0.0.1:99999", "ws://127.0.0.1:99999: Port out of range 0-65535"),  # (was: InvalidUrlClientError)
    ("http://::1:8998/", "(an IPv6 address goes in brackets: http://[::1]:8998/)"),  # (was: InvalidUrlClientError)
])
def test_client_unreachable_or_bad_url_is_an_error(wav, url, said, capsys):
    assert main([url, str(wav)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and said in err and "Traceback" not in err


def test_connect_failures_are_told_by_their_errno(wav, monkeypatch, capsys):
    # asyncio words every failed connect "Connect call failed (...)" (was: all said "connection refused")
    import errno

    import aiohappyeyeballs

    async def unreachable(*a, **k):
        raise OSError(errno.ENETUNREACH, "Connect call failed ('10.1.2.3', 8998)")
    monkeypatch.setattr(aiohappyeyeballs, "start_connection", unreachable)
    assert main(["http://10.1.2.3:8998", str(wav)]) == 1
    err = capsys.readouterr().err
    assert "error: cannot connect to http://10.1.2.3:8998: Network is unreachable" in err and "refused" not in err

    async def both(*a, **k):  # localhost: ::1 cannot be used, 127.0.0.1 refused (was: "... ssl:default [None]")
        raise OSError("Multiple exceptions: [Errno 99] Cannot assign requested address, "
                      "[Errno 111] Connect call failed ('127.0.0.1', 8998)")
    monkeypatch.setattr(aiohappyeyeballs, "start_connection", both)
    assert main(["http://localhost:8998", str(wav)]) == 1
    assert "cannot connect to http://localhost:8998: connection refused (is `kame serve`" in capsys.readouterr().err


def test_client_output_files_checked_before_connecting(wav, tmp_path, capsys):
    # Each is refused before the client connects (else the error would be "cannot connect").
    if Path("/proc").is_dir():  # root may "write" in /proc by os.access, but no file can be made there
        assert main([DEAD, str(wav), "--json", "/proc/x.json"]) == 1
        assert "error: --json /proc/x.json: cannot write" in capsys.readouterr().err
    assert main([DEAD, str(wav), "--json", str(tmp_path)]) == 1
    assert "is a folder" in capsys.readouterr().err
    assert main([DEAD, str(wav), "-o", str(tmp_path / "x.txt")]) == 1
    assert "unknown file type" in capsys.readouterr().err
    assert not (tmp_path / "x.txt").exists()


async def test_client_refuses_its_input_as_output(wav, tmp_path, capsys):
    before = wav.read_bytes()
    async with running_server() as (url, _):
        for same in (wav, tmp_path / "." / "in.wav"):
            assert await _main([url, wav, "-o", same, "--fast", "--tail", "0.2"]) == 1
            assert f"error: -o {same} is the input file; give another -o" in capsys.readouterr().err
        assert await _main([url, wav, "--json", wav, "--fast", "--tail", "0.2"]) == 1
        assert "is the input file; give another --json" in capsys.readouterr().err
    assert wav.read_bytes() == before


def test_client_refuses_one_file_for_audio_and_json(wav, tmp_path, monkeypatch, capsys):
    # refused before connecting (DEAD is never tried), however the one path is spelled
    monkeypatch.chdir(tmp_path)
    for out, js in [("a.wav", "a.wav"), ("a.wav", "./a.wav"), (str(tmp_path / "a.wav"), "a.wav")]:
        assert main([DEAD, str(wav), "-o", out, "--json", js]) == 1
        assert f"error: --json {js} is the -o file too; give another --json" in capsys.readouterr().err
    assert not (tmp_path / "a.wav").exists()


async def test_client_prints_the_servers_reason_for_a_refusal(wav, capsys):
    async with running_server(max_sessions=1, auth_token="s3cret") as (url, _), aiohttp.ClientSession() as http:
        assert await _main([url, wav, "--token", "wrong"]) == 1
        err = capsys.readouterr().err
        assert "error: refused: HTTP 401 unauthorized: missing or wrong token" in err
        ws = await http.ws_connect(chat_url(url, token="s3cret"))  # the one session
        assert await _main([url, wav, "--token", "s3cret"]) == 1
        assert "error: refused: HTTP 503 capacity: echo agent is serving its maximum of 1 sessions" in capsys.readouterr().err
        res = await chat(url, tone(0.1), token="s3cret")  # the library call keeps the reason too
        assert res.status == 503 and res.refusal["error"] == "capacity"
        await ws.close()


async def test_kame_client_command_is_the_same_client(wav, tmp_path, capsys):
    """`kame client ...` (the CLI's subcommand) runs this client's main with its parsed arguments."""
    from kame.cli import main as kame

    out = tmp_path / "out.wav"
    async with running_server() as (url, _):
        assert await asyncio.to_thread(kame, ["client", url, str(wav), "-o", str(out), "--fast", "--tail", "0.5"]) == 0
    assert sf.info(str(out)).duration > 0.3 and "audio" in capsys.readouterr().out
    assert await asyncio.to_thread(kame, ["client", DEAD, str(wav)]) == 1
    assert "error: cannot connect to http://127.0.0.1:1" in capsys.readouterr().err


# ---- URLs and tokens ----------------------------------------------------------------------------

@pytest.mark.parametrize("url, token, pcm, want", [
    ("http://h:1", None, False, "ws://h:1/api/chat"),
    ("HTTPS://h:1/", None, False, "wss://h:1/api/chat"),
    ("http://h:1/?token=sek", None, False, "ws://h:1/api/chat?token=sek"),  # the page's URL, token kept
    ("http://h:1/?token=sek", "other", False, "ws://h:1/api/chat?token=other"),  # --token wins
    ("http://h:1/api/chat/", None, False, "ws://h:1/api/chat"),
    ("http://h:1/api/chat?pcm=1", "sek", False, "ws://h:1/api/chat?pcm=1&token=sek"),
    ("ws://h:1/api/chat", "sek", True, "ws://h:1/api/chat?token=sek&pcm=1"),
    ("ws://h:1/api/chat?pcm=1", None, True, "ws://h:1/api/chat?pcm=1"),
    ("http://h:1/kame/", None, False, "ws://h:1/kame/api/chat"),  # behind a path prefix
    ("http://h:1", "ab+c&d #e", False, "ws://h:1/api/chat?token=ab%2Bc%26d%20%23e"),
    ("http://h:1/#frag", None, False, "ws://h:1/api/chat"),
])
def test_chat_url(url, token, pcm, want):
    assert chat_url(url, token, pcm) == want


def test_chat_url_without_a_host_is_an_error():
    from kame.errors import ConfigError

    with pytest.raises(ConfigError, match="has no host"):
        chat_url("http:///api/chat")


async def test_client_token_with_url_special_characters(wav, capsys):
    token = "ab+c&d #e"
    async with running_server(auth_token=token) as (url, _):
        assert await _main([url, wav, "--token", token, "--fast", "--tail", "0.2"]) == 0
        # the page's URL with its token (as `kame serve` prints it for a browser) works too
        assert await _main([f"{url}/?token={quote(token, safe='')}", wav, "--fast", "--tail", "0.2"]) == 0
        assert await _main([url + "/api/chat/", wav, "--token", token, "--fast", "--tail", "0.2"]) == 0
    assert "error" not in capsys.readouterr().err


# ---- a cascade still answering after --tail ----------------------------------------------------

class _SlowLLM:
    """Says "The answer is 84." after ``delay`` seconds; with ``delay`` None, never."""

    name = "slow"

    def __init__(self, delay: float | None) -> None:
        self.delay = delay

    async def stream_chat(self, messages, **kwargs):
        await (asyncio.Event().wait() if self.delay is None else asyncio.sleep(self.delay))
        yield "The answer is 84."


class _DeafSTT(FakeSTT):
    """Hears nothing: no final transcript ever comes, so no turn starts."""

    async def stream(self, frames):
        async for _ in frames:
            pass
        return
        yield


@contextlib.asynccontextmanager
async def cascade_server(llm_delay: float | None, stt=None):
    """`kame serve --mode cascade`'s app: the real CascadeAgent with a fake STT (a question in
    the first loud frame), an LLM that answers after ``llm_delay`` s and a fake TTS (0.24 s of
    0.5 per sentence)."""
    from kame.cascade.agent import build_cascade_agent

    cfg = load_config(None, ["mode=cascade", "runtime.vad=energy"])
    agent = build_cascade_agent(cfg, components={"stt": stt or QuestionSTT(), "llm": _SlowLLM(llm_delay),
                                                 "tts": FakeTTS()})
    async with running_server(agent) as (url, _):
        yield url


async def test_client_waits_for_a_cascade_reply_after_the_tail(wav, tmp_path, capsys):
    """The reply starts about 1 s after the question, after the file (0.5 s) and --tail (0.2 s)
    are sent: the client streams silence until it is over, and the answer is in OUT.wav."""
    out, js = tmp_path / "out.wav", tmp_path / "out.json"
    async with cascade_server(llm_delay=1.0) as url:
        assert await _main([url, wav, "-o", out, "--json", js, "--fast", "--tail", "0.2"]) == 0
    answer, _ = sf.read(str(out))
    assert np.abs(answer).max() > 0.3  # the fake TTS's 0.5 (silent without the wait)
    doc = json.loads(js.read_text())
    assert {"type", "mode"} <= set(next(m for m in doc["metas"] if m.get("mode")))  # the agent's info
    assert 0.5 < doc["tail_extended_s"] < 10 and doc["reply_cut_off"] is False
    assert any(m.get("type") == "agent_turn" and m["text"] == "The answer is 84." for m in doc["metas"])
    captured = capsys.readouterr()
    assert "tail extended" in captured.out and "warning" not in captured.err


async def test_client_warns_when_max_tail_cuts_a_cascade_reply(wav, tmp_path, capsys):
    js = tmp_path / "out.json"
    async with cascade_server(llm_delay=None) as url:  # the reply never comes: pending until the bound
        assert await _main([url, wav, "--json", js, "--fast", "--tail", "0.2", "--max-tail", "0.5"]) == 0
    doc = json.loads(js.read_text())
    assert doc["tail_extended_s"] == pytest.approx(0.3, abs=1e-6) and doc["reply_cut_off"] is True
    assert "warning: the cascade was still answering when --max-tail (0.5 s" in capsys.readouterr().err


async def test_client_waits_a_while_for_a_final_transcript(monkeypatch):
    """The user's speech ended (VAD) and the STT's final has not come: wait FINAL_WAIT_S (here
    1.5 s, not 6) from the end's arrival, then stop (nothing was cut off: no turn had started)."""
    from kame.runtime import filemode

    monkeypatch.setattr(filemode, "FINAL_WAIT_S", 1.5)
    async with cascade_server(llm_delay=0.1, stt=_DeafSTT()) as url:
        res = await chat(url, tone(0.5), realtime=False, tail_s=1.0, max_tail_s=20)  # (the VAD's end within it)
    assert any(m.get("type") == "vad" and m["event"] == "end" for m in res.metas)
    assert 0.2 < res.tail_extended_s < 2.0 and not res.reply_cut_off and res.failure() is None


async def test_client_does_not_extend_the_tail_of_other_agents(wav, tmp_path):
    js = tmp_path / "out.json"
    async with running_server() as (url, _):  # the echo agent (no "mode" in its info)
        assert await _main([url, wav, "--json", js, "--fast", "--tail", "0.3", "--max-tail", "20"]) == 0
    doc = json.loads(js.read_text())
    assert doc["tail_extended_s"] == 0 and doc["reply_cut_off"] is False


# ---- errors, closes, dropped input --------------------------------------------------------------

class _ComplainingEcho(EchoAgent):
    """The echo agent, whose sessions report a non-fatal error for each of the first 7 pieces
    of audio they get (as a back-end failure would)."""

    async def open_session(self, session_id=None):
        s = await super().open_session(session_id)
        push, n = s.push_audio, [0]

        async def push_audio(pcm):
            if n[0] < 7:
                s._out.put_nowait(ErrorEvent(f"stt failed: {n[0]}", 0.0))
                n[0] += 1
            await push(pcm)

        s.push_audio = push_audio
        return s


class _QuittingEcho(EchoAgent):
    """The echo agent, whose sessions end themselves after 0.3 s of audio (the server then sends
    a fatal "session_ended" error and closes 1000)."""

    async def open_session(self, session_id=None):
        s = await super().open_session(session_id)
        push = s.push_audio

        async def push_audio(pcm):
            await push(pcm)
            if s._heard >= 0.3 * 24000:
                await s.close()

        s.push_audio = push_audio
        return s


async def test_client_prints_non_fatal_server_errors_and_exits_0(wav, capsys):
    async with running_server(_ComplainingEcho(delay_frames=2)) as (url, _):
        assert await _main([url, wav, "--fast", "--tail", "0.3"]) == 0
    err = capsys.readouterr().err
    assert "server error: agent_error: stt failed: 0" in err and "server error: agent_error: stt failed: 4" in err
    assert "stt failed: 5" not in err and "... and 2 more (give --json to keep them all)" in err
    assert not any(line.startswith("error:") for line in err.splitlines())


async def test_client_fatal_server_error_is_exit_1(wav, tmp_path, capsys):
    out = tmp_path / "out.wav"
    long = tmp_path / "long.wav"
    sf.write(str(long), tone(1.5), 24000)
    async with running_server(_QuittingEcho(delay_frames=2)) as (url, _):
        assert await _main([url, long, "-o", out]) == 1
    err = capsys.readouterr().err
    assert "server error (fatal): session_ended: the agent ended the session" in err
    assert "error: the server ended the session: session_ended" in err
    assert out.exists()  # what came before is still written


async def test_client_server_stopping_mid_upload_is_exit_1(tmp_path, capsys):
    long, js = tmp_path / "long.wav", tmp_path / "out.json"
    sf.write(str(long), tone(3.0), 24000)
    async with running_server() as (url, server):
        task = asyncio.create_task(_main([url, long, "--json", js]))  # paced in real time: 3 s
        for _ in range(200):
            if server.connections:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)
    # the server stopped (close 1001) while the client was still uploading
    assert await task == 1
    assert "error: the connection closed with code 1001 (server shutting down), not a normal close (1000)" \
        in capsys.readouterr().err
    assert json.loads(js.read_text())["close_code"] == 1001


def create_stt(arg=None, **kwargs) -> FakeSTT:
    return FakeSTT()


def create_llm(arg=None, **kwargs) -> FakeLLM:
    return FakeLLM()


async def test_client_warns_when_the_server_dropped_input(tmp_path, capsys):
    """--fast against the tandem (1 s input backlog, the default): most of a 4 s file is
    dropped, the server's "stats" say so and the client warns."""
    from kame.bench.soak import speechlike
    from kame.runtime.engine import build_agent
    from kame.server.app import make_app, server_config_from

    from ..local_http import serving

    registry.schemes("stt")  # the built-in table first; the fakes only for this test (others list the schemes)
    for kind in ("stt", "llm"):
        registry.register(kind, "fake_client", f"tests.server.test_client:create_{kind}")
    try:
        cfg = load_config(None, ["frontend.spec=random:tiny", "codec.spec=mimi:random-tiny", "backend.stt=fake_client",
                                 "backend.llm=fake_client", "runtime.vad=energy", "runtime.max_sessions=1"])
        assert cfg.runtime.max_input_backlog_s == 1.0
        long, js = tmp_path / "long.wav", tmp_path / "out.json"
        sf.write(str(long), speechlike(4.0, 3), 24000)
        async with serving(make_app(build_agent(cfg), server_config_from(cfg.server), manage_agent=True)) as (url, _):
            assert await _main([url, long, "--json", js, "--fast", "--tail", "1.5"]) == 0
    finally:
        for kind in ("stt", "llm"):
            registry._ENTRIES.get(kind, {}).pop("fake_client", None)
    dropped = json.loads(js.read_text())["dropped_input_s"]
    assert dropped > 2.0  # of 4 s, about 1 s kept
    captured = capsys.readouterr()
    assert f"warning: the server dropped {dropped:.2f} s of the input" in captured.err and "--fast" in captured.err
    assert f"input dropped by the server {dropped:.2f} s" in captured.out


# ---- an agent slower than real time ------------------------------------------------------------

async def test_client_warns_when_the_agent_missed_its_deadlines(tmp_path, caplog, capsys):
    """A tandem whose front-end takes 0.1 s per 80 ms frame (a deliberately slow fake) misses
    every deadline: the client, which sent in real time, warns at the end as `kame run` does;
    the server's log says once that the session falls behind real time and why."""
    import logging
    import time

    from kame.runtime.engine import TandemAgent

    from ..runtime.fakes import FakeFrameModel

    caplog.set_level(logging.WARNING, logger="kame.runtime.session")
    cfg = load_config(None, ["runtime.vad=energy", "runtime.max_sessions=1"])
    agent = TandemAgent(cfg, frame_models=lambda b: FakeFrameModel(b, hook=lambda: time.sleep(0.1)),
                        backend=lambda s: None, token_text=lambda t: "")
    js = tmp_path / "out.json"
    long = tmp_path / "long.wav"
    sf.write(str(long), tone(1.5), 24000)
    async with running_server(agent) as (url, _):
        assert await _main([url, long, "--json", js, "--tail", "0.3"]) == 0  # a warning, not a failure
    doc = json.loads(js.read_text())
    late, frames = doc["missed_deadlines"], doc["frames"]
    assert late == frames >= 5  # (the server's latest stats: it sends them every second)
    captured = capsys.readouterr()
    assert f"warning: the agent missed its 80 ms deadline on {late} of {frames} frames (100 %): it ran slower " \
           f"than real time" in captured.err and "too slow for the CPU" in captured.err
    assert f"missed deadlines {late} of {frames} frames" in captured.out
    behind = [r.getMessage() for r in caplog.records if "falls behind real time" in r.getMessage()]
    assert len(behind) == 1 and "too slow for this CPU" in behind[0]
    assert not any("faster than real time" in r.getMessage() for r in caplog.records)  # the client is not blamed


@pytest.mark.parametrize("late, dropped, fast, warned, why", [
    (2, 0.0, False, False, None),  # 2 of 100 frames: a hiccup, not an agent behind real time
    (40, 0.0, False, True, None),
    (40, 1.2, False, True, "the agent ran slower than real time"),
    (0, 1.2, True, False, "--fast sent faster than real time"),
    (0, 1.2, False, False, "reached it faster than real time at times"),
])
def test_client_tells_a_slow_agent_from_other_causes_of_dropped_input(late, dropped, fast, warned, why, capsys):
    import argparse

    from kame.server.client import ChatResult
    from kame.server.clientreport import report

    res = ChatResult(close_code=1000, metas=[
        {"type": "stats", "frames": 50, "missed_deadlines": late // 2, "dropped_input_s": 0.0},
        {"type": "stats", "frames": 100, "missed_deadlines": late, "dropped_input_s": dropped}])
    assert report(res, argparse.Namespace(fast=fast, json=None, tail=1.0, max_tail=1.0)) == 0
    err = capsys.readouterr().err
    assert ("warning: the agent missed its 80 ms deadline" in err) is warned
    assert (f"warning: the server dropped {dropped:.2f} s of the input" in err) is bool(dropped)
    if why:
        assert why in err


def test_client_help_documents_exit_status(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "exit status:" in out and "1001" in out and "server error: CODE: MESSAGE" in out
    said = " ".join(out.split())  # --fast: what the server does now (its 3 s burst, not only the agent's backlog)
    assert "takes about 3 s of audio ahead of real time and drops the rest undecoded" in said
    assert "a network stall held back" in said


async def test_a_server_message_the_client_cannot_read_is_skipped_and_the_session_goes_on(wav, tmp_path, capsys):
    """Moshi's 0x07 (coloured text), bad JSON, bad Ogg: were `error: unknown message kind 0x07`
    and exit 1 with nothing written."""
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    from kame.server import protocol as P

    async def handler(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_bytes(P.handshake())
        for bad in (b"\x07\x00hi", b"\x04{not json", b"\x01not ogg"):
            await ws.send_bytes(bad)
        await ws.send_bytes(P.encode(P.Kind.TEXT, "still here"))
        await ws.send_bytes(P.encode(P.Kind.PCM, P.pcm16_encode(np.full(1920, 0.1, np.float32))))
        async for msg in ws:  # until the client closes
            pass
        return ws

    app = web.Application()
    app.router.add_get("/api/chat", handler)
    async with TestServer(app) as server:
        out, js = tmp_path / "o.wav", tmp_path / "o.json"
        assert await _main([f"http://127.0.0.1:{server.port}", wav, "--fast", "--tail", "0.3", "-o", out, "--json", js]) == 0
    err = capsys.readouterr().err
    assert err.count("server error: unreadable_message: kame client skipped a server message it cannot read") == 2
    # (the unknown kind is the client's own skip, said once as such: test_client_versions.py)
    assert "warning: skipped 1 server message of a type this client does not know (0x07)" in err
    assert json.loads(js.read_text())["text"] == "still here" and sf.info(out).frames == 1920


async def test_a_refusal_from_another_web_server_is_told_without_its_html(wav, capsys):
    # (was: "refused: HTTP 404: <!DOCTYPE HTML> ... <p>Error code at ws://..." cut at 200 characters;
    # then the style sheet's text and "&amp;" were kept)
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    page = "<!DOCTYPE HTML><html><head><title>Error response</title><STYLE type='text/css'>h1 {color: red}</style>" \
           "</head><body><h1>Error response</h1><p>Error code: 404</p><p>Message: File not found &amp; gone.</p>" \
           "<script>var x = 1 < 2;</script></body></html>"

    async def handler(request):
        return web.Response(status=404, text=page, content_type="text/html")

    app = web.Application()
    app.router.add_get("/api/chat", handler)
    async with TestServer(app) as server:
        assert await _main([f"http://127.0.0.1:{server.port}", wav]) == 1
    err = capsys.readouterr().err
    assert "refused: HTTP 404: Error response Error response Error code: 404 Message: File not found & gone. at ws://" in err
    assert "<" not in err and "red" not in err


async def test_the_client_hears_of_input_a_cascade_dropped(tmp_path, capsys):
    # (was: the cascade said so only in its final stats, sent at close, which the server no
    # longer forwards: no warning)
    long = tmp_path / "long.wav"
    sf.write(str(long), tone(4.0), 24000)
    async with cascade_server(llm_delay=0.1) as url:
        assert await _main([url, long, "--fast", "--tail", "0.3"]) == 0
    err = capsys.readouterr().err
    said = re.search(r"warning: the server dropped ([0-9.]+) s of the input", err)  # (was: 0.02 s, its first drop; now the server's and the cascade's drops, < the 4 s sent)
    assert said and 2.5 < float(said.group(1)) < 4.0 and "--fast sent faster than real time; leave --fast out" in err


class _FailingBackendEcho(EchoAgent):
    """The echo agent, whose sessions report one back-end failure with internal detail."""

    async def open_session(self, session_id=None):
        s = await super().open_session(session_id)
        s._out.put_nowait(ErrorEvent("llm 'openai:m' failed: HTTP 401 from http://10.9.8.7:8000/v1/chat/completions: "
                                     "{\"error\": \"bad key\"} (key from OPENAI_API_KEY)", 0.0,
                                     brief="llm back-end failed (HTTP 401 from the LLM server); see the server log"))
        return s


async def test_a_remote_client_gets_the_short_form_of_a_back_end_failure(wav, capsys, caplog):
    caplog.set_level(logging.INFO, logger="kame.server")
    async with running_server(_FailingBackendEcho(delay_frames=2)) as (url, _):
        assert await _main([url, wav, "--fast", "--tail", "0.3"]) == 0
    err = capsys.readouterr().err
    assert "server error: agent_error: llm back-end failed (HTTP 401 from the LLM server); see the server log" in err
    assert "10.9.8.7" not in err and "OPENAI_API_KEY" not in err
    assert "10.9.8.7" in caplog.text  # (the operator's log has it)
