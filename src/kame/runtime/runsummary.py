"""What a played conversation's record says (kame.runtime.filemode.play_session's ``rec``): the
summary of ``kame run`` (``summarize``: OUT.json's "summary"; ``print_summary``: the lines it
prints) and the rules that read the record for it and for kame client (kame.server.clientreport):
the agent's text as heard, the replies' outcomes (``reply_outcomes``), a reply cut off by the
end of the file (``reply_cut_off``), a cascade that never answered (``unanswered``), speech the
STT heard no word in (``unheard``). The summary's warnings, and why, are kame.runtime.runreport's.
kame.runtime.filemode plays the conversation (and its names here are importable from there too).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..audio import CLIPPED_WARN_SHARE
from ..backend.types import FRAME_S, SAMPLE_RATE as SR
from .metrics import SLOW_CAUSE, behind_real_time, late_share
from .runreport import open_turns, print_warnings, shortened, speech_open, speech_spans, user_words, words_not_heard


def _metric_values(rec: dict, name: str) -> list[float]:
    """The values of a run's metric ``name``, in the order they came."""
    return [m["value"] for m in rec["metrics"] if m.get("name") == name]


def _sampling_value(v) -> str:
    """A sampling value as the summary shows it: a temperature with :g, a top-k as the whole
    number it is (a top-k too large for a float, which config.json may hold, is exact)."""
    return f"{v:g}" if isinstance(v, float) else str(v)


def summarize(rec: dict, fast: bool = False) -> dict:
    """The summary of run record ``rec``; ``fast``: a `kame run --fast` run (its "pacing"; the --fast
    clock's stalls, "outrun_replies", are counted only then: stalls)."""
    def vals(name):
        return _metric_values(rec, name)

    st = rec.get("step_times") or []  # (none: the cascade has no front-end steps)
    finals = [t for t in rec["transcripts"] if t["final"]]
    heard = " ".join(t["text"] for t in finals)
    last = rec["transcripts"][-1] if rec["transcripts"] else None  # (was: a partial shown as if heard)
    partial = last["text"] if last and not last["final"] else ""  # the words of an utterance with no final
    comps = rec["components"]
    stalled, outrun, outrun_wall = stalls(rec, fast)
    return {
        "frontend": comps.get("frontend"), "frontend_random": comps.get("frontend_random"),
        "codec": comps.get("codec"), "stt": comps.get("stt"), "llm": comps.get("llm"),
        "mode": comps.get("mode"), "tts": comps.get("tts"),
        "oracle_stream": comps.get("oracle_stream"), "oracle_note": comps.get("oracle_note"),
        "sampling": ("greedy" if comps.get("sampling_greedy") else
                     " ".join(f"{k}={_sampling_value(comps[f'sampling_{k}'])}"
                              for k in ("temp", "top_k", "temp_text", "top_k_text")
                              if isinstance(comps.get(f"sampling_{k}"), (int, float))) or None),
        "sampling_source": comps.get("sampling_source"),
        "heard": heard, "heard_partial": partial,
        # the text the back-end SENT (all the LLM said); the front-end was fed what came in time (oracle_tokens_*)
        "oracle_text": " | ".join("".join(o.get("text", "") for o in rec["oracle"] if o.get("prediction_id") == pid
                                          and o["event"] == "append")
                                  # (predictions that sent tokens: not a bare reset's, a stream cancelled first)
                                  for pid in sorted({o["prediction_id"] for o in rec["oracle"] if o["event"] == "append"})),
        # a cascade's: what was heard (was: all the LLM said, a failed TTS's unspoken text too)
        "agent_text": _heard_text(rec) if comps.get("mode") == "cascade" else _agent_text(rec),
        "agent_unspoken_words": _unspoken_words(rec),
        # the last of those replies was under way at the end: agent_text has its LLM's text as far as it
        # streamed, which can be ahead of its audio (the agent line says so)
        "agent_reply_under_way": comps.get("mode") == "cascade" and _under_way(rec),
        "speech_open": speech_open(rec),  # (a cascade's user speech the VAD had not ended: no turn taken)
        **oracle_feed(rec),
        "first_response_latency_s": vals("first_response_latency"),
        "oracle_lag_s": fed_oracle_lags(rec["metrics"]),
        "step_time_p50_s": float(np.percentile(st, 50)) if st else None,
        "step_time_p99_s": float(np.percentile(st, 99)) if st else None,
        "missed_deadlines": len(vals("missed_deadline")),
        # steps longer than the 80 ms frame: live, these frames would miss their deadline
        # (in simulated real time none does: virtual time waits for the step)
        "slow_steps": sum(x > FRAME_S for x in st),
        "frames": rec["frames"], "late_frames": rec["late_frames"], "wall_s": rec["wall_s"],
        "slowdown": rec["slowdown"], "load_s": rec["load_s"], "errors": len(rec["errors"]),
        "frontend_failed_steps": rec.get("failed_steps", 0),  # (counted in "errors" too)
        # (failed replies: those whose stall the --fast clock may have made, fast_stalls)
        "stalled_replies": stalled, "outrun_replies": outrun, "outrun_wall_s": outrun_wall,
        "pacing": "fast" if fast else "simulated-realtime",
    }


