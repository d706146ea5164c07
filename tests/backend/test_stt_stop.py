"""A stopped STT stream lets go at once (kame.backend.stt.streaming): its worker thread makes no
more recognizer calls, closes the unfinished utterance's recognizer (and those whose final was
started and not emitted yet), never opens a new one; the worker's time marks stay bounded in
continuous speech; finals started without waiting (Recognizer.final_future) come in order. The VAD is the real one on an energy
"model" (speech = a loud frame), the recognizers are fakes; threads sync on events, not on time."""

import asyncio
import threading

import numpy as np
import pytest

from kame.backend import vad as vad_mod
from kame.backend.stt import streaming
from kame.backend.stt.streaming import Recognizer, SegmentedSTT
from kame.backend.stt.streamworker import _Worker
from kame.backend.types import Word

SPEECH = np.full(1920, 0.3, np.float32)
SILENCE = np.zeros(1920, np.float32)


class _EnergyModel:
    """Stands for silero: speech when the chunk is loud."""

    chunk = 512

    def reset(self) -> None:
        pass

    def prob(self, chunk: np.ndarray) -> float:
        return 1.0 if float(np.abs(chunk).mean()) > 0.05 else 0.0


@pytest.fixture(autouse=True)
def energy_vad(monkeypatch):
    monkeypatch.setattr(vad_mod, "SileroModel", _EnergyModel)


class _Rec(Recognizer):
    """Records its calls; ``block`` (a call name) waits for ``release`` the first time."""

    def __init__(self, calls: list, block: str | None = None, entered=None, release=None):
        self.calls, self.block, self.entered, self.release = calls, block, entered, release

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if name == self.block:
            self.block = None
            self.entered.set()
            assert self.release.wait(30)

    def accept(self, pcm16k):
        self._call("accept")

    def partial(self):
        self._call("partial")
        return [Word("x", 0.0, 0.08)]

    def final(self, speech_end=None):
        self._call("final")
        return [Word("x", 0.0, 0.08)]

    def close(self):
        self.calls.append("close")



class _STT(SegmentedSTT):
    name = "stoptest"

    def __init__(self, make, **kw):
        super().__init__(**kw)
        self.make, self.opened = make, 0

    def new_recognizer(self):
        self.opened += 1
        return self.make()


def _start(worker: _Worker, frames) -> threading.Thread:
    for k, pcm in enumerate(frames):
        worker.put(pcm, 100.0 + 0.08 * k)
    th = threading.Thread(target=worker.run, daemon=True)
    th.start()
    return th


def test_stopped_while_opening_an_utterance_the_recognizer_is_closed_unused():
    """The stream is stopped while new_recognizer waits (as pocketsphinx's open waits for the
    shared child under overload): the new recognizer gets no audio, only close()."""
    entered, release = threading.Event(), threading.Event()
    calls: list = []

    def make():
        entered.set()
        assert release.wait(30)
        return _Rec(calls)

    stt = _STT(make)
    posted: list = []
    worker = _Worker(stt, posted.append)
    th = _start(worker, [SILENCE] * 5 + [SPEECH] * 30)
    assert entered.wait(30)
    worker.stop()  # the session closed
    release.set()
    th.join(30)
    assert not th.is_alive()
    assert calls == ["close"]  # no accept (preroll, frame), no partial, no final
    assert stt.opened == 1
    assert posted == [("done",)]


@pytest.mark.parametrize("where", ["accept", "partial"])
def test_stopped_mid_utterance_no_more_calls_and_closed(where):
    entered, release = threading.Event(), threading.Event()
    calls: list = []
    recs: list = []

    def make():
        recs.append(_Rec(calls, block=where, entered=entered, release=release))
        return recs[-1]

    stt = _STT(make, partial_interval=0.08, max_lag=float("inf"))  # (all frames are queued up front)
    worker = _Worker(stt, lambda item: None)
    # speech, a pause that ends it, then speech again (a new utterance if the worker went on)
    th = _start(worker, [SILENCE] * 5 + [SPEECH] * 10 + [SILENCE] * 10 + [SPEECH] * 10)
    assert entered.wait(30)
    n = len(calls)
    worker.stop()
    release.set()
    th.join(30)
    assert not th.is_alive()
    assert calls[n:] == ["close"]  # nothing after the blocked call but close
    assert stt.opened == 1


class Whole(Recognizer):
    """One word spanning all the utterance's audio."""

    def __init__(self):
        self.n = 0

    def accept(self, pcm16k):
        self.n += pcm16k.shape[0]

    def partial(self):
        return None

    def final(self, speech_end=None):
        return [Word("w", 0.0, self.n / 16000)]


