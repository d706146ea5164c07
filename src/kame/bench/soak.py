"""Server soak test: concurrent sessions, a protocol fuzzer, connect/disconnect cycles.

    kame bench soak                                   # echo agent: 16 x 60 s, 10 000 fuzz, 1000 cycles
    kame bench soak --agent config --set frontend.spec=random:tiny --set backend.stt=none --set backend.llm=none
    kame bench soak --agent config --parts sessions --sessions 1 --seconds 30 --speech   # one user, default config
    python bench/soak.py --parts fuzz --fuzz 2000     # one part, smaller

Runs `kame serve`'s app in this process on a loopback port, with real WebSocket clients
(kame.server.client), and prints markdown tables:
  sessions  N clients stream Ogg/Opus speech-like audio (tones; or, with --speech, spoken questions
            so the STT and the LLM work too) in real time for S seconds; each must get
            agent audio back the whole time. Reports received/expected audio, errors, event-loop
            lag (p99 oversleep of a 10 ms timer: the loop never blocks) and, with a real agent,
            missed-deadline ratio and step time p50/p99 from the agent's metrics.
  fuzz      >= N random / truncated / oversized / corrupt messages over reconnecting
            connections while a canary session streams; every bad message must get a 0x05 error
            or a clean close (else "unanswered"), no valid one an error (else "unexpected"), the
            canary none, and the server must stay up.
  cycles    N connect/disconnect cycles (clean closes, aborts, mid-audio drops): connections,
            agent sessions, the tandem agent's batch rows and asyncio tasks must return to
            baseline; RSS growth is reported.
The tests (tests/server/test_soak.py) run the same functions at a small scale.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import time
from collections import Counter

import aiohttp
import numpy as np
from aiohttp import web

from ..backend.childproc import children_cpu_seconds
from ..cliargs import Once, at_least
from ..errors import ConfigError, KameError
from ..paths import check_output_file
from ..runtime.metrics import MetricsLog
from ..server import protocol as P
from ..server.app import SERVER_KEY, Server, echo_server_config, make_app, server_config_from
from ..server.client import chat, chat_url
from ..server.guard import hard_limit
from .machine import figure, pct
from .machine import rss_mb as _rss_now_and_peak


def speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    """Syllable-rate modulated harmonic tones with pauses (no TTS needed)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 24000)) / 24000
    f0 = 110 + 40 * np.sin(2 * np.pi * 0.3 * t + rng.uniform(0, 6))
    phase = 2 * np.pi * np.cumsum(f0) / 24000
    x = sum(np.sin(k * phase) / k for k in range(1, 6))
    env = np.clip(np.sin(2 * np.pi * 4 * t), 0, 1) * (np.sin(2 * np.pi * 0.25 * t + rng.uniform(0, 6)) > -0.3)
    return (0.2 * x * env).astype(np.float32)


def rss_mb() -> float:
    """This process's resident memory in MB (machine.rss_mb); without /proc (macOS) its peak so
    far, which a leak raises too; nan where neither can be measured (Windows: shown as "n/a")."""
    now, peak = _rss_now_and_peak()
    return peak if math.isnan(now) else now


