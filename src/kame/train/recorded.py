"""A conversation `kame run` recorded (OUT.wav + OUT.json) -> a training Dialogue (kame.train.data).

    d = from_kame_run("answer.json")               # its OUT.wav: answer.wav beside it
    write_dialogue("data/run-0001", d)

What `kame run` writes (kame.runtime.filemode) and how it maps onto the layout's one clock:

* the user (left channel) is on the file's clock: the stepper got input frame k (samples
  [k*1920, (k+1)*1920)) at step k, and ``user_words`` are in the file's seconds: kept as they are;
* the agent (right channel) lags: the front-end's output frame f comes out of step f + max_delay,
  delivered at the end of that step and placed in OUT.wav one frame after the input frame that
  caused it, so at frame f + max_delay + 1. ``agent_lag`` = max_delay + 1 frames (max_delay as the
  run recorded it in ``frontend_feed``) are cut from the right channel's start, putting the agent's
  frame f at frame f as the layout wants, and as many from the end of both channels (the agent's
  last frames were never recorded: silence made up there would be trained on as what it said);
  ``agent_text`` pieces (one per output frame, stamped when delivered) move back by as much and
  are joined into words (a piece starting with a space starts a word); words and oracle events
  past the new end are left out, words across it end there;
* each oracle event's ``frame`` is the step the run applied it before, as recorded; its ids are
  the back-end tokenizer's (the front-end's text vocabulary, kame's default tokenizer for random
  presets), recorded as the dialogue's tokenizer_sha256. The oracle tokens the run recorded as fed
  must be those the events give (kame.model.stepper.oracle_timeline): else a DataError.

An OUT.json of an older kame records neither: its events' frames are then estimated from their
time stamps (the session hands an event stamped t to the next step, floor(t / 80 ms); in rare
races it went one step earlier) and max_delay 1 is assumed (Moshi, KAME and kame's presets);
a UserWarning and the dialogue's ``source`` ("oracle_frames", "agent_lag_from") say so.

A cascade's recording is refused: its agent text is not timed to its speech.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from ..backend.options import is_finite_number, is_real_number
from ..backend.types import FRAME_S, FRAME_SIZE, SAMPLE_RATE
from .data import DataError, Dialogue, OracleEvent, Word, frame_of, is_int

DEFAULT_AGENT_LAG = 2  # 1 + the front-end's max delay (1 for Moshi, KAME and kame's presets)


def from_kame_run(out_json: str | Path, out_wav: str | Path | None = None, *, agent_lag: int | None = None,
                  tokenizer=None) -> Dialogue:
    """The Dialogue of a `kame run` (tandem mode): its OUT.wav (default: beside the JSON, the same
    name with .wav) with the agent channel moved back ``agent_lag`` frames (default: the run's
    recorded max_delay + 1; DEFAULT_AGENT_LAG for an older recording) and both channels ending
    as many frames earlier (no agent audio was recorded there), the user's words, the
    agent's words (from its text pieces), the oracle events at the frames they were fed.
    ``tokenizer``: the one the run's oracle ids came from (default: kame's default tokenizer, which
    the run must then report using)."""
    from ..audio import read_wav
    from ..errors import AudioFormatError

    out_json = Path(out_json)
    try:
        doc = json.loads(out_json.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{out_json}: cannot read `kame run`'s JSON: {exc}") from None
    if not isinstance(doc, dict) or "agent_text" not in doc or "user_words" not in doc:
        raise DataError(f"{out_json}: not what `kame run` writes (no user_words / agent_text)")
    comps = doc.get("components") or {}
    if comps.get("mode") == "cascade":
        raise DataError(f"{out_json}: a cascade's recording: its agent text is not timed to its speech (and it has "
                        f"no oracle); align the agent's words to its audio first and build the Dialogue yourself")
    feed = doc.get("frontend_feed") if isinstance(doc.get("frontend_feed"), dict) else {}
    max_delay = feed.get("max_delay")
    lag_from = "given" if agent_lag is not None else "recorded max_delay" if is_int(max_delay) else "default"
    if agent_lag is None:
        agent_lag = max_delay + 1 if is_int(max_delay) else DEFAULT_AGENT_LAG
    if not (is_int(agent_lag) and agent_lag >= 0):
        raise DataError(f"agent_lag must be an int >= 0 (frames), got {agent_lag!r}")
    agent_lag = int(agent_lag)  # (a numpy int: recorded in the dialogue's JSON source)
    if out_wav is None:  # kame run writes OUT.json beside OUT.wav
        out_wav = out_json.with_suffix(".wav")
    try:
        pcm, rate = read_wav(out_wav, None, mono=False)
    except AudioFormatError as exc:
        raise DataError(str(exc)) from None
    if rate != SAMPLE_RATE or pcm.shape[1] != 2:
        raise DataError(f"{out_wav}: {rate} Hz, {pcm.shape[1]} channel(s); `kame run` writes stereo {SAMPLE_RATE} Hz "
                        f"(user left, agent right): is it this run's OUT.wav?")
    recorded_s = doc.get("duration_s")  # (the frames played: OUT.wav holds as many, to the sample)
    if is_real_number(recorded_s) and abs(pcm.shape[0] / SAMPLE_RATE - recorded_s) > FRAME_S / 2:
        raise DataError(f"{out_wav} is {pcm.shape[0] / SAMPLE_RATE:.2f} s long, but {out_json} records a run of "
                        f"{recorded_s:.2f} s: the two files are from different runs (a `kame run` stopped between "
                        f"its writes?); run it again, or give the OUT.wav of that OUT.json")
    lag = agent_lag * FRAME_SIZE
    n = pcm.shape[0] - lag  # the agent's last frames were never recorded: none made up
    if n <= 0:
        raise DataError(f"{out_wav}: {pcm.shape[0]} samples, no more than the agent's lag ({agent_lag} frames = {lag} "
                        f"samples): the recording holds none of the agent's output")
    audio = np.ascontiguousarray(np.stack([pcm[:n, 0], pcm[lag:, 1]], axis=1), dtype=np.float32)
    duration = n / SAMPLE_RATE
    frames = -(-n // FRAME_SIZE)

    words = sorted(_user_words(_records(doc, "user_words", out_json), duration, out_json), key=lambda w: w.start)
    words += _agent_words(_records(doc, "agent_text", out_json), agent_lag, duration, out_json)

    if unheard := feed.get("unstepped_inputs"):
        raise DataError(f"{out_json}: a failed front-end step took input frame(s) {unheard[:5]} without stepping, so "
                        f"the front-end's steps after it heard the input one frame late: it cannot be converted exactly")
    events = _records(doc, "oracle", out_json) if "oracle" in doc else []
    recorded = bool(feed.get("oracle_frames")) and all("frame" in o for o in events)
    oracle = _oracle_events(events, frames, recorded, out_json)
    if recorded:
        _check_fed(oracle, feed, frames, out_json)
    guessed = (["its oracle events' frames (estimated from their time stamps)"] if events and not recorded else []) \
        + ([f"its front-end's max_delay (1 assumed: agent_lag {agent_lag})"] if lag_from == "default" else [])
    if guessed:  # (an OUT.json of an older kame)
        warnings.warn(f"{out_json} does not record {' nor '.join(guessed)}; a run of this kame records them "
                      f"exactly (docs/runtime.md, \"What the front-end was fed\")", UserWarning, stacklevel=2)
    failed = (doc.get("summary") or {}).get("frontend_failed_steps") or 0
    if failed:
        # (a recording without "lost_steps" cannot tell whether a failed step advanced the front-end)
        off = "" if "lost_steps" in feed else ", and the frames recorded after the first may be one step off"
        warnings.warn(f"{out_json}: the front-end's step failed on {failed} frame(s): they have no agent audio{off}",
                      UserWarning, stacklevel=2)

    sha = None
    if any(ev.ids for ev in oracle):
        if tokenizer is None:
            from ..backend.tokenizer import default_tokenizer, is_default_model

            used = str(comps.get("tokenizer", "default"))
            # (an older kame run named the shipped file by its path)
            if not (used.startswith("default") or is_default_model(used)):
                raise DataError(f"{out_json}: the run's oracle ids come from tokenizer {used!r}: pass it as "
                                f"tokenizer= (a kame.backend.tokenizer.TextTokenizer)")
            tokenizer = default_tokenizer()
        sha = tokenizer.sha256
    source = {"kind": "kame run", "json": str(out_json), "wav": str(out_wav), "agent_lag": agent_lag,
              "agent_lag_from": lag_from, "max_delay": max_delay,
              "oracle_frames": "recorded" if recorded else "estimated",
              "failed_steps": failed,
              "frontend": comps.get("frontend"), "frontend_random": bool(doc.get("frontend_random")),
              "codec": comps.get("codec"), "stt": comps.get("stt"), "llm": comps.get("llm")}
    return Dialogue(audio, words, oracle, sha, source).validate()


def _oracle_events(items, frames: int, recorded: bool, where: Path) -> list[OracleEvent]:
    """OUT.json's oracle events -> OracleEvents at the step each was applied before: its recorded
    ``frame`` (None: never fed), else estimated from its stamp. Events after the dialogue's end,
    and appends without ids (no call), are left out."""
    out, prev = [], 0
    for n, o in enumerate(items):
        if recorded:
            f = o["frame"]
            if f is None:
                continue  # came after the last step
            if not is_int(f) or f < prev:
                raise DataError(f"{where}: oracle event {n} has frame {f!r}: frames are ints >= 0 that do not "
                                f"decrease (is the JSON edited?)")
        else:
            f = max(prev, frame_of(_seconds(o.get("t"), f"oracle event {n}'s t", where)))
        if f >= frames:
            continue  # fed after the dialogue's end (the recording's, less the agent's lag)
        prev = f
        if o.get("event") == "reset":
            out.append(OracleEvent(f, "reset", prediction=o.get("prediction_id")))
        elif o.get("event") == "append" and o.get("token_ids"):
            ids = o["token_ids"]
            if not (isinstance(ids, list) and all(is_int(t) for t in ids)):
                raise DataError(f"{where}: oracle event {n} has token_ids {ids!r}, not a list of ints (is the JSON "
                                f"edited?)")
            out.append(OracleEvent(f, "append", [int(t) for t in ids], o.get("text")))
    return out


def _records(doc: dict, key: str, where: Path) -> list[dict]:
    """OUT.json's list ``key`` (user_words, agent_text, oracle): a DataError naming the file when it
    is not a list of JSON objects (a renamed or retyped field is not read as "none")."""
    items = doc[key]
    if not isinstance(items, list):
        raise DataError(f"{where}: {key} is a {type(items).__name__}, not the list `kame run` writes (is the JSON "
                        f"edited, or from another tool?)")
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise DataError(f"{where}: {key}[{i}] is {item!r}, not an object as `kame run` writes (is the JSON "
                            f"edited?)")
    return items


def _seconds(x, what: str, where: Path) -> float:
    """``x`` as a finite number of seconds, else a DataError naming the file and the field."""
    if is_finite_number(x):
        return float(x)
    raise DataError(f"{where}: {what} is {x!r}, not a number of seconds (is the JSON edited?)")


def _check_fed(oracle: list[OracleEvent], feed: dict, frames: int, where: Path) -> None:
    """DataError unless the oracle tokens the run recorded as fed (``feed["oracle_tokens"]``) are,
    frame by frame, those its events give by the feed's own rules (oracle_timeline). Not checked
    when the run did not record its front-end's ids, or the front-end has no oracle stream."""
    from ..model.stepper import oracle_timeline

    start, pad, card = (feed.get(k) for k in ("start_id", "pad_id", "text_card"))
    if not (all(is_int(x) for x in (start, pad, card)) and feed.get("oracle") is not False):
        return
    fold = [ev.timeline_event() if ev.event == "reset" else  # (ids the front-end could not hold: as it folds them)
            (ev.frame, "append", [t % card if not 0 <= t < card else t for t in ev.ids]) for ev in oracle]
    want = oracle_timeline(fold, frames, start_id=start, pad_id=pad, vocab=card + 1).tolist()
    got = [pad] * frames
    for f, t in feed.get("oracle_tokens") or []:
        if 0 <= f < frames:
            got[f] = t
    steps = min(frames, int(feed.get("steps") or 0))
    lost = set(feed.get("lost_steps") or ())  # steps that ran but failed: what they were fed was not delivered
    bad = next((f for f in range(steps) if got[f] != want[f] and f not in lost), None)
    if bad is not None:
        raise DataError(f"{where}: at frame {bad} the front-end was fed oracle token {got[bad]}, but the run's oracle "
                        f"events give {want[bad]}: its record does not hold together (an edited JSON, or an older "
                        f"kame's record shifted by a failed front-end step: see summary.frontend_failed_steps); it "
                        f"cannot be converted exactly")


