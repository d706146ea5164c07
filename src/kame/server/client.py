"""A Python client for `kame serve`: stream a wav file, collect the agent's audio/text/metadata.

    kame client ws://127.0.0.1:8998/api/chat IN.wav -o OUT.wav
    kame client http://host:8998 IN.wav -o OUT.wav --token SECRET --json out.json
    (python -m kame.server.client ... is the same)

In Python (used by the tests and `kame bench soak`):

    res = await chat(url, pcm)          # pcm: float32 24 kHz; streams in real time + tail
    res.audio, res.texts, res.metas, res.errors, res.close_code, res.failure()

Against a cascade (the session's "info" metadata says mode "cascade") whose reply is under way or
still to come when the tail ends, more silence is streamed until the reply is over, as `kame run`
does (kame.runtime.filemode.reply_pending decides for both), up to ``max_tail_s`` (--max-tail).
What `kame client` prints once the session is over (summary, warnings): kame.server.clientreport.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import html
import json
import math
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import aiohttp
import numpy as np

from ..audio import READ_FORMATS
from ..backend.options import is_finite_number
from ..cliargs import tail_seconds
from ..errors import ConfigError, KameError
from ..runtime.filemode import DEFAULT_MAX_TAIL_S, check_tail, read_input, reply_pending
from ..runtime.interrupt import done_or_stopped, first_ctrl_c, run_to_end
from . import protocol as P
from .clientreport import EPILOG, json_record, report
from .logsafe import cut_query  # (printed URLs: ?token=SECRET is cut, as in the server's log)
from .guard import is_loopback_name
from .ops import cli_token

URL_SCHEMES = ("ws", "wss", "http", "https")
# what reply_pending reads: partials too, as `kame run` (words heard since the speech began say the STT is at
# work on a final that may come late), and "route" (hybrid routing's turn; was left out: its reply was cut off)
REPLY_METAS = ("info", "turn", "route", "agent_turn", "vad", "transcript", "backend")  # (an STT down: no final comes)
END_WAIT_S = 10.0  # after END_INPUT: wait this long for the server to end the session (its final stats), then close
UPGRADE_TIMEOUT_S = 30.0  # connected, no answer to the WebSocket upgrade (or no handshake) this long: give up
CLOSE_CODES = {  # why a connection closed, for failure()
    1001: "the server is shutting down", 1006: "the connection was lost without a close from the server "
    "(it stopped or was killed, or the network failed)", 1008: "the server closed it for a policy violation",
    1009: "a message was too large (for the server, or for this client)", 1011: "the server failed (its log says why)",
}


def _count(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _words(v) -> bool:
    return isinstance(v, list) and all(isinstance(w, dict) and all(is_finite_number(w.get(k)) for k in ("start", "end"))
                                       for w in v)


def _turn_id(v) -> bool:  # (a set member: open_turns)
    return v is None or isinstance(v, (str, int, float))


READ_FIELDS = {  # the fields of the server's metadata this client reads (its checks, its summary), and their types
    "stats": {"frames": _count, "missed_deadlines": _count, "dropped_input_s": is_finite_number},
    "info": {"t0": is_finite_number},
    "vad": {"event": lambda v: isinstance(v, str), "detected_at": is_finite_number},
    "transcript": {"final": lambda v: isinstance(v, bool), "text": lambda v: isinstance(v, str), "words": _words},
    "turn": {"turn": _turn_id}, "agent_turn": {"turn": _turn_id}, "route": {"turn": _turn_id},
}


def readable(d: dict) -> tuple[dict, list[str]]:
    """Metadata ``d`` less the fields this client reads (READ_FIELDS; "t" of every type: a finite
    number) that are of another type, and their names ("stats.dropped_input_s"; not those that
    are null, left out as well): a client needs no field but "type" (docs/protocol.md), so one
    of the wrong type is ignored as if absent (was: a "dropped_input_s" of "n/a" ended kame
    client with a traceback and an empty --json)."""
    kind = d.get("type")
    checks = {"t": is_finite_number, **(READ_FIELDS.get(kind, {}) if isinstance(kind, str) else {})}
    out = [k for k, ok in checks.items() if k in d and not ok(d[k])]
    return ({k: v for k, v in d.items() if k not in out} if out else d), \
        [f"{kind}.{k}" for k in out if d[k] is not None]


class NoAnswer(KameError):
    """Connected, but the server did not answer (the WebSocket upgrade, or the handshake)."""


@dataclass
class ChatResult:
    audio: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # agent audio, 24 kHz
    texts: list[str] = field(default_factory=list)
    metas: list[dict] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)
    handshake: tuple[int, int] | None = None
    pings: int = 0
    close_code: int | None = None
    close_reason: str | None = None  # the close frame's reason, if the server gave one
    first_audio_s: float | None = None  # seconds from connect to the first agent audio
    audio_times: list[float] = field(default_factory=list)  # arrival of each audio message (s from connect)
    connected_at: float | None = None  # time.monotonic() at connect
    status: int | None = None  # HTTP status if the upgrade was refused
    refusal: dict | None = None  # then the server's reason (kame serve: {"error", "message"}), if chat() could read it
    url: str | None = None  # the WebSocket URL connected to
    tail_extended_s: float = 0.0  # silence streamed beyond tail_s while a cascade reply was pending
    reply_cut_off: bool = False  # a cascade reply was still pending when the stream ended (max_tail_s)
    input_s: float = 0.0  # seconds of audio to stream before the tail
    sent_s: float = 0.0  # seconds of audio streamed (the input, then its tail)
    interrupted: bool = False  # the stream was ended early by ``stop`` (kame client: Ctrl-C)
    skipped_kinds: dict[int, int] = field(default_factory=dict)  # messages of a kind this client does not
    # know (its first byte: how many), skipped: a newer server's, or Moshi's 0x07
    _read: tuple = field(default=(None, 0, [], {}), init=False, repr=False, compare=False)  # (_readable's)

    @property
    def text(self) -> str:
        return "".join(self.texts)

    @property
    def read_metas(self) -> list[dict]:
        """The metadata as this client reads it: each less its fields of a wrong type (readable)."""
        return list(self._readable()[0])

    @property
    def unreadable_fields(self) -> dict[str, int]:
        """The fields ``read_metas`` left out ("stats.dropped_input_s"), with how many messages had each."""
        return dict(self._readable()[1])

    def _readable(self) -> tuple[list[dict], dict[str, int]]:
        """read_metas and unreadable_fields, checked once for the metadata so far (a report reads
        them about nine times); again only when ``metas`` grew or is another list: ``metas`` is
        append-only (an entry changed in place would not be seen)."""
        if self._read[0] is not self.metas or self._read[1] != len(self.metas):
            read, names = [], {}
            for m in self.metas:
                d, bad = readable(m)
                read.append(d)
                for name in bad:
                    names[name] = names.get(name, 0) + 1
            self._read = (self.metas, len(self.metas), read, names)
        return self._read[2], self._read[3]

    @property
    def ends_input(self) -> bool:
        """The server takes control 4, END_INPUT (its "info" says ``"end_input": true``): the client
        ends the session with it and gets the session's final "stats" (a Moshi or older kame server:
        the client just closes, and the totals are those of the latest periodic "stats")."""
        return any(m.get("type") == "info" and m.get("end_input") is True for m in self.metas)

    @property
    def dropped_input_s(self) -> float:
        """Seconds of the user's audio the server dropped (its input backlog is bounded), as its
        latest "stats" metadata says (a per-session total, the session's final one when the server
        ends it on END_INPUT: ends_input; 0 when it sends none)."""
        return max([float(m.get("dropped_input_s") or 0.0) for m in self.read_metas if m.get("type") == "stats"]
                   + [0.0])

    @property
    def stats_totals(self) -> list[tuple[int, int]]:
        """(frames that missed their 80 ms deadline, frames) of each of the server's "stats"
        metadata, in order (running per-session totals; none from the cascade)."""
        return [(m["missed_deadlines"], m["frames"]) for m in self.read_metas if m.get("type") == "stats"
                and "frames" in m and "missed_deadlines" in m]

    @property
    def missed_deadlines(self) -> tuple[int, int]:
        """The latest of stats_totals ((0, 0) when the server sends none, as the cascade)."""
        return max(self.stats_totals, key=lambda lf: lf[1], default=(0, 0))

    def run_record(self) -> dict:
        """The session as `kame run`'s record has it, for its checks (kame.runtime.runreport's
        final_missing, filemode's unanswered): "components" (the "info" metadata merged), "vad",
        "transcripts" (with a time and a final flag), "other" (the turn events) and "agent_text"."""
        metas = self.read_metas
        info = {k: v for m in metas if m.get("type") == "info" for k, v in m.items()}
        timed = [m for m in metas if "t" in m]
        return {"components": info, "vad": [m for m in timed if m.get("type") == "vad"],
                "transcripts": [{**m, "final": bool(m.get("final")), "text": str(m.get("text") or "")}
                                for m in timed if m.get("type") == "transcript"],
                "other": [m for m in timed if m.get("type") in ("turn", "route", "agent_turn", "barge_in")],
                "agent_text": [{"t": 0.0, "text": self.text}] if self.text else []}

    def failure(self) -> str | None:
        """Why the session failed, or None: a fatal server error, or a close other than a
        normal one (1000), e.g. 1001 when the server stops mid-upload."""
        fatal = next((e for e in self.errors if e.get("fatal")), None)
        if fatal is not None:
            return f"the server ended the session: {fatal.get('code')}: {fatal.get('message')}"
        if self.close_code != 1000:
            why = self.close_reason or CLOSE_CODES.get(self.close_code)
            return f"the connection closed with code {self.close_code}" + (f" ({why})" if why else "") \
                + ", not a normal close (1000)"
        return None

    def refusal_text(self) -> str:
        """"refused: HTTP 503 capacity: all 4 sessions are in use ..." (as much as is known)."""
        why = self.refusal or {}
        said = why.get("message")
        if str(said).startswith(f"{self.status}:"):  # aiohttp's own "404: Not Found": no more than the status
            said = None
        text = f"refused: HTTP {self.status}" + (f" {why['error']}" if why.get("error") else "") \
            + (f": {said}" if said else "")
        if self.status == 404 and not why.get("error"):  # not kame serve's own refusal: a wrong path or server
            text += f" at {cut_query(self.url)} (no kame server's /api/chat there: check the URL's path and port)"
        return text


def chat_url(url: str, token: str | None = None, pcm: bool = False) -> str:
    """The /api/chat WebSocket URL of the server at ``url``: http(s) becomes ws(s); a path of ""
    or "/" (the page's URL) becomes /api/chat, any other without it gets it appended (a server
    behind a path prefix), a trailing slash goes; the URL's query is kept, its token too unless
    ``token`` is given; values are URL-encoded. ConfigError for another scheme, no host, a bad port or
    an unclosed IPv6 bracket (was: urlsplit's ValueError, a traceback)."""
    brackets = " (an IPv6 address goes in brackets: http://[::1]:8998/)"
    try:
        parts = urlsplit(url.strip())
    except ValueError as exc:  # "Invalid IPv6 URL"
        raise ConfigError(f"{cut_query(url)}: {exc}{brackets}") from None
    scheme = parts.scheme.lower()
    if scheme not in URL_SCHEMES:
        raise ConfigError(f"{cut_query(url)}: the URL must start with ws://, wss://, http:// or https://")
    if not parts.netloc:
        raise ConfigError(f"{cut_query(url)}: the URL has no host")
    try:
        parts.port  # (raises for a port that is not a number in 0..65535)
    except ValueError as exc:
        raise ConfigError(f"{cut_query(url)}: {exc}{brackets if parts.netloc.count(':') > 1 else ''}") from None
    path = parts.path.rstrip("/")
    if not path.endswith("/api/chat"):
        path += "/api/chat"
    query = parse_qsl(parts.query, keep_blank_values=True)
    if token and token.strip():  # (stripped, as kame serve strips the token it serves with)
        query = [(k, v) for k, v in query if k != "token"] + [("token", token.strip())]
    if pcm:
        query = [(k, v) for k, v in query if k != "pcm"] + [("pcm", "1")]
    return urlunsplit(("wss" if scheme in ("https", "wss") else "ws", parts.netloc, path,
                       urlencode(query, quote_via=quote), ""))


class Receiver:
    """Collects server messages into a ChatResult (decoding audio)."""

    def __init__(self, res: ChatResult) -> None:
        self.res, self.t0 = res, time.monotonic()
        res.connected_at = self.t0
        self.decoder = P.OpusDecoder(max_samples_per_message=1 << 30)
        self.chunks: list[np.ndarray] = []
        self.ready = asyncio.Event()
        self.sent_s = 0.0  # the session time: seconds of audio sent so far
        self.turn_metas: list[dict] = []  # what reply_pending reads, with "sent_s" at their arrival

    def replying(self) -> bool:
        """A cascade reply is under way or still to come (kame.runtime.filemode.reply_pending)."""
        return reply_pending(self.turn_metas, self.sent_s, at="sent_s")

    def feed(self, data: bytes) -> None:
        """One server message into the result. One of a kind the client does not know (Moshi's
        0x07, a newer server's) is counted in ``skipped_kinds`` (said once, at the end: was one
        "server error" each) and skipped; one it cannot read (bad JSON, bad Ogg, ...) is kept as
        a non-fatal error and skipped: the session goes on (was: it ended the client, with
        nothing written)."""
        try:
            self._feed(data)
        except P.ProtocolError as exc:
            if exc.code == "unknown_kind":
                self.res.skipped_kinds[data[0]] = self.res.skipped_kinds.get(data[0], 0) + 1
                return
            self.res.errors.append({"code": "unreadable_message", "fatal": False,
                                    "message": f"kame client skipped a server message it cannot read: {exc}"})

    def _feed(self, data: bytes) -> None:
        kind, payload = P.decode(data)
        r = self.res
        if kind == P.Kind.HANDSHAKE:
            r.handshake = P.parse_handshake(payload)
            self.ready.set()
        elif kind in (P.Kind.AUDIO, P.Kind.PCM):
            pcm = self.decoder.decode(payload) if kind == P.Kind.AUDIO else P.pcm16_decode(payload)
            if len(pcm):
                if r.first_audio_s is None:
                    r.first_audio_s = time.monotonic() - self.t0
                r.audio_times.append(time.monotonic() - self.t0)
                self.chunks.append(pcm)
        elif kind == P.Kind.TEXT:
            r.texts.append(P.parse_text(payload))
        elif kind == P.Kind.METADATA:
            d = P.parse_json(payload)
            r.metas.append(d)
            d = readable(d)[0]  # (a field of the wrong type left out)
            if d.get("type") in REPLY_METAS and (d.get("type") != "vad" or "t" in d):  # (reply_pending reads it)
                # the server's "t" is on its clock: the session time it arrived at, for waits (a
                # little after the event, so a wait measured from it is a little longer)
                self.turn_metas.append({**d, "sent_s": self.sent_s})
        elif kind == P.Kind.ERROR:
            try:
                r.errors.append(P.parse_json(payload))
            except P.ProtocolError:  # a plain-text error (Moshi servers)
                r.errors.append({"code": "error", "message": payload.decode("utf-8", "replace"), "fatal": False})
        elif kind == P.Kind.PING:
            r.pings += 1

    async def run(self, ws) -> None:
        while True:  # (not `async for`: it hides the CLOSE message, and so the close's reason)
            msg = await ws.receive()
            if msg.type == aiohttp.WSMsgType.BINARY:
                self.feed(msg.data)
            elif msg.type == aiohttp.WSMsgType.CLOSE:
                self.res.close_reason = msg.extra or None
                break
            elif msg.type in (aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                break
        self.res.close_code = ws.close_code
        self.ready.set()

    def finish(self) -> ChatResult:
        if self.chunks:
            self.res.audio = np.concatenate(self.chunks)
        return self.res


def _refusal_keeper(res: ChatResult) -> aiohttp.TraceConfig:
    """An aiohttp hook keeping the body of a refused upgrade in ``res.refusal`` (the server says
    why there; aiohttp's WSServerHandshakeError keeps only the status)."""
    async def on_request_end(session, ctx, params) -> None:
        if params.response.status == 101:
            return
        try:  # small, if it is a kame server's JSON: read at most 4 KiB, waiting at most 5 s
            body = (await asyncio.wait_for(params.response.content.read(4096), 5)).decode("utf-8", "replace")
        except (aiohttp.ClientError, asyncio.TimeoutError):
            return
        try:
            why = json.loads(body)
        except ValueError:
            why = None
        if not isinstance(why, dict):  # not kame serve: the body's text, if any (an HTML page's, without tags)
            body = re.sub(r"(?is)<(style|script)\b.*?</\1\s*>", " ", body)  # (their text is no message)
            text = " ".join(html.unescape(re.sub(r"<[^>]*>", " ", body)).split())
            why = {"message": text[:200] + ("..." if len(text) > 200 else "")} if text else None
        res.refusal = why

    trace = aiohttp.TraceConfig()
    trace.on_request_end.append(on_request_end)
    return trace


async def chat(
    url: str,
    pcm: np.ndarray,
    *,
    token: str | None = None,
    pcm_mode: bool = False,
    realtime: bool = True,
    tail_s: float = 1.0,
    max_tail_s: float | None = None,
    chunk: int = 1920,
    http: aiohttp.ClientSession | None = None,
    stop: asyncio.Event | None = None,
) -> ChatResult:
    """Stream ``pcm`` (float32 24 kHz) to the server, then ``tail_s`` of silence, then end the
    session (control END_INPUT, when the server takes it: its final "stats" comes) and close.

    With ``realtime=False`` the file is sent as fast as possible (the server drops what it cannot
    keep: ``res.dropped_input_s``); the tail is always paced in real time (the agent answers in
    real time), so make it long enough to hear the answer. A cascade reply still pending after
    the tail (``Receiver.replying``) gets more silence, a chunk at a time, up to ``max_tail_s``
    of silence in all (None: ``tail_s``, no more): ``res.tail_extended_s``, ``res.reply_cut_off``.
    Once ``stop`` is set (kame client: Ctrl-C) nothing more is sent: the session is closed
    normally and what came is returned, ``res.interrupted`` set.

    A refused upgrade sets ``res.status`` and, when ``http`` is not given, ``res.refusal``.
    Connection failures raise aiohttp.ClientError / OSError; a bad URL ConfigError; a server
    that does not answer the upgrade, or sends no handshake, within UPGRADE_TIMEOUT_S NoAnswer."""
    res = ChatResult()
    url = res.url = chat_url(url, token, pcm_mode)
    stop = stop or asyncio.Event()
    own = http is None
    http = http or aiohttp.ClientSession(trace_configs=[_refusal_keeper(res)])
    try:
        # (a ClientSession's own timeout is 5 min: too long to wait for a server that is not one)
        connect = asyncio.ensure_future(http.ws_connect(url, max_msg_size=1 << 24, autoclose=True))
        if not await done_or_stopped(connect, stop, UPGRADE_TIMEOUT_S) or not connect.done():
            connect.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError, OSError):
                await connect
            if stop.is_set():
                res.interrupted = True
                return res
            raise NoAnswer(f"{cut_query(url)}: no answer to the connection or its WebSocket upgrade within {UPGRADE_TIMEOUT_S:g} s "
                           f"(is a kame server listening there, and not stuck?)")
        try:
            ws = connect.result()
        except aiohttp.WSServerHandshakeError as exc:
            res.status = exc.status
            return res
        async with ws:
            rx = Receiver(res)
            rx_task = asyncio.create_task(rx.run(ws))
            if not await done_or_stopped(rx.ready.wait(), stop, UPGRADE_TIMEOUT_S):
                rx_task.cancel()
                raise NoAnswer(f"{cut_query(url)}: the WebSocket opened, but the server sent no handshake (0x00) within "
                               f"{UPGRADE_TIMEOUT_S:g} s (is it a kame or Moshi server?)")
            enc = P.OpusEncoder()
            pcm = np.asarray(pcm, np.float32)
            res.input_s = len(pcm) / P.SAMPLE_RATE
            audio = np.concatenate([pcm, np.zeros(int(tail_s * P.SAMPLE_RATE), np.float32)])
            n_asked = len(audio)  # the input and --tail (the tail's extension counts from here)
            if not pcm_mode:  # the encoder sends whole 80 ms frames: the last part of one, padded, too
                audio = np.pad(audio, (0, -len(audio) % P.OPUS_FRAME))
            n_tail = len(audio)
            n_max = len(pcm) + int(max(tail_s, max_tail_s or 0.0) * P.SAMPLE_RATE)
            silence = np.zeros(chunk, np.float32)
            t0 = time.monotonic()
            i = 0
            while i < n_tail or (i < n_max and rx.replying()):
                if rx_task.done():
                    break
                if stop.is_set():  # (a Ctrl-C after the last chunk is no interruption)
                    res.interrupted = True
                    break
                piece = audio[i : i + chunk] if i < n_tail else silence[: n_max - i]
                if pcm_mode:
                    data = P.encode(P.Kind.PCM, P.pcm16_encode(piece))
                else:
                    pages = enc.encode(piece)
                    data = P.encode(P.Kind.AUDIO, pages) if pages else None
                if data is not None:
                    try:
                        await ws.send_bytes(data)
                    except ConnectionError:
                        break
                if realtime or i >= len(pcm):  # the silent tail is always paced in real time
                    await asyncio.sleep(max(0.0, t0 + (i + len(piece)) / P.SAMPLE_RATE - time.monotonic()))
                else:
                    await asyncio.sleep(0)
                    t0 = time.monotonic() - (i + len(piece)) / P.SAMPLE_RATE
                i += len(piece)
                rx.sent_s = res.sent_s = i / P.SAMPLE_RATE
            res.tail_extended_s = (i - n_asked if i > n_tail else 0) / P.SAMPLE_RATE  # (the padding is not)
            res.reply_cut_off = i >= n_max and not rx_task.done() and rx.replying()  # (not a lost connection)
            if not rx_task.done() and res.ends_input:
                # the server ends the session and sends what it still has, the final "stats" (the
                # session's totals: the periodic ones miss up to their last second), then closes
                with contextlib.suppress(ConnectionError):
                    await ws.send_bytes(P.encode(P.Kind.CONTROL, bytes([P.Control.END_INPUT])))
                    await done_or_stopped(rx_task, stop, END_WAIT_S)
            if not rx_task.done():
                await ws.close()  # (waits up to 10 s for the server's close, then drops the connection)
            try:
                await asyncio.wait_for(rx_task, 10)
            except asyncio.TimeoutError:  # what came is kept; the close code says the end was not clean
                pass
            res.close_code = ws.close_code
        return rx.finish()
    finally:
        if own:
            await http.close()


async def _chat_until_interrupted(a: argparse.Namespace, pcm: np.ndarray, token: str | None) -> ChatResult:
    """``chat`` for main: the first Ctrl-C ends the stream and keeps what came (written as usual,
    exit status 130); a second one quits at once."""
    async with first_ctrl_c("ending the session and saving what came") as stop:
        return await chat(a.url, pcm, token=token, pcm_mode=a.pcm, realtime=not a.fast, tail_s=a.tail,
                          max_tail_s=max(a.tail, a.max_tail), stop=stop)


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("url", help="server URL, e.g. ws://127.0.0.1:8998/api/chat or http://127.0.0.1:8998")
    ap.add_argument("input", help=f"input audio: {READ_FORMATS} (any rate/channels; mixed to mono 24 kHz)")
    ap.add_argument("-o", "--output",
                    help="write the agent's audio here (24 kHz; .wav, .flac, .ogg, .opus or .mp3, by its suffix)")
    ap.add_argument("--json", help="write text/metadata/errors here")
    ap.add_argument("--token", default=None,
                    help="the server's token (sent URL-encoded as ?token=; shown by `ps`); default: --token-file's, "
                         "else a token in the URL's query, else the environment variable KAME_AUTH_TOKEN")
    ap.add_argument("--token-file", default=None, metavar="PATH",
                    help="the server's token, read from this file (kept out of `ps`, as kame serve's --token-file)")
    ap.add_argument("--pcm", action="store_true", help="use raw PCM (0x08) both ways instead of Ogg/Opus")
    ap.add_argument("--tail", type=tail_seconds, default=2.0,
                    help="seconds of silence streamed after the file (default 2, below 3600)")
    ap.add_argument("--max-tail", type=tail_seconds, default=DEFAULT_MAX_TAIL_S,
                    help=f"a cascade still answering after --tail gets more silence until its reply is over, "
                         f"up to this many seconds of silence in all (default {DEFAULT_MAX_TAIL_S:g})")
    ap.add_argument("--fast", action="store_true",
                    help="do not pace the upload in real time; the server takes about 3 s of audio ahead of real "
                         "time and drops the rest undecoded (a warning says how much), so most of a longer input "
                         "is lost: for checking a connection, not for asking")
    ap.epilog, ap.formatter_class = EPILOG, argparse.RawDescriptionHelpFormatter


def client_token(a: argparse.Namespace, env) -> str | None:
    """The token kame client sends: kame serve's choice (ops.cli_token: --token, else --token-file's,
    else KAME_AUTH_TOKEN; a blank one refused), but the URL's own ?token= comes before KAME_AUTH_TOKEN."""
    url = urlsplit(chat_url(a.url))
    in_url = any(k == "token" for k, _ in parse_qsl(url.query))
    token = cli_token(a.token, getattr(a, "token_file", None), {} if in_url else env, "connect without one")
    if token and not (in_url or a.token or getattr(a, "token_file", None)) and not is_loopback_name(url.hostname or ""):
        print(f"warning: sending the token in KAME_AUTH_TOKEN to {url.hostname}, not a loopback address (unset it, or "
              f"give --token / --token-file, if that server is not the one it is for)", file=sys.stderr)
    return token


def build_parser() -> argparse.ArgumentParser:
    """`python -m kame.server.client`'s parser: kame.cli's kind, so -o takes --out too, as in `kame client`."""
    from ..cli import _Parser

    ap = _Parser(prog="python -m kame.server.client", description=__doc__.split("\n")[0])
    add_arguments(ap)
    return ap


def main(argv: list[str] | argparse.Namespace | None = None) -> int:
    """``kame client ...`` (parsed arguments) or ``python -m kame.server.client ...`` (argv)."""
    from ..audio import CLIPPED_WARN_SHARE, clipped_share, command_input, output_format, write_wav
    from ..paths import check_output_file

    a = argv if isinstance(argv, argparse.Namespace) else build_parser().parse_args(argv)
    try:  # everything that can be wrong before the session, not after it
        check_tail(a.tail, a.max_tail)  # (checked as parsed too: this is for a program's own Namespace)
        token = client_token(a, os.environ)  # (the URL checked first, by chat_url)
        if a.output is not None:  # ("" too: check_output_file says it is empty)
            check_output_file(a.output, input=a.input, file_type=output_format)
        if a.json is not None:
            check_output_file(a.json, flag="--json", input=a.input)
            if a.output and Path(a.json).resolve() == Path(a.output).resolve():  # one would overwrite the other
                raise ConfigError(f"--json {a.json} is the -o file too; give another --json")
        pcm, note = read_input(a.input)  # (24 kHz mono, as kame run reads it)
    except KameError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if note:
        print(f"input {a.input}: {note}")
    clipped = clipped_share(pcm)  # (as sent, 16-bit PCM or Opus: a float file louder than full scale, or a file
    if clipped >= CLIPPED_WARN_SHARE:  # at full scale whose resampling to 24 kHz overshoots it)
        over = 20 * math.log10(float(np.abs(pcm).max()))  # (dB above full scale: scaled down by more, none clip)
        pipe, src = command_input(a.input)
        print(f"warning: {100 * clipped:.2f} % of the input's samples (mono, at 24 kHz, as sent) exceed full scale, "
              f"by up to {over:.3g} dB, and are clipped as they are sent (the agent hears them clipped; kame run's "
              f"agent hears them unclipped): scale {a.input} down in float (sox clips a float file as it reads it), "
              f"e.g. {pipe}ffmpeg -i {src} -af volume=-{over + 0.1:.1f}dB quieter.wav", file=sys.stderr)
    try:
        res = run_to_end(_chat_until_interrupted(a, pcm, token))
    except KeyboardInterrupt as exc:  # a second Ctrl-C: one line, as kame run's (was: exit 130, nothing said)
        from ..cli import said_interrupted

        return said_interrupted("kame client", exc)
    except KameError as exc:  # NoAnswer: connected, but the server did not answer
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except aiohttp.ClientConnectorError as exc:  # nothing listens there, the name does not resolve, ...
        # asyncio words every connect error "Connect call failed (...)"; trying several addresses
        # (localhost: ::1 and 127.0.0.1) gives "Multiple exceptions: [Errno 99] ..., [Errno 111] ..."
        err, text = exc.os_error, str(exc.os_error)
        if err.errno == errno.ECONNREFUSED or (err.errno is None and f"[Errno {errno.ECONNREFUSED}]" in text):
            why = "connection refused (is `kame serve` running there, on that port?)"
        elif isinstance(err.errno, int) and "Connect call failed" in text:
            why = os.strerror(err.errno)  # e.g. "Network is unreachable"
        else:  # e.g. the resolver's "Name or service not known"
            why = err.strerror or text or str(exc)
        print(f"error: cannot connect to {cut_query(a.url)}: {why}", file=sys.stderr)
        return 1
    except (aiohttp.ClientError, OSError) as exc:  # e.g. the connection was lost (aiohttp's text may quote the URL)
        print(f"error: {cut_query(a.url)}: {type(exc).__name__}: {cut_query(str(exc))}", file=sys.stderr)
        return 1
    if res.status is not None:
        print(f"error: {res.refusal_text()}", file=sys.stderr)
        return 1
    if res.interrupted and res.handshake is None:
        print("interrupted before the session started; nothing written", file=sys.stderr)
        return 130
    try:
        if a.output:
            write_wav(a.output, res.audio, P.SAMPLE_RATE)
        if a.json:
            with open(a.json, "w") as f:
                json.dump(json_record(res), f, indent=1)
    except KameError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # (the --json file was writable a moment ago)
        print(f"error: --json {a.json}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return report(res, a)


if __name__ == "__main__":
    sys.exit(main())
