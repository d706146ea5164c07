"""espeak-ng TTS (robotic, very fast; several voices), through the library that the
`espeakng-loader` wheel ships (no system package needed).

    tts = EspeakTTS(voice="en-us+m3", rate=170, pitch=50)
    pcm = tts.synth("Hello there.")      # float32, 24 kHz
    pcm, words = tts.synth_words("Hello there.")   # and when each word is said (espeak's events)
    ipa("Hello there.")                  # 'həlˈoʊ ðˈɛɹ': espeak-ng's phonemes, in IPA

The espeak-ng library is a process-wide singleton; calls are serialised by a lock.

Repeatable: espeak-ng seeds its noise from the clock and carries state from one utterance to
the next in static variables (the same text comes out a few samples longer or shorter, its word
times a few ms apart, after other texts), which neither ``espeak_Initialize`` again nor
``espeak_Cancel`` resets. So with a ``seed`` (``EspeakTTS(seed=0)``, a spec's
``espeak:en-us;seed=0``: what ``kame data synth`` and the benches that make speech use) each
utterance is made by a freshly loaded library
(terminated, unloaded and loaded again, and its voice loaded: ~4-9 ms of CPU per utterance, and
~2-3 kB of memory espeak-ng never frees per load, a running total: fine for a data set, not for a
long-lived server) with its noise seeded: the same text in the same voice gives the same samples
whatever was said before. ``seed=None`` (the default: a cascade's TTS): the library as loaded
once, unseeded (``kame codec fit`` seeds it once in a child process of its own); after a seeded
utterance in the same process that is the freshly loaded, seeded library.
"""

from __future__ import annotations

import asyncio
import ctypes
import difflib
import functools
import os
import sys
import threading
from pathlib import Path
from typing import AsyncIterator

import numpy as np

from ...audio import SAMPLE_RATE, resample
from ...errors import ConfigError, MissingPackageError, NotAvailableError, install_hint
from ...registry import spec_kwargs
from ..options import number
from .base import TTS, TimedWord
from .spec import ESPEAK_EXAMPLE, ESPEAK_OPTIONS
from .words import fill_starts, finish, refine, token_spans

_LIB = None
_LIB_RATE = 22050
_LOCK = threading.Lock()
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_ESPEAK_CHARS_UTF8 = 1
_PARAM_RATE, _PARAM_PITCH = 1, 3
_PHONEMES_IPA = 0x02  # espeak_TextToPhonemes' phonememode: IPA as UTF-8, no separators
_EVENT_END_OF_LIST, _EVENT_WORD = 0, 1
_C_SEEDS = 2**31  # espeak_ng_SetRandSeed takes a C long


class _Event(ctypes.Structure):
    """espeak_EVENT (speak_lib.h)."""

    _fields_ = [
        ("type", ctypes.c_int),  # espeak_EVENT_TYPE
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),  # 1-based, in characters (also with espeakCHARS_UTF8)
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # ms into the synthesized audio
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_void_p),  # a union of int, const char* and char[8]: pointer-sized
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))
_buffer: list[np.ndarray] = []
_words: list[tuple[int, int]] = []  # (text_position, audio_position ms) of the WORD events


@_CALLBACK
def _on_audio(wav, n, events):  # called by espeak-ng during espeak_Synth
    if n > 0 and wav:
        _buffer.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
    if events:
        i = 0
        while events[i].type != _EVENT_END_OF_LIST:
            if events[i].type == _EVENT_WORD:
                _words.append((events[i].text_position, events[i].audio_position))
            i += 1
    return 0


def _library():  # under _LOCK once a TTS exists (a fresh library replaces it)
    global _LIB, _LIB_RATE
    if _LIB is None:
        try:
            import espeakng_loader
        except ImportError as exc:
            raise MissingPackageError("espeak TTS needs espeakng-loader: " + install_hint("tts")) from exc
        lib = ctypes.cdll.LoadLibrary(str(espeakng_loader.get_library_path()))
        lib.espeak_Initialize.restype = ctypes.c_int
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 200, str(espeakng_loader.get_data_path()).encode(), 0)
        if rate <= 0:
            raise NotAvailableError(f"espeak-ng failed to initialise (code {rate})")
        lib.espeak_SetSynthCallback(_on_audio)
        _LIB, _LIB_RATE = lib, rate
    return _LIB


