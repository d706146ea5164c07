"""kame eval mtbench: questions read and filtered, ratings parsed, the judge's prompt, and an end
to end run (espeak questions, a tiny random front-end with fake STT/LLM, a scripted judge)."""

from __future__ import annotations

import asyncio
import json

import pytest

from kame import registry
from kame.backend.types import ChatMessage
from kame.cli import main
from kame.errors import ConfigError
from kame.eval.judge import judge_messages, parse_rating
from kame.eval.mtbench import read_questions, table
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
    with pytest.raises(ConfigError, match="no such question file"):
        read_questions(tmp_path / "missing.jsonl")
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
    short = write(tmp_path / "short.jsonl", [{"question_id": 1, "category": "stem", "turns": ["One?"]}])
    with pytest.raises(ConfigError, match="has 1 turn.*--turns 2"):
        read_questions(short, turns=2)


# ---------------------------------------------------------------------------- judge
@pytest.mark.parametrize("reply, rating", [
    ("Clear and correct. Rating: [[8]]", 8.0),
    ("[[ 7.5 ]]", 7.5),
    ("First I thought [[3]], but on reflection [[6]].", 6.0),  # the last one
    ("No brackets here. Rating: 4", 4.0),
    ("I'd give it 9/10.", 9.0),
    ("Score [5]", 5.0),
    ("Rating: [[11]]", None),  # outside 1..10: not guessed
    ("Rating: [[0]]", None),
    ("A fine answer overall.", None),
    ("", None),
])
def test_parse_rating(reply, rating):
    assert parse_rating(reply) == rating


def test_judge_prompt_has_question_answer_and_reference():
    msgs = judge_messages("Is ice cold?", "Yes, very.", reference="Yes, ice is cold.")
    assert all(isinstance(m, ChatMessage) for m in msgs) and msgs[0].role == "system"
    text = msgs[-1].content
    assert "Is ice cold?" in text and "Yes, very." in text and "Yes, ice is cold." in text
    assert "[[" in text and "reference" in text.lower()
    plain = judge_messages("Who was Plato?", "A philosopher.")[-1].content
    assert "Who was Plato?" in plain and "A philosopher." in plain and "reference" not in plain.lower()
    second = judge_messages("And Kant?", "Also one.", history=[("Who was Plato?", "A philosopher.")])[-1].content
    assert second.index("Who was Plato?") < second.index("A philosopher.") < second.index("And Kant?") \
        < second.index("Also one.") and "turn 2" in second
    assert "said nothing" in judge_messages("Q?", "")[-1].content  # an empty answer is shown as such


def test_table_per_category_and_overall():
    recs = [{"category": "stem", "rating": 6.0, "latency_s": 0.5}, {"category": "stem", "rating": 8.0, "latency_s": 1.5},
            {"category": "reasoning", "rating": None, "latency_s": None}]
    lines = table(recs, ("reasoning", "stem", "humanities")).splitlines()
    assert lines[2] == "| reasoning | 1 | – | never | 1 |"
    assert lines[3] == "| stem | 2 | 7.00 | 0.50 | 0 |"
    assert lines[4] == "| **overall** | 3 | 7.00 | 1.50 | 1 |" and len(lines) == 5


# ---------------------------------------------------------------------------- end to end
JUDGE = {"n": 0, "replies": []}


class DeadLLM(ScriptedLLM):
    async def stream_chat(self, messages, *, max_tokens=None, temperature=None):
        JUDGE["n"] += 1
        raise ConnectionError("judge down")
        yield ""


class Judges(ScriptedLLM):
    """Each call replies the next of JUDGE["replies"] (then "[[7]]")."""

    async def stream_chat(self, messages, *, max_tokens=None, temperature=None):
        JUDGE["n"] += 1
        JUDGE.setdefault("prompts", []).append(messages[-1].content)
        reply = JUDGE["replies"].pop(0) if JUDGE["replies"] else "Fine. Rating: [[7]]"
        await asyncio.sleep(0)
        yield reply


@pytest.fixture
def judges():
    JUDGE.update(n=0, replies=[], prompts=[])
    registry.register("llm", "test_judge", lambda arg=None, **kw: Judges())
    registry.register("llm", "test_dead_judge", lambda arg=None, **kw: DeadLLM())
    yield JUDGE
    for scheme in ("test_judge", "test_dead_judge"):
        registry._ENTRIES.get("llm", {}).pop(scheme, None)


AGENT = ["--voice", "espeak:en-us", "--tail", "1.0", "--fast", "--set", "frontend.spec=random:tiny",
         "--set", "codec.spec=mimi:random-tiny", "--set", "backend.stt=fake", "--set", "backend.llm=fake",
         "--set", "runtime.vad=energy", "--set", "backend.retry_s=0.1"]


