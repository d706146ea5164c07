"""What went wrong in a `kame run`, and why: the warnings at the end of its printed summary (each
names its likeliest cause) and the rule by which a run whose front-end mostly failed exits 1.
Both read the summary dict kame.runtime.filemode builds (``summarize`` and its ``main``); some of
its fields come from the run's record here (``final_missing``, ``late_final``, ``answer_missing``,
``stt_behind``).
``shortened``: a long text as the summary's oracle and agent lines print it. And the rules the
summary, ``kame client`` and the timeline plot share: which metadata starts a reply turn
(``turn_started``, ``open_turns``), how many of a reply's words were not heard
(``words_not_heard``), which speech a final transcript ends (``final_speech_end``), whether the
user's last speech had not ended when the run did (``speech_open``)."""

from __future__ import annotations

import math
from pathlib import Path

from ..backend.types import EMPTY_ANSWER, FRAME_S, Transcript, Word
from ..backend.vad import VADEvent
from ..cascade.text import clean_for_speech
from ..cascade.turns import SpeechRegions
from .backend import EMPTY_ERROR

MIN_WORD_SPEECH_S = 0.3  # a stretch of speech the VAD found, shorter than this, need hold no word
STT_BEHIND_S = 10.0  # a final this long after the end of its speech: the STT runs behind real time
STEP_FAILED = "front-end step failed"  # how the engine's ErrorEvent for a failed frame step begins
# how kame serve's own failure to Opus-encode the agent's audio begins (kame.server.connection
# Connection._encode; sent as an "agent_error" too, but no back-end's)
OPUS_FAILED = "the server could not Opus-encode"
FAST = "--fast leaves its STT, LLM and TTS no time: leave it out"

# A failed step leaves its frame without agent audio (the engine reports it and goes on, as a
# live server must). A few (a passing fault) leave a usable run with short gaps: a warning says
# how many. More than half: the agent's channel is mostly silence, so the run fails (exit 1,
# kame's code for a failure it names, after the files are written), or a script that takes exit
# 0 for "here is the answer" takes garbage for one. (All of them: run_conversation raises
# already, as the agent produced no audio at all.)
MOSTLY_FAILED = 0.5


def failed_steps(s: dict) -> int:
    """The frames whose front-end step failed, at most the frames played (a step may run as the
    session closes)."""
    return min(s.get("frontend_failed_steps") or 0, s.get("frames") or 0)


def frontend_failure(s: dict, errors: list[dict], out: Path) -> str | None:
    """Why the run failed, one line, when its front-end's step failed on more than MOSTLY_FAILED
    of the frames (``errors``: the run's, for the first failure's message); else None."""
    n, frames = failed_steps(s), s.get("frames") or 0
    if not n or n <= MOSTLY_FAILED * frames:
        return None
    first = next((e["message"] for e in errors if e.get("message", "").startswith(STEP_FAILED)), STEP_FAILED)
    return (f"the front-end's step failed on {n} of the {frames} frames, so the agent's channel of {out.name} is "
            f"mostly silence (first: {first}); {out.name} and {out.with_suffix('.json').name} hold what it "
            f"produced; see the log for the cause")


def speech_spans(rec: dict, open_end: float | None = None) -> list[tuple[float, float]]:
    """The stretches of speech of MIN_WORD_SPEECH_S or more the run's VAD found, (start, end); a
    stretch still open when the run ended counts up to ``open_end`` if given (else it is left
    out). Shorter ones (a click, a cough) need hold no word."""
    spans, start = [], None
    for v in rec.get("vad", ()):
        if v.get("event") == "start":
            start = v["t"]
        elif v.get("event") == "end" and start is not None:
            spans.append((start, v["t"]))
            start = None
    if start is not None and open_end is not None:
        spans.append((start, open_end))
    return [(a, b) for a, b in spans if b - a >= MIN_WORD_SPEECH_S]


