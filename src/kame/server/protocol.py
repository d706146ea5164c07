"""The kame WebSocket wire protocol: message kinds, encode/decode, and the audio codecs.

Every WebSocket message is binary; its first byte is the kind, the rest the payload. Kinds
0x00-0x06 are Kyutai's Moshi protocol (so Moshi clients work unchanged), 0x08 is kame's raw-PCM
addition for browsers. The full description for client authors is docs/protocol.md.

    data = encode(Kind.TEXT, "hello")          # b"\\x02hello"
    kind, payload = decode(data)               # raises ProtocolError on bad input
    dec = OpusDecoder(); pcm = dec.decode(ogg_bytes)     # float32 24 kHz (maybe empty)
    enc = OpusEncoder(); pages = enc.encode(pcm)         # Ogg/Opus bytes (maybe empty)

Run `python -m kame.server.protocol` to print the kind table.
"""

from __future__ import annotations

import json
import struct
import zlib
from enum import IntEnum

import numpy as np
import sphn

from ..audio import peak_problem
from ..errors import KameError

SAMPLE_RATE = 24000
PROTOCOL_VERSION = 0  # as in Kyutai's rust/protocol.md ("always 0 for now")
MODEL_VERSION = 0
OPUS_FRAME = 1920  # samples per Opus frame we encode (80 ms at 24 kHz; sphn accepts 960/1920)
MAX_PING_BYTES = 64  # a client's 0x06 payload; answered whole, so a longer one is an error
MAX_MESSAGE_SAMPLES = 10 * SAMPLE_RATE  # audio in one client message (10 s): more is audio_too_long


class Kind(IntEnum):
    """First byte of every message. Direction: S = server -> client, C = client -> server."""

    HANDSHAKE = 0x00  # S: session ready; payload u32 LE protocol version + u32 LE model version
    AUDIO = 0x01  # C,S: Ogg/Opus pages, 24 kHz mono
    TEXT = 0x02  # S: UTF-8 piece of the agent's text
    CONTROL = 0x03  # C: one action byte (Moshi; unused in full-duplex streaming, accepted)
    METADATA = 0x04  # S: UTF-8 JSON object (transcripts, oracle, metrics, info)
    ERROR = 0x05  # S: UTF-8 JSON {"code", "message", "fatal"}
    PING = 0x06  # C,S: a client ping (<= 64 bytes) is answered with a ping carrying the same payload
    # 0x07 is Kyutai's "colored text" (server -> client); kame never sends or accepts it.
    PCM = 0x08  # C (and S with ?pcm=1): raw int16 little-endian PCM, 24 kHz mono (kame)


class Control(IntEnum):
    START = 0
    END_TURN = 1
    PAUSE = 2
    RESTART = 3
    END_INPUT = 4  # kame: the client has sent all its audio; the session ends, its last outputs sent (protocol.md)


class ProtocolError(KameError):
    """A message that does not follow the protocol; ``code`` is sent in the 0x05 error."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def encode(kind: Kind, payload: bytes | str = b"") -> bytes:
    if isinstance(payload, str):  # (a lone surrogate in an agent's text: "?", not a dead session)
        payload = payload.encode("utf-8", "replace")
    return bytes([int(kind)]) + payload


def decode(data: bytes) -> tuple[Kind, bytes]:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ProtocolError("text_frame", "text WebSocket frames are not part of the protocol; send binary messages")
    if len(data) == 0:
        raise ProtocolError("empty_message", "empty message (the first byte must be the message kind)")
    try:
        kind = Kind(data[0])
    except ValueError:
        raise ProtocolError("unknown_kind", f"unknown message kind 0x{data[0]:02x}") from None
    return kind, bytes(data[1:])


# ---- typed helpers -------------------------------------------------------------------------


def handshake(protocol_version: int = PROTOCOL_VERSION, model_version: int = MODEL_VERSION) -> bytes:
    return encode(Kind.HANDSHAKE, struct.pack("<II", protocol_version, model_version))


def parse_handshake(payload: bytes) -> tuple[int, int]:
    """(protocol, model) versions; a bare 0x00 (Python Moshi server) means (0, 0)."""
    if len(payload) >= 8:
        return struct.unpack("<II", payload[:8])
    return 0, 0


def metadata(data: dict) -> bytes:
    return encode(Kind.METADATA, json.dumps(data, separators=(",", ":"), default=_json_default))


def error(code: str, message: str, fatal: bool = False) -> bytes:
    return encode(Kind.ERROR, json.dumps({"code": code, "message": message, "fatal": fatal}))


def parse_json(payload: bytes) -> dict:
    try:
        obj = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError("bad_json", f"payload is not UTF-8 JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ProtocolError("bad_json", "payload must be a JSON object")
    return obj


def parse_text(payload: bytes) -> str:
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError("bad_utf8", f"text payload is not UTF-8: {exc}") from None


def parse_control(payload: bytes) -> Control:
    if len(payload) != 1:
        raise ProtocolError("bad_control", f"control payload must be 1 byte, got {len(payload)}")
    try:
        return Control(payload[0])
    except ValueError:
        raise ProtocolError("bad_control", f"unknown control action {payload[0]}") from None


def parse_ping(payload: bytes) -> bytes:
    """A client ping's payload (answered as is): at most MAX_PING_BYTES."""
    if len(payload) > MAX_PING_BYTES:
        raise ProtocolError("bad_ping", f"ping payload must be at most {MAX_PING_BYTES} bytes, got {len(payload)}; not answered")
    return payload


