"""A TTS's speech is repeatable: the same text in the same voice gives the same samples (and word
times) whatever was synthesized before it in the process (espeak-ng carries state from one
utterance to the next; piper's noise came from a generator each voice makes once), when it is
made with a seed; a live TTS (seed=None, the default) keeps the old behaviour and its costs."""

import sys

import numpy as np
import pytest

from kame.errors import ConfigError, NotAvailableError

A = "How many legs does a spider have, and why?"
B = "The largest planet is Jupiter. Do you agree with that?"


def test_espeak_says_a_text_the_same_whatever_was_said_before():
    pytest.importorskip("espeakng_loader")
    from kame.backend.tts.espeak import EspeakTTS

    tts, other = EspeakTTS("en-us", seed=0), EspeakTTS("en-gb-x-rp", seed=0)
    first, words = tts.synth_words(A)
    other.synth(B)
    tts.synth(B)
    again, words_again = tts.synth_words(A)
    assert np.array_equal(first, again) and words == words_again
    assert np.array_equal(tts.synth(A), first)


def test_a_bad_seed_is_a_config_error_naming_it():
    pytest.importorskip("espeakng_loader")
    from kame.backend.tts.espeak import EspeakTTS

    assert EspeakTTS("en-us+f2", seed=3).seed == 3 and EspeakTTS().seed is None
    with pytest.raises(ConfigError, match="espeak TTS: seed must be a whole number >= 0, got 'x'"):
        EspeakTTS(seed="x")
    pytest.importorskip("piper")
    from kame.backend.tts.piper import PiperTTS

    with pytest.raises(ConfigError, match="piper TTS: seed must be a whole number >= 0, got -1"):
        PiperTTS(seed=-1)


def test_piper_says_a_text_the_same_whatever_was_said_before():
    pytest.importorskip("piper")
    pytest.importorskip("onnx")
    from kame.backend.tts.piper import PiperTTS

    tts = PiperTTS(seed=0)  # its noise on (the default scales)
    first = tts.synth("Spiders have eight legs.")
    tts.synth("Jupiter is large.")
    assert np.array_equal(tts.synth("Spiders have eight legs."), first)


def test_a_tts_made_from_a_spec_is_unseeded_and_keeps_its_library():
    """A live TTS (the cascade's, made from its spec) is not seeded: espeak-ng is not reloaded
    per utterance (each reload leaks ~2 kB, without bound in a server); a seeded one is."""
    pytest.importorskip("espeakng_loader")
    from kame import registry
    from kame.backend.tts import espeak

    tts = registry.create("tts", "espeak:en-us")
    assert tts.seed is None
    tts.synth("Hello.")
    lib = espeak._LIB
    tts.synth("Hello again.")
    assert espeak._LIB is lib
    registry.create("tts", "espeak:en-us", seed=0).synth("Hello.")
    assert espeak._LIB is not lib


