"""What `kame run` says when part of the run failed: a front-end whose step failed on some frames
(counted and warned about; more than half of them: exit 1, the files still written), and a
cascade whose LLM answered with no text (its LLM is named, not --fast)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kame import registry
from kame.audio import write_wav
from kame.cli import main
from kame.runtime import engine
from kame.runtime.engine import TandemAgent
from kame.runtime.filemode import print_summary

from .fakes import FakeFrameModel, FakeLLM
from .test_filemode_ending import _summary


def _failing_front_end(monkeypatch, fails) -> None:
    """`kame run`'s tandem gets a fake front-end whose step raises on the steps ``fails(i)`` says
    (i from 0), and no back-end."""
    calls = [0]

    def hook():  # (on the worker thread)
        i, calls[0] = calls[0], calls[0] + 1
        if fails(i):
            raise RuntimeError(f"boom at step {i}")

    def build_agent(cfg, *, clock=None, metrics=None, **kwargs):
        return TandemAgent(cfg, clock=clock, metrics=metrics, frame_models=lambda b: FakeFrameModel(b, hook=hook),
                           backend=lambda s: None, token_text=lambda t: "",
                           components={"frontend": "fake", "codec": "fake", "stt": "none", "llm": "none"})  # (names: backend= given)

    monkeypatch.setattr(engine, "build_agent", build_agent)


def _run(tmp_path, frames: int = 20) -> int:
    wav, out = tmp_path / "in.wav", tmp_path / "out.wav"
    write_wav(wav, np.zeros(frames * 1920, np.float32), 24000)
    return main(["run", str(wav), "-o", str(out), "--fast", "--no-png", "--tail", "0"])


def test_a_few_failed_front_end_steps_are_counted_and_warned_about(tmp_path, monkeypatch, capsys):
    _failing_front_end(monkeypatch, lambda i: i in (5, 6, 7))
    assert _run(tmp_path) == 0  # a usable run with short gaps
    out = capsys.readouterr().out
    doc = json.loads((tmp_path / "out.json").read_text())
    assert doc["summary"]["frames"] == 20 and doc["summary"]["frontend_failed_steps"] == 3
    assert "warning   the front-end's step failed on 3 of the 20 frames: those frames have no agent audio " \
           "in out.wav; see 'errors' in out.json and the log" in out


def test_a_run_whose_front_end_mostly_failed_exits_1_after_writing_its_files(tmp_path, monkeypatch, capsys):
    # (was: exit 0 and no word of it in the summary, OUT.wav's agent channel mostly silence)
    _failing_front_end(monkeypatch, lambda i: i >= 4)
    assert _run(tmp_path) == 1
    captured = capsys.readouterr()
    doc = json.loads((tmp_path / "out.json").read_text())
    assert doc["summary"]["frames"] == 20 and doc["summary"]["frontend_failed_steps"] == 16
    assert (tmp_path / "out.wav").exists()
    assert "warning   the front-end's step failed on 16 of the 20 frames" in captured.out
    errors = captured.err.strip().splitlines()
    assert errors[-1] == (
        "kame: error: the front-end's step failed on 16 of the 20 frames, so the agent's channel of out.wav is "
        "mostly silence (first: front-end step failed: boom at step 4); out.wav and out.json hold what it "
        "produced; see the log for the cause")


def test_half_the_steps_failed_is_still_a_run(tmp_path, monkeypatch, capsys):
    _failing_front_end(monkeypatch, lambda i: i % 2 == 1)  # 10 of 20: not more than half
    assert _run(tmp_path) == 0
    assert json.loads((tmp_path / "out.json").read_text())["summary"]["frontend_failed_steps"] == 10


def test_back_end_errors_do_not_count_the_front_end_failures(tmp_path, capsys):
    # the front-end's failures are in "errors" too, but no back-end reported them
    print_summary(_summary(mode="cascade", reply_cut_off=True, errors=4, frontend_failed_steps=4),
                   tmp_path / "o.wav", True)
    out = capsys.readouterr().out
    assert "still answering when the file ended; give a longer --max-tail" in out and "back-end reported" not in out


class EmptyLLM(FakeLLM):
    """Answers with no text."""

    async def stream_chat(self, messages, *, max_tokens=None, temperature=None):
        self.calls += 1
        yield ""


def create_empty_llm(arg=None, **kwargs) -> EmptyLLM:
    return EmptyLLM()


@pytest.fixture
def empty_llm(fake_components):
    registry.register("llm", "empty", f"{__name__}:create_empty_llm")
    yield
    registry._ENTRIES.get("llm", {}).pop("empty", None)


def test_fast_is_not_blamed_for_an_llm_that_answered_with_no_text(tmp_path, capsys, empty_llm):
    # (was: "did not answer in out.wav; --fast leaves its STT, LLM and TTS no time: leave it out",
    # though the STT had heard the question)
    user = np.zeros(int(1.5 * 24000), np.float32)
    user[4800:24000] = np.clip(np.random.default_rng(0).standard_normal(19200) * 0.25, -0.9, 0.9)
    wav, out = tmp_path / "in.wav", tmp_path / "out.wav"
    write_wav(wav, user, 24000)
    rc = main(["run", str(wav), "-o", str(out), "--fast", "--no-png", "--mode", "cascade",
               "--set", "backend.stt=fake_question", "--set", "backend.llm=empty", "--set", "cascade.tts=fake",
               "--set", "runtime.vad=energy"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "heard     'what is 12 times 7'" in printed
    line = next(x for x in printed.splitlines() if "did not answer" in x)
    assert line == ("warning   the cascade heard the user but did not answer in out.wav; its LLM 'empty' answered "
                    "with no text (not --fast: its STT heard the user); check that LLM's replies, or set another "
                    "backend.llm")
    assert json.loads(out.with_suffix(".json").read_text())["summary"]["replies"] == {"failed": 0, "empty": 1, "barged_in": 0}


def test_an_empty_answer_blames_fast_only_when_the_stt_heard_little(tmp_path, capsys):
    empty = {"failed": 0, "empty": 1}
    print_summary(_summary(mode="cascade", replies=empty, pacing="fast", llm="openai:gpt-4.1"), tmp_path / "o.wav", True)
    line = next(x for x in capsys.readouterr().out.splitlines() if "had no text" in x)
    assert line == ("warning   1 of the agent's replies had no text: its LLM 'openai:gpt-4.1' answered with no text "
                    "(not --fast: its STT heard the user); check that LLM's replies, or set another backend.llm")
    # the STT missed most of the speech: the LLM got a scrap of it, and --fast is the likely cause
    print_summary(_summary(mode="cascade", replies=empty, pacing="fast", unheard=(2, 3), unanswered=True),
                   tmp_path / "o.wav", True)
    line = next(x for x in capsys.readouterr().out.splitlines() if "did not answer" in x)
    assert line.endswith("its LLM 'embedded' answered with no text to the little its STT heard; "
                         "--fast leaves its STT, LLM and TTS no time: leave it out")
    # and a back-end error elsewhere does not hide it (was: "its back-end reported 1 error(s)")
    print_summary(_summary(mode="cascade", replies=empty, unanswered=True, errors=1), tmp_path / "o.wav", True)
    line = next(x for x in capsys.readouterr().out.splitlines() if "did not answer" in x)
    assert line.endswith("its LLM 'embedded' answered with no text; check that LLM's replies, or set another backend.llm")
