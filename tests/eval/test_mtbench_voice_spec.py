"""kame eval mtbench checks its --voice spec with its other arguments: before the judge loads and
before -o is made, the error naming --voice (was: after the judge had loaded, about 7 s with the
embedded one, naming no option, OUT/ left behind)."""

from __future__ import annotations

import importlib.util

from . import test_mtbench
from .test_mtbench import QUESTIONS, refused, write

judges = test_mtbench.judges  # (the scripted judges: a fixture, used by name)


def _tts(monkeypatch, scheme, factory):
    """``scheme`` a tts for this test alone (as test_synth's: later tests list the known schemes)."""
    from kame import registry

    registry._load_table()  # (kame's own first, as register() does)
    monkeypatch.setitem(registry._ENTRIES.setdefault("tts", {}), scheme, registry.Entry(factory, None, ""))


def test_a_bad_voice_is_refused_before_the_judge_loads(tmp_path, capsys, judges, monkeypatch):
    from kame.eval import mtbench

    opened = []
    monkeypatch.setattr(mtbench, "open_judge", lambda *a, **kw: opened.append(a) or None)
    qf = write(tmp_path / "question.jsonl", [QUESTIONS[2]])
    out = tmp_path / "out"
    err = refused(capsys, qf, out, "--voice", "bogus")  # (the last --voice wins over test_mtbench's)
    assert err.startswith("kame: error: --voice: unknown tts spec 'bogus': scheme 'bogus' is not one of")
    assert opened == [] and judges["probes"] == 0
    assert not out.exists()  # (was: out/eval.json and out/runs/ left behind)
    assert "--voice: " in refused(capsys, qf, out, "--voice", "espeak;bogus=1")  # (an option it does not take)


def test_a_voice_that_cannot_be_made_is_named(tmp_path, capsys, fake_components, judges, scratch, monkeypatch):
    """(review r2 #5) a spec of the right form whose TTS cannot be made (piper not installed, an
    espeak voice missing) names --voice too (was: the TTS's error alone)."""
    from kame.errors import NotAvailableError

    def missing(arg=None, **kw):
        raise NotAvailableError("voice 'x' is not installed")

    _tts(monkeypatch, "missingvoice", missing)
    qf = write(tmp_path / "question.jsonl", [QUESTIONS[2]])
    err = refused(capsys, qf, tmp_path / "out", "--voice", "missingvoice")
    assert "--voice: " in err and "voice 'x' is not installed" in err, err


def test_a_voice_that_cannot_be_made_is_refused_before_the_judge_loads_and_out_is_made(tmp_path, capsys, judges,
                                                                                      fake_components, monkeypatch):
    """(QA audio #1; was: refused after the judge had loaded, ~8 s with the embedded one, OUT/eval.json
    and OUT/runs/ left behind) a piper voice file that is no voice says so (was: onnx's DecodeError)."""
    from kame.errors import NotAvailableError
    from kame.eval import mtbench

    opened = []
    monkeypatch.setattr(mtbench, "open_judge", lambda *a, **kw: opened.append(a) or None)

    def missing(arg=None, **kw):
        raise NotAvailableError("voice 'x' is not installed")

    _tts(monkeypatch, "missingvoice", missing)
    qf = write(tmp_path / "question.jsonl", [QUESTIONS[2]])
    out = tmp_path / "out"
    assert "--voice: voice 'x' is not installed" in refused(capsys, qf, out, "--voice", "missingvoice")
    assert opened == [] and judges["probes"] == 0 and not out.exists()
    if importlib.util.find_spec("piper") is not None:
        recording = tmp_path / "me.wav"
        recording.write_bytes(b"RIFF")
        err = refused(capsys, qf, out, "--voice", f"piper:{recording}")
        assert f"--voice: {recording} is not a piper voice: a piper voice is a VOICE.onnx model file" in err, err
        assert opened == [] and not out.exists()


def test_no_voice_is_made_when_every_question_s_run_is_saved(tmp_path, capsys, fake_components, judges, scratch,
                                                            monkeypatch):
    """What making the voice after the judge kept (it was made only for questions to run): a rerun
    that only rates, and a --rejudge, make no voice (a voice since uninstalled does not stop them)."""
    from kame import registry

    made = []

    def counted(arg=None, **kw):
        made.append(kw)
        return registry.create("tts", "espeak:en-us", **kw)

    _tts(monkeypatch, "countedvoice", counted)
    qf = write(tmp_path / "question.jsonl", [QUESTIONS[2]])
    out = tmp_path / "out"
    assert test_mtbench.eval_(qf, out, "--voice", "countedvoice") == 0
    assert made == [{"seed": 0}]  # (seeded, as before)
    assert test_mtbench.eval_(qf, out, "--voice", "countedvoice") == 0  # (all rated: nothing to run)
    assert test_mtbench.eval_(qf, out, "--voice", "countedvoice", "--rejudge") == 0
    assert made == [{"seed": 0}], capsys.readouterr()
    # (review l3 #9) a rated question whose saved run was removed (runs/ cleared to free disk) is not run
    # again, so it needs no voice either (was: the voice made, or refused when piper was gone)
    for rec in (out / "runs").glob("*.rec.json"):
        rec.unlink()
    assert test_mtbench.eval_(qf, out, "--voice", "countedvoice") == 0
    assert made == [{"seed": 0}], capsys.readouterr()


def test_a_voice_whose_synthesize_is_no_async_iterator_is_named_when_the_question_is_spoken():
    """(review r4 #6; was: Python's "'async for' requires an object with __aiter__ method", at a
    line of kame)"""
    import numpy as np
    import pytest

    from kame.errors import BackendError
    from kame.eval.mtbench import speak

    class Returns:
        def synthesize(self, text):
            return np.zeros(240, np.float32)

    with pytest.raises(BackendError, match=r"TTS .* broke its interface: its Returns.synthesize\(\).* returned "):
        speak(Returns(), ["Hi."], 1.0)
