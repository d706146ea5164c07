"""What `kame bench ...` prints and refuses, as a user meets it: every bench starts with the
command and the machine (to paste beside its tables into BENCHMARKS.md), counts past what the
runtime can run are argument errors, a one-sentence WER change has no interval, and the soak runs
on an agent with few sessions and fails clearly where it cannot."""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import re

import numpy as np
import pytest

from kame.cli import main
from kame.errors import ConfigError, KameError

MACHINE = re.compile(r"^machine: .+ \(\d+ cores\), load average [\d.]+; kame \S+, torch \S+, python \S+; \d{4}-\d\d-\d\d ",
                     re.M)


def _header(out: str) -> str:
    assert MACHINE.search(out), out  # was: "x86_64" (step, codec, sessions) or nothing (soak, codec-quality)
    return next(line for line in out.splitlines() if line.startswith("command: "))


@pytest.mark.parametrize("argv", [
    ["bench", "step", "--frontend", "random:tiny", "--batch", "1", "--batch", "2", "--frames", "1", "--warmup", "0"],
    ["bench", "codec", "--codec", "mimi:random-tiny", "--frames", "1", "--warmup", "0"],
    ["bench", "sessions", "--frontend", "random:tiny", "--sessions", "1", "--mode", "batched", "--seconds", "0.1",
     "--warmup", "0"],
    ["bench", "soak", "--parts", "cycles", "--cycles", "2"],
])
def test_every_bench_starts_with_its_command_and_the_machine(argv, capsys):
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert _header(out) == "command: kame " + " ".join(argv)
    assert out.index("command: ") < out.index("|---")  # above the table


def test_latency_results_file_names_the_command_and_the_machine(tmp_path, capsys):
    out = tmp_path / "lat"
    # (a cascade config's tandem run: was refused, "backend.stt = 'none' cannot be used with mode = 'cascade'")
    argv = ["bench", "latency", "--modes", "tandem", "--set", "mode=cascade", "--set", "backend.stt=none",
            "--set", "backend.llm=none", "--turns", "1", "--window", "0.5", "--out", str(out)]
    assert main(argv) == 0
    md = (out / "latency.md").read_text()  # was: only the CPU's name, in the first line
    assert md.startswith(f"command: kame bench latency --set mode=cascade --set backend.stt=none --set backend.llm=none --turns 1 "
                         f"--modes tandem --window 0.5 --out {out}\nmachine: ")
    assert _header(md) and "1 user turn, 1 dialogue," in md  # (was "1 user turns, 1 dialogues")


def test_command_line_gives_what_differs_from_the_defaults_with_secrets_hidden():
    from kame.bench import backend, soak
    from kame.bench.machine import command_line

    p = argparse.ArgumentParser()
    backend.add_arguments(p)
    args = p.parse_args(["--no-stt", "--llm", "openai:my model", "--llm", "embedded", "--prompts", "6",
                         "--word-s", "0.12345678", "--base-url", "http://me:pw@host:8000/v1"])
    args.plugin = ["./mine.py"]
    assert command_line(args, backend.add_arguments, "backend") == (  # (was: --word-s 0.123457)
        "kame --plugin ./mine.py bench backend --no-stt --llm 'openai:my model' --llm embedded "
        "--base-url 'http://***@host:8000/v1' --word-s 0.12345678")  # --prompts 6 is the default
    args.word_s = 8.0
    assert command_line(args, backend.add_arguments, "backend").endswith("--word-s 8")
    p = argparse.ArgumentParser()
    soak.add_arguments(p)
    args = p.parse_args(["--agent", "config", "--set", "server.auth_token=abc", "--set", "backend.llm=none",
                         "--client-url", "http://x"])  # (the internal option is not shown)
    assert command_line(args, soak.add_arguments, "soak") == (
        "kame bench soak --agent config --set 'server.auth_token=***' --set backend.llm=none")


