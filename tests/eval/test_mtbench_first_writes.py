"""kame eval mtbench that fails before question 1 (a judge at a closed port, Ctrl-C while the agent
loads) leaves its -o folder as it found it: a fresh one is removed again, with the folders made
for it (was: OUT/eval.json and an empty OUT/runs/ left, as if an evaluation had started), and one
with earlier results keeps every file byte for byte (was: a --rejudge's eval.json rewritten to
the unreachable judge). Scripted judges and the fake agent of test_mtbench."""

from __future__ import annotations

import socket

from . import test_mtbench
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


def test_a_folder_with_results_is_left_as_it_was(tmp_path, capsys, monkeypatch, fake_components, judges, agent_runs):
    qf = write(tmp_path / "question.jsonl", QUESTIONS[1:3])
    out = tmp_path / "out"
    assert eval_(qf, out, "--limit", "1") == 0  # 101 rated, 131 not run yet
    before = tree(out)
    dead = closed_judge(monkeypatch)
    # a resume (131 to run) and a --rejudge (101's answer to re-rate: was eval.json's judge rewritten to it)
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
