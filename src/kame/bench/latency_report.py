"""kame bench latency's results: the per-turn records (UserTurn, TurnResult), their summary per
mode, latency.md's text, the plot, and ``kame bench latency --reanalyse`` (kame.bench.latency runs
the dialogues and measures them)."""

from __future__ import annotations

import json
import math
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..cliargs import counted
from ..errors import ConfigError
from .machine import pct


SPEECH_DB = -50.0  # a user turn's speech: from its first to its last sample above this



@dataclass
class UserTurn:
    dialogue: int
    index: int  # turn number inside the dialogue
    text: str
    voice: str
    start: float  # s, speech start in the dialogue's audio
    end: float  # s, end of speech (last sample above -50 dBFS)
    window_end: float  # next turn's start, or the end of the audio


@dataclass
class TurnResult:
    mode: str
    turn: UserTurn
    first_response: float | None = None  # s (None: the agent never made a sound in the window)
    content: float | None = None  # s (None: no word of the answer was audible)
    content_word: str = ""
    answer: str = ""  # the LLM's answer text for the turn (cascade reply / tandem oracle predictions)
    heard: str = ""  # whisper transcript of the agent's audio in the window (words in silence left out)
    oracle_lag: list[float] = field(default_factory=list)
    llm_ttft: list[float] = field(default_factory=list)
    request_delay: float | None = None  # end of speech -> first LLM request of the turn (VAD + STT final; cascade)
    tts_first_chunk: float | None = None  # cascade


# ---------------------------------------------------------------------------- report
def pct_never(xs, q):
    """machine.pct (nearest rank: a measured value; nan for none) with None (never happened) as
    +inf, so a p50 past the last real value is "never"."""
    return pct([math.inf if x is None else x for x in xs], q)


def _fmt(x):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return "never" if x == math.inf else f"{x:.2f}"


def summary(results: list[TurnResult]) -> dict:
    fr = [r.first_response for r in results]  # None = never (inf in the percentiles)
    ct = [r.content for r in results]
    ol = [v for r in results for v in r.oracle_lag]  # every prediction
    # each turn's last prediction: restarted on the STT's final, it answers the whole turn (a tandem
    # turn with none never got an answer: +inf); the cascade has no oracle
    oe = [r.oracle_lag[-1] if r.oracle_lag else None for r in results if r.mode == "tandem"]
    tt = [v for r in results for v in r.llm_ttft]
    rd = [r.request_delay for r in results if r.request_delay is not None]
    tf = [r.tts_first_chunk for r in results if r.tts_first_chunk is not None]
    return {"turns": len(results), "first_response_n": sum(x is not None for x in fr),
            "content_n": sum(x is not None for x in ct), "already_sounding_n": sum(1 for x in fr if x == 0.0),
            "first_response_p50": pct_never(fr, 0.5), "first_response_p90": pct_never(fr, 0.9),
            "content_p50": pct_never(ct, 0.5), "content_p90": pct_never(ct, 0.9),
            "oracle_lag_p50": pct_never(ol, 0.5), "oracle_lag_p90": pct_never(ol, 0.9), "oracle_lag_n": len(ol),
            "oracle_lag_end_p50": pct_never(oe, 0.5), "oracle_lag_end_p90": pct_never(oe, 0.9),
            "oracle_lag_end_n": sum(x is not None for x in oe),
            "llm_ttft_p50": pct_never(tt, 0.5), "request_delay_p50": pct_never(rd, 0.5), "tts_first_chunk_p50": pct_never(tf, 0.5)}


TABLE_CAPTION = ("Latency from the user's end of speech (the script's: the last sample of the turn above "
                 f"{SPEECH_DB:g} dBFS) to the agent's recorded audio; p50 / p90 (nearest rank; 'never': the turn "
                 "had none). First response: the first 10 ms above runtime.silence_db. Content latency: the "
                 "first audible word of the LLM's answer. LLM TTFT: request -> first token.")