def _fresh_library(seed: int):  # under _LOCK
    """espeak-ng with none of the state earlier utterances left in it (module doc): the library
    terminated, unloaded and loaded again, its noise seeded with ``seed``."""
    global _LIB
    if _LIB is not None:
        import _ctypes

        lib, _LIB = _LIB, None  # (first: an exception below must not leave _LIB naming unloaded code)
        lib.espeak_Terminate()
        (_ctypes.FreeLibrary if sys.platform == "win32" else _ctypes.dlclose)(lib._handle)
    lib = _library()
    if hasattr(lib, "espeak_ng_SetRandSeed"):  # (an older espeak-ng: the clock's noise, still no state)
        lib.espeak_ng_SetRandSeed(ctypes.c_long(seed % _C_SEEDS))
    return lib


class _Voice(ctypes.Structure):
    """espeak_VOICE (speak_lib.h)."""

    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_void_p),  # (priority byte, NUL-terminated language)*, then a 0 byte
        ("identifier", ctypes.c_char_p),  # its file under espeak-ng-data/voices or lang: "gmw/en-US"
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


_VOICES: list[tuple[str, str]] = []  # (first language, file) of each voice: _voices


def _voices(lib) -> list[tuple[str, str]]:  # under _LOCK
    """(first language, file under espeak-ng-data/lang) of each voice espeak-ng has, e.g.
    ("en-gb", "gmw/en"), ("en-us", "gmw/en-US"): listed once (the data does not change)."""
    if not _VOICES:
        lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))
        voices = lib.espeak_ListVoices(None)
        rows, i = [], 0
        while voices and voices[i]:
            v = voices[i].contents
            lang = ctypes.string_at(v.languages + 1) if v.languages else b""  # past the priority byte
            ident = (v.identifier or b"").decode("utf-8", "replace")
            rows.append((lang.decode("utf-8", "replace") or ident.rsplit("/", 1)[-1], ident))
            i += 1
        _VOICES.extend(rows)
    return _VOICES


def voice_names() -> list[str]:
    """The voices espeak-ng knows, by their first language ("en-us", "fr-fr", "en-gb-scotland"),
    each of which ``EspeakTTS(voice=...)`` takes (as does "NAME+VARIANT", e.g. "en-us+f2")."""
    with _LOCK:
        names = [name for name, _ in _voices(_library())]
    return sorted({n for n in names if n})


def _loadable(lib, voice: str) -> str | None:  # under _LOCK
    """The name espeak-ng loads ``voice`` by, having loaded it: ``voice`` itself (a voice's name
    or file, "en-us", "gmw/en-US", "en-gb-x-rp"), else for a first language ``voice_names``
    lists that espeak-ng does not take as a name ("en-gb", "fr-fr": their files are gmw/en and
    roa/fr) its voice's file, keeping a "+VARIANT"; None if neither loads."""
    if lib.espeak_SetVoiceByName(voice.encode()) == 0:
        return voice
    base, plus, variant = voice.partition("+")
    files = {lang.lower(): ident for lang, ident in reversed(_voices(lib)) if ident}  # (the first voice of a language)
    name = files.get(base.strip().lower())
    if name is not None and lib.espeak_SetVoiceByName((name + plus + variant).encode()) == 0:
        return name + plus + variant
    return None


