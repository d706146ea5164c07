"""OpenAI-compatible transcription endpoint as a streaming STT ("openai:MODEL").

The utterance (segmented by kame's VAD) is POSTed as a 16 kHz wav to
``{base_url}/audio/transcriptions`` (multipart: file, model, language, response_format): the
growing buffer every ``request_interval`` s of new audio for partials (one request in flight at
most), the whole utterance at end of speech for the final. A final is not waited for: the next
utterance's VAD, partials and final go on while it is in flight (a request within its
``timeout`` that takes longer than the pause between two utterances delays only its own
utterance), and the finals come in order (kame.backend.stt.streaming). Works with OpenAI and
with local servers exposing the same route (faster-whisper-server / speaches, vLLM, LocalAI ...).

``response_format``: "verbose_json" (with ``timestamp_granularities[]=word``: word times) or
"json" (text only). OpenAI's gpt-4o-transcribe / gpt-4o-mini-transcribe refuse verbose_json, so a
model named gpt-...transcribe... gets json by default, any other verbose_json. Without word
times ("json", or a server that ignores the granularity) the words are spread evenly over the
response's timed segments if it has usable ones, else over the clip (a final's: up to the VAD's
end of speech). Only the times are approximate then: the re-prediction policy counts words; the
times feed the latency metrics (``stt_partial_latency``, the oracle lag, which come out low by
up to the silence the clip ends with) and the cascade's turn timing. A server that refuses the
format gives a BackendError naming the option. A spec sets options after a ';':
``openai:gpt-4o-transcribe;response_format=json,language=de`` (``SPEC_OPTIONS``).

    stt = OpenAITranscriptionSTT("whisper-1")   # base URL/key: args, or OPENAI_STT_BASE_URL (else
                                                # OPENAI_BASE_URL) / OPENAI_STT_API_KEY (else OPENAI_API_KEY)
    async for tr in stt.stream(frames): ...

Failures: a failed partial request is logged and skipped (the next one retries); a failed
or timed-out final ends ``stream`` with BackendError, or, with ``on_error=callback``, is
reported to the callback while the stream goes on (the utterance is committed with its last
partial, if any). An HTTP 429 with ``Retry-After`` (kame.backend.openai_http.retry_after_seconds,
honoured up to kame.backend.policy.MAX_RETRY_AFTER) stops its requests for that long on the
STT's clock, and the log says so (once: again only when the wait grows by over a second, as
several streams' requests in flight come back 429 one after another): partials are skipped, a
final in that time fails at once, without a request, with a BackendError whose ``retry_after``
is the time left (the restarting kame.runtime.sttloop waits it out). The wait is the adapter's
``rate_gate`` (kame.backend.policy.RetryAfterGate): every stream and session of this STT share it.
HTTP runs on the stream's event loop (aiohttp); the worker thread only waits for it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
import json
import logging
import math
import wave
from concurrent.futures import Future

import aiohttp
import numpy as np

from ...errors import BackendError, ConfigError
from ...registry import spec_kwargs
from ..openai_http import MiB, OpenAIHTTP, content_type, within
from ..options import number
from ..policy import MAX_RETRY_AFTER, honoured
from ..types import Word
from .base import owner_prefix
from .spec import OPENAI_EXAMPLE, OPENAI_FORMATS, OPENAI_OPTIONS, OPENAI_RULES, check_format
from .streaming import BufferedRecognizer, Recognizer, SegmentedSTT

log = logging.getLogger(__name__)

# Cap on a transcription response (read whole, then parsed). verbose_json with word times is
# ~60 bytes a word plus segment records: ~10 kB for a 25 s utterance (max_utterance), ~0.3 MB for
# the 13 min of 16 kHz wav the 25 MB upload limit of OpenAI allows; 8 MiB is 25x that, and an
# endless or runaway body stops there.
MAX_JSON_BODY = 8 * MiB
RESPONSE_FORMATS = OPENAI_FORMATS
# the constructor options a spec may set after ';' (values are strings; the config check and the constructor
# check them: kame.backend.stt.spec)
SPEC_OPTIONS = OPENAI_OPTIONS


def wav_bytes(pcm16k: np.ndarray, rate: int = 16000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(pcm16k, -1, 1) * 32767).astype("<i2").tobytes())
    return buf.getvalue()


def spread(texts: list[str], start: float, end: float) -> list[Word]:
    """Words spread evenly over [start, end]."""
    step = (end - start) / max(1, len(texts))
    return [Word(t, start + i * step, start + (i + 1) * step) for i, t in enumerate(texts)]


def segment_words(segments, texts: list[str]) -> list[Word] | None:
    """The text's words spread evenly over timed segments (verbose_json without word times), or
    None if the segments are unusable: not a list of {text, start, end} with finite times in
    order, or not the same words as the text."""
    try:
        spans = [(str(s["text"]).split(), float(s["start"]), float(s["end"])) for s in segments]
    except (TypeError, KeyError, ValueError, AttributeError):
        return None
    if [t for ws, _, _ in spans for t in ws] != texts or not all(
            math.isfinite(a) and math.isfinite(b) and 0 <= a <= b for _, a, b in spans):
        return None
    return [w for ws, a, b in spans for w in spread(ws, a, b)]


def parse_words(body: dict, duration: float) -> list[Word]:
    """Words from a transcription response (``{"text": ..., "words": [{"word", "start", "end"}]}``);
    without word times, the text's words spread evenly over its timed ``segments`` if usable,
    else over [0, ``duration``]. ValueError (saying what is wrong) for a body that is not a
    transcription: an ``error`` object, no ``text``, a ``text`` that is not a string, malformed
    ``words``."""
    if body.get("error") is not None:
        raise ValueError(f"error in the response: {json.dumps(body['error'])[:300]}")
    text = body.get("text")
    if not isinstance(text, str):
        why = ("no 'text'" if "text" not in body else "'text' is null" if text is None
               else f"'text' is {type(text).__name__}, not a string")
        raise ValueError(f"not a transcription ({why}): {json.dumps(body)[:200]}")
    words = body.get("words")
    if words:
        try:
            out = [Word(str(w["word"]).strip(), float(w["start"]), float(w["end"]))
                   for w in words if str(w.get("word", "")).strip()]
        except (TypeError, KeyError, ValueError, AttributeError):
            raise ValueError(f"malformed 'words' (expected a list of {{word, start, end}}): "
                             f"{json.dumps(words)[:200]}") from None
        if all(math.isfinite(w.start) and math.isfinite(w.end) for w in out):
            return out
        raise ValueError(f"'words' with a non-finite time: {json.dumps(words)[:200]}")
    texts = text.split()
    if body.get("segments"):
        timed = segment_words(body["segments"], texts)
        if timed is not None:
            return timed
    return spread(texts, 0.0, duration)


class OpenAIRecognizer(BufferedRecognizer):
    """Partials: at most one request in flight (non-blocking: the worker keeps running the
    VAD), a new one once it returned and ``request_interval`` s of new audio came.
    Final: the silence-trimmed utterance, sent at once (``final_future``: the worker goes on
    with the next utterance), its result read by ``final`` when it is there."""

    def __init__(self, stt: "OpenAITranscriptionSTT") -> None:
        super().__init__()
        self.stt = stt
        self.pending: Future | None = None
        self.pending_len = 0
        self.request: Future | None = None  # the final's

    def partial(self) -> list[Word] | None:
        words = None
        if self.pending is not None and self.pending.done():
            fut, self.pending = self.pending, None
            try:
                words = self.stt.result(fut)
            except BackendError as exc:
                log.warning("%spartial transcription failed (skipped): %s", owner_prefix(), exc)
        if self.pending is None and self.n - self.pending_len >= self.stt.request_interval * 16000 \
                and self.stt.wait_left() <= 0:  # (rate limited: no request until the server's Retry-After)
            self.pending_len = self.n
            self.pending = self.stt.submit(self.audio())
        return words

    def final_future(self, speech_end: float | None = None) -> Future:
        if self.pending is not None:
            self.pending.cancel()
        n = self.n if speech_end is None else int((speech_end + 0.25) * 16000)
        # (a restarting stream waits out the error's retry_after: the time left)
        self.stt.rate_gate.refuse(self.stt.clock.now(), f"STT {self.stt.base_url}: final transcription not sent")
        self.request = self.stt.submit(self.audio(n), speech_end)
        return self.request

    def final(self, speech_end: float | None = None) -> list[Word]:
        if self.request is None:
            self.final_future(speech_end)
        return self.stt.result(self.request)

    def close(self) -> None:
        for request in (self.pending, self.request):  # (the stream stopped: nobody wants them)
            if request is not None:
                request.cancel()


class OpenAITranscriptionSTT(OpenAIHTTP, SegmentedSTT):
    name = "openai"
    what = "STT"
    service = "STT"  # its own server and key if OPENAI_STT_BASE_URL / OPENAI_STT_API_KEY say so
    partial_interval = 0.08  # poll every frame; requests every ``request_interval`` s of audio

    def __init__(self, model: str | None = None, *, base_url: str | None = None, api_key: str | None = None,
                 language: str | None = "en", response_format: str | None = None, timeout: float = 15.0,
                 request_interval: float = 1.0, connect_timeout: float = 5.0, **kwargs) -> None:
        super().__init__(**kwargs)
        # s of new audio between partial requests
        self.request_interval = number("openai STT", "request_interval", request_interval,
                                       **OPENAI_RULES["request_interval"])
        self.model = model or "whisper-1"
        if response_format is None:  # OpenAI's gpt-*transcribe* models refuse verbose_json (whisper-1 takes it)
            gpt_transcribe = self.model.startswith("gpt-") and "transcribe" in self.model
            response_format = "json" if gpt_transcribe else "verbose_json"
        self.language, self.response_format = language, check_format("openai STT", response_format)
        self.timeout = number("openai STT", "timeout", timeout, **OPENAI_RULES["timeout"])
        self._init_http(base_url, api_key, connect_timeout)  # (after the values: those errors first)
        self._users = 0  # open streams (they share one session, closed after the last)

    def wait_left(self) -> float:
        """Seconds (on the STT's clock) before the server's Retry-After allows a request; 0 if none."""
        return self.rate_gate.left(self.clock.now())

    def _rate_limited(self, exc: BackendError) -> None:
        """After a failed request: a Retry-After it carries (seconds, capped: policy.honoured)
        holds back the next requests (``rate_gate``), and the log says for how long, once (was:
        again for each stream's request in flight that came back 429 a few ms later)."""
        after = getattr(exc, "retry_after", None)
        if self.rate_gate.note(self.clock.now(), after):
            wait = honoured(after)
            capped = f" (it asked {after:g} s; kame waits at most {MAX_RETRY_AFTER:g} s)" if after > wait else ""
            log.warning("%sSTT %s rate-limited kame (HTTP 429): no transcription request for %.1f s, "
                        "as its Retry-After says%s", owner_prefix(), self.base_url, wait, capped)

    def new_recognizer(self) -> Recognizer:
        return OpenAIRecognizer(self)

    async def _open(self) -> None:
        self._users += 1

    async def _close(self) -> None:
        self._users -= 1
        if self._users == 0:
            await self.aclose()

    def submit(self, pcm16k: np.ndarray, speech_end: float | None = None) -> Future:
        """From the worker thread: start a request on the event loop."""
        return asyncio.run_coroutine_threadsafe(self._post(pcm16k, speech_end), self._loop)

    def result(self, fut: Future) -> list[Word]:
        """From the worker thread: wait for a request (BackendError on any failure)."""
        try:
            return fut.result(self.timeout + 1.0)
        except BackendError as exc:
            self._rate_limited(exc)
            raise
        except (TimeoutError, concurrent.futures.TimeoutError) as exc:  # (distinct types before Python 3.11)
            fut.cancel()
            raise BackendError(f"STT {self.base_url}: transcription timed out after {self.timeout:.1f} s") from exc
        except Exception as exc:
            raise BackendError(f"STT {self.base_url}: transcription failed: {type(exc).__name__}: {exc}") from exc

    def _refused_format(self, exc: BackendError) -> BackendError:
        """An HTTP 400/422 that names the response format: the same error saying which option to change."""
        other = next(f for f in RESPONSE_FORMATS if f != self.response_format)
        asked = "verbose_json with word timestamps" if self.response_format == "verbose_json" else "json"
        return BackendError(
            f"{exc} (the server refuses response_format={asked}: set the openai STT's response_format "
            f"option to {other}, e.g. backend.stt = \"openai:{self.model};response_format={other}\", or "
            f"OpenAITranscriptionSTT(response_format=\"{other}\"))")

    async def _post(self, pcm16k: np.ndarray, speech_end: float | None = None) -> list[Word]:
        """Transcribe a clip; without word times its words span [0, speech_end or the clip's end]."""
        form = aiohttp.FormData()
        form.add_field("file", wav_bytes(pcm16k), filename="utterance.wav", content_type="audio/wav")
        form.add_field("model", self.model)
        if self.language:
            form.add_field("language", self.language)
        form.add_field("response_format", self.response_format)
        if self.response_format == "verbose_json":
            form.add_field("timestamp_granularities[]", "word")
        url = f"{self.base_url}/audio/transcriptions"
        deadline = asyncio.get_running_loop().time() + self.timeout
        resp = await self._http_post(url, self.timeout, data=form)
        ok = False
        try:
            if resp.status != 200:
                exc = await self._http_error(url, resp)
                if resp.status in (400, 422) and any(
                        k in str(exc).lower() for k in ("response_format", "verbose_json", "granularit")):
                    exc = self._refused_format(exc)
                raise exc
            reading = self._read_body(url, resp, MAX_JSON_BODY, "JSON transcription body", resp.content.readany)
            raw = await within(reading, max(0.0, deadline - asyncio.get_running_loop().time()))
            ok = True
        except asyncio.TimeoutError as exc:
            raise BackendError(f"STT {url}: timed out after {self.timeout:.1f} s") from exc
        except aiohttp.ClientError as exc:
            raise BackendError(f"STT {url}: failed: {type(exc).__name__}: {exc}") from exc
        finally:
            if ok:
                resp.release()
            else:  # an error, an over-long body or cancellation: drop the connection so the server stops
                resp.close()
        try:
            body = json.loads(raw)
        except ValueError as exc:  # (UnicodeDecodeError too)
            text = raw[:200].decode("utf-8", errors="replace")
            raise BackendError(f"STT {url}: invalid JSON ({content_type(resp) or 'no Content-Type'}): "
                               f"{exc}: {text!r}") from exc
        if not isinstance(body, dict):
            raise BackendError(f"STT {url}: returned {type(body).__name__}, expected a JSON object")
        duration = pcm16k.shape[0] / 16000
        try:
            return parse_words(body, duration if speech_end is None else min(duration, max(0.0, speech_end)))
        except ValueError as exc:
            raise BackendError(f"STT {url}: {exc}") from exc


def create(arg: str | None = None, **kwargs) -> OpenAITranscriptionSTT:
    """Registry factory: ``openai:MODEL[;NAME=VALUE,...]`` (NAME in SPEC_OPTIONS; kwargs: the
    constructor's, including those)."""
    model, kwargs = spec_kwargs("stt", "openai", arg, kwargs, SPEC_OPTIONS, OPENAI_EXAMPLE)
    if ";" in (arg or "") and not model:
        raise ConfigError(f"stt spec 'openai:{arg}' names no MODEL before ';': "
                          f"give openai:MODEL;{arg.partition(';')[2]}")
    return OpenAITranscriptionSTT(model, **kwargs)
