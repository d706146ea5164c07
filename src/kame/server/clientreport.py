"""What `kame client` prints once a session is over (kame.server.client.main, after writing its
files): the server's errors, a one-line summary, the warnings `kame run` gives for the same
session (the agent ran slower than real time, the server dropped input, no audio, the STT's
final never came, the user's speech never ended, the cascade did not answer, its reply cut off
by --max-tail) and the exit
status (EPILOG, the end of its --help, says what each line means); what its --json holds
(json_record).
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from ..backend.types import FRAME_S
from ..runtime.runreport import open_turns, turn_started
from ..runtime.metrics import SLOW_CAUSE, behind_real_time, behind_recently, late_share
from ..runtime.runreport import (SPEECH_NOT_ENDED, backend_error, barged_in, final_missing, likeliest_cause,
                                speech_open)
from ..runtime.runsummary import reply_outcomes, unanswered
from . import protocol as P

if TYPE_CHECKING:
    from .client import ChatResult

SHOWN_ERRORS = 5  # server errors printed by main (all are in --json)
TEXT_SHOWN = 200  # characters of the agent's text in main's summary (all of it is in --json)
SHUTDOWN_CLOSE = 1001  # (WebSocket "going away": kame serve's close as it shuts down, docs/protocol.md)

# `kame client --help`'s epilog: what the files hold, each line ``report`` prints, the exit status
EPILOG = """\
The agent's audio (-o), text, metadata and errors (--json) are written whenever a session took
place, also one that failed. Against a cascade whose reply is still under way (or still to
come: the user's speech ended and the STT's final has not come yet) when --tail ends, more
silence is streamed, up to --max-tail in all; the summary says how much ("tail extended").

