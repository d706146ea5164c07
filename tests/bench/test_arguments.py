"""Every `kame bench` takes only sensible counts: a zero or negative count is an argparse error
naming the option (not a traceback from inside the benchmark)."""

import pytest

from kame.cli import main


@pytest.mark.parametrize("argv, option", [
    (["bench", "codec", "--frames", "0"], "--frames: must be >= 1, got 0"),
    (["bench", "codec", "--warmup", "-1"], "--warmup: must be >= 0, got -1"),
    (["bench", "step", "--batch", "0"], "--batch: must be >= 1, got 0"),
    (["bench", "step", "--frames", "x"], "--frames: expected an integer, got 'x'"),
    (["bench", "codec", "--frames", "1.5"], "--frames: expected an integer, got '1.5'"),
    (["bench", "soak", "--seconds", "nan"], "--seconds: expected a finite number, got 'nan'"),
    (["bench", "soak", "--sessions", "0"], "--sessions: must be >= 1, got 0"),
    (["bench", "soak", "--seconds", "0"], "--seconds: must be >= 0.1, got 0"),
    (["bench", "backend", "--prompts", "0"], "--prompts: must be >= 1, got 0"),
    (["bench", "latency", "--turns", "0"], "--turns: must be >= 1, got 0"),
    (["bench", "latency", "--window", "nan"], "--window: expected a finite number, got 'nan'"),
    (["bench", "sessions", "--seconds", "nan"], "--seconds: expected a finite number, got 'nan'"),
    (["bench", "sessions", "--sessions", "0"], "--sessions: must be >= 1, got 0"),
    (["bench", "codec-quality", "--sentences", "0"], "--sentences: must be >= 1, got 0"),  # was exit 1, not 2
    (["bench", "train", "--steps", "3"], "--steps: must be >= 4, got 3"),
    (["bench", "train", "--nproc", "1"], "--nproc: must be >= 2, got 1"),
])
def test_bad_counts_are_argument_errors(argv, option, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2 and option in capsys.readouterr().err


def test_latency_checks_its_output_folder_before_running(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["bench", "latency", "--out", str(blocker / "x"), "--turns", "1"]) == 1
    assert "cannot create the folder" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--modes", ""], "--modes '' names no mode"),
    (["--modes", " , "], "names no mode"),
    (["--modes", "tandem,foo"], "--modes: unknown mode 'foo'"),
    (["--set", "nope=1"], "unknown config key 'nope'"),
    (["--modes", "cascade", "--set", "backend.stt=none"], "backend.stt = 'none' cannot be used with mode = 'cascade'"),
])
def test_latency_checks_modes_and_config_before_running(tmp_path, capsys, extra, message):
    out = tmp_path / "lat"  # an empty --modes wrote empty results there; the others failed after synthesis
    assert main(["bench", "latency", "--out", str(out), "--turns", "1", *extra]) == 1
    err = capsys.readouterr().err
    assert err.startswith("kame: error: ") and message in err
    assert not out.exists()


@pytest.mark.parametrize("extra, message", [
    (["--parts", "foo"], "--parts: unknown part 'foo'"),
    (["--parts", ","], "--parts: ',' names no part"),
    (["--parts", "fuzz", "--json", "{tmp}"], "--json {tmp} is a folder"),
    (["--parts", "fuzz", "--set", "server.bogus=1"], "unknown config key 'server.bogus'"),  # echo: checked
    (["--parts", "fuzz", "--set", "backend.llm=none"], "the echo agent takes only server.* keys"),  # was ignored
    (["--agent", "config", "--sessions", "300"], "--sessions 300: the configured agent takes at most 256 sessions"),
])
def test_soak_checks_parts_json_and_config_before_running(tmp_path, capsys, extra, message):
    # unknown/no parts ran nothing and exited 0; a --json folder failed after the whole soak
    extra = [a.replace("{tmp}", str(tmp_path)) for a in extra]
    assert main(["bench", "soak", "--fuzz", "0", *extra]) == 1
    err = capsys.readouterr().err
    assert err.startswith("kame: error: ") and message.replace("{tmp}", str(tmp_path)) in err


@pytest.mark.parametrize("extra, message", [
    (["--llm", "nope"], "unknown llm spec 'nope'"),  # was found after the whole STT table
    (["--stt", "embedded;bogus=1", "--llm", "none"], "bogus"),
    (["--no-stt", "--llm", "none"], "leaves nothing to measure"),  # ran nothing, exit 0
])
def test_backend_bench_checks_its_specs_before_running(capsys, extra, message):
    assert main(["bench", "backend", "--sentences", "1", *extra]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith("kame: error: ") and message in captured.err
    assert "machine:" not in captured.out  # nothing ran


def test_latency_refuses_more_turns_than_it_has(tmp_path, capsys):
    assert main(["bench", "latency", "--out", str(tmp_path / "lat"), "--turns", "31"]) == 1  # was: cut to 30
    assert "--turns 31: the benchmark's dialogues have 30 user turns" in capsys.readouterr().err


def test_codec_and_sessions_benches_check_every_spec_before_measuring(monkeypatch, capsys):
    """A bad spec at the end of the list was found after the others were measured (minutes), and
    their results were thrown away."""
    from kame.bench import codec, sessions

    measured = []
    monkeypatch.setattr(codec, "bench_one", lambda *a, **k: measured.append(a))
    monkeypatch.setattr(sessions, "run_case", lambda *a, **k: measured.append(a))
    assert main(["bench", "codec", "--codec", "mimi:random-tiny", "--codec", "embedded:/no/such.safetensors"]) == 1
    assert "/no/such.safetensors" in capsys.readouterr().err
    assert main(["bench", "sessions", "--frontend", "random:tiny", "--frontend", "random:typo",
                 "--sessions", "1", "--seconds", "0.5"]) == 1
    assert "unknown random front-end 'random:typo'" in capsys.readouterr().err
    assert measured == []


def test_a_codec_spec_that_cannot_work_is_refused_before_torch_loads():
    # (was: about 2 s of imports first)
    import subprocess
    import sys

    code = ("import sys\nfrom kame.cli import main\n"
            "rcs = [main(['bench', cmd, '--codec', 'nonsense:x']) for cmd in ('codec', 'codec-quality')]\n"
            "print(rcs, 'torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "[1, 1] False", out.stderr
    assert out.stderr.count("unknown codec spec 'nonsense:x'") == 2


def test_backend_bench_base_url_help_says_it_is_for_the_llm_and_how_to_point_the_stt(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "backend", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "base URL for --llm openai:MODEL specs only" in out
    # an --stt spec is backend.stt's, which takes no base_url option (was: 'openai:MODEL;base_url=URL',
    # which only the bench took)
    assert "OPENAI_STT_BASE_URL" in out and "base_url=URL" not in out


def test_dtype_help_lists_every_name_and_says_a_note_after_them():
    """--dtype's help names every dtype name frontend.dtype takes (was: float left out), and a
    command's note after the parenthesis of names (was: inside it: "(or ..., fp32; mimi: ...)")."""
    import argparse

    from kame.bench.machine import add_dtype_argument

    p = argparse.ArgumentParser()
    add_dtype_argument(p, "the codec's own", note="; a note")
    help_text = next(a.help for a in p._actions if a.dest == "dtype")
    assert help_text == ("weights dtype: float32, bfloat16 or float16 (or bf16, fp32, float, fp16, half); a note; "
                         "default: the codec's own")