def oracle_feed(rec: dict) -> dict:
    """What the session's last "stats" says of the oracle: tokens the back-end sent, those fed to the
    front-end, those that came after their frame (never fed: the feed is time-locked, one token a
    frame), and the LLM's median text-stream rate (llm_tokens_per_s; None if not measured)."""
    st = (rec.get("stats") or [{}])[-1]
    rates = _metric_values(rec, "llm_tokens_per_s")
    return {"oracle_tokens_sent": st.get("oracle_tokens_sent"), "oracle_tokens_fed": st.get("oracle_tokens_fed"),
            "oracle_tokens_late": st.get("oracle_tokens_late"),
            "llm_tokens_per_s": float(np.median(rates)) if rates else None}


def oracle_late(s: dict) -> str | None:
    """The warning when most of the oracle's tokens came too late to be fed (summary ``s``), else None."""
    sent, late = s.get("oracle_tokens_sent") or 0, s.get("oracle_tokens_late") or 0
    if not sent or 2 * late <= sent:
        return None
    rate = s.get("llm_tokens_per_s")
    said = (f"streamed {rate:.1f} tokens/s (median)" if rate is not None else "streamed") \
        + f" where the feed takes one a frame ({1 / FRAME_S:g}/s)"
    return (f"{late} of the oracle's {sent} tokens came too late to be fed to the front-end (after their 80 ms "
            f"frame had passed; the oracle line shows all the back-end sent): LLM {s.get('llm')} {said}; use a "
            f"faster LLM (backend.llm), or train the front-end with kame train --slow-prob P so it learns such a "
            f"partial oracle")


def fed_oracle_lags(metrics) -> list[float]:
    """The oracle_lag values of recorded "metric" dicts: the user's last word -> the prediction's
    first token fed to the front-end, one per prediction (the producer's own "emitted" stage, a
    little earlier, is recorded too and left out)."""
    return [m["value"] for m in metrics if m.get("name") == "oracle_lag"
            and (m.get("labels") or {}).get("stage", "fed") == "fed"]


def _turn_starts(rec: dict) -> list[tuple[float, object]]:
    """(time, turn id) of each reply turn a cascade started (its "turn" events), in time order."""
    return sorted(((d["t"], d.get("turn")) for d in rec.get("other", ()) if d.get("type") == "turn" and "t" in d),
                  key=lambda x: x[0])


def _agent_text(rec: dict) -> str:
    """The agent's text pieces joined; a cascade's replies (each starts after its "turn" event)
    with a space between them, as a reply's first piece has none."""
    starts = [t for t, _ in _turn_starts(rec)]
    out, prev_t = "", None
    for a in rec["agent_text"]:
        if out and not out[-1].isspace() and not a["text"][:1].isspace() \
                and any(prev_t < t <= a["t"] for t in starts):
            out += " "
        out, prev_t = out + a["text"], a["t"]
    return out.strip()


def _heard_text(rec: dict) -> str:
    """A cascade's replies as heard, a space between them: each ended reply's "agent_turn" text
    (all of it, unless a barge-in or a failed LLM/TTS cut it: then the words its played audio
    reached, kame.cascade.reply), and a reply still under way when the run ended the pieces
    streamed so far (the LLM's text, which can be ahead of its audio: summary
    "agent_reply_under_way", _under_way)."""
    ended = {d.get("turn"): d for d in _agent_turns(rec)}
    starts = _turn_starts(rec)
    said = []
    for i, (t, tid) in enumerate(starts):
        if tid in ended:
            said.append(str(ended[tid].get("text") or ""))
        else:  # (under way: its pieces until the next turn)
            until = starts[i + 1][0] if i + 1 < len(starts) else math.inf
            said.append("".join(a["text"] for a in rec["agent_text"] if t <= a["t"] < until))
    return " ".join(x.strip() for x in said if x.strip())