def final_missing(rec: dict) -> dict | None:
    """The STT's final transcript for the user's last speech (the last stretch of
    MIN_WORD_SPEECH_S or more the VAD found ending) never came within the run: no final belongs
    to it (final_speech_end: the speech its last word is in, as the cascade and hybrid routing
    decide; was: any final sent after its end, a late one of the speech before too; one without
    word times: any sent since it began), or the one
    that does came before its end (the STT's own endpointing may finalise before the VAD ends
    the speech) and a partial with words came after it (words it has not finalised):
    {"speech_end": its end, "partial": the words heard of it, from the last partial since it
    began, or ""}; else None (or there is no STT). A loaded machine leaves the STT too little
    CPU; the tandem's front-end then never gets the answer, the cascade never starts its reply."""
    if rec.get("components", {}).get("stt") in (None, "none"):
        return None
    spans = speech_spans(rec)
    if not spans:
        return None
    began, end = spans[-1]
    trs = rec.get("transcripts", ())
    # (a final without word times, e.g. kame client's: one sent since the speech began, as before; ==
    # is the region's identity: final_speech_end returns the recorded VAD "end" time itself, not a sum)
    mine = [t["t"] for t in trs if t["final"]
            and (final_speech_end(rec, t) == end if t.get("words") else t["t"] >= began)]
    if any(t >= end for t in mine):
        return None
    partial = [t for t in trs if not t["final"] and t["t"] >= began and t.get("text", "").strip()]
    if mine and not any(t["t"] > max(mine) for t in partial):  # (all it heard, finalised early)
        return None
    return {"speech_end": end, "partial": partial[-1]["text"].strip() if partial else ""}


def late_final(rec: dict) -> dict | None:
    """A cascade's last final transcript with words started no reply (no "turn" after it): it
    came too late for one in the file (a final sent as the session closed starts none). Then
    {"speech_end": the end of that speech (final_speech_end: the VAD's end of the speech its
    last word is in, else that word's end; was: the last VAD end before the final, another
    utterance's when the final came after the next one ended), "latency": how long after it the
    final came}; else None."""
    if rec.get("components", {}).get("mode") != "cascade":
        return None
    finals = [t for t in rec.get("transcripts", ()) if t["final"] and t.get("text", "").strip()]
    if not finals or any(d.get("type") == "turn" and d.get("t", -1) >= finals[-1]["t"] for d in rec.get("other", ())):
        return None
    last = finals[-1]
    end = final_speech_end(rec, last)
    return {"speech_end": end, "latency": last["t"] - end}


def stt_behind(rec: dict) -> dict | None:
    """The STT fell behind real time in the run (a busy or small CPU): it dropped user audio it
    could not keep up with (the session's last "stats": ``stt_dropped_s``, kame.runtime.sttloop),
    or its last final with words came STT_BEHIND_S or more after the speech it was for. Then
    {"dropped_s", "final_t" and "speech_end" (that final's time and its speech's end, None
    without one), "after": the stretches of speech (speech_spans, one still open at the end
    too) that began after that speech and got no word: the STT had not reached them, or dropped
    them}; else None (or there is no STT). Was: those stretches were said to have no words the
    STT knew (too quiet, another language), a run 400 s behind blamed on its audio."""
    if rec.get("components", {}).get("stt") in (None, "none"):
        return None
    stats = [d for d in rec.get("stats", ()) if isinstance(d.get("stt_dropped_s"), (int, float))]
    dropped = float(stats[-1]["stt_dropped_s"]) if stats else 0.0
    finals = [t for t in rec.get("transcripts", ()) if t["final"] and t.get("words")]
    end = final_speech_end(rec, finals[-1]) if finals else None
    if not dropped and (end is None or finals[-1]["t"] - end < STT_BEHIND_S):
        return None
    words = user_words(rec)
    after = sum(1 for a, b in speech_spans(rec, open_end=rec.get("duration_s", math.inf))
                if (end is None or a >= end) and not any(w["end"] > a and w["start"] < b for w in words))
    return {"dropped_s": round(dropped, 2), "final_t": finals[-1]["t"] if finals else None, "speech_end": end,
            "after": after}


