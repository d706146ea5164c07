"""kame eval mtbench checks its --voice spec with its other arguments: before the judge loads and
before -o is made, the error naming --voice (was: after the judge had loaded, about 7 s with the
embedded one, naming no option, OUT/ left behind)."""

from __future__ import annotations

from . import test_mtbench
from .test_mtbench import QUESTIONS, refused, write

judges = test_mtbench.judges  # (the scripted judges: a fixture, used by name)


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


def test_a_voice_that_cannot_be_made_is_named(tmp_path, capsys, fake_components, judges, scratch):
    """(review r2 #5) a spec of the right form whose TTS cannot be made (piper not installed, an
    espeak voice missing) names --voice too (was: the TTS's error alone)."""
    from kame import registry
    from kame.errors import NotAvailableError

    def missing(arg=None, **kw):
        raise NotAvailableError("voice 'x' is not installed")

    registry.register("tts", "missingvoice", missing)
    qf = write(tmp_path / "question.jsonl", [QUESTIONS[2]])
    err = refused(capsys, qf, tmp_path / "out", "--voice", "missingvoice")
    assert "--voice: " in err and "voice 'x' is not installed" in err, err


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