def _under_way(rec: dict) -> bool:
    """A cascade's last reply was under way when the run ended (a "turn" with no "agent_turn", e.g.
    --max-tail ran out) and had streamed text: _heard_text ends with that text, the LLM's as far
    as it streamed, which can be ahead of the reply's audio."""
    starts = _turn_starts(rec)
    if not starts or starts[-1][1] in {d.get("turn") for d in _agent_turns(rec)}:
        return False
    return any(a["t"] >= starts[-1][0] and a["text"].strip() for a in rec["agent_text"])


def _unspoken_words(rec: dict) -> dict:
    """Words of the replies (a cascade's, hybrid routing's) the LLM gave but nobody heard:
    {"failed": cut by a failed LLM or TTS, "interrupted": cut by the user's barge-in}; of ended
    replies only (one under way at the end is in neither: _under_way)."""
    out = {"failed": 0, "interrupted": 0}
    for d in _agent_turns(rec):
        n = words_not_heard(d)  # (the words a TTS would speak: the timeline's "(+N not heard)" too)
        if n > 0 and (d.get("failed") or d.get("interrupted")):
            out["failed" if d.get("failed") else "interrupted"] += n
    return out


AUDIBLE = 0.01  # |sample| above which agent audio counts as heard (the cascade's silence_threshold)


def reply_cut_off(rec: dict, agent: np.ndarray) -> bool:
    """The reply was not all spoken before OUT.wav ended: the agent's text goes on more than 0.5 s
    past its last audible sample (all of it, for a cascade whose answer came late), or a turn
    (a cascade's, or hybrid routing's) had not ended (its "agent_turn") when the file ended. (A
    tandem's front-end speaks all the time, so its audio at the end says nothing.)"""
    if not _agent_text(rec):
        return False
    ended = _agent_turns(rec)
    failed_last = bool(ended and ended[-1].get("failed") and ended[-1].get("t", 0) >= rec["agent_text"][-1]["t"])
    loud = np.flatnonzero(np.abs(agent) > AUDIBLE)
    if not failed_last and (not loud.size or loud[-1] / SR + 0.5 < rec["agent_text"][-1]["t"]):
        return True  # (a failed reply's unspoken text is no cut: reply_outcomes counts it)
    return bool(open_turns(rec.get("other", ())))


def _agent_turns(rec: dict) -> list[dict]:
    """The "agent_turn" metadata of a run (a cascade's, hybrid routing's): one per reply ended."""
    return [d for d in rec.get("other", ()) if d.get("type") == "agent_turn"]


def reply_outcomes(rec: dict) -> dict:
    """{"failed": replies a failing LLM/TTS ended, "empty": replies that ended without a word (the
    LLM gave no text, and did not fail), "barged_in": replies a barge-in cut (its "barge_in"
    metadata)}, from the "agent_turn" metadata (a cascade's, hybrid routing's)."""
    ended = _agent_turns(rec)
    return {"failed": sum(1 for d in ended if d.get("failed")),
            "empty": sum(1 for d in ended if not d.get("failed") and not d.get("interrupted")  # (a barge-in
                         and not str(d.get("reply", "")).strip()),  # may come before the first word)
            "barged_in": sum(1 for d in rec.get("other", ()) if d.get("type") == "barge_in")}


# A stall is the --fast clock's only when its timer ran less than this share of its seconds on the
# session's clock in wall time: the back-end got at most half its limit (was: any less, so a paced
# run, whose clock runs up to a frame ahead of wall time, or a --fast one near x1.0 of real time,
# blamed the clock for a hung TTS that got 95 % of its limit)
OUTRUN_SHARE = 0.5


