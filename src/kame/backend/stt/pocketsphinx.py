"""PocketSphinx STT: true word-by-word partials every 80 ms, offline, weak accuracy.

Uses the en-us acoustic model, language model and dictionary bundled in the `pocketsphinx`
wheel (16 kHz int16).

pocketsphinx's Python binding holds the GIL while it decodes, which stalls every other thread
of the process (the front-end's step, the event loop) for as long as one call lasts: in one
live session beside the embedded STT, 2-9 % of the front-end's 80 ms deadlines were missed
(none with whisper alone). So the decoders live in a CHILD PROCESS (``DecoderProcess``,
kame.backend.childproc; one per process and settings, shared by all streams), running ``nice`` steps
below normal CPU priority: audio goes down a pipe without waiting for an answer, partials and
finals are one request and reply each (the calling thread waits in ``recv``, without the GIL).
Decoders are slow to build (~0.3-0.5 s), so the child keeps ``max_idle`` (MAX_IDLE_DECODERS)
idle ones for the next utterances, and more (as many as were in use at once) for SPARE_S after
their last use, then frees them (~94 MB each: a burst of utterances must not keep the child big).
A stream stopped by its consumer (its session closed) gives up waiting for the child's lock
(streaming.stream_stop_event): under CPU overload the closed sessions' threads do not queue
behind the live ones.
If the child dies (or does not answer for 30 s), the call raises BackendError (the STT's
stream ends with it) and the next utterance starts a new child (logged). A watcher thread reaps
a dead child at once (no zombie until the next utterance), and ``state`` (the STT's, for the
agents' health) says "down" from its death until the next utterance's child runs. As with every
multiprocessing "spawn" child, a script that creates this STT must do so under
``if __name__ == "__main__":`` (the child re-imports the script).

    if __name__ == "__main__":
        stt = PocketsphinxSTT()                # or registry.create("stt", "pocketsphinx")
        async for tr in stt.stream(frames): ...
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import ctypes
import ctypes.util
import itertools
import logging
import multiprocessing.connection
import re
import threading
import time
import weakref

import numpy as np

from ...errors import BackendError, NotAvailableError, install_hint
from ..childproc import reap_child, shared_child, start_child, stop_child
from ..priority import lower_thread_priority
from ..types import Word
from .streaming import Recognizer, SegmentedSTT, StreamStopped, stream_stop_event

log = logging.getLogger(__name__)
_FILLER = re.compile(r"^(<.*>|\[.*\]|\+\+.*\+\+)$")
FRAME_RATE = 100.0  # pocketsphinx frames per second (10 ms)
POLL_S = 0.1  # how often a caller waiting for a reply checks that the child lives
REPLY_TIMEOUT_S = 30.0  # a child that does not answer for this long is taken for dead
# Idle decoders: the child always keeps MAX_IDLE_DECODERS for the next utterances, and any more
# (as many as were in use at once: several users talking) for SPARE_S after their last use, then
# frees them. A build takes ~0.3 s in the one child every stream waits on, so users who keep
# talking never wait for one, and a burst (an overload's backlog) does not stay in memory.
MAX_IDLE_DECODERS = 2
SPARE_S = 60.0
_now = time.monotonic  # (tests replace it)


def _load_decoder(**options):
    """A decoder with the bundled en-us model; ``options`` are pocketsphinx config settings
    (e.g. fwdflat=False)."""
    try:
        from pocketsphinx import Decoder
    except ImportError as exc:
        raise NotAvailableError("pocketsphinx STT needs: " + install_hint("stt")) from exc
    return Decoder(samprate=16000, loglevel="FATAL", **options)


def _words(dec) -> list[Word] | None:
    """The decoder's current hypothesis as words (None: no hypothesis yet)."""
    if dec.hyp() is None:
        return None
    out = []
    for seg in dec.seg():
        w = re.sub(r"\(\d+\)$", "", seg.word)
        if w and not _FILLER.match(w):
            out.append(Word(w, seg.start_frame / FRAME_RATE, (seg.end_frame + 1) / FRAME_RATE))
    return out


# --- the child process ---
_LIBC = None  # the C library, for _free_memory