def _user_words(items, duration: float, where: Path) -> list[Word]:
    """The user's words within [0, duration]: those starting at its end or later are left out;
    a DataError naming ``where`` (OUT.json) for a field of the wrong type."""
    out = []
    for i, w in enumerate(items):
        start, end = (_seconds(w.get(k), f"user_words[{i}].{k}", where) for k in ("start", "end"))
        word = w.get("word", "")
        if not isinstance(word, str):
            raise DataError(f"{where}: user_words[{i}].word is {word!r}, not a string (is the JSON edited?)")
        if start >= duration:
            continue
        for part in word.split():  # (an STT word is one; split any that is not)
            start = max(0.0, start)
            out.append(Word("user", part, start, min(max(start, end), duration)))
    return out


def _agent_words(pieces, lag: int, duration: float, where: Path) -> list[Word]:
    """The agent's text pieces ({"t", "text"}, one per output frame) -> words on the layout's
    clock: a word starts at its first piece's frame and ends with its last piece's frame (or the
    dialogue's end); one starting at the end or later is left out. A DataError naming ``where``
    (OUT.json) for a field of the wrong type."""
    words: list[list] = []  # [text, first frame, last frame]
    open_word = False  # the last piece ended inside a word
    for i, p in enumerate(pieces):
        text = p.get("text", "")
        if not isinstance(text, str):
            raise DataError(f"{where}: agent_text[{i}].text is {text!r}, not a string (is the JSON edited?)")
        f = frame_of(_seconds(p.get("t"), f"agent_text[{i}].t", where)) - lag
        if f < 0 or not text.strip():  # (a space ends a word; nothing is before the agent's frame 0)
            open_word = open_word and f >= 0 and not text
            continue
        parts = text.split()
        if open_word and not text[0].isspace():
            words[-1][0] += parts[0]
            words[-1][2] = f
        else:
            words.append([parts[0], f, f])
        words += [[w, f, f] for w in parts[1:]]
        open_word = not text[-1].isspace()
    return [Word("agent", w, a * FRAME_S, min((b + 1) * FRAME_S, duration)) for w, a, b in words
            if a * FRAME_S < duration]