def test_the_header_shows_no_url_password(monkeypatch):
    """(one way to hide a URL's user:password@, openai_http.hide_userinfo: bench.machine's own regex
    showed a password holding "/" whole, "http://me:zz/q@host")"""
    from kame.bench import backend, soak
    from kame.bench.machine import header

    monkeypatch.setenv("OPENAI_BASE_URL", "http://me:zzq@127.0.0.1:9/v1")
    p = argparse.ArgumentParser()
    backend.add_arguments(p)
    args = p.parse_args(["--no-stt", "--llm", "openai:m", "--base-url", "http://me:zz/q@127.0.0.1:9/v1"])
    shown = header(args, backend.add_arguments, "backend")
    assert "--base-url 'http://***@127.0.0.1:9/v1'" in shown and "zz" not in shown and "me:" not in shown
    p = argparse.ArgumentParser()
    soak.add_arguments(p)
    args = p.parse_args(["--set", "backend.llm=openai:m;base_url=https://me:zz/q@h/v1,x=http://me:zzq@h2/v1"])
    shown = header(args, soak.add_arguments, "soak")
    assert "base_url=https://***@h/v1,x=http://***@h2/v1" in shown and "zz" not in shown


@pytest.mark.parametrize("argv, message", [
    (["bench", "step", "--batch", "257"], "--batch: must be <= 256, got 257"),  # ran for ever
    (["bench", "step", "--threads", "1000"], f"--threads: must be <= {os.cpu_count()}, got 1000 (this machine has"),
    (["codec", "roundtrip", "x.wav", "-o", "y.wav", "--threads", "1000"], "--threads: must be <= "),  # (were taken)
    (["bench", "codec", "--batch", "100000"], "--batch: must be <= 256, got 100000"),  # hung for minutes
    (["bench", "codec-quality", "--sentences", "121"], "--sentences: must be <= 120, got 121"),  # was exit 1
    (["bench", "backend", "--sentences", "49"], "--sentences: must be <= 48, got 49"),  # were repeats: same voice
])
def test_counts_past_what_the_runtime_runs_are_argument_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_a_wer_change_from_one_sentence_has_no_interval():
    from kame.bench.codec_quality import change, wer_change_interval

    delta, lo, hi = wer_change_interval(np.array([9]), np.array([0]), np.array([2]))  # was [+22.2, +22.2]
    assert delta == pytest.approx(200 / 9) and math.isnan(lo) and math.isnan(hi)
    assert change(delta, lo, hi, "+", "sentence") == "+22.2 [no interval from one sentence]"
    words = np.array([0, 9, 0])  # one piece with words among silent ones: no interval either
    assert math.isnan(wer_change_interval(words, np.zeros(3), np.array([0, 2, 0]))[1])
    delta, lo, hi = wer_change_interval(np.array([9, 9]), np.array([0, 0]), np.array([2, 0]))
    assert lo <= delta <= hi and change(delta, lo, hi, "+", "sentence").startswith("+11.1 [+")


def test_sessions_summary_names_the_cases_it_ran(monkeypatch, capsys):
    """After a case misses over half its deadlines the larger ones are skipped; the summary said
    "of the tested [1, 2, 4, 8]" as if 8 had been run."""
    from kame.bench import sessions

    async def case(frontend, codec, n, batched, *_):
        missed = 0.0 if n <= 2 else 0.8
        return dict(frontend=frontend, codec="embedded", params=3.6e6, batched=batched, sessions=n, frames=10,
                    step_p50=0.02 * n, step_p99=0.03 * n, missed=int(10 * missed), missed_ratio=missed,
                    cpu_per_frame=0.02 * n)

    monkeypatch.setattr(sessions, "run_case", case)
    assert main(["bench", "sessions", "--frontend", "random:tiny", "--mode", "batched"]) == 0
    out = capsys.readouterr().out
    assert ("- random:tiny batched: sustains 2 session(s) of the tested [1, 2, 4] ([8] not run: 4 missed over half "
            "its deadlines)") in out


