"""The embedded default STT ("embedded"): pocketsphinx for fast partials + whisper tiny.en for
accurate finals, both offline (see docs/backend.md "## STT" for the numbers behind the choice).

Per utterance:
  - pocketsphinx decodes every 80 ms frame incrementally (word-by-word partials, ~0.2 s);
  - at end of utterance (VAD), whisper decodes the utterance once: that is the final (it is
    started speculatively as soon as the VAD hears a 0.24 s pause, so it is often ready when
    the 0.5 s of silence that confirm the end have passed);
  - optional (``whisper_interval=S``): whisper also re-decodes the growing buffer every S s
    of new audio on its decode thread (at most one decode in flight, see
    whisper.WhisperRecognizer); a partial is then the newest whisper words (minus a possibly
    cut last word) + the pocketsphinx words heard after them. Off by default: on a 2-core CPU
    the extra decodes slow pocketsphinx down (the worker falls behind and partials get late).
Bounded work: while the worker is more than ``max_ps_lag`` s behind (a starved CPU),
pocketsphinx skips audio (partials miss it; the whisper final still gets all of it).
pocketsphinx failing mid-utterance (its child died, or hung): the utterance goes on with whisper
alone (no more partials), its whisper final comes as usual (whisper heard nothing: an empty
final if it had partials, no turn), and then pocketsphinx's BackendError is reported
(``Recognizer.error_after_final``) while the stream goes on: a session reports it as an STT failure
(an ErrorEvent, the "backend" stt "down" Meta, /api/health's "down"; "up" at the next transcript)
and the next utterance starts a new child. (Was: the error ended the stream at once, and the
utterance was lost with whisper's buffer; then, the stream ended after that final, and its
restart lost what the user said next.) A stream nobody supervises ends with that error instead
(kame.backend.stt.streaming).

    stt = EmbeddedSTT()                        # or registry.create("stt", "embedded")
    async for tr in stt.stream(frames): ...
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ...errors import BackendError
from ...registry import spec_kwargs
from ..options import number
from ..types import Word
from .pocketsphinx import REPLY_TIMEOUT_S, PocketsphinxRecognizer, shared_process
from .base import owner_prefix
from .spec import EMBEDDED_EXAMPLE, EMBEDDED_RULES
from .streaming import Recognizer, SegmentedSTT, StreamStopped
from .whisper import WhisperModelHandle, WhisperRecognizer, check_whisper_options

log = logging.getLogger(__name__)


class HybridRecognizer(Recognizer):
    def __init__(self, stt: "EmbeddedSTT") -> None:
        self.ps = PocketsphinxRecognizer(stt.ps_server)
        self.max_ps_lag = stt.max_ps_lag
        self.fed = self.real = 0  # samples given to pocketsphinx / received
        self.skipped = False
        self.gaps = [(0, 0)]  # (pocketsphinx sample, utterance sample) where feeding resumed
        self.wh = WhisperRecognizer(stt.handle, interval=stt.whisper_interval, final_beam=stt.final_beam,
                                    background=True)
        self.ps_error: BackendError | None = None  # pocketsphinx failed in this utterance: whisper alone goes on

    def _ps_failed(self, exc: BackendError) -> None:
        """pocketsphinx failed (not a stopped stream's StreamStopped: re-raised): the rest of the
        utterance is whisper's alone; the error is reported after its final (``final``)."""
        if isinstance(exc, StreamStopped):
            raise exc
        self.ps_error = exc
        log.warning("%spocketsphinx failed mid-utterance (%s): this utterance's final comes from whisper alone, "
                    "then the failure is reported (the next utterance starts a new pocketsphinx child)",
                    owner_prefix(), exc)
        self.ps.close()

    def accept(self, pcm16k: np.ndarray) -> None:
        self.wh.accept(pcm16k)
        n = pcm16k.shape[0]
        if self.ps_error is not None:  # pocketsphinx failed: whisper alone hears the rest
            pass
        elif self.lag <= self.max_ps_lag:
            if self.skipped:  # resuming after a gap: pocketsphinx time fed -> utterance time
                self.gaps.append((self.fed, self.real))
                self.skipped = False
            try:
                self.ps.accept(pcm16k)
            except BackendError as exc:
                self._ps_failed(exc)
            self.fed += n
        else:  # far behind (CPU starved): let the worker catch up; partials miss this audio,
            self.skipped = True  # the whisper final does not
        self.real += n

    def _ps_words(self) -> list[Word]:
        def real(t: float) -> float:
            fed0, real0 = next(g for g in reversed(self.gaps) if g[0] <= t * 16000)
            return (real0 + t * 16000 - fed0) / 16000

        if self.ps_error is not None:
            return []
        try:
            words = self.ps.partial() or []
        except BackendError as exc:
            self._ps_failed(exc)
            return []
        return [Word(w.text, real(w.start), real(w.end)) for w in words]

    def partial(self) -> list[Word] | None:
        changed = self.wh.poll()
        ps = self._ps_words()
        # whisper's words, minus a last word that the buffer end may have cut ...
        kept = [w for w in self.wh.words if w.end <= self.wh.words_len / 16000 - 0.15]
        cut = kept[-1].end if kept else 0.0
        # ... then pocketsphinx's words heard after them
        words = kept + [w for w in ps if (w.start + w.end) / 2 > cut]
        return words if (words or changed) else None

    def pause(self, speech_end: float) -> None:
        self.wh.pause(speech_end)  # speculative whisper final

    def final(self, speech_end: float | None = None) -> list[Word]:
        words = self.wh.final(speech_end)  # whisper's final is the one that matters
        if self.ps_error is None:
            if words:
                self.ps.close()  # no need to wait for pocketsphinx's
            else:  # whisper heard nothing: pocketsphinx's final is the fallback
                try:
                    words = self.ps.final()
                except BackendError as exc:  # (its child died at the end: no words, the failure reported)
                    self._ps_failed(exc)
        self.error_after_final = self.ps_error  # pocketsphinx failed: reported after this final
        return words

    def close(self) -> None:
        """Stopped before the final: pocketsphinx's decoder goes back now, a whisper decode not
        started yet is dropped (a running one finishes on its own)."""
        self.ps.close()
        self.wh.close()


class EmbeddedSTT(SegmentedSTT):
    name = "embedded"
    partial_interval = 0.08  # pocketsphinx: every frame
    # longer than pocketsphinx's own timeout for a hung child: that fires first, and the utterance
    # finishes on whisper (error_after_final) instead of the stream restarting as stalled
    decode_stall_s = REPLY_TIMEOUT_S + 15.0

    def __init__(self, model_path: str | Path | None = None, *, cpu_threads: int | None = None,
                 whisper_interval: float | None = None, final_beam: int = 1, max_ps_lag: float = 1.5,
                 handle: WhisperModelHandle | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        cpu_threads, final_beam = check_whisper_options(self.name, cpu_threads, final_beam)  # before loading
        self.whisper_interval = (None if whisper_interval is None
                                 else number("embedded STT", "whisper_interval", whisper_interval,
                                            **EMBEDDED_RULES["whisper_interval"]))
        self.final_beam = int(final_beam)
        # pocketsphinx skips audio while this far behind
        self.max_ps_lag = number("embedded STT", "max_ps_lag", max_ps_lag, **EMBEDDED_RULES["max_ps_lag"])
        self.handle = handle or WhisperModelHandle(model_path, cpu_threads=cpu_threads, nice=self.nice)
        # pocketsphinx gives the partials; its final is only a fallback for an empty whisper
        # final, so its decoders skip the fwdflat pass (end of utterance ~3 ms instead of ~60-130 ms).
        # Its decoders run in a child process (see pocketsphinx.py: its binding holds the GIL)
        self.ps_server = shared_process(self.nice, fwdflat=False)  # fails now if the model is missing

    @property
    def state(self) -> str:
        """Its pocketsphinx child's state, for the agents' health() (DecoderProcess.state: "down"
        from the child's death until the next utterance restarts it; whisper runs in-process)."""
        return self.ps_server.state

    def new_recognizer(self) -> Recognizer:
        return HybridRecognizer(self)


SPEC_OPTIONS = tuple(EMBEDDED_RULES)  # the constructor options a spec may set after ';' (kame.backend.stt.spec)


def create(arg: str | None = None, **kwargs) -> EmbeddedSTT:
    """Registry factory: ``embedded[:MODEL_DIR][;NAME=VALUE,...]``, NAME in SPEC_OPTIONS (e.g.
    ``embedded;whisper_interval=1.0``: whisper also re-decodes every second for the partials)."""
    model, kwargs = spec_kwargs("stt", "embedded", arg, kwargs, SPEC_OPTIONS, EMBEDDED_EXAMPLE)
    return EmbeddedSTT(model, **kwargs)