def speech_open(rec: dict) -> dict | None:
    """A cascade's user speech that the VAD had not ended when the run did (its last "vad" event a
    "start") and in which the STT heard words (a transcript with text since it began): the
    cascade takes a turn once the VAD ends the speech (cascade.end_of_turn_silence of silence), so
    it took none for it, whatever the STT sent as the session closed. Words a turn already took
    (a final that started one while the VAD still heard speech: the STT's own endpoint, its
    max_utterance cut) do not count. Then {"start": when it began, "heard": the words of the last
    of those transcripts}; else None (a tandem too)."""
    if rec.get("components", {}).get("mode") != "cascade":
        return None
    vad = [v for v in rec.get("vad", ()) if v.get("event") in ("start", "end")]
    if not vad or vad[-1]["event"] != "start":
        return None
    start = vad[-1]["t"]
    turns = [d["t"] for d in rec.get("other", ()) if turn_started(d) and d.get("t", -1) >= start]
    start_words = max([start, *turns])  # (words up to a turn's start: that turn took them)
    said = [t for t in rec.get("transcripts", ()) if t["t"] >= start and (not turns or t["t"] > start_words)
            and str(t.get("text") or "").strip()]
    return {"start": start, "heard": str(said[-1]["text"]).strip()} if said else None


# why speech_open's speech got no turn, and what would help (kame run's and kame client's warning)
SPEECH_NOT_ENDED = ("a turn ends after cascade.end_of_turn_silence of silence, as the VAD hears it (speech is what it "
                    "finds above cascade.vad_threshold): give a longer --max-tail, or a shorter end_of_turn_silence, "
                    "or check vad_threshold")


def final_speech_end(rec: dict, final: dict) -> float:
    """The end of the speech the recorded final transcript ``final`` belongs to, by the rule the
    cascade and hybrid routing start its turn with (kame.cascade.turns.SpeechRegions.end_of):
    the VAD's end of the speech region its last word is in (the one it overlaps most, else the
    nearest within WORD_SLACK_S), not the last end before the final came; the last word's end
    when no region is near it (or that region had not ended when the run did). The report knows
    every VAD event of the run; a final without words gets the latest region ended when it came
    (else when it came), as live."""
    words = tuple(Word(str(w.get("word", "")), w["start"], w["end"]) for w in final.get("words", ()))
    regions = SpeechRegions()
    regions.add(VADEvent(v["event"], v["t"], v.get("detected_at", v["t"])) for v in rec.get("vad", ())
                if v.get("event") in ("start", "end") and (words or v["t"] <= final["t"]))
    return regions.end_of(Transcript(words, True, final["t"]), None)


def words_not_heard(turn: dict) -> int:
    """The words of a reply (its "agent_turn" metadata: a cascade's, hybrid routing's) that a
    TTS would have spoken but nobody heard: its "reply" (all the LLM said) less its "text" (what
    was heard), both as the cascade's splitter sends them to the TTS (clean_for_speech: no
    markdown symbols, no URLs; was: counted as written, so a cut reply's URL was a word not heard)."""
    said = len(clean_for_speech(str(turn.get("text") or "")).split())
    return max(0, len(clean_for_speech(str(turn.get("reply") or "")).split()) - said)


def turn_started(d: dict) -> bool:
    """Metadata ``d`` starts a reply turn: a cascade's ("turn") or hybrid routing's in a tandem
    ("route" with route "structured": the turns it answers; a router runs only with hybrid
    routing on). The one rule `kame run`'s summary, its timeline plot and `kame client` use."""
    return d.get("type") == "turn" or (d.get("type") == "route" and d.get("route") == "structured")


def open_turns(metas) -> set:
    """The turns that started (turn_started) and have not ended (no "agent_turn" yet)."""
    metas = list(metas)
    ended = {d.get("turn") for d in metas if d.get("type") == "agent_turn"}
    return {d.get("turn") for d in metas if turn_started(d)} - ended