def test_ctrl_c_during_sessions_keeps_the_cases_measured(monkeypatch, capsys):
    """(was: Ctrl-C threw away every case measured so far, ~80 s of a default run)"""
    from kame.bench import sessions

    async def case(frontend, codec, n, batched, *_):
        if n == 4:
            raise KeyboardInterrupt
        return dict(frontend=frontend, codec="embedded", params=3.6e6, batched=batched, sessions=n, frames=10,
                    step_p50=0.02 * n, step_p99=0.03 * n, missed=0, missed_ratio=0.0, cpu_per_frame=0.02 * n)

    monkeypatch.setattr(sessions, "run_case", case)
    assert main(["bench", "sessions", "--frontend", "random:tiny", "--mode", "batched"]) == 130
    out = capsys.readouterr().out
    assert "interrupted: the table holds the 2 case(s) measured before Ctrl-C" in out
    assert "| `random:tiny` |" in out and "sustains 2 session(s) of the tested [1, 2] ([4, 8] not run: Ctrl-C)" in out


def test_stt_table_shows_no_wer_for_a_voice_group_without_sentences():
    """`kame bench backend --sentences 1` synthesizes one piper sentence and no espeak one: the
    table said "WER espeak 0.0 %" (and "nan" for a latency that had no final)."""
    from kame.backend.types import Transcript, Word
    from kame.bench.backend_stt import score, stt_table

    corpus = [dict(text="one two three", group="piper")]
    trs = [Transcript(tuple(Word(w, 1.0 + 0.3 * k, 1.2 + 0.3 * k) for k, w in enumerate(["one", "too", "three"])),
                      True, 2.5)]
    r = score(corpus, dict(trs=trs, spans=[(1.0, 2.0)], cpu=0.5, audio=5.0, final_lat=[]))
    assert r["wer_piper"] == pytest.approx(1 / 3) and math.isnan(r["wer_espeak"])
    row = stt_table([dict(stt="x", sentences=1, words=3, audio_s=5.0, **r)]).splitlines()[-1]
    cells = [c.strip() for c in row.split("|")[3:8]]
    assert cells[:3] == ["33.3 %", "33.3 %", "–"] and cells[4] == "–" and "nan" not in row


TINY = ["--agent", "config", "--set", "frontend.spec=random:tiny", "--set", "backend.stt=none",
        "--set", "backend.llm=none"]


