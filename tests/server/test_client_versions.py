"""What `kame client` does with what it does not know of a server's: another protocol version (one
warning naming both), messages of a kind it does not know (skipped, said once as its own skip, not
one "server error" each), metadata fields of the wrong type (read as absent, one warning: a client
needs no field but "type", docs/protocol.md; was: a "stats" "dropped_input_s" of "n/a" ended it
with a traceback and an empty --json)."""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import struct

import numpy as np
import pytest
import soundfile as sf

from kame.server import protocol as P
from kame.server.client import ChatResult, Receiver, main
from kame.server.clientreport import report

from .conftest import tone


@pytest.fixture
def wav(tmp_path):
    path = tmp_path / "in.wav"
    sf.write(str(path), tone(0.3), 24000)
    return path


async def _session(tmp_path, wav, messages: list[bytes]):
    """`kame client` against a server that sends ``messages`` (then a frame of audio): (its exit
    status, its --json file)."""
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    async def handler(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        for data in messages:
            await ws.send_bytes(data)
        await ws.send_bytes(P.encode(P.Kind.PCM, P.pcm16_encode(np.full(1920, 0.1, np.float32))))
        async for _ in ws:  # until the client closes
            pass
        return ws

    app = web.Application()
    app.router.add_get("/api/chat", handler)
    js = tmp_path / "o.json"
    async with TestServer(app) as server:
        argv = [f"http://127.0.0.1:{server.port}", str(wav), "--fast", "--tail", "0.2", "--json", str(js)]
        rc = await asyncio.to_thread(main, argv)
    return rc, js


def _meta(d) -> bytes:
    return P.encode(P.Kind.METADATA, json.dumps(d))


async def test_a_stats_field_of_the_wrong_type_is_ignored_with_one_warning(wav, tmp_path, capsys):
    stats = [_meta({"type": "stats", "frames": 10 * i, "missed_deadlines": 0, "dropped_input_s": "n/a"})
             for i in range(1, 4)]
    rc, js = await _session(tmp_path, wav, [P.handshake(), *stats])
    err = capsys.readouterr().err
    assert rc == 0 and "Traceback" not in err
    out = json.loads(js.read_text())  # (was: 0 bytes)
    assert out["dropped_input_s"] == 0.0 and out["frames"] == 30 and len(out["metas"]) == 3
    warned = [line for line in err.splitlines() if "stats.dropped_input_s" in line]
    assert len(warned) == 1 and warned[0].startswith("warning: ignored 3 metadata field(s)")


BASE = [  # a cascade session's metadata, each field of the right type
    {"type": "info", "session": "s", "protocol": 0, "t0": 0.5},
    {"type": "info", "mode": "cascade", "stt": "x", "llm": "y"},
    {"type": "vad", "event": "start", "t": 1.0, "detected_at": 1.1},
    {"type": "transcript", "speaker": "user", "text": "hi", "final": False, "t": 1.5,
     "words": [{"word": "hi", "start": 1.0, "end": 1.4}]},
    {"type": "vad", "event": "end", "t": 3.0, "detected_at": 3.2},
    {"type": "transcript", "speaker": "user", "text": "hi there", "final": True, "t": 3.5,
     "words": [{"word": "hi", "start": 1.0, "end": 1.4}, {"word": "there", "start": 1.5, "end": 2.9}]},
    {"type": "turn", "turn": 1, "t": 3.6},
    {"type": "agent_turn", "turn": 1, "t": 5.0, "text": "ok", "reply": "ok"},
    {"type": "stats", "frames": 100, "missed_deadlines": 2, "dropped_input_s": 0.5},
]


@pytest.mark.parametrize("i, key, bad", [  # each one a TypeError, KeyError, ... before
    (8, "dropped_input_s", [1]), (4, "t", "x"), (4, "t", None), (4, "t", "<missing>"), (5, "t", "x"),
    (5, "words", "w"), (5, "words", [1]), (6, "turn", [1]), (7, "turn", {}),
])
def test_every_field_the_client_reads_may_be_of_the_wrong_type(i, key, bad, capsys):
    metas = copy.deepcopy(BASE)
    if bad == "<missing>":
        del metas[i][key]
    else:
        metas[i][key] = bad
    res = ChatResult(close_code=1000)
    rx = Receiver(res)
    for j, d in enumerate(metas):
        rx.feed(_meta(d))
        rx.sent_s = j * 0.5
        rx.replying()  # (what chat asks after each chunk it sends)
    rx.finish()
    assert report(res, argparse.Namespace(fast=False, json=None, tail=1.0, max_tail=1.0)) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: ignored")]
    assert len(warned) == (bad not in (None, "<missing>")) and all(f"{BASE[i]['type']}.{key}" in w for w in warned)


async def test_messages_of_an_unknown_kind_are_said_once_as_the_clients_skip(wav, tmp_path, capsys):
    rc, js = await _session(tmp_path, wav, [P.handshake()] + [b"\x09future"] * 4 + [b"\x0afuture"])
    err = capsys.readouterr().err
    assert rc == 0 and "server error" not in err  # (was: "server error: unreadable_message ..." each)
    skipped = [line for line in err.splitlines() if "of a type this client does not know" in line]
    assert skipped == ["warning: skipped 5 server messages of a type this client does not know (0x09 x4, 0x0a x1): "
                       "a newer or another server's; the session went on"]
    out = json.loads(js.read_text())
    assert out["errors"] == [] and out["skipped_kinds"] == {"0x09": 4, "0x0a": 1}


@pytest.mark.parametrize("version, warned", [(7, True), (0, False)])
async def test_a_server_of_another_protocol_version_gets_one_warning(version, warned, wav, tmp_path, capsys):
    info = _meta({"type": "info", "session": "s", "protocol": version})
    rc, js = await _session(tmp_path, wav, [P.encode(P.Kind.HANDSHAKE, struct.pack("<II", version, 3)), info])
    err = capsys.readouterr().err
    assert rc == 0 and json.loads(js.read_text())["protocol"] == version  # (a warning, not a failure)
    lines = [line for line in err.splitlines() if "protocol version" in line]
    assert len(lines) == warned
    if warned:
        assert lines[0].startswith(f"warning: the server speaks protocol version {version}, this client version "
                                   f"{P.PROTOCOL_VERSION}:") and "upgrade kame" in lines[0]
