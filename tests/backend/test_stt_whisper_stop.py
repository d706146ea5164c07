"""A stopped whisper stream lets go of its decodes (kame.backend.stt.whisper): its worker does not
wait for the decode in flight and starts none after it, and the process's exit drops the decodes
not begun and names the one it waits for. The model is a fake whose decode blocks on an event (the
path is the real one: WhisperModelHandle.transcribe on the handle's decode thread); threads sync on
events, not on time."""

import contextvars
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

from kame.backend import vad as vad_mod
from kame.backend.stt.streaming import StreamStopped
from kame.backend.stt.streamworker import _Worker
from kame.backend.stt.whisper import WhisperModelHandle, WhisperSTT, decode_repeatable

from .test_stt_stop import SILENCE, SPEECH, _EnergyModel


@pytest.fixture(autouse=True)
def energy_vad(monkeypatch):
    monkeypatch.setattr(vad_mod, "SileroModel", _EnergyModel)


class _Word:
    word, start, end = " hi", 0.1, 0.3


class _Heard:
    compression_ratio, avg_logprob, no_speech_prob, words = 1.0, -0.1, 0.0, [_Word()]


class _BlockingModel:
    """A faster-whisper WhisperModel whose every decode blocks until ``release`` is set (then hears "hi")."""

    def __init__(self) -> None:
        self.calls = 0
        self.entered, self.release = threading.Event(), threading.Event()

    def transcribe(self, pcm16k, **options):
        self.calls += 1
        self.entered.set()
        assert self.release.wait(30)
        return [_Heard()], None


def _handle(model) -> WhisperModelHandle:
    handle = object.__new__(WhisperModelHandle)  # (no CTranslate2 model: the fake)
    handle.model, handle.language = model, "en"
    handle._init_decoding()
    return handle


def test_a_stopped_stream_does_not_wait_for_the_decode_in_flight():
    """The session closes while a whisper decode runs (the cascade's shutdown mid-utterance): the
    stream's worker ends without waiting for it (was: until the decode, then the final's decode
    after it, ended: 12-18 s at the server's exit) and no decode starts after it."""
    model = _BlockingModel()
    handle = _handle(model)
    stt = WhisperSTT(handle=handle, max_lag=float("inf"))
    posted: list = []
    worker = _Worker(stt, posted.append)
    for k, pcm in enumerate([SILENCE] * 5 + [SPEECH] * 15 + [SILENCE] * 15):  # an utterance and its end
        worker.put(pcm, 100.0 + 0.08 * k)
    worker.close()
    th = threading.Thread(target=worker.run, daemon=True)
    th.start()
    try:
        assert model.entered.wait(30)  # a decode is under way (blocked)
        worker.stop()  # its session closed
        th.join(10)
        assert not th.is_alive(), "the worker still waits for the whisper decode in flight"
        assert [item[0] for item in posted] == ["done"]  # no final, no error: stopped
    finally:
        model.release.set()
        handle.executor.shutdown(wait=True)
    assert model.calls == 1  # the final's decode was never started


def test_a_live_stream_still_gets_its_final():
    """The same path, not stopped: the final waits for the decode and is posted (as before)."""
    model = _BlockingModel()
    model.release.set()
    handle = _handle(model)
    posted: list = []
    worker = _Worker(WhisperSTT(handle=handle, max_lag=float("inf")), posted.append)
    for k, pcm in enumerate([SILENCE] * 5 + [SPEECH] * 15 + [SILENCE] * 15):
        worker.put(pcm, 100.0 + 0.08 * k)
    worker.close()
    contextvars.copy_context().run(worker.run)  # (as a stream runs it: its stop context stays its own)
    handle.executor.shutdown(wait=True)
    assert [item[0] for item in posted][-2:] == ["final", "done"]
    assert [w.text for w in posted[-2][1]] == ["hi"]


class _Seg:
    compression_ratio, avg_logprob, no_speech_prob, words = 3.0, -0.5, 0.0, []  # too repetitive


class _LoopingModel:
    def __init__(self) -> None:
        self.calls = 0

    def transcribe(self, pcm16k, **options):
        self.calls += 1
        return [_Seg()], None


def test_a_stopped_decode_skips_its_fallback_attempt():
    model = _LoopingModel()
    decode_repeatable(model, np.zeros(16000, np.float32))
    assert model.calls == 2  # the fallback beam search
    model.calls = 0
    with pytest.raises(StreamStopped, match="fallback"):
        decode_repeatable(model, np.zeros(16000, np.float32), stop=lambda: True)
    assert model.calls == 1


def test_the_exit_drops_queued_decodes_and_names_the_one_it_waits_for(tmp_path):
    """At the process's exit a decode not begun is dropped and the one under way (it cannot be
    interrupted, nor left running: a daemon thread inside CTranslate2 crashes the exit) is named in
    the log; the exit status is 0."""
    script = tmp_path / "exit.py"
    script.write_text(textwrap.dedent("""
        import logging, threading
        import numpy as np
        from kame.backend.stt.whisper import WhisperModelHandle
        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
        entered, release = threading.Event(), threading.Event()
        class Model:
            def transcribe(self, pcm16k, **options):
                print("decode", flush=True)
                entered.set()
                release.wait(0.5)  # (a decode the exit must wait for)
                return [], None
        h = object.__new__(WhisperModelHandle)
        h.model, h.language = Model(), "en"
        h._init_decoding()
        pcm = np.zeros(16000, np.float32)
        h.executor.submit(h.transcribe, pcm)
        h.executor.submit(h.transcribe, pcm)  # queued behind it: dropped at the exit
        assert entered.wait(30)
    """))
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("decode") == 1, r.stdout  # the queued one never ran
    assert "waiting for the whisper decode under way" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr, r.stderr



def test_a_decode_dropped_at_exit_behind_another_streams_is_a_stop_not_a_crash(monkeypatch, caplog):
    """Two streams share one whisper model; the process exits while one decode runs and the other
    stream's waits behind it: the dropped one is a stopped stream ("done"), not "STT worker
    crashed" with a CancelledError traceback."""
    import kame.backend.stt.whisper as whisper

    monkeypatch.setattr(whisper, "_EXITING", threading.Event())
    model = _BlockingModel()
    handle = _handle(model)
    monkeypatch.setattr(whisper, "_HANDLES", {handle})
    stt = WhisperSTT(handle=handle, max_lag=float("inf"), whisper_interval=100.0)
    posts: dict[str, list] = {"A": [], "B": []}
    threads = []
    for name, posted in posts.items():
        worker = _Worker(stt, posted.append, f"session {name}: ")
        for k, pcm in enumerate([SILENCE] * 5 + [SPEECH] * 15 + [SILENCE] * 15):
            worker.put(pcm, 100.0 + 0.08 * k)
        worker.close()
        th = threading.Thread(target=contextvars.copy_context().run, args=(worker.run,), daemon=True)
        th.start()
        threads.append(th)
        assert model.entered.wait(30)  # (A's decode runs before B queues its own)
    try:
        for _ in range(200):  # (B's decode queued behind A's)
            if handle.executor._work_queue.qsize():
                break
            threading.Event().wait(0.01)
        whisper._at_exit()  # the interpreter's exit
    finally:
        model.release.set()
        for th in threads:
            th.join(10)
        handle.executor.shutdown(wait=True)
    assert [item[0] for item in posts["B"]] == ["done"], posts["B"]
    assert "crashed" not in caplog.text