class LoopLag:
    """How late a 10 ms timer fires (wall lag: the loop's responsiveness, including time the
    OS did not schedule this process), and how much CPU the loop thread itself spent per
    window (busy: work done on the loop; > 10 ms would mean a callback blocked it)."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self.busy: list[float] = []
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            t, c = time.perf_counter(), time.thread_time()
            await asyncio.sleep(0.01)
            self.lags.append(time.perf_counter() - t - 0.01)
            self.busy.append(time.thread_time() - c)

    def stop(self) -> dict:
        self._task.cancel()
        a, b = self.lags or [0.0], self.busy or [0.0]  # (no window yet: 0)
        return {"p50": pct(a, 0.5), "p99": pct(a, 0.99), "max": max(a), "busy_p99": pct(b, 0.99), "busy_max": max(b)}


# ---- parts ---------------------------------------------------------------------------------

QUESTIONS = ["What is the capital city of France?", "How many days are there in a leap year?",
             "Who wrote the play Romeo and Juliet?", "What is seventeen times three?"]


def spoken_questions(seconds: float, seed: int = 0) -> np.ndarray:
    """``seconds`` of a user asking QUESTIONS (piper, else espeak-ng), each followed by 4 s of
    silence for the answer, starting at question ``seed``: the STT and the LLM get real work."""
    from ..cascade.agent import load_tts

    tts, _ = load_tts("piper", "espeak")
    n, out, i = int(seconds * 24000), [], seed
    while sum(len(x) for x in out) < n:
        out += [np.asarray(tts.synth(QUESTIONS[i % len(QUESTIONS)]), np.float32), np.zeros(4 * 24000, np.float32)]
        i += 1
    return np.concatenate(out)[:n]


async def run_sessions(url: str, n: int, seconds: float, http: aiohttp.ClientSession | None = None,
                       subprocess_clients: bool = False, speech: bool = False) -> dict:
    """``n`` real-time clients for ``seconds``. With ``subprocess_clients`` the clients run in a
    child process (as real clients would), so this process's loop lag is the server's alone.
    ``speech``: the clients ask spoken questions instead of sending tones."""
    lag = LoopLag()
    cpu0 = time.process_time() + children_cpu_seconds()  # the back-end's children count as the server's
    if subprocess_clients:
        import json
        import sys

        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "kame.cli", "bench", "soak", "--client-url", url, "--sessions", str(n),
            "--seconds", str(seconds), *(["--speech"] if speech else []), stdout=asyncio.subprocess.PIPE)
        out, _ = await proc.communicate()
        lines = out.decode().strip().splitlines()
        if proc.returncode or not lines:  # (its own error is on stderr, above)
            raise KameError(f"the sessions part's client process failed (exit code {proc.returncode}); "
                            "its error is printed above")
        r = json.loads(lines[-1])
        r["loop_lag"] = lag.stop()
        r["server_cpu_s"] = time.process_time() + children_cpu_seconds() - cpu0  # this process = the server
        return r
    t0 = time.monotonic()
    audio = [(spoken_questions if speech else speechlike)(seconds, i) for i in range(n)]
    results = await asyncio.gather(*(chat(url, a, http=http, tail_s=0.5) for a in audio))
    wall = time.monotonic() - t0
    recv = [len(r.audio) / 24000 for r in results]
    return {
        "sessions": n, "seconds": seconds, "wall_s": wall,
        "audio_back_min_s": min(recv), "audio_back_mean_s": float(np.mean(recv)),
        "expected_s": seconds + 0.5,
        "errors": sum(len(r.errors) for r in results),
        "refused": sum(r.status is not None for r in results),
        "clean_closes": sum(r.close_code == 1000 for r in results),
        "metas": sum(len(r.metas) for r in results),
        "loop_lag": lag.stop(),
    }


def _fuzz_message(rng: random.Random, enc: P.OpusEncoder, good: list[bytes], max_bytes: int) -> tuple[str, bytes | str]:
    """One malformed (or occasionally valid) message and its category."""
    r = rng.random()
    if r < 0.15:
        return "random_bytes", rng.randbytes(rng.randint(0, 600))
    if r < 0.25:
        return "unknown_kind", bytes([rng.choice([0x07, 0x09, 0x10, 0x7F, 0xFF])]) + rng.randbytes(rng.randint(0, 50))
    if r < 0.30:
        return "empty", b""
    if r < 0.45:
        page = rng.choice(good)
        return "truncated_opus", b"\x01" + page[: rng.randint(0, max(0, len(page) - 1))]
    if r < 0.60:
        page = bytearray(rng.choice(good))
        for _ in range(rng.randint(1, 8)):
            page[rng.randrange(len(page))] = rng.randrange(256)
        return "corrupt_opus", b"\x01" + bytes(page)
    if r < 0.65:
        return "garbage_opus", b"\x01" + rng.randbytes(rng.randint(1, 400))
    if r < 0.72:
        return "odd_pcm", b"\x08" + rng.randbytes(2 * rng.randint(0, 100) + 1)
    if r < 0.76:
        return "oversized", b"\x01" + bytes(max_bytes + rng.randint(1, 1000))
    if r < 0.77:
        return "huge", b"\x08" + bytes(max_bytes * 5)
    if r < 0.82:
        return "text_frame", "hello" * rng.randint(0, 10)
    if r < 0.87:
        return "server_kind", bytes([rng.choice([0x00, 0x02, 0x04, 0x05])]) + rng.randbytes(rng.randint(0, 30))
    if r < 0.90:
        return "bad_control", b"\x03" + rng.randbytes(rng.choice([0, 2, 3]))
    if r < 0.93:
        return "ping", b"\x06" + rng.randbytes(rng.randint(0, 10))
    if r < 0.97:
        return "valid_pcm", P.encode(P.Kind.PCM, P.pcm16_encode(speechlike(0.08, rng.randint(0, 99))))
    return "valid_opus", P.encode(P.Kind.AUDIO, enc.encode(speechlike(0.08, rng.randint(0, 99))))


def _expect_error(cat: str, data: bytes | str, max_bytes: int) -> bool:
    """Whether the server must answer this message with a 0x05 error (or a close)."""
    if cat in ("valid_pcm", "valid_opus"):
        return False
    if isinstance(data, str) or not data or len(data) > max_bytes:
        return True
    kind, payload = data[0], data[1:]
    if kind == P.Kind.PING:  # (random bytes may begin with 0x06 too: an over-long one is bad_ping)
        return len(payload) > P.MAX_PING_BYTES
    if kind == P.Kind.CONTROL:
        return not (len(payload) == 1 and payload[0] < 4)
    if kind == P.Kind.PCM:  # any even, non-empty payload is valid (noise) PCM
        return len(payload) == 0 or len(payload) % 2 == 1
    if kind == P.Kind.AUDIO and payload:  # a cut/corruption may leave whole, valid pages
        try:
            P.check_ogg_pages(payload)
            return False
        except P.ProtocolError:
            return True
    return True


def _tally(bad: int, answered: int) -> tuple[int, int]:
    """(bad messages that got no 0x05, 0x05 errors beyond the bad messages) of one connection:
    counted apart, as a net difference would go negative, or let extra errors hide missing ones."""
    return max(0, bad - answered), max(0, answered - bad)


def fuzz_plan(seed: int, n_messages: int, workers: int, w: int, good: list[bytes], max_bytes: int,
              hard_bytes: int, max_errors: int):
    """Worker ``w``'s connections, each a list of (category, message): its fixed share of ``n_messages``, each
    connection's from an RNG and Opus encoder keyed by (seed, w, connection), whatever the scheduling. A
    connection ends at the message the server closes it on (beyond ``hard_bytes``: 1009; the ``max_errors``-th bad)."""
    left, c = n_messages // workers + (w < n_messages % workers), 0
    while left > 0:
        rng, enc = random.Random(f"kame bench soak fuzz {seed} {w} {c}"), P.OpusEncoder()
        msgs, bad = [], 0
        for _ in range(min(rng.randint(20, 200), left)):
            cat, data = _fuzz_message(rng, enc, good, max_bytes)
            msgs.append((cat, data))
            bad += _expect_error(cat, data, max_bytes)
            if len(data.encode() if isinstance(data, str) else data) > hard_bytes or bad >= max_errors:
                break
        left, c = left - len(msgs), c + 1
        yield msgs


async def run_fuzz(url: str, n_messages: int, http: aiohttp.ClientSession, server: Server, seed: int = 0,
                   workers: int = 4) -> dict:
    """``n_messages`` fuzz messages over ``workers`` reconnecting connections (fuzz_plan) + a canary."""
    max_bytes = server.cfg.max_message_bytes
    src = P.OpusEncoder()
    good = [p for p in (src.encode(speechlike(0.08, i)) for i in range(30)) if p]
    sent: Counter = Counter()
    errors: Counter = Counter()
    closes: Counter = Counter()
    unanswered = 0  # bad messages on client-closed connections that got no 0x05
    unexpected = 0  # 0x05 errors beyond the bad messages sent (_expect_error took one for valid)
    retries = Counter()  # 503s: the server had not yet seen a worker's previous connection go
    canary_s = max(3.0, n_messages / 1500)
    canary = asyncio.create_task(chat(url, speechlike(canary_s, 99), http=http, tail_s=0.5))

    async def worker(w: int) -> None:
        nonlocal unanswered, unexpected
        for planned in fuzz_plan(seed, n_messages, workers, w, good, max_bytes, hard_limit(server.cfg),
                                 server.cfg.max_errors):
            ws = await _connect_when_free(http, url, retries, max_msg_size=1 << 24)
            await ws.receive(timeout=10)  # handshake
            st = {"bad": 0, "answered": 0}

            async def rx() -> None:
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.BINARY and msg.data[:1] == b"\x05":
                        e = P.parse_json(msg.data[1:])
                        errors[e["code"]] += 1
                        st["answered"] += not e["fatal"]
                if not st.get("client_closed"):
                    closes[ws.close_code] += 1  # the server closed (1008 too many errors, 1009 too big)

            rt = asyncio.create_task(rx())
            for k, (cat, data) in enumerate(planned):  # (closed sooner than planned: the rest is not sent)
                if rt.done():
                    break
                sent[cat] += 1
                try:
                    await (ws.send_str(data) if isinstance(data, str) else ws.send_bytes(data))
                except ConnectionError:
                    break
                st["bad"] += _expect_error(cat, data, max_bytes)
                if k % 8 == 0:
                    await asyncio.sleep(0)
            for _ in range(300):  # wait (<= 3 s) for every bad message's error or a close
                if rt.done() or st["answered"] >= st["bad"]:
                    break
                await asyncio.sleep(0.01)
            missing, extra = _tally(st["bad"], st["answered"])
            unexpected += extra
            if not rt.done():
                unanswered += missing
                closes["client_close"] += 1
                st["client_closed"] = True
                await ws.close()
                rt.cancel()
            await asyncio.gather(rt, return_exceptions=True)

    lag = LoopLag()
    t0 = time.monotonic()
    await asyncio.gather(*(worker(w) for w in range(workers)))
    wall = time.monotonic() - t0
    res = await canary
    return {
        "messages": sum(sent.values()), "wall_s": wall, "sent": dict(sent), "errors": dict(errors),
        "closes": {str(k): v for k, v in closes.items()}, "unanswered": unanswered,
        "unexpected": unexpected,
        "canary_errors": len(res.errors), "canary_close": res.close_code,
        "canary_audio_s": len(res.audio) / 24000, "canary_expected_s": canary_s + 0.5,
        "loop_lag": lag.stop(), "workers": workers, "capacity_retries": retries["503"],
    }


async def _connect_when_free(http: aiohttp.ClientSession, url: str, retries: Counter, **kw):
    """ws_connect, retried while the server answers 503 "capacity" (it has not yet seen a
    previous connection of ours go: an aborted transport is noticed a moment later on a busy
    machine, and an agent with as many sessions as the part uses has no slack), as a client
    honouring Retry-After would, for up to 10 s; counted in ``retries["503"]``. A session that
    never goes fails it."""
    for attempt in range(500):
        try:
            return await http.ws_connect(chat_url(url), **kw)
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status != 503 or attempt == 499:
                raise
            retries["503"] += 1
            await asyncio.sleep(0.02)


async def settle(server: Server) -> None:
    """Until the server has no connection and its agent no session (up to 10 s): a client that
    just went is seen a moment later on a busy machine."""
    for _ in range(500):
        if not server.connections and _agent_sessions(server) in (0, None):
            return
        await asyncio.sleep(0.02)


def fuzz_workers(agent) -> int:
    """Fuzzing connections for the agent's capacity: 4, or fewer beside the canary session when
    the agent takes fewer than 5 sessions at once (ConfigError below 2: no room for both)."""
    cap = getattr(agent, "max_sessions", None)
    if not isinstance(cap, int):
        return 4
    if cap < 2:
        raise ConfigError(f"the fuzz part needs 2 sessions at once (a canary and a fuzzing connection); the agent "
                          f"takes {cap} (runtime.max_sessions = {cap}): give --sessions 2 or more (and no smaller "
                          "runtime.max_sessions), or leave fuzz out of --parts")
    return min(4, cap - 1)


async def run_cycles(url: str, n: int, http: aiohttp.ClientSession, server: Server) -> dict:
    pcm = P.encode(P.Kind.PCM, P.pcm16_encode(speechlike(0.08)))
    enc = P.OpusEncoder()
    opus = P.encode(P.Kind.AUDIO, enc.encode(speechlike(0.16)))
    retries = Counter()

    async def one(i: int) -> None:
        ws = await _connect_when_free(http, url, retries)
        await ws.receive(timeout=10)
        if i % 2:
            await ws.send_bytes(pcm if i % 4 == 1 else opus)
        if i % 7 == 0:
            await asyncio.sleep(0.1)  # let an output frame or two arrive
        if i % 5 == 0:  # abrupt: no close frame
            ws._response.connection.transport.abort()
            ws._response.close()
        else:
            await ws.close()

    warm = min(50, n // 10)
    for i in range(warm):
        await one(i)
    await settle(server)
    await asyncio.sleep(0.2)
    tasks0, rss0 = len(asyncio.all_tasks()), rss_mb()
    trace = [round(rss0, 1)]
    t0 = time.monotonic()
    for i in range(warm, n):
        await one(i)
        if (i - warm + 1) % max(1, (n - warm) // 4) == 0:
            trace.append(round(rss_mb(), 1))
    wall = time.monotonic() - t0
    await settle(server)
    await asyncio.sleep(0.2)
    return {
        "cycles": n, "wall_s": wall, "connections_left": len(server.connections),
        "agent_sessions_left": _agent_sessions(server), "rows": _agent_rows(server), "tasks_before": tasks0,
        "tasks_after": len(asyncio.all_tasks()), "rss_before_mb": rss0, "rss_after_mb": rss_mb(),
        "rss_trace_mb": trace, "capacity_retries": retries["503"],
    }


def _agent_rows(server: Server) -> str | None:
    """The tandem agent's batch rows as "free / total" (all free when no session is live)."""
    a = server.agent
    free, total = getattr(a, "_free", None), getattr(a, "max_sessions", None)
    if not isinstance(free, list) or not isinstance(total, int):
        return None
    return f"{len(set(free))} / {total}"


