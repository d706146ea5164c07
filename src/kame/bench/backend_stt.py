"""STT part of ``kame bench backend``: WER and streaming latency of the embedded STTs.

Synthesizes N sentences (half piper, half espeak-ng with varied voices), plays each STT one
continuous stream of them (1.2 s of silence between sentences) in real time on the monotonic
clock (a frame is handed over when its 80 ms of audio have "been spoken"), and measures:
  - WER: word-level edit distance of the final transcripts vs. the reference (both through
    kame.bench.textmetrics.normalize: lower case, no punctuation, digits spelled out);
  - word latency: for each word of a final, the first transcript (partial or final) holding
    it (same text, within 0.5 s of its time) minus the word's audio end (from the final);
  - final latency: VAD end of speech -> final (the "stt_final_latency" metric);
  - CPU: process CPU time / audio time (all threads; > 1 means more than one core busy).

    kame bench backend --stt pocketsphinx --stt embedded --sentences 40
    kame bench backend --stt 'openai:whisper-1;response_format=json'   # any backend.stt spec
    python bench/backend_stt.py --sentences 8       # quick look

Each --stt SPEC is what backend.stt takes, built as the agent builds its STT
(kame.runtime.backend.create_stt, which hands the whole spec, ';options' included, to the
component's factory; at nice 0), one at a time: each is built, measured and closed before the
next is built (was: all built first, all their models in memory at once). The first is built
before any synthesis, so a bad first spec or option fails at once; a later one fails when its
turn comes (each spec's form is checked before any work). (Was also: the bench read ';options'
as constructor keywords of its own, so a spec could mean one thing here and another in a config.)

``kame bench backend`` (kame.bench.backend) calls ``add_stt_arguments(parser)`` and
``run_stt_bench(args, stt_specs(args))`` (rows as dicts) and prints ``stt_table(rows)``.
"""

from __future__ import annotations

import argparse
import gc
import math
import time
from typing import Callable

import numpy as np

from ..backend.childproc import children_cpu_seconds
from ..cliargs import at_least, thread_count
from ..runtime.interrupt import run_to_end
from .machine import pct
from .textmetrics import edit_distance, normalize

DEFAULT_STTS = ["pocketsphinx", "whisper", "embedded", "embedded;whisper_interval=1.0"]
ESPEAK_VOICES = ["en-us", "en+f2", "en-us+m3", "en-gb-scotland+m1", "en-029", "en-us+f4"]

SENTENCES = [
    "What is the capital of France?",
    "Can you tell me how photosynthesis works?",
    "I would like to book a table for two tonight.",
    "How far is the moon from the earth?",
    "Please explain the difference between weather and climate.",
    "Why is the sky blue during the day?",
    "What should I cook for dinner this evening?",
    "Who wrote the play about a prince of Denmark?",
    "How many legs does a spider have?",
    "Tell me a short story about a brave little mouse.",
    "What is the best way to learn a new language?",
    "Could you remind me to call my mother tomorrow?",
    "Is it going to rain in the afternoon?",
    "How do airplanes stay in the air?",
    "What are the main causes of inflation?",
    "I think the meeting should start a little later.",
    "Which planet is closest to the sun?",
    "Can you recommend a good book for the summer?",
    "What happens when water freezes?",
    "My computer is very slow, what can I do about it?",
    "How long should I boil an egg?",
    "Explain why people need to sleep every night.",
    "What is the tallest mountain in the world?",
    "Do you know any good exercises for a sore back?",
    "Why do leaves change color in the autumn?",
    "How does a vaccine protect the body?",
    "What time does the train leave for the city?",
    "I am looking for a present for my brother.",
    "Tell me something interesting about the ocean.",
    "What is the meaning of the word democracy?",
    "How can I save more money each month?",
    "Which animals live in the desert?",
    "What did the ancient Romans eat?",
    "Please summarize the history of the printing press.",
    "Why is exercise good for the heart?",
    "How do I make a simple tomato sauce?",
    "What is the difference between a virus and a bacterium?",
    "Can you help me plan a trip to the mountains?",
    "How does the internet send information around the world?",
    "What makes a good leader in a small team?",
    "Why do we have different seasons?",
    "Where do most of the world's oranges come from?",
    "How should I prepare for a job interview?",
    "What is the speed of light in a vacuum?",
    "Tell me a joke about a cat and a dog.",
    "What are the rules of chess for the knight?",
    "How much water should an adult drink each day?",
    "Why did the dinosaurs disappear?",
]


def check_spec(spec: str) -> None:
    """ConfigError unless ``spec`` is a spec backend.stt takes: the config's own check of it
    (its form and scheme; packages, files and options: when it is built, build_stt)."""
    from .. import registry

    registry.check_key_spec("--stt", "stt", spec)


