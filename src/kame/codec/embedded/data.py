"""Speech kame synthesizes itself to fit and judge the embedded codec (24 kHz, float32).

Voices: espeak-ng (several voices, pitches, rates) and piper (the bundled joe voice with
varied length_scale / noise_scale). TRAIN_VOICES are used by `kame codec fit`; HELD_OUT_VOICES
(used by `kame bench codec-quality`) contain voices the codec was fitted on and voices it was not.

    clips = synthesize(TRAIN_VOICES, train_sentences(400), seed=0)   # -> list[(voice, text, pcm)]
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import NotAvailableError


@dataclass(frozen=True)
class Voice:
    engine: str  # "espeak" | "piper"
    name: str = ""  # espeak voice
    rate: int = 165  # espeak words per minute
    pitch: int = 50  # espeak base pitch 0..99
    length_scale: float = 1.0  # piper speaking rate (larger = slower)
    noise_scale: float = 0.667  # piper generator noise

    @property
    def label(self) -> str:
        if self.engine == "espeak":
            return f"espeak:{self.name}/r{self.rate}/p{self.pitch}"
        return f"piper/ls{self.length_scale}/ns{self.noise_scale}"


TRAIN_VOICES = [
    Voice("espeak", "en-us+m3", 165, 50),
    Voice("espeak", "en+f2", 175, 60),
    Voice("espeak", "en-us", 150, 35),
    Voice("espeak", "en-029", 185, 50),
    Voice("espeak", "en+f4", 160, 70),
    Voice("espeak", "en-us+m1", 195, 40),
    Voice("espeak", "en-gb-x-rp", 170, 55),
    Voice("espeak", "en-us+klatt", 165, 45),
    Voice("piper", length_scale=0.8, noise_scale=0.5),
    Voice("piper", length_scale=1.0, noise_scale=0.667),
    Voice("piper", length_scale=1.2, noise_scale=0.8),
    Voice("piper", length_scale=0.9, noise_scale=0.333),
    Voice("piper", length_scale=1.3, noise_scale=0.667),
]

# (voice, fitted?) -- the bench reports each group separately
HELD_OUT_VOICES = [
    (Voice("espeak", "en-us+m3", 165, 50), True),
    (Voice("piper", length_scale=1.0, noise_scale=0.667), True),
    (Voice("espeak", "en-gb-scotland+m1", 160, 45), False),
    (Voice("espeak", "en+f3", 170, 65), False),
    (Voice("piper", length_scale=1.1, noise_scale=0.4), False),
]


class Synth:
    """Caches one TTS object per engine setting. Piper samples noise inside its ONNX graph;
    seeding onnxruntime before each voice is loaded makes its output repeatable. espeak-ng
    seeds its noise from the clock and carries state from one utterance to the next (the same
    text comes out a few samples longer or shorter), so in-process espeak output is not
    repeatable; ``speak``/``synthesize`` run espeak in a fresh, seeded child process."""

    def __init__(self, seed: int = 0) -> None:
        self._piper: dict = {}
        self.seed = seed

    def __call__(self, voice: Voice, text: str) -> np.ndarray:
        if voice.engine == "espeak":
            from ...backend.tts.espeak import EspeakTTS

            return EspeakTTS(voice.name, rate=voice.rate, pitch=voice.pitch).synth(text)
        key = (voice.length_scale, voice.noise_scale)
        if key not in self._piper:
            import onnxruntime

            from ...backend.tts.piper import PiperTTS

            onnxruntime.set_seed(self.seed + len(self._piper))
            self._piper[key] = PiperTTS(length_scale=voice.length_scale, noise_scale=voice.noise_scale)
        return self._piper[key].synth(text)


def _espeak_child() -> None:
    """Entry point of the child process: pickled (seed, [(voice, rate, pitch, text)]) on stdin,
    the pickled float32 clips written to the file named by argv[1]."""
    import ctypes

    from ...backend.tts.espeak import EspeakTTS, _library

    seed, items = pickle.load(sys.stdin.buffer)
    lib = _library()
    if hasattr(lib, "espeak_ng_SetRandSeed"):  # else espeak-ng seeds its noise from the clock
        lib.espeak_ng_SetRandSeed(ctypes.c_long(seed))
    clips = [EspeakTTS(n, rate=r, pitch=p).synth(t).astype(np.float32) for n, r, p, t in items]
    with open(sys.argv[1], "wb") as f:
        pickle.dump(clips, f, protocol=pickle.HIGHEST_PROTOCOL)


def _espeak_fresh(items: list[tuple[Voice, str]], seed: int) -> list[np.ndarray]:
    """espeak-ng clips synthesized in a fresh Python process, so they depend only on the
    arguments (see Synth)."""
    if not items:
        return []
    payload = pickle.dumps((seed, [(v.name, v.rate, v.pitch, t) for v, t in items]))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "clips.pkl"
        code = "from kame.codec.embedded.data import _espeak_child; _espeak_child()"
        proc = subprocess.run([sys.executable, "-c", code, str(out)], input=payload, capture_output=True)
        if proc.returncode != 0:
            raise NotAvailableError(f"espeak synthesis in a child process failed: {proc.stderr.decode()[-2000:]}")
        with open(out, "rb") as f:
            return pickle.load(f)


def speak(pairs: list[tuple[Voice, str]], seed: int = 0) -> list[np.ndarray]:
    """float32 24 kHz clips for (voice, text) pairs, repeatable for a seed, also within one
    process: espeak runs in a fresh seeded child process, piper is seeded (see Synth)."""
    spoken = iter(_espeak_fresh([(v, t) for v, t in pairs if v.engine != "piper"], seed))
    synth = Synth(seed)
    return [(synth(v, t) if v.engine == "piper" else next(spoken)).astype(np.float32) for v, t in pairs]


def synthesize(voices: list[Voice], sentences: list[str], piper_share: float = 0.15,
               seed: int = 0) -> list[tuple[Voice, str, np.ndarray]]:
    """Deal sentences over voices, each sentence spoken once: a share ``piper_share`` of them
    round-robin over the piper settings (piper is ~20x slower than espeak), the rest over the
    espeak voices. Repeatable for a seed (see speak)."""
    piper = [v for v in voices if v.engine == "piper"]
    espeak = [v for v in voices if v.engine != "piper"]
    every = max(1, round(1 / piper_share)) if piper and piper_share > 0 else 0
    plan = []
    ip = ie = 0
    for i, text in enumerate(sentences):
        if piper and (not espeak or (every and i % every == 0)):
            v, ip = piper[ip % len(piper)], ip + 1
        else:
            v, ie = espeak[ie % len(espeak)], ie + 1
        plan.append((v, text))
    return [(v, t, pcm) for (v, t), pcm in zip(plan, speak(plan, seed)) if pcm.size]
