"""A Python client for `kame serve`: stream a wav file, collect the agent's audio/text/metadata.

    python -m kame.server.client ws://127.0.0.1:8998/api/chat IN.wav -o OUT.wav
    python -m kame.server.client http://host:8998 IN.wav -o OUT.wav --token SECRET --json out.json

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

import aiohttp
import numpy as np

from . import protocol as P


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
    refusal: dict | None = None

    @property
    def text(self) -> str:
        return "".join(self.texts)


def chat_url(url: str, token: str | None = None, pcm: bool = False) -> str:
    if url.startswith("http"):
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
    real time (the agent answers in real time), so make it long enough to hear the answer."""
    res = ChatResult()
    own = http is None
    http = http or aiohttp.ClientSession()
    try:
        try:
            ws = await http.ws_connect(chat_url(url, token, pcm_mode), max_msg_size=1 << 24, autoclose=True)
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


def main(argv: list[str] | None = None) -> int:
    from ..audio import output_format, read_wav, write_wav
    from ..errors import KameError

    ap = argparse.ArgumentParser(prog="python -m kame.server.client", description=__doc__.split("\n")[0])
    ap.add_argument("url", help="server URL, e.g. ws://127.0.0.1:8998/api/chat or http://127.0.0.1:8998")
    ap.add_argument("input", help="wav file (any rate, resampled to 24 kHz)")
    ap.add_argument("-o", "--output", help="write the agent's audio here (24 kHz wav)")
    ap.add_argument("--json", help="write text/metadata/errors here")
    ap.add_argument("--token", default=None)
    ap.add_argument("--pcm", action="store_true", help="use raw PCM (0x08) both ways instead of Ogg/Opus")
    ap.add_argument("--tail", type=float, default=2.0, help="seconds of silence streamed after the file")
    ap.add_argument("--fast", action="store_true", help="do not pace the upload in real time")
    a = ap.parse_args(argv)
    try:
        if a.output:
            output_format(a.output)  # before the chat, not after it
        pcm, _ = read_wav(a.input, P.SAMPLE_RATE)
    except KameError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    res = asyncio.run(chat(a.url, pcm, token=a.token, pcm_mode=a.pcm, realtime=not a.fast, tail_s=a.tail))
    if res.status is not None:
        print(f"refused: HTTP {res.status}", file=sys.stderr)
        return 1
    if a.output:
        try:
            write_wav(a.output, res.audio, P.SAMPLE_RATE)
        except KameError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"text": res.text, "metas": res.metas, "errors": res.errors, "close_code": res.close_code}, f, indent=1)
    print(f"audio {len(res.audio) / P.SAMPLE_RATE:.2f} s, text {res.text!r}, {len(res.metas)} metadata, "
          f"{len(res.errors)} errors, close {res.close_code}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