def table(sums: dict[str, dict], slowdown: dict[str, float]) -> str:
    """The per-mode table (TABLE_CAPTION says what it measures; the oracle lag, measured from
    another point, is oracle_lines')."""
    lines = ["| mode | turns | first response p50 / p90 (s) | content latency p50 / p90 (s) | answer audible | "
             "LLM TTFT p50 (s) | slowdown |",
             "|---|---|---|---|---|---|---|"]
    for mode, s in sums.items():
        lines.append(
            f"| {mode} | {s['turns']} | {_fmt(s['first_response_p50'])} / {_fmt(s['first_response_p90'])}"
            f" ({s['first_response_n']} sounded, {s['already_sounding_n']} already at end of speech) | "
            f"{_fmt(s['content_p50'])} / {_fmt(s['content_p90'])} | "
            f"{s['content_n']}/{s['turns']} | {_fmt(s['llm_ttft_p50'])} | x{slowdown.get(mode, float('nan')):.2f} |")
    return "\n".join(lines)


def oracle_lines(s: dict) -> list[str]:
    """The tandem's oracle lag (summary ``s``), both figures, with their reference point."""
    return ["tandem oracle lag (the runtime's oracle_lag, \"fed\" stage: from the end of the STT's last word "
            "the prediction was based on, not the script's end of speech, to its first token fed to the front-end):",
            f"- oracle lag, end of turn (final transcript): {_fmt(s['oracle_lag_end_p50'])} / "
            f"{_fmt(s['oracle_lag_end_p90'])} s (p50 / p90; each turn's last prediction, restarted on the STT's "
            f"final: the answer to the whole turn; {s['oracle_lag_end_n']}/{s['turns']} turns)",
            f"- oracle lag, every prediction: {_fmt(s['oracle_lag_p50'])} / {_fmt(s['oracle_lag_p90'])} s "
            f"({counted(s['oracle_lag_n'], 'prediction')}, most restarted on partial transcripts while the user still talks, "
            "each from the newest partial word then)"]


def interrupted_note(not_run: list[str], n_run: int, lead: str = "- ") -> str:
    """What a run cut by Ctrl-C lacks, for latency.md and the plot: the modes ``not_run`` (the
    first is the one Ctrl-C cut); "" for a whole run."""
    if not not_run:
        return ""
    return (f"{lead}INTERRUPTED (Ctrl-C) during `{not_run[0]}`: {n_run} of {n_run + len(not_run)} modes run, "
            f"{', '.join(f'`{m}`' for m in not_run)} not (the total time includes the cut run)")


def report_md(started: str, n_turns: int, n_dialogues: int, window: float, total_s: float, desc: dict[str, str],
              random_fe: bool, sums: dict[str, dict], slowdown: dict[str, float], not_run: list[str] = ()) -> str:
    """latency.md's text (``started``: kame.bench.machine.header's lines; ``not_run``: the modes a
    Ctrl-C left out, said first: the command line names them, the table does not)."""
    md = [started, "", f"kame bench latency: {n_turns} user turn{'s' * (n_turns != 1)}, {n_dialogues} "
          f"dialogue{'s' * (n_dialogues != 1)}, window {window:g} s, simulated real time; {total_s:.0f} s total", ""]
    if not_run:  # (was: nothing said; the table, with fewer modes, read as a whole run's)
        md.append(interrupted_note(list(not_run), len(sums)))
    md += [f"- {m}: {d}" for m, d in desc.items()]
    if random_fe:
        md.append("- NOTE: the tandem front-end has RANDOM WEIGHTS (no trained embedded front-end exists): its audio "
                  "is babble, not an answer; its first-response latency only says when it makes sound, and its "
                  "content latency is 'never' unless a word of the LLM's answer happens to be recognized in it.")
    md += ["", TABLE_CAPTION, "", table(sums, slowdown)]
    if "tandem" in sums:
        md += [""] + oracle_lines(sums["tandem"])
    if "cascade" in sums:
        c = sums["cascade"]
        md += ["", f"cascade breakdown (p50): end of speech -> LLM request (VAD + STT final) "
                   f"{_fmt(c['request_delay_p50'])} s, LLM TTFT {_fmt(c['llm_ttft_p50'])} s, "
                   f"TTS first chunk {_fmt(c['tts_first_chunk_p50'])} s (the rest: waiting for the first "
                   f"complete clause/sentence of the LLM stream, and playback pacing)"]
    return "\n".join(md)


