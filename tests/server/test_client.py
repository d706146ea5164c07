"""The chat client's command line (`kame client URL IN.wav ...`, or `python -m kame.server.client`): every
failure is `error: ...` and exit 1 (or an argparse error, exit 2), never a traceback, and what
can be checked before connecting is checked before connecting."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest
import soundfile as sf

from kame.server.client import chat, chat_url, main

from .conftest import running_server, tone

DEAD = "http://127.0.0.1:1"  # nothing listens on port 1: connecting fails at once


@pytest.fixture
def wav(tmp_path) -> Path:
    path = tmp_path / "in.wav"
    sf.write(str(path), tone(0.5), 24000)
    return path


async def _main(argv) -> int:
    """main() runs its own event loop: in a thread, while the test's loop serves."""
    return await asyncio.to_thread(main, [str(a) for a in argv])


async def test_client_writes_audio_and_json(wav, tmp_path, capsys):
    out, js = tmp_path / "out.wav", tmp_path / "sub" / "out.json"
    async with running_server() as (url, _):
        assert await _main([url, wav, "-o", out, "--json", js, "--fast", "--tail", "0.5"]) == 0
    assert sf.info(str(out)).duration > 0.3
    assert json.loads(js.read_text())["close_code"] == 1000
    assert "audio" in capsys.readouterr().out


@pytest.mark.parametrize("tail", ["-5", "nan", "inf", "-inf", "3600"])
def test_client_bad_tail_is_an_error_before_connecting(wav, tail, capsys):
    assert main([DEAD, str(wav), f"--tail={tail}"]) == 1  # the check kame run makes; DEAD is never tried
    assert "--tail must be seconds in [0, 3600)" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main([DEAD, str(wav), "--tail=x"])
    assert e.value.code == 2 and "--tail" in capsys.readouterr().err


@pytest.mark.parametrize("url, said", [(DEAD, "cannot connect to http://127.0.0.1:1"),
                                       ("foo://bar", "foo://bar: the URL must start with ws://, wss://, http:// or https://")])
def test_client_unreachable_or_bad_url_is_an_error(wav, url, said, capsys):
    assert main([url, str(wav)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and said in err and "Traceback" not in err


def test_client_output_files_checked_before_connecting(wav, tmp_path, capsys):
    # Each is refused before the client connects (else the error would be "cannot connect").
    if Path("/proc").is_dir():  # root may "write" in /proc by os.access, but no file can be made there
        assert main([DEAD, str(wav), "--json", "/proc/x.json"]) == 1
        assert "error: --json /proc/x.json: cannot write" in capsys.readouterr().err
    assert main([DEAD, str(wav), "--json", str(tmp_path)]) == 1
    assert "is a folder" in capsys.readouterr().err
    assert main([DEAD, str(wav), "-o", str(tmp_path / "x.txt")]) == 1
    assert "unknown file type" in capsys.readouterr().err
    assert not (tmp_path / "x.txt").exists()


async def test_client_refuses_its_input_as_output(wav, tmp_path, capsys):
    before = wav.read_bytes()
    async with running_server() as (url, _):
        for same in (wav, tmp_path / "." / "in.wav"):
            assert await _main([url, wav, "-o", same, "--fast", "--tail", "0.2"]) == 1
            assert f"error: -o {same} is the input file; give another -o" in capsys.readouterr().err
        assert await _main([url, wav, "--json", wav, "--fast", "--tail", "0.2"]) == 1
        assert "is the input file; give another --json" in capsys.readouterr().err
    assert wav.read_bytes() == before


def test_client_refuses_one_file_for_audio_and_json(wav, tmp_path, monkeypatch, capsys):
    # refused before connecting (DEAD is never tried), however the one path is spelled
    monkeypatch.chdir(tmp_path)
    for out, js in [("a.wav", "a.wav"), ("a.wav", "./a.wav"), (str(tmp_path / "a.wav"), "a.wav")]:
        assert main([DEAD, str(wav), "-o", out, "--json", js]) == 1
        assert f"error: --json {js} is the -o file too; give another --json" in capsys.readouterr().err
    assert not (tmp_path / "a.wav").exists()


async def test_client_prints_the_servers_reason_for_a_refusal(wav, capsys):
    async with running_server(max_sessions=1, auth_token="s3cret") as (url, _), aiohttp.ClientSession() as http:
        assert await _main([url, wav, "--token", "wrong"]) == 1
        err = capsys.readouterr().err
        assert "error: refused: HTTP 401 unauthorized: missing or wrong token" in err
        ws = await http.ws_connect(chat_url(url, token="s3cret"))  # the one session
        assert await _main([url, wav, "--token", "s3cret"]) == 1
        assert "error: refused: HTTP 503 capacity: echo agent is serving its maximum of 1 sessions" in capsys.readouterr().err
        res = await chat(url, tone(0.1), token="s3cret")  # the library call keeps the reason too
        assert res.status == 503 and res.refusal["error"] == "capacity"
        await ws.close()


async def test_kame_client_command_is_the_same_client(wav, tmp_path, capsys):
    """`kame client ...` (the CLI's subcommand) runs this client's main with its parsed arguments."""
    from kame.cli import main as kame

    out = tmp_path / "out.wav"
    async with running_server() as (url, _):
        assert await asyncio.to_thread(kame, ["client", url, str(wav), "-o", str(out), "--fast", "--tail", "0.5"]) == 0
    assert sf.info(str(out)).duration > 0.3 and "audio" in capsys.readouterr().out
    assert await asyncio.to_thread(kame, ["client", DEAD, str(wav)]) == 1
    assert "error: cannot connect to http://127.0.0.1:1" in capsys.readouterr().err