def stalls(rec: dict, fast: bool) -> tuple[int, int, float | None]:
    """(the failed replies, reply_outcomes' "failed", whose LLM or TTS stalled: gave nothing
    within its timeout on the session's clock; under --fast (``fast``; else 0) those of them whose
    every stall timer ran less than OUTRUN_SHARE of its clock seconds in wall time; the most wall
    seconds one of those ran, or None), from kame.cascade.reply's "reply_stall" metric (its value
    the wall seconds; labels turn, clock_s; was: a regex over its error's words). Under --fast
    that clock runs ahead of wall time, so a TTS (or LLM) slower than it (piper: every reply)
    "stalls" while it may still be at work, given less time than its limit: fast_stalls says so."""
    failed = {d.get("turn") for d in _agent_turns(rec) if d.get("failed")}
    by_turn: dict = {}
    for m in rec.get("metrics", ()):
        labels = m.get("labels") or {}
        if m.get("name") == "reply_stall" and labels.get("turn") in failed:
            by_turn.setdefault(labels["turn"], []).append((float(m["value"]), float(labels.get("clock_s", 0.0))))
    outrun = [max(w for w, _ in seen) for seen in by_turn.values()
              if fast and all(w < OUTRUN_SHARE * c for w, c in seen)]
    return len(by_turn), len(outrun), max(outrun, default=None)


def fast_stalls(s: dict) -> int:
    """The failed replies of summary ``s`` whose stall only the --fast clock may have made: their
    LLM or TTS gave nothing within its timeout in virtual time, which outran wall time, so it had
    less than OUTRUN_SHARE of its limit (its "outrun_replies"); 0 when not --fast (its "pacing").
    A stall that got that share of its limit or more in wall time is the back-end's, --fast or not."""
    return s.get("outrun_replies", 0) if s.get("pacing") == "fast" else 0


def fast_stalled(s: dict) -> str:
    """What the summary says of fast_stalls' replies (the --fast clock's, not said as the back-end's)."""
    return (f"the --fast clock outran their LLM or TTS: its stall timeout ran out in virtual time after only "
            f"{s.get('outrun_wall_s') or 0:.1f} s of wall time, too little to tell a slow back-end from a hung "
            f"one; leave --fast out")


def unanswered(rec: dict) -> bool:
    """A cascade heard the user (a final transcript with words) but said nothing before OUT.wav
    ended (e.g. ``--fast``: virtual time runs ahead of its STT, LLM and TTS)."""
    return bool(rec.get("components", {}).get("mode") == "cascade"
                and any(t["final"] and t.get("text", "").strip() for t in rec["transcripts"])
                and not _agent_text(rec))


def unheard(rec: dict) -> tuple[int, int] | None:
    """(stretches of speech of MIN_WORD_SPEECH_S or more the VAD found in which the STT transcribed
    no word, such stretches), or None when it heard words in all of them (or there is no STT).
    The tandem's --fast runs its frames ahead of its STT, which then hears little or nothing, and
    only this says so."""
    if rec.get("components", {}).get("stt") in (None, "none"):
        return None
    spans = speech_spans(rec, open_end=rec.get("duration_s", float("inf")))  # (speech until the end counts)
    words = user_words(rec)
    missed = sum(1 for a, b in spans if not any(w["end"] > a and w["start"] < b for w in words))
    return (missed, len(spans)) if missed else None


