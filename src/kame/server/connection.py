"""One WebSocket client of `kame serve` bound to one agent session (kame.server.app's
Connection: the app accepts the client, opens the session and runs this until either ends).

Per connection: one task reads the socket (Opus/PCM -> session.push_audio; Opus decoded on the
server's threads), one pumps session.outputs() into a bounded send queue (Opus encoded on those
threads), one writes the queue to the socket, one watches for idleness, the session's time limit
and a client that stopped reading. A slow client only fills its own queue: the oldest audio is
dropped first; when nothing droppable is left the connection is closed with an error. Limits
(message size, idle timeout, audio budget, ...) are in ServerConfig; what is refused and why, in
kame.server.guard; what is counted and logged at the end, in kame.server.ops.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import Future
from typing import TYPE_CHECKING

import numpy as np
from aiohttp import WSCloseCode, WSMsgType, web

from ..backend.types import FRAME_S
from ..errors import KameError
from ..runtime.base import AgentAudio, AgentText, ErrorEvent, Meta, Session
from ..runtime.clock import cancel_within
from ..runtime.runreport import OPUS_FAILED
from . import guard, ops
from . import protocol as P
from .guard import SendQueue, SlowClient

if TYPE_CHECKING:
    from .app import Server

log = logging.getLogger("kame.server")

# after END_INPUT, how long the agent's close may take to end the session's outputs (kame's own end at
# once; the cascade's flush takes at most 5 s; kame client waits 10 s), then the server closes anyway
END_INPUT_GRACE_S = 8.0
# of which, first: the session steps the input it still buffers (its input_backlog_s: kame's tandem and echo
# sessions', a cascade's last part-frame), at most this long; what it leaves is counted in its final stats' dropped_input_s
END_INPUT_STEP_S = 3.0
CLOSE_WAIT_S = 3.0  # aiohttp's own close (app.py: the WebSocketResponse's timeout of 2 s, its drain)


def _or_never(seconds: float | None) -> float:
    """A [server] time limit (idle_timeout_s, max_session_s, send_timeout_s) as _watch checks it: 0
    (or none) is no limit (was: send_timeout_s = 0 reset a client at its first send that waited)."""
    return seconds if seconds and seconds > 0 else float("inf")


class Connection:
    """One WebSocket client bound to one agent Session."""

    def __init__(self, server: "Server", ws: web.WebSocketResponse, session: Session, pcm_out: bool, transport=None) -> None:
        self.server, self.ws, self.session, self.pcm_out = server, ws, session, pcm_out
        self.transport = transport
        self.cfg = server.cfg
        self.queue = SendQueue(self.cfg.send_queue_messages)
        self.decoder = P.OpusDecoder()
        self.encoder = P.OpusEncoder()
        self.opened = server.clock.now()
        self.budget = guard.AudioBudget(server.clock, self.cfg.audio_burst_s)  # past real time + a burst: dropped
        self.decoding: Future | None = None  # the last Opus decode (on the server's Opus threads)
        self.encoding: Future | None = None  # the last Opus encode (the same)
        self.encode_errors = 0  # failed encodes; the client and the log hear of the first of a run of them
        self.encode_failing = False
        self.activity = guard.AudioActivity(server.clock, self.cfg.idle_timeout_s or 0.0,  # (the idle timeout)
                                            self.cfg.idle_audio_share)
        self.started = time.monotonic()  # (for the "closed after" log line)
        self.view = ops.SessionView()  # back-end components down, last stats (for health and the log)
        self.errors = 0
        self.send_started: float | None = None  # clock time of the send in progress
        self.client_closed = False
        self.ending_since: float | None = None  # clock time of the END_INPUT (END_INPUT_GRACE_S from then)
        self.stepping_input = False  # after END_INPUT, the session steps its backlog before its close
        self.session_closing: asyncio.Future | None = None  # the session's close(), started when the client closed
        self.pump: asyncio.Task | None = None  # run()'s task reading the session's outputs
        self.client_close: tuple[int, str] | None = None  # the client's close code and reason
        self.lost: str | None = None  # why the connection broke, if it did
        self.ended_by: str | None = None  # the fatal error's code, if the server sent one (STOPPED_READING: reset)
        self.close_code, self.close_reason = WSCloseCode.OK, "bye"
        self.finished = asyncio.Event()  # run() has ended (the connection closed)

    @property
    def ending(self) -> bool:
        """The session is closing, its outputs still forwarded (the client sent END_INPUT, or the
        server shuts down)."""
        return self.ending_since is not None

    def send_error(self, code: str, message: str, fatal: bool = False) -> None:
        self.queue.put(P.error(code, message, fatal))

    async def run(self) -> None:
        self.queue.put(P.handshake())
        self.queue.put(P.metadata({
            "type": "info", "session": self.session.id, "sample_rate": P.SAMPLE_RATE,
            "audio_out": "pcm" if self.pcm_out else "opus", "protocol": P.PROTOCOL_VERSION,
            "max_message_bytes": self.cfg.max_message_bytes, "idle_timeout_s": self.cfg.idle_timeout_s,
            "idle_audio_share": self.cfg.idle_audio_share, "max_session_s": self.cfg.max_session_s,
            "t0": self.opened,  # the session's start on the clock of every "t": a client's anchor for offsets
            "end_input": True,  # the server takes control 4, END_INPUT (docs/protocol.md)
        }))
        reader = asyncio.create_task(self._read(), name=f"ws-read-{self.session.id}")
        self.pump = asyncio.create_task(self._pump(), name=f"ws-pump-{self.session.id}")
        tasks = [
            reader,
            self.pump,
            asyncio.create_task(self._write(), name=f"ws-write-{self.session.id}"),
            asyncio.create_task(self._watch(), name=f"ws-idle-{self.session.id}"),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                if not t.cancelled() and t.exception() is not None:
                    exc = t.exception()
                    if isinstance(exc, SlowClient):
                        log.warning("connection %s closed: %s", self.session.id, exc)
                        self.close_code, self.close_reason = WSCloseCode.POLICY_VIOLATION, str(exc)
                    elif isinstance(exc, ConnectionError):  # the client went away mid-send (or the server's
                        await self._send_failed(exc, reader)  # close is under way)
                    else:
                        log.error("connection %s failed: %r", self.session.id, exc, exc_info=exc)
                        try:
                            self._fatal("internal_error", f"server error: {type(exc).__name__}", WSCloseCode.INTERNAL_ERROR)
                        except SlowClient:
                            self.close_code, self.close_reason = WSCloseCode.INTERNAL_ERROR, "server error"
            # Stop producing, then let the writer flush what is queued (e.g. the final error),
            # bounded by 1 s, unless the writer is what stopped.
            others, writer = tasks[:2] + tasks[3:], tasks[2]
            for t in others:
                t.cancel()
            await asyncio.wait(others, timeout=5)
            deadline = time.monotonic() + 1.0
            while len(self.queue) and time.monotonic() < deadline and not writer.done() and not self.ws.closed \
                    and not self.client_closed:
                await asyncio.sleep(0.01)
        finally:
            self.stepping_input = False  # (the connection ended while the session stepped its backlog: close it now)
            left = await cancel_within(tasks, 5)  # never hang the handler on a task that ignores cancellation
            if left:
                log.error("connection %s: tasks did not stop within 5 s of their cancellation: %s", self.session.id,
                          ", ".join(t.get_name() for t in left))
            for work in (self.decoding, self.encoding):  # the reader or pump was cancelled mid-decode/encode:
                if work is not None and not work.done():  # no decode or encode outlives the connection
                    await asyncio.wait([asyncio.wrap_future(work)], timeout=5)
            if self.session_closing is not None:  # the client's close is answered once its session is closed
                await asyncio.wait([self.session_closing], timeout=2)
            if not self.ws.closed:
                reason = self.close_reason.encode("utf-8", "replace")[:120].decode("utf-8", "ignore").encode()
                await guard.close_ws(self.ws, self.transport, self.close_code, reason)  # (not read: TCP dropped)
            else:  # (closed by aiohttp, e.g. 1009: what it sent may be unread)
                guard.drop_unsent(self.transport)
            self.finished.set()

    async def _send_failed(self, exc: ConnectionError, reader: asyncio.Task) -> None:
        """A send failed: the connection is lost, unless the server had closed it (a slow client,
        an error...: its reason stays) or aiohttp is closing it for the client's message (1009 for
        one too large, 1002, 1007: the transport is closing while receive() closes it; was counted
        as lost): then the reader says why as receive() returns, within the time aiohttp's close
        takes (else the code alone)."""
        code = getattr(self.ws, "close_code", None)
        if (self.close_code == WSCloseCode.OK and self.ended_by is None and self.ws.closed and not self.client_closed
                and code not in (None, WSCloseCode.OK, WSCloseCode.ABNORMAL_CLOSURE)):  # (1000, 1006: a client gone)
            await asyncio.wait([reader], timeout=CLOSE_WAIT_S)
            if self.close_code == WSCloseCode.OK and not self.client_closed:  # (its close waits on a client not reading)
                self.close_code, self.close_reason = code, f"closed for the client's message ({int(code)})"
                log.warning("connection %s closed (%s): %s", self.session.id, self.close_code, self.close_reason)
        if self.close_code != WSCloseCode.OK or self.ended_by is not None:
            log.debug("connection %s: a send failed after the server's close: %s", self.session.id, exc)
            return
        log.info("connection %s lost: %s", self.session.id, exc)
        self.lost = str(exc) or type(exc).__name__

    async def _end_session(self) -> None:
        """The client closed: stop reading the session's outputs first (nobody reads what it would
        flush, a cascade's last transcript, and its end is not taken for the agent's), then close it."""
        if self.pump is not None:
            self.pump.cancel()
            await asyncio.wait([self.pump], timeout=5)  # (a plugin's outputs that ignore it: close anyway)
        await self.session.close()

    def _fatal(self, code: str, message: str, ws_code: int) -> None:
        self.send_error(code, message, fatal=True)
        self.close_code, self.close_reason, self.ended_by = ws_code, message, code

    async def _read(self) -> None:
        cfg = self.cfg
        while True:
            # aiohttp returns buffered messages without suspending: without this yield a client's
            # flood (thousands of tiny messages, or 10 s Opus ones) would hold every session's ticker
            await asyncio.sleep(0)
            msg = await self.ws.receive()
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                self.client_closed = True
                if msg.type == WSMsgType.CLOSE:  # (for the log line)
                    self.client_close = (msg.data, getattr(msg, "extra", None) or "")
                # the session is closed before the close is answered (run() answers it: autoclose is
                # off), so a client that reconnects as soon as its close completes finds its place
                # free; in a task of its own (run() cancels this reader once the pump has ended)
                if self.session_closing is None:
                    self.session_closing = asyncio.ensure_future(self._end_session())
                elif self.pump is not None:  # (ending after END_INPUT: nobody reads the rest)
                    self.pump.cancel()
                return
            if msg.type == WSMsgType.ERROR:  # e.g. message beyond the hard size limit (aiohttp closed 1009)
                code = getattr(msg.data, "code", None) or self.ws.close_code  # (ws says 1006 after aiohttp's 1009)
                self.close_code, self.close_reason = code or WSCloseCode.PROTOCOL_ERROR, guard.hard_limit_said(cfg, msg.data)
                log.warning("connection %s closed (%s): %s", self.session.id, self.close_code, self.close_reason)
                return
            try:
                if msg.type == WSMsgType.TEXT:
                    raise P.ProtocolError("text_frame", "text WebSocket frames are not part of the protocol; send binary messages")
                if len(msg.data) > cfg.max_message_bytes:
                    raise P.ProtocolError(
                        "message_too_large", f"message of {len(msg.data)} bytes exceeds the limit of {cfg.max_message_bytes}; dropped"
                    )
                await self._handle(*P.decode(msg.data))
            except P.ProtocolError as exc:
                self.errors += 1
                if self.errors >= cfg.max_errors:
                    self._fatal("too_many_errors", f"{self.errors} protocol errors; closing (last: {exc})", WSCloseCode.POLICY_VIOLATION)
                    return
                await self.queue.put_when_room(P.error(exc.code, str(exc), False))

    def _end_input(self) -> None:
        """The client sent all its audio (control END_INPUT): the session steps what it still
        buffers (at most END_INPUT_STEP_S), then its outputs end (_close_session), then the
        connection closes normally (1000). The session's end counts as the client's."""
        if self.session_closing is None:
            self.client_close = (WSCloseCode.OK, "end of input")
            self._close_session(step_input=True)

    def shut_down(self) -> None:
        """The server shuts down (app.Server.on_shutdown): the session's outputs end as after
        END_INPUT (_close_session; was: the connection closed at once, and the client's totals
        were those of the latest periodic stats), then the connection closes with 1001 "server
        shutting down". A cascade session's close then waits for no last transcript of its STT
        (its skip_flush; also cut short if its close after END_INPUT waits for one): its final
        "stats" come within the server's SHUTDOWN_FLUSH_S (was: after up to 5 s, once the socket was
        closed: the client got 1001 without them)."""
        self.close_code, self.close_reason = WSCloseCode.GOING_AWAY, ops.SHUTDOWN_REASON
        # (Session.skip_flush; getattr: make_app takes any agent, whose sessions need not subclass Session)
        skip = getattr(self.session, "skip_flush", None)
        if skip is not None:
            skip()
        self._close_session()

    def _close_session(self, step_input: bool = False) -> None:
        """Close the session while the pump still forwards its outputs, so the client gets what
        the close flushes, the final "stats" last (was: only the client's close ended the session,
        and nobody read those); the pump's end then closes the connection with ``close_code``.
        ``step_input`` (END_INPUT): first let it step its input backlog (_step_input_then_close)."""
        self.stepping_input = step_input  # (False: a shutdown while the session steps its backlog closes it now)
        if self.session_closing is not None:
            return
        self.ending_since = self.server.clock.now()
        self.session_closing = asyncio.ensure_future(self._step_input_then_close())

    async def _step_input_then_close(self) -> None:
        """The session's close, once it stepped the user audio it still buffers (its
        ``input_backlog_s``; was: dropped unheard and counted nowhere) while ``stepping_input``:
        at most END_INPUT_STEP_S, until the client closes, the server shuts down or the
        connection ends. What is left, the session counts in its final stats' dropped_input_s. A
        last part-frame (a PCM client's input is rarely whole 80 ms frames) is filled with silence
        first, so it is stepped too (was: counted as dropped, and kame client blamed the network)."""
        clock = self.server.clock
        try:  # (the close whatever happens: a plugin session's pad_input that raises must not keep its place)
            pad = getattr(self.session, "pad_input", None)  # (Session.pad_input; getattr: as skip_flush's)
            if self.stepping_input and pad is not None:
                await pad()
            while (self.stepping_input and getattr(self.session, "input_backlog_s", 0.0) >= FRAME_S
                   and clock.now() - self.ending_since < END_INPUT_STEP_S):
                await clock.sleep(FRAME_S)
        finally:
            self.stepping_input = False
            await self.session.close()

    async def _handle(self, kind: P.Kind, payload: bytes) -> None:
        # a message is checked (whole, at most 10 s) before it is charged to the budget: a bad one
        # is a protocol error even past the budget, and costs none of it
        if self.ending and kind in (P.Kind.AUDIO, P.Kind.PCM):
            return  # (after END_INPUT: the session is closing)
        if kind == P.Kind.AUDIO:
            pages = P.ogg_pages(payload) if payload else []  # (empty: decode's bad_audio)
            if not self._budget(self.decoder.held(pages) / P.SAMPLE_RATE):
                return
            # off the loop (10 s of Opus take ~30 ms); awaited before the next read: the client's order
            self.decoding = self.server.opus_pool.submit(self.decoder.decode, payload, pages)
            pcm = await asyncio.wrap_future(self.decoding)
        elif kind == P.Kind.PCM:
            if not self._budget(P.pcm16_samples(payload) / P.SAMPLE_RATE):
                return
            pcm = P.pcm16_decode(payload)
        elif kind == P.Kind.PING:
            await self.queue.put_when_room(P.encode(P.Kind.PING, P.parse_ping(payload)))  # an over-long one: bad_ping
            return
        elif kind == P.Kind.CONTROL:
            # validated; full-duplex streaming has no turns to control, only the end of the input
            if P.parse_control(payload) == P.Control.END_INPUT:
                self._end_input()
            return
        else:
            raise P.ProtocolError("unexpected_kind", f"kind 0x{int(kind):02x} ({kind.name}) is not sent by clients")
        self.activity.add(len(pcm) / P.SAMPLE_RATE)
        if len(pcm):
            try:
                await self.session.push_audio(pcm)
            except KameError as exc:  # e.g. AudioFormatError from the session: drop, go on
                raise P.ProtocolError("bad_audio", f"audio rejected by the agent: {exc}") from None

    def _budget(self, seconds: float) -> bool:
        """Whether audio of ``seconds`` fits the client's budget (real time plus a burst); if not,
        it is dropped undecoded, counted in the stats' dropped_input_s (as an agent's backlog is)."""
        if self.budget.take(seconds):
            return True
        if self.budget.dropped_messages == 1:
            log.warning("connection %s: client audio comes faster than real time (over %g s ahead); dropping the "
                        "excess undecoded (counted in stats dropped_input_s)", self.session.id, self.budget.burst_s)
        return False

    async def _pump(self) -> None:
        # (aclosing: a pump cancelled because its client left stops reading at once, so a cascade
        # session's close() does not wait to flush a last transcript for nobody)
        outputs = self.session.outputs()
        try:
            await self._forward(outputs)
        finally:  # (a plain async iterator of a plugin's session may have no aclose)
            if hasattr(outputs, "aclose"):
                await outputs.aclose()
        if self.ending:  # the client asked for the end (END_INPUT): a normal close, no error
            return
        self._fatal("session_ended", "the agent ended the session", WSCloseCode.OK)

    async def _forward(self, outputs) -> None:
        reported = 0
        async for out in outputs:
            out = ops.for_client(out, self.session.id)  # (the client gets short errors; the detail is logged)
            if self.queue.dropped != reported:  # tell the client (droppable itself)
                reported = self.queue.dropped
                self.queue.put(P.metadata({"type": "dropped", "count": reported}), droppable=True)
            report = self.budget.report(self.session.id)  # input the server dropped (above)
            if report is not None:
                self.queue.put(P.metadata(report), droppable=True)
            if isinstance(out, AgentAudio):
                # Agents emit 80 ms frames in real time; a longer chunk is sent frame by frame,
                # yielding to the loop between frames (the writer sends as they come).
                pcm = np.asarray(out.pcm, dtype=np.float32).reshape(-1)
                if self.pcm_out:
                    for i in range(0, len(pcm), P.OPUS_FRAME):
                        self.queue.put(P.encode(P.Kind.PCM, P.pcm16_encode(pcm[i : i + P.OPUS_FRAME])), droppable=True)
                else:
                    for n, pages in enumerate(await self._encode(pcm)):
                        if n:
                            await asyncio.sleep(0)
                        self.queue.put(P.encode(P.Kind.AUDIO, pages), droppable=True)
            elif isinstance(out, AgentText):
                self.queue.put(P.encode(P.Kind.TEXT, out.text))
            elif isinstance(out, Meta):
                data = self.budget.merged(out.data)  # (stats: with the input the server dropped)
                self.view.note(data)
                self.queue.put(P.metadata(data))
            elif isinstance(out, ErrorEvent):
                self.send_error("agent_error", out.message)

    async def _encode(self, pcm: np.ndarray) -> list[bytes]:
        """Each 80 ms frame's Ogg/Opus pages, encoded off the loop (as decoding is), awaited before the
        session's next output (their order). A failure, as a decode's: the chunk is dropped, the
        encoder reset (a new stream), the client told (non-fatal) and the session goes on."""
        self.encoding = self.server.opus_pool.submit(self.encoder.frame_pages, pcm)
        try:
            pages = await asyncio.wrap_future(self.encoding)
        except Exception as exc:  # (not a cancellation: the pump's end, the encode left to run() above)
            self.encode_errors += 1
            self.encoder.reset()
            if not self.encode_failing:  # (a failure that repeats is said once, not 12 times a second)
                self.encode_failing = True
                log.error("connection %s: Opus encoding of the agent's audio failed (%d so far): %r",
                          self.session.id, self.encode_errors, exc, exc_info=self.encode_errors == 1)
                self.send_error("agent_error", f"{OPUS_FAILED} the agent's audio "
                                f"({type(exc).__name__}); dropped until it can, each time with a new Ogg stream; "
                                "see the server log")
            return []
        if self.encode_failing:
            self.encode_failing = False
            log.warning("connection %s: Opus encoding works again (%d chunk(s) dropped in all)", self.session.id,
                        self.encode_errors)
        return pages

    async def _write(self) -> None:
        # No asyncio.wait_for here: on Python < 3.12 it can swallow a cancellation. A send that
        # blocks too long (client not reading) is detected by _watch instead.
        while True:
            data = await self.queue.get()
            self.send_started = self.server.clock.now()
            await self.ws.send_bytes(data)
            self.send_started = None

    async def _watch(self) -> None:
        """Closes idle connections (too little client audio: guard.AudioActivity), sessions open for
        max_session_s, and clients whose socket stopped reading."""
        timeout, limit, stalled = (_or_never(self.cfg.idle_timeout_s), _or_never(self.cfg.max_session_s),
                                   _or_never(self.cfg.send_timeout_s))
        clock = self.server.clock
        period = max(0.05, min(timeout / 4, stalled / 4, 1.0))
        while True:
            now = clock.now()
            if self.ending:  # (no audio is expected now: no idle check; the agent's close gets a bound)
                if now - self.ending_since >= END_INPUT_GRACE_S:
                    self._fatal("end_timeout", f"the agent did not end the session within {END_INPUT_GRACE_S:g} s "
                                "of the end of input", WSCloseCode.OK)
                    return
            elif idle := self.activity.idle():
                self._fatal("idle_timeout", idle, WSCloseCode.POLICY_VIOLATION)
                return
            if now - self.opened >= limit:
                self._fatal("session_limit", f"the session reached the server's limit of {limit:g} s; "
                            "connect again to go on", WSCloseCode.POLICY_VIOLATION)
                return
            if self.send_started is not None and now - self.send_started >= stalled:
                log.warning("connection %s dropped: the client stopped reading (a send waited %g s)",
                            self.session.id, stalled)
                self.close_code, self.close_reason = WSCloseCode.POLICY_VIOLATION, "client stopped reading"
                self.ended_by = ops.STOPPED_READING  # (the server's close, not a lost connection: ops.closed_how)
                if self.transport is not None:
                    self.transport.abort()
                return
            await clock.sleep(min(period, max(0.01, limit - (now - self.opened))))  # (idle: checked each period)
