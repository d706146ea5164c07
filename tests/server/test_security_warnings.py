"""What `kame serve` and `kame client` say and send for their security (the QA security report's
findings 1-5): "*" origins or hosts warned of on a loopback bind, kame client's errors without
the URL's token, --host 0 / 127.1 taken for the address bound, token files and short tokens,
kame client's other token sources, and the hardening headers on every response."""

from __future__ import annotations

import logging
import os

import aiohttp
import pytest
import soundfile as sf

from kame.errors import ConfigError
from kame.server import client, guard, ops
from kame.server.app import ServerConfig, Server, _build, add_arguments, page_url, remote_note
from kame.server.client import ChatResult, client_token, main
from kame.server.echo import EchoAgent

from .conftest import running_server, tone

SECRET = "SECRETX-0123456789abcdef"
LONG = "a-long-random-token-0123456789"


@pytest.fixture
def wav(tmp_path):
    path = tmp_path / "in.wav"
    sf.write(str(path), tone(0.2), 24000)
    return path


# ---- 1. "*" in allowed_origins / allowed_hosts on a loopback bind, no token ----------------------


def test_a_loopback_bind_with_any_origin_or_host_and_no_token_is_warned_of():
    """(was: None for every loopback bind: any web page could open sessions, in silence)"""
    said = guard.bind_warning(ServerConfig(allowed_origins=["*"]))
    assert said and "server.allowed_origins has \"*\"" in said and "any web page" in said
    assert "cross-site WebSocket hijacking" in said and "--token-file" in said and "http://localhost:3000" in said
    said = guard.bind_warning(ServerConfig(host="localhost", allowed_hosts="*"))
    assert said and "server.allowed_hosts has" in said and "DNS rebinding" in said and "--token-file" in said
    both = guard.bind_warning(ServerConfig(host="::1", allowed_origins="*", allowed_hosts="*"))
    assert "allowed_origins" in both and "allowed_hosts" in both
    # a token is the defence (a page cannot know it); no "*": nothing to say, as before
    assert guard.bind_warning(ServerConfig(allowed_origins=["*"], allowed_hosts=["*"], auth_token=LONG)) is None
    assert guard.bind_warning(ServerConfig(allowed_origins=["http://localhost:3000"], allowed_hosts=["kame.lan"])) is None
    # on another bind the "*" origin is named too (was: "web pages cannot", which they could)
    said = guard.bind_warning(ServerConfig(host="0.0.0.0", allowed_origins=["*"]))
    assert "allowed_origins has" in said and "web pages cannot" not in said and "anyone who can reach it" in said


# ---- 2. kame client's errors without the URL's token ----------------------------------------------


@pytest.mark.parametrize("url", ["http://127.0.0.1:1/?token=" + SECRET, "ftp://h/?token=" + SECRET,
                                 "ws://127.0.0.1:99999/?token=" + SECRET])