def _free_memory() -> None:
    """Give the heap's free memory back to the system (glibc's malloc_trim; elsewhere nothing):
    a freed decoder's ~94 MB would otherwise stay in the child's RSS."""
    global _LIBC
    try:
        if _LIBC is None:  # (resolved once: find_library runs ldconfig)
            _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        _LIBC.malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _free_spares(idle: list, max_idle: int) -> None:
    """Free the idle decoders beyond ``max_idle`` that have not been used for SPARE_S (oldest first)."""
    old = _now() - SPARE_S
    n = 0
    while len(idle) > max_idle and idle[0][1] < old:
        idle.pop(0)
        n += 1
    if n:
        _free_memory()


def _child_main(conn, options: dict, nice: int, max_idle: int = MAX_IDLE_DECODERS) -> None:
    """Serve (op, uid, data) messages until the pipe closes. "open", "accept" and "drop" get no
    reply; "partial" and "final" get ("ok", words) or ("error", message) - also for an error of
    an earlier message of that utterance. Idle decoders: ``max_idle`` kept, more for SPARE_S."""
    lower_thread_priority(nice)
    try:
        idle = [(_load_decoder(**options), _now())]  # (decoder, when it was last used), oldest first
    except NotAvailableError as exc:
        conn.send(("unavailable", str(exc)))
        return
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("loaded", None))
    live: dict[int, object] = {}  # utterance id -> its decoder
    failed: dict[int, str] = {}  # utterance id -> the error of a message that had no reply
    while True:
        try:
            if len(idle) > max_idle and not conn.poll(SPARE_S / 4):  # (spares to free while it is quiet)
                _free_spares(idle, max_idle)
                continue
            op, uid, data = conn.recv()
        except (EOFError, OSError):  # the parent closed the pipe or exited
            return
        try:
            if uid in failed and op in ("partial", "final"):
                raise RuntimeError(failed.pop(uid))
            if op == "open":
                dec = idle.pop()[0] if idle else _load_decoder(**options)  # (the newest: the spares age)
                dec.start_utt()
                live[uid] = dec
            elif op == "accept":
                live[uid].process_raw(data, False, False)
            elif op == "partial":
                conn.send(("ok", _words(live[uid])))
            elif op in ("final", "drop"):
                dec = live.pop(uid, None)
                failed.pop(uid, None)
                if dec is None:
                    if op == "final":
                        raise RuntimeError(f"no utterance {uid}")
                    continue
                dec.end_utt()
                if op == "final":
                    conn.send(("ok", _words(dec) or []))
                idle.append((dec, _now()))
                _free_spares(idle, max_idle)
        except (EOFError, OSError):  # the pipe broke: the parent is gone
            return
        except Exception as exc:  # noqa: BLE001 - reported at the utterance's next reply
            msg = f"{type(exc).__name__}: {exc}"
            if op == "final":
                live.pop(uid, None)  # a decoder in an unknown state is not reused
            if op in ("partial", "final"):
                conn.send(("error", msg))
            else:
                failed.setdefault(uid, msg)


# --- the parent side ---
def _running(proc) -> bool:
    """Whether child ``proc`` still runs: its sentinel is not readable yet (it is once the child
    has exited, whoever reaps it). Never blocks, takes no lock, calls no waitpid (a health probe
    reads it on the event loop, and a reaper racing a waitpid makes it see ECHILD: a dead child
    taken for alive)."""
    try:
        return not multiprocessing.connection.wait([proc.sentinel], 0)
    except (OSError, ValueError):  # (its handle closed: it was stopped)
        return False


