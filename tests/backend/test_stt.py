"""Streaming STTs (pocketsphinx, whisper, embedded hybrid) on piper speech, on a FakeClock."""

import asyncio
import re
import sys
import threading
import time

import numpy as np
import pytest

from kame import registry
from kame.backend.stt.streaming import Recognizer, SegmentedSTT
from kame.backend.types import AudioFrame, Word
from kame.errors import AudioFormatError, BackendError, ConfigError, NotAvailableError
from kame.runtime.clock import FakeClock
from kame.runtime.metrics import MetricsLog

pytest.importorskip("pocketsphinx")

SENT_A = "The quick brown fox jumps over the lazy dog."
SENT_B = "Please call me tomorrow morning."
T0 = 100.0  # the session clock starts at 100 s: word times must be on that clock


@pytest.fixture(scope="module")
def clips():
    import onnxruntime

    from kame.backend.tts.piper import PiperTTS

    # module-scoped, so it can run before the per-test seeding in conftest: seed here too.
    # Unseeded, piper's clips differed from run to run and whisper now and then heard "quit"
    onnxruntime.set_seed(0)
    tts = PiperTTS()
    return {s: tts.synth(s) for s in (SENT_A, SENT_B)}


def layout(clips, *sentences, gap=1.0):
    """Concatenate clips with ``gap`` s of silence around; return (pcm, [(start, end)])."""
    sil = np.zeros(int(gap * 24000), np.float32)
    parts, spans, n = [sil], [], len(sil)
    for s in sentences:
        parts += [clips[s], sil]
        spans.append((T0 + n / 24000, T0 + (n + len(clips[s])) / 24000))
        n += len(clips[s]) + len(sil)
    x = np.concatenate(parts)
    pad = -len(x) % 1920
    return np.concatenate([x, np.zeros(pad, np.float32)]), spans


async def feed(pcm, clock):
    """Frames stamped with the clock, which advances 80 ms after each one."""
    for i in range(0, len(pcm), 1920):
        yield AudioFrame(pcm[i:i + 1920], clock.now())
        clock.advance(0.08)
        await asyncio.sleep(0)


async def collect(stt, pcm, clock):
    return [tr async for tr in stt.stream(feed(pcm, clock))]


def norm(text):
    return re.sub(r"[^a-z' ]", "", text.lower()).split()


def check_stream(trs, spans, expect_words):
    finals = [tr for tr in trs if tr.final]
    assert len(finals) == len(spans)
    ts = [tr.t for tr in trs]
    assert ts == sorted(ts)  # stamped from the clock, in order
    start = 0
    for final, (s, e), words in zip(finals, spans, expect_words):
        k = trs.index(final)
        partials = [tr for tr in trs[start:k] if not tr.final]
        start = k + 1
        assert partials, "partials come before the final"
        # partials grow: the last partial has more words than the first
        assert len(partials[-1].words) > len(partials[0].words)
        got = norm(final.text)
        for w in words:
            assert w in got, (w, final.text)
        for w in final.words:  # word times lie within the utterance audio (+ pre-roll slack)
            assert s - 0.4 <= w.start <= w.end <= e + 0.1, (w, s, e)
        assert final.t >= e  # the final comes after the audio ended


@pytest.fixture(scope="module")
def whisper_handle():
    pytest.importorskip("faster_whisper")
    from kame.backend.stt.whisper import WhisperModelHandle

    return WhisperModelHandle(cpu_threads=1)


async def test_pocketsphinx_partials_and_finals(clips):
    clock, log = FakeClock(T0), MetricsLog()
    stt = registry.create("stt", "pocketsphinx", clock=clock, metrics=log, max_lag=float("inf"))
    pcm, spans = layout(clips, SENT_A, SENT_B)
    trs = await collect(stt, pcm, clock)
    # pocketsphinx is weak; these words it gets on this voice
    check_stream(trs, spans, [["quick", "brown", "fox", "lazy", "dog"], ["call", "me", "tomorrow"]])
    # word-by-word: many partials per utterance
    assert sum(not tr.final for tr in trs) >= 10
    assert len(log.values("stt_final_latency")) == 2 and log.values("stt_partial_latency")