def test_client_errors_do_not_print_the_urls_token(wav, url, capsys):
    """(was: "error: cannot connect to http://127.0.0.1:1/?token=SECRETX: ...")"""
    assert main([url, str(wav), "--fast"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and SECRET not in err and "?…" in err, err


def test_client_lost_connection_and_404_do_not_print_the_token(wav, monkeypatch, capsys):
    def lost(coro):
        coro.close()
        raise aiohttp.ServerDisconnectedError(f"lost ws://h/api/chat?token={SECRET}")
    monkeypatch.setattr(client, "run_to_end", lost)
    assert main([f"http://h:8998/?token={SECRET}", str(wav)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: http://h:8998/?…: ServerDisconnectedError") and SECRET not in err, err
    refused = ChatResult(status=404, url=f"ws://h:8998/api/chat?token={SECRET}").refusal_text()
    assert "at ws://h:8998/api/chat?… (no kame server" in refused and SECRET not in refused


# ---- 3. --host 0 / 127.1: the address bound ----------------------------------------------------


def test_short_numeric_hosts_are_the_address_the_socket_binds():
    assert guard.bound_host("0") == "0.0.0.0" and guard.bound_host("127.1") == "127.0.0.1"
    assert guard.bound_host("2130706433") == "127.0.0.1" and guard.bound_host("0x7f.1") == "127.0.0.1"
    for same in ("127.0.0.1", "::", "::1", "localhost", "kame.lan", "fe80::1%lo", ""):
        assert guard.bound_host(same) == same  # (names: never resolved here)
    # 127.1 is loopback: no false "anyone can reach it" warning; 0 is all addresses, 127.0.0.1 included
    assert guard.bind_warning(ServerConfig(host="127.1")) is None
    assert "serving on 0.0.0.0 (it also listens on 127.0.0.1)" in guard.bind_warning(ServerConfig(host="0"))
    loop = Server(EchoAgent(), ServerConfig(host="127.1"))
    assert loop.loopback and loop.own_names is None  # (was: the LAN rules, and none with a token)
    wild = Server(EchoAgent(), ServerConfig(host="0"))
    assert not wild.loopback and "0" not in wild.own_names  # (was: "0" taken for one of its names)


def test_kame_serve_host_0_is_said_as_the_bind_on_all_addresses():
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    _, cfg = _build(parser.parse_args(["--agent", "echo", "--host", "0"]))
    assert cfg.host == "0.0.0.0"
    assert page_url(cfg.host, 8998) == "http://localhost:8998/" and "other machines" in remote_note(cfg.host)
    _, cfg = _build(parser.parse_args(["--agent", "echo", "--host", "127.1"]))
    assert cfg.host == "127.0.0.1" and remote_note(cfg.host) == ""  # (was: "needs HTTPS at this address")


async def test_a_127_1_bind_with_a_token_keeps_the_loopback_host_check():
    """(was: a token dropped the Host check, as on a LAN bind: a rebinding page got the page)"""
    async with running_server(host="127.1", auth_token=LONG) as (url, _):
        async with aiohttp.ClientSession() as http:
            async with http.get(url + "/", headers={"Host": "evil.example"}) as r:
                assert r.status == 403 and (await r.json())["error"] == "forbidden_host"
            async with http.get(url + "/") as r:
                assert r.status == 200


# ---- 4. token files, short tokens, kame client's token sources ----------------------------------


@pytest.mark.skipif(os.name != "posix", reason="file modes")
def test_a_token_file_others_can_read_is_warned_of_not_refused(tmp_path, caplog):
    path = tmp_path / "tok"
    path.write_text(LONG + "\n")
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="kame.server"):
        assert ops.read_token_file(str(path), "--token-file") == LONG
    said = caplog.text
    assert "other users of this machine can read the token" in said and f"chmod 600 {path}" in said
    assert "set its mode (e.g. 0400) where it is mounted" in said  # (a mounted secret is read-only: chmod fails)
    assert "mode 644" in said and "its group and others" in said
    caplog.clear()
    path.chmod(0o600)
    with caplog.at_level(logging.WARNING, logger="kame.server"):
        assert ops.read_token_file(str(path), "--token-file") == LONG
    assert "chmod" not in caplog.text


def test_a_short_token_is_warned_of():
    said = ops.token_warning("s3cret")
    assert said and "only 6 characters" in said and "token_urlsafe" in said and "chmod 600" in said
    assert ops.token_warning(LONG) is None and ops.token_warning(None) is None


def test_kame_client_takes_the_token_from_a_file_or_the_environment(tmp_path, capsys):
    ap = client.build_parser()
    path = tmp_path / "tok"
    path.write_text(f" {LONG}\n")
    path.chmod(0o600)

    def token(argv, env):
        return client_token(ap.parse_args(argv + ["in.wav"]), env)
    env = {"KAME_AUTH_TOKEN": " from-env "}
    assert token(["http://h"], env) == "from-env"  # (was: ignored, a 401)
    assert token(["http://h", "--token", "given"], env) == "given"
    assert token(["http://h", "--token-file", str(path)], env) == LONG
    assert token(["http://h/?token=in-url"], env) is None  # (the URL's own token is sent)
    assert token(["http://h"], {}) is None and token(["http://h"], {"KAME_AUTH_TOKEN": ""}) is None
    with pytest.raises(ConfigError, match="--token and --token-file are both given"):
        token(["http://h", "--token", "x", "--token-file", str(path)], env)
    with pytest.raises(ConfigError, match="--token-file .*cannot read the token"):
        token(["http://h", "--token-file", str(tmp_path / "none")], env)
    with pytest.raises(SystemExit):
        ap.parse_args(["--help"])
    assert "KAME_AUTH_TOKEN" in " ".join(capsys.readouterr().out.split())


def test_kame_client_chooses_its_token_as_kame_serve_does(wav, monkeypatch, capsys, caplog):
    """(review r5 2: kame client had its own copy of ops.cli_token, without its checks: --token ""
    (a `--token $UNSET`) or a blank KAME_AUTH_TOKEN sent no token, and a 401 came, said nowhere why)"""
    ap = client.build_parser()
    for argv, env, said in ((["--token", ""], "", "--token '': a blank token would connect without one; give the "
                             "token (an unset variable in --token $VAR?), or omit --token to connect without one"),
                            ([], "  ", "KAME_AUTH_TOKEN '  ': a blank token would connect without one; set it to the "
                             "token, or unset it (or set it empty) to connect without one")):
        with pytest.raises(ConfigError) as info:
            client_token(ap.parse_args(["http://h", "in.wav", *argv]), {"KAME_AUTH_TOKEN": env})
        assert str(info.value) == said
        monkeypatch.setenv("KAME_AUTH_TOKEN", env)
        assert main(["http://h", str(wav), *argv]) == 1
        assert capsys.readouterr().err == f"error: {said}\n"
    # the URL's token before the environment's (a blank KAME_AUTH_TOKEN is then not read), and said at INFO
    assert client_token(ap.parse_args(["http://h/?token=x", "in.wav"]), {"KAME_AUTH_TOKEN": " "}) is None
    with caplog.at_level(logging.INFO, logger="kame.server"):
        assert client_token(ap.parse_args(["http://h", "in.wav"]), {"KAME_AUTH_TOKEN": LONG}) == LONG
    assert "the bearer token is the one in the environment variable KAME_AUTH_TOKEN" in caplog.text
    # (final read l2: sent to another machine's server: warned, naming it; to this machine's: not)
    capsys.readouterr()
    assert client_token(ap.parse_args(["http://127.0.0.1:8998", "in.wav"]), {"KAME_AUTH_TOKEN": LONG}) == LONG
    assert capsys.readouterr().err == ""
    assert client_token(ap.parse_args(["http://h", "in.wav"]), {"KAME_AUTH_TOKEN": LONG}) == LONG
    assert "warning: sending the token in KAME_AUTH_TOKEN to h, not a loopback address" in capsys.readouterr().err


def test_kame_client_main_leaves_a_programs_namespace_as_it_was(tmp_path, wav, monkeypatch):
    """(review r5 3: main wrote the token into the Namespace: a second call with --token-file failed,
    "--token and --token-file are both given")"""
    path = tmp_path / "tok"
    path.write_text(LONG)
    path.chmod(0o600)
    sent = []

    async def fake_chat(url, pcm, *, token=None, **kw):
        sent.append(token)
        return ChatResult(status=401)
    monkeypatch.setattr(client, "chat", fake_chat)
    a = client.build_parser().parse_args(["http://h", str(wav), "--token-file", str(path)])
    before = vars(a).copy()
    assert main(a) == 1 and main(a) == 1
    assert sent == [LONG, LONG] and vars(a) == before


@pytest.mark.parametrize("url", ["http://[::1/?token=" + SECRET, "ws://[::1:8998/api/chat?token=" + SECRET])
def test_kame_client_says_an_unclosed_ipv6_bracket_without_a_traceback(wav, url, capsys):
    """(review r5 7: urlsplit's "ValueError: Invalid IPv6 URL" ended kame client with a traceback)"""
    with pytest.raises(ConfigError, match=r"\?…: Invalid IPv6 URL \(an IPv6 address goes in brackets"):
        client.chat_url(url)
    assert main([url, str(wav)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {url.split('?')[0]}?…: Invalid IPv6 URL (an IPv6") and SECRET not in err, err


async def test_kame_client_sends_kame_auth_token(wav, monkeypatch):
    import asyncio

    monkeypatch.setenv("KAME_AUTH_TOKEN", LONG)
    async with running_server(auth_token=LONG) as (url, _):
        assert await asyncio.to_thread(main, [url, str(wav), "--fast", "--tail", "0.2"]) == 0


# ---- 5. hardening headers -----------------------------------------------------------------------


async def test_every_response_forbids_framing_and_sniffing_and_names_no_versions():
    """(was: none of these, and "Server: Python/3.11 aiohttp/3.14.5")"""
    async with running_server(auth_token=LONG) as (url, _):
        async with aiohttp.ClientSession() as http:
            for path, status in (("/", 200), ("/app.js", 200), ("/api/health", 200), ("/nope", 404),
                                 ("/api/metrics", 401), ("/api/chat", 401)):
                async with http.get(url + path) as r:
                    assert r.status == status, path
                    assert r.headers["X-Content-Type-Options"] == "nosniff", path
                    assert r.headers["X-Frame-Options"] == "DENY", path
                    assert r.headers["Content-Security-Policy"] == "frame-ancestors 'none'", path
                    assert r.headers["Server"] == "kame", path
            async with http.get(url + "/", headers={"Host": "evil.example"}) as r:  # (the Host guard's 403)
                assert r.status == 403 and r.headers["X-Frame-Options"] == "DENY"