def test_an_unseeded_piper_voice_needs_no_onnx(monkeypatch):
    """Only a seeded voice patches the graph with onnx; a plain piper TTS (the cascade's) speaks
    without it (was: PiperTTS() raised MissingPackageError and the cascade fell back to espeak)."""
    pytest.importorskip("piper")
    from kame import registry
    from kame.errors import MissingPackageError

    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` now raises ImportError
    tts = registry.create("tts", "piper")
    assert tts.seed is None and tts.synth("Hi.").size
    with pytest.raises(MissingPackageError, match=r"seeded noise \(seed=0\) needs the onnx package"):
        registry.create("tts", "piper", seed=0)


def test_espeak_takes_every_voice_voice_names_lists():
    """voice_names lists voices by their first language; espeak-ng knows some only by their file
    (en-gb is gmw/en, fr-fr roa/fr): EspeakTTS takes those names too (was: "no such voice")."""
    pytest.importorskip("espeakng_loader")
    from kame.backend.tts.espeak import EspeakTTS, check_voice, voice_names

    names = voice_names()
    assert {"en-gb", "fr-fr", "en-us"} <= set(names)
    refused = []
    for name in names:
        try:
            check_voice(name)
        except ConfigError:
            refused.append(name)
    assert refused == []
    assert np.array_equal(EspeakTTS("en-gb+f3", seed=0).synth("Hello."), EspeakTTS("gmw/en+f3", seed=0).synth("Hello."))
    with pytest.raises(ConfigError, match="espeak-ng has no such voice; close: en-gb"):
        EspeakTTS("en-gbb")


def test_a_failed_reload_leaves_no_unloaded_espeak_library(monkeypatch):
    """_fresh_library forgets the old library before unloading it: an exception in between
    (a KeyboardInterrupt) leaves no module global naming unloaded code (the next call crashed)."""
    pytest.importorskip("espeakng_loader")
    import _ctypes

    from kame.backend.tts import espeak

    def interrupted(handle):
        raise KeyboardInterrupt

    espeak.EspeakTTS("en-us").synth("Hello.")
    assert espeak._LIB is not None
    handle = espeak._LIB._handle
    monkeypatch.setattr(_ctypes, "dlclose", interrupted)
    monkeypatch.setattr(_ctypes, "FreeLibrary", interrupted, raising=False)
    with pytest.raises(KeyboardInterrupt), espeak._LOCK:
        espeak._fresh_library(0)
    assert espeak._LIB is None
    monkeypatch.undo()
    # (the unload the interruption skipped, done: else the library stays loaded under the next one,
    # its state carried on, and the later tests' repeatable speech is not: a test suite's pollution)
    (_ctypes.FreeLibrary if sys.platform == "win32" else _ctypes.dlclose)(handle)
    assert espeak.EspeakTTS("en-us", seed=0).synth("Hello.").size  # (loaded again)


def _noise_graph(op: str, x_type, cast_to=None, **attrs):
    """A tiny ONNX model: y = op(x) (x of element type ``x_type``; cast to ``cast_to`` first if
    given, a tensor whose type only shape inference tells)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    nodes, x = [], "x"
    if cast_to is not None:
        nodes, x = [helper.make_node("Cast", ["x"], ["x_cast"], to=cast_to)], "x_cast"
    inputs = [x] if op.endswith("Like") else []
    if not inputs:
        attrs.setdefault("shape", [2])
    nodes.append(helper.make_node(op, inputs, ["y"], name="noise", **attrs))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", x_type, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    return helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])


def test_noise_kame_cannot_seed_is_refused_by_name():
    """A noise node without a dtype takes its input's: one not float32 is refused (use seed=None),
    not left to fail when the session is made; random nodes of another kind are named (they
    stayed unseeded without a word)."""
    pytest.importorskip("onnx")
    from onnx import TensorProto

    from kame.backend.tts.piper import _feed_noise

    assert len(_feed_noise(_noise_graph("RandomNormalLike", TensorProto.FLOAT))) == 1
    assert len(_feed_noise(_noise_graph("RandomNormalLike", TensorProto.FLOAT16, dtype=TensorProto.FLOAT))) == 1
    assert len(_feed_noise(_noise_graph("RandomNormalLike", TensorProto.FLOAT16, cast_to=TensorProto.FLOAT))) == 1
    for model in (_noise_graph("RandomNormalLike", TensorProto.FLOAT16),
                  _noise_graph("RandomNormalLike", TensorProto.FLOAT, cast_to=TensorProto.FLOAT16)):
        with pytest.raises(NotAvailableError, match="noise node noise is not float32; use seed=None"):
            _feed_noise(model)
    for op in ("RandomUniformLike", "RandomNormal", "RandomUniform"):
        with pytest.raises(NotAvailableError, match=f"random nodes kame cannot seed \\({op} noise\\); use seed=None"):
            _feed_noise(_noise_graph(op, TensorProto.FLOAT))