def _agent_sessions(server: Server) -> int | None:
    a = server.agent
    for name in ("active_sessions", "num_sessions"):
        v = getattr(a, name, None)
        if isinstance(v, int):
            return v
    for name in ("sessions", "_sessions"):  # TandemAgent.sessions (row -> session), EchoAgent._sessions
        s = getattr(a, name, None)
        if isinstance(s, dict):
            return len(s)
    return None


# ---- driver --------------------------------------------------------------------------------


def _build_agent(args, metrics: MetricsLog):
    if args.agent == "echo":
        from ..server.echo import EchoAgent

        return EchoAgent(max_sessions=max(args.sessions, 8)), echo_server_config(args.config, args.set)
    from ..config import load_config
    from ..runtime.engine import build_agent

    sets = [f"runtime.max_sessions={max(args.sessions, 1)}"] + list(args.set)
    cfg = load_config(args.config, sets)
    return build_agent(cfg, metrics=metrics), server_config_from(cfg.server)


async def soak(args) -> dict:
    metrics = MetricsLog()
    agent, cfg = _build_agent(args, metrics)
    parts = parse_parts(args.parts)
    workers = fuzz_workers(agent) if "fuzz" in parts else 0  # before any part runs
    cfg.idle_timeout_s = 30.0
    app = make_app(agent, cfg, manage_agent=True)
    runner = web.AppRunner(app, shutdown_timeout=5, access_log=None)  # (one line per connection: thousands)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    server = app[SERVER_KEY]
    out: dict = {"agent": args.agent}
    try:
        async with aiohttp.ClientSession() as http:
            if "sessions" in parts:
                out["sessions"] = await run_sessions(url, args.sessions, args.seconds, http, subprocess_clients=True,
                                                     speech=args.speech)
                st, md = metrics.values("step_time"), metrics.values("missed_deadline")
                if st:
                    out["sessions"]["steps"] = len(st)
                    out["sessions"]["step_p50_ms"] = 1e3 * pct(st, 0.5)
                    out["sessions"]["step_p99_ms"] = 1e3 * pct(st, 0.99)
                    out["sessions"]["missed_ratio"] = len(md) / len(st)
                    out["sessions"]["llm_calls"] = len(metrics.values("llm_ttft"))  # back-end predictions started
                    fin = metrics.values("stt_final_latency")  # end of speech -> final transcript
                    out["sessions"]["stt_final_p50_s"] = pct(fin, 0.5) if fin else None
            if "fuzz" in parts:
                await settle(server)  # the sessions part's clients may still be going
                out["fuzz"] = await run_fuzz(url, args.fuzz, http, server, seed=args.seed, workers=workers)
            if "cycles" in parts:
                await settle(server)
                out["cycles"] = await run_cycles(url, args.cycles, http, server)
            for _ in range(50):  # the last clients' sessions may still be closing: up to 5 s
                async with http.get(url + "/api/health") as r:
                    out["health"] = await r.json()
                if not out["health"].get("sessions"):
                    break
                await asyncio.sleep(0.1)
    finally:
        await runner.cleanup()
    return out


