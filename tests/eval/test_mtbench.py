"""kame eval mtbench: questions read and filtered, ratings parsed, the judge's prompt, and an end
to end runs (espeak questions, a tiny random front-end or a cascade with fake STT/LLM/TTS, scripted
judges): resume, settings refused, --rejudge, a dead judge, judge and agent failures."""

from __future__ import annotations

import asyncio
import json
import re

import numpy as np
import pytest

from kame import registry
from kame.audio import read_wav
from kame.cli import main
from kame.errors import ConfigError, KameError
from kame.eval.mtbench import cascade_answer, read_questions, run_name, table, turn_records
from tests.backend.scripted_llm import ScriptedLLM

QUESTIONS = [
    {"question_id": 81, "category": "writing", "turns": ["Write a poem.", "Shorter."]},
    {"question_id": 101, "category": "reasoning", "turns": ["Is ice cold?", "Why?"], "reference": ["Yes.", "Heat."]},
    {"question_id": 131, "category": "stem", "turns": ["What is a cat?", "And a dog?"]},
    {"question_id": 151, "category": "humanities", "turns": ["Who was Plato?", "And Kant?"]},
]


def write(path, rows) -> str:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return str(path)


# ---------------------------------------------------------------------------- questions
def test_reads_and_filters_questions(tmp_path):
    f = write(tmp_path / "q.jsonl", QUESTIONS[:2] + [""] + QUESTIONS[2:])  # (a blank line is skipped)
    qs = read_questions(f)
    assert [(q.id, q.category) for q in qs] == [("101", "reasoning"), ("131", "stem"), ("151", "humanities")]
    assert qs[0].turns == ["Is ice cold?"] and qs[0].reference == ["Yes.", "Heat."]
    assert [q.id for q in read_questions(f, ("writing",), turns=2)] == ["81"]
    assert read_questions(f, ("writing",), turns=2)[0].turns == ["Write a poem.", "Shorter."]
    assert len(read_questions(f, None)) == 4


