"""A second signal after a first one stopped kame data synth / kame data oracle quits at once,
said "... again: quit at once, nothing more written" (review r10): a second SIGTERM (was:
swallowed, the manifest written and the run's own line said as after one), a Ctrl-C after a
SIGTERM (was: ignored during the run, or said "kame data synth: interrupted" while the manifest
was written, none left). run_ended_by_sigterm runs through the bounded runner (run_to_end: a
second SIGTERM inside a task that then ignored its cancellation hung asyncio.run's end)."""

from __future__ import annotations

import asyncio
import json
import os
import signal

import pytest

from kame.cli import main
from kame.runtime import interrupt
from kame.runtime.interrupt import QuitAtOnce, run_ended_by_sigterm

AGAIN = "again: quit at once, nothing more written"


def test_run_ended_by_sigterm_is_bounded(monkeypatch):
    real, used = interrupt.run_to_end, []

    def bounded(main, leave_after=interrupt.LEAVE_AFTER_S):
        used.append(main)
        return real(main, leave_after)

    monkeypatch.setattr(interrupt, "run_to_end", bounded)

    async def work():
        await asyncio.sleep(0)

    assert run_ended_by_sigterm(work) is None and len(used) == 1  # (was: asyncio.run, unbounded)


@pytest.mark.parametrize("second", [signal.SIGTERM, signal.SIGINT])
def test_a_second_signal_after_sigterm_quits(monkeypatch, second):
    real = interrupt.run_to_end
    monkeypatch.setattr(interrupt, "run_to_end", lambda main: real(main, 0.01))
    left = []

    async def stubborn():  # ignores its cancellation a while (it must not hold the quit)
        for _ in range(100):
            try:
                await asyncio.sleep(0)
            except asyncio.CancelledError:
                left.append(True)

    async def work():
        asyncio.ensure_future(stubborn())
        await asyncio.sleep(0)
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), second)
        await asyncio.sleep(10)

    with pytest.raises(QuitAtOnce) as quit:  # (was: "SIGTERM" returned, the second swallowed)
        run_ended_by_sigterm(work)
    assert quit.value.signal == second.name and quit.value.status == (143 if second == signal.SIGTERM else 130)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL or callable(signal.getsignal(signal.SIGTERM))


def test_a_second_sigterm_while_the_tasks_left_end_quits():
    """The second SIGTERM comes as the runner's end cancels a task main left: still handled (was: the default
    action there, the process killed, nothing said)."""
    handler = []

    async def left():
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:  # (the runner's end)
            handler.append(signal.getsignal(signal.SIGTERM))
            if callable(handler[0]):  # (the default would kill this test run)
                os.kill(os.getpid(), signal.SIGTERM)
            raise

    async def work():
        asyncio.ensure_future(left())
        await asyncio.sleep(0)
        os.kill(os.getpid(), signal.SIGTERM)  # (the first: main cancelled, ends; left() is left)
        await asyncio.sleep(10)

    with pytest.raises(QuitAtOnce) as quit:
        run_ended_by_sigterm(work)
    assert callable(handler[0]) and quit.value.signal == "SIGTERM"


def test_a_first_ctrl_c_still_cancels_and_raises():
    ended = []

    async def work():
        try:
            os.kill(os.getpid(), signal.SIGINT)
            await asyncio.sleep(10)
        finally:
            ended.append(True)  # (cancelled: its finally ran)

    with pytest.raises(KeyboardInterrupt) as stop:
        run_ended_by_sigterm(work)
    assert ended and not isinstance(stop.value, QuitAtOnce)


def qa_file(tmp_path):
    pytest.importorskip("espeakng_loader")
    qa = tmp_path / "qa.jsonl"
    qa.write_text("".join(json.dumps({"question": f"What is {n} and {n}?", "answer": f"It is {2 * n}."}) + "\n"
                          for n in range(4)))
    return qa


def synth(tmp_path, qa):
    return main(["data", "synth", str(qa), "-o", str(tmp_path / "syn"), "--llm", "random", "--user-voice",
                 "espeak:en-us+f2", "--agent-voice", "espeak:en-us+m3"])


