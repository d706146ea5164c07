"""`kame demo` refuses what it cannot do before it loads anything (the full run is the README's
first command)."""

import pytest

from kame.cli import main


def test_demo_argument_errors(tmp_path, capsys):
    assert main(["demo", "--question", " ?! ", "--out", str(tmp_path / "d")]) == 1
    assert "--question has nothing to say" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["demo", "--out", str(blocker / "d")]) == 1
    assert "cannot create the folder" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()
    for bad, message in ((["--set", "runtime.nope=1"], "runtime.nope"),
                         (["--config", str(tmp_path / "missing.toml")], "config file not found"),
                         (["--set", "backend.stt=none"], "backend.stt = 'none' cannot be used with mode = 'cascade'"),
                         (["--mode", "cascade", "--set", "backend.llm=none"], "backend.llm = 'none' cannot be used")):
        out = tmp_path / "o"
        assert main(["demo", "--out", str(out), *bad]) == 1  # before the question is synthesized
        assert message in capsys.readouterr().err
        assert not (out / "question.wav").exists()
    with pytest.raises(SystemExit) as e:  # (a usage error: argparse's status 2, naming the option)
        main(["demo", "--out", str(tmp_path / "o"), "--tail", "-1"])
    assert e.value.code == 2 and "argument --tail: must be seconds" in capsys.readouterr().err


def test_demo_default_tail_holds_the_cascade_answer():
    """With --tail 6 the demo's cascade.wav held only the first second of the spoken answer (first
    sound 5.2 s after the question, then ~6 s of speech): the default leaves room for all of it."""
    import argparse

    from kame.demo import add_arguments

    p = argparse.ArgumentParser()
    add_arguments(p)
    assert p.parse_args([]).tail >= 10.0


def test_demo_headings_name_the_configured_components():
    # (was: "cascade: embedded STT -> embedded LLM -> piper TTS" whatever --set said)
    from kame.config import load_config
    from kame.demo import _heading

    cfg = load_config(None, ["mode=cascade", "backend.stt=whisper", "cascade.tts=espeak"])
    assert _heading(cfg) == "cascade: STT whisper -> LLM embedded -> TTS espeak (a spoken answer)"
    cfg = load_config(None, ["backend.llm=none", "backend.stt=none"])
    assert _heading(cfg).startswith("tandem: front-end random:tiny (random weights: kame ships no trained front-end "
                                    "yet) + its own codec; back-end STT none -> LLM none")
    cfg = load_config(None, ["backend.stt=none"])  # its LLM is not loaded then (was: "LLM embedded")
    assert _heading(cfg).endswith("back-end STT none -> LLM not loaded (STT none) -> oracle stream")


def test_a_question_that_is_not_utf8_is_refused_before_the_tts(tmp_path, capsys):
    """A latin-1 byte in argv arrives as a surrogate escape (was: a traceback from piper,
    "UnicodeEncodeError ... surrogates not allowed"); --set backend.system_prompt too."""
    import os

    question = os.fsdecode(b"Was ist zwei plus zwei \xe4?")  # (as Python decodes a latin-1 terminal's argv)
    assert main(["demo", "--question", question, "--out", str(tmp_path / "d")]) == 1
    err = capsys.readouterr().err
    assert "--question: not valid UTF-8 text (byte 0xe4 at character 24" in err and "Traceback" not in err
    assert not (tmp_path / "d" / "question.wav").exists()
    assert main(["demo", "--out", str(tmp_path / "d"), "--set", f"backend.system_prompt={question}"]) == 1
    assert "backend.system_prompt: not valid UTF-8 text (byte 0xe4" in capsys.readouterr().err
