"""What `kame run` tells a user at the end: Ctrl-C ends the conversation and writes what was
played (exit 130); a tandem whose back-end answer never reached the front-end before the file
ended is flagged; long lists of latencies are summarized; a cascade's summary has no oracle
line (it has no front-end)."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import soundfile as sf

from kame.audio import write_wav
from kame.cli import main
from kame.runtime import filemode
from kame.runtime.clock import FakeClock
from kame.runtime.filemode import print_summary, unheard
from kame.runtime.runreport import answer_missing

CODEC = "mimi:random-tiny"


def test_ctrl_c_ends_the_run_and_writes_what_was_played(tmp_path, monkeypatch, capsys):
    class InterruptingClock(FakeClock):  # Ctrl-C once 10 frames have been played
        sets = 0

        def set(self, t):
            super().set(t)
            InterruptingClock.sets += 1
            if InterruptingClock.sets == 10:
                os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(filemode, "FakeClock", InterruptingClock)
    wav, out = tmp_path / "in.wav", tmp_path / "out.wav"
    write_wav(wav, np.zeros(24000 * 20, np.float32), 24000)  # 250 frames
    rc = main(["run", str(wav), "-o", str(out), "--fast", "--set", f"codec.spec={CODEC}",
               "--set", "backend.stt=none", "--set", "backend.llm=none", "--set", "runtime.vad=energy"])
    err = capsys.readouterr().err
    assert rc == 130, err
    assert "interrupted: ending the conversation here" in err and "the files hold what was played" in err
    frames = sf.info(str(out)).frames // 1920
    assert 10 <= frames < 250
    doc = json.loads(out.with_suffix(".json").read_text())
    assert doc["summary"]["interrupted"] is True and doc["summary"]["frames"] == frames
    assert doc["duration_s"] == frames * 0.08 and out.with_suffix(".png").exists()


def _rec(**kw) -> dict:
    rec = {"components": {"mode": "tandem", "stt": "embedded", "llm": "embedded"}, "oracle": [], "metrics": [],
           "transcripts": [{"final": True, "text": "what is the capital of France", "t": 3.76,
                            "words": [{"word": "what", "start": 0.1, "end": 0.4},
                                      {"word": "France", "start": 1.4, "end": 1.66}]}]}
    rec.update(kw)
    return rec


def test_answer_missing_when_no_prediction_reached_the_oracle_after_the_last_word():
    metrics = [{"name": "stt_final_latency", "value": 2.1}, {"name": "llm_ttft", "value": 1.04}]
    miss = answer_missing(_rec(metrics=metrics))
    assert miss == {"last_word_end": 1.66, "stt_final_latency": 2.1, "llm_ttft": 1.04, "llm_empty": 0}
    early = [{"event": "reset", "prediction_id": 1, "t": 0.9}, {"event": "append", "text": " The", "t": 1.0}]
    assert answer_missing(_rec(oracle=early))  # an answer to the first words only
    # (was: any text appended after the last word's end answered it, that of a prediction started before
    # the STT sent the word too: tests/runtime/test_answer_missing.py)
    late = [{"event": "reset", "prediction_id": 2, "t": 3.76}, {"event": "append", "text": " Paris", "t": 4.0}]
    assert answer_missing(_rec(oracle=early + late)) is None  # a prediction started from the final
    assert answer_missing(_rec(components={"mode": "cascade", "llm": "embedded"})) is None  # (unanswered)
    assert answer_missing(_rec(components={"mode": "tandem", "llm": "none"})) is None  # no back-end answer expected
    assert answer_missing(_rec(transcripts=[])) is None  # nothing heard


def _summary(**kw) -> dict:
    s = {"mode": "tandem", "frontend": "random:tiny", "frontend_random": True, "codec": "embedded",
         "stt": "embedded", "llm": "embedded", "heard": "hi", "oracle_text": "", "agent_text": "babble",
         "first_response_latency_s": [], "oracle_lag_s": [], "step_time_p50_s": 0.03, "step_time_p99_s": 0.05,
         "missed_deadlines": 0, "frames": 60, "wall_s": 4.8, "load_s": 20.0, "slowdown": 1.0, "errors": 0}
    s.update(kw)
    return s


def test_the_summary_warns_that_the_answer_never_reached_the_front_end(tmp_path, capsys):
    miss = {"last_word_end": 1.66, "stt_final_latency": 2.1, "llm_ttft": 1.04}
    print_summary(_summary(answer_missing=miss), tmp_path / "out.wav", True)
    out = capsys.readouterr().out
    assert "warning   the back-end's answer to the user's last words (ending at 1.66 s) had not reached " \
           "the front-end's oracle when out.wav ended at 4.80 s" in out
    assert "the STT's last final came 2.10 s after the speech" in out and "give a longer --tail" in out


def test_the_answer_missing_warning_blames_back_end_errors_or_fast_before_the_tail(tmp_path, capsys):
    # (was: "give a longer --tail" when the LLM could not be reached, and with --fast)
    miss = {"last_word_end": 1.66, "stt_final_latency": None, "llm_ttft": None}
    print_summary(_summary(answer_missing=miss, errors=3), tmp_path / "out.wav", True)
    line = next(x for x in capsys.readouterr().out.splitlines() if "had not reached" in x)
    assert line.endswith("its back-end reported 3 error(s): see 'errors' in out.json")
    print_summary(_summary(answer_missing=miss, pacing="fast"), tmp_path / "out.wav", True)
    line = next(x for x in capsys.readouterr().out.splitlines() if "had not reached" in x)
    assert line.endswith("--fast leaves its STT, LLM and TTS no time: leave it out")


def test_speech_the_stt_never_transcribed_is_warned_about(tmp_path, capsys):
    # (was: a tandem run with --fast printed heard '' and no warning though the VAD found speech)
    vad = [{"event": "start", "t": 0.06}, {"event": "end", "t": 1.98},
           {"event": "start", "t": 3.0}, {"event": "end", "t": 4.0}, {"event": "start", "t": 5.0}]
    assert unheard(_rec(vad=vad)) == (2, 3)  # words only in the first stretch
    assert unheard(_rec(vad=vad[:2])) is None
    click = [{"event": "start", "t": 2.5}, {"event": "end", "t": 2.7}]  # 0.2 s: no word expected (was: warned)
    assert unheard(_rec(vad=vad[:2] + click)) is None and unheard(_rec(vad=vad[:2] + click, transcripts=[])) == (1, 1)
    end_click = [{"event": "start", "t": 2.5}]  # speech until the input ends, 0.1 s later: a click too
    assert unheard({**_rec(vad=vad[:2] + end_click), "duration_s": 2.6}) is None
    assert unheard(_rec(vad=vad, transcripts=[])) == (3, 3)
    assert unheard(_rec(vad=vad, components={"mode": "tandem", "stt": "none"})) is None
    print_summary(_summary(unheard=(3, 3), pacing="fast", heard=""), tmp_path / "out.wav", True)
    assert "warning   the STT transcribed nothing in 3 of the 3 stretches of speech (0.3 s or longer) the VAD found " \
           "in out.wav; " \
           "--fast leaves its STT, LLM and TTS no time: leave it out" in capsys.readouterr().out


def test_many_latencies_are_summarized_not_listed(tmp_path, capsys):
    print_summary(_summary(first_response_latency_s=[0.0] * 29, oracle_lag_s=[3.07, 3.39]), tmp_path / "o.wav", True)
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("latency"))
    assert "first response [s]: 29 values, median 0.00, max 0.00" in line and "oracle lag [s]: 3.07, 3.39" in line


def test_a_cascade_summary_has_no_oracle_line(tmp_path, capsys):
    print_summary(_summary(mode="cascade", frontend=None, frontend_random=None, codec=None, tts="embedded",
                            step_time_p50_s=None), tmp_path / "o.wav", True)
    out = capsys.readouterr().out
    assert "front-end (none: cascade)" in out and "\noracle" not in out