@pytest.mark.parametrize("second", ["SIGTERM", "SIGINT"])
def test_kame_data_synth_second_signal_in_the_run(tmp_path, capsys, monkeypatch, second):
    from kame.train import synth as module

    qa, real_write, written = qa_file(tmp_path), module.write_dialogue, []

    def write_then_signals(folder, d, **kw):  # SIGTERM, then the second, once the first dialogue is written
        real_write(folder, d, **kw)
        written.append(folder)
        if len(written) == 1:
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), getattr(signal, second))

    monkeypatch.setattr(module, "write_dialogue", write_then_signals)
    assert synth(tmp_path, qa) == (143 if second == "SIGTERM" else 130)  # (was: 143 both)
    said = "terminated (SIGTERM)" if second == "SIGTERM" else "interrupted"
    err = capsys.readouterr().err
    assert err.endswith(f"kame data synth: {said} {AGAIN}\n"), err  # (was: the run's own line, listed)
    assert not (tmp_path / "syn" / "train.jsonl").exists()


def _sigterm_after_the_first_dialogue(real_write):
    """kame data synth's write_dialogue, then a SIGTERM once the first dialogue is written (ends the run)."""
    written = []

    def write_then_sigterm(folder, d, **kw):
        real_write(folder, d, **kw)
        written.append(folder)
        if len(written) == 1:
            os.kill(os.getpid(), signal.SIGTERM)
    return write_then_sigterm


def test_kame_data_synth_ctrl_c_while_it_lists(tmp_path, capsys, monkeypatch):
    from kame.train import synth as module

    qa, write_then_sigterm = qa_file(tmp_path), _sigterm_after_the_first_dialogue(module.write_dialogue)

    def ctrl_c(out):  # (the manifest's write, after the SIGTERM ended the run)
        os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(module, "write_dialogue", write_then_sigterm)
    monkeypatch.setattr(module, "write_folder_manifest", ctrl_c)
    assert synth(tmp_path, qa) == 130
    err = capsys.readouterr().err  # (was: "kame data synth: interrupted", as a first Ctrl-C)
    assert err.endswith(f"kame data synth: interrupted {AGAIN}\n"), err


def test_kame_data_synth_sigterm_while_it_lists(tmp_path, capsys, monkeypatch):
    from kame.train import synth as module

    qa, write_then_sigterm = qa_file(tmp_path), _sigterm_after_the_first_dialogue(module.write_dialogue)

    def sigterm(out):  # (main's write of the manifest, after the run (synth_all's: the first call) ended)
        calls.append(out)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    calls = []

    monkeypatch.setattr(module, "write_dialogue", write_then_sigterm)
    monkeypatch.setattr(module, "write_folder_manifest", sigterm)
    assert synth(tmp_path, qa) == 143
    err = capsys.readouterr().err  # (was: noted as a first, the run's own line)
    assert err.endswith(f"kame data synth: terminated (SIGTERM) {AGAIN}\n"), err


def test_kame_data_oracle_second_sigterm(tmp_path, capsys, monkeypatch):
    from kame.train import reoracle
    from tests.train.test_reoracle import make_set

    make_set(tmp_path)
    before = (tmp_path / "train.jsonl").read_bytes() if (tmp_path / "train.jsonl").exists() else None

    def sigterm_twice(d):
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(reoracle, "write_meta", sigterm_twice)
    assert main(["data", "oracle", str(tmp_path), "--llm", "none"]) == 143
    io = capsys.readouterr()
    assert io.err.endswith(f"kame data oracle: terminated (SIGTERM) {AGAIN}\n"), io.err  # (was: its own line)
    assert "the manifest has" not in io.err
    if before is not None:  # (nothing more written: the manifest as it was)
        assert (tmp_path / "train.jsonl").read_bytes() == before


def test_a_second_sigterm_while_mtbench_settles():
    """kame eval mtbench / pairwise after a first SIGTERM (Terminated): a SIGTERM while the tasks it cut
    settle is the second, QuitAtOnce (was: taken for a cut task's Terminated, lost: a third was needed)."""
    from kame.eval.stopping import settle, stop_on_sigterm

    runner, go = asyncio.Runner(), []

    async def cut_task():  # (a task the first SIGTERM cut, which runs on when the loop runs again)
        await go[0].wait()
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.sleep(10)

    async def begin():
        go.append(asyncio.Event())
        task = asyncio.ensure_future(cut_task())
        await asyncio.sleep(0)
        return task

    task = runner.run(begin())
    restore = stop_on_sigterm()
    try:
        go[0].set()
        with pytest.raises(QuitAtOnce) as quit:
            settle(runner)
        assert quit.value.signal == "SIGTERM"
    finally:
        restore()
        if not task.done():
            task.cancel()
        interrupt.close_runner(runner, 0.1)
