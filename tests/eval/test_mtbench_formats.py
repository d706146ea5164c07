"""kame eval mtbench's files, found by a QA sweep of kame's formats: a results.jsonl field of the
wrong type or value (was: a traceback, or a rating of 70 averaged on the 1-10 scale), and the agent
of a folder's eval.json with a key more or less than this kame records (was: "another agent ()",
or "voice None there")."""

from __future__ import annotations

import argparse
import json

import pytest

from kame.errors import ConfigError
from kame.eval import mtbench
from kame.eval.mtbench import check_settings

from . import test_mtbench
from .test_mtbench import QUESTIONS, eval_, refused, write

judges = test_mtbench.judges  # (fixtures, used by name)


def test_a_results_field_of_the_wrong_type_is_refused_naming_the_line_and_field(tmp_path, capsys, fake_components,
                                                                                 judges):
    qf = write(tmp_path / "question.jsonl", [QUESTIONS[2]])
    out = tmp_path / "out"
    dead = "test_dead_judge"  # (the folder's judge, never asked: the answer is rated)
    assert eval_(qf, out) == 0  # (eval.json: a dead judge's run leaves none, test_mtbench_first_writes)
    (out / "eval.json").write_text(json.dumps({**json.loads((out / "eval.json").read_text()), "judge": dead}))
    results = out / "results.jsonl"
    good = {"question_id": "131", "category": "stem", "turn": 1, "mode": "tandem", "question": "What is a cat?",
            "answer": "A cat.", "rating": 7.0, "judge": dead, "latency_s": 1.25, "turns_asked": 1}
    for change, said in [({"rating": "7"}, "rating '7' is not a number from 1 to 10"),  # (was: TypeError)
                         ({"rating": 70}, "rating 70 is not a number from 1 to 10"),  # (was: a mean of 70.00)
                         ({"latency_s": "x"}, "latency_s 'x' is not seconds"),  # (was: ValueError)
                         ({"turn": "1"}, "turn '1' is not a whole number >= 1"),
                         ({"category": 5}, "category 5 is not a string")]:
        results.write_text(json.dumps(good) + "\n" + json.dumps({**good, **change}) + "\n")
        err = refused(capsys, qf, out, judge=dead)
        assert f"kame: error: {results}:2: {said}" in err and "Traceback" not in err, err
    results.write_text(json.dumps(good) + "\n")  # (all rated: the judge is not asked)
    capsys.readouterr()
    assert eval_(qf, out, judge=dead) == 0
    assert "| stem | 1 | 7.00 | 1.25 | 0 |" in capsys.readouterr().out


AGENT = {"backend.llm": "fake", "backend.stt": "fake", "cascade.tts": "fake", "frontend.spec": "random:tiny",
         "voice": "espeak:en-us", "set": []}


def _resume(tmp_path, there: dict):
    """check_settings of a folder holding results, whose eval.json records the agent ``there``."""
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    (out / "results.jsonl").write_text('{"question_id": "1"}\n')
    (out / "eval.json").write_text(json.dumps({"mode": "tandem", "turns": 1, "judge": "j", "agent": there,
                                               "asr": False, "answer": "text"}))
    args = argparse.Namespace(mode="tandem", turns=1, judge="j", rejudge=False, asr=False, answer="text")
    return check_settings(out, args, AGENT)


@pytest.mark.parametrize("there, said", [
    ({**AGENT, "frontend.dtype": "float32"},  # a newer kame's folder (was: "another agent ()")
     "(frontend.dtype 'float32' there, a setting this kame does not record (a folder of a newer kame: upgrade kame "
     "to resume it)); give another -o"),
    ({k: v for k, v in AGENT.items() if k != "voice"}, "(voice not recorded there, 'espeak:en-us' now)"),  # (was: None)
    ({**AGENT, "voice": "piper"}, "(voice 'piper' there, 'espeak:en-us' now)"),  # (only the key that differs)
])
def test_an_agent_key_more_or_less_in_eval_json_is_named(tmp_path, there, said):
    with pytest.raises(ConfigError) as exc:
        _resume(tmp_path, there)
    assert said in str(exc.value) and "another agent (" in str(exc.value)


def test_a_key_an_older_kame_did_not_record_resumes_when_it_is_its_default(tmp_path, monkeypatch):
    monkeypatch.setattr(mtbench, "IMPLIED_AGENT", {"voice": "espeak:en-us"}, raising=False)  # (as if voice were new)
    older = {k: v for k, v in AGENT.items() if k != "voice"}
    assert _resume(tmp_path, older)["agent"] == older
    monkeypatch.setattr(mtbench, "IMPLIED_AGENT", {"voice": "piper"})  # that kame spoke with piper: not these answers
    with pytest.raises(ConfigError, match=r"\(voice not recorded there \(a folder of an older kame: 'piper'\), "
                                          r"'espeak:en-us' now\)"):
        _resume(tmp_path, older)