def _select(lib, voice: str) -> tuple[str | None, str | None]:  # under _LOCK
    """Make ``voice`` espeak-ng's current voice: (the name it loads by, ``_loadable``, None) if
    done, else (None, why not). A bare variant ("f3", "m3", "Alex", "klatt") is refused:
    espeak-ng accepts it but loads it with no language (an empty phoneme table), and the next
    synthesis crashes the process."""
    variant = (f"{voice!r} is a voice variant, not a voice: give it after a language voice, "
               f"e.g. en-us+{voice.rsplit('/', 1)[-1]}")
    if _is_variant(voice):  # (refused before espeak-ng loads it: it prints "Unknown phoneme table" then)
        return None, variant
    if (name := _loadable(lib, voice)) is None:
        return None, "no such voice"
    lib.espeak_GetCurrentVoice.restype = ctypes.POINTER(_Voice)
    current = lib.espeak_GetCurrentVoice()
    if current and (current.contents.identifier or b"").startswith(b"!v/"):  # espeak-ng-data/voices/!v
        lib.espeak_SetVoiceByName(b"en-us")  # not left on the language-less variant
        return None, variant
    return name, None


def _is_variant(voice: str) -> bool:
    """``voice`` (no "+") names one of espeak-ng's variant files (espeak-ng-data/voices/!v: "f3",
    "Alex", "klatt"), as espeak-ng matches names: without case."""
    name = voice.strip().lower().removeprefix("!v/")
    return "+" not in name and "/" not in name and name in _variant_names()


@functools.lru_cache(maxsize=1)
def _variant_names() -> frozenset[str]:
    """The variant files' names, lower-cased: listed once (every synthesis selects its voice)."""
    import espeakng_loader

    try:
        return frozenset(f.lower() for f in os.listdir(Path(espeakng_loader.get_data_path()) / "voices" / "!v"))
    except OSError:  # (no such folder: the check after loading still refuses a variant)
        return frozenset()


def _set_voice(lib, voice: str) -> None:  # under _LOCK
    if (why := _select(lib, voice)[1]) is not None:
        raise NotAvailableError(f"espeak-ng cannot use voice {voice!r}: {why}")


def check_voice(voice: str) -> str:
    """The name espeak-ng loads ``voice`` by (``_loadable``: "en-gb" -> its file, gmw/en); a
    ConfigError, naming the closest voices espeak-ng has, if it has no voice ``voice`` (so a
    bad voice fails when the TTS is made, where a cascade falls back to cascade.tts_fallback,
    not at every reply's synthesis); also for a bare variant ("f3": say en-us+f3)."""
    with _LOCK:
        name, why = _select(_library(), voice)
    if name is not None:
        return name
    if why != "no such voice":
        raise ConfigError(f"tts spec 'espeak:{voice}': {why}")
    names = voice_names()
    base = voice.split("+", 1)[0].lower()
    by_lower = {n.lower(): n for n in names}  # espeak-ng matches names case-insensitively
    close = [by_lower[n] for n in difflib.get_close_matches(base, list(by_lower), n=3, cutoff=0.5)]
    examples = [n for n in ("en-us", "en-gb", "fr-fr", "de") if n in names]
    hint = f"close: {', '.join(close)}" if close else f"e.g. {', '.join(examples)}"
    raise ConfigError(f"tts spec 'espeak:{voice}': espeak-ng has no such voice; {hint} ({len(names)} voices: "
                      "kame.backend.tts.espeak.voice_names(); a variant as VOICE+VARIANT, e.g. en-us+f2)")


def ipa(text: str, voice: str = "en-us") -> str:
    """espeak-ng's phonemes for ``text`` in IPA, with its stress marks; clauses joined by a space
    (the punctuation is dropped)."""
    buf = ctypes.create_string_buffer(text.encode("utf-8"))
    ptr = ctypes.c_void_p(ctypes.addressof(buf))  # espeak-ng moves it past each clause; NULL at the end
    out = []
    with _LOCK:
        lib = _library()
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        _set_voice(lib, voice)
        while ptr.value:
            clause = lib.espeak_TextToPhonemes(ctypes.byref(ptr), _ESPEAK_CHARS_UTF8, _PHONEMES_IPA)
            if clause:
                out.append(clause.decode("utf-8"))
    return " ".join(c for c in out if c.strip())