def test_continuous_speech_keeps_time_marks_bounded():
    """10 min of speech with no pause (each utterance cut at max_utterance): the worker's
    frame-time lists stay short, and the finals' word times still follow the clock."""
    finals: list = []

    stt = _STT(Whole, max_utterance=2.0, preroll=0.0)
    worker = _Worker(stt, lambda item: finals.append(item) if item[0] == "final" else None)
    n = int(600 / 0.08)
    for k in range(n):
        worker.put(SPEECH, 100.0 + 0.08 * k)
    worker.close()
    worker.run()  # (in this thread: all the frames are queued)
    assert len(finals) > 250
    assert len(worker.frame_idx) <= 40  # not one mark per frame of the 10 min (7500)
    ends = [f[1][-1].end for f in finals]
    assert ends == sorted(ends)
    assert abs(ends[-1] - (100.0 + 0.08 * n)) < 0.1  # the last word ends where the audio does
    starts = [f[1][0].start for f in finals]
    assert all(abs(s - e) < 0.1 for s, e in zip(starts[1:], ends[:-1]))  # back to back


def test_a_long_silence_keeps_time_marks_bounded_and_the_preroll_timed():
    """10 min of silence (one time mark per frame heard) then speech: when the utterance opens the
    worker holds the marks of its pre-roll and of the frame that opened it only, and its words,
    the pre-roll included, follow the clock."""
    finals: list = []
    opened: list = []  # (marks held, the opening frame's time) when the recognizer is created

    class Opening(Whole):  # notes what the worker holds when it opens the utterance
        def __init__(self):
            super().__init__()
            opened.append((len(worker.frame_idx), worker.frame_t[-1]))

    stt = _STT(Opening, preroll=0.32)  # 4 frames
    worker = _Worker(stt, lambda item: finals.append(item) if item[0] == "final" else None)
    frames = [SILENCE] * int(600 / 0.08) + [SPEECH] * 10
    for k, pcm in enumerate(frames):
        worker.put(pcm, 100.0 + 0.08 * k)
    worker.close()
    worker.run()  # (in this thread: all the frames are queued)
    ((marks, t_open),) = opened
    assert marks == 5  # 4 pre-roll frames and the opening one (was: up to 2000 between utterances)
    (final,) = finals
    assert abs(final[1][0].start - (t_open - 0.32)) < 0.002  # the pre-roll's first frame
    assert abs(final[1][-1].end - (100.0 + 0.08 * len(frames))) < 0.01


def test_a_worker_posting_to_a_closed_loop_does_not_crash(caplog):
    """At interpreter exit the loop closes before a stopped stream's worker unwinds: its last
    posts are dropped, not a "STT worker crashed ... Event loop is closed" error."""
    loop = asyncio.new_event_loop()
    q: asyncio.Queue = asyncio.Queue()
    post = streaming._poster(loop, q)
    post(("partial", [], None))
    loop.run_until_complete(asyncio.sleep(0))
    assert q.qsize() == 1
    loop.close()
    post(("done",))  # no RuntimeError
    stt = _STT(lambda: _Rec([]))
    worker = _Worker(stt, post)
    th = _start(worker, [SILENCE] * 3 + [SPEECH] * 5)
    worker.close()
    th.join(30)
    assert not th.is_alive()
    assert "crashed" not in caplog.text


# --- pocketsphinx: the shared child process ---------------------------------------------------
class _SpyLock:
    """The DecoderProcess lock, telling when someone waits for it."""

    def __init__(self, waiting: threading.Event):
        self.real, self.waiting = threading.Lock(), waiting

    def acquire(self, blocking=True, timeout=-1):
        self.waiting.set()
        return self.real.acquire(blocking, timeout)

    def release(self):
        self.real.release()

    __enter__ = acquire

    def __exit__(self, *exc):
        self.release()


def test_a_stopped_stream_gives_up_waiting_for_the_pocketsphinx_child():
    """Another stream holds the child (a long call under overload); this stream's session closes
    while its thread waits for the lock: the thread ends at once, the child is left to the others."""
    pytest.importorskip("pocketsphinx")
    from kame.backend.stt.pocketsphinx import DecoderProcess, PocketsphinxRecognizer

    srv = DecoderProcess()
    try:
        waiting = threading.Event()
        srv._lock = _SpyLock(waiting)
        stt = _STT(lambda: PocketsphinxRecognizer(srv))
        posted: list = []
        worker = _Worker(stt, posted.append)
        srv._lock.real.acquire()  # the other stream's call
        try:
            th = _start(worker, [SILENCE] * 5 + [SPEECH] * 30)
            assert waiting.wait(30)  # the worker waits to open its utterance
            worker.stop()
            th.join(10)
            stuck = th.is_alive()
        finally:
            srv._lock.real.release()
        th.join(30)
        assert not stuck
        assert posted == [("done",)]  # quietly: its consumer is gone
        # the child serves the live streams as before
        rec = PocketsphinxRecognizer(srv)
        rec.accept(np.zeros(1280, np.float32))
        assert rec.final() == []
    finally:
        srv.close()