def user_words(rec: dict) -> list[dict]:
    """The user's words, with their times: the final transcripts', and the last partial's when the
    last utterance got no final."""
    finals = [t for t in rec["transcripts"] if t["final"]]
    if rec["transcripts"] and not rec["transcripts"][-1]["final"]:
        finals.append(rec["transcripts"][-1])  # an utterance that never got a final
    return [w for t in finals for w in t["words"]]


def answer_missing(rec: dict) -> dict | None:
    """A tandem whose back-end streamed nothing into the front-end's oracle in answer to the
    user's last word before the file ended: the front-end never got the answer to what was said
    last (the STT's final and the LLM's first token take seconds on a slow CPU; --tail too
    short). Only a prediction the oracle started once the STT had sent that word (transcribed_at)
    answers it: one started before, streaming after the word, answers earlier words. A turn hybrid
    routing answered is no oracle's (docs/cascade.md): its reply, heard, is the answer; still
    under way at the end, reply_cut_off says so. Then {"last_word_end", "stt_final_latency",
    "llm_ttft"} (the latest of each, None if none; the oracle's LLM, not a routed reply's) and
    "llm_empty": the oracle's predictions that ended with no text (its LLM answered with no text:
    EMPTY_ERROR's errors) since the STT sent that word (then the LLM, not --tail, is
    why), else None. Not for a cascade (``unanswered``) nor without an LLM or without words heard."""
    comps = rec.get("components", {})
    words = user_words(rec)
    if comps.get("mode") == "cascade" or comps.get("llm") in (None, "none") or not words:
        return None
    last = max(words, key=lambda w: w["end"])
    since = transcribed_at(rec, last)
    if _oracle_answered(rec, since) or _routed_answered(rec, since):
        return None

    def latest(name):  # (not hybrid routing's replies': they label their metrics mode "hybrid")
        vals = [m["value"] for m in rec["metrics"] if m.get("name") == name
                and (m.get("labels") or {}).get("mode") != "hybrid"]
        return vals[-1] if vals else None

    return {"last_word_end": last["end"], "stt_final_latency": latest("stt_final_latency"),
            "llm_ttft": latest("llm_ttft"), "llm_empty": empty_answers(rec, since)}


def empty_answers(rec: dict, since: float) -> int:
    """The oracle's predictions that ended with no text at ``since`` or later: the session's errors
    the producer reported them by (kame.runtime.backend.EMPTY_ERROR: "back-end llm gave the
    oracle no answer ...: LLM NAME answered with no text"; no "back-end llm failed": the LLM is
    not down for it)."""
    return sum(1 for e in rec.get("errors", ()) if e.get("t", -math.inf) >= since
               and str(e.get("message", "")).startswith(EMPTY_ERROR))


# A transcript word that ends no more than this after the start of the user's last word is the word
# before it (whisper's word times come in 10 ms steps, a word's end a step or two into the next word's)
WORD_OVERLAP_S = 0.02


def transcribed_at(rec: dict, word: dict) -> float:
    """When the STT first sent ``word`` (one of user_words): the first transcript, partial or
    final, with a word that ends more than WORD_OVERLAP_S after it began (a partial's times of a
    word differ from the final's, often by 0.1 s or more: its first try at the word, "boy" for
    "please.", may end soon after the final's start; was: any end after the start, so the word
    before it, its end a few ms over, counted as it and a prediction started before the STT sent
    the word answered it)."""
    return min((t["t"] for t in rec["transcripts"] for w in t.get("words", ())
                if w["end"] > word["start"] + WORD_OVERLAP_S), default=word["end"])


def _oracle_answered(rec: dict, since: float) -> bool:
    """An oracle prediction started at ``since`` or later streamed text into the front-end's
    oracle. When a prediction started: its "oracle_restart" metric (labelled with its id), else
    its "reset" event (which, reset_on_first_token, comes with its first token)."""
    started: dict = {}
    for m in rec["metrics"]:
        pid = (m.get("labels") or {}).get("prediction_id")
        if m.get("name") == "oracle_restart" and pid is not None:
            started.setdefault(pid, m["t"])
    pid = None
    for o in rec["oracle"]:  # (in the order emitted: an event without an id is its reset's prediction's)
        pid = o.get("prediction_id", pid)
        if o.get("event") == "reset":
            started.setdefault(pid, o.get("t", -math.inf))
        elif o.get("event") == "append" and o.get("text") and started.get(pid, -math.inf) >= since:
            return True
    return False