def pcm16_encode(pcm: np.ndarray) -> bytes:
    """float32 [N] in [-1, 1] -> int16 little-endian bytes."""
    x = np.clip(np.asarray(pcm, dtype=np.float32), -1.0, 1.0)
    return (x * 32767.0).astype("<i2").tobytes()


def _check_pcm(payload: bytes) -> None:
    if len(payload) % 2 or not payload:
        raise ProtocolError("bad_pcm", f"PCM payload must be whole int16 samples (>= 1), got {len(payload)} bytes")


def pcm16_samples(payload: bytes, max_samples: int = MAX_MESSAGE_SAMPLES) -> int:
    """The samples a 0x08 payload holds, checked as pcm16_decode does (bad_pcm) and against the
    10 s of one message (audio_too_long), before it is decoded or charged to the client."""
    _check_pcm(payload)
    if len(payload) // 2 > max_samples:
        raise ProtocolError("audio_too_long", f"one message holds {len(payload) / 2 / SAMPLE_RATE:.2f} s of PCM "
                                              f"(max {max_samples / SAMPLE_RATE:.1f} s); dropped")
    return len(payload) // 2


def pcm16_decode(payload: bytes) -> np.ndarray:
    """int16 little-endian bytes -> float32 [N]."""
    _check_pcm(payload)
    return np.frombuffer(payload, dtype="<i2").astype(np.float32) / 32768.0


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


# ---- Ogg/Opus (sphn) -------------------------------------------------------------------------


_BITREV8 = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))


def ogg_crc(page: bytes) -> int:
    """The Ogg page checksum (CRC-32, polynomial 0x04c11db7, not reflected, init 0), computed
    with zlib's reflected CRC-32 on bit-reversed bytes (C speed; ~1 us per page)."""
    p = (page[:22] + b"\0\0\0\0" + page[26:]).translate(_BITREV8)
    raw = zlib.crc32(p, 0xFFFFFFFF) ^ 0xFFFFFFFF
    return int(f"{raw:032b}"[::-1], 2)


_MAX_PACKET_48K = 5760  # 120 ms, the longest Opus packet (RFC 6716 section 3.2.5)
# The longest Ogg packet the decoder is given (its bytes spread over any number of pages):
# RFC 7845 section 6, "demuxers SHOULD treat audio data packets as invalid ... if they are
# larger than 61,440 bytes per Opus stream" (120 ms of 2.5 ms frames of at most 1275 bytes,
# RFC 6716 section 3.2.1, is 61,200; the rest would be padding). A packet that has not ended
# within it is bad_audio: sphn's reader would buffer it without bound (it holds no samples).
MAX_PACKET_BYTES = 61440


def opus_packet_samples(packet: bytes) -> int:
    """Samples (at 48 kHz) one Opus packet decodes to, from its TOC byte (RFC 6716 section
    3.1): the frame size of its configuration times its frame count; 120 ms (the most a packet
    holds) when the count byte is missing. (An empty packet is packet loss to Opus: ``ogg_pages``
    refuses it; it is counted as the longest packet here.)"""
    if not packet:
        return _MAX_PACKET_48K
    config, code = packet[0] >> 3, packet[0] & 3
    if config < 12:  # SILK: 10, 20, 40, 60 ms
        frame = (480, 960, 1920, 2880)[config % 4]
    elif config < 16:  # hybrid: 10, 20 ms
        frame = (480, 960)[config % 2]
    else:  # CELT: 2.5, 5, 10, 20 ms
        frame = (120, 240, 480, 960)[config % 4]
    if code == 3:
        return min(frame * (packet[1] & 0x3F), _MAX_PACKET_48K) if len(packet) > 1 else _MAX_PACKET_48K
    return frame * (1 if code == 0 else 2)


