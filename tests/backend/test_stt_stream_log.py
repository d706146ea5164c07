"""The log lines of kame's STT streams (SegmentedSTT) name the session whose stream it is, and
work that fails after the session stopped the stream (kame dropped an HTTP request at close) is
not logged as the service's failure. Through the sessions' STT supervisor, with a loudness VAD
and a recognizer that fails on request."""

import asyncio
import logging
import threading
from types import SimpleNamespace

import numpy as np

from kame.backend.stt import streamworker
from kame.backend.stt.streaming import Recognizer, SegmentedSTT
from kame.backend.types import AudioFrame
from kame.backend.vad import VADEvent
from kame.errors import BackendError
from kame.runtime.clock import FakeClock
from kame.runtime.sttloop import STTSupervisor

LOUD, QUIET = np.full(1920, 0.5, np.float32), np.zeros(1920, np.float32)


class _LoudVAD:
    """The parts of StreamingVAD the worker uses: speech = a loud frame, ended by a quiet one."""

    def __init__(self, cfg) -> None:
        self.in_speech = False
        self.st = SimpleNamespace(silence=0.0, last_speech_end=None)

    def to_16k(self, pcm, t):
        return np.asarray(pcm[:1280], np.float32), t

    def push_16k(self, x, t):
        loud = float(np.abs(x).max()) > 0.1
        if loud == self.in_speech:
            return []
        self.in_speech = loud
        return [VADEvent("start" if loud else "end", t, t + 0.08)]


class _FailingFinal(Recognizer):
    def __init__(self, stt) -> None:
        self.stt = stt

    def accept(self, pcm16k):
        pass

    def partial(self):
        return None

    def final(self, speech_end=None):
        self.stt.in_final.set()
        if self.stt.wait_for_stop is not None:  # the request is under way until kame drops it
            self.stt.wait_for_stop.wait(30)
        raise BackendError("STT http://127.0.0.1:9/v1/audio/transcriptions: cannot connect (Server "
                           "disconnected); is the server running?")


class _HTTPishSTT(SegmentedSTT):
    name = "httpish"

    def __init__(self, wait_for_stop=None, **kw) -> None:
        super().__init__(**kw)
        self.in_final, self.wait_for_stop = threading.Event(), wait_for_stop

    def new_recognizer(self):
        return _FailingFinal(self)


def _supervisor(stt, clock, who="c9"):
    failures = []
    sup = STTSupervisor(stt, clock, who=who, on_transcript=lambda tr: asyncio.sleep(0),
                        on_failure=lambda exc, wait: failures.append(exc))
    return sup, failures


async def _push(sup, clock, frames) -> None:
    for pcm in frames:
        sup.push(AudioFrame(pcm, clock.now()))
        clock.advance(0.08)
        await asyncio.sleep(0)


def _lines(caplog, level=None) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "kame.backend.stt.streaming" and (level is None or r.levelno == level)]


async def test_a_failing_stream_is_logged_with_its_session(monkeypatch, caplog):
    monkeypatch.setattr(streamworker, "StreamingVAD", _LoudVAD)
    clock = FakeClock()
    stt = _HTTPishSTT(clock=clock)
    sup, failures = _supervisor(stt, clock)
    with caplog.at_level(logging.WARNING, logger="kame.backend.stt.streaming"):
        task = asyncio.create_task(sup.run())
        await _push(sup, clock, [LOUD] * 3 + [QUIET])
        for _ in range(3000):  # (the worker thread's final)
            if failures:
                break
            await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert failures  # (the session heard of it: it is the service's failure)
    assert _lines(caplog, logging.WARNING) == [
        "session c9: STT stream ended: STT http://127.0.0.1:9/v1/audio/transcriptions: cannot connect "
        "(Server disconnected); is the server running?"]


async def test_a_request_dropped_after_the_session_stopped_the_stream_is_no_warning(monkeypatch, caplog):
    """The session closed (its STT task cancelled) while a request was under way; kame dropped it,
    and it failed: not a warning blaming the server ("cannot connect ...; is the server running?"),
    which came after the session had gone. A debug line says what happened."""
    monkeypatch.setattr(streamworker, "StreamingVAD", _LoudVAD)
    stopped = threading.Event()
    real_stop = streamworker._Worker.stop

    def stop(worker):  # kame stops the worker, then drops its request (here: the request fails)
        real_stop(worker)
        stopped.set()

    monkeypatch.setattr(streamworker._Worker, "stop", stop)
    clock = FakeClock()
    stt = _HTTPishSTT(wait_for_stop=stopped, clock=clock)
    sup, failures = _supervisor(stt, clock)
    with caplog.at_level(logging.DEBUG, logger="kame.backend.stt.streaming"):
        task = asyncio.create_task(sup.run())
        await _push(sup, clock, [LOUD] * 3 + [QUIET])
        assert await asyncio.to_thread(stt.in_final.wait, 30)  # the final's request is under way
        task.cancel()  # the session closes
        await asyncio.gather(task, return_exceptions=True)
    assert not _lines(caplog, logging.WARNING) and not failures
    (line,) = _lines(caplog, logging.DEBUG)
    assert line.startswith("session c9: the STT stream was stopped by its consumer (its session closed, or "
                           "restarted the stream); the request or decode under way then ended: STT http://")


async def test_a_recognizers_own_lines_in_the_worker_thread_name_the_session(monkeypatch, caplog):
    """The recognizers run in the stream's worker thread (e.g. openai's 'partial transcription
    failed (skipped)'): they see the session too (was: the thread did not have the task's context)."""
    from kame.backend.stt.base import owner_prefix

    monkeypatch.setattr(streamworker, "StreamingVAD", _LoudVAD)
    said = threading.Event()

    class Chatty(_FailingFinal):
        def partial(self):
            logging.getLogger("kame.backend.stt.streaming").warning("%spartial request failed (skipped)",
                                                                  owner_prefix())
            said.set()
            return None

    class ChattySTT(_HTTPishSTT):
        def new_recognizer(self):
            return Chatty(self)

    clock = FakeClock()
    sup, _ = _supervisor(ChattySTT(clock=clock), clock, who="c7")
    with caplog.at_level(logging.WARNING, logger="kame.backend.stt.streaming"):
        task = asyncio.create_task(sup.run())
        await _push(sup, clock, [LOUD] * 3)
        for _ in range(3000):
            if said.is_set():
                break
            await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert "session c7: partial request failed (skipped)" in _lines(caplog, logging.WARNING)