class DecoderProcess:
    """A child process with pocketsphinx decoders built with ``options`` (see _load_decoder),
    running ``nice`` steps below normal CPU priority; its methods may be called from any thread.
    Construction starts the child and waits for its first decoder (NotAvailableError if the
    model is missing)."""

    def __init__(self, nice: int = 0, *, max_idle: int = MAX_IDLE_DECODERS, **options) -> None:
        self.nice, self.options, self.max_idle = nice, options, max_idle
        self.proc = self.conn = None
        self.generation = 0  # bumped at every (re)start: utterances of a dead child are refused
        self.restarts = 0  # restarts after the child died (not after close)
        self.released = False  # close() stopped it on purpose; the next agent (ensure_started) or utterance starts it
        self._ids = itertools.count(1)
        self._lock = threading.Lock()  # one message (or request + reply) on the pipe at a time
        # the reaping joins take turns (the watcher's, _died's, close's); whether the child runs is
        # read from its sentinel instead (_running: no waitpid, which a racing reaper makes see ECHILD
        # and take a dead child for alive, and no lock, which a health probe would find held)
        self._reaping = threading.Lock()
        # utterances whose recognizer was dropped before its final: a weakref finalizer (which
        # the garbage collector may run in any thread, even one holding _lock) only queues
        # them here; the next message sends their "drop"
        self._dropped: collections.deque[tuple[int, int]] = collections.deque()
        self._start()
        atexit.register(self.close)

    def ensure_started(self) -> None:
        """Start the child again if close() stopped it (release_children); a no-op otherwise."""
        with self._lock:
            if self.released and self.proc is None:
                self._start()
                self.released = False

    @property
    def state(self) -> str:
        """For the agents' health(): "up" while the child runs, "down" once it has died (until
        the next utterance's restart runs it), "stopped" when close() stopped it on purpose (the
        next agent or utterance starts it). Never waits (a health probe reads it on the event
        loop): read from the child's sentinel (_running), not a lock or a waitpid."""
        proc, released = self.proc, self.released
        if proc is None:
            return "stopped" if released else "down"
        return "up" if _running(proc) else "down"

    def _alive(self) -> bool:
        proc = self.proc
        return proc is not None and _running(proc)

    def _start(self) -> None:
        self.proc, self.conn = start_child(_child_main, (self.options, self.nice, self.max_idle),
                                           name="kame-pocketsphinx", what="the pocketsphinx child process")
        self.generation += 1
        threading.Thread(target=self._watch, args=(self.proc,), name="kame-pocketsphinx-reaper", daemon=True).start()

    def _watch(self, proc) -> None:
        """(The watcher thread of one child) reap it as soon as it exits: a killed child must not
        stay a zombie until the next utterance notices it (its exit code stays readable)."""
        try:
            multiprocessing.connection.wait([proc.sentinel])
            with self._reaping:
                proc.join(1)
        except (OSError, ValueError):  # (closed meanwhile: reaped by whoever closed it)
            pass

    def _died(self, why: str = "died", *, hung: bool = False) -> BackendError:
        with self._reaping:
            code = reap_child(self.proc, self.conn, hung=hung)
        self.proc = self.conn = None
        log.error("the pocketsphinx child process %s (exit code %s); the next utterance restarts it", why, code)
        return BackendError(f"the pocketsphinx child process {why} (exit code {code})")

    @contextlib.contextmanager
    def _locked(self, stop: threading.Event | None):
        """Hold the lock; with ``stop`` (the calling stream's stop event), give up with
        StreamStopped once it is set, whether waiting for the lock or holding it already: a
        stopped stream's thread sends nothing more and leaves the child to the live ones."""
        if stop is None:
            self._lock.acquire()
        else:
            while not self._lock.acquire(timeout=POLL_S):
                if stop.is_set():
                    raise StreamStopped("the pocketsphinx utterance's stream was stopped while it waited for the child")
        try:
            if stop is not None and stop.is_set():
                raise StreamStopped("the pocketsphinx utterance's stream was stopped")
            yield
        finally:
            self._lock.release()

    def open(self, stop: threading.Event | None = None) -> tuple[int, int]:
        """Start an utterance -> its handle (generation, id); (re)starts the child if needed.
        ``stop``: the calling stream's stop event (see _locked), for this method and the others."""
        with self._locked(stop):
            if not self._alive():
                if self.proc is not None:
                    self._died()
                if self.released:  # closed on purpose (release_children): not a failure
                    self.released = False
                else:
                    self.restarts += 1
                    log.warning("restarting the pocketsphinx child process (restart %d)", self.restarts)
                self._start()
            uid = next(self._ids)
            self._send("open", (self.generation, uid))
            return self.generation, uid

    def _send(self, op: str, utt: tuple[int, int], data=None) -> None:  # holding the lock
        if utt[0] != self.generation or self.conn is None:
            how = "was stopped (release_children)" if self.conn is None and self.released else "died"
            raise BackendError(f"the pocketsphinx child process that held this utterance {how}")
        try:
            while self._dropped:
                gen, uid = self._dropped.popleft()
                if gen == self.generation:
                    self.conn.send(("drop", uid, None))
            self.conn.send((op, utt[1], data))
        except (OSError, ValueError) as exc:
            raise self._died() from exc

    def drop(self, utt: tuple[int, int]) -> None:
        """Give back the decoder of an utterance that will get no final (sent with the next
        message; takes no lock, so a finalizer may call it from any thread)."""
        self._dropped.append(utt)

    def send(self, op: str, utt: tuple[int, int], data=None, stop: threading.Event | None = None) -> None:
        """A message that gets no reply ("accept" with int16 bytes)."""
        with self._locked(stop):
            self._send(op, utt, data)

    def call(self, op: str, utt: tuple[int, int], stop: threading.Event | None = None):
        """"partial" or "final": send and wait for the reply (once sent, the reply is waited for
        even if ``stop`` is set: the next caller must not read it as its own)."""
        with self._locked(stop):
            self._send(op, utt)
            waited = 0.0
            try:
                while not self.conn.poll(POLL_S):
                    waited += POLL_S
                    if not self._alive():
                        raise self._died()
                    if waited >= REPLY_TIMEOUT_S:
                        raise self._died(f"did not answer for {REPLY_TIMEOUT_S:.0f} s", hung=True)
                kind, value = self.conn.recv()
            except (EOFError, OSError) as exc:
                raise self._died() from exc
        if kind != "ok":
            raise BackendError(f"pocketsphinx failed: {value}")
        return value

    def close(self) -> bool:
        """Stop the child (it exits when its pipe closes; at interpreter exit, and at
        release_children: the next agent (ensure_started) or utterance starts it again). Returns
        whether one ran. Taken off first, as the embedded LLM's close() does: a stop cut short (a
        Ctrl-C during its wait; its pipe closed first, the child leaves on its own or with this
        process) is not done again by the next close() (was: the exit hook's, waiting again)."""
        with self._lock:
            proc, conn = self.proc, self.conn
            self.proc = self.conn = None
            self.released = True
            with self._reaping:
                stop_child(proc, conn)
        return proc is not None


