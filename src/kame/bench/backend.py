"""``kame bench backend``: STT WER/latency, LLM time-to-first-token and speed, oracle lag.

Three markdown tables:
  1. STT (kame.bench.backend_stt; skipped with --no-stt).
  2. LLM: for each --llm spec (default the embedded SmolLM2), the oracle prompt of N scripted
     conversations: time to first token (request -> first text piece) p50 / p90, the LLM's own
     decode speed (tokens/s; pieces/s for a remote server, ~ tokens), and text-stream tokens/s
     (the live oracle's llm_tokens_per_s: oracle-vocabulary tokens of the reply as the oracle
     cleans and cuts it, after the first, over first piece -> last one fed; the front-end
     consumes 12.5 per second; kame run's late-token warning and kame train --slow-rate speak of
     this rate).
  3. Oracle lag on scripted user turns in real time (monotonic clock; synthesized word timing:
     partials as each word ends plus a simulated STT delay, the final after the last word), with
     the real LLM of the first --llm spec through OracleProducer: "all" = every prediction's
     lag from the user's last word it saw to its first oracle token; "end of turn" = from the
     turn's last word to the first oracle token of a prediction that saw the whole turn.

    kame bench backend                                # STT + embedded LLM + oracle lag
    kame bench backend --no-stt --turns 4
    kame bench backend --no-stt --llm embedded --llm openai:qwen2.5 --base-url http://127.0.0.1:8000/v1
    python bench/backend.py ...
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

from ..backend.childproc import load_in_thread
from ..backend.llm.base import text_stream
from ..backend.openai_http import hide_userinfo
from ..cliargs import at_least, naming
from ..errors import ConfigError
from ..runtime.interrupt import run_to_end
from .backend_stt import add_stt_arguments, run_stt_bench, stt_specs, stt_table
from .machine import pct

TURNS = [
    "hi there can you tell me what the capital of france is",
    "how many people live in that city today",
    "what is the best time of year to visit it",
    "could you recommend a good museum for children",
    "how long does the train from london take",
    "and what should i eat while i am there",
    "why is the sky blue during the day",
    "how does a vaccine protect the body",
]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-stt", action="store_true", help="skip the STT table")
    add_stt_arguments(p)
    g = p.add_argument_group("LLM / oracle")
    g.add_argument("--llm", action="append", metavar="SPEC", help="llm spec (repeatable; default embedded; none = skip)")
    g.add_argument("--base-url", default=None,
                   help="base URL for --llm openai:MODEL specs only (default env OPENAI_BASE_URL); an --stt openai: "
                        "spec is built as backend.stt is: its server from env OPENAI_STT_BASE_URL, else "
                        "OPENAI_BASE_URL")
    g.add_argument("--prompts", type=at_least(1), default=6, help="LLM requests per spec (default 6)")
    g.add_argument("--turns", type=at_least(0), default=6, help="scripted user turns for the oracle lag (default 6)")
    g.add_argument("--word-s", type=at_least(0.01, float), default=0.35, help="synthesized seconds per user word (default 0.35)")
    g.add_argument("--stt-delay", type=at_least(0, float), default=0.3, help="simulated partial transcript delay, s (default 0.3)")
    g.add_argument("--max-tokens", type=at_least(1), default=60, help="LLM max tokens (default 60)")



def _make_llm(spec: str, args):
    from .. import registry

    kw = {"base_url": args.base_url} if spec.startswith("openai") and args.base_url else {}
    with naming("--llm"):
        return registry.create("llm", spec, **kw)


def _prompt_for(i: int):
    from ..backend.prompt import Conversation, PromptConfig, build_messages
    from ..backend.types import Transcript, Word

    conv = Conversation()
    words = TURNS[i % len(TURNS)].split()
    conv.on_transcript(Transcript(tuple(Word(w, k * 0.35, k * 0.35 + 0.3) for k, w in enumerate(words)), True, 5.0))
    return build_messages(conv, PromptConfig())


async def _bench_llm(llm, args, tok) -> dict:
    from ..backend.oracle import text_tokens_per_s
    from ..backend.prompt import PromptConfig, ReplyGuard
    from ..backend.speech_text import SpokenStream

    ttft, tps, text_tps, words = [], [], [], []
    for i in range(args.prompts):
        msgs = _prompt_for(i)
        n0, s0 = getattr(llm, "tokens_generated", 0), getattr(llm, "generate_seconds", 0.0)
        t0 = time.perf_counter()
        first = last = None
        pieces: list[str] = []
        # (the oracle's ids, as the live oracle makes them: the reply guarded, cleaned, cut at max_words,
        # encoded; ``fed``: when its last id came, the stream's end or the cut)
        guard, spoken, enc = ReplyGuard(PromptConfig()), SpokenStream(PromptConfig().max_words), tok.incremental()
        n_ids, fed = 0, None
        # (text, cleaned, split characters joined, as the agents take it)
        async for piece in text_stream(llm.stream_chat(msgs, max_tokens=args.max_tokens), llm):
            if not piece:  # (a keep-alive: the LLM generates a word it holds back; no text, not the first token)
                continue
            now = time.perf_counter()
            first = first or now
            last = now
            pieces.append(piece)
            if not (spoken.done or guard.ended):
                n_ids, fed = n_ids + len(enc.push(spoken.feed(guard.feed(piece)))), now
        if first is None:
            continue
        n_ids += len(enc.push(spoken.feed(guard.flush()) + spoken.flush()) + enc.flush())
        text = "".join(pieces)
        ttft.append(first - t0)
        if hasattr(llm, "tokens_generated") and llm.generate_seconds > s0:
            tps.append((llm.tokens_generated - n0) / (llm.generate_seconds - s0))
        elif last > first and len(pieces) > 1:
            tps.append((len(pieces) - 1) / (last - first))
        # (the live oracle's llm_tokens_per_s, what kame run's late-token warning and kame train --slow-rate
        # speak of: was the raw reply's ids over request -> last piece, the time to the first one counted)
        if (rate := text_tokens_per_s(n_ids, first, fed or last)) is not None:
            text_tps.append(rate)
        words.append(len(text.split()))
        if i == 0:
            print(f"  sample reply: {text.strip()!r}")
    return dict(n=len(ttft), ttft50=pct(ttft, 0.5), ttft90=pct(ttft, 0.9), tps=pct(tps, 0.5),
                text_tps=pct(text_tps, 0.5), words=pct(words, 0.5))


async def _bench_oracle(llm, args, tok) -> dict:
    from ..backend.oracle import OracleProducer
    from ..backend.policy import OraclePolicy
    from ..backend.types import OracleAppend, Transcript, Word
    from ..runtime.clock import MonotonicClock
    from ..runtime.metrics import MetricsLog

    clock = MonotonicClock()
    log = MetricsLog()
    events: list = []
    prod = OracleProducer(llm, tok, OraclePolicy(max_tokens=args.max_tokens), clock=clock, metrics=log,
                          on_event=events.append, session="bench")
    runner = asyncio.create_task(prod.run())
    end_lags: list[float] = []
    for i in range(args.turns):
        words = TURNS[i % len(TURNS)].split()
        t0 = clock.now()
        timed = [Word(w, t0 + k * args.word_s, t0 + (k + 1) * args.word_s - 0.05) for k, w in enumerate(words)]
        for k in range(len(words)):  # partial k+1 arrives stt_delay after word k ends
            await asyncio.sleep(max(0.0, timed[k].end + args.stt_delay - clock.now()))
            await prod.on_transcript(Transcript(tuple(timed[: k + 1]), False, clock.now()))
        first_full = prod.prediction_id + (0 if prod.conversation.user_words() == prod._basis else 1)
        await asyncio.sleep(max(0.0, timed[-1].end + 0.5 - clock.now()))  # final after 0.5 s
        await prod.on_transcript(Transcript(tuple(timed), True, clock.now()))
        # wait for the answer to the whole turn, then "speak" it as the agent turn
        deadline = clock.now() + 20.0
        while clock.now() < deadline and (prod.busy or not any(
                isinstance(e, OracleAppend) and e.prediction_id >= first_full for e in events)):
            await asyncio.sleep(0.02)
        full = [e for e in events if isinstance(e, OracleAppend) and e.prediction_id >= first_full]
        if full:
            end_lags.append(full[0].t - timed[-1].end)
            pid = full[-1].prediction_id
            prod.on_agent_text("".join(e.text for e in events if isinstance(e, OracleAppend) and e.prediction_id == pid))
        await asyncio.sleep(0.5)
    await prod.aclose()
    await runner
    lags = log.values("oracle_lag")
    return dict(turns=args.turns, predictions=prod.prediction_id, lag50=pct(lags, 0.5), lag90=pct(lags, 0.9),
                end50=pct(end_lags, 0.5), end90=pct(end_lags, 0.9), answered=len(end_lags),
                cancelled=prod.stats["cancelled"], failed=prod.stats["failed"])


def llm_table(rows: list[dict]) -> str:
    """The LLM table (markdown) of the rows _bench_llm measured, each with its spec and load time;
    "–" where a figure is undefined (was: "nan", e.g. the stream rate of a one-piece reply)."""
    from .machine import figure

    lines = ["| LLM | load (s) | requests | TTFT p50 / p90 (s) | LLM tokens/s | text-stream tokens/s | words/reply |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| `{r['spec']}` | {r['load']:.1f} | {r['n']} | {figure(r['ttft50'], '.2f')} / "
              f"{figure(r['ttft90'], '.2f')} | {figure(r['tps'], '.1f')} | {figure(r['text_tps'], '.1f')} "
              f"| {figure(r['words'], '.0f')} |" for r in rows]
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    import torch

    from .. import registry
    from ..backend.tokenizer import default_tokenizer
    from .machine import figure, header, stopped_by_ctrl_c

    specs = [s for s in (args.llm or ["embedded"]) if s != "none"]  # --llm none: STT only
    if args.no_stt and not specs:
        raise ConfigError("--no-stt with --llm none leaves nothing to measure")
    for spec in specs:  # a bad spec fails now, not after the STT table's minutes
        registry.check_key_spec("--llm", "llm", spec, also=("none",))
    stt = [] if args.no_stt else stt_specs(args)
    if args.base_url and any(s.startswith("openai:") for s in stt):
        print(f"note: --base-url {hide_userinfo(args.base_url)} is for --llm only; an --stt openai: spec is built as backend.stt "
              "is: its server from OPENAI_STT_BASE_URL, else OPENAI_BASE_URL", file=sys.stderr)

    # whose the torch threads are: the STT's, or none here with --no-stt (was: as if the LLM child's); an
    # embedded LLM runs in a child with 1 (was: said with --llm none too)
    whose = ["none used here" if args.no_stt else "the STT's"] + ["the embedded LLM's child: 1"] * any(
        registry.parse_spec(s)[0] == "embedded" for s in specs)

    def start() -> None:  # (once the first STT is built: one that cannot be fails before any output)
        print(f"{header(args, add_arguments, 'backend')}\ntorch threads {args.threads}"
              + f" ({'; '.join(whose)})\n",
              flush=True)  # (was: "torch threads N", as if the LLM used them)
        torch.set_num_threads(args.threads)
        if not args.no_stt:
            print("## STT\n")

    if args.no_stt:
        start()
    else:  # each STT built, measured and closed in turn (was: all built first, all their memory at once)
        stt_rows: list[dict] = []
        stopped = stopped_by_ctrl_c(lambda: run_stt_bench(args, stt, ready=start, rows=stt_rows), stt_rows,
                                    "STT table")
        if stt_rows:
            print("\n" * stopped + stt_table(stt_rows) + "\n")  # (after the "interrupted:" line, a blank one)
        if stopped:
            return 130
    tok = default_tokenizer()
    rows: list[dict] = []
    oracle: dict = {}

    async def _all():  # (each LLM's row, and the oracle's, kept as it is measured: Ctrl-C keeps the ones before)
        for k, spec in enumerate(specs):
            t0 = time.perf_counter()
            llm = await load_in_thread(_make_llm, spec, args)  # (Ctrl-C while it loads: ends at once)
            load = time.perf_counter() - t0
            print(f"LLM {spec}: loaded in {load:.1f} s")
            try:
                rows.append(dict(spec=spec, load=load, **await _bench_llm(llm, args, tok)))
                if k == 0 and args.turns > 0:
                    oracle.update(spec=spec, **await _bench_oracle(llm, args, tok))
            finally:
                if hasattr(llm, "aclose"):
                    await llm.aclose()

    if not specs:
        return 0
    stopped = stopped_by_ctrl_c(lambda: run_to_end(_all()), rows, "LLM table")
    if stopped and not rows:
        return 130
    print(f"\n(load average {os.getloadavg()[0]:.1f} at the end)")
    print("\n## LLM\n")
    print(llm_table(rows))
    if oracle:
        o = oracle
        print(f"\n## Oracle lag (`{o['spec']}`, {o['turns']} scripted turn{'s' * (o['turns'] != 1)}, {args.word_s:g} s/word, "
              f"partials +{args.stt_delay:g} s, final +0.5 s)\n")
        print("| predictions | cancelled | failed | lag all p50 / p90 (s) | end-of-turn lag p50 / p90 (s) | turns answered |")
        print("|---|---|---|---|---|---|")
        print(f"| {o['predictions']} | {o['cancelled']} | {o['failed']} | {figure(o['lag50'], '.2f')} / "
              f"{figure(o['lag90'], '.2f')} | {figure(o['end50'], '.2f')} / {figure(o['end90'], '.2f')} "
              f"| {o['answered']}/{o['turns']} |")
    return 130 if stopped else 0
