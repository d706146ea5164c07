"""kame eval mtbench that fails before question 1 (a judge at a closed port, Ctrl-C while the agent
loads) leaves its -o folder as it found it: a fresh one is removed again, with the folders made
for it (was: OUT/eval.json and an empty OUT/runs/ left, as if an evaluation had started), and one
with earlier results keeps every file byte for byte (was: a --rejudge's eval.json rewritten to
the unreachable judge). A SIGTERM before question 1 (while OUT is made, in the warm-up, also when
the process leaves at once for a model still loading) says "OUT is left as it was" (was: "kept in
OUT/results.jsonl" for an OUT removed, or nothing); one while the agent closes at the end is said
as SIGTERM, exit 143 (was: "interrupted", 130). `-o x/../y` leaves no x behind. Scripted judges
and the fake agent of test_mtbench."""

from __future__ import annotations

import json
import os
import signal
import socket

import pytest

from . import test_mtbench, test_mtbench_sigterm
from .test_mtbench import QUESTIONS, eval_, refused, write

judges = test_mtbench.judges  # (test_mtbench's scripted judges and agent counter: fixtures, used by name)
agent_runs = test_mtbench.agent_runs


def closed_judge(monkeypatch) -> str:
    """An openai: judge whose server is a port nobody listens on (connection refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{port}/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "test")
    return "openai:gpt-4.1"


def tree(folder) -> dict:
    """Every file under ``folder`` (relative path -> bytes) and every folder (-> None)."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in folder.rglob("*")}


def test_a_judge_that_cannot_be_reached_leaves_no_fresh_folder(tmp_path, capsys, monkeypatch, fake_components,
                                                               agent_runs):
    qf = write(tmp_path / "question.jsonl", [QUESTIONS[1]])
    out = tmp_path / "new" / "out"  # (its parent made for it too)
    err = refused(capsys, qf, out, judge=closed_judge(monkeypatch))
    assert "the judge openai:gpt-4.1 failed a first short request" in err and "cannot connect" in err, err
    assert "nothing was run" in err and agent_runs["main"] == 0
    assert not (tmp_path / "new").exists()  # (was: out/eval.json and an empty out/runs/)
    # an empty folder given as -o stays, empty
    out.mkdir(parents=True)
    refused(capsys, qf, out, judge=closed_judge(monkeypatch))
    assert out.is_dir() and tree(out) == {}


def test_an_eval_json_without_results_binds_no_next_run(tmp_path, capsys, fake_components, judges, agent_runs):
    """Nothing was run beside it (a dead judge's OUT once held eval.json alone; a corrupt one with no
    results beside it is rewritten likewise): another mode, agent or voice is no "other results" (was:
    refused by the settings the dead judge's run had written). (test_mtbench's dead-judge test: that
    nothing is run nor left by it, the test above says.)"""
    qf = write(tmp_path / "question.jsonl", [QUESTIONS[1]])
    out = tmp_path / "out"
    assert "the judge test_dead_judge failed a first short request (ConnectionError: judge down); nothing was " \
        "run" in refused(capsys, qf, out, judge="test_dead_judge")
    out.mkdir()
    (out / "eval.json").write_text(json.dumps({"mode": "tandem", "turns": 1, "judge": "test_dead_judge"}))
    assert eval_(qf, out, "--mode", "cascade", "--set", "runtime.silence_db=-40") == 0
    settings = json.loads((out / "eval.json").read_text())
    assert settings["mode"] == "cascade" and settings["agent"]["set"][-1] == "runtime.silence_db=-40"


def test_a_folder_with_results_is_left_as_it_was(tmp_path, capsys, monkeypatch, fake_components, judges, agent_runs):
    qf = write(tmp_path / "question.jsonl", QUESTIONS[1:3])
    out = tmp_path / "out"
    assert eval_(qf, out, "--limit", "1") == 0  # 101 rated, 131 not run yet
    before = tree(out)
    dead = closed_judge(monkeypatch)
    # a --rejudge (101's answer to re-rate: was eval.json's judge rewritten to it; 131, never run, is not run by it)
    assert "failed a first short request" in refused(capsys, qf, out, "--rejudge", judge=dead)
    assert tree(out) == before
    assert "failed a first short request" in refused(capsys, qf, out, "--reference", write(
        tmp_path / "ref.jsonl", [{"question_id": 101, "choices": [{"turns": ["Yes."]}]}]), "--rejudge", judge=dead)
    assert tree(out) == before  # (was: the reference file recorded in eval.json too)
    assert agent_runs["main"] == 1


def test_ctrl_c_while_the_agent_loads_leaves_no_fresh_folder(tmp_path, capsys, monkeypatch, fake_components, judges,
                                                             agent_runs):
    from kame.bench import latency

    async def interrupted(spec, nice=0):  # (the warm-up: the agent's LLM warmed before its first run)
        raise KeyboardInterrupt

    monkeypatch.setattr(latency, "warm_up_llm", interrupted)
    qf = write(tmp_path / "question.jsonl", [QUESTIONS[1]])
    out = tmp_path / "out"
    assert eval_(qf, out) == 130
    assert judges["probes"] == 1 and not out.exists()  # (the judge answered; Ctrl-C came after: nothing kept)