def test_soak_of_an_agent_with_two_sessions_runs_every_part(capsys):
    """The fuzz part used 4 connections and a canary: with --agent config --sessions 2 (batch rows
    = sessions) the third was refused and the soak ended in a WSServerHandshakeError traceback."""
    argv = ["bench", "soak", *TINY, "--sessions", "2", "--seconds", "0.5", "--parts", "sessions,fuzz", "--fuzz", "60"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    fuzz = next(line for line in out.splitlines() if line.startswith("| 60 |"))
    assert fuzz.split("|")[6].strip() == "0 / 1000"  # the canary: no error, a clean close
    assert "fuzzing connections: 1 beside the canary" in out


def test_soak_refuses_a_fuzz_part_with_no_room_and_an_empty_json(capsys, tmp_path):
    from kame.bench.soak import fuzz_workers

    assert main(["bench", "soak", *TINY, "--sessions", "1", "--parts", "fuzz"]) == 1
    assert "the fuzz part needs 2 sessions at once" in capsys.readouterr().err
    assert [fuzz_workers(argparse.Namespace(max_sessions=n)) for n in (2, 3, 16)] == [1, 2, 4]
    with pytest.raises(ConfigError, match="runtime.max_sessions = 1"):
        fuzz_workers(argparse.Namespace(max_sessions=1))
    assert main(["bench", "soak", "--parts", "cycles", "--cycles", "1", "--json", ""]) == 1  # was: ran, wrote nothing
    assert "--json is empty; give the file to write, e.g. --json answer.json" in capsys.readouterr().err


async def test_soak_says_when_its_client_process_fails():
    """The sessions part's clients run in a child process; when it failed, the parent ended in an
    IndexError traceback (it read the child's empty output)."""
    from kame.bench.soak import run_sessions

    with pytest.raises(KameError, match=r"client process failed \(exit code 1\)"):
        await run_sessions("http://127.0.0.1:1", 1, 0.1, subprocess_clients=True)


def test_backend_llm_table_says_dash_not_nan():
    # (was: "nan" for the text-stream rate of a one-piece reply, --max-tokens 1)
    from kame.bench.backend import llm_table

    row = dict(spec="embedded", load=21.4, n=1, ttft50=0.26, ttft90=0.26, tps=3.9, text_tps=float("nan"), words=1)
    assert llm_table([row]).splitlines()[-1] == "| `embedded` | 21.4 | 1 | 0.26 / 0.26 | 3.9 | – | 1 |"


def test_bench_percentiles_are_measured_values_and_nan_for_none():
    from kame.bench.machine import pct

    xs = [0.4, 0.1, 0.3, 0.2]
    assert pct(xs, 0.5) == 0.2 and pct(xs, 0.99) == 0.4 and pct(xs, 0.0) == 0.1  # nearest rank, not interpolated
    assert pct([0.7], 0.9) == 0.7
    assert math.isnan(pct([], 0.5))


def test_sessions_rows_measures_a_part_filled_batch(capsys):
    """--rows N: the sessions run in a batch of N rows, as a server's with fewer users than rows
    (the default runtime's 4 rows and one user), named in the table; without it, one row per session."""
    from kame.bench.sessions import run_case, table

    r = asyncio.run(run_case("random:tiny", "auto", 1, True, 0.16, 0.0, 1, rows=3))
    assert (r["sessions"], r["rows"]) == (1, 3) and r["frames"] > 0
    assert "| 1 of 3 rows |" in table([r])
    alone = asyncio.run(run_case("random:tiny", "auto", 1, True, 0.16, 0.0, 1))
    assert alone["rows"] == 1 and "| 1 |" in table([alone])


def test_sessions_rows_below_the_sessions_or_without_a_batch_is_refused(capsys):
    """(was: --rows 2 with --sessions 4 silently ignored; per-session cases labelled '1 of 3 rows')"""
    assert main(["bench", "sessions", "--frontend", "random:tiny", "--sessions", "4", "--rows", "2",
                 "--mode", "batched"]) == 1
    assert "--rows 2: below --sessions 4" in capsys.readouterr().err
    assert main(["bench", "sessions", "--frontend", "random:tiny", "--sessions", "1", "--rows", "4",
                 "--mode", "per-session"]) == 1
    assert "per-session stepping has no shared batch" in capsys.readouterr().err


def test_ctrl_c_while_a_sessions_case_runs_stops_its_agent(monkeypatch):
    """Ctrl-C while `kame bench sessions` runs a case cancels it: its sessions are closed and its
    agent stopped, so no step thread is left inside torch as the interpreter ends (was: left running,
    the process aborted, "terminate called without an active exception", exit 134 for 130)."""
    import signal
    import threading

    from kame.bench.sessions import run_case
    from kame.runtime import clock

    real, calls = clock.MonotonicClock.sleep, []

    async def sleep(self, seconds):
        calls.append(seconds)
        if len(calls) == 3:  # (the case running: its sessions have pushed audio twice)
            signal.raise_signal(signal.SIGINT)
        await real(self, seconds)

    monkeypatch.setattr(clock.MonotonicClock, "sleep", sleep)
    with pytest.raises(KeyboardInterrupt):
        asyncio.run(run_case("random:tiny", "auto", 2, True, 60.0, 0.0, 1))
    steps = [t for t in threading.enumerate() if t.name == "kame-step"]
    for t in steps:  # (its loop has ended when stop() returns; the thread's own last lines may still run)
        t.join(5)
    assert len(calls) >= 3 and not [t.name for t in steps if t.is_alive()]
