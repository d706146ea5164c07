"""A Python client for `kame serve`: stream a wav file, collect the agent's audio/text/metadata.

    kame client ws://127.0.0.1:8998/api/chat IN.wav -o OUT.wav
    kame client http://host:8998 IN.wav -o OUT.wav --token SECRET --json out.json
    (python -m kame.server.client ... is the same)

In Python (used by the tests and `kame bench soak`):

    res = await chat(url, pcm)          # pcm: float32 24 kHz; streams in real time + tail
    res.audio, res.texts, res.metas, res.errors, res.close_code
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import numpy as np

from ..errors import ConfigError
from . import protocol as P

URL_SCHEMES = ("ws://", "wss://", "http://", "https://")


@dataclass
class ChatResult:
    audio: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # agent audio, 24 kHz
    texts: list[str] = field(default_factory=list)
    metas: list[dict] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)
    handshake: tuple[int, int] | None = None
    pings: int = 0
    close_code: int | None = None
    first_audio_s: float | None = None  # seconds from connect to the first agent audio
    audio_times: list[float] = field(default_factory=list)  # arrival of each audio message (s from connect)
    connected_at: float | None = None  # time.monotonic() at connect
    status: int | None = None  # HTTP status if the upgrade was refused
    refusal: dict | None = None  # then the server's reason (kame serve: {"error", "message"}), if chat() could read it

    @property
    def text(self) -> str:
        return "".join(self.texts)

    def refusal_text(self) -> str:
        """"refused: HTTP 503 capacity: all 4 sessions are in use ..." (as much as is known)."""
        why = self.refusal or {}
        return f"refused: HTTP {self.status}" + (f" {why['error']}" if why.get("error") else "") \
            + (f": {why['message']}" if why.get("message") else "")


def chat_url(url: str, token: str | None = None, pcm: bool = False) -> str:
    """The /api/chat WebSocket URL of the server at ``url``; ConfigError for a scheme other
    than ws, wss, http, https."""
    if not url.lower().startswith(URL_SCHEMES):
        raise ConfigError(f"{url}: the URL must start with ws://, wss://, http:// or https://")
    if url.lower().startswith("http"):
        url = "ws" + url[4:]
    if not url.rstrip("/").endswith("/api/chat"):
        url = url.rstrip("/") + "/api/chat"
    q = [f"token={token}"] if token else []
    if pcm:
        q.append("pcm=1")
    return url + ("?" + "&".join(q) if q else "")


class Receiver:
    """Collects server messages into a ChatResult (decoding audio)."""

    def __init__(self, res: ChatResult) -> None:
        self.res, self.t0 = res, time.monotonic()
        res.connected_at = self.t0
        self.decoder = P.OpusDecoder(max_samples_per_message=1 << 30)
        self.chunks: list[np.ndarray] = []
        self.ready = asyncio.Event()

    def feed(self, data: bytes) -> None:
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
            r.metas.append(P.parse_json(payload))
        elif kind == P.Kind.ERROR:
            try:
                r.errors.append(P.parse_json(payload))
            except P.ProtocolError:  # a plain-text error (Moshi servers)
                r.errors.append({"code": "error", "message": payload.decode("utf-8", "replace"), "fatal": False})
        elif kind == P.Kind.PING:
            r.pings += 1

    async def run(self, ws) -> None:
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.BINARY:
                self.feed(msg.data)
            elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
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
        if not isinstance(why, dict):  # not kame serve: the body's text, if any
            why = {"message": " ".join(body.split())[:200]} if body.strip() else None
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
    chunk: int = 1920,
    http: aiohttp.ClientSession | None = None,
) -> ChatResult:
    """Stream ``pcm`` (float32 24 kHz) to the server, then ``tail_s`` of silence, then close.

    With ``realtime=False`` the file is sent as fast as possible; the tail is always paced in
    real time (the agent answers in real time), so make it long enough to hear the answer.

    A refused upgrade sets ``res.status`` and, when ``http`` is not given, ``res.refusal``.
    Connection failures raise aiohttp.ClientError / OSError; a bad URL scheme ConfigError."""
    res = ChatResult()
    url = chat_url(url, token, pcm_mode)
    own = http is None
    http = http or aiohttp.ClientSession(trace_configs=[_refusal_keeper(res)])
    try:
        try:
            ws = await http.ws_connect(url, max_msg_size=1 << 24, autoclose=True)
        except aiohttp.WSServerHandshakeError as exc:
            res.status = exc.status
            return res
        async with ws:
            rx = Receiver(res)
            rx_task = asyncio.create_task(rx.run(ws))
            await asyncio.wait_for(rx.ready.wait(), 30)
            enc = P.OpusEncoder()
            audio = np.concatenate([np.asarray(pcm, np.float32), np.zeros(int(tail_s * P.SAMPLE_RATE), np.float32)])
            t0 = time.monotonic()
            for i in range(0, len(audio), chunk):
                if rx_task.done():
                    break
                piece = audio[i : i + chunk]
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
                    await asyncio.sleep(max(0.0, t0 + (i + chunk) / P.SAMPLE_RATE - time.monotonic()))
                else:
                    await asyncio.sleep(0)
                    t0 = time.monotonic() - (i + chunk) / P.SAMPLE_RATE
            if not rx_task.done():
                await ws.close()
            await asyncio.wait_for(rx_task, 10)
            res.close_code = ws.close_code
        return rx.finish()
    finally:
        if own:
            await http.close()


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("url", help="server URL, e.g. ws://127.0.0.1:8998/api/chat or http://127.0.0.1:8998")
    ap.add_argument("input", help="wav file (any rate, resampled to 24 kHz)")
    ap.add_argument("-o", "--output", help="write the agent's audio here (24 kHz wav)")
    ap.add_argument("--json", help="write text/metadata/errors here")
    ap.add_argument("--token", default=None)
    ap.add_argument("--pcm", action="store_true", help="use raw PCM (0x08) both ways instead of Ogg/Opus")
    ap.add_argument("--tail", type=float, default=2.0,
                    help="seconds of silence streamed after the file (default 2, below 3600)")
    ap.add_argument("--fast", action="store_true", help="do not pace the upload in real time")


def main(argv: list[str] | argparse.Namespace | None = None) -> int:
    """``kame client ...`` (parsed arguments) or ``python -m kame.server.client ...`` (argv)."""
    from ..audio import output_format, read_wav, write_wav
    from ..errors import KameError
    from ..paths import check_output_file
    from ..runtime.filemode import check_tail

    if isinstance(argv, argparse.Namespace):
        a = argv
    else:
        ap = argparse.ArgumentParser(prog="python -m kame.server.client", description=__doc__.split("\n")[0])
        add_arguments(ap)
        a = ap.parse_args(argv)
    try:  # everything that can be wrong before the session, not after it
        check_tail(a.tail)  # the bound `kame run --tail` has
        chat_url(a.url)
        if a.output:
            check_output_file(a.output, input=a.input, file_type=output_format)
        if a.json:
            check_output_file(a.json, flag="--json", input=a.input)
            if a.output and Path(a.json).resolve() == Path(a.output).resolve():  # one would overwrite the other
                raise ConfigError(f"--json {a.json} is the -o file too; give another --json")
        pcm, _ = read_wav(a.input, P.SAMPLE_RATE)
    except KameError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        res = asyncio.run(chat(a.url, pcm, token=a.token, pcm_mode=a.pcm, realtime=not a.fast, tail_s=a.tail))
    except asyncio.TimeoutError:  # (an OSError too, so first) connected, but the server went quiet
        print(f"error: {a.url}: the server stopped answering (no handshake, or no end of the session)", file=sys.stderr)
        return 1
    except aiohttp.ClientConnectorError as exc:  # nothing listens there, the name does not resolve, ...
        print(f"error: cannot connect to {a.url}: {exc.os_error.strerror or exc}", file=sys.stderr)
        return 1
    except (aiohttp.ClientError, OSError) as exc:  # e.g. the connection was lost
        print(f"error: {a.url}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if res.status is not None:
        print(f"error: {res.refusal_text()}", file=sys.stderr)
        return 1
    try:
        if a.output:
            write_wav(a.output, res.audio, P.SAMPLE_RATE)
        if a.json:
            with open(a.json, "w") as f:
                json.dump({"text": res.text, "metas": res.metas, "errors": res.errors, "close_code": res.close_code},
                          f, indent=1)
    except KameError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # (the --json file was writable a moment ago)
        print(f"error: --json {a.json}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"audio {len(res.audio) / P.SAMPLE_RATE:.2f} s, text {res.text!r}, {len(res.metas)} metadata, "
          f"{len(res.errors)} errors, close {res.close_code}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