def test_question_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"missing\.jsonl: cannot read it \(no such file or directory\); give MT"):
        read_questions(tmp_path / "missing.jsonl")
    (tmp_path / "latin1.jsonl").write_bytes('{"question_id": 1, "category": "stem", "turns": ["Caf\xe9?"]}'
                                            .encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1\.jsonl: not UTF-8 text \(byte 53\); give MT-Bench's question"):
        read_questions(tmp_path / "latin1.jsonl")  # (was: a UnicodeDecodeError traceback)
    bad = write(tmp_path / "bad.jsonl", [QUESTIONS[1], '{"question_id": 2, "turns": ['])
    with pytest.raises(ConfigError, match=r"bad\.jsonl:2: not valid JSON"):
        read_questions(bad)
    shape = write(tmp_path / "shape.jsonl", [{"question_id": 1, "category": "stem", "turns": "a question"}])
    with pytest.raises(ConfigError, match=r"shape\.jsonl:1: a question needs"):
        read_questions(shape)
    dup = write(tmp_path / "dup.jsonl", [QUESTIONS[1], QUESTIONS[1]])
    with pytest.raises(ConfigError, match=r"dup\.jsonl:2: question_id 101 again"):
        read_questions(dup)
    only = write(tmp_path / "only.jsonl", [QUESTIONS[0]])
    with pytest.raises(ConfigError, match="no question left.*the file has writing"):
        read_questions(only)
    # a category the user named that the file does not have is refused, not silently dropped
    f = write(tmp_path / "q.jsonl", QUESTIONS)
    with pytest.raises(ConfigError, match="has no question in maths; its categories are humanities, reasoning, "
                                          "stem, writing"):
        read_questions(f, ("stem", "maths"), strict=True)
    short = write(tmp_path / "short.jsonl", [{"question_id": 1, "category": "stem", "turns": ["One?"]}])
    with pytest.raises(ConfigError, match="has 1 turn.*--turns 2"):
        read_questions(short, turns=2)


def test_table_per_category_avg_of_categories_and_overall():
    recs = [{"category": "stem", "rating": 6.0, "latency_s": 0.5}, {"category": "stem", "rating": 8.0, "latency_s": 1.5},
            {"category": "stem", "rating": 10.0, "latency_s": 1.0},
            {"category": "reasoning", "rating": None, "latency_s": None},
            {"category": "reasoning", "rating": 2.0, "latency_s": 2.0}]
    lines = table(recs, ("reasoning", "stem", "humanities")).splitlines()
    assert lines[2] == "| reasoning | 2 | 2.00 | 2.00 | 1 |"  # (nearest rank; the silent turn = +inf)
    assert lines[3] == "| stem | 3 | 8.00 | 1.00 | 0 |"
    assert lines[4] == "| *avg of categories* | 5 | 5.00 | 1.50 | 1 |"  # (2 + 8) / 2: KAME's avg
    assert lines[5] == "| **overall** | 5 | 6.50 | 1.50 | 1 |" and len(lines) == 6  # (6 + 8 + 10 + 2) / 4


def test_table_by_turn():
    recs = [{"category": "stem", "turn": 1, "rating": 6.0, "latency_s": 0.5},
            {"category": "stem", "turn": 2, "rating": 2.0, "latency_s": 1.5}]
    lines = table(recs, ("stem",), by_turn=True).splitlines()[2:]
    assert lines == ["| stem, turn 1 | 1 | 6.00 | 0.50 | 0 |", "| *avg of categories, turn 1* | 1 | 6.00 | 0.50 | 0 |",
                     "| **overall, turn 1** | 1 | 6.00 | 0.50 | 0 |",
                     "| stem, turn 2 | 1 | 2.00 | 1.50 | 0 |", "| *avg of categories, turn 2* | 1 | 2.00 | 1.50 | 0 |",
                     "| **overall, turn 2** | 1 | 2.00 | 1.50 | 0 |",
                     "| **overall, all turns** | 2 | 4.00 | 0.50 | 0 |"]


def test_run_names_are_unique():
    assert run_name("101") == "101" and run_name("q-1_a") == "q-1_a"
    names = {run_name(x) for x in ("1.0", "1_0", "1/0", "", "1 0")}
    assert len(names) == 5 and all(n and "/" not in n and "." not in n for n in names)
    assert run_name("1.0") == run_name("1.0")  # (stable: a rerun finds its files)


def test_cascade_answer_is_what_was_heard(tmp_path):
    # the LLM generated more than was spoken (a barge-in cut the reply): the judged answer is the heard part
    doc = {"agent_text": [{"t": 2.0, "text": "Cats are small "}, {"t": 2.5, "text": "carnivorous mammals."}],
           "other_meta": [{"type": "turn", "turn": 1, "t_user_end": 1.5, "t": 1.9},
                          {"type": "agent_turn", "turn": 1, "text": "Cats are small", "reply": "Cats are small "
                           "carnivorous mammals.", "interrupted": True, "t": 3.0}]}
    ut = type("UT", (), {"start": 0.5, "end": 1.5, "window_end": 9.0, "text": "What is a cat?"})()
    assert cascade_answer(doc, ut) == ("Cats are small", "agent_turn (as heard)")
    # ... and that is the record's answer, with what the STT heard and the run's flags
    doc.update(components={"mode": "cascade"}, summary={"reply_cut_off": False, "max_tail_reached": False,
                                                        "unanswered": False},
               transcripts=[{"final": True, "t": 1.6, "text": "what is a cat"}])
    q = read_questions(write(tmp_path / "q.jsonl", [QUESTIONS[2]]))[0]
    (rec,) = turn_records(q, doc, [ut], np.zeros(24000 * 9, np.float32), 0.01, "cascade", {})
    assert rec["answer"] == "Cats are small" and rec["heard"] == "what is a cat" and rec["reply_cut_off"] is False
    # a reply not ended when the file ended: the text generated in the window, said so
    doc["other_meta"].pop()
    assert cascade_answer(doc, ut) == ("Cats are small carnivorous mammals.", "generated text (a reply had not ended)")


# ---------------------------------------------------------------------------- end to end
JUDGE = {"n": 0, "replies": []}


def probe(messages) -> bool:  # the short request sent before the first question
    return "Reply with [[5]]" in messages[-1].content


class DeadLLM(ScriptedLLM):
    async def stream_chat(self, messages, *, max_tokens=None, temperature=None):
        JUDGE["n"] += 1
        raise ConnectionError("judge down")
        yield ""


class FlakyLLM(ScriptedLLM):
    """Answers the first short request, then fails."""

    async def stream_chat(self, messages, *, max_tokens=None, temperature=None):
        if probe(messages):
            yield "[[5]]"
            return
        JUDGE["n"] += 1
        raise ConnectionError("judge down")


class Judges(ScriptedLLM):
    """Each call replies the next of JUDGE["replies"] (then "[[7]]")."""

    async def stream_chat(self, messages, *, max_tokens=None, temperature=None):
        if probe(messages):
            JUDGE["probes"] += 1
            yield "[[5]]"
            return
        JUDGE["n"] += 1
        JUDGE.setdefault("prompts", []).append(messages[-1].content)
        reply = JUDGE["replies"].pop(0) if JUDGE["replies"] else "Fine. Rating: [[7]]"
        await asyncio.sleep(0)
        yield reply


@pytest.fixture
def judges():
    JUDGE.update(n=0, replies=[], prompts=[], probes=0)
    registry.register("llm", "test_judge", lambda arg=None, **kw: Judges())
    registry.register("llm", "test_judge2", lambda arg=None, **kw: Judges())
    registry.register("llm", "test_dead_judge", lambda arg=None, **kw: DeadLLM())
    registry.register("llm", "test_flaky_judge", lambda arg=None, **kw: FlakyLLM())
    yield JUDGE
    for scheme in ("test_judge", "test_judge2", "test_dead_judge", "test_flaky_judge"):
        registry._ENTRIES.get("llm", {}).pop(scheme, None)


AGENT = ["--voice", "espeak:en-us", "--tail", "1.0", "--fast", "--set", "frontend.spec=random:tiny",
         "--set", "codec.spec=mimi:random-tiny", "--set", "backend.stt=fake", "--set", "backend.llm=fake",
         "--set", "runtime.vad=energy", "--set", "backend.retry_s=0.1"]




def eval_(qf, out, *extra, judge="test_judge"):
    return main(["eval", "mtbench", qf, "-o", str(out), "--judge", judge, *AGENT, *extra])


def refused(capsys, qf, out, *extra, judge="test_judge") -> str:
    """The error kame printed for a run that failed (exit status not 0)."""
    capsys.readouterr()
    assert eval_(qf, out, *extra, judge=judge) != 0
    return " ".join(capsys.readouterr().err.split())


@pytest.fixture
def agent_runs(monkeypatch):
    """Counts the questions run (kame run's files written: filerun.write_run), records every
    conversation's length (warm-up included: filemode.play_session) and the agents built and
    started (their models loaded)."""
    from kame.runtime import engine, filerun

    seen = {"main": 0, "conversations": [], "main_after": [], "builds": 0, "loads": 0, "stops": 0}
    real_write, real_play, real_build = filerun.write_run, filerun.play_session, engine.build_agent

    def counting_write(*args):
        seen["main"] += 1
        seen["main_after"].append(len(seen["conversations"]))  # (conversations played by then)
        return real_write(*args)

    async def recording_play(agent, pcm, **kw):
        seen["conversations"].append(pcm.shape[0] / 24000)
        return await real_play(agent, pcm, **kw)

    def counting_build(cfg, **kw):
        agent = real_build(cfg, **kw)
        seen["builds"] += 1
        start, stop = agent._start, agent.stop  # (_start: the load itself, once per start however many ask)

        async def counting_start():
            seen["loads"] += 1
            await start()

        async def counting_stop():
            seen["stops"] += 1
            await stop()

        agent._start, agent.stop = counting_start, counting_stop
        return agent

    monkeypatch.setattr(filerun, "write_run", counting_write)
    monkeypatch.setattr(filerun, "play_session", recording_play)
    monkeypatch.setattr(engine, "build_agent", counting_build)
    return seen


def test_end_to_end_results_table_and_resume(tmp_path, capsys, fake_components, judges, agent_runs, monkeypatch):
    from kame.bench import latency

    warmed = []

    async def warm_up_llm(spec, nice=0):
        warmed.append((spec, nice, len(agent_runs["conversations"])))

    monkeypatch.setattr(latency, "warm_up_llm", warm_up_llm)
    qf = write(tmp_path / "question.jsonl", QUESTIONS[:3])  # writing is filtered out: 2 questions
    out = tmp_path / "out"
    judges["replies"] = ["Wrong. Rating: [[3]]", "I cannot rate this.", "Still no number."]
    assert eval_(qf, out) == 0
    printed = capsys.readouterr().out
    lines = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert [(r["question_id"], r["category"], r["rating"]) for r in lines] == [("101", "reasoning", 3.0),
                                                                                ("131", "stem", None)]
    # the unparsed reply got one follow-up asking for the rating alone (kept, still unparsed)
    assert judges["n"] == 3 and lines[1]["judge_followup"] == "Still no number." and judges["probes"] == 1
    r = lines[0]
    assert r["question"] == "Is ice cold?" and r["mode"] == "tandem" and r["judge_reply"] == "Wrong. Rating: [[3]]"
    run = json.loads(open(r["files"]["json"]).read())
    assert run["components"]["frontend"] == "random:tiny"
    # the answer is the front-end's text stream in the turn's window, not the LLM's answer it was fed
    end = read_wav(r["files"]["output"], None, mono=False)[0].shape[0] / 24000  # (the last turn's window: to the end)
    window = "".join(a["text"] for a in run["agent_text"] if r["user_start_s"] - 5e-4 <= a["t"] < end)
    window = window.replace("\u2581", " ").strip()
    assert r["answer"] == window and r["answer"] != r["llm_answer"] and r["frontend_random"] is True
    assert r["llm_answer"].startswith("answer")  # the fake LLM's "answer N", fed to the front-end
    assert r["heard"].startswith("w0 w1")  # the fake STT's words for the question
    assert isinstance(r["latency_s"], float) and 0 <= r["latency_s"] < 10
    assert set(r) >= {"reply_cut_off", "max_tail_reached", "unanswered"} and r["unanswered"] is False
    # warm-up: the LLM warmed at the back-end's priority, then one untimed conversation, before question 1
    assert warmed == [("fake", 10, 0)] and agent_runs["main"] == 2 and len(agent_runs["conversations"]) == 3
    assert agent_runs["main_after"] == [2, 3]  # (the warm-up's conversation came first)
    # one agent, built and loaded once, played the warm-up and both questions; stopped at the end
    assert agent_runs["builds"] == agent_runs["loads"] == agent_runs["stops"] == 1
    # the reference went to the judge with the question and the agent's answer
    assert "Yes." in judges["prompts"][0] and "Is ice cold?" in judges["prompts"][0] and r["answer"] in judges["prompts"][0]
    assert "| reasoning | 1 | 3.00 |" in printed and "| stem | 1 | – |" in printed
    assert "| **overall** | 2 | 3.00 |" in printed and "RANDOM WEIGHTS" in printed
    assert "2 question(s): 2 run, 1 rated, 1 unparsed" in printed
    assert "| **overall** | 2 | 3.00 |" in (out / "results.md").read_text()
    # resume: both answered, nothing is run or judged again (not even warmed up)
    judges.update(n=0, probes=0)
    assert eval_(qf, out) == 0
    assert judges["n"] == judges["probes"] == 0 and len((out / "results.jsonl").read_text().splitlines()) == 2
    assert agent_runs["main"] == 2 and len(warmed) == 1
    assert "2 done in" in capsys.readouterr().out
    # --rejudge with the same judge: only the unparsed answer is rated again, the agent not run
    judges["replies"] = ["Better. Rating: [[6]]"]
    assert eval_(qf, out, "--rejudge") == 0
    lines = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert [r["rating"] for r in lines] == [3.0, 6.0] and judges["n"] == 1 and agent_runs["main"] == 2


def test_another_judge_or_agent_is_refused_then_rejudge(tmp_path, capsys, fake_components, judges, agent_runs):
    qf = write(tmp_path / "question.jsonl", [QUESTIONS[1]])
    out = tmp_path / "out"
    assert eval_(qf, out) == 0
    assert json.loads((out / "eval.json").read_text())["agent"]["backend.llm"] == "fake"
    assert "rated by the judge test_judge, not test_judge2; give --rejudge" in refused(capsys, qf, out, judge="test_judge2")
    assert re.search("another agent .*set.*give another -o", refused(capsys, qf, out, "--set", "runtime.silence_db=-40"))
    assert "another agent (voice 'espeak:en-us' there, 'espeak:en-gb' now)" in \
        refused(capsys, qf, out, "--voice", "espeak:en-gb")
    assert "--mode tandem --turns 1, not of --mode cascade" in refused(capsys, qf, out, "--mode", "cascade")
    # --rejudge: the stored answer rated by the other judge; the agent is not run again
    judges["replies"] = ["Rating: [[2]]"]
    runs = agent_runs["main"]
    assert eval_(qf, out, "--rejudge", judge="test_judge2") == 0
    (r,) = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert r["rating"] == 2.0 and r["judge"] == "test_judge2" and agent_runs["main"] == runs
    assert json.loads((out / "eval.json").read_text())["judge"] == "test_judge2"
    assert eval_(qf, out, judge="test_judge2") == 0  # now the folder's judge: a plain resume


def test_a_corrupt_eval_json_or_a_line_not_a_record_is_refused(tmp_path, capsys, fake_components, judges, agent_runs):
    from kame.eval.results import load_done

    qf = write(tmp_path / "question.jsonl", [QUESTIONS[1]])
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.jsonl").write_text(json.dumps({"question_id": "1", "category": "stem", "mode": "tandem"}) + "\n")
    for text in ('{"mode": "tandem", ', "[1]"):  # (cut while writing; not an object: was a traceback)
        (out / "eval.json").write_text(text)
        assert f"{out / 'eval.json'}: not valid settings (a JSON object; a file cut while writing?); delete it " \
            f"with results.jsonl and runs/ to start again, or give another -o" in refused(capsys, qf, out)
    assert agent_runs["main"] == 0
    results = tmp_path / "results.jsonl"
    results.write_text(json.dumps({"question_id": "1", "category": "stem", "question": "Q?", "mode": "tandem"})
                       + "\n[1]\n")
    with pytest.raises(ConfigError, match=r"results\.jsonl:2: not a record \(a JSON object\); delete that line, "
                                          r"or give another -o"):
        load_done(results, "tandem", 1)  # (was: AttributeError, 'list' object has no attribute 'get')


def test_judge_failures_are_skipped_then_stop_and_a_rerun_only_grades(tmp_path, capsys, fake_components, judges,
                                                                      agent_runs):
    qs = [{"question_id": i, "category": "stem", "turns": [f"Question {i}?"]} for i in range(6)]
    qf = write(tmp_path / "question.jsonl", qs)
    out = tmp_path / "out"
    assert eval_(qf, out, "--limit", "1", judge="test_flaky_judge") == 1  # skipped and said so, not written
    err = capsys.readouterr().err
    assert "0 (stem): test_flaky_judge: the judge failed (ConnectionError: judge down); skipped" in err
    assert not (out / "results.jsonl").exists() and (out / "runs" / "0.rec.json").exists()
    # a rerun with the judge back: question 0 is only graded, not run again
    runs = agent_runs["main"]
    assert eval_(qf, out, "--limit", "1") == 0
    assert agent_runs["main"] == runs and json.loads((out / "results.jsonl").read_text())["rating"] == 7.0


def test_agent_failures_are_skipped_then_stop(tmp_path, capsys, fake_components, judges, agent_runs, monkeypatch):
    import sys
    from pathlib import Path

    from kame.runtime import filerun

    real = filerun.play_session
    qs = [{"question_id": i, "category": "stem", "turns": [f"Question {i}?"]} for i in range(10)]
    qf = write(tmp_path / "question.jsonl", qs)
    bad = {"1": KameError("the agent made no audio"), "3": RuntimeError("boom")}

    async def failing(agent, pcm, **kw):
        qid = Path(getattr(sys.stdout, "name", "")).name.split(".")[0]  # (a question's run prints to its ID.log)
        if qid in bad:
            raise bad[qid]
        return await real(agent, pcm, **kw)

    monkeypatch.setattr(filerun, "play_session", failing)
    out = tmp_path / "out"
    assert eval_(qf, out, "--limit", "5") == 1  # the others rated, the failures skipped
    err = capsys.readouterr().err
    assert "[2/5] 1 (stem): the agent failed (KameError: the agent made no audio); skipped" in err
    assert "[4/5] 3 (stem): the agent failed (RuntimeError: boom); skipped" in err
    rated = [json.loads(x)["question_id"] for x in (out / "results.jsonl").read_text().splitlines()]
    assert rated == ["0", "2", "4"] and not (out / "runs" / "1.rec.json").exists()
    # a failed run cost its agent: the next question got a new one (said), the others kept theirs
    assert "the agent is stopped and a new one is built for the next run: a run failed: RuntimeError: boom" in err
    assert agent_runs["builds"] == agent_runs["loads"] == agent_runs["stops"] == 3
    assert "agent     built again: the one before was given up (a run failed: KameError" in \
        (out / "runs" / "2.log").read_text()
    # five failures in a row stop the evaluation
    bad.update({str(i): KameError("down") for i in range(10)})
    err = refused(capsys, qf, out)
    assert "5 questions failed in a row (the last: the agent failed: KameError: down); stopped" in err
    assert "[5/7] 7 (stem)" in err and "[6/7]" not in err


def signal_while_playing(monkeypatch, agent_runs, sig: int, after: int) -> dict:
    """Send ``sig`` to this process 10 frames into the conversation that comes after ``after``
    ones (the warm-up is one), counted in the played session's clock sets; the dict returned
    ({"sets": clock sets left, None: not armed}) disarms it with "sets" = None."""
    import os

    from kame.runtime import filerun
    from kame.runtime.clock import FakeClock

    armed = {"sets": None}

    class SignallingClock(FakeClock):
        def set(self, t):
            super().set(t)
            if armed["sets"] is not None:
                armed["sets"] -= 1
                if armed["sets"] == 0:
                    os.kill(os.getpid(), sig)

    real = filerun.play_session

    async def arming(agent, pcm, **kw):
        if len(agent_runs["conversations"]) == after:
            armed["sets"] = 10
        return await real(agent, pcm, **kw)

    monkeypatch.setattr(filerun, "FakeClock", SignallingClock)
    monkeypatch.setattr(filerun, "play_session", arming)
    return armed


def test_ctrl_c_ends_the_question_keeps_the_finished_ones_and_exits_130(tmp_path, capsys, fake_components, judges,
                                                                        agent_runs, monkeypatch):
    import signal

    # (after the warm-up and question 1: 10 frames into question 2)
    armed = signal_while_playing(monkeypatch, agent_runs, signal.SIGINT, after=2)
    qf = write(tmp_path / "question.jsonl", QUESTIONS[1:3])
    out = tmp_path / "out"
    assert eval_(qf, out) == 130
    err = capsys.readouterr().err
    assert "interrupted: ending the conversation here" in err and "the files hold what was played" in err
    (r,) = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]  # question 1, rated
    assert r["question_id"] == "101" and r["rating"] == 7.0
    run = json.loads((out / "runs" / "131.json").read_text())  # question 2: what was played, not rated
    assert run["summary"]["interrupted"] is True and run["summary"]["frames"] >= 10
    assert not (out / "runs" / "131.rec.json").exists() and agent_runs["stops"] == 1
    # a rerun runs question 2 alone
    armed["sets"] = None
    assert eval_(qf, out) == 0
    assert [json.loads(x)["question_id"] for x in (out / "results.jsonl").read_text().splitlines()] == ["101", "131"]


