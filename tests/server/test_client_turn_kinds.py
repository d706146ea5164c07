"""`kame client` and the turns `kame run` waits for and explains alike: hybrid routing's routed
reply (a "route" turn) gets the tail extended until it is over, a cascade's user speech that the
VAD never ended is said plainly, and a reply a barge-in cut before its first word is named so."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np

from kame.server import protocol as P
from kame.server.client import ChatResult, chat
from kame.server.clientreport import report

from .conftest import tone


def _meta(d) -> bytes:
    return P.encode(P.Kind.METADATA, json.dumps(d))


async def test_a_routed_reply_under_way_gets_the_tail_extended_until_its_agent_turn():
    """A tandem with hybrid routing: a structured "route" turn whose reply ends (its "agent_turn")
    after the tail: the client streams silence until then (was: "route" was not among the
    metadata reply_pending read, so the session was closed at the tail and the reply cut off,
    with no warning)."""
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    async def handler(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_bytes(P.handshake())
        await ws.send_bytes(_meta({"type": "info", "session": "s", "mode": "tandem", "t0": 0.0}))
        await ws.send_bytes(_meta({"type": "route", "turn": 1, "route": "structured",
                                   "rules": ["arithmetic: expression"], "t_user_end": 0.2, "t": 0.25}))
        heard = 0
        async for msg in ws:  # the reply ends once 1 s of audio came (the input 0.3 s, the tail 0.2 s)
            kind, payload = P.decode(msg.data)
            if kind == P.Kind.PCM:
                before, heard = heard, heard + len(P.pcm16_decode(payload))
                if before < 24000 <= heard:
                    await ws.send_bytes(_meta({"type": "agent_turn", "turn": 1, "text": "84.", "reply": "84.",
                                               "interrupted": False, "failed": False, "t": 1.0}))
        return ws

    app = web.Application()
    app.router.add_get("/api/chat", handler)
    async with TestServer(app) as server:
        res = await chat(f"http://127.0.0.1:{server.port}", tone(0.3), pcm_mode=True, realtime=False,
                         tail_s=0.2, max_tail_s=10.0)
    assert any(m.get("type") == "agent_turn" for m in res.metas)  # (was: never came, the session closed first)
    assert res.tail_extended_s > 0 and not res.reply_cut_off


INFO = [{"type": "info", "t0": 0.0}, {"type": "info", "mode": "cascade", "stt": "x", "llm": "y"}]


def _report(metas, capsys, **kw) -> tuple[str, str]:
    res = ChatResult(audio=np.zeros(2400, np.float32), metas=INFO + metas, close_code=1000, **kw)
    assert report(res, SimpleNamespace(tail=3.0, max_tail=30.0, json=None, fast=False)) == 0
    return capsys.readouterr()


def test_a_users_speech_the_vad_never_ended_is_said_plainly(capsys):
    """cascade.end_of_turn_silence longer than the tail (or a VAD that never hears silence): words
    were heard, the speech never ended, no turn was taken (was: no warning at all, exit 0)."""
    metas = [{"type": "vad", "event": "start", "t": 0.06},
             {"type": "transcript", "text": "what is the capital of france", "final": False, "t": 1.4}]
    out, err = _report(metas, capsys, tail_extended_s=27.0, reply_cut_off=True)
    assert ("warning: the user's speech from 0.06 s into the session had not ended by the VAD when the session "
            "ended (it had heard 'what is the capital of france'), so the cascade took no turn for it") in err
    assert "cascade.end_of_turn_silence" in err and "cascade.vad_threshold" in err
    assert "is slow" not in err and "still answering" not in err
    assert "tail extended 27.00 s (the user's speech had not ended, by the VAD)" in out
    # its speech ended: not said
    _, err = _report(metas + [{"type": "vad", "event": "end", "t": 1.6}], capsys)
    assert "had not ended by the VAD" not in err


def test_a_reply_a_barge_in_cut_before_its_first_word_is_not_an_empty_llm(capsys):
    """(was: "its LLM answered with no text" for a reply cut on its first frame)"""
    metas = [{"type": "vad", "event": "start", "t": 0.06},
             {"type": "transcript", "text": "hi", "final": False, "t": 0.5},
             {"type": "vad", "event": "end", "t": 1.6},
             {"type": "transcript", "text": "hi there", "final": True, "t": 2.0},
             {"type": "turn", "turn": 1, "t": 2.0},
             {"type": "agent_turn", "turn": 1, "text": "", "reply": "", "interrupted": True, "failed": False, "t": 2.1},
             {"type": "barge_in", "turn": 1, "t": 2.1, "heard": ""}]
    _, err = _report(metas, capsys)
    assert "warning: the cascade heard the user but did not answer; a barge-in cut its reply before the first " \
           "word: the VAD heard the user's voice over it (cascade.barge_in_min_speech" in err
    assert "answered with no text" not in err


def test_a_final_too_late_for_a_reply_names_backend_nice_as_kame_run_does(capsys):
    """The STT's final came but no reply began before the session ended: the advice is kame run's
    (was: only "give a longer --max-tail", where a niced STT on a busy machine was the cause)."""
    metas = [{"type": "vad", "event": "start", "t": 0.06},
             {"type": "transcript", "text": "hi", "final": False, "t": 0.5},
             {"type": "vad", "event": "end", "t": 1.6},
             {"type": "transcript", "text": "hi there", "final": True, "t": 29.0}]
    _, err = _report(metas, capsys, tail_extended_s=28.0, reply_cut_off=True)
    assert ("warning: the cascade heard the user but did not answer; the STT's final transcript came too late "
            "for a reply before the session ended: give a longer --max-tail, or see backend.nice") in err


async def test_a_cascade_whose_stt_failed_after_the_speech_gets_no_wait_for_its_final():
    """The STT went down after the user's speech ended (its "backend" Meta): no final is coming,
    so the client closes at the tail as `kame run` does (was: "backend" was not among the metadata
    reply_pending read, and the client streamed silence up to --max-tail for that final)."""
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    async def handler(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_bytes(P.handshake())
        await ws.send_bytes(_meta({"type": "info", "session": "s", "mode": "cascade", "t0": 0.0}))
        await ws.send_bytes(_meta({"type": "vad", "event": "start", "t": 0.05}))
        await ws.send_bytes(_meta({"type": "transcript", "text": "what is", "final": False, "t": 0.2}))
        await ws.send_bytes(_meta({"type": "vad", "event": "end", "t": 0.3}))
        await ws.send_bytes(_meta({"type": "backend", "component": "stt", "status": "down", "t": 0.35}))
        async for _ in ws:
            pass
        return ws

    app = web.Application()
    app.router.add_get("/api/chat", handler)
    async with TestServer(app) as server:
        res = await chat(f"http://127.0.0.1:{server.port}", tone(0.3), pcm_mode=True, realtime=False,
                         tail_s=0.2, max_tail_s=3.0)
    assert res.tail_extended_s == 0  # (was: ~3 s, the whole --max-tail)