def _routed_answered(rec: dict, since: float) -> bool:
    """Hybrid routing took a final with the last word (a routed turn, turn_started, at ``since``
    or later) and owes the oracle nothing for it: its reply was heard (the turn's "agent_turn"
    text), is still under way (no "agent_turn" yet: reply_cut_off says so), or a barge-in cut it
    before its first word (interrupted, no text: the oracle waits for the user's next final,
    docs/cascade.md; was: "give a longer --tail", for a question nobody was to answer). A reply
    that failed or was empty, not cut, leaves the oracle its answer: not answered here."""
    other = rec.get("other", ())
    ended = {d.get("turn"): d for d in other if d.get("type") == "agent_turn"}
    for d in other:
        if turn_started(d) and d.get("t", -1) >= since:  # (a tandem: hybrid routing's)
            reply = ended.get(d.get("turn"))
            if reply is None or str(reply.get("text") or "").strip() or reply.get("interrupted"):
                return True
    return False


LINE_CHARS = 200  # the summary's printed oracle and agent lines show this much of their text


def shortened(text: str, where: str, limit: int = LINE_CHARS) -> str:
    """``text`` as the printed summary shows it: its repr, whole when it is ``limit`` characters
    or shorter, else cut at a word's end and followed by "..." and what was left out: "(+N words
    not shown: WHERE)" (``where``: where the whole text is), for an oracle's text (its
    predictions joined by " | ") "(+M predictions, +N words not shown: WHERE)", M those wholly
    left out. (Was: cut at ``limit`` mid-word, with no sign of it, so it read as complete.)"""
    if len(text) <= limit:
        return repr(text)
    cut = text.rfind(" ", 0, limit + 1)
    head = text[:cut if cut > 0 else limit].rstrip()
    if head.endswith(" |"):  # (cut just after a separator: that prediction is wholly left out)
        head = head[:-2].rstrip()
    rest = [w for w in text[len(head):].split() if w != "|"]
    if not rest:
        return repr(text)
    more = text.count(" | ") - head.count(" | ")
    return (f"{head!r}... (" + (f"+{more} prediction{'s' if more != 1 else ''}, " if more else "")
            + f"+{len(rest)} word{'s' if len(rest) != 1 else ''} not shown: {where})")


def backend_error(e: dict) -> bool:
    """Whether a session's error is its back-end's: the rule by which both `kame run`'s summary
    (its "errors" less its "frontend_failed_steps": all its errors are the agent's) and `kame
    client` (``e``: an error the server sent, {"code", "message", ...}) count them. An agent's
    error (kame serve's code "agent_error"; a kame run error has no code) that is no front-end
    step's failure (STEP_FAILED) nor kame serve's own (OPUS_FAILED); not a protocol error about
    the client's own messages (e.g. "bad_audio"), nor one the client made up ("unreadable_message")."""
    message = str(e.get("message", ""))
    return e.get("code", "agent_error") == "agent_error" and not message.startswith((STEP_FAILED, OPUS_FAILED))


def barged_in(n: int, where: str) -> str:
    """Why a cascade that heard the user said nothing when ``n`` barge-ins cut its replies before
    their first word (``where``: where its "barge_in" metadata is), alike in `kame run` and `kame client`."""
    return (f"a barge-in cut its {'reply' if n == 1 else f'{n} replies'} before the first word: the VAD heard the "
            f"user's voice over {'it' if n == 1 else 'them'} (cascade.barge_in_min_speech; see 'barge_in' in {where})")


def backend_failed(errors: int, where: str) -> str:
    """The cause of a warning when the back-end reported ``errors`` errors (``where``: where to
    read them), worded alike in `kame run`'s summary and `kame client`'s warnings."""
    return f"its back-end reported {errors} error(s): see {where}"