def build_stt(spec: str) -> tuple[object, object]:
    """(STT, its MetricsLog): the STT built as the agent builds its backend.stt
    (kame.runtime.backend.create_stt: the whole spec to its factory, on the monotonic clock), at
    nice 0 (the bench runs no front-end to give the CPU to)."""
    from ..runtime.backend import create_stt
    from ..runtime.clock import MonotonicClock
    from ..runtime.metrics import MetricsLog

    log = MetricsLog()
    return create_stt(spec, MonotonicClock(), log, nice=0), log


def add_stt_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("STT")
    g.add_argument("--stt", action="append", metavar="SPEC",
                   help=f"STT spec to measure (repeatable): what backend.stt takes, options included "
                        f"('embedded;whisper_interval=1.0'); default: {' '.join(DEFAULT_STTS)}")
    g.add_argument("--sentences", type=at_least(1, maximum=len(SENTENCES)), default=40,
                   help=f"synthesized sentences, at most {len(SENTENCES)} (default 40; half piper, half espeak)")
    g.add_argument("--gap", type=at_least(0, float), default=1.2, help="silence between sentences, s (default 1.2)")
    g.add_argument("--threads", type=thread_count, default=1,
                   help="torch threads of this process: the STT's models (default 1: far faster than 2 on a busy "
                        "CPU); the embedded LLM's child process always runs on one")


add_arguments = add_stt_arguments


