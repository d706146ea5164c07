"""The embedded STT whose pocketsphinx child dies mid-utterance (QA k45 chaos finding 1): the
utterance finishes on whisper alone, its whisper final comes, and then pocketsphinx's BackendError
goes to the stream's fault handler (open_stream's on_fault: a session's STT supervisor reports it) while
the stream goes on; with no handler, the stream ends with it. Was: the error ended the stream at
once and the utterance was lost (no final: the cascade never answered); then (review r1) the
stream ended after the final, matched by its words, so its restart lost the next utterance.
Fakes stand for pocketsphinx and whisper (no models, no child); the VAD is the real one on an
energy "model" (speech = a loud frame), as in tests/backend/test_stt_stop.py."""

import numpy as np
import pytest

from kame.backend import vad as vad_mod
from kame.backend.stt import embedded
from kame.backend.stt.base import open_stream
from kame.backend.stt.streaming import SegmentedSTT, StreamStopped
from kame.backend.types import AudioFrame, Word
from kame.errors import BackendError

from .test_stt_stop import SILENCE, SPEECH, _EnergyModel

DIED = "the pocketsphinx child process died (exit code -9)"
HEARD = [Word("what", 0.0, 0.3), Word("is", 0.3, 0.6), Word("it", 0.6, 0.8)]


@pytest.fixture(autouse=True)
def energy_vad(monkeypatch):
    monkeypatch.setattr(vad_mod, "SileroModel", _EnergyModel)


class _PS:
    """pocketsphinx's recognizer: its child dies at call ``die_at`` ("accept" or "partial")."""

    def __init__(self, die_at: str, log: list):
        self.die_at, self.log, self.accepted = die_at, log, 0

    def _maybe_die(self, call: str) -> None:
        if call == self.die_at and self.accepted >= 8:  # (some words heard first)
            raise BackendError(DIED)

    def accept(self, pcm16k):
        self.accepted += 1
        self._maybe_die("accept")

    def partial(self):
        self._maybe_die("partial")
        return [Word("what", 0.0, 0.3)]

    def final(self, speech_end=None):
        raise AssertionError("whisper's final is the one used")

    def close(self):
        self.log.append("ps closed")


class _Whisper:
    """whisper's recognizer: its final is HEARD (``heard``: else nothing)."""

    words: list = []
    words_len = 0

    def __init__(self, heard: bool):
        self.heard = heard

    def accept(self, pcm16k):
        pass

    def poll(self):
        return False

    def pause(self, speech_end):
        pass

    def final(self, speech_end=None):
        return list(HEARD) if self.heard else []

    def close(self):
        pass


def _stt(monkeypatch, die_at: str, heard: bool = True, log: list | None = None):
    log = [] if log is None else log
    monkeypatch.setattr(embedded, "PocketsphinxRecognizer", lambda server: _PS(die_at, log))
    monkeypatch.setattr(embedded, "WhisperRecognizer", lambda handle, **kw: _Whisper(heard))
    stt = embedded.EmbeddedSTT.__new__(embedded.EmbeddedSTT)  # (no whisper model, no pocketsphinx child)
    SegmentedSTT.__init__(stt, max_lag=float("inf"))  # (all frames are queued at once)
    stt.ps_server, stt.handle, stt.whisper_interval, stt.final_beam = None, None, None, 1
    stt.max_ps_lag = float("inf")  # (all frames are queued at once: pocketsphinx must not skip them)
    return stt


async def _frames(pcms):
    for k, pcm in enumerate(pcms):
        yield AudioFrame(pcm, 100.0 + 0.08 * k)


async def _run(stt, pcms, faults: list | None = None):
    """The stream's transcripts (final?, text) and the error that ended it (None: none), in order;
    ``faults``: the stream's fault handler appends ("fault", message) to the same list (None: no handler)."""
    got = []
    on_fault = None if faults is None else (lambda exc: got.append(("fault", str(exc))))
    try:
        async for tr in open_stream(stt, _frames(pcms), on_fault=on_fault):
            got.append((tr.final, tr.text))
    except BackendError as exc:
        return got, exc
    return got, None


@pytest.mark.parametrize("die_at", ["accept", "partial"])
async def test_whisper_final_comes_then_the_failure_is_reported_and_the_stream_goes_on(monkeypatch, die_at):
    log: list = []
    stt = _stt(monkeypatch, die_at, log=log)
    # an utterance, its end (the VAD's silence), then more silence (the stream goes on)
    got, exc = await _run(stt, [SILENCE] * 5 + [SPEECH] * 25 + [SILENCE] * 30, faults=[])
    assert got[-2:] == [(True, "what is it"), ("fault", DIED)]  # the final comes, then the failure
    assert (False, "what") in got  # (its partial before the death)
    assert exc is None  # the stream went on to the end of its input (was: it ended with the failure)
    assert log == ["ps closed"]  # (its decoder let go at the failure)


async def test_with_no_fault_handler_the_stream_ends_with_the_failure_after_the_final(monkeypatch):
    """A stream nobody supervises: the failure still reaches its reader, after the final."""
    stt = _stt(monkeypatch, "accept")
    got, exc = await _run(stt, [SILENCE] * 5 + [SPEECH] * 25 + [SILENCE] * 30)
    assert got[-1] == (True, "what is it") and exc is not None and str(exc) == DIED


@pytest.mark.parametrize("handler", [True, False])
async def test_a_final_with_no_words_then_the_failure(monkeypatch, handler):
    """whisper heard nothing in the utterance either: an empty final (it ends the utterance, no
    turn), then the failure (reported, or ending a stream with no handler)."""
    stt = _stt(monkeypatch, "accept", heard=False)
    got, exc = await _run(stt, [SILENCE] * 5 + [SPEECH] * 25 + [SILENCE] * 30, faults=[] if handler else None)
    assert [g for g in got if g[0] is True] == [(True, "")]
    if handler:
        assert got[-1] == ("fault", DIED) and exc is None
    else:
        assert exc is not None and str(exc) == DIED


async def test_a_healthy_pocketsphinx_ends_nothing(monkeypatch):
    stt = _stt(monkeypatch, "never")
    got, exc = await _run(stt, [SILENCE] * 5 + [SPEECH] * 25 + [SILENCE] * 30 + [SPEECH] * 25 + [SILENCE] * 30)
    assert exc is None and [g for g in got if g[0]] == [(True, "what is it")] * 2


def test_a_stopped_stream_is_no_pocketsphinx_failure(monkeypatch):
    """StreamStopped (the session closed) passes through: nobody wants the utterance any more."""
    stt = _stt(monkeypatch, "never")
    rec = stt.new_recognizer()

    def stopped(pcm16k):
        raise StreamStopped("the STT stream was stopped by its consumer")

    rec.ps.accept = stopped
    with pytest.raises(StreamStopped):
        rec.accept(np.zeros(1280, np.float32))
    assert rec.ps_error is None
