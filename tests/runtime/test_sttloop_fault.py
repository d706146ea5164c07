"""The embedded STT's pocketsphinx child dying mid-utterance, under a session's STTSupervisor
(review r1 of 0e87337, findings 1 and 2): the utterance's whisper final comes, the failure is
reported (on_failure with no restart wait) and the stream goes on. Was: the stream ended after
that final (matched by its words), so the restart that followed lost what the user said next,
and of two finals in a row with the same words the first was taken for the failed one's, the
failed utterance's final lost. Fakes stand for pocketsphinx and whisper (no models, no child); a
FakeClock: a restart would wait forever, nothing here depends on timing (the waits are for
events, with a generous bound only against a hang)."""

import asyncio
import threading

import pytest

from kame.backend import vad as vad_mod
from kame.backend.stt import embedded
from kame.backend.types import AudioFrame, Word
from kame.runtime.clock import FakeClock
from kame.runtime.sttloop import STTSupervisor

from ..backend import test_stt_embedded_ps_dies as T
from ..backend.test_stt_stop import SILENCE, SPEECH, _EnergyModel

UTTERANCE = [SPEECH] * 25 + [SILENCE] * 12  # ~2 s of speech, then 0.96 s of silence (the VAD ends it)
BOUND_S = 60.0  # against a hang only


@pytest.fixture(autouse=True)
def energy_vad(monkeypatch):
    monkeypatch.setattr(vad_mod, "SileroModel", _EnergyModel)


def _children(monkeypatch, dies: int) -> list:
    """pocketsphinx's recognizers: the one of utterance ``dies`` (1-based) dies mid-utterance;
    returns the list of those made (one per utterance)."""
    made: list = []

    def child(server):
        made.append(T._PS("accept" if len(made) + 1 == dies else "never", []))
        return made[-1]

    monkeypatch.setattr(embedded, "PocketsphinxRecognizer", child)
    return made


class _Run:
    """An STTSupervisor over the fake embedded STT: its finals' texts, its failures (message, wait)
    and ``done``, set once ``until(self)`` holds or a failure restarts the stream."""

    def __init__(self, stt, until, on_final=None):
        self.finals, self.failures, self.until, self.on_final = [], [], until, on_final
        self.done = asyncio.Event()
        self.sup = STTSupervisor(stt, FakeClock(100.0), who="t", on_transcript=self._tr, on_failure=self._failed)

    async def _tr(self, tr):
        if tr.final:
            self.finals.append(tr.text)
            if self.on_final is not None:
                await self.on_final(len(self.finals))
        if self.until(self):
            self.dropped = self.sup.dropped_frames  # (before the test's own stop: what it leaves is counted then)
            self.done.set()

    def _failed(self, exc, wait):
        self.failures.append((str(exc), wait))
        if wait is not None:  # the stream ended and restarts (after a FakeClock wait that never passes)
            self.done.set()

    async def __call__(self, pcms) -> None:
        task = asyncio.create_task(self.sup.run())
        for k, pcm in enumerate(pcms):
            self.sup.push(AudioFrame(pcm, 100.0 + 0.08 * k))
        try:
            await asyncio.wait_for(self.done.wait(), BOUND_S)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def test_the_utterance_after_a_failed_one_is_kept(monkeypatch):
    """(r1 repro test_next_utt.py: with a restart, utterance 2, spoken while utterance 1's final
    decoded, was lost: finals ['utt1'])"""
    stt = T._stt(monkeypatch, "never")
    _children(monkeypatch, dies=1)
    n = []

    class Whisper(T._Whisper):
        def final(self, speech_end=None):
            n.append(1)
            return [Word(f"utt{len(n)}", 0.0, 0.3)]

    monkeypatch.setattr(embedded, "WhisperRecognizer", lambda handle, **kw: Whisper(True))
    run = _Run(stt, until=lambda r: len(r.finals) == 2)
    await run([SILENCE] * 5 + UTTERANCE + UTTERANCE + [SILENCE] * 20)
    assert run.finals == ["utt1", "utt2"]
    assert run.failures == [(T.DIED, None)]  # reported once, no restart
    assert run.dropped == 0  # nothing lost to the failure (the stop after it counts what the stream held)


async def test_two_utterances_with_the_same_words_both_get_their_final(monkeypatch):
    """(r1 repro test_r1_same_text.py: pocketsphinx dies in utterance 2, the consumer is still on
    utterance 1's final when utterance 2's is ready: the failure was raised after utterance 1's
    final, and utterance 2's was lost)"""
    stt = T._stt(monkeypatch, "never")
    made = _children(monkeypatch, dies=2)
    third = threading.Event()  # utterance 3 began: utterance 2's final is done (the worker is past it)

    def child(server, _make=embedded.PocketsphinxRecognizer):
        rec = _make(server)
        if len(made) == 3:
            third.set()
        return rec

    monkeypatch.setattr(embedded, "PocketsphinxRecognizer", child)

    async def lag(k):  # the consumer, busy with the first final until the second is decoded
        if k == 1:
            assert await asyncio.to_thread(third.wait, BOUND_S)

    run = _Run(stt, until=lambda r: len(r.finals) == 3, on_final=lag)
    await run([SILENCE] * 5 + UTTERANCE * 3 + [SILENCE] * 20)
    assert run.finals == ["what is it"] * 3
    assert run.failures == [(T.DIED, None)]
