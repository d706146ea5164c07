"""A conversation `kame run` recorded (OUT.wav + OUT.json) -> a training Dialogue (kame.train.data).

    d = from_kame_run("answer.json")               # its OUT.wav: answer.wav beside it
    write_dialogue("data/run-0001", d)

What `kame run` writes (kame.runtime.filemode) and how it maps onto the layout's one clock:

* the user (left channel) is on the file's clock: the stepper got input frame k (samples
  [k*1920, (k+1)*1920)) at step k, and ``user_words`` are in the file's seconds: kept as they are;
* the agent (right channel) lags: the front-end's output frame f comes out of step f + max_delay,
  delivered at the end of that step and placed in OUT.wav one frame after the input frame that
  caused it, so at frame f + max_delay + 1. ``agent_lag`` (default 2: Moshi, KAME and kame's presets
  have max_delay 1) frames are cut from the right channel's start (and silence added at its end),
  putting the agent's frame f at frame f as the layout wants; ``agent_text`` pieces (one per output
  frame, stamped when delivered) move back by as much and are joined into words (a piece starting
  with a space starts a word);
* oracle events are stamped when the back-end sent them; the session hands them to the next step,
  so an event stamped t goes before step floor(t / 80 ms). (OUT.json does not record the step
  itself: in rare races the event went one step earlier.) Their ids are the back-end tokenizer's
  (the front-end's text vocabulary, kame's default tokenizer for random presets), recorded as the
  dialogue's tokenizer_sha256.

A cascade's recording is refused: its agent text is not timed to its speech.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .data import FRAME_SIZE, SAMPLE_RATE, DataError, Dialogue, OracleEvent, Word, frame_of

FRAME_S = FRAME_SIZE / SAMPLE_RATE
DEFAULT_AGENT_LAG = 2  # 1 + the front-end's max delay (1 for Moshi, KAME and kame's presets)


def from_kame_run(out_json: str | Path, out_wav: str | Path | None = None, *, agent_lag: int = DEFAULT_AGENT_LAG,
                  tokenizer=None) -> Dialogue:
    """The Dialogue of a `kame run` (tandem mode): its OUT.wav (default: beside the JSON, the same
    name with .wav) with the agent channel moved back ``agent_lag`` frames, the user's
    words, the agent's words (from its text pieces), the oracle events at the frames they were fed.
    ``tokenizer``: the one the run's oracle ids came from (default: kame's default tokenizer, which
    the run must then report using)."""
    from ..audio import read_wav
    from ..errors import AudioFormatError
    from .examples import tokenizer_sha256

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
    if not (isinstance(agent_lag, int) and agent_lag >= 0):
        raise DataError(f"agent_lag must be an int >= 0 (frames), got {agent_lag!r}")
    if out_wav is None:  # kame run writes OUT.json beside OUT.wav
        out_wav = out_json.with_suffix(".wav")
    try:
        pcm, rate = read_wav(out_wav, None, mono=False)
    except AudioFormatError as exc:
        raise DataError(str(exc)) from None
    if rate != SAMPLE_RATE or pcm.shape[1] != 2:
        raise DataError(f"{out_wav}: {rate} Hz, {pcm.shape[1]} channel(s); `kame run` writes stereo {SAMPLE_RATE} Hz "
                        f"(user left, agent right): is it this run's OUT.wav?")
    n, lag = pcm.shape[0], agent_lag * FRAME_SIZE
    audio = np.zeros((n, 2), np.float32)
    audio[:, 0] = pcm[:, 0]
    audio[: max(0, n - lag), 1] = pcm[lag:, 1]
    duration = n / SAMPLE_RATE
    frames = -(-n // FRAME_SIZE)

    words = sorted(_user_words(doc["user_words"], duration), key=lambda w: w.start)
    words += _agent_words(doc["agent_text"], agent_lag, duration)

    oracle, prev = [], 0
    for o in doc.get("oracle", []):
        f = max(prev, frame_of(float(o["t"])))
        if f >= frames:
            break  # sent after the recording's end: never fed
        prev = f
        if o.get("event") == "reset":
            oracle.append(OracleEvent(f, "reset", prediction=o.get("prediction_id")))
        elif o.get("event") == "append" and o.get("token_ids"):
            oracle.append(OracleEvent(f, "append", [int(t) for t in o["token_ids"]], o.get("text")))

    sha = None
    if any(ev.ids for ev in oracle):
        if tokenizer is None:
            used = str(comps.get("tokenizer", "default"))
            if not used.startswith("default"):
                raise DataError(f"{out_json}: the run's oracle ids come from tokenizer {used!r}: pass it as "
                                f"tokenizer= (a kame.backend.tokenizer.TextTokenizer)")
            from ..backend.tokenizer import default_tokenizer

            tokenizer = default_tokenizer()
        sha = tokenizer_sha256(tokenizer)
    source = {"kind": "kame run", "json": str(out_json), "wav": str(out_wav), "agent_lag": agent_lag,
              "frontend": comps.get("frontend"), "frontend_random": bool(doc.get("frontend_random")),
              "codec": comps.get("codec"), "stt": comps.get("stt"), "llm": comps.get("llm")}
    return Dialogue(audio, words, oracle, sha, source).validate()


def _user_words(items, duration: float) -> list[Word]:
    out = []
    for w in items:
        for part in str(w.get("word", "")).split():  # (an STT word is one; split any that is not)
            start = min(max(0.0, float(w["start"])), duration)
            out.append(Word("user", part, start, min(max(start, float(w["end"])), duration)))
    return out


def _agent_words(pieces, lag: int, duration: float) -> list[Word]:
    """The agent's text pieces ({"t", "text"}, one per output frame) -> words on the layout's
    clock: a word starts at its first piece's frame and ends with its last piece's frame."""
    words: list[list] = []  # [text, first frame, last frame]
    open_word = False  # the last piece ended inside a word
    for p in pieces:
        text = str(p.get("text", ""))
        f = frame_of(float(p["t"])) - lag
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
    return [Word("agent", w, min(a * FRAME_S, duration), min((b + 1) * FRAME_S, duration)) for w, a, b in words]
