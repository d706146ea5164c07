"""kame eval pairwise and SIGTERM (docker stop, systemd, timeout), as kame eval mtbench: one while
the judge loads ends the comparison as Ctrl-C does, OUT_PAIR left as it was, exit 143 (was: killed
at once, a fresh OUT_PAIR with pairwise.json and an embedded judge's child left); one while a pair
is judged keeps the pairs judged, the judge closed, exit 143. Scripted judges and folders of
test_pairwise; test_mtbench_sigterm's guard (pytest must not die of a SIGTERM kame does not take)."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from kame import registry

from . import test_mtbench_sigterm, test_pairwise
from .test_pairwise import Judge, lines, pairwise
from .test_pairwise_first_writes import two_folders

judges = test_pairwise.judges  # (fixtures, used by name)
sigterm_guard = test_mtbench_sigterm.sigterm_guard


def test_sigterm_while_the_judge_loads_leaves_no_fresh_folder(tmp_path, capsys, monkeypatch, judges, sigterm_guard):
    from kame.eval import pairwise as pairwise_module

    def loading(*args, **kw):  # (an embedded judge loading: SIGTERM comes there)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)  # (the handler raises before this ends)
        raise AssertionError("SIGTERM did not end the load")

    monkeypatch.setattr(pairwise_module, "open_judge", loading)
    a, b = two_folders(tmp_path)
    out = tmp_path / "new" / "pair"
    assert pairwise(a, b, out) == 143  # (was: killed at once; here the guard's error, 1)
    err = " ".join(capsys.readouterr().err.split())
    assert f"terminated (SIGTERM): the comparison ends here; {out} is left as it was (no pair was judged)" in err
    assert not (tmp_path / "new").exists()  # (was: new/pair/pairwise.json)
    assert signal.getsignal(signal.SIGTERM).__name__ == "guard"  # (the handler before given back)


class TermJudge(Judge):
    """Judges as test_pairwise's Judge; SIGTERM comes (once) while the second pair is judged."""

    asked, closed = [], []

    async def stream_chat(self, messages, *, max_tokens=None, temperature=None):
        TermJudge.asked.append(1)
        if len(TermJudge.asked) == 4:  # (probe, then two orders of the first pair: into the second)
            os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.sleep(1)
        async for x in super().stream_chat(messages, max_tokens=max_tokens, temperature=temperature):
            yield x

    async def aclose(self):
        TermJudge.closed.append(True)


def test_sigterm_while_a_pair_is_judged_keeps_the_pairs_judged(tmp_path, capsys, judges, sigterm_guard):
    registry.register("llm", "test_term_pair_judge", lambda arg=None, **kw: TermJudge())
    try:
        TermJudge.asked.clear()
        TermJudge.closed.clear()
        a, b = two_folders(tmp_path)
        out = tmp_path / "pair"
        assert pairwise(a, b, out, judge="test_term_pair_judge") == 143
        err = " ".join(capsys.readouterr().err.split())
        assert f"the pairs judged are kept in {out / 'results.jsonl'} (a rerun resumes)" in err
        assert TermJudge.closed and [r["question_id"] for r in lines(out)] == ["101"]
        assert pairwise(a, b, out, judge="test_term_pair_judge") == 0  # a rerun judges the pair left
        assert [r["question_id"] for r in lines(out)] == ["101", "102"]
    finally:
        registry._ENTRIES.get("llm", {}).pop("test_term_pair_judge", None)


class CloseTermJudge(Judge):
    """Judges as test_pairwise's Judge; SIGTERM comes while it closes at the run's end (docker stop then)."""

    closed = []

    async def aclose(self):
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.sleep(0.2)  # (was: the handler raised here, the close cut)
        CloseTermJudge.closed.append(True)


@pytest.fixture
def registered(monkeypatch):
    """Registers a test judge class as LLM spec NAME for one test (gone after it)."""
    def register(name, judge):
        monkeypatch.setitem(registry._ENTRIES, "llm", dict(registry._ENTRIES.get("llm", {})))
        registry.register("llm", name, lambda arg=None, **kw: judge())
    return register


def test_sigterm_while_the_judge_closes_lets_it_close(tmp_path, capsys, judges, sigterm_guard, registered):
    registered("test_close_term_judge", CloseTermJudge)
    CloseTermJudge.closed.clear()
    a, b = two_folders(tmp_path)
    out = tmp_path / "pair"
    assert pairwise(a, b, out, judge="test_close_term_judge") == 143
    err = " ".join(capsys.readouterr().err.split())
    assert CloseTermJudge.closed  # (was: cut inside aclose, close_runner skipped: an embedded judge's child left)
    assert f"the pairs judged are kept in {out / 'results.jsonl'} (a rerun resumes)" in err, err
    assert [r["question_id"] for r in lines(out)] == ["101", "102"] and not (out / "results.md").exists()
    assert signal.getsignal(signal.SIGTERM).__name__ == "guard"


class FirstPairTermJudge(Judge):
    """Judges as test_pairwise's Judge; SIGTERM comes (once) while the first pair is judged."""

    asked = []

    async def stream_chat(self, messages, *, max_tokens=None, temperature=None):
        FirstPairTermJudge.asked.append(1)
        if len(FirstPairTermJudge.asked) == 2:  # (the probe, then the first pair's first order)
            os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.sleep(1)
        async for x in super().stream_chat(messages, max_tokens=max_tokens, temperature=temperature):
            yield x


def test_sigterm_during_the_first_pair_says_nothing_is_kept(tmp_path, capsys, judges, sigterm_guard, registered):
    registered("test_first_term_judge", FirstPairTermJudge)
    FirstPairTermJudge.asked.clear()
    a, b = two_folders(tmp_path)
    out = tmp_path / "pair"
    assert pairwise(a, b, out, judge="test_first_term_judge") == 143
    err = " ".join(capsys.readouterr().err.split())
    assert sorted(p.name for p in out.iterdir()) == [".lock", "pairwise.json"]  # (.lock: the run's, let go)
    # (was: "the pairs judged are kept in OUT_PAIR/results.jsonl", a file that does not exist)
    assert ("terminated (SIGTERM): the comparison ends here; no pair was judged yet "
            f"({out / 'results.jsonl'} not written)") in err, err


def test_mtbench_says_kept_only_when_results_jsonl_holds_some(tmp_path):
    """mtbench's line is the same helper's (kame.eval.stopping.sigterm_line): a SIGTERM during question 1
    no longer says its results are "kept in OUT/results.jsonl"."""
    from kame.eval.firstwrites import FirstWrites
    from kame.eval.mtbench import sigterm_line

    out = tmp_path / "out"
    first = FirstWrites(out)
    assert sigterm_line(first, out).endswith(f"{out} is left as it was (no question was run)")
    first.keep()
    out.mkdir()
    assert sigterm_line(first, out).endswith(f"no question was rated yet ({out / 'results.jsonl'} not written)")
    (out / "results.jsonl").write_text('{"question_id": "81"}\n')
    assert sigterm_line(first, out).endswith(f"the questions rated are kept in {out / 'results.jsonl'} (a rerun resumes)")
