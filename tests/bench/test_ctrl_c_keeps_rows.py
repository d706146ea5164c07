"""Ctrl-C in `kame bench codec`, `backend`, `codec-quality` and `latency` prints the rows measured so
far and one "interrupted:" line, exit 130, as `kame bench step` and `sessions` do (was: exit 130,
no table, nothing said); latency leaves no empty --out folder it made, nor the parents it made for
it, and its latency.md, latency.json and a --reanalyse of them say the run was cut (was: read as a
whole run); codec-quality's header timings are the table's voices'. Each case: the measuring
function patched to raise KeyboardInterrupt in-process (nothing timed)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from kame.cli import main

from .test_ctrl_c_said import _args, stopped


def interrupted_on(call: int):
    """A stand-in for a measuring function: its ``call``-th call (from 1) is Ctrl-C, the others
    return what ``returning(*args)`` gives (set on it)."""
    calls = []

    def measuring(*args, **kwargs):
        calls.append(args)
        if len(calls) == call:
            raise KeyboardInterrupt
        return measuring.returning(*args, **kwargs)
    return measuring


KEPT = "interrupted: the table holds the 1 case(s) measured before Ctrl-C"
NONE = "interrupted: Ctrl-C before the first case was measured; no table"


# ---------------------------------------------------------------------------- kame bench codec
def test_ctrl_c_in_bench_codec_keeps_the_codecs_measured(monkeypatch, capsys):
    from kame.bench import codec

    monkeypatch.setattr(codec, "load_codec", lambda spec, dtype=None: (None, 0.0))
    row = dict(K=8, card=2048, kbps=1.1, params=None, load_s=0.0, enc_p50=0.001, enc_p99=0.002, dec_p50=0.001,
               dec_p99=0.002, rtf_enc=0.1, rtf_dec=0.1, rtf=0.2)
    bench = interrupted_on(2)
    bench.returning = lambda spec, *a: dict(row, spec=spec)
    monkeypatch.setattr(codec, "bench_one", bench)
    assert stopped(codec.main, _args(codec.add_arguments, "--frames", "1")) == 130
    out = capsys.readouterr().out
    assert KEPT in out, out
    assert "| `mimi:random-tiny` | 8 × 2048 |" in out and "| `mimi:random` |" not in out, out


def test_ctrl_c_in_bench_codec_before_a_row_says_so(monkeypatch, capsys):
    from kame.bench import codec

    monkeypatch.setattr(codec, "load_codec", lambda spec, dtype=None: (None, 0.0))
    monkeypatch.setattr(codec, "bench_one", interrupted_on(1))
    assert stopped(codec.main, _args(codec.add_arguments, "--frames", "1")) == 130
    out = capsys.readouterr().out
    assert NONE in out and "| codec |" not in out, out


# ---------------------------------------------------------------------------- kame bench backend
STT_SCORE = dict(wer=0.1, wer_piper=0.1, wer_espeak=0.1, word_lat_p50=0.2, word_lat_p90=0.3, final_lat_p50=0.4,
                 partials=5, finals=1, cpu=0.5)


@pytest.fixture
def fake_stts(monkeypatch):
    """The STT bench without models: build_stt, the corpus, scoring stand-ins; returns the
    stand-in for the stream (its ``returning``: the run)."""
    from kame.bench import backend_stt

    monkeypatch.setattr(backend_stt, "build_stt", lambda spec: (object(), None))
    monkeypatch.setattr(backend_stt, "make_corpus", lambda n: [dict(text="hello there", group="piper", pcm=None)])
    monkeypatch.setattr(backend_stt, "score", lambda corpus, run: dict(STT_SCORE))
    stream = interrupted_on(2)
    stream.returning = lambda *a: dict(audio=2.0)

    async def run_stream(*args):
        return stream(*args)

    monkeypatch.setattr(backend_stt, "_run_stream", run_stream)
    return stream


def test_ctrl_c_in_bench_backend_keeps_the_stts_measured(fake_stts, capsys):
    assert main(["bench", "backend", "--llm", "none", "--stt", "pocketsphinx", "--stt", "whisper"]) == 130
    out = capsys.readouterr().out
    assert "interrupted: the STT table holds the 1 case(s) measured before Ctrl-C" in out, out
    assert "| `pocketsphinx` | 1 (2) | 10.0 % |" in out and "`whisper`" not in out, out


def test_ctrl_c_in_bench_backend_keeps_the_llms_measured(monkeypatch, capsys):
    from kame.bench import backend

    class LLM:
        pass

    monkeypatch.setattr(backend, "_make_llm", lambda spec, args: LLM())
    bench = interrupted_on(2)
    bench.returning = lambda *a: dict(n=2, ttft50=0.3, ttft90=0.4, tps=20.0, text_tps=15.0, words=12.0)

    async def bench_llm(*args):
        return bench(*args)

    monkeypatch.setattr(backend, "_bench_llm", bench_llm)
    assert main(["bench", "backend", "--no-stt", "--turns", "0", "--llm", "embedded", "--llm", "embedded"]) == 130
    out = capsys.readouterr().out
    assert "interrupted: the LLM table holds the 1 case(s) measured before Ctrl-C" in out, out
    assert out.count("| `embedded` |") == 1, out
    # this process's threads are nobody's with --no-stt (was: "(the embedded LLM's child: 1)", as if its)
    assert re.search(r"\ntorch threads \d+ \(none used here; the embedded LLM's child: 1\)\n", out), out


# ---------------------------------------------------------------------------- kame bench codec-quality
def test_ctrl_c_in_bench_codec_quality_keeps_the_voices_measured(quality, monkeypatch, capsys):
    roundtrip = interrupted_on(3)  # the second voice's first sentence (2 sentences a voice)
    roundtrip.returning = lambda codec, pcm: (pcm, 0.001, 0.001)
    monkeypatch.setattr(quality, "stream_roundtrip", roundtrip)
    assert main(["bench", "codec-quality", "--codec", "mimi:random-tiny", "--sentences", "2"]) == 130
    out = capsys.readouterr().out
    assert KEPT in out, out
    rows = [line for line in out.splitlines() if line.startswith("| ") and "|---" not in line][1:]
    from kame.codec.embedded.data import HELD_OUT_VOICES

    first = HELD_OUT_VOICES[0][0].label
    assert len(rows) == 3 and rows[0].startswith(f"| {first} (fitted) | 2 |"), out  # the voice, its group, all
    assert rows[-1].startswith("| **all** | 2 |"), out


def test_ctrl_c_in_bench_codec_quality_times_only_the_voices_in_the_table(quality, monkeypatch, capsys):
    times = iter([0.001] * 3 + [0.009])  # the first voice's 3 sentences, then the second voice's first
    roundtrip = interrupted_on(5)  # the second voice's second sentence
    roundtrip.returning = lambda codec, pcm: (pcm, *[next(times)] * 2)
    monkeypatch.setattr(quality, "stream_roundtrip", roundtrip)
    assert main(["bench", "codec-quality", "--codec", "mimi:random-tiny", "--sentences", "3"]) == 130
    out = capsys.readouterr().out
    # (was: 3.0 ms, the cut voice's sentence in the mean)
    assert "streaming encode 1.0 ms/frame, decode 1.0 ms/frame" in out, out


def test_ctrl_c_in_bench_codec_quality_recordings_keeps_those_measured(quality, tmp_path, monkeypatch, capsys):
    from kame.audio import write_wav

    for name in ("a", "b"):
        write_wav(tmp_path / f"{name}.wav", np.zeros(5 * 16000, np.float32), 16000)
    roundtrip = interrupted_on(2)
    roundtrip.returning = lambda codec, pcm: (pcm, 0.001, 0.001)
    monkeypatch.setattr(quality, "stream_roundtrip", roundtrip)
    assert main(["bench", "codec-quality", "--codec", "mimi:random-tiny", "--recordings", str(tmp_path)]) == 130
    out = capsys.readouterr().out
    assert KEPT in out, out
    assert "on 1 real recording (" in out and "| a.wav | 5 |" in out and "| b.wav |" not in out, out


# ---------------------------------------------------------------------------- kame bench latency
@pytest.fixture
def latency(monkeypatch):
    from kame.bench import latency

    monkeypatch.setattr(latency, "build_dialogues", lambda n, window: [(np.zeros(24000, np.float32), [])])
    return latency


LATENCY_KEPT = ("interrupted: analysing the 1 mode run before Ctrl-C for latency.md/.json/.png (Ctrl-C again to "
                "quit without them)")  # (was: "the table holds the 1 case(s) measured", then minutes of whisper)
CUT = "- INTERRUPTED (Ctrl-C) during `cascade`: 1 of 2 modes run, `cascade` not (the total time includes the cut run)"


def test_ctrl_c_in_bench_latency_before_a_mode_ran_leaves_no_folder(latency, tmp_path, monkeypatch, capsys):
    async def run_mode(cfg, dialogues):
        raise KeyboardInterrupt

    monkeypatch.setattr(latency, "run_mode", run_mode)
    out = tmp_path / "lat"
    assert main(["bench", "latency", "--turns", "1", "--modes", "cascade", "-o", str(out)]) == 130
    assert "interrupted: Ctrl-C before the first mode was measured; no report" in capsys.readouterr().out
    assert not out.exists()  # (was: left behind, empty)


def test_ctrl_c_in_bench_latency_leaves_no_parent_it_made(latency, tmp_path, monkeypatch):
    async def run_mode(cfg, dialogues):
        raise KeyboardInterrupt

    monkeypatch.setattr(latency, "run_mode", run_mode)
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "mine.txt").write_text("")
    out = tmp_path / "kept" / "nest" / "a" / "b"
    assert main(["bench", "latency", "--turns", "1", "--modes", "cascade", "-o", str(out)]) == 130
    assert not (tmp_path / "kept" / "nest").exists()  # (was: nest/a left behind, empty; only b removed)
    assert (tmp_path / "kept" / "mine.txt").is_file()  # (a folder there before: kept)
    (tmp_path / "y").mkdir()  # -o x/../y: x is made (to reach y through it), y was there, empty
    assert main(["bench", "latency", "--turns", "1", "--modes", "cascade", "-o", str(tmp_path / "x" / ".." / "y")]) == 130
    assert (tmp_path / "y").is_dir() and not (tmp_path / "x").exists()  # (was: the user's empty y removed, x left)


def test_ctrl_c_in_bench_latency_keeps_the_modes_run(latency, tmp_path, monkeypatch, capsys):
    ran = []

    async def run_mode(cfg, dialogues):
        ran.append(cfg.mode)
        if len(ran) == 2:
            raise KeyboardInterrupt
        return [({"wall_s": 1.0, "duration_s": 1.0, "components": {"stt": "x"}}, np.zeros(24000, np.float32))]

    monkeypatch.setattr(latency, "run_mode", run_mode)
    monkeypatch.setattr(latency, "whisper_asr", lambda: None)
    monkeypatch.setattr(latency, "analyse", lambda mode, runs, dialogues, asr, thr: [])
    monkeypatch.setattr(latency, "plot", lambda path, results, title: path.write_text(""))
    out = tmp_path / "lat"
    assert main(["bench", "latency", "--turns", "1", "-o", str(out)]) == 130
    text = capsys.readouterr().out
    assert LATENCY_KEPT in text, text
    assert "| tandem | 0 |" in text and "| cascade |" not in text, text
    # the files say the run was cut, and a --reanalyse of them too (was: read as a whole run's)
    assert CUT in (out / "latency.md").read_text().splitlines()
    assert json.loads((out / "latency.json").read_text())["not_run"] == ["cascade"]
    assert CUT in latency.reanalyse(out).splitlines()
    assert CUT in (out / "latency.md").read_text().splitlines()


def test_an_empty_folder_there_before_is_kept(latency, tmp_path, monkeypatch):
    async def run_mode(cfg, dialogues):
        raise KeyboardInterrupt

    monkeypatch.setattr(latency, "run_mode", run_mode)
    assert main(["bench", "latency", "--turns", "1", "--modes", "cascade", "-o", str(tmp_path)]) == 130
    assert tmp_path.is_dir()