def _describe(comps: dict) -> dict[str, str]:
    return {m: ", ".join(f"{k}={v}" for k, v in c.items() if k in ("frontend", "codec", "stt", "llm", "tts", "vad"))
            for m, c in comps.items()}


def reanalyse(folder) -> str:
    """Rewrite ``folder``'s latency.md and its latency.json's summary from the per-turn results in
    that latency.json (nothing is run: for a change in the summary). The header lines (command,
    machine, total time) are kept from the old latency.md. Returns the new latency.md text."""
    folder = Path(folder)
    path = folder / "latency.json"
    try:
        data = json.loads(path.read_text())
        results = {m: [TurnResult(**{**r, "turn": UserTurn(**r["turn"])}) for r in rs]
                   for m, rs in data["turns"].items()}
    except FileNotFoundError:
        raise ConfigError(f"--reanalyse: {path} does not exist (give --out the folder of a kame bench latency run)") \
            from None
    except OSError as exc:  # (a file as --out, a folder as latency.json; was: a traceback)
        raise ConfigError(f"--reanalyse: cannot read {path}: {exc.strerror} (give --out the folder of a kame bench "
                          f"latency run)") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"--reanalyse: {path} is not a kame bench latency result ({type(exc).__name__}: {exc})") \
            from None
    old = (folder / "latency.md").read_text().splitlines() if (folder / "latency.md").is_file() else []
    started = "\n".join(old[:2]) if len(old) >= 2 else f"(re-analysed from {path})"
    total = next((float(m.group(1)) for line in old if (m := re.search(r"; (\d+) s total$", line))), math.nan)
    sums = {m: summary(rs) for m, rs in results.items()}
    comps = data.get("components", {})
    n_dialogues = len({r.turn.dialogue for rs in results.values() for r in rs})
    n_turns = max((len(rs) for rs in results.values()), default=0)
    text = report_md(started, n_turns, n_dialogues, float(data.get("window_s", math.nan)), total, _describe(comps),
                     any(c.get("frontend_random") for c in comps.values()), sums, data.get("slowdown", {}),
                     data.get("not_run", []))  # (was: a cut run's, re-analysed, read as whole)
    (folder / "latency.md").write_text(text + "\n")
    data["summary"] = {m: {k: _json_num(v) for k, v in d.items()} for m, d in sums.items()}
    path.write_text(json.dumps(data, indent=1, default=str))
    return text


def plot(path: Path, results: dict[str, list[TurnResult]], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    rng = np.random.default_rng(0)
    for ax, key, label in ((axes[0], "first_response", "first-response latency (s)"),
                           (axes[1], "content", "content latency (s)")):
        data, names = [], []
        for mode, rs in results.items():
            xs = [getattr(r, key) for r in rs if getattr(r, key) is not None]
            data.append(xs if xs else [np.nan])
            names.append(f"{mode}\n({len(xs)}/{len(rs)} turns)")
        ax.boxplot(data, showfliers=False)
        ax.set_xticks(range(1, len(names) + 1), names)
        for i, d in enumerate(data):
            ax.scatter(np.full(len(d), i + 1) + rng.uniform(-0.12, 0.12, len(d)), d, s=12, alpha=0.7, color=f"C{i}")
        top = max([x for d in data for x in d if x == x] + [1.0])
        ax.set_ylim(0, top * 1.1)
        for i, (mode, rs) in enumerate(results.items()):
            never = sum(getattr(r, key) is None for r in rs)
            if never:  # turns without a value are not in the box: say how many
                ax.text(i + 1, top * 0.55, f"never on {never}/{len(rs)} turns", ha="center", va="center",
                        color="dimgrey", fontsize=9)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    fig.suptitle("\n".join(textwrap.wrap(title, 150)), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _json_num(v):
    """Summary values for strict JSON: never -> "never", no value -> null."""
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return "never" if v == math.inf else None
    return v