class _FakeDecoder:
    alive: set = set()

    def __init__(self, **options):
        _FakeDecoder.alive.add(id(self))

    def __del__(self):
        _FakeDecoder.alive.discard(id(self))

    def start_utt(self):
        pass

    def process_raw(self, data, no_search, full_utt):
        pass

    def end_utt(self):
        pass

    def hyp(self):
        return None


class _Conn:
    """The child's end of the pipe: a script of messages; at its end, how many decoders live."""

    def __init__(self, script):
        self.script, self.sent, self.decoders_at_end = list(script), [], None

    def recv(self):
        while self.script and callable(self.script[0]):  # (a step of the test between messages)
            self.script.pop(0)()
        if not self.script:
            self.decoders_at_end = len(_FakeDecoder.alive)
            raise EOFError
        return self.script.pop(0)

    def send(self, msg):
        self.sent.append(msg)

    def poll(self, timeout):
        return True  # (a message, or the end, is always there)


def test_the_child_frees_decoders_beyond_its_idle_pool(monkeypatch):
    """8 utterances at once (8 sessions, or a closed sessions' backlog), then all done: the child
    keeps them while they may be wanted again (SPARE_S), then MAX_IDLE_DECODERS, not 8 (~94 MB
    each) forever."""
    from kame.backend.stt import pocketsphinx as ps

    now = [0.0]
    monkeypatch.setattr(ps, "_load_decoder", _FakeDecoder)
    monkeypatch.setattr(ps, "_now", lambda: now[0])
    _FakeDecoder.alive.clear()
    script = [("open", u, None) for u in range(1, 9)]
    script += [("accept", u, b"\0\0" * 160) for u in range(1, 9)]
    script += [("drop", u, None) for u in range(1, 5)] + [("final", u, None) for u in range(5, 9)]
    script += [("open", 9, None), ("final", 9, None)]  # an idle one is reused, no new one is built
    script += [lambda: at.append(len(_FakeDecoder.alive)), lambda: now.__setitem__(0, ps.SPARE_S + 1)]
    script += [("open", 10, None), ("final", 10, None)]  # a minute on: the spares are freed
    at = []
    conn = _Conn(script)
    ps._child_main(conn, {}, 0)
    assert conn.sent[0] == ("loaded", None)
    assert conn.sent[1:] == [("ok", [])] * 6  # every final answered
    assert at == [8]  # (all used within SPARE_S: kept for the next utterances)
    assert conn.decoders_at_end == ps.MAX_IDLE_DECODERS < 8


def test_the_embedded_recognizer_closes_its_pocketsphinx_utterance():
    """embedded's recognizer, stopped before its final: pocketsphinx's decoder goes back at once,
    a whisper decode still queued is dropped."""
    from concurrent.futures import Future
    from types import SimpleNamespace

    from kame.backend.stt.embedded import HybridRecognizer

    rec = HybridRecognizer.__new__(HybridRecognizer)  # (no models: only close() is under test)
    closed: list = []
    rec.ps = SimpleNamespace(close=lambda: closed.append("pocketsphinx"))
    from kame.backend.stt.whisper import WhisperRecognizer

    rec.wh = WhisperRecognizer.__new__(WhisperRecognizer)  # (its close() drops a queued decode)
    rec.wh.pending = Future()
    rec.close()
    assert closed == ["pocketsphinx"] and rec.wh.pending.cancelled()


def test_finals_started_without_waiting_come_in_order_and_those_in_flight_are_closed_when_stopped():
    """A recognizer whose final is a request (the openai STT's): the worker goes on with the next
    utterances while it is in flight (was: it waited, holding their partials and finals up),
    emits the finals in order whichever is done first, and closes those still in flight when
    the stream is stopped."""
    from concurrent.futures import Future

    later: list = []
    third_asked, two_posted = threading.Event(), threading.Event()
    finals: list = []

    class Later(Whole):
        def __init__(self):
            super().__init__()
            self.future, self.closed = Future(), False
            later.append(self)

        def final_future(self, speech_end=None):
            if len(later) == 3:
                third_asked.set()
            return self.future

        def final(self, speech_end=None):
            assert self.future.done()  # (never waited for in the worker)
            return [Word(self.future.result(), 0.0, self.n / 16000)]

        def close(self):
            self.closed = True

    def post(item):
        if item[0] == "final":
            finals.append(item[1][0].text)
            if len(finals) == 2:
                two_posted.set()

    worker = _Worker(_STT(Later, preroll=0.0), post)
    th = _start(worker, [SILENCE] * 5 + ([SPEECH] * 10 + [SILENCE] * 10) * 3)
    assert third_asked.wait(30)  # all three utterances reached their end, none answered yet
    later[1].future.set_result("two")
    later[0].future.set_result("one")
    assert two_posted.wait(30)
    assert finals == ["one", "two"]
    worker.stop()
    th.join(30)
    assert not th.is_alive()
    assert [r.closed for r in later] == [False, False, True]  # the one still in flight