def make_corpus(n: int) -> list[dict]:
    """[{text, voice, pcm}] — even indices piper (varied speed), odd ones espeak voices."""
    from ..backend.tts.espeak import EspeakTTS
    from ..backend.tts.piper import PiperTTS

    piper = PiperTTS(seed=0)
    out = []
    for i in range(n):
        text = SENTENCES[i % len(SENTENCES)]
        if i % 2 == 0:
            scale = (0.9, 1.0, 1.15)[(i // 2) % 3]
            piper._cfg.length_scale = scale
            out.append(dict(text=text, voice=f"piper x{scale}", group="piper", pcm=piper.synth(text)))
        else:
            voice = ESPEAK_VOICES[(i // 2) % len(ESPEAK_VOICES)]
            pcm = EspeakTTS(voice, seed=0).synth(text)  # (seeded, as piper: the same corpus every run)
            out.append(dict(text=text, voice=f"espeak {voice}", group="espeak", pcm=pcm))
    return out


async def _run_stream(stt, log, corpus: list[dict], gap: float) -> dict:
    from ..backend.stt.base import check_transcript, open_stream
    from ..backend.types import AudioFrame
    from ..runtime.base import close_components
    from ..runtime.clock import MonotonicClock

    clock = MonotonicClock()
    try:  # (the STT is closed however this ends)
        sil = np.zeros(int(gap * 24000), np.float32)
        parts, spans, n = [sil], [], len(sil)
        for item in corpus:
            parts += [item["pcm"], sil]
            spans.append((n / 24000, (n + len(item["pcm"])) / 24000))
            n += len(item["pcm"]) + len(sil)
        pcm = np.concatenate(parts + [np.zeros(-n % 1920, np.float32)])
        t0 = clock.now() + 0.2
        spans = [(t0 + s, t0 + e) for s, e in spans]

        async def frames():
            for i in range(0, len(pcm), 1920):
                t = t0 + i / 24000
                await clock.sleep(t + 0.08 - clock.now())  # the frame exists once its audio is over
                yield AudioFrame(pcm[i:i + 1920], t)

        cpu0 = time.process_time() + children_cpu_seconds()  # pocketsphinx decodes in a child process
        # (a BackendError naming the STT if no async iterator, or an item no Transcript; words cleaned
        # as the agent's sessions read them: kame.runtime.sttloop)
        trs = [check_transcript(tr, stt) async for tr in open_stream(stt, frames())]
        cpu = time.process_time() + children_cpu_seconds() - cpu0
    finally:
        await close_components([stt], "bench: ")  # (an HTTP STT's session, in the loop that opened it)
    return dict(trs=trs, spans=spans, cpu=cpu, audio=len(pcm) / 24000, final_lat=log.values("stt_final_latency"))


def score(corpus: list[dict], run: dict) -> dict:
    trs, spans = run["trs"], run["spans"]
    hyps: list[list[str]] = [[] for _ in corpus]
    lat: list[float] = []
    pending: list = []  # transcripts since the last final
    for tr in trs:
        pending.append(tr)
        if not tr.final:
            continue
        for w in tr.words:  # first transcript holding this word
            key = normalize(w.text)
            mid = (w.start + w.end) / 2
            first = next((p for p in pending if any(
                normalize(v.text) == key and abs((v.start + v.end) / 2 - mid) < 0.5 for v in p.words)), tr)
            lat.append(first.t - w.end)
        for w in tr.words:  # attribute words to the sentence whose span holds them
            mid = (w.start + w.end) / 2
            k = min(range(len(spans)), key=lambda i: 0 if spans[i][0] - 0.5 <= mid <= spans[i][1] + 0.5
                    else min(abs(mid - spans[i][0]), abs(mid - spans[i][1])) + 1)
            hyps[k] += normalize(w.text)
        pending = []
    errs = {"all": [0, 0], "piper": [0, 0], "espeak": [0, 0]}
    for item, hyp in zip(corpus, hyps):
        ref = normalize(item["text"])
        e = edit_distance(ref, hyp)
        for g in ("all", item["group"]):
            errs[g][0] += e
            errs[g][1] += len(ref)
    wer = {g: e / n if n else float("nan") for g, (e, n) in errs.items()}  # (a group without sentences: none)
    return dict(
        wer=wer["all"], wer_piper=wer["piper"], wer_espeak=wer["espeak"],
        word_lat_p50=pct(lat, 0.5), word_lat_p90=pct(lat, 0.9),
        final_lat_p50=pct(run["final_lat"], 0.5),
        partials=sum(not t.final for t in trs), finals=sum(t.final for t in trs),
        cpu=run["cpu"] / run["audio"],
    )


def stt_specs(args: argparse.Namespace) -> list[str]:
    """The --stt specs (default DEFAULT_STTS), each checked (check_spec) before any work."""
    specs = getattr(args, "stt", None) or DEFAULT_STTS
    for spec in specs:  # a bad spec fails before the models load and minutes of synthesis
        check_spec(spec)
    return specs


def run_stt_bench(args: argparse.Namespace, specs: list[str], ready: Callable[[], None] | None = None,
                  rows: list[dict] | None = None) -> list[dict]:
    """Measure each STT spec (checked: ``stt_specs``); returns one dict per spec (see ``stt_table``),
    each added to ``rows`` (if given) as it is measured: a Ctrl-C keeps the ones before in it.
    One STT at a time is built, measured and closed (its models' memory given back before the next
    loads). The first is built before the corpus is synthesized (and before ``ready()``, e.g. the
    caller's header, is called): a first spec that cannot be (an unknown option, a missing model)
    fails in seconds, with no output."""
    from ..runtime.base import close_components

    corpus: list[dict] | None = None
    rows = [] if rows is None else rows
    for spec in specs:
        stt, log = build_stt(spec)
        if corpus is None:
            try:
                if ready is not None:
                    ready()
                corpus = make_corpus(getattr(args, "sentences", 40))
            except BaseException:  # (no synthesis, or Ctrl-C): the STT built for it is closed
                run_to_end(close_components([stt], "bench: "))
                raise
        run = run_to_end(_run_stream(stt, log, corpus, getattr(args, "gap", 1.2)))  # (closes the STT)
        del stt, log  # (its models' memory goes before the next STT loads, not after)
        gc.collect()
        rows.append(dict(stt=spec, sentences=len(corpus), words=sum(len(normalize(c["text"])) for c in corpus),
                         audio_s=run["audio"], **score(corpus, run)))
    return rows


def stt_table(rows: list[dict]) -> str:
    lines = ["| STT | sentences (words) | WER all | WER piper | WER espeak | word latency p50 / p90 (s) "
             "| final latency p50 (s) | partials | CPU s per audio s |",
             "|---|---|---|---|---|---|---|---|---|"]
    def f(x: float, spec: str, unit: str = "") -> str:  # "–" where there is no figure (no sentence, no final)
        return format(x, spec) + unit if math.isfinite(x) else "–"

    for r in rows:
        lines.append(
            f"| `{r['stt']}` | {r['sentences']} ({r['words']}) | {f(100 * r['wer'], '.1f', ' %')} "
            f"| {f(100 * r['wer_piper'], '.1f', ' %')} | {f(100 * r['wer_espeak'], '.1f', ' %')} "
            f"| {f(r['word_lat_p50'], '.2f')} / {f(r['word_lat_p90'], '.2f')} "
            f"| {f(r['final_lat_p50'], '.2f')} | {r['partials']} | {r['cpu']:.2f} |")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    from .machine import stopped_by_ctrl_c

    specs, rows = stt_specs(args), []
    stopped = stopped_by_ctrl_c(lambda: run_stt_bench(args, specs, rows=rows), rows)
    if stopped and not rows:
        return 130
    print(f"STT streaming in real time, {rows[0]['sentences'] if rows else 0} sentences, "
          f"{rows[0]['audio_s'] if rows else 0:.0f} s of audio per STT\n")
    print(stt_table(rows))
    return 130 if stopped else 0