def test_end_to_end_results_table_and_resume(tmp_path, capsys, fake_components, judges):
    qf = write(tmp_path / "question.jsonl", QUESTIONS[:3])  # writing is filtered out: 2 questions
    out = tmp_path / "out"
    judges["replies"] = ["Wrong. Rating: [[3]]", "I cannot rate this."]
    rc = main(["eval", "mtbench", qf, "-o", str(out), "--judge", "test_judge", *AGENT])
    assert rc == 0
    printed = capsys.readouterr().out
    lines = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert [(r["question_id"], r["category"], r["rating"]) for r in lines] == [("101", "reasoning", 3.0),
                                                                                ("131", "stem", None)]
    r = lines[0]
    assert r["question"] == "Is ice cold?" and r["mode"] == "tandem" and r["judge_reply"] == "Wrong. Rating: [[3]]"
    assert r["answer"] and isinstance(r["answer"], str) and r["frontend_random"] is True
    assert "answer" in r["llm_answer"]  # the fake LLM's "answer N", fed to the front-end
    assert r["latency_s"] is None or r["latency_s"] >= 0
    for f in r["files"].values():
        assert (tmp_path / f).exists() or __import__("pathlib").Path(f).exists()
    run = json.loads(open(r["files"]["json"]).read())
    assert run["components"]["frontend"] == "random:tiny"
    # the reference went to the judge with the question and the agent's answer
    assert "Yes." in judges["prompts"][0] and "Is ice cold?" in judges["prompts"][0] and r["answer"] in judges["prompts"][0]
    assert "| reasoning | 1 | 3.00 |" in printed and "| stem | 1 | – |" in printed
    assert "| **overall** | 2 | 3.00 |" in printed and "RANDOM WEIGHTS" in printed
    assert "| **overall** | 2 | 3.00 |" in (out / "results.md").read_text()
    # resume: both answered, nothing is run or judged again
    judges["n"] = 0
    assert main(["eval", "mtbench", qf, "-o", str(out), "--judge", "test_judge", *AGENT]) == 0
    assert judges["n"] == 0 and len((out / "results.jsonl").read_text().splitlines()) == 2
    assert "2 already in" in capsys.readouterr().out
    # another mode into the same folder is refused, not mixed
    with pytest.raises(ConfigError, match="holds results of --mode tandem"):
        from kame.eval.mtbench import load_done

        load_done(out / "results.jsonl", "cascade", 1)


def test_judge_failures_are_skipped_then_stop(tmp_path, capsys, fake_components, judges):
    qs = [{"question_id": i, "category": "stem", "turns": [f"Question {i}?"]} for i in range(6)]
    qf = write(tmp_path / "question.jsonl", qs)
    out = tmp_path / "out"
    rc = main(["eval", "mtbench", qf, "-o", str(out), "--judge", "test_dead_judge", "--limit", "1", *AGENT])
    assert rc == 1  # the question is skipped and said so, not written
    err = capsys.readouterr().err
    assert "the judge failed (ConnectionError: judge down); skipped" in err
    assert not (out / "results.jsonl").exists() or not (out / "results.jsonl").read_text().strip()
    # five failures in a row: the judge is down, the evaluation stops (not 6 questions' runs)
    judges["n"] = 0
    assert main(["eval", "mtbench", qf, "-o", str(out), "--judge", "test_dead_judge", *AGENT]) == 1
    err = capsys.readouterr().err
    assert "failed on 5 questions in a row" in err and "rerun to resume" in err and judges["n"] == 5


def test_cascade_two_turns(tmp_path, capsys, fake_components, judges):
    qf = write(tmp_path / "question.jsonl", [QUESTIONS[2]])
    out = tmp_path / "out"
    rc = main(["eval", "mtbench", qf, "-o", str(out), "--judge", "test_judge", "--mode", "cascade", "--turns", "2",
               "--gap", "3", "--set", "cascade.tts=fake", *AGENT])
    assert rc == 0
    lines = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert [(r["question_id"], r["turn"], r["mode"]) for r in lines] == [("131", 1, "cascade"), ("131", 2, "cascade")]
    assert [r["question"] for r in lines] == ["What is a cat?", "And a dog?"]
    # each turn's answer is the cascade's reply in its own window (the fake LLM counts its replies)
    assert "answer" in lines[0]["answer"] and "answer" in lines[1]["answer"] and lines[0]["answer"] != lines[1]["answer"]
    assert "llm_answer" not in lines[0] and "cut_by_next_turn" in lines[0]
    assert all(r["latency_s"] is not None and r["latency_s"] >= 0 for r in lines)
    # the second turn is judged with the first as context
    assert "What is a cat?" in judges["prompts"][1] and lines[0]["answer"] in judges["prompts"][1]
    assert "| stem | 2 | 7.00 |" in capsys.readouterr().out