def test_judge_made_at_the_backend_priority(tmp_path, capsys, fake_components, judges):
    from tests.runtime.fakes import CREATED

    qf = write(tmp_path / "question.jsonl", [QUESTIONS[1]])
    eval_(qf, tmp_path / "out", "--set", "backend.nice=7", judge="fake_nice")
    assert {"nice": 7} in [kw for _, kw in CREATED]  # (the agent's fake LLM takes no nice)


def test_cascade_two_turns(tmp_path, capsys, fake_components, judges):
    qf = write(tmp_path / "question.jsonl", [QUESTIONS[2]])
    out = tmp_path / "out"
    assert eval_(qf, out, "--mode", "cascade", "--turns", "2", "--gap", "3", "--set", "cascade.tts=fake") == 0
    lines = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert [(r["question_id"], r["turn"], r["mode"]) for r in lines] == [("131", 1, "cascade"), ("131", 2, "cascade")]
    assert [r["question"] for r in lines] == ["What is a cat?", "And a dog?"]
    # each turn's answer is the cascade's "agent_turn" text (as heard) of the reply in its window
    run = json.loads(open(lines[0]["files"]["json"]).read())
    heard = [m["text"] for m in run["other_meta"] if m.get("type") == "agent_turn"]
    assert [r["answer"] for r in lines] == heard and heard[0] != heard[1]
    assert all(r["answer_source"] == "agent_turn (as heard)" and r["heard"].startswith("w0") for r in lines)
    assert all(r["reply_cut_off"] is False and r["max_tail_reached"] is False and r["unanswered"] is False
               for r in lines)
    assert "llm_answer" not in lines[0] and lines[0]["cut_by_next_turn"] in (True, False)
    assert all(r["latency_s"] is not None and r["latency_s"] >= 0 for r in lines)
    # the second turn is judged with the first as context
    assert "What is a cat?" in judges["prompts"][1] and lines[0]["answer"] in judges["prompts"][1]
    printed = capsys.readouterr().out
    assert "| stem, turn 1 | 1 | 7.00 |" in printed and "| stem, turn 2 | 1 | 7.00 |" in printed
    assert "| **overall, all turns** | 2 | 7.00 |" in printed