class EspeakTTS(TTS):
    name = "espeak"

    def __init__(self, voice: str | None = None, *, rate: int = 165, pitch: int = 50, seed: int | None = None,
                 sample_rate: int = SAMPLE_RATE) -> None:
        self.rate = number("espeak TTS", "rate", rate, **ESPEAK_OPTIONS["rate"])
        self.pitch = number("espeak TTS", "pitch", pitch, **ESPEAK_OPTIONS["pitch"])
        self.seed = None if seed is None else number("espeak TTS", "seed", seed, **ESPEAK_OPTIONS["seed"])
        self.voice = voice or "en-us"
        # a bad voice fails here, not at each synthesis (MissingPackageError first); "en-gb": its
        # file, gmw/en, so no utterance looks the name up again
        self._name = check_voice(self.voice)
        self.sample_rate = sample_rate

    def _run(self, text: str) -> tuple[np.ndarray, list[tuple[int, int]]]:
        """Audio at espeak-ng's rate and its WORD events (text position, ms)."""
        data = text.encode("utf-8") + b"\0"
        with _LOCK:
            lib = _library() if self.seed is None else _fresh_library(self.seed)
            _set_voice(lib, self._name)
            lib.espeak_SetParameter(_PARAM_RATE, int(self.rate), 0)
            lib.espeak_SetParameter(_PARAM_PITCH, int(self.pitch), 0)
            _buffer.clear()
            _words.clear()
            err = lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _ESPEAK_CHARS_UTF8, None, None)
            chunks, words = list(_buffer), list(_words)
            _buffer.clear()
            _words.clear()
        if err != 0:
            raise NotAvailableError(f"espeak-ng synthesis failed (code {err})")
        pcm = np.concatenate(chunks).astype(np.float32) / 32768.0 if chunks else np.zeros(0, np.float32)
        return pcm, words

    def synth(self, text: str) -> np.ndarray:
        return resample(self._run(text)[0], _LIB_RATE, self.sample_rate)

    def synth_words(self, text: str) -> tuple[np.ndarray, list[TimedWord]]:
        """Audio and word timings from espeak-ng's WORD events: each event's character position
        names the token it falls in (a token said as several words, "1,234", keeps its first;
        one espeak merged or skipped shares the time of the token before it); a word ends where
        the next one starts, then `words.refine` moves boundaries to nearby pauses and trims
        the silence off word edges (so pauses fall between words)."""
        spans = token_spans(text)
        if not spans:
            return np.zeros(0, np.float32), []
        raw, events = self._run(text)
        pcm = resample(raw, _LIB_RATE, self.sample_rate)
        duration = len(pcm) / self.sample_rate
        owner = np.full(len(text) + 1, len(spans), np.int64)  # character -> its token (spaces: the next one)
        for k in range(len(spans) - 1, -1, -1):
            owner[spans[k - 1][1] if k else 0 : spans[k][1]] = k
        starts: list[float | None] = [None] * len(spans)
        for pos, ms in events:
            k = int(owner[min(max(pos - 1, 0), len(text))])
            if k < len(spans) and starts[k] is None:
                starts[k] = min(ms / 1000.0, duration)
        filled = fill_starts(starts, [e - s for s, e in spans], duration)
        for i in range(1, len(filled)):  # an out-of-order event must not move a word back
            filled[i] = max(filled[i], filled[i - 1])
        ends = filled[1:] + [duration]
        timed = refine(list(zip(filled, ends)), pcm, self.sample_rate)
        return pcm, finish([text[s:e] for s, e in spans], timed, duration)

    async def synthesize(self, text: str) -> AsyncIterator[np.ndarray]:
        pcm = await asyncio.get_running_loop().run_in_executor(None, self.synth, text)
        if pcm.size:
            yield pcm


def create(arg: str | None = None, **kwargs) -> EspeakTTS:
    """Registry factory: ``espeak[:VOICE][;NAME=VALUE,...]``, NAME one of seed, rate, pitch
    (kame.backend.tts.spec: checked at the config check); unseeded unless given a seed."""
    voice, kwargs = spec_kwargs("tts", "espeak", arg, kwargs, tuple(ESPEAK_OPTIONS), ESPEAK_EXAMPLE)
    return EspeakTTS(voice, **kwargs)
