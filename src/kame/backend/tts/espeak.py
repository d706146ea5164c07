"""espeak-ng TTS (robotic, very fast; several voices), through the library that the
`espeakng-loader` wheel ships (no system package needed).

    tts = EspeakTTS(voice="en-us+m3", rate=170, pitch=50)
    pcm = tts.synth("Hello there.")      # float32, 24 kHz
    ipa("Hello there.")                  # 'həlˈoʊ ðˈɛɹ': espeak-ng's phonemes, in IPA

The espeak-ng library is a process-wide singleton; calls are serialised by a lock.
"""

from __future__ import annotations

import asyncio
import ctypes
import threading
from typing import AsyncIterator

import numpy as np

from ...audio import SAMPLE_RATE, resample
from ...errors import MissingPackageError, NotAvailableError, install_hint
from .base import TTS

_LIB = None
_LIB_RATE = 22050
_LOCK = threading.Lock()
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_ESPEAK_CHARS_UTF8 = 1
_PARAM_RATE, _PARAM_PITCH = 1, 3
_PHONEMES_IPA = 0x02  # espeak_TextToPhonemes' phonememode: IPA as UTF-8, no separators
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
_buffer: list[np.ndarray] = []


@_CALLBACK
def _on_audio(wav, n, _events):  # called by espeak-ng during espeak_Synth
    if n > 0 and wav:
        _buffer.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
    return 0


def _library():
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


def _set_voice(lib, voice: str) -> None:  # under _LOCK
    if lib.espeak_SetVoiceByName(voice.encode()) != 0:
        raise NotAvailableError(f"espeak-ng has no voice {voice!r}")


def ipa(text: str, voice: str = "en-us") -> str:
    """espeak-ng's phonemes for ``text`` in IPA, with its stress marks; clauses joined by a space
    (the punctuation is dropped)."""
    lib = _library()
    lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
    buf = ctypes.create_string_buffer(text.encode("utf-8"))
    ptr = ctypes.c_void_p(ctypes.addressof(buf))  # espeak-ng moves it past each clause; NULL at the end
    out = []
    with _LOCK:
        _set_voice(lib, voice)
        while ptr.value:
            clause = lib.espeak_TextToPhonemes(ctypes.byref(ptr), _ESPEAK_CHARS_UTF8, _PHONEMES_IPA)
            if clause:
                out.append(clause.decode("utf-8"))
    return " ".join(c for c in out if c.strip())


class EspeakTTS(TTS):
    name = "espeak"

    def __init__(self, voice: str | None = None, *, rate: int = 165, pitch: int = 50, sample_rate: int = SAMPLE_RATE) -> None:
        self._lib = _library()
        self.voice = voice or "en-us"
        self.rate, self.pitch = rate, pitch
        self.sample_rate = sample_rate

    def synth(self, text: str) -> np.ndarray:
        data = text.encode("utf-8") + b"\0"
        with _LOCK:
            _set_voice(self._lib, self.voice)
            self._lib.espeak_SetParameter(_PARAM_RATE, int(self.rate), 0)
            self._lib.espeak_SetParameter(_PARAM_PITCH, int(self.pitch), 0)
            _buffer.clear()
            err = self._lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _ESPEAK_CHARS_UTF8, None, None)
            chunks = list(_buffer)
            _buffer.clear()
        if err != 0:
            raise NotAvailableError(f"espeak-ng synthesis failed (code {err})")
        pcm = np.concatenate(chunks).astype(np.float32) / 32768.0 if chunks else np.zeros(0, np.float32)
        return resample(pcm, _LIB_RATE, self.sample_rate)

    async def synthesize(self, text: str) -> AsyncIterator[np.ndarray]:
        pcm = await asyncio.get_running_loop().run_in_executor(None, self.synth, text)
        if pcm.size:
            yield pcm


def create(arg: str | None = None, **kwargs) -> EspeakTTS:
    return EspeakTTS(arg, **kwargs)