PARTS = ("sessions", "fuzz", "cycles")


def parse_parts(text: str) -> list[str]:
    """``--parts``: comma-separated names from PARTS, at least one (ConfigError otherwise)."""
    parts = list(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    unknown = [p for p in parts if p not in PARTS]
    if unknown or not parts:
        what = f"unknown part {unknown[0]!r}" if unknown else f"{text!r} names no part"
        raise ConfigError(f"--parts: {what}; give one or more of {', '.join(PARTS)} (comma-separated)")
    return parts


def _num(x, fmt: str = ".2f") -> str:
    return "-" if x is None else format(x, fmt)


def tables(r: dict) -> str:
    lines = []
    if "sessions" in r:
        s = r["sessions"]
        lines += ["| agent | sessions × s | audio back min / mean (s, of expected) | errors | refused | clean closes "
                  "| server loop lag p99 / max (ms) | loop CPU per 10 ms window p99 / max (ms) "
                  "| server CPU incl. its back-end processes (% of a core) | steps | step p50 / p99 (ms) "
                  "| missed-deadline ratio | LLM calls | STT final latency p50 (s) |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
                  f"| {r['agent']} | {s['sessions']} × {s['seconds']:g} | {s['audio_back_min_s']:.1f} / "
                  f"{s['audio_back_mean_s']:.1f} (of {s['expected_s']:.1f}) | {s['errors']} | {s['refused']} "
                  f"| {s['clean_closes']} | {1e3 * s['loop_lag']['p99']:.1f} / {1e3 * s['loop_lag']['max']:.1f} "
                  f"| {1e3 * s['loop_lag']['busy_p99']:.1f} / {1e3 * s['loop_lag']['busy_max']:.1f} "
                  f"| {figure(100 * s.get('server_cpu_s', float('nan')) / s['wall_s'], '.0f', 'n/a')} "
                  f"| {s.get('steps', '-')} | " + (f"{s['step_p50_ms']:.1f} / {s['step_p99_ms']:.1f} | {s['missed_ratio']:.3f} "
                                                    f"| {s['llm_calls']} | {_num(s.get('stt_final_p50_s'))} |"
                                                    if "steps" in s else "- | - | - | - |"), ""]
    if "fuzz" in r:
        f = r["fuzz"]
        lines += ["| fuzz messages | wall (s) | 0x05 errors | closes (code: n) | unanswered | canary errors / close "
                  "| canary audio (s, of expected) | loop lag p99 (ms) | unexpected 0x05 |",  # (new columns last)
                  "|---|---|---|---|---|---|---|---|---|",
                  f"| {f['messages']} | {f['wall_s']:.1f} | {sum(f['errors'].values())} | "
                  f"{', '.join(f'{k}: {v}' for k, v in sorted(f['closes'].items()))} | {f['unanswered']} | "
                  f"{f['canary_errors']} / {f['canary_close']} | {f['canary_audio_s']:.1f} (of {f['canary_expected_s']:.1f}) "
                  f"| {1e3 * f['loop_lag']['p99']:.1f} | {f.get('unexpected', '-')} |", "",
                  "error codes: " + ", ".join(f"`{k}` {v}" for k, v in sorted(f["errors"].items())), ""]
        if f.get("workers", 4) != 4 or f.get("capacity_retries"):
            lines += [f"fuzzing connections: {f.get('workers', 4)} beside the canary; capacity retries (a 503 before "
                      f"the server saw a worker's previous connection go): {f.get('capacity_retries', 0)}", ""]
    if "cycles" in r:
        c = r["cycles"]
        lines += ["| cycles | wall (s) | connections left | agent sessions left | batch rows free | tasks before → after "
                  "| RSS before → after (MB) | RSS every quarter (MB) |",
                  "|---|---|---|---|---|---|---|---|",
                  f"| {c['cycles']} | {c['wall_s']:.1f} | {c['connections_left']} | {c['agent_sessions_left']} "
                  f"| {c.get('rows') or '-'} "
                  f"| {c['tasks_before']} → {c['tasks_after']} | {figure(c['rss_before_mb'], '.1f', 'n/a')} → "
                  f"{figure(c['rss_after_mb'], '.1f', 'n/a')} "
                  f"| {' → '.join(figure(x, '', 'n/a') for x in c.get('rss_trace_mb', []))} |", "",
                  f"capacity retries (a 503 before the server saw an earlier client go): {c.get('capacity_retries', 0)}", ""]
    lines.append(f"server health after: {r.get('health')}")
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..model.config import MAX_SEED

    p.add_argument("--agent", default="echo", choices=["echo", "config"], help="echo (no model) or the config's agent")
    p.add_argument("--config", default=None, metavar="FILE", action=Once,
                   help="the TOML config (the echo agent uses its [server] section only)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config key (repeatable; the echo agent takes server.* keys only)")
    p.add_argument("--parts", default="sessions,fuzz,cycles",
                   help="comma-separated parts to run, of sessions, fuzz, cycles (default all three)")
    p.add_argument("--sessions", type=at_least(1), default=16,
                   help="sessions part: concurrent clients streaming in real time (default 16)")
    p.add_argument("--seconds", type=at_least(0.1, float), default=60.0,
                   help="sessions part: seconds each client streams (default 60)")
    p.add_argument("--fuzz", type=at_least(0), default=10000,
                   help="fuzz part: malformed/random messages sent (default 10000)")
    p.add_argument("--cycles", type=at_least(0), default=1000,
                   help="cycles part: connect/disconnect cycles (default 1000)")
    p.add_argument("--seed", type=at_least(0, maximum=MAX_SEED), default=0,
                   help="fuzz part: seeds the random messages (the same seed, --fuzz, server limits and "
                        "the agent's session count: the same messages), 0 to 2**64 - 1 (default 0)")
    p.add_argument("--speech", action="store_true",
                   help="sessions part: clients ask spoken questions (STT and LLM at work) instead of sending tones")
    p.add_argument("--json", default=None, help="also write the raw results here")
    p.add_argument("--client-url", default=None, help=argparse.SUPPRESS)  # internal: clients-only child process


async def _clients_only(url: str, n: int, seconds: float, speech: bool = False) -> dict:
    async with aiohttp.ClientSession() as http:
        r = await run_sessions(url, n, seconds, http, speech=speech)
    r["client_loop_lag"] = r.pop("loop_lag")
    return r


def main(args) -> int:
    import json

    from .machine import header

    if args.client_url:
        try:
            r = asyncio.run(_clients_only(args.client_url, args.sessions, args.seconds, args.speech))
        except (OSError, aiohttp.ClientError) as exc:  # (no traceback: the parent says the part failed)
            raise KameError(f"the soak's clients could not talk to the server at {args.client_url}: {exc}") from None
        print(json.dumps(r))
        return 0
    parse_parts(args.parts)  # the arguments before minutes of soaking, not after them
    if args.agent != "config":  # (the echo agent's server takes [server] keys)
        from ..server.settings import check_echo_keys

        check_echo_keys(args.set, "give --agent config to soak the config's agent")
    if args.agent == "config":  # its batch has the sessions' rows (was: "runtime.max_sessions: must be <= 256")
        from ..config import MAX_SESSIONS

        if args.sessions > MAX_SESSIONS:
            raise ConfigError(f"--sessions {args.sessions}: the configured agent takes at most {MAX_SESSIONS} "
                              f"sessions (runtime.max_sessions' ceiling); the echo agent takes more")
    if args.json is not None:  # ('' too: it was silently no file)
        check_output_file(args.json, flag="--json")
    print(header(args, add_arguments, "soak") + "\n", flush=True)
    r = asyncio.run(soak(args))
    print(tables(r))
    if args.json is not None:
        with open(args.json, "w") as f:
            json.dump(r, f, indent=1)
    return 0