async def test_whisper_exact_final(clips, whisper_handle):
    from kame.backend.stt.whisper import WhisperSTT

    clock = FakeClock(T0)
    stt = WhisperSTT(handle=whisper_handle, clock=clock, max_lag=float("inf"), whisper_interval=0.8, background=False)
    pcm, spans = layout(clips, SENT_A)
    trs = await collect(stt, pcm, clock)
    check_stream(trs, spans, [norm(SENT_A)])
    assert norm(trs[-1].text) == norm(SENT_A)


def test_whisper_handle_words_are_repeatable(clips, whisper_handle):
    """A clip that makes whisper fall back gets the same words every time, whatever was decoded
    in between (faster-whisper's temperature sampling did not: CTranslate2 seeds its sampler
    once per thread)."""
    from kame.audio import resample
    from kame.backend.stt.whisper import whisper_attempt

    x = resample(clips[SENT_A], 24000, 16000)
    loop = np.tile(x[:8000], 6)  # half a second six times: greedy whisper repeats itself
    assert not whisper_attempt(whisper_handle.model, loop, language="en")[1]
    first = [w.text for w in whisper_handle.transcribe(loop)]
    whisper_handle.transcribe(resample(clips[SENT_B], 24000, 16000))
    assert [w.text for w in whisper_handle.transcribe(loop)] == first and first


async def test_embedded_hybrid(clips, whisper_handle):
    from kame.backend.stt.embedded import EmbeddedSTT

    clock = FakeClock(T0)
    stt = EmbeddedSTT(handle=whisper_handle, clock=clock, max_lag=float("inf"))
    pcm, spans = layout(clips, SENT_B)
    trs = await collect(stt, pcm, clock)
    check_stream(trs, spans, [norm(SENT_B)])
    assert norm(trs[-1].text) == norm(SENT_B)


async def test_bad_frames_raise_audio_format_error(clips):
    stt = registry.create("stt", "pocketsphinx", clock=FakeClock())

    async def frames(bad):
        yield AudioFrame(np.zeros(1920, np.float32), 0.0)
        yield bad

    for bad in [AudioFrame(np.zeros(1280, np.float32), 0.08),  # 80 ms at 16 kHz
                AudioFrame(np.zeros(1600, np.float32), 0.08),
                AudioFrame(np.zeros((1920, 2), np.float32), 0.08),  # stereo
                AudioFrame(np.zeros(1920, np.int16), 0.08),
                np.zeros(1920, np.float32)]:  # not an AudioFrame
        with pytest.raises(AudioFormatError):
            async for _ in stt.stream(frames(bad)):
                pass

    async def broken_source():
        yield AudioFrame(np.zeros(1920, np.float32), 0.0)
        raise OSError("microphone unplugged")

    with pytest.raises(OSError, match="unplugged"):  # the source's own error, unchanged
        async for _ in stt.stream(broken_source()):
            pass


class _Boom(Recognizer):
    def __init__(self, calls):
        self.calls = calls

    def accept(self, pcm16k):
        pass

    def partial(self):
        self.calls.append(time.monotonic())
        if self.calls is CRASH:
            raise RuntimeError("recognizer exploded")
        time.sleep(0.05)  # a slow decoder
        return [Word("x", 0.0, 0.1)] * len(self.calls)

    def final(self, speech_end=None):
        return [Word("done", 0.0, 0.1)]


CRASH: list = []


class _FakeSTT(SegmentedSTT):
    name = "fake"

    def __init__(self, calls, **kw):
        super().__init__(**kw)
        self.calls = calls

    def new_recognizer(self):
        return _Boom(self.calls)


async def test_crashed_recognizer_is_backend_error(clips):
    clock = FakeClock(T0)
    pcm, _ = layout(clips, SENT_B)
    CRASH.clear()
    with pytest.raises(BackendError, match="exploded"):
        await asyncio.wait_for(collect(_FakeSTT(CRASH, clock=clock, max_lag=float("inf")), pcm, clock), 30)
    # the worker thread is gone
    assert not [t for t in threading.enumerate() if t.name == "kame-stt-fake"]