def test_unknown_category_is_refused(tmp_path, capsys, fake_components, judges):
    qf = write(tmp_path / "question.jsonl", QUESTIONS)
    err = refused(capsys, qf, tmp_path / "out", "--categories", "stem,maths")
    assert "has no question in maths; its categories are humanities, reasoning, stem, writing" in err


# ---------------------------------------------------------------------------- --reference
def resolved(path: str) -> str:  # (eval.json records the reference file's absolute path)
    from pathlib import Path

    return str(Path(path).resolve())


def ref_answer(qid, *turns) -> dict:  # FastChat's reference_answer/gpt-4.jsonl format
    return {"question_id": qid, "answer_id": "x", "model_id": "gpt-4", "choices": [{"index": 0, "turns": list(turns)}],
            "tstamp": 1.0}


def test_reference_file_is_used_recorded_and_a_changed_one_needs_rejudge(tmp_path, capsys, fake_components, judges,
                                                                        agent_runs):
    import hashlib

    qs = [QUESTIONS[1], {"question_id": 102, "category": "reasoning", "turns": ["Is fire hot?"]}, QUESTIONS[2]]
    qf = write(tmp_path / "question.jsonl", qs)
    rf = write(tmp_path / "gpt-4.jsonl", [ref_answer(101, "Ice is frozen water.", "-"), ref_answer(131, "Stem ref.")])
    out = tmp_path / "out"
    assert eval_(qf, out, "--reference", rf) == 0
    printed = capsys.readouterr()
    # 101: the file's answer, not the question's own "Yes."; 131 (stem): the file is not used; 102: none anywhere
    p101, p102, p131 = judges["prompts"]
    assert "<<<BEGIN REFERENCE ANSWER, TURN 1>>>\nIce is frozen water.\n" in p101 and "Yes." not in p101
    assert "REFERENCE ANSWER" not in p102 and "REFERENCE ANSWER" not in p131
    lines = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert [r["reference"] for r in lines] == ["Ice is frozen water.", None, None]
    assert "warning: 1 math/reasoning/coding question(s) have no reference answer (neither in --reference " \
        f"{rf} nor their own \"reference\"), and are judged without one, unlike FastChat's MT-Bench: 102" \
        in " ".join(printed.err.split())
    assert "judged without a reference answer (FastChat's MT-Bench has one): 102" in (out / "results.md").read_text()
    sha = hashlib.sha256((tmp_path / "gpt-4.jsonl").read_bytes()).hexdigest()
    assert json.loads((out / "eval.json").read_text())["reference_answers"] == {"path": resolved(rf), "sha256": sha}
    # another file, same answers where they are used (131 is stem): a plain resume, nothing re-rated
    rf2 = write(tmp_path / "gpt-4b.jsonl", [ref_answer(101, "Ice is frozen water."), ref_answer(131, "Other.")])
    judges.update(n=0)
    assert eval_(qf, out, "--reference", rf2) == 0 and judges["n"] == 0
    assert json.loads((out / "eval.json").read_text())["reference_answers"]["path"] == resolved(rf2)
    # another answer for 101 (or no file: the question's own): refused, then --rejudge re-rates 101 alone
    rf3 = write(tmp_path / "gpt-4c.jsonl", [ref_answer(101, "Ice is cold, 0 C.")])
    err = refused(capsys, qf, out, "--reference", rf3)
    assert f"has ratings made with other reference answers than now (questions 101; eval.json has --reference " \
        f"{resolved(rf2)}); give --rejudge" in err
    assert "other reference answers than now (questions 101; " in refused(capsys, qf, out)
    # (eval.json not changed by those)
    assert json.loads((out / "eval.json").read_text())["reference_answers"]["path"] == resolved(rf2)
    runs, judges["replies"] = agent_runs["main"], ["Rating: [[9]]"]
    assert eval_(qf, out, "--reference", rf3, "--rejudge") == 0
    assert judges["n"] == 1 and "Ice is cold, 0 C." in judges["prompts"][-1] and agent_runs["main"] == runs
    lines = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert [(r["question_id"], r["rating"], r["reference"]) for r in lines] == \
        [("101", 9.0, "Ice is cold, 0 C."), ("102", 7.0, None), ("131", 7.0, None)]
    assert json.loads((out / "eval.json").read_text())["reference_answers"]["path"] == resolved(rf3)
    # a bad line is named before anything runs
    bad = write(tmp_path / "bad.jsonl", [ref_answer(101, "x"), '{"question_id": 102, "choices": [{}]}'])
    assert f"{bad}:2: a reference answer needs question_id and choices[0].turns" in \
        refused(capsys, qf, tmp_path / "out2", "--reference", bad)