_EMPTY_PACKET = ("{where} holds an empty (0-byte) Opus packet: Opus takes it for a lost packet and would make up "
                 "audio for it; dropped (send only the packets an encoder gives)")


def ogg_pages(data: bytes) -> list[tuple[bytes, int]]:
    """Split ``data`` into its Ogg pages, checking that it is a whole number of complete pages
    with good checksums and no empty packet (else ProtocolError "bad_audio"): [(page, samples at
    48 kHz that the packets starting in it hold, by their TOC bytes; the OpusHead/OpusTags
    headers hold none)]. (Each 0x01 message carries whole pages, as sphn and the Moshi web
    client send them.)"""
    pages, pos = [], 0
    while pos < len(data):
        if len(data) - pos < 27 or data[pos : pos + 4] != b"OggS" or data[pos + 4] != 0:
            raise ProtocolError("bad_audio", f"audio message is not whole Ogg pages (bad page header at byte {pos})")
        nseg = data[pos + 26]
        if len(data) - pos < 27 + nseg:
            raise ProtocolError("bad_audio", f"truncated Ogg page header at byte {pos}")
        lacing = data[pos + 27 : pos + 27 + nseg]
        size = 27 + nseg + sum(lacing)
        if len(data) - pos < size:
            raise ProtocolError("bad_audio", f"truncated Ogg page at byte {pos} ({len(data) - pos} of {size} bytes)")
        page = data[pos : pos + size]
        if ogg_crc(page) != struct.unpack_from("<I", page, 22)[0]:
            raise ProtocolError("bad_audio", f"Ogg page at byte {pos} fails its checksum (corrupt data)")
        opening = not page[5] & 1  # (flag 0x01: the first segment goes on with the previous page's packet)
        for v in lacing:
            if opening and v == 0:
                raise ProtocolError("bad_audio", _EMPTY_PACKET.format(where=f"the Ogg page at byte {pos}"))
            opening = v < 255  # (a value under 255 ends a packet: the next segment starts one)
        at = 27 + nseg
        # flag 0x01: the page goes on with the previous page's packet; a page of no segments has none
        starts = [] if page[5] & 1 or not nseg else [at]
        for i, v in enumerate(lacing[:-1]):
            at += v
            if v < 255:
                starts.append(at)  # a packet ends here, the next one starts
        samples = 0
        for start, end in zip(starts, starts[1:] + [size]):
            head = page[start : min(end, start + 8)]
            if not head.startswith((b"OpusHead", b"OpusTags")):
                samples += opus_packet_samples(head)
        pages.append((page, samples))
        pos += size
    return pages


def check_ogg_pages(data: bytes) -> int:
    """The audio the Ogg pages of ``data`` hold, in samples at 48 kHz (known before decoding);
    ProtocolError "bad_audio" if ``data`` is not whole, intact pages (``ogg_pages``)."""
    return sum(n for _, n in ogg_pages(data))