async def test_slow_decoder_skips_partials_not_audio(clips):
    """The feeder outruns a slow decoder: partial requests are skipped, the final still comes."""
    clock = FakeClock(T0)
    pcm, _ = layout(clips, SENT_A)
    calls: list = []
    trs = await collect(_FakeSTT(calls, clock=clock, partial_interval=0.08, max_lag=0.16), pcm, clock)
    speech_frames = len(clips[SENT_A]) / 1920
    assert len(calls) < speech_frames / 2  # far fewer decodes than frames
    assert trs[-1].final and trs[-1].text == "done"


def _nice() -> int:
    import os
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


class _NiceSpy(Recognizer):
    """Records the nice value of the thread it is called on and of a thread started from there
    (as whisper's decode thread is started from the STT worker)."""

    seen: list = []

    def accept(self, pcm16k):
        pass

    def partial(self):
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1) as ex:
            self.seen.append((_nice(), ex.submit(_nice).result()))
        return []

    def final(self, speech_end=None):
        return self.partial()


class _NiceSTT(SegmentedSTT):
    name = "nice"

    def new_recognizer(self):
        return _NiceSpy()


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread nice values are a Linux feature")
async def test_worker_and_decode_threads_run_at_lower_priority(clips):
    clock = FakeClock(T0)
    pcm, _ = layout(clips, SENT_B)
    _NiceSpy.seen = []
    base = _nice()
    await collect(_NiceSTT(clock=clock, nice=4), pcm, clock)
    want = min(19, base + 4)
    assert _NiceSpy.seen and set(_NiceSpy.seen) == {(want, want)}
    assert _nice() == base  # the caller's own thread is untouched


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread nice values are a Linux feature")
def test_whisper_compute_threads_run_at_lower_priority(clips):
    """CTranslate2 starts its compute threads when the model is built: they must be niced too."""
    import glob

    from kame.audio import resample
    from kame.backend.stt.whisper import WhisperModelHandle

    def threads():  # tid -> (CPU ticks, nice)
        out = {}
        for t in glob.glob("/proc/self/task/*"):
            try:
                st = open(t + "/stat").read().rsplit(")", 1)[1].split()
            except OSError:  # the thread ended
                continue
            out[int(t.rsplit("/", 1)[1])] = (int(st[11]) + int(st[12]), int(st[16]))
        return out

    base = _nice()
    if base > 15:
        pytest.skip("the test process already runs near the lowest priority")
    pcm = resample(clips[SENT_A], 24000, 16000)
    old = threads()  # (other libraries' threads, e.g. onnxruntime's from the clips, may still spin)
    handle = WhisperModelHandle(nice=4)
    built = threads()
    for _ in range(3):
        handle.transcribe(pcm)  # from this (normal-priority) thread: the compute happens elsewhere
    after = threads()
    # the threads the model's constructor started (threads the decode starts from this caller
    # inherit this thread's priority instead; in the STT the caller is the niced worker's)
    new = {tid: n for tid, (_, n) in built.items() if tid not in old and tid in after}
    busy = [tid for tid in new if after[tid][0] - built[tid][0] >= 5]  # they do the decoding
    assert busy and set(new.values()) == {base + 4}, (new, busy)


def test_registry_specs_and_missing_extra(monkeypatch):
    assert {"embedded", "pocketsphinx", "whisper", "openai", "kyutai"} <= set(registry.schemes("stt"))
    with pytest.raises(ConfigError):
        registry.create("stt", "nosuchstt")
    with pytest.raises(NotAvailableError, match="model.bin"):
        registry.create("stt", "whisper:/nonexistent/model")
    monkeypatch.setitem(sys.modules, "faster_whisper", None)  # simulate the extra not installed
    with pytest.raises(NotAvailableError, match=r"kame-tandem\[stt\]"):
        registry.create("stt", "whisper")


