"""What the benches say, and when (QA bench report, findings 1 and 3-6):
- bench/audio_codes.py refuses bad numbers at parse time as `kame bench` does, and a --codebooks K
  its codec cannot code with or a --repeat set that is not there before the teacher-forced table
  (was: a traceback for --threads 0, --limit -18 silently 2 dialogues, the others after the table);
- `kame bench sessions --codec mimi:bogus` names --codec, before the header (was: "codec.spec =
  ...", after it, when the first case built its agent);
- codec-quality's one piece with words is said with its length (was: "15 s piece" for 5 s);
- bench/*.py --help shows the defaults;
- "(1 core)", "1 prediction" (were "(1 cores)", "1 predictions")."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from kame.cli import main

BENCH = Path(__file__).resolve().parents[2] / "bench"


def script(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def audio_codes(monkeypatch):
    """bench/audio_codes.py with a one-dialogue set that is not read from disk, and a teacher-forced
    table that fails the test if it runs."""
    module = script("audio_codes")
    monkeypatch.setattr(module, "manifest_path", lambda data, command: data)
    monkeypatch.setattr(module, "read_manifest", lambda path: [SimpleNamespace(path="d0")])
    monkeypatch.setattr(module, "read_dialogue", lambda path: object())
    monkeypatch.setattr(module, "codes_table", lambda *a: pytest.fail("the teacher-forced table ran first"))
    return module


@pytest.mark.parametrize("option, said", [
    (["--threads", "0"], "argument --threads: must be >= 1, got 0"),
    (["--limit", "-18"], "argument --limit: must be >= 1, got -18"),
    (["--limit", "0"], "argument --limit: must be >= 1, got 0"),
    (["--repeat-limit", "-1"], "argument --repeat-limit: must be >= 1, got -1"),
    (["--codebooks", "0"], "argument --codebooks: must be >= 1, got 0"),
])
def test_audio_codes_refuses_bad_numbers_at_parse_time(option, said, audio_codes, capsys):
    with pytest.raises(SystemExit) as exc:
        audio_codes.main(["data", "--frontend", "random:tiny", *option])
    assert exc.value.code == 2
    assert said in capsys.readouterr().err.splitlines()[-1]


def test_audio_codes_checks_codebooks_before_the_table(audio_codes, monkeypatch, capsys):
    from kame import registry

    codec = registry.create("codec", "mimi:random-tiny")
    monkeypatch.setattr(audio_codes, "frontend_codec", lambda frontend: codec)
    too_many = codec.total_codebooks + 1
    assert audio_codes.main(["data", "--frontend", "random:tiny", "--codebooks", "1", str(too_many)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: --codebooks: ") and f"got {too_many}" in err, err


def test_audio_codes_checks_repeat_before_the_table(tmp_path, monkeypatch, capsys):
    module = script("audio_codes")  # (its own manifest_path and read_manifest: the real ones)
    monkeypatch.setattr(module, "codes_table", lambda *a: pytest.fail("the teacher-forced table ran first"))
    manifest = tmp_path / "held.jsonl"
    manifest.write_text("")
    monkeypatch.setattr(module, "read_manifest", lambda path: [SimpleNamespace(path="d0")] if Path(path) == manifest else
                        pytest.fail(f"read {path}"))
    monkeypatch.setattr(module, "read_dialogue", lambda path: object())
    missing = tmp_path / "nothere"
    assert module.main([str(manifest), "--frontend", "random:tiny", "--repeat", str(missing)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: --repeat: ") and str(missing) in err, err


def test_audio_codes_builds_the_codec_once_for_codebooks_and_repeat(audio_codes, quality, monkeypatch, capsys):
    import torch

    from kame.train import codes

    class Codec:
        num_codebooks, total_codebooks = 8, 8

        def set_num_codebooks(self, k: int) -> None:
            self.num_codebooks = k

        def encode(self, pcm):
            return pcm

        def decode(self, codes):
            return codes

    built, used = [], []
    monkeypatch.setattr(audio_codes, "frontend_codec", lambda frontend: built.append(Codec()) or built[-1])
    monkeypatch.setattr(audio_codes, "codes_table", lambda frontend, dialogues: ([50.0], [1.0], 2048))
    monkeypatch.setattr(audio_codes, "repeat_entries", lambda data, limit: [SimpleNamespace(path="t0")])
    monkeypatch.setattr(audio_codes, "read_dialogue", lambda path, audio=True: SimpleNamespace(
        words_of=lambda who: [], audio=np.zeros((1920, 2), np.float32)))
    monkeypatch.setattr(codes, "load_codes", lambda d, codec: used.append((codec, codec.num_codebooks)) or
                        (None, torch.zeros(8, 4, dtype=torch.long)))
    assert audio_codes.main(["data", "--frontend", "random:tiny", "--codebooks", "2", "--repeat", "train"]) == 0
    assert len(built) == 1, built  # (was: built again for --repeat)
    # coding with the front-end's codebooks again, not --codebooks' last K: the recordings' table puts
    # them back itself (was: run did, after it)
    assert used == [(built[0], 8)]
    out = capsys.readouterr().out
    assert "\n| 2 | " in out and "(no word said 20 times)" in out, out  # (the recordings table of K 2)


def test_audio_codes_recordings_table_puts_the_codebooks_back(quality):
    module = script("audio_codes")

    class Codec:
        num_codebooks = 8

        def set_num_codebooks(self, k: int) -> None:
            self.num_codebooks = k

        def encode(self, pcm):
            return pcm

        def decode(self, codes):
            raise KeyboardInterrupt  # (stopped midway: put back too)

    codec = Codec()
    d = SimpleNamespace(words_of=lambda who: [], audio=np.zeros((1920, 2), np.float32))
    with pytest.raises(KeyboardInterrupt):
        module.recordings_table(codec, [d], [2, 4])
    assert codec.num_codebooks == 8  # (was: 2, --codebooks' K being coded with)
    module.checked_codebooks(codec, [2, 4])
    assert codec.num_codebooks == 8  # (was: 4, --codebooks' last K)


def test_bench_sessions_checks_a_random_mimi_without_building_it(monkeypatch):
    from kame import registry
    from kame.bench import sessions

    monkeypatch.setattr(registry, "create", lambda kind, spec, **kw: pytest.fail(f"{kind} {spec} built"))
    # (was: built up front and dropped, mimi:random's 14 s; each case's agent builds its own)
    assert sessions._codec("mimi:random") == "mimi:random"
    assert sessions._codec("mimi:random-tiny") == "mimi:random-tiny"


def test_bench_sessions_names_codec_before_the_header(monkeypatch, capsys):
    from kame.bench import sessions

    async def case(*a, **k):
        pytest.fail("a case ran")

    monkeypatch.setattr(sessions, "run_case", case)
    assert main(["bench", "sessions", "--frontend", "random:tiny", "--codec", "mimi:/nonexist.safetensors"]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith("kame: error: --codec: Mimi checkpoint not found: /nonexist.safetensors"), captured.err
    assert "machine:" not in captured.out, captured.out


def test_bench_sessions_says_a_random_mimi_typo_as_the_codec_does(monkeypatch, capsys):
    from kame import registry
    from kame.bench import sessions

    monkeypatch.setattr(sessions, "run_case", lambda *a, **k: pytest.fail("a case ran"))
    with pytest.raises(Exception) as codec_said:
        registry.create("codec", "mimi:random-typo")
    assert main(["bench", "sessions", "--frontend", "random:tiny", "--codec", "mimi:random-typo"]) == 1
    # (was: "Mimi checkpoint not found: random-typo (...)", sessions' own copy of the codec's checks)
    assert capsys.readouterr().err.startswith(f"kame: error: --codec: {codec_said.value}\n")
    assert "unknown random Mimi 'random-typo'; use mimi:random" in str(codec_said.value)


def test_one_piece_said_with_its_length(quality, tmp_path, monkeypatch, capsys):
    from kame.audio import write_wav

    monkeypatch.setattr(quality, "stream_roundtrip", lambda codec, pcm: (pcm, 0.001, 0.001))
    write_wav(tmp_path / "short.wav", np.zeros(int(5.2 * 16000), np.float32), 16000)
    assert main(["bench", "codec-quality", "--codec", "mimi:random-tiny", "--recordings", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "0.0 [no interval from one 5.2 s piece]" in out and "15 s piece" not in out, out


@pytest.mark.parametrize("name, said", [
    ("copy_task", ["question-answer items to write (default 3200)"]),
    ("audio_codes", ["torch threads (default 2", "the first N dialogues (default: all)"]),
    ("oracle_copy", ["(default random:small)", "training steps (default 200)", "every N steps (default 25)"]),
])
def test_bench_scripts_help_shows_defaults(name, said, monkeypatch, capsys):
    module = script(name)
    monkeypatch.setattr(sys, "argv", [f"{name}.py", "--help"])  # (oracle_copy reads sys.argv)
    with pytest.raises(SystemExit):
        if name == "oracle_copy":
            module.main()
        else:
            module.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())  # (argparse's line breaks)
    for s in said:
        assert s in text, text


def test_one_core_is_one_core(monkeypatch):
    import os

    from kame.bench.machine import cpu_name

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert cpu_name().endswith(" (1 core)")


def test_one_prediction_is_one_prediction():
    from kame.bench.latency_report import oracle_lines

    s = dict(oracle_lag_end_p50=1.0, oracle_lag_end_p90=1.0, oracle_lag_end_n=1, turns=1, oracle_lag_p50=0.5,
             oracle_lag_p90=0.5, oracle_lag_n=1)
    assert "(1 prediction, most restarted" in oracle_lines(s)[-1]