def test_grade_uses_todays_references_and_the_first_turns_in_context(judges):
    from kame.eval.mtbench import grade

    recs = [{"question": "2 + 2?", "answer": "Four.", "reference": "An earlier reference."},
            {"question": "And 3 + 3?", "answer": "Seven.", "reference": None}]
    with asyncio.Runner() as runner:
        grade(Judges(), runner, recs, 5.0, "test_judge", refs=["Four (2+2).", "Six."])
    assert [r["reference"] for r in recs] == ["Four (2+2).", "Six."]
    second = judges["prompts"][1]
    assert "Four (2+2)." in second and "Six." in second and "An earlier reference." not in second


def test_reference_per_turn_and_an_edited_question_file(tmp_path, capsys, fake_components, judges, agent_runs):
    q = {"question_id": 111, "category": "math", "turns": ["Two plus two?", "And three plus three?"]}
    qf = write(tmp_path / "question.jsonl", [q])
    rf = write(tmp_path / "gpt-4.jsonl", [ref_answer(111, "Four, from the file.")])  # turn 1 only
    out, TWO = tmp_path / "out", ("--categories", "math", "--turns", "2", "--gap", "1")
    assert eval_(qf, out, *TWO, "--reference", rf) == 0
    printed = capsys.readouterr()
    lines = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert [r["reference"] for r in lines] == ["Four, from the file.", None]
    # turn 2 is rated with turn 1's reference as context, and no reference of its own
    assert "<<<BEGIN REFERENCE ANSWER, TURN 1>>>\nFour, from the file.\n" in judges["prompts"][1]
    assert "REFERENCE ANSWER, TURN 2" not in judges["prompts"][1]
    # the turn without one is named, in the warning and in results.md alike
    assert "unlike FastChat's MT-Bench: 111 turn 2" in " ".join(printed.err.split())
    assert "judged without a reference answer (FastChat's MT-Bench has one): 111 turn 2" in \
        (out / "results.md").read_text()
    # the question file gets its own references: turn 2's changes (turn 1 keeps the file's), with the same
    # --reference file: refused, and not blamed on the file
    write(tmp_path / "question.jsonl", [{**q, "reference": ["Four.", "Six."]}])
    err = refused(capsys, qf, out, *TWO, "--reference", rf)
    assert "other reference answers than now (questions 111; the --reference eval.json has: the questions' own " \
        "\"reference\" changed, or a --rejudge was cut short); give --rejudge" in err
    # --rejudge re-rates turn 2 alone (turn 1's reference, its context, is the same)
    judges.update(n=0)
    runs = agent_runs["main"]
    assert eval_(qf, out, *TWO, "--reference", rf, "--rejudge") == 0
    lines = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert judges["n"] == 1 and agent_runs["main"] == runs
    assert [r["reference"] for r in lines] == ["Four, from the file.", "Six."]
    assert "judged without a reference" not in (out / "results.md").read_text()


def test_a_question_file_with_a_lone_surrogate_escape_is_refused_before_anything_runs(tmp_path):
    """(was: read, then the question's TTS failed: "the agent failed (UnicodeEncodeError ...)"); an
    escaped pair is one character, and fine."""
    pair = write(tmp_path / "pair.jsonl", ['{"question_id": 1, "category": "stem", "turns": ["Why \\ud83d\\ude00?"]}'])
    assert read_questions(pair)[0].turns == ["Why \U0001F600?"]
    for line in ('{"question_id": 1, "category": "stem", "turns": ["What is two plus \\ud800 two?"]}',
                 '{"question_id": 1, "category": "stem", "turns": ["Why?"], "reference": ["Because \\udfff."]}',
                 '{"question_id": "q\\ud800", "category": "humanities", "turns": ["Why?"]}'):
        bad = write(tmp_path / "surr.jsonl", [QUESTIONS[1], line])
        with pytest.raises(ConfigError, match=r"surr\.jsonl:2: a lone surrogate \\u(d800|dfff) .*fix or remove the "
                                              r"escape"):
            read_questions(bad)