class _Asked(Whole):
    """A final that is a request (final_future), answered by the test; a partial of one word,
    "uttN", the same each time (a one-word utterance: posted once)."""

    made: list = []

    def __init__(self):
        super().__init__()
        from concurrent.futures import Future

        self.k, self.future = len(_Asked.made), Future()
        _Asked.made.append(self)

    def partial(self):
        return [Word(f"utt{self.k}", 0.0, self.n / 16000)]

    def final_future(self, speech_end=None):
        return self.future

    def final(self, speech_end=None):
        assert self.future.done()  # (final() is never called to wait)
        return [Word(self.future.result(), 0.0, self.n / 16000)]


def test_a_late_final_is_followed_by_the_open_utterances_partial_again():
    """(was: a final that came after the next utterance's partial cleared that partial in every
    consumer, the oracle's prompt among them, and it was never posted again)"""
    _Asked.made = []
    posted: list = []
    next_partial, first_final = threading.Event(), threading.Event()

    def post(item):
        if item[0] in ("partial", "final"):
            posted.append((item[0], item[1][0].text))
            if ("partial", "utt1") in posted:
                next_partial.set()
            if ("final", "utt0") in posted:
                first_final.set()

    worker = _Worker(_STT(_Asked, preroll=0.0, partial_interval=0.16), post)
    th = _start(worker, [SILENCE] * 5 + [SPEECH] * 10 + [SILENCE] * 10 + [SPEECH] * 30)
    assert next_partial.wait(30)  # the second utterance's partial, the first's final not answered yet
    _Asked.made[0].future.set_result("utt0")
    assert first_final.wait(30)  # (emitted while the second utterance is open)
    worker.close()  # (the input ends: the second's final is asked for and answered)
    _Asked.made[1].future.set_result("utt1")
    th.join(30)
    i = posted.index(("final", "utt0"))
    assert ("partial", "utt1") in posted[:i] and posted[i + 1] == ("partial", "utt1"), posted
    assert posted[-1] == ("final", "utt1")


def test_at_the_inputs_end_a_final_in_flight_is_waited_for_before_final_is_called():
    """(was: final() called at once, before its request was answered: a recognizer reading its
    result without waiting failed, "STT worker crashed", and no final came)"""
    _Asked.made = []
    posted: list = []
    worker = _Worker(_STT(_Asked, preroll=0.0), lambda item: posted.append(item))
    th = _start(worker, [SILENCE] * 5 + [SPEECH] * 10 + [SILENCE] * 10)
    worker.close()
    threading.Timer(0.5, lambda: _Asked.made[0].future.set_result("late")).start()
    th.join(30)
    assert [(p[0], p[1][0].text) for p in posted if p[0] == "final"] == [("final", "late")], posted


def test_a_late_final_is_followed_by_the_partial_of_a_later_utterance_whose_final_is_in_flight():
    """(was: posted again only for an utterance still open: one that had ended, its own final in
    flight, lost its partial in every consumer until that final came)"""
    _Asked.made = []
    posted: list = []
    both_asked, first_final = threading.Event(), threading.Event()

    def post(item):
        if item[0] in ("partial", "final"):
            posted.append((item[0], item[1][0].text))
            if ("final", "utt0") in posted:
                first_final.set()

    class Told(_Asked):
        def final_future(self, speech_end=None):
            if self.k == 1:
                both_asked.set()
            return self.future

    worker = _Worker(_STT(Told, preroll=0.0, partial_interval=0.16, max_lag=float("inf")), post)
    th = _start(worker, [SILENCE] * 5 + [SPEECH] * 10 + [SILENCE] * 10 + [SPEECH] * 10 + [SILENCE] * 10)
    assert both_asked.wait(30)  # both utterances ended, neither final answered
    assert ("partial", "utt1") in posted
    _Asked.made[0].future.set_result("utt0")
    assert first_final.wait(30)
    worker.close()
    _Asked.made[1].future.set_result("utt1")
    th.join(30)
    i = posted.index(("final", "utt0"))
    assert posted[i + 1] == ("partial", "utt1") and posted[-1] == ("final", "utt1"), posted