def likeliest_cause(otherwise: str, *, errors: int, where: str, fast: bool = False) -> str:
    """A warning's likeliest cause: the back-end's errors if it reported any (backend_failed),
    then --fast (``fast``: `kame run --fast`), else ``otherwise`` (e.g. a slow STT)."""
    return backend_failed(errors, where) if errors else FAST if fast else otherwise


def print_warnings(s: dict, out: Path) -> None:
    """The summary's warnings of what failed or is missing, each with its likeliest cause."""
    json_name = out.with_suffix(".json").name
    n_failed = failed_steps(s)
    if n_failed:  # (was: nothing said, and exit 0 whatever their share)
        print(f"warning   the front-end's step failed on {n_failed} of the {s['frames']} frames: those frames have "
              f"no agent audio in {out.name}; see 'errors' in {json_name} and the log")
    # (backend_error's rule: a kame run's errors are all the agent's, its failed steps no back-end's)
    errors = max(0, (s.get("errors") or 0) - (s.get("frontend_failed_steps") or 0))
    where = f"'errors' in {json_name}"
    failed = backend_failed(errors, where)

    def why(otherwise: str) -> str:  # a warning's likeliest cause: back-end errors, then --fast
        return likeliest_cause(otherwise, errors=errors, where=where,
                               fast=s.get("pacing") == "fast")

    def why_empty(detail: str = "") -> str:  # an LLM's empty answer is its own: --fast only if the STT heard little
        said = f"its LLM {s.get('llm')!r} {EMPTY_ANSWER}{detail}"
        if s.get("pacing") == "fast" and (s.get("unheard") or not str(s.get("heard") or s.get("heard_partial") or "").strip()):
            return f"{said} to the little its STT heard; {FAST}"
        return said + (" (not --fast: its STT heard the user)" if s.get("pacing") == "fast" else "") \
            + "; check that LLM's replies, or set another backend.llm"

    # what would have waited longer: the cascade waits for a final up to --max-tail while the STT
    # is at work on it (kame.runtime.filemode.reply_pending), else only --tail does
    longer = "--max-tail" if s.get("max_tail_reached") else "--tail"
    slow_stt = f"the STT is slow on this machine: give a longer {longer}, or see backend.nice"
    ended = f"{out.name} ended at {s['frames'] * FRAME_S:.2f} s"
    replies, late = s.get("replies") or {}, s.get("late_final")
    stopped = s.get("interrupted")  # (no advice for a run cut short: it did not run out of --tail)
    opened = None if stopped else s.get("speech_open")  # (its own warning, below: was "the STT is slow")
    if s.get("unanswered") and stopped and not replies.get("empty"):  # (was: "give a longer --max-tail")
        print(f"warning   the cascade heard the user but had not answered when the run was interrupted "
              f"({ended})" + (f"; {failed}" if errors else ""))
    elif s.get("unanswered") and (replies.get("empty") or not opened):  # (was: --fast blamed for an empty LLM)
        print(f"warning   the cascade heard the user but did not answer in {out.name}; "
              + (why_empty() if replies.get("empty") else
                 why(f"the STT's final transcript for the speech ending at {late['speech_end']:.2f} s came "
                     f"{late['latency']:.2f} s after it, too late for a reply before {ended}; {slow_stt}") if late
                 # (was: "give a longer --max-tail" for replies a barge-in cut before their first word)
                 else barged_in(replies["barged_in"], json_name) if replies.get("barged_in")
                 else why("give a longer --max-tail")))  # (was: --max-tail, for a final that came too late)
    elif replies.get("empty"):  # (was: nothing said of them)
        print(f"warning   {replies['empty']} of the agent's replies had no text: {why_empty()}")
    if opened:
        print(f"warning   the user's speech from {opened['start']:.2f} s had not ended by the VAD when {ended} (it "
              f"had heard {opened['heard']!r}), so the cascade took no turn for it"
              + (" and did not answer" if s.get("unanswered") else "") + f"; {SPEECH_NOT_ENDED}")
    behind = s.get("stt_behind")
    nofinal = s.get("final_missing")
    if nofinal:  # (was: nothing said; a tandem's answer_missing took a partial's last word for the end)
        print(f"warning   the STT's final transcript for the speech ending at {nofinal['speech_end']:.2f} s never "
              f"came within the run ({ended}"
              + (f"; it had heard {nofinal['partial']!r} of it" if nofinal.get("partial") else "") + "), so the "
              + ("cascade" if s.get("mode") == "cascade" else "back-end") + " could not answer it; "
              + ("the STT was behind (below)" if behind else why(slow_stt)))
    if replies.get("failed"):  # (was: "the agent's reply is cut off ... when the file ended")
        print(f"warning   {replies['failed']} of the agent's replies failed before all of it was spoken; {failed}")
    if behind:  # (was: only the warning below, which blamed the audio)
        said, late = [], behind["final_t"] is not None and behind["final_t"] - behind["speech_end"] >= STT_BEHIND_S
        if behind["dropped_s"]:
            said.append(f"never got {behind['dropped_s']:.1f} s of the user's audio (stt_dropped_s in {json_name}: "
                        f"dropped while it was at least 20 s behind real time, stalled or down)")
        if late:
            said.append(f"fell behind real time: its last final, at {behind['final_t']:.1f} s, was for the speech "
                        f"ending at {behind['speech_end']:.1f} s ({behind['final_t'] - behind['speech_end']:.1f} s late)")
        if behind["after"]:
            said.append(f"transcribed none of the {behind['after']} stretch(es) of speech "
                        + (f"after {behind['speech_end']:.1f} s" if behind["speech_end"] is not None else "at all"))
        print(f"warning   the STT {'; it '.join(said)}; "  # (--fast first: its virtual time outruns any STT)
              + (FAST if s.get("pacing") == "fast" else why("it is too slow for this machine: a faster backend.stt, "
                                                            "more CPU (see backend.nice), or a less loaded machine")))
    if s.get("unheard"):
        n, of = s["unheard"]
        print(f"warning   the STT transcribed nothing in {n} of the {of} stretches of speech ({MIN_WORD_SPEECH_S:g} s "
              f"or longer) the VAD found in {out.name}; "
              + ("the STT never got to them, or dropped them (above), which says nothing of the audio"
                 if behind and (behind["dropped_s"] or behind["after"] >= n) else
                 why("the STT heard no words there (too quiet, not speech it knows, or a language it does not)")))
    if s.get("answer_missing") and not nofinal:  # (no final: that is why, said above)
        miss, took = s["answer_missing"], []
        if miss.get("stt_final_latency") is not None:
            took.append(f"the STT's last final came {miss['stt_final_latency']:.2f} s after the speech")
        if miss.get("llm_ttft") is not None:
            took.append(f"the LLM's last first token {miss['llm_ttft']:.2f} s after its prompt")
        print(f"warning   the back-end's answer to the user's last words (ending at {miss['last_word_end']:.2f} s) "
              f"had not reached the front-end's oracle when {out.name} ended at {s['frames'] * FRAME_S:.2f} s"
              + (f" ({'; '.join(took)})" if took else "") + "; "
              # (was: "give a longer --tail" for an LLM that answered with no text)
              + (why_empty(f" ({miss['llm_empty']} prediction(s) since those words; see {where})")
                 if miss.get("llm_empty") else why("give a longer --tail")))
    if s.get("reply_cut_off") and stopped:  # (was: "give a longer --max-tail" after a Ctrl-C)
        print(f"warning   the agent's reply is cut off in {out.name}: it was still answering when the run was "
              f"interrupted" + (f"; {failed}" if errors else ""))
    elif s.get("reply_cut_off"):
        cause = failed if errors else f"give a longer {'--max-tail' if s['mode'] == 'cascade' else '--tail'}"
        print(f"warning   the agent's reply is cut off in {out.name}: it was still answering when the file "
              f"ended; {cause}")
