"""The one model worker thread: every 80 ms frame, ONE batched step for ALL live sessions.

    worker = StepWorker(frame_models, rows_per_model)     # owns the models; nothing else touches them
    result = await worker.submit(StepJob(rows=[RowInput(row=0, pcm=..., reset=True, oracle=[...])]))
    result.rows[0].pcm, result.rows[0].text_token, result.rows[0].oracle_token

A ``FrameModel`` is "codec encode -> front-end LM step (with the oracle feed) -> codec decode"
for a batch of rows (kame.runtime.frontend.CodecFrameModel wraps the real ones; tests use
fakes). The worker maps session rows onto models: batched mode has one model with
``max_sessions`` rows (one step per frame for everyone); unbatched mode (benchmarks) has one
single-row model per session, stepped one after the other.

Thread safety: the asyncio side never touches a model. Everything a step needs (user audio,
row resets, oracle events from the back-end) travels inside the StepJob handed to the worker's
single thread; results come back in the StepResult. Rows of absent sessions are stepped on
silence inside the batch (their outputs are discarded) and are reset when a session takes
them, so a joining session always starts from a fresh state.

User voice activity (for the first-response latency) is computed here too, per row, since VAD
inference is model compute as well.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence

import numpy as np

from ..audio import peak_problem
from ..backend.types import FRAME_SIZE, OracleAppend, OracleEvent, OracleReset
from ..errors import KameError
from .base import SEE_LOG

log = logging.getLogger(__name__)


class FrameModel(Protocol):
    """Codec + front-end stepping a fixed batch of rows, one 80 ms frame at a time."""

    batch_size: int

    def reset(self, rows: Sequence[int]) -> None:
        """Fresh state (LM, codec, oracle feed) for ``rows``."""

    def oracle_reset(self, row: int) -> None:
        """A new prediction: the start token is fed at the next step, then appended tokens."""

    def oracle_append(self, row: int, token_ids: Sequence[int]) -> None:
        """More tokens of the current prediction (fed one per frame)."""

    def step(self, pcm: np.ndarray, active: np.ndarray) -> "FrameOut":
        """pcm [B, 1920] float32 user audio, active [B] bool -> FrameOut for the frame."""


@dataclass
class FrameOut:
    pcm: np.ndarray  # [B, 1920] float32 agent audio
    text: np.ndarray  # [B] int64 inner-monologue text token (-1 = none yet)
    oracle: np.ndarray  # [B] int64 oracle token fed at this step (-1 = none/pad)
    step: np.ndarray | None = None  # [B] int64 each row's step index since its reset (None: not told)
    # row -> (kind, message): a fault of that row alone (its frame is kept; a front-end's NaN logits), told its
    # session once (StepWorker); None: none
    faults: dict[int, tuple[str, str]] | None = None
    # [B, 2] int64 each row's oracle tokens fed (start ids not counted) and late (came after their frame: never
    # fed), the feed's own counts since the row's session joined it (OracleFeed.clear: per session, not per
    # oracle reset), this step's included (None: not counted)
    oracle_counts: np.ndarray | None = None


@dataclass
class RowInput:
    row: int
    pcm: np.ndarray  # [1920] float32 user audio of this frame
    t: float  # clock time of the frame (start)
    reset: bool = False  # the session just joined: reset its row first
    oracle: list[OracleEvent] = field(default_factory=list)  # to apply before the step, in order


@dataclass
class StepJob:
    rows: list[RowInput]
    release: list[int] = field(default_factory=list)  # rows of closed sessions (reset, then idle)


@dataclass
class RowOutput:
    pcm: np.ndarray  # [1920]
    text_token: int
    oracle_token: int
    step: int | None = None  # the row's step index since its session joined (FrameOut.step; None: not told)
    oracle_counts: tuple[int, int] | None = None  # (oracle tokens fed, late) so far (FrameOut.oracle_counts)
    vad: list = field(default_factory=list)  # user VAD events (kame.backend.vad.VADEvent-like)
    last_voice: float | None = None  # end of the latest chunk the user's VAD heard as speech
    problems: list[tuple[str, str | None]] = field(default_factory=list)  # this row's faults: (message, brief)


@dataclass
class StepResult:
    rows: dict[int, RowOutput]
    compute_s: float  # worker compute time of the whole frame (perf_counter; a cost, not a timestamp)
    ended: float | None = None  # the agent's clock when the worker had finished it (None: no clock given)


class EnergyVAD:
    """A tiny energy voice-activity detector with the StreamingVAD.push interface
    (used when runtime.vad = "energy" or no VAD model is installed)."""

    def __init__(self, threshold_db: float = -40.0, min_silence: float = 0.5, frame_s: float = 0.02) -> None:
        self.threshold = 10 ** (threshold_db / 20)
        self.min_silence, self.frame_s = min_silence, frame_s
        self.reset()

    def reset(self) -> None:
        self.in_speech, self.silence, self.last_end = False, 0.0, None

    @property
    def last_voice(self) -> float | None:  # end of the latest loud chunk (as StreamingVAD.last_voice)
        return self.last_end

    def push(self, pcm: np.ndarray, t: float) -> list:
        from ..backend.vad import VADEvent

        events = []
        n = int(self.frame_s * 24000)
        for i in range(0, pcm.shape[0] - n + 1, n):
            t0, t1 = t + i / 24000, t + (i + n) / 24000
            rms = float(np.sqrt(np.mean(pcm[i:i + n] ** 2)))
            if rms >= self.threshold:
                if not self.in_speech:
                    events.append(VADEvent("start", t0, t1))
                self.in_speech, self.silence, self.last_end = True, 0.0, t1
            elif self.in_speech:
                self.silence += t1 - t0
                if self.silence >= self.min_silence:
                    self.in_speech = False
                    events.append(VADEvent("end", self.last_end, t1))
        return events


def make_vad_factory(kind: str, *, threshold: float | None = None,
                     min_silence: float | None = None) -> Callable[[], object] | None:
    """runtime.vad -> a factory of per-row VADs ("auto": silero if installed, else energy).
    ``threshold``: the speech probability that starts speech (silero/webrtc; the energy VAD has
    its own dB threshold); ``min_silence``: the seconds of silence that end a speech region
    (None: the VADs' defaults, 0.5 and 0.5 s)."""
    from ..backend.vad import vad_options, vad_used_as

    opts = vad_options(threshold, min_silence)
    energy = {k: v for k, v in opts.items() if k == "min_silence"}
    if kind == "energy":
        return lambda: EnergyVAD(**energy)
    others = [k for k in ("auto (silero if installed, else energy)", "silero", "webrtc") if k != kind]
    try:
        from ..backend.vad import StreamingVAD

        backend = "silero" if kind in ("auto", "silero") else "webrtc"
        with vad_used_as(tail=f"; or set runtime.vad={', '.join(others)} or energy"):  # (its other choices)
            StreamingVAD(backend=backend, **opts)  # fail now (not inside the worker) if unavailable
        return lambda: StreamingVAD(backend=backend, **opts)
    except Exception:  # noqa: BLE001 - optional dependency missing
        if kind != "auto":
            raise
        return lambda: EnergyVAD(**energy)


class ThreadClosedError(KameError, RuntimeError):
    """A call submitted to a StepThread that was closed (its agent was stopped)."""


class StepThread:
    """The worker's one thread, running the calls submitted to it in order. A daemon thread: a call
    that never returns (a plugin codec stuck in its own code) cannot hold the process's exit, as a
    ThreadPoolExecutor's thread does (Python joins those at exit)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._calls: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        self.ended: concurrent.futures.Future = concurrent.futures.Future()  # done when the thread has ended
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable, *args) -> concurrent.futures.Future:
        if self._closed:
            # (a KameError: the server answers it as such, not as a 500; this class serves the
            # tandem's step worker and the cascade's VAD thread, hence its name in the message)
            raise ThreadClosedError(f"the {self.name} thread is shut down (the agent was stopped): start the "
                                    f"agent again")
        f: concurrent.futures.Future = concurrent.futures.Future()
        self._calls.put((f, fn, args))
        return f

    def close(self) -> None:
        """No more calls: those not started are cancelled, the thread ends after the running one."""
        self._closed = True
        while True:
            try:
                item = self._calls.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                item[0].cancel()
        self._calls.put(None)

    async def aclose(self, grace_s: float) -> bool:
        """close(), then wait at most ``grace_s`` for the running call to end, without blocking the
        event loop; False if it is still running (then the thread is left: a daemon)."""
        self.close()
        loop, ended = asyncio.get_running_loop(), asyncio.Event()

        def tell(_) -> None:  # (from the thread, maybe after this loop has ended)
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(ended.set)

        self.ended.add_done_callback(tell)  # (not wrap_future: cancelling its wrapper cancels it)
        try:
            await asyncio.wait_for(ended.wait(), grace_s)
        except asyncio.TimeoutError:
            return False
        return True

    def _loop(self) -> None:
        try:
            while (item := self._calls.get()) is not None:
                f, fn, args = item
                if not f.set_running_or_notify_cancel():
                    continue
                try:
                    f.set_result(fn(*args))
                except BaseException as exc:  # noqa: BLE001 - handed to the caller
                    f.set_exception(exc)
        finally:
            self.ended.set_result(None)


def _describe(fm) -> str:
    """The call a frame model's step is in, for a stuck step's warning (CodecFrameModel.doing names
    its codec's call or its front-end's step)."""
    doing = getattr(fm, "doing", None)
    return doing if isinstance(doing, str) and doing else f"{type(fm).__name__}.step()"


class StepWorker:
    """Owns the frame models and steps them on ONE thread (StepThread).

    One row's faults stay that row's (``RowOutput.problems``, said by its session as an
    ErrorEvent when they begin): its audio unusable (not a finite [1920] frame within
    audio.MAX_PEAK: the codecs' own input check would fail the whole batch's step) is replaced by
    silence, its oracle events that the model refuses are dropped, its VAD failing gives it no
    VAD events, a fault its frame model reports for its row alone (FrameOut.faults: NaN logits)
    is said once per session, the frame kept. A failure of the batched step itself fails the
    frame for every row: it cannot be told whose it was without stepping the stateful codec and
    front-end again."""

    STOP_GRACE_S = 5.0  # aclose(): how long a running call may take to end, then the thread is left

    def __init__(self, models: Sequence[FrameModel], *, vad_factory: Callable[[], object] | None = None,
                 torch_threads: int = 0, clock=None) -> None:
        self.models = list(models)
        self.clock = clock  # stamps StepResult.ended: a late frame is then told from a late event loop
        # session row -> (model index, row inside the model)
        self.row_map: list[tuple[int, int]] = [(m, r) for m, fm in enumerate(self.models) for r in range(fm.batch_size)]
        self.vad_factory = vad_factory
        self.vads: dict[int, object] = {}
        self._torch_threads = torch_threads
        self._thread = StepThread("kame-step")
        # what the thread runs, (what, model or row) put into words only by in_call (not every frame)
        self.doing: tuple = ("nothing", None)
        self._stepping = None  # the frame model being stepped (it may say more: _describe)
        self._failing: dict[int, set[str]] = {}  # row -> kinds of fault it has been told of and still has
        self.steps = 0

    @property
    def num_rows(self) -> int:
        return len(self.row_map)

    def _init_thread(self) -> None:
        if self._torch_threads:
            import torch

            torch.set_num_threads(self._torch_threads)

    async def call(self, fn: Callable, *args):
        """Run ``fn(*args)`` on the worker thread (e.g. model loading / warm-up)."""
        return await asyncio.wrap_future(self._thread.submit(fn, *args))

    async def submit(self, job: StepJob) -> StepResult:
        return await asyncio.wrap_future(self._thread.submit(self.run, job))

    def run(self, job: StepJob) -> StepResult:
        """Apply resets and oracle events, step every model that has a live row (worker thread)."""
        if self.steps == 0:
            self._init_thread()
        t0 = time.perf_counter()
        resets: dict[int, list[int]] = {}
        for row in job.release + [r.row for r in job.rows if r.reset]:
            m, r = self.row_map[row]
            resets.setdefault(m, []).append(r)
            self.vads.pop(row, None)
            self._failing.pop(row, None)  # (a new session: told again)
        for m, rows in resets.items():
            self.doing = ("reset", m)
            self.models[m].reset(sorted(set(rows)))
        problems: dict[int, list[tuple[str, str | None]]] = {ri.row: [] for ri in job.rows}
        new: dict[int, set[str]] = {}  # row -> kinds of fault said in this frame (_fault)
        heard: dict[int, np.ndarray] = {}  # row -> the audio its model and VAD get
        for ri in job.rows:
            m, r = self.row_map[ri.row]
            self.doing = ("oracle_append", m)
            try:
                for ev in ri.oracle:
                    if isinstance(ev, OracleReset):
                        self.models[m].oracle_reset(r)
                    elif isinstance(ev, OracleAppend):
                        self.models[m].oracle_append(r, ev.token_ids)
                self._ok(ri.row, "oracle")
            except Exception as exc:  # noqa: BLE001 - this row's prediction, not the batch's step
                what = "the front-end refused this session's oracle prediction (its tokens are dropped)"
                self._fault(problems, new, ri.row, "oracle", f"{what}: {type(exc).__name__}: {exc}",
                            f"{what}; {SEE_LOG}")
            bad = _audio_problem(ri.pcm)
            if bad is None:
                heard[ri.row] = ri.pcm
                self._ok(ri.row, "audio")
            else:
                heard[ri.row] = np.zeros(FRAME_SIZE, np.float32)
                self._fault(problems, new, ri.row, "audio", f"unusable user audio replaced by silence: {bad}")
        by_model: dict[int, list[RowInput]] = {}
        for ri in job.rows:
            by_model.setdefault(self.row_map[ri.row][0], []).append(ri)
        out: dict[int, RowOutput] = {}
        for m, rows in by_model.items():
            fm = self.models[m]
            pcm = np.zeros((fm.batch_size, FRAME_SIZE), np.float32)
            active = np.zeros(fm.batch_size, bool)
            for ri in rows:
                r = self.row_map[ri.row][1]
                pcm[r], active[r] = heard[ri.row], True
            self._stepping = fm
            try:
                fo = fm.step(pcm, active)
            except BaseException:
                for row, kinds in new.items():  # (the frame fails for all: those faults were not said)
                    self._failing[row] -= kinds
                raise
            finally:
                self._stepping = None
            for ri in rows:
                r = self.row_map[ri.row][1]
                if fo.faults and r in fo.faults:  # (once per session: no _ok, so NaN logits on and off are told once)
                    self._fault(problems, new, ri.row, *fo.faults[r])
                # (a copy: a view would keep the whole batch's [B, 1920] array alive as long as a session keeps
                # its frame, e.g. file mode's recording: B times the memory)
                out[ri.row] = RowOutput(pcm=np.array(fo.pcm[r], np.float32), text_token=int(fo.text[r]),
                                        oracle_token=int(fo.oracle[r]),
                                        step=None if fo.step is None else int(fo.step[r]), problems=problems[ri.row],
                                        oracle_counts=None if fo.oracle_counts is None else
                                        (int(fo.oracle_counts[r, 0]), int(fo.oracle_counts[r, 1])))
        if self.vad_factory is not None:
            for ri in job.rows:
                self.doing = ("vad", ri.row)
                try:
                    vad = self.vads.get(ri.row)
                    if vad is None:
                        vad = self.vads[ri.row] = self.vad_factory()
                    out[ri.row].vad = vad.push(heard[ri.row], ri.t)
                    out[ri.row].last_voice = vad.last_voice
                    self._ok(ri.row, "vad")
                except Exception as exc:  # noqa: BLE001 - this row's VAD: the frame stepped for all is kept
                    self.vads.pop(ri.row, None)  # (a new one next frame)
                    what = "voice activity detection failed on this frame (a new VAD takes over)"
                    self._fault(problems, new, ri.row, "vad", f"{what}: {type(exc).__name__}: {exc}",
                                f"{what}; {SEE_LOG}")
        self.doing = ("nothing", None)
        self.steps += 1
        return StepResult(rows=out, compute_s=time.perf_counter() - t0,
                          ended=self.clock.now() if self.clock is not None else None)

    def _fault(self, problems: dict, new: dict, row: int, kind: str, message: str, brief: str | None = None) -> None:
        """A row's fault of ``kind``: said (its RowOutput.problems, the log) when it begins, not
        again each frame while it lasts."""
        told = self._failing.setdefault(row, set())
        if kind not in told:
            told.add(kind)
            new.setdefault(row, set()).add(kind)
            problems[row].append((message, brief))
            log.warning("session row %d: %s", row, message)

    def _ok(self, row: int, kind: str) -> None:
        told = self._failing.get(row)
        if told:
            told.discard(kind)

    def shutdown(self) -> None:
        """Stop the thread (the calls not started are cancelled) and wait for it to end."""
        self._thread.close()
        self._thread.ended.result()

    async def aclose(self) -> None:
        """shutdown() for the event loop: waits at most STOP_GRACE_S for a running call, then
        leaves the thread (a daemon: the process can exit) with a warning naming the call."""
        if not await self._thread.aclose(self.STOP_GRACE_S):
            log.warning("the step thread did not end within %.0f s of the agent's stop: it is still in %s, a call "
                        "that does not return; left behind (a daemon thread: it does not hold the process's exit). "
                        "That component hangs: fix it or use another", self.STOP_GRACE_S, self.in_call)

    @property
    def in_call(self) -> str:
        """The call the thread is in (or was last in)."""
        if self._stepping is not None:
            return _describe(self._stepping)
        what, which = self.doing
        if what == "vad":
            return f"the VAD of row {which}"
        return f"{type(self.models[which]).__name__}.{what}()" if which is not None else what


def _audio_problem(pcm) -> str | None:
    """Why a row's frame of user audio cannot go into the batch (a [1920] float frame within
    audio.MAX_PEAK), else None."""
    if not isinstance(pcm, np.ndarray) or pcm.shape != (FRAME_SIZE,) or not np.issubdtype(pcm.dtype, np.floating):
        what = f"shape {pcm.shape} dtype {pcm.dtype}" if isinstance(pcm, np.ndarray) else type(pcm).__name__
        return f"expected a float frame of {FRAME_SIZE} samples, got {what}"
    return peak_problem(pcm)