def test_embedded_skips_pocketsphinx_when_far_behind(clips, whisper_handle):
    """A starved worker (lag > max_ps_lag) stops feeding pocketsphinx; word times stay right
    after the gap and the whisper final still has every word."""
    from kame.audio import resample
    from kame.backend.stt.embedded import EmbeddedSTT, HybridRecognizer

    stt = EmbeddedSTT(handle=whisper_handle)
    x = resample(clips[SENT_A], 24000, 16000)
    rec = HybridRecognizer(stt)
    for i in range(0, len(x) - 1279, 1280):
        rec.lag = 5.0 if 1.0 <= i / 16000 < 1.6 else 0.0  # 0.6 s not decoded by pocketsphinx
        rec.accept(x[i:i + 1280])
    partial = rec.partial()
    final = rec.final()
    assert norm(" ".join(w.text for w in final)) == norm(SENT_A)
    assert "dog" in [w.text for w in partial]
    dog_p = next(w for w in partial if w.text == "dog")
    dog_f = next(w for w in final if w.text.startswith("dog"))
    assert abs(dog_p.end - dog_f.end) < 0.3  # the gap is accounted for (else ~0.6 s early)


def _in_process_words(x16k, **options) -> list[str]:
    """Words of a decoder built in this process, fed 80 ms per call (the reference)."""
    from kame.backend.stt.pocketsphinx import _load_decoder, _words

    dec = _load_decoder(**options)
    dec.start_utt()
    pcm = (np.clip(x16k, -1, 1) * 32767).astype(np.int16)
    for i in range(0, len(x16k) - 1279, 1280):
        dec.process_raw(pcm[i:i + 1280].tobytes(), False, False)
    dec.end_utt()
    return [w.text for w in _words(dec)]


def test_pocketsphinx_decodes_in_a_child_process(clips, whisper_handle):
    """pocketsphinx's binding keeps the GIL while it decodes (it stalled the front-end's step):
    its decoders run in a child process, giving the words a decoder in this process gives; the
    embedded STT's skip the fwdflat pass (their final is only a fallback)."""
    import os

    from kame.audio import resample
    from kame.backend.stt.embedded import EmbeddedSTT
    from kame.backend.stt.pocketsphinx import PocketsphinxRecognizer, shared_process

    x = resample(clips[SENT_A], 24000, 16000)
    server = shared_process()
    assert server.proc.is_alive() and server.proc.pid != os.getpid()
    a, b = PocketsphinxRecognizer(server), PocketsphinxRecognizer(server)  # two utterances at once
    for i in range(0, len(x) - 1279, 1280):
        a.accept(x[i:i + 1280])
        b.accept(x[i:i + 1280] * 0.5)
    partial = [w.text for w in a.partial()]
    words = [w.text for w in a.final()]
    assert words == _in_process_words(x) and {"quick", "fox"} <= set(words) and partial
    assert [w.text for w in b.final()] == _in_process_words(x * 0.5)
    stt = EmbeddedSTT(handle=whisper_handle)
    assert stt.ps_server is shared_process(0, fwdflat=False) and stt.ps_server is not server
    rec = PocketsphinxRecognizer(stt.ps_server)
    for i in range(0, len(x) - 1279, 1280):
        rec.accept(x[i:i + 1280])
    assert [w.text for w in rec.final()] == _in_process_words(x, fwdflat=False)


def test_pocketsphinx_child_death_is_an_error_then_restarts(clips, caplog):
    """A dead child: the utterance's next call raises BackendError (no hang), and the next
    utterance starts a new child."""
    import os
    import signal

    from kame.audio import resample
    from kame.backend.stt.pocketsphinx import DecoderProcess, PocketsphinxRecognizer

    x = resample(clips[SENT_B], 24000, 16000)
    server = DecoderProcess()
    try:
        rec = PocketsphinxRecognizer(server)
        rec.accept(x[:1280])
        pid = server.proc.pid
        os.kill(pid, signal.SIGKILL)
        server.proc.join(5)
        with pytest.raises(BackendError, match="died"):
            rec.accept(x[1280:2560])
            rec.partial()
        with pytest.raises(BackendError, match="died"):
            rec.final()
        assert "exit code -9" in caplog.text  # reaped: the real exit code is reported
        rec = PocketsphinxRecognizer(server)  # restarts the child
        assert server.proc.pid != pid and server.restarts == 1
        for i in range(0, len(x) - 1279, 1280):
            rec.accept(x[i:i + 1280])
        assert [w.text for w in rec.final()] == _in_process_words(x)
    finally:
        server.close()


