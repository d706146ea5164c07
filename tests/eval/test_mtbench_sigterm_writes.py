"""kame eval mtbench writes its files whole when SIGTERM comes while it writes them (review238
finding 5): kame run's files of a question (runs/ID.*) and a question's lines of results.jsonl
(was: Terminated raised wherever it came, e.g. between the two turns' lines; scripted judge,
fake agent), then exits 143."""

from __future__ import annotations

import json
import os
import signal

from . import test_mtbench
from .test_mtbench import QUESTIONS, eval_, write
from .test_mtbench_sigterm import sigterm_guard

judges = test_mtbench.judges  # (fixtures, used by name)
agent_runs = test_mtbench.agent_runs
__all__ = ["sigterm_guard"]


def test_sigterm_while_a_questions_run_is_written_writes_it_whole(tmp_path, capsys, fake_components, judges,
                                                                   agent_runs, monkeypatch, sigterm_guard):
    from kame.runtime import filerun

    real = filerun.write_run

    def terminated_write_run(*args, **kw):
        if len(agent_runs["conversations"]) > 1:  # (the question's, not the warm-up's)
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kw)

    monkeypatch.setattr(filerun, "write_run", terminated_write_run)
    qf = write(tmp_path / "question.jsonl", [QUESTIONS[2]])
    out = tmp_path / "out"
    assert eval_(qf, out) == 143
    assert "terminated (SIGTERM)" in capsys.readouterr().err
    assert json.loads((out / "runs" / "131.json").read_text())["summary"]  # (was: not written)
    assert not (out / "results.jsonl").exists() and judges["n"] == 0


def test_sigterm_between_a_questions_lines_of_results_writes_them_all(tmp_path, capsys, fake_components, judges,
                                                                       agent_runs, monkeypatch, sigterm_guard):
    from kame.eval import mtbench

    dumps = json.dumps

    class TerminatingJson:  # (mtbench's json: SIGTERM as the second record line of results.jsonl is made)
        loads = staticmethod(json.loads)

        @staticmethod
        def dumps(obj, *args, **kw):
            if isinstance(obj, dict) and "turns_asked" in obj and obj.get("turn") == 2:
                os.kill(os.getpid(), signal.SIGTERM)
            return dumps(obj, *args, **kw)

    monkeypatch.setattr(mtbench, "json", TerminatingJson)
    qf = write(tmp_path / "question.jsonl", [QUESTIONS[2]])
    out = tmp_path / "out"
    assert eval_(qf, out, "--turns", "2", "--gap", "1") == 143  # (--gap 1: 4 s of audio, not its default 33 s)
    assert "terminated (SIGTERM)" in capsys.readouterr().err
    lines = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert [r["turn"] for r in lines] == [1, 2]  # (was: [1], half the question)