def print_summary(s: dict, out: Path, no_png: bool) -> None:
    def fmt(xs):  # (all of them are in OUT.json)
        if len(xs) > 6:
            return f"{len(xs)} values, median {float(np.median(xs)):.2f}, max {max(xs):.2f}"
        return ", ".join(f"{x:.2f}" for x in xs) if xs else "-"

    print(f"mode      {s['mode']}")
    fe = s["frontend"] or f"(none: {s['mode']})"
    print(f"front-end {fe}" + ("  ** RANDOM WEIGHTS: its speech is babble, not an answer **" if s["frontend_random"] else ""))
    print(f"codec     {s['codec'] or '-'}   stt {s['stt']}   llm {s['llm']}" + (f"   tts {s['tts']}" if s.get("tts") else ""))
    if s.get("oracle_stream") and not s["frontend_random"]:  # a checkpoint: what its oracle is, how it samples
        print(f"model     oracle stream {s['oracle_stream']}   sampling {s.get('sampling') or '-'}"
              + (f" ({s['sampling_source']})" if s.get("sampling_source") else ""))
    if s.get("oracle_note"):
        print(f"note      {s['oracle_note']}")
    heard, partial = repr(s["heard"]), s.get("heard_partial")
    if partial:  # (was: shown as heard, as if the STT had finished it)
        heard = (f"{heard}, then " if s["heard"] else "") + f"partial {partial!r} (no final came for it)"
    print(f"heard     {heard}")
    json_name = out.with_suffix(".json").name  # (a long oracle or agent text is shortened, saying so)
    if s["frontend"]:  # (a cascade has no front-end, so no oracle)
        sent, fed, late = (s.get(f"oracle_tokens_{k}") for k in ("sent", "fed", "late"))
        # (late None: a frame model that does not count them, not said; was "0 came after their frame")
        counts = f"{fed} of {sent} tokens fed" + (f", {late} came after their frame" if late is not None else "")
        if None not in (sent, fed, late) and (cut := sent - fed - late) > 0:  # (was: left out, read as a miscount)
            counts += f", {cut} cut by a newer prediction or the run's end"
        print(f"oracle    sent {shortened(s['oracle_text'], f'summary.oracle_text in {json_name}')}"
              + (f"  ({counts})" if sent else ""))
        if (warn := oracle_late(s)) is not None:
            print(f"warning   {warn}")
    unspoken = (s.get("agent_unspoken_words") or {}) if s["mode"] == "cascade" else {}  # (its agent line: as heard)
    replies, outrun = s.get("replies") or {}, fast_stalls(s)
    failed = ("the --fast clock outran the reply's LLM or TTS" if outrun and outrun == replies.get("failed")
              else "the reply's LLM or TTS failed")
    print(f"agent     {shortened(s['agent_text'], f'summary.agent_text in {json_name}')}"
          + ("  (random front-end babble)" if s["frontend_random"] else "")
          + ("  (reply under way at the end: its text as far as the LLM streamed it, which can be ahead of what "
             "was spoken)" if s.get("agent_reply_under_way") else "")
          + "".join(f"  (+{unspoken[k]} words not spoken: {why})" for k, why in
                    (("failed", failed), ("interrupted", "the user barged in"))
                    if unspoken.get(k)))
    print(f"latency   first response [s]: {fmt(s['first_response_latency_s'])}   oracle lag [s]: {fmt(s['oracle_lag_s'])}")
    st = s["step_time_p50_s"]
    steps = f"p50 {st * 1000:.1f} ms  p99 {s['step_time_p99_s'] * 1000:.1f} ms" if st is not None else "-"
    print(f"step      {steps}  missed deadlines {s['missed_deadlines']}  frames {s['frames']}  "
          f"wall {s['wall_s']:.1f} s (+{s['load_s']:.1f} s loading, x{s['slowdown']:.2f} of real time)  "
          f"errors {s['errors']}" + (f" ({outrun} the --fast clock's stalls)" if outrun else ""))
    if behind_real_time(s.get("slow_steps", 0), s["frames"]):  # (`kame client` says the same of a server)
        print(f"warning   the front-end's step took longer than the 80 ms frame on "
              f"{late_share(s['slow_steps'], s['frames'])}, {st * 1000:.0f} ms per step (median): it runs slower "
              f"than real time, so live (kame serve) it would miss those deadlines and its audio stutter; "
              f"{SLOW_CAUSE}: try "
              + (f"--set runtime.max_sessions=1 (each step runs all its {s['step_rows']} rows through the front-end, "
                 f"and this run uses one), " if s.get("step_rows", 1) > 1 else "")
              + "a smaller front-end or codec, a GPU (frontend.device), or a faster machine")
    if s.get("agent_clipped_fraction", 0.0) >= CLIPPED_WARN_SHARE:  # a handful of clipped samples is inaudible
        print(f"warning   {100 * s['agent_clipped_fraction']:.2f} % of the agent's samples exceeded full scale "
              f"and were clipped in {out.name}")
    if s.get("user_clipped_fraction", 0.0) >= CLIPPED_WARN_SHARE:  # (an input louder than full scale)
        print(f"warning   {100 * s['user_clipped_fraction']:.2f} % of the user's samples (the input's) exceeded full "
              f"scale and were clipped in {out.name} (the agent heard them unclipped)")
    if s.get("tail_extended_s"):
        print(f"tail      {s['tail_extended_s']:.2f} s of silence more than --tail: a reply was under way "
              f"(or still to come: the user's speech not ended, or its final transcript, which starts it, "
              f"not yet sent)")
    if outrun:  # (was: "N of the agent's replies failed ...; its back-end reported N error(s)": piper, every reply)
        print(f"warning   {outrun} of the agent's replies ended before all of it was spoken: {fast_stalled(s)}")
        s = {**s, "replies": {**replies, "failed": replies["failed"] - outrun},  # (not said again as the back-end's)
             "errors": max(0, (s.get("errors") or 0) - outrun)}
    print_warnings(s, out)  # (kame.runtime.runreport)
    print(f"wrote     {out}, {out.with_suffix('.json')}" + ("" if no_png else f", {out.with_suffix('.png')}"))
