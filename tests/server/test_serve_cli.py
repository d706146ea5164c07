"""`kame serve`'s command line as a user meets it: an address that cannot be listened on is
named with the right cause, options that do not apply to the chosen agent are errors rather
than ignored, a static_dir without a page is refused and what it does not serve is said, a bind
on all addresses prints the page at localhost, the echo agent does not claim to load models, and
a bad upgrade says what a valid one is."""

from __future__ import annotations

import argparse
import socket

import aiohttp
import pytest

from kame.errors import ConfigError
from kame.server.app import _build, add_arguments, listen_socket

from .conftest import running_server


def _parse(argv):
    parser = argparse.ArgumentParser(prog="kame serve")
    add_arguments(parser)
    return parser.parse_args(argv)


def test_an_address_of_no_interface_is_not_blamed_on_another_server():
    with pytest.raises(ConfigError) as e:
        listen_socket("192.0.2.1", 0)  # TEST-NET-1: no interface of this machine has it
    said = str(e.value)
    assert "cannot listen on 192.0.2.1:0" in said and "no network interface" in said
    assert "another `kame serve`" not in said


def test_a_port_in_use_says_so():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ConfigError, match="another `kame serve`, or another program, uses it"):
            listen_socket("127.0.0.1", port)


def test_mode_with_the_echo_agent_is_an_error_not_ignored():
    with pytest.raises(ConfigError, match="--mode cascade is for the configured agent"):
        _build(_parse(["--agent", "echo", "--mode", "cascade"]))


def test_a_static_dir_that_is_no_folder_is_refused_by_serve_only(tmp_path):
    """(was: a bare 404 page, nothing logged); `kame run` with the same config is not stopped by a
    server-only key."""
    from kame.config import load_config

    with pytest.raises(ConfigError, match=r"server.static_dir: '/no/such/page' is not a folder \(it holds the "
                                          r"browser page"):
        _build(_parse(["--agent", "echo", "--set", "server.static_dir=/no/such/page"]))
    assert load_config(None, ["server.static_dir=/no/such/page"]).server.static_dir == "/no/such/page"
    (tmp_path / "index.html").write_text("<p>mine</p>")
    assert _build(_parse(["--agent", "echo", "--set", f"server.static_dir={tmp_path}"]))[1].static_dir == str(tmp_path)


def test_the_echo_agent_does_not_announce_loading_models(monkeypatch, capsys):
    from kame.server import app as A

    monkeypatch.setattr(A.web, "run_app", lambda *a, **k: None)  # (not serving: only what main prints first)
    assert A.main(_parse(["--agent", "echo", "--port", "0"])) == 0
    assert "front-end, codec, STT, LLM" not in capsys.readouterr().out


async def test_a_bad_websocket_upgrade_says_what_a_valid_one_is():
    # (a bad key; another version than 13 gets 426: test_server_leftovers)
    headers = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "x"}
    async with running_server() as (url, _), aiohttp.ClientSession() as http:
        async with http.get(url + "/api/chat", headers=headers) as r:
            body = await r.json()
    assert r.status == 400 and body["error"] == "not_websocket" and "Sec-WebSocket-Version: 13" in body["message"]


def test_trusted_proxy_help_says_all_it_drives():
    """(was: "the client address logged", when it also drives the Origin and Host checks and the cap)"""
    parser = argparse.ArgumentParser(prog="kame serve")
    add_arguments(parser)
    said = " ".join(parser.format_help().split())
    for what in ("X-Forwarded-For gives the client address (log, max_sessions_per_client)",
                 "X-Forwarded-Host/-Proto the page's origin", "skips the Host check"):
        assert what in said


def test_a_static_dir_without_a_regular_index_html_is_refused(tmp_path):
    """(was: served, / answering 404, with no word at start-up)"""
    (tmp_path / "app.js").write_text("//")
    with pytest.raises(ConfigError, match=r"has no index.html \(the page at /\): put the page's in it"):
        _build(_parse(["--agent", "echo", "--set", f"server.static_dir={tmp_path}"]))
    (tmp_path / "built.html").write_text("<p>mine</p>")
    (tmp_path / "index.html").symlink_to(tmp_path / "built.html")  # (a build output's, Nix's layout)
    with pytest.raises(ConfigError, match=r"index.html \(the page at /\) is a symlink; only regular files at"):
        _build(_parse(["--agent", "echo", "--set", f"server.static_dir={tmp_path}"]))


def test_what_a_static_dir_does_not_serve_is_said_once_at_start(tmp_path, caplog):
    """(was: symlinks and subfolders skipped with no word)"""
    import logging

    from kame.server.app import ServerConfig, make_app
    from kame.server.echo import EchoAgent

    (tmp_path / "index.html").write_text("<p>mine</p>")
    (tmp_path / "app.js").symlink_to(tmp_path / "index.html")
    (tmp_path / "assets").mkdir()
    (tmp_path / ".git").mkdir()  # (hidden: never served, not said)
    with caplog.at_level(logging.WARNING, "kame.server"):
        make_app(EchoAgent(), ServerConfig(static_dir=str(tmp_path)))
        make_app(EchoAgent(), ServerConfig())  # (kame's own page: nothing skipped, nothing said)
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(said) == 1 and "not serving app.js (a symlink), assets (a folder): only regular files" in said[0]
    assert ".git" not in said[0]


def test_a_bind_on_one_address_says_its_microphone_needs_https_here_too():
    """(was: 'other machines: this address ... needs HTTPS', though localhost is not served then:
    a browser on this machine needs HTTPS at that address too)"""
    from kame.server.app import page_url, remote_note

    assert page_url("192.0.2.2", 8998) == "http://192.0.2.2:8998/"
    note = remote_note("192.0.2.2")
    assert "needs HTTPS at this address" in note and "other machines" not in note
    assert "other machines" in remote_note("0.0.0.0") and remote_note("127.0.0.1") == ""


def test_a_bind_on_all_addresses_prints_the_page_at_localhost():
    """`kame serve --host 0.0.0.0` printed http://0.0.0.0:PORT/, where a browser refuses the page's
    microphone (not a secure context): it prints http://localhost:PORT/, which serves the page, and
    says that other machines need HTTPS for the microphone."""
    import queue
    import re
    import subprocess
    import sys
    import threading
    import urllib.request

    proc = subprocess.Popen([sys.executable, "-c", "import sys; from kame.cli import main; sys.exit(main())", "serve",
                             "--agent", "echo", "--port", "0", "--host", "0.0.0.0", "--token", "t"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        lines: queue.Queue = queue.Queue()  # read in a thread: a line that never comes fails, not hangs
        threading.Thread(target=lambda: [lines.put(x) for x in iter(proc.stdout.readline, "")] + [lines.put("")],
                         daemon=True).start()
        line = lines.get(timeout=60)
        assert "serving on http://localhost:" in line and "other machines" in line and "HTTPS" in line, line
        port = int(re.search(r"http://localhost:(\d+)/", line).group(1))
        with urllib.request.urlopen(f"http://localhost:{port}/", timeout=10) as r:
            assert r.status == 200
    finally:
        proc.terminate()
        proc.wait(timeout=20)