stderr:
  server error: CODE: MESSAGE      the server's first %d errors (0x05); "(fatal)" when it closed
                                   the session with it; all of them are in --json (with the
                                   client's own non-fatal unreadable_message: a server message
                                   it could not read, skipped)
  warning: the server speaks ...   its protocol version (the handshake's) is not this client's:
                                   the session goes on, what the client does not know is
                                   skipped (docs/protocol.md, "Versions")
  warning: skipped N server ...    messages of a kind (first byte) this client does not know,
                                   each skipped (--json: skipped_kinds)
  warning: ignored ... metadata    metadata fields of another type than docs/protocol.md gives
                                   (a "dropped_input_s" that is no number): read as absent
  warning: the server dropped ...  the server dropped part of the input: it takes a client's
                                   audio at real time plus about 3 s and drops the rest undecoded
                                   (--fast, or audio a network stall held back and then sent at
                                   once), and the agent keeps about 1 s of backlog
                                   (runtime.max_input_backlog_s: a tandem slower than real time
                                   takes audio slower than it comes); not what a server's
                                   shutdown left unheard (close 1001: the summary says it)
  warning: the agent missed ...    more than 5 %% of the recent frames (~5 s; and at least 3) missed
                                   their 80 ms deadline (the server's "stats"): the agent ran slower than real
                                   time (the server's CPU is too slow for its model, or too busy)
  warning: ... --max-tail ...      the cascade was still answering when --max-tail ran out
  warning: the STT's final ...     the user's last speech got no final transcript (which starts a
                                   cascade's reply) within the session: the STT is slow, heard
                                   nothing, or failed (the back-end's errors are named then);
                                   "the cascade heard the user but did not answer": why
  warning: the user's speech ...   a cascade's VAD had not ended the user's last speech (words
                                   heard in it) when the session ended: no turn was taken for it
                                   (cascade.end_of_turn_silence, cascade.vad_threshold)
  interrupted ...                  Ctrl-C: the stream ended there, the session was closed and
                                   what came was written; a second Ctrl-C quits at once
  error: ...                       why the exit status is 1

exit status:
  0  the session ran and ended with a normal close (1000); non-fatal server errors and
     warnings are printed but do not change it
  1  bad arguments or files, cannot connect, upgrade refused (HTTP 401/503 ...), a fatal server
     error, or a close other than 1000 (e.g. 1001: the server stopped mid-upload)
  2  command-line syntax
  130  interrupted (Ctrl-C)
""" % SHOWN_ERRORS


def report(res: ChatResult, a: argparse.Namespace) -> int:
    """Print the session's errors, summary and warnings; main's exit status (see EPILOG)."""
    warn_unknown(res)
    for e in res.errors[:SHOWN_ERRORS]:
        print(f"server error{' (fatal)' if e.get('fatal') else ''}: {e.get('code')}: {e.get('message')}",
              file=sys.stderr)
    if len(res.errors) > SHOWN_ERRORS:
        print(f"server error: ... and {len(res.errors) - SHOWN_ERRORS} more"
              + (f" (all in {a.json})" if a.json else " (give --json to keep them all)"), file=sys.stderr)
    dropped, extended = res.dropped_input_s, res.tail_extended_s
    at_stop = dropped_at_shutdown(res)
    late, frames = res.missed_deadlines
    # the worst stretch of ~5 s behind real time (the server's rule over its recent frames, as its log
    # judges): a long session's totals can stay under the rule's 5 % while it fell behind for a while and
    # dropped input (was: the client then blamed the network)
    worst = behind_recently(res.stats_totals)
    behind = worst is not None or behind_real_time(late, frames)
    text = res.text if len(res.text) <= TEXT_SHOWN else res.text[:TEXT_SHOWN] + "..."
    rec = res.run_record()
    metas = res.read_metas  # (less the fields of a wrong type: warn_unknown)
    still = bool(open_turns(metas))  # (a turn without its agent_turn: the reply was under way at the end)
    turned = still or replied_last(metas)  # (else the final was awaited)
    print(f"audio {len(res.audio) / P.SAMPLE_RATE:.2f} s, text {text!r}, {len(res.metas)} metadata, "
          f"{len(res.errors)} errors, close {res.close_code}"
          + (f", tail extended {extended:.2f} s (" + ("a cascade reply was under way" if turned else
             "the user's speech had not ended, by the VAD" if speech_open(rec) else "the STT's "
             "final transcript, which starts the cascade's reply, was still to come") + ")" if extended else "")
          + (f", input dropped by the server {dropped:.2f} s" if dropped else "")
          + (f" ({at_stop:.2f} s of it unheard at its shutdown)" if at_stop else "")
          + (f", missed deadlines {late} of {frames} frames" if late else ""))
    if behind:  # (the wording `kame run` uses for a front-end slower than real time)
        # (a stretch no worse than the whole session is not named: with the final stats, 18 of 18
        # frames in all were "10 of 10 in 0.8 s at worst")
        at = (f"{late_share(*worst)} in {worst[1] * FRAME_S:.1f} s at worst ({late} of {frames} in all)"
              if worst and worst[0] * frames > late * worst[1] else late_share(late, frames))
        print(f"warning: the agent missed its 80 ms deadline on {at}: it ran slower than "
              f"real time, so its audio came late and stuttered; {SLOW_CAUSE} (kame serve's log says which)",
              file=sys.stderr)
    early = round(dropped - at_stop, 3)  # (what a shutdown left unheard: the summary names it, no warning)
    if early:
        why = ("--fast sent faster than real time; leave --fast out" if a.fast else
               "the agent ran slower than real time (see above)" if behind else
               "the audio reached it faster than real time at times (held back by the network, then sent at once)")
        print(f"warning: the server dropped {early:.2f} s of the input"
              + (f" (and {at_stop:.2f} s it still held when it shut down)" if at_stop else "")
              + f": it keeps only a short backlog and {why}", file=sys.stderr)
    told = not res.failure() and not res.interrupted and warn_unanswered(res, rec, a)  # (as `kame run` warns)
    if not len(res.audio) and not res.failure() and not res.interrupted and not told:
        why = (f"the session ended {a.tail:g} s after the input was sent (--tail): give the agent time to answer"
               if a.tail < 1 else "the agent sent none (its log may say why)")
        print(f"warning: no audio came from the agent; {why}", file=sys.stderr)
    if res.reply_cut_off and still:
        print(f"warning: the cascade was still answering when --max-tail ({max(a.tail, a.max_tail):g} s of "
              f"silence) ran out: the answer is cut off; give a longer --max-tail", file=sys.stderr)
    why = res.failure()
    if why:
        print(f"error: {why}", file=sys.stderr)
        return 1
    if res.interrupted:
        print(f"interrupted after streaming {res.sent_s:.2f} s (the input is {res.input_s:.2f} s); what came "
              f"is written" + (f" ({', '.join(f for f in (a.output, a.json) if f)})" if a.output or a.json else ""),
              file=sys.stderr)
        return 130
    return 0


def dropped_at_shutdown(res: ChatResult) -> float:
    """Of the input the server dropped, what its shutdown left unheard: on a close 1001 (the server
    shutting down), the final "stats"'s unstepped_at_close_s, the audio the session still buffered
    when it was closed (a shutdown closes it without stepping that; after END_INPUT the server
    steps it). Was: every drop since the last periodic stats, so a --fast client's drops were all
    said as the shutdown's, with no warning. 0.0 otherwise, and from a server whose final stats
    has no such field (an older one): no share is claimed for the shutdown."""
    if res.close_code != SHUTDOWN_CLOSE:
        return 0.0
    left = [m.get("unstepped_at_close_s") for m in res.read_metas if m.get("type") == "stats" and m.get("final") is True]
    left = [float(x) for x in left if isinstance(x, (int, float)) and not isinstance(x, bool) and x == x and x >= 0]
    return round(min(max(left, default=0.0), res.dropped_input_s), 3)


def json_record(res: ChatResult) -> dict:
    """The session as `kame client --json` writes it: the agent's text, the server's metadata and
    errors, how the session closed, and the client's own counts."""
    return {"text": res.text, "metas": res.metas, "errors": res.errors, "close_code": res.close_code,
            "close_reason": res.close_reason, "tail_extended_s": res.tail_extended_s,
            "reply_cut_off": res.reply_cut_off, "interrupted": res.interrupted,
            "sent_s": res.sent_s, "dropped_input_s": res.dropped_input_s,
            "missed_deadlines": res.missed_deadlines[0], "frames": res.missed_deadlines[1],
            "protocol": res.handshake[0] if res.handshake else None,
            "skipped_kinds": {f"0x{k:02x}": n for k, n in sorted(res.skipped_kinds.items())}}


def warn_unknown(res: ChatResult) -> None:
    """One warning each (not one a message) for what of the server's this client does not know:
    another protocol version (the handshake's), messages of a kind it does not know (skipped,
    by the client: was one "server error: unreadable_message" each), metadata fields of another
    type than the protocol's (read as absent)."""
    if res.handshake and res.handshake[0] != P.PROTOCOL_VERSION:
        theirs = res.handshake[0]
        what = ("newer than this client: upgrade kame here" if theirs > P.PROTOCOL_VERSION
                else "older than this client: use a kame client of the server's version")
        print(f"warning: the server speaks protocol version {theirs}, this client version {P.PROTOCOL_VERSION}: "
              f"the session goes on, and what this client does not know is skipped, but messages may be misread "
              f"(the server is {what} if the session misbehaves)", file=sys.stderr)
    if res.skipped_kinds:
        kinds = ", ".join(f"0x{k:02x}" + (f" x{n}" if len(res.skipped_kinds) > 1 else "")
                          for k, n in sorted(res.skipped_kinds.items()))
        n = sum(res.skipped_kinds.values())
        print(f"warning: skipped {n} server message{'s' * (n != 1)} of a type this client does not know ({kinds}): "
              f"a newer or another server's; the session went on", file=sys.stderr)
    bad = res.unreadable_fields
    if bad:
        print(f"warning: ignored {sum(bad.values())} metadata field(s) of another type than docs/protocol.md gives "
              f"({', '.join(sorted(bad))}): read as absent", file=sys.stderr)


def replied_last(metas) -> bool:
    """A reply to the user's last speech began: a "turn" (or a hybrid tandem's "route" to its
    structured reply, as open_turns counts it) since the last "vad" start (was: any turn of the
    session, one answered before the user spoke again too)."""
    start = max((d["t"] for d in metas if d.get("type") == "vad" and d.get("event") == "start"
                 and isinstance(d.get("t"), (int, float))), default=None)
    return any(turn_started(d) and (start is None or d.get("t", start) >= start) for d in metas)


def warn_unanswered(res: ChatResult, rec: dict, a: argparse.Namespace) -> bool:
    """Warns, as `kame run` does, when the STT's final transcript for the user's last speech never
    came (so no reply could start), the user's last speech had not ended by the VAD when the
    session did (a cascade: speech_open), or a cascade heard the user and said nothing; whether it did.
    The cause is worded as there (runreport.likeliest_cause): the back-end's errors, if any (was:
    a slow STT blamed for a failed one)."""
    nofinal = final_missing(rec)  # (kame.runtime.runreport)
    longer = "--max-tail" if res.reply_cut_off else "--tail"  # (what would have waited longer)
    slow_stt = f"give a longer {longer}, or see backend.nice"  # (as kame run's; was: no backend.nice for a late final)
    # the errors of the back-end's parts (runreport.backend_error: as kame run counts them): not a
    # protocol error about the client's own messages, nor the server's own, nor a front-end step's
    errors = sum(1 for e in res.errors if backend_error(e))
    # (main prints the first SHOWN_ERRORS: with more, the rest are only in --json)
    where = (f"'errors' in {a.json}" if a.json else "the server errors above" if len(res.errors) <= SHOWN_ERRORS
             else f"the server errors above (the first {SHOWN_ERRORS} of {len(res.errors)}; give --json to keep "
                  f"them all)")
    if nofinal:
        t0 = rec["components"].get("t0")  # (the server's info: the session's start on the clock of "t")
        at = f" ending {nofinal['speech_end'] - t0:.2f} s into the session" if isinstance(t0, (int, float)) else ""
        print(f"warning: the STT's final transcript for the user's speech{at} never came within the session"
              + (f" (it had heard {nofinal['partial']!r} of it)" if nofinal["partial"] else "") + ", so the "
              + ("cascade" if rec["components"].get("mode") == "cascade" else "back-end") + " could not answer it; "
              + likeliest_cause("the STT is slow on the server's machine"
                                + ("" if nofinal["partial"] else " (or heard no words in it)")
                                + f": {slow_stt}", errors=errors, where=where),
              file=sys.stderr)
        return True
    opened = speech_open(rec)  # (was: nothing said, exit 0, an empty answer)
    if opened:
        t0 = rec["components"].get("t0")
        at = f" from {max(0.0, opened['start'] - t0):.2f} s into the session" if isinstance(t0, (int, float)) else ""
        print(f"warning: the user's speech{at} had not ended by the VAD when the session ended (it had heard "
              f"{opened['heard']!r}), so the cascade took no turn for it; {SPEECH_NOT_ENDED}", file=sys.stderr)
        return True
    if not unanswered(rec) or (res.reply_cut_off and open_turns(res.metas)):  # (cut off: said by report)
        return False
    outcomes, ended = reply_outcomes(rec), any(d.get("type") == "agent_turn" for d in rec["other"])  # (as kame run)
    why = ("its reply failed (the server's log says why)" if outcomes["failed"] else
           # (was: "its LLM answered with no text" for a reply a barge-in cut before its first word)
           barged_in(outcomes["barged_in"], a.json or "the session's metadata (--json keeps it)")
           if outcomes["barged_in"] else
           "its LLM answered with no text" if ended else
           likeliest_cause(f"the STT's final transcript came too late for a reply before the session ended: "
                           f"{slow_stt}", errors=errors, where=where))
    print(f"warning: the cascade heard the user but did not answer; {why}", file=sys.stderr)
    return True
