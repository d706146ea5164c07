"""Latency of the tandem vs the cascade, on the same scripted dialogues, STT and LLM.

    kame bench latency                     # 30 user turns (22 dialogues, 4 multi-turn), both modes
    kame bench latency --turns 4           # a quick subset
    kame bench latency --modes cascade --set backend.llm=openai:gpt-4.1-mini

The user turns are synthesized by kame's own TTS (the bundled piper voice at three speaking
rates and four espeak-ng voices). Each dialogue is one audio file: 0.5 s of silence, then per
user turn its speech followed by ``--window`` seconds for the agent. Every dialogue runs through
the file-mode machinery (kame.runtime.filemode.run_conversation) in SIMULATED real time: a
virtual clock that never runs ahead of the wall clock (so the STT/LLM/TTS get at least their
real compute time; "slowdown" > 1 means the agent ran slower than real time). Both modes use the
config's backend.stt and backend.llm; the cascade speaks with cascade.tts.

Measured per user turn, from the recorded audio (not from the agents' own metrics):
  first-response latency  user's end of speech (known from the script) -> first 10 ms of agent
                          audio above runtime.silence_db (0 if the agent was already speaking)
  content latency         user's end of speech -> start of the first word of the LLM's answer
                          audible in the agent's audio: whisper tiny.en (faster-whisper, word
                          timestamps) transcribes the agent's audio of the turn; the first ASR
                          word that is a content word of the LLM's answer for that turn (cascade:
                          the reply; tandem: the oracle predictions) counts, at the time it becomes
                          audible and no earlier than the first response (ASR word starts are
                          approximate; see audible_words and content_latency, which kame eval
                          mtbench --asr shares). "never" if none is.
and p50 / p90 per mode (nearest rank: a measured value; a turn with none counts as +inf), a PNG
of both distributions and a JSON of every turn. Apart from the table, for the tandem, the runtime's
oracle_lag metric ("fed" stage): from the end of the STT's last word a prediction was based on (not
the script's end of speech) to its first token fed to the front-end, twice:
  end of turn             each turn's last prediction (restarted on the STT's final transcript): when
                          the answer to the whole turn reaches the front-end (none: +inf)
  every prediction        all of them, most restarted on partial transcripts while the user still
                          talks, each from the newest partial word then (so shorter)
``kame bench latency --reanalyse`` rewrites latency.md and the JSON's summary from a run's
latency.json, without running anything. The tandem's
default front-end is a random-weight tiny checkpoint: its audio is babble, not an answer, so its
content latency is "never" on (almost) every turn and its first-response latency only says when
it makes noise. This is printed with the results.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..audio import SAMPLE_RATE, resample, write_wav
from ..backend.childproc import release_children
from ..cliargs import at_least
from ..errors import ConfigError, KameError
from ..paths import check_output_folder
from ..runtime.interrupt import run_to_end
from .latency_report import (SPEECH_DB, TurnResult, UserTurn, _describe, _json_num, interrupted_note, plot,
                             reanalyse, report_md, summary)

log = logging.getLogger(__name__)
SR = SAMPLE_RATE

# Scripted dialogues (lists of user turns: single-turn questions, then multi-turn dialogues).
DIALOGUES: list[list[str]] = json.loads((Path(__file__).with_name("latency_dialogues.json")).read_text())["dialogues"]
# (engine, argument): piper length_scale or espeak voice; dialogues cycle through them.
VOICES: list[tuple[str, object]] = [
    ("piper", 1.0), ("espeak", "en-us+f2"), ("piper", 1.15), ("espeak", "en-us+m3"),
    ("piper", 0.9), ("espeak", "en-gb-scotland+m1"), ("espeak", "en-029"),
]
_STOP = set(
    "a an and are as at be but by do does for from had has have he her his how i if in is it its me my not "
    "of on or our she so that the their them then there these they this to was we were what when where which "
    "who why will with would you your yes no oh okay well just can could should also very really here "
    "i'm i'd i'll i've you're you've you'll we're it's that's there's let's don't can't won't isn't".split()
)


# ---------------------------------------------------------------------------- dialogue audio
def _voices():
    from ..backend.tts.espeak import EspeakTTS
    from ..backend.tts.piper import PiperTTS

    cache: dict = {}

    def synth(engine: str, arg, text: str) -> np.ndarray:
        key = (engine, arg)
        if key not in cache:
            # (seed=0: the same speech every run, whatever was said before)
            cache[key] = PiperTTS(length_scale=float(arg), seed=0) if engine == "piper" else EspeakTTS(str(arg), seed=0)
        return cache[key].synth(text)

    return synth


def build_dialogues(n_turns: int, window: float, lead: float = 0.5) -> list[tuple[np.ndarray, list[UserTurn]]]:
    """Synthesize the first ``n_turns`` user turns into per-dialogue tracks with known timings."""
    synth = _voices()
    out, left = [], n_turns
    for d, turns in enumerate(DIALOGUES):
        if left <= 0:
            break
        turns = turns[:left]
        left -= len(turns)
        engine, arg = VOICES[d % len(VOICES)]
        pcms = [synth(engine, arg, text) for text in turns]
        out.append(lay_out_turns(pcms, turns, window, lead=lead, tail=window, dialogue=d, voice=f"{engine}:{arg}"))
    return out


def lay_out_turns(pcms: list[np.ndarray], texts: list[str], gap: float, *, lead: float = 0.5, tail: float = 0.0,
                  dialogue: int = 0, voice: str = "", audible: bool = False) -> tuple[np.ndarray, list[UserTurn]]:
    """One user track: ``lead`` s of silence, each turn's speech (trailing silence trimmed) with
    ``gap`` s of silence between turns and ``tail`` s after the last; a UserTurn per turn (start
    and end of its speech; window_end the next turn's start, or the end of the track).
    ``audible``: a turn with no sample above SPEECH_DB raises KameError (else it is kept whole)."""
    parts, meta, t = [np.zeros(int(lead * SR), np.float32)], [], lead
    for i, (pcm, text) in enumerate(zip(pcms, texts)):
        if i:
            parts.append(np.zeros(int(gap * SR), np.float32))
            t += int(gap * SR) / SR
        pcm = np.asarray(pcm, np.float32)
        loud = np.flatnonzero(np.abs(pcm) > 10 ** (SPEECH_DB / 20))
        if audible and not loud.size:
            raise KameError(f"the TTS gave no audible speech for {text[:60]!r}")
        pcm = pcm[: loud[-1] + 1] if loud.size else pcm
        start = t + (loud[0] / SR if loud.size else 0.0)
        t += pcm.shape[0] / SR
        parts.append(pcm)
        meta.append(UserTurn(dialogue, i, text, voice, float(start), float(t), 0.0))
    parts.append(np.zeros(int(tail * SR), np.float32))
    t += int(tail * SR) / SR
    for i, ut in enumerate(meta):
        ut.window_end = meta[i + 1].start if i + 1 < len(meta) else float(t)
    return np.concatenate(parts), meta


# ---------------------------------------------------------------------------- running
async def warm_up_llm(spec: str, nice: int = 0) -> None:
    """One short untimed request, so the first measured turn does not pay one-off costs
    (an embedded model is loaded once per process and shared by every agent built later)."""
    from ..backend.childproc import load_in_thread
    from ..backend.types import ChatMessage
    from ..runtime.backend import create_llm
    from ..runtime.base import close_components

    if spec == "none":
        return
    # the agents' own way (kame.runtime.backend.create_llm): at the config's CPU priority, which
    # the shared embedded LLM child keeps for the whole run; Ctrl-C while it loads ends at once
    llm = await load_in_thread(create_llm, spec, nice)
    try:
        async for _ in llm.stream_chat([ChatMessage("user", "Say hello.")], max_tokens=4):
            pass
    finally:  # (an HTTP client's connections; the embedded child stays, shared)
        await close_components([llm], "warm-up: ")


async def run_mode(cfg, dialogues, log_every: bool = True) -> list[tuple[dict, np.ndarray]]:
    from ..runtime.filemode import agent_track, run_conversation

    await warm_up_llm(cfg.backend.llm, cfg.backend.nice)
    results = []
    for k, (pcm, turns) in enumerate(dialogues):
        rec = await run_conversation(cfg, pcm)
        n = math.ceil(pcm.shape[0] / 1920) * 1920
        results.append((rec, agent_track(rec, n)))
        if log_every:
            print(f"  [{cfg.mode}] dialogue {k + 1}/{len(dialogues)}: {len(turns)} turn(s), "
                  f"{rec['duration_s']:.1f} s audio, wall {rec['wall_s']:.1f} s, errors {len(rec['errors'])}", flush=True)
    return results


def first_voiced(agent: np.ndarray, t0: float, t1: float, thr: float) -> float | None:
    """First 10 ms window in [t0, t1) with RMS >= thr (t0 itself if already voiced)."""
    w = SR // 100
    i0, i1 = int(t0 * SR) // w, min(int(t1 * SR), agent.shape[0]) // w
    if i1 <= i0:
        return None
    frames = agent[i0 * w: i1 * w].reshape(-1, w).astype(np.float64)
    hit = np.flatnonzero(np.sqrt(np.mean(frames ** 2, axis=1)) >= thr)
    return None if hit.size == 0 else (i0 + hit[0]) * w / SR


PAD = 0.2  # s before an ASR word's start where its sound may begin (whisper's word times are rough)


def whisper_asr():
    """The ASR of the content latency (here and kame eval mtbench --asr): whisper tiny.en,
    kame.backend.stt.whisper.WhisperModelHandle (int8, repeatable decoding), two threads."""
    from ..backend.stt.whisper import WhisperModelHandle

    return WhisperModelHandle(cpu_threads=2)


def audible_words(asr, agent: np.ndarray, t0: float, t1: float, thr: float) -> list[tuple[str, float]]:
    """(word, time it becomes audible: s in the track) of what ``asr`` (whisper_asr) hears in the
    ``agent`` track from ``t0`` to ``t1``. Whisper's word starts are rough (its first word takes in
    the silence before it: "The" from 0.0 s on a clip whose speech starts at 1.0 s), so a word's
    time is the first 10 ms at or above ``thr`` from PAD before its start to its end (never before
    its start); a word with no such sound there is left out: whisper invents words in silence
    ("Thank you."), also just before real sound starts."""
    i0, i1 = int(round(t0 * SR)), min(int(round(t1 * SR)), agent.shape[0])
    if i1 <= i0:
        return []
    out = []
    for w in asr.transcribe(resample(np.asarray(agent[i0:i1], np.float32), SR, 16000)):
        start, end = i0 / SR + w.start, i0 / SR + w.end
        hit = first_voiced(agent, max(t0, start - PAD), min(t1, end), thr)
        if hit is not None:
            out.append((w.text, max(start, hit)))
    return out


def content_latency(heard: list[tuple[str, float]], answer: str, end: float,
                    first_response: float | None) -> tuple[float | None, str]:
    """(content latency in s, the word) of a user turn ending at ``end`` (s in the track): the
    first of the ``heard`` words (audible_words) that is a content word of the LLM's ``answer``
    (not a stop word, 3+ letters or a number), its time minus ``end``, no earlier than the turn's
    ``first_response`` (s) nor 0: a word said before ``end`` (a tandem may answer while the user still
    speaks) is 0, also when the agent made no sound after ``end`` (first_response None); (None, "")
    if no word is one: "never"."""
    want = _content_words(answer)
    for text, t in heard:
        if {x.strip("'") for x in _words(text)} & want:
            return max(0.0, t - end, first_response or 0.0), text
    return None, ""


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower().replace("\u2581", " "))


def _content_words(text: str) -> set[str]:
    return {w.strip("'") for w in _words(text) if w not in _STOP and (len(w) >= 3 or w.isdigit())}


def window_text(rec: dict, ut: UserTurn) -> str:
    """The agent's text stream (rec["agent_text"]) in the turn's window [start, window_end)."""
    return "".join(a["text"] for a in rec["agent_text"] if ut.start <= a["t"] < ut.window_end).strip()


def answer_text(mode: str, rec: dict, ut: UserTurn) -> str:
    """The LLM's answer for a user turn: cascade = reply text in the turn's window; tandem =
    the text of every oracle prediction started in the window (the front-end may say any of it)."""
    lo, hi = ut.start, ut.window_end
    if mode == "cascade":
        return window_text(rec, ut)
    pids = [o["prediction_id"] for o in rec["oracle"] if o["event"] == "reset" and lo <= o["t"] < hi]
    preds = ["".join(o.get("text", "") for o in rec["oracle"] if o.get("prediction_id") == p and o["event"] == "append")
             for p in pids]
    return " | ".join(p.strip() for p in preds if p.strip())


def analyse(mode: str, runs, dialogues, asr, thr: float) -> list[TurnResult]:
    from ..runtime.runsummary import fed_oracle_lags

    out = []
    for (rec, agent), (_, turns) in zip(runs, dialogues):
        for ut in turns:
            r = TurnResult(mode, ut)
            hit = first_voiced(agent, ut.end, ut.window_end, thr)
            r.first_response = None if hit is None else max(0.0, hit - ut.end)
            r.answer = answer_text(mode, rec, ut)
            if hit is not None or first_voiced(agent, ut.start, ut.end, thr) is not None:
                heard = audible_words(asr, agent, ut.start, ut.window_end, thr)
                r.heard = " ".join(w for w, _ in heard)
                r.content, r.content_word = content_latency(heard, r.answer, ut.end, r.first_response)
            in_win = [m for m in rec["metrics"] if ut.start <= m.get("t", -1) < ut.window_end]
            r.oracle_lag = fed_oracle_lags(in_win)  # one per prediction (was: its "emitted" stage too)
            r.llm_ttft = [m["value"] for m in in_win if m["name"] == "llm_ttft"]
            # the LLM request time = llm_ttft's time - its value (the cascade sends one per turn)
            reqs = [m["t"] - m["value"] for m in in_win if m["name"] == "llm_ttft" and m["t"] - m["value"] >= ut.end - 1]
            r.request_delay = (min(reqs) - ut.end) if reqs else None
            tts = [m["value"] for m in in_win if m["name"] == "tts_first_chunk"]
            r.tts_first_chunk = tts[0] if tts else None
            out.append(r)
    return out


# ---------------------------------------------------------------------------- CLI
def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..config import add_config_arguments

    add_config_arguments(p)
    p.add_argument("--turns", type=at_least(1), default=30, help="user turns to run (default 30 = all dialogues)")
    p.add_argument("--modes", default="tandem,cascade",
                   help="comma-separated modes: tandem, cascade, both (= tandem,cascade; the default); each "
                        "is run whatever the config's mode")
    p.add_argument("--window", type=at_least(0.5, float), default=8.0,
                   help="seconds (not frames) after each user turn for the agent (default 8)")
    p.add_argument("-o", "--out", default="out/bench/latency",
                   help="folder for latency.json/.png/.md and wavs (default out/bench/latency; the results "
                        "BENCHMARKS.md shows are in bench/results/latency)")
    p.add_argument("--save-wavs", action="store_true", help="also write each dialogue's stereo wav")
    p.add_argument("--reanalyse", action="store_true",
                   help="run nothing: rewrite latency.md and latency.json's summary in --out from the per-turn "
                        "results in its latency.json (e.g. bench/results/latency)")


MODES_HELP = "give tandem, cascade, or both (= tandem,cascade), comma-separated, e.g. --modes cascade,tandem"


def parse_modes(text: str) -> list[str]:
    """The modes --modes names, each once, in order; ``both`` is tandem,cascade (as kame demo's
    --mode both). ConfigError for a mode it does not know, or none."""
    names = [m.strip() for m in text.split(",") if m.strip()]
    for m in names:
        if m not in ("tandem", "cascade", "both"):
            raise ConfigError(f"--modes: unknown mode {m!r}; {MODES_HELP}")
    if not names:
        raise ConfigError(f"--modes {text!r} names no mode; {MODES_HELP}")
    return list(dict.fromkeys(x for m in names for x in (("tandem", "cascade") if m == "both" else (m,))))


def main(args) -> int:
    from ..config import config_from_args

    if getattr(args, "reanalyse", False):
        print(reanalyse(args.out))
        print(f"\nrewrote {Path(args.out) / 'latency.md'} and the summary in {Path(args.out) / 'latency.json'}")
        return 0
    modes = parse_modes(args.modes)
    # each mode's config (and what the mode needs of it) before minutes of synthesis, not after; the
    # mode set last, so a cascade config's checks do not refuse its tandem run (was: backend.stt=none)
    cfgs = {m: config_from_args(argparse.Namespace(**{**vars(args), "mode": m})) for m in modes}
    n_turns = sum(len(d) for d in DIALOGUES)
    if args.turns > n_turns:
        raise ConfigError(f"--turns {args.turns}: the benchmark's dialogues have {n_turns} user turns")
    n_turns = args.turns
    from ..eval.firstwrites import FirstWrites

    made = FirstWrites(args.out)  # (the folders -o makes: kame eval's rule, `-o x/../y` too)
    out = check_output_folder(args.out)  # before the runs, not after them
    try:
        return _run(args, modes, cfgs, n_turns, out)
    finally:  # folders made for the results and left empty (Ctrl-C, an error) are not left behind (was: they
        made.undo()  # were; then the last one only; then, for -o x/../y, an existing empty y removed and x left)


def _run(args, modes: list[str], cfgs: dict, n_turns: int, out: Path) -> int:
    """main's runs, analysis and files, into the folder ``out``."""
    from .machine import cpu_name, header, stopped_by_ctrl_c

    started = header(args, add_arguments, "latency")  # the command, and the machine's load at the start
    print(started, flush=True)
    t_start = time.perf_counter()
    dialogues: list = []
    runs, results, slowdown, comps = {}, {}, {}, {}

    def measure() -> None:  # a mode's runs kept once all its dialogues ran: Ctrl-C keeps the modes before
        dialogues.extend(build_dialogues(n_turns, args.window))
        print(f"{n_turns} user turn{'s' * (n_turns != 1)} in {len(dialogues)} dialogue{'s' * (len(dialogues) != 1)} "
              f"({sum(p.shape[0] for p, _ in dialogues) / SR:.0f} s of audio per mode)", flush=True)
        for mode in modes:
            got = run_to_end(run_mode(cfgs[mode], dialogues))
            slowdown[mode] = sum(r["wall_s"] for r, _ in got) / sum(r["duration_s"] for r, _ in got)
            comps[mode] = got[0][0]["components"]
            runs[mode] = got

    stopped = stopped_by_ctrl_c(measure, runs, "report", "mode", "analysing the {} run before Ctrl-C for "
                                "latency.md/.json/.png (Ctrl-C again to quit without them)")
    if stopped and not runs:
        return 130
    cut = [m for m in modes if m not in runs]  # (after a Ctrl-C: the one it cut, and any after it)
    modes = list(runs)
    # the back-end children the agents shared (the embedded LLM's, pocketsphinx's: kept for the process) stopped
    # before minutes of whisper (was: left running meanwhile, after a Ctrl-C the cut mode's too, a prompt it read
    # still taking the CPU the analysis needs)
    release_children()
    thr = 10 ** (cfgs[modes[-1]].runtime.silence_db / 20)
    print("transcribing the agents' audio (whisper tiny.en, word timestamps)...", flush=True)
    asr = whisper_asr()
    for mode in modes:
        results[mode] = analyse(mode, runs[mode], dialogues, asr, thr)
    sums = {m: summary(rs) for m, rs in results.items()}
    random_fe = any(c.get("frontend_random") for c in comps.values())
    cpu = cpu_name()
    desc = _describe(comps)
    text = report_md(started, n_turns, len(dialogues), args.window, time.perf_counter() - t_start, desc, random_fe,
                     sums, slowdown, cut)
    print("\n" + text)
    (out / "latency.md").write_text(text + "\n")
    (out / "latency.json").write_text(json.dumps({
        "summary": {m: {k: _json_num(v) for k, v in d.items()} for m, d in sums.items()},
        "slowdown": slowdown, "components": comps, "cpu": cpu, "window_s": args.window, "not_run": cut,
        "turns": {m: [dict(asdict(r), turn=asdict(r.turn)) for r in rs] for m, rs in results.items()},
    }, indent=1, default=str))
    plot(out / "latency.png", results, "kame bench latency: " + "; ".join(f"{m}: {d}" for m, d in desc.items())
         + (" (tandem front-end: RANDOM WEIGHTS)" if random_fe else "") + interrupted_note(cut, len(modes), ", "))
    if args.save_wavs:
        for mode in modes:
            for k, ((rec, agent), (pcm, _)) in enumerate(zip(runs[mode], dialogues)):
                user = np.pad(pcm, (0, agent.shape[0] - pcm.shape[0]))
                write_wav(out / f"{mode}_{k:02d}.wav", np.stack([user, agent], axis=1), SR)
    pattern = modes[0] if len(modes) == 1 else "{" + ",".join(modes) + "}"
    wavs = f", {out}/{pattern}_NN.wav ({len(dialogues)} each)" if args.save_wavs else ""  # (was: unsaid)
    print(f"\nwrote {out / 'latency.md'}, {out / 'latency.json'}, {out / 'latency.png'}{wavs}")
    return 130 if stopped else 0