def test_release_children_stops_the_shared_pocketsphinx_child(clips, monkeypatch, caplog):
    """kame.backend.release_children() stops a shared child on purpose: an utterance it held
    says so, and the next utterance starts it again without counting (or logging) a restart."""
    from kame.audio import resample
    from kame.backend import childproc, release_children
    from kame.backend.stt.pocketsphinx import PocketsphinxRecognizer, shared_process

    monkeypatch.setattr(childproc, "_shared_stops", [])  # only this test's child is released
    x = resample(clips[SENT_B], 24000, 16000)
    server = shared_process(1, fwdflat=False)  # settings no other test shares
    try:
        rec = PocketsphinxRecognizer(server)
        rec.accept(x[:1280])
        proc = server.proc
        assert release_children() == 1 and not proc.is_alive() and server.proc is None
        assert release_children() == 0  # nothing left to stop
        with pytest.raises(BackendError, match="was stopped"):
            rec.partial()
        assert shared_process(1, fwdflat=False) is server  # the next agent's load starts it again
        assert server.proc.is_alive() and server.restarts == 0 and "restarting" not in caplog.text
        server.close()  # released again: an utterance starts it too
        rec = PocketsphinxRecognizer(server)
        assert server.proc.is_alive() and server.restarts == 0 and "restarting" not in caplog.text
        for i in range(0, len(x) - 1279, 1280):
            rec.accept(x[i:i + 1280])
        assert [w.text for w in rec.final()] == _in_process_words(x, fwdflat=False)
    finally:
        server.close()


@pytest.mark.skipif(sys.platform != "linux", reason="nice values are a Linux feature")
def test_pocketsphinx_child_runs_at_lower_priority():
    from kame.backend.stt.pocketsphinx import DecoderProcess

    base = _nice()
    server = DecoderProcess(nice=3)
    try:
        stat = open(f"/proc/{server.proc.pid}/stat").read().rsplit(")", 1)[1].split()
        assert int(stat[16]) == min(19, base + 3)
    finally:
        server.close()


def test_a_dropped_recognizer_never_takes_the_lock(clips):
    """The garbage collector may finalize a recognizer in a thread that holds the child's pipe
    lock (it runs wherever memory is allocated): the finalizer only queues the "drop", which
    the next message sends; it must not block (a deadlock of every stream before)."""
    from kame.audio import resample
    from kame.backend.stt.pocketsphinx import DecoderProcess, PocketsphinxRecognizer

    x = resample(clips[SENT_B], 24000, 16000)
    server = DecoderProcess()
    try:
        dropped = PocketsphinxRecognizer(server)
        dropped.accept(x[:1280])
        with server._lock:  # as if collected inside send()/call()
            t = threading.Thread(target=dropped._finalizer)
            t.start()
            t.join(10)
            assert not t.is_alive()
        assert list(server._dropped) == [dropped.utt]
        rec = PocketsphinxRecognizer(server)  # the next message sends the queued drop first
        assert not server._dropped
        for i in range(0, len(x) - 1279, 1280):
            rec.accept(x[i:i + 1280])
        assert [w.text for w in rec.final()] == _in_process_words(x)
    finally:
        server.close()


def test_embedded_final_survives_a_dead_pocketsphinx_child(clips, whisper_handle):
    """pocketsphinx only gives the hybrid its partials: with its child dead, whisper's final
    still comes (before: the final raised and the utterance was lost)."""
    import os
    import signal

    from kame.audio import resample
    from kame.backend.stt.embedded import EmbeddedSTT, HybridRecognizer
    from kame.backend.stt.pocketsphinx import DecoderProcess

    stt = EmbeddedSTT(handle=whisper_handle)
    stt.ps_server = DecoderProcess(fwdflat=False)
    try:
        x = resample(clips[SENT_A], 24000, 16000)
        rec = HybridRecognizer(stt)
        for i in range(0, len(x) - 1279, 1280):
            rec.accept(x[i:i + 1280])
        os.kill(stt.ps_server.proc.pid, signal.SIGKILL)
        stt.ps_server.proc.join(5)
        assert norm(" ".join(w.text for w in rec.final())) == norm(SENT_A)
    finally:
        stt.ps_server.close()
