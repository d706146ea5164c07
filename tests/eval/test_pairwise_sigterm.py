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

from kame import registry

from . import test_mtbench_sigterm, test_pairwise
from .test_pairwise import Judge, folder, lines, pairwise

judges = test_pairwise.judges  # (fixtures, used by name)
sigterm_guard = test_mtbench_sigterm.sigterm_guard


def two_folders(tmp_path):
    return (folder(tmp_path / "a", "tandem", {("101", 1): "GOOD", ("102", 1): "x"}),
            folder(tmp_path / "b", "cascade", {("101", 1): "bad", ("102", 1): "y"}))


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