class PocketsphinxRecognizer(Recognizer):
    def __init__(self, server: DecoderProcess) -> None:
        self.server = server
        self.stop = stream_stop_event()  # its stream's (None outside one): the waits give up when set
        self.utt = server.open(self.stop)
        # dropped (or closed) before its final: the child takes the decoder back (idle or freed)
        self._finalizer = weakref.finalize(self, server.drop, self.utt)

    def accept(self, pcm16k: np.ndarray) -> None:
        self.server.send("accept", self.utt, (np.clip(pcm16k, -1, 1) * 32767).astype(np.int16).tobytes(), self.stop)

    def partial(self) -> list[Word] | None:
        return self.server.call("partial", self.utt, self.stop)

    def final(self, speech_end: float | None = None) -> list[Word]:
        # (StreamStopped: not sent, the finalizer still drops the decoder; after a sent final the
        # child has let it go: a later "drop" of it is a no-op)
        words = self.server.call("final", self.utt, self.stop)
        self._finalizer.detach()
        return words

    def close(self) -> None:
        """End the utterance without its final (no waiting)."""
        self._finalizer()


_shared: dict[tuple, DecoderProcess] = {}
_shared_lock = threading.Lock()


def shared_process(nice: int = 0, **options) -> DecoderProcess:
    """The DecoderProcess for these settings, one per process (the STT objects of a process and
    their streams share it: one child, one utterance message at a time)."""
    key = (nice, tuple(sorted(options.items())))
    with _shared_lock:
        if key not in _shared:
            _shared[key] = DecoderProcess(nice, **options)
            shared_child(_shared[key].close)
        else:
            _shared[key].ensure_started()  # after release_children: now, not in the first utterance
        return _shared[key]


class PocketsphinxSTT(SegmentedSTT):
    name = "pocketsphinx"
    partial_interval = 0.08  # every frame: decoding is incremental and cheap

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.server = shared_process(self.nice)  # fails now (not mid-stream) if the model is missing

    @property
    def state(self) -> str:
        """Its child's state, for the agents' health() (DecoderProcess.state)."""
        return self.server.state

    def new_recognizer(self) -> Recognizer:
        return PocketsphinxRecognizer(self.server)


def create(arg: str | None = None, **kwargs) -> PocketsphinxSTT:
    if arg:
        raise NotAvailableError(f"pocketsphinx takes no argument (got {arg!r}); it uses the bundled en-us model")
    return PocketsphinxSTT(**kwargs)
