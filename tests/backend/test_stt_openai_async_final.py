"""The openai STT's final is not waited for: a request that takes longer than the pause before the
next utterance delays only its own utterance (was: the stream's one worker waited for it, so the
next utterance's VAD, partials and final waited too, a lag growing for the rest of the session),
and the finals still come in order."""

import asyncio

import pytest
from aiohttp import web

from kame import registry
from kame.runtime.clock import FakeClock

from ..local_http import serving
from . import test_stt_openai as base

speech = base.speech  # (the fixture: two espeak utterances 1 s apart)

pytest.importorskip("onnxruntime")


class HoldingServer:
    """Answers the first transcription only once the second has come (or after ``hold`` s, for
    an STT that sends one request at a time), and after the second's answer: the second's
    result is there first."""

    def __init__(self, hold: float = 4.0):
        self.hold = hold
        self.second_answered = asyncio.Event()
        self.first_answered = False
        self.first_held_when_second_came = None
        self.n = 0

    async def handle(self, request):
        await request.post()
        self.n += 1
        if self.n == 1:
            try:
                await asyncio.wait_for(self.second_answered.wait(), self.hold)
            except asyncio.TimeoutError:
                pass
            self.first_answered = True
            return web.json_response({"text": "first question"})
        if self.n == 2:
            self.first_held_when_second_came = not self.first_answered
        try:
            return web.json_response({"text": "second question" if self.n == 2 else "more"})
        finally:
            self.second_answered.set()


async def test_the_next_utterances_final_is_sent_while_a_slow_final_is_in_flight_and_finals_keep_their_order(speech):
    pcm, spans = speech
    srv = HoldingServer()
    app = web.Application()
    app.router.add_post("/v1/audio/transcriptions", srv.handle)
    async with serving(app) as (url, _):
        clock = FakeClock(base.T0)
        stt = registry.create("stt", "openai:m;response_format=json,request_interval=inf,timeout=10",
                              base_url=url + "/v1", clock=clock, max_lag=float("inf"))
        trs = [tr async for tr in stt.stream(base.feed(pcm, clock))]
    assert srv.n == 2 and srv.first_held_when_second_came is True  # (was: sent once the first had returned)
    assert [(tr.final, tr.text) for tr in trs] == [(True, "first question"), (True, "second question")]
    for tr, (start, end) in zip(trs, spans):  # each on its own utterance's times
        assert start - 0.4 < tr.words[0].start < tr.words[-1].end < end + 0.4
