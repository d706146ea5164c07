"""server.max_session_s (a session open that long is closed with session_limit) and the token
read from a file (--token-file, server.auth_token_file)."""

from __future__ import annotations

import argparse
import asyncio
import json

import aiohttp
import pytest

from kame.errors import ConfigError
from kame.server import protocol as P
from kame.server.app import ServerConfig, _build, add_arguments, server_config_from
from kame.server.client import chat_url

from .conftest import running_server


async def test_a_session_open_past_max_session_s_is_closed_with_session_limit():
    async with running_server(max_session_s=0.3, idle_timeout_s=0) as (url, server), aiohttp.ClientSession() as http:
        ws = await http.ws_connect(chat_url(url))
        info = err = None
        while True:  # the handshake, the info metadata, ..., the fatal error, then the close
            msg = await ws.receive(timeout=10)
            if msg.type != aiohttp.WSMsgType.BINARY:
                break
            kind, payload = P.decode(msg.data)
            if kind == P.Kind.METADATA and info is None and json.loads(payload).get("type") == "info":
                info = json.loads(payload)  # (the server's; the agent may send its own after it)
            elif kind == P.Kind.ERROR:
                err = json.loads(payload)
        assert info["max_session_s"] == 0.3  # the client is told the limit
        assert err["code"] == "session_limit" and err["fatal"] is True and "0.3 s" in err["message"]
        assert ws.close_code == aiohttp.WSCloseCode.POLICY_VIOLATION and "limit" in (msg.extra or "")
        for _ in range(250):
            if not server.connections:
                break
            await asyncio.sleep(0.02)
        assert not server.connections and server.agent.active_sessions == 0
        assert server.metrics.closed["session_limit"] == 1


def test_max_session_s_defaults_to_no_limit_and_is_checked():
    from kame.config import load_config

    assert ServerConfig().max_session_s == 0 and server_config_from(None).max_session_s == 0
    assert server_config_from({"max_session_s": 600}).max_session_s == 600
    with pytest.raises(ConfigError, match="max_session_s"):
        load_config(None, ["server.max_session_s=-1"])


# ---- the token from a file ----------------------------------------------------------------


def _serve(*argv):
    parser = argparse.ArgumentParser(prog="kame serve")
    add_arguments(parser)
    return _build(parser.parse_args(["--agent", "echo", *argv]))[1]


def test_token_file_gives_the_token(tmp_path, monkeypatch):
    monkeypatch.delenv("KAME_AUTH_TOKEN", raising=False)
    f = tmp_path / "token"
    f.write_text("  s3cret\n")
    assert _serve("--token-file", str(f)).auth_token == "s3cret"  # whitespace stripped
    monkeypatch.setenv("KAME_AUTH_TOKEN", "from-env")  # the command line wins over the environment
    assert _serve("--token-file", str(f)).auth_token == "s3cret"
    monkeypatch.delenv("KAME_AUTH_TOKEN")
    assert _serve("--set", f"server.auth_token_file={f}").auth_token == "s3cret"
    g = tmp_path / "other"
    g.write_text("other\n")
    assert _serve("--set", f"server.auth_token_file={f}", "--token-file", str(g)).auth_token == "other"


def test_token_file_problems_are_clear_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("KAME_AUTH_TOKEN", raising=False)
    empty, two = tmp_path / "empty", tmp_path / "two"
    empty.write_text(" \n")
    two.write_text("one\ntwo\n")
    with pytest.raises(ConfigError, match="--token-file .*empty: the file is empty"):
        _serve("--token-file", str(empty))
    with pytest.raises(ConfigError, match="cannot read the token"):
        _serve("--token-file", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="cannot read the token"):  # a folder
        _serve("--token-file", str(tmp_path))
    with pytest.raises(ConfigError, match="more than one word"):
        _serve("--token-file", str(two))
    with pytest.raises(ConfigError, match="use one"):
        _serve("--token", "x", "--token-file", str(two))
    with pytest.raises(ConfigError, match="server.auth_token_file .*empty"):
        _serve("--set", f"server.auth_token_file={empty}")
    with pytest.raises(ConfigError, match="both set"):
        _serve("--set", "server.auth_token=x", "--set", f"server.auth_token_file={two}")


def test_a_bad_token_file_stops_kame_serve_before_the_agent_is_built(tmp_path, monkeypatch):
    import kame.runtime.engine as engine

    def no_agent(*a, **k):
        raise AssertionError("the agent was built before the token file was checked")

    monkeypatch.setattr(engine, "build_agent", no_agent)
    parser = argparse.ArgumentParser(prog="kame serve")
    add_arguments(parser)
    for argv in (["--token-file", str(tmp_path / "missing")],
                 ["--set", f"server.auth_token_file={tmp_path / 'missing'}"]):
        with pytest.raises(ConfigError, match="cannot read the token"):
            _build(parser.parse_args(argv))


async def test_the_token_from_a_file_is_required(tmp_path):
    f = tmp_path / "token"
    f.write_text("s3cret\n")
    async with running_server(auth_token_file=str(f), auth_token=_serve("--token-file", str(f)).auth_token) as (url, _), \
            aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as e:
            await http.ws_connect(chat_url(url))
        assert e.value.status == 401
        ws = await http.ws_connect(chat_url(url, token="s3cret"))
        assert (await ws.receive()).data[0] == P.Kind.HANDSHAKE
        await ws.close()