class OpusDecoder:
    """Incremental Ogg/Opus -> float32 PCM. Corrupt data raises ProtocolError("bad_audio") and
    resets the stream (a fresh reader accepts pages from the middle of a stream).

    The packet left open between messages (sphn's reader buffers it) is at most MAX_PACKET_BYTES,
    and a message decodes to no more than its packets were charged for (their TOC durations,
    ``held``; the server's budget), plus what an earlier message was charged for a packet it only
    began: sphn conceals an empty packet (e.g. a page flagged as going on with a packet none
    began) with up to 5 s of made-up audio that no TOC byte says."""

    def __init__(self, max_samples_per_message: int = MAX_MESSAGE_SAMPLES) -> None:
        self.max_samples = max_samples_per_message
        self._reset()

    def decode(self, data: bytes, pages: list[tuple[bytes, int]] | None = None) -> np.ndarray:
        """``pages``: ``ogg_pages(data)`` when the caller has them already, checked with ``held``
        (the server reads the durations first, to drop audio past the client's budget undecoded)."""
        if not data:
            raise ProtocolError("bad_audio", "empty audio message")
        if pages is None:
            pages = ogg_pages(data)
            self.held(pages)  # (past 10 s: audio_too_long, before decoding)
        out = []
        try:  # page by page: sphn's reader fails on more than ~5 s in one call
            for page, _ in pages:
                self._follow_packets(page)  # (before sphn buffers the page)
                out.append(np.asarray(self._reader.append_bytes(page), np.float32).reshape(-1))
        except ProtocolError:
            self._reset()
            raise
        except Exception as exc:  # sphn raises ValueError on a bad capture pattern etc.
            self._reset()
            raise ProtocolError("bad_audio", f"corrupt Ogg/Opus data ({exc}); decoder reset") from None
        pcm = np.concatenate(out) if out else np.zeros(0, np.float32)
        # never more audio than the packets were charged for (the budget's rule): a packet begun in
        # an earlier message is charged there, so that message's unspent charge (up to one packet)
        # is carried on
        allowed = self._owed + sum(n for _, n in pages) * SAMPLE_RATE // 48000
        pcm = pcm[:allowed]
        self._owed = min(allowed - len(pcm), _MAX_PACKET_48K * SAMPLE_RATE // 48000)
        problem = peak_problem(pcm)  # pages that pass their checksums but hold corrupt packets
        if problem is not None:
            self._reset()
            raise ProtocolError("bad_audio", f"corrupt Ogg/Opus data (decoded: {problem.split(',')[0]}); "
                                             f"dropped, decoder reset")
        return pcm

    def _follow_packets(self, page: bytes) -> None:
        """Follows the packet boundaries of the pages given to sphn's reader (the bytes of the
        packet left open, whatever the pages' flags say: all that the reader may hold); bad_audio
        for an empty packet, or a packet over MAX_PACKET_BYTES (decode resets the decoder)."""
        for v in page[27 : 27 + page[26]]:
            if v == 0 and not self._open:  # (also a page flagged as going on with a packet none began)
                raise ProtocolError("bad_audio", _EMPTY_PACKET.format(where="an Ogg page") + ", decoder reset")
            self._open += v
            if self._open > MAX_PACKET_BYTES:
                raise ProtocolError("bad_audio", f"an Ogg packet goes on past {MAX_PACKET_BYTES} bytes (the most an "
                                                 "Opus packet holds, RFC 7845 section 6) without ending; "
                                                 "dropped, decoder reset")
            if v < 255:
                self._open = 0

    def held(self, pages: list[tuple[bytes, int]]) -> int:
        """The samples (24 kHz) ``pages`` hold by their packets' durations, before decoding;
        ProtocolError "audio_too_long" past the 10 s of one message (the server checks this
        before it charges the client's audio budget)."""
        held = sum(n for _, n in pages) * SAMPLE_RATE // 48000
        if held > self.max_samples:
            raise ProtocolError(
                "audio_too_long", f"one message holds {held / SAMPLE_RATE:.2f} s of Opus audio "
                f"(max {self.max_samples / SAMPLE_RATE:.1f} s); dropped"
            )
        return held

    def _reset(self) -> None:
        """A new stream: sphn's reader with what it buffered dropped (a new reader), nothing owed."""
        self._reader = sphn.OpusStreamReader(SAMPLE_RATE)
        self._open = 0  # bytes of the packet open at the end of the pages given to the reader
        self._owed = 0  # samples (24 kHz) charged for a packet the reader has not ended yet


class OpusEncoder:
    """float32 PCM (any chunk length) -> Ogg/Opus bytes, buffered to whole 80 ms frames."""

    def __init__(self) -> None:
        self.reset()

    def encode(self, pcm: np.ndarray) -> bytes:
        return b"".join(self.frames(pcm))

    def frames(self, pcm: np.ndarray):
        """Like encode, but yields the pages of each 80 ms frame separately (so a caller can
        send them as separate messages and yield to the event loop in between)."""
        self._buf = np.concatenate([self._buf, np.asarray(pcm, dtype=np.float32).reshape(-1)])
        while len(self._buf) >= OPUS_FRAME:
            frame, self._buf = self._buf[:OPUS_FRAME], self._buf[OPUS_FRAME:]
            pages = self._writer.append_pcm(np.clip(frame, -1.0, 1.0))
            if pages:
                yield pages

    def frame_pages(self, pcm: np.ndarray) -> list[bytes]:
        """frames() run to its end, as one call (the server runs it on a worker thread)."""
        return list(self.frames(pcm))

    def reset(self) -> None:
        """Start a new stream (header pages first), dropping buffered samples: after an error
        left this one in an unknown state."""
        self._writer = sphn.OpusStreamWriter(SAMPLE_RATE)
        self._buf = np.zeros(0, dtype=np.float32)


if __name__ == "__main__":
    for k in Kind:
        print(f"0x{int(k):02x}  {k.name}")