def test_sigterm_while_the_agent_loads_leaves_no_fresh_folder(tmp_path, capsys, monkeypatch, fake_components, judges,
                                                              agent_runs):
    from kame.bench import latency
    from kame.eval.stopping import Terminated

    async def terminated(spec, nice=0):  # (as kame.eval.stopping raises it for a SIGTERM there)
        raise Terminated

    monkeypatch.setattr(latency, "warm_up_llm", terminated)
    qf = write(tmp_path / "question.jsonl", [QUESTIONS[1]])
    out = tmp_path / "out"
    assert eval_(qf, out) == 143
    assert f"terminated (SIGTERM): the evaluation ends here; {out} is left as it was (no question was run)" in \
        capsys.readouterr().err and not out.exists()


def test_first_writes_undone_is_not_kept():
    from kame.eval.firstwrites import FirstWrites

    first = FirstWrites("unused")
    first.undo()
    assert first.kept is False  # (was: True after an undo, so a SIGTERM line said "kept in OUT/results.jsonl")


@pytest.mark.parametrize("existing", [False, True])
def test_dot_dot_in_out_leaves_no_folder_behind(tmp_path, existing):
    from kame.eval.firstwrites import FirstWrites
    from kame.paths import check_output_folder

    if existing:
        (tmp_path / "y").mkdir()  # (an empty folder of the user's: stays)
    for given in ("x/../y", "a/b/../../y/d"):
        out = tmp_path / given
        first = FirstWrites(out, files=["eval.json"], folders=["runs"])
        check_output_folder(out, flag="-o")
        first.lock("eval mtbench")  # (as mtbench's: before anything is written in OUT)
        (out / "runs").mkdir()
        (out / "eval.json").write_text("{}")
        first.undo()
        # (was: x, or a and a/b, left: "x/.." listed as made, its rmdir failed; an empty y removed as "x/../y")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["y"] * existing, given


def sigterm_record(monkeypatch):
    """FileAgent.play as when SIGTERM ended the warm-up before its first frame (the agent's start
    waited on something else than an in-process load: an LLM child loading its model)."""
    from kame.runtime import filerun

    monkeypatch.setattr(filerun.FileAgent, "play",
                        lambda self, pcm, fast=False, **kw: {"interrupted": True, "interrupted_by": "SIGTERM",
                                                             "frames": 0})


def test_sigterm_in_the_warm_up_says_out_is_left_as_it_was(tmp_path, capsys, monkeypatch, fake_components, judges,
                                                           agent_runs):
    sigterm_record(monkeypatch)
    qf = write(tmp_path / "question.jsonl", [QUESTIONS[1]])
    out = tmp_path / "out"
    assert eval_(qf, out) == 143
    err = capsys.readouterr().err  # (was: "the questions rated are kept in OUT/results.jsonl" for an OUT removed)
    assert f"terminated (SIGTERM): the evaluation ends here; {out} is left as it was (no question was run)" in err, err
    assert not out.exists()


def test_sigterm_in_the_warm_up_while_a_model_loads_says_so_before_leaving(tmp_path, capsys, monkeypatch,
                                                                          fake_components, judges, agent_runs):
    from kame.backend import childproc

    def exit_if_loading(status, say=None):  # (a load in a thread still running: the process leaves at once)
        say("the agent was still loading")
        raise SystemExit(status)  # (os._exit, in a test)

    sigterm_record(monkeypatch)
    monkeypatch.setattr(childproc, "exit_if_loading", exit_if_loading)
    qf = write(tmp_path / "question.jsonl", [QUESTIONS[1]])
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as left:
        eval_(qf, out)
    err = capsys.readouterr().err  # (was: nothing said; OUT removed all the same)
    assert left.value.code == 143 and not out.exists()
    assert f"terminated (SIGTERM): the evaluation ends here; {out} is left as it was (no question was run)" in err, err


sigterm_guard = test_mtbench_sigterm.sigterm_guard  # (a SIGTERM kame does not take fails the test, not pytest)


def test_sigterm_while_out_is_made_leaves_it_as_it_was(tmp_path, capsys, monkeypatch, fake_components, judges,
                                                       agent_runs, sigterm_guard):
    from kame.eval import mtbench

    def made_then_sigterm(path, flag):
        made = check_output_folder(path, flag=flag)
        os.kill(os.getpid(), signal.SIGTERM)
        return made

    check_output_folder = mtbench.check_output_folder
    monkeypatch.setattr(mtbench, "check_output_folder", made_then_sigterm)
    qf = write(tmp_path / "question.jsonl", [QUESTIONS[1]])
    out = tmp_path / "new" / "out"
    assert eval_(qf, out) == 143  # (was: SIGTERM's default, a kill, OUT left with eval.json and runs/)
    assert f"terminated (SIGTERM): the evaluation ends here; {out} is left as it was (no question was run)" in \
        capsys.readouterr().err and not (tmp_path / "new").exists()


def test_sigterm_while_the_agent_closes_is_said_as_sigterm(tmp_path, capsys, monkeypatch, fake_components, judges,
                                                           agent_runs, sigterm_guard):
    from kame.runtime import filerun

    closed = []

    def close(self):  # (the agent's models stopped at the end: seconds, for an embedded LLM's child)
        os.kill(os.getpid(), signal.SIGTERM)
        closed.append(real_close(self))

    real_close = filerun.FileAgent.close
    monkeypatch.setattr(filerun.FileAgent, "close", close)
    qf = write(tmp_path / "question.jsonl", [QUESTIONS[1]])
    out = tmp_path / "out"
    assert eval_(qf, out) == 143  # (was: 130, "kame eval mtbench: interrupted", the close cut short)
    err = capsys.readouterr().err
    assert f"terminated (SIGTERM): the evaluation ends here; the questions rated are kept in {out / 'results.jsonl'}" \
        in err and "interrupted" not in err, err
    assert closed and len((out / "results.jsonl").read_text().splitlines()) == 1
