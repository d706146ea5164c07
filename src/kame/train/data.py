"""The on-disk layout of training dialogues (docs/data.md): one folder per dialogue, and an
optional cache of the dialogue's codec codes (a JSONL manifest over many: kame.train.manifest).

    DIALOGUE/audio.wav      stereo 24 kHz: user left, agent right (as `kame run` writes OUT.wav)
    DIALOGUE/dialogue.json  words of both speakers with times, the oracle events, provenance
    DIALOGUE/codes.npz      optional: the codec's codes of both channels, with the codec's
                            fingerprint and the audio's sha256 (kame.train.codes; stale: an error)

    d = Dialogue(audio, words=[Word("user", "hi", 0.1, 0.3), ...], oracle=[OracleEvent(5, "reset", hint=0), ...])
    write_dialogue("data/d0001", d)
    d = read_dialogue("data/d0001")          # DataError saying what is wrong (rate, mono, words, ...)

Both channels are on one 80 ms clock: frame f of either is samples [f*1920, (f+1)*1920), and the
agent's frame f is the front-end's output frame f (what it says at step f, having heard the user's
frames up to f). Oracle events are at frames of that clock (an event at frame t is applied before
step t, as kame.model.stepper.oracle_timeline takes them). kame.train.examples turns a dialogue into
LMModel.forward's input; kame.train.recorded makes one from what `kame run` wrote.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..backend.options import is_finite_number
from ..backend.types import FRAME_SIZE, SAMPLE_RATE  # (kame's audio: 24 kHz, 80 ms frames)
from ..errors import KameError
from ..paths import file_sha256, write_replacing

FRAME_RATE = SAMPLE_RATE / FRAME_SIZE  # 12.5 Hz
FORMAT, VERSION = "kame-dialogue", 1
AUDIO, META, CODES = "audio.wav", "dialogue.json", "codes.npz"
DIALOGUE_FILES = (AUDIO, META, CODES)  # what kame writes into a dialogue folder
SPEAKERS = ("user", "agent")  # audio channels 0 (left) and 1 (right)
EVENTS = ("reset", "append")
TIME_SLACK = 1e-6  # seconds a word may end past the audio (float rounding of a writer)
DURATION_SLACK = 0.01  # seconds dialogue.json's duration_s may differ from samples / 24000 (rounded to 0.01 s)
META_KEYS = ("sample_rate", "samples", "frames", "duration_s")  # dialogue.json's numbers (all required)
WORD_KEYS = ("speaker", "word", "start", "end")


class DataError(KameError, ValueError):
    """A training dialogue, manifest or codes cache that is malformed or stale (says what to do)."""


def frame_of(seconds: float) -> int:
    """The 80 ms frame holding time ``seconds`` (a word starting at 0.24 s is in frame 3; the
    small slack keeps 0.24 * 12.5 = 2.9999... in frame 3)."""
    return math.floor(seconds * FRAME_RATE + 1e-6)


@dataclass
class Word:
    speaker: str  # "user" | "agent"
    word: str  # one word, no whitespace (punctuation attached, as an aligner or an STT gives it)
    start: float  # seconds from the dialogue's start
    end: float

    def to_json(self) -> dict:
        return {"speaker": self.speaker, "word": self.word, "start": float(self.start), "end": float(self.end)}


@dataclass
class OracleEvent:
    """One back-end call into the front-end's oracle feed, applied before step ``frame``.
    reset: a new prediction starts (its start id is fed at this frame); ``prediction`` its id,
    ``hint`` the simulated oracle's hint level (0 = no hint; higher = more of the reference reply
    shown; None = a real back-end), ``use_hint`` whether the prediction is the true reply itself
    (True: the training augmentation never skips it, as KAME's data protects each turn's last
    event; every `kame data synth` mode marks the true reply so. False: a prediction, an LLM's or
    a drawn one; None: not said). append: the prediction's
    next token ``ids`` (one per frame after the earlier ones) and, optionally, their ``text``
    (kame.train.examples.retokenize_oracle re-encodes it for another tokenizer)."""

    frame: int
    event: str  # "reset" | "append"
    ids: list[int] = field(default_factory=list)
    text: str | None = None
    prediction: int | None = None
    hint: int | None = None
    use_hint: bool | None = None

    def timeline_event(self) -> tuple:
        """The event as kame.model.stepper.oracle_timeline takes it."""
        return (self.frame, "reset") if self.event == "reset" else (self.frame, "append", list(self.ids))

    def to_json(self) -> dict:
        d: dict[str, Any] = {"frame": int(self.frame), "event": self.event}
        if self.event == "append":
            d["ids"] = [int(t) for t in self.ids]  # (numpy ints too)
            if self.text is not None:
                d["text"] = self.text
        else:
            for key in ("prediction", "hint"):
                if getattr(self, key) is not None:
                    d[key] = int(getattr(self, key))
            if self.use_hint is not None:
                d["use_hint"] = bool(self.use_hint)
        return d


@dataclass
class Dialogue:
    """One training dialogue. ``audio`` [N, 2] float32 at 24 kHz: column 0 the user, 1 the agent.
    ``sample_rate``: the audio's rate, checked (a 16 kHz array must be resampled, not relabelled)."""

    audio: np.ndarray
    words: list[Word] = field(default_factory=list)
    oracle: list[OracleEvent] = field(default_factory=list)
    tokenizer_sha256: str | None = None  # the tokenizer of the oracle's ids (None: no ids)
    source: dict = field(default_factory=dict)  # provenance, free-form (QA item, kame run, ...)
    folder: Path | None = None  # where it was read from / written to (its codes cache is there)
    sample_rate: int = SAMPLE_RATE  # must be SAMPLE_RATE: say it, so audio at another rate is caught
    # checks done, remembered so training does them once per dialogue (not fields: replace() and == skip them)
    _valid: bool = field(default=False, init=False, repr=False, compare=False)  # validated since a field was set
    _audio_sha256: tuple | None = field(default=None, init=False, repr=False, compare=False)  # (file key, sha256)

    def __setattr__(self, name: str, value) -> None:
        if not name.startswith("_"):  # a field set anew: validate it again before it is used
            object.__setattr__(self, "_valid", False)
        object.__setattr__(self, name, value)

    @property
    def samples(self) -> int:
        return int(self.audio.shape[0])

    @property
    def frames(self) -> int:
        """80 ms frames: the last one partial (the codec pads it with silence)."""
        return -(-self.samples // FRAME_SIZE)

    @property
    def duration_s(self) -> float:
        return self.samples / SAMPLE_RATE

    def words_of(self, speaker: str) -> list[Word]:
        return [w for w in self.words if w.speaker == speaker]

    def timeline_events(self) -> list[tuple]:
        return [ev.timeline_event() for ev in self.oracle]

    def validate(self) -> "Dialogue":
        """``validate_dialogue``, and forget the remembered sha256 of audio.wav (``audio_sha256``
        hashes it again): call it after changing the dialogue or its audio.wav in place."""
        object.__setattr__(self, "_audio_sha256", None)  # (a same-size rewrite within one tick keeps the file's key)
        validate_dialogue(self)
        return self

    def ensure_valid(self, where: str = "dialogue") -> "Dialogue":
        """``validate_dialogue``, unless it passed since a field was last set (read_dialogue,
        write_dialogue and validate do it): training checks a dialogue once, not every epoch. A
        change made inside a field (``d.words.append``, ``d.audio[i] = ...``) is not seen: call
        ``validate()`` after one."""
        if not self._valid:
            validate_dialogue(self, where)
        return self

    def audio_sha256(self) -> str:
        """The sha256 of FOLDER/audio.wav, hashed once per version of the file: remembered with
        the file's inode, size and times, so a file changed since is hashed again (one rewritten
        in place at the same size within one tick of the filesystem's clock is not: ``validate()``
        forgets it)."""
        if self.folder is None:
            raise DataError("the dialogue has no folder, so no audio.wav (read_dialogue or write_dialogue it first)")
        path = self.folder / AUDIO
        st = path.stat()  # (before hashing: a change made while hashing shows at the next call)
        key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if self._audio_sha256 is None or self._audio_sha256[0] != key:
            self._audio_sha256 = (key, file_sha256(path))
        return self._audio_sha256[1]


# ---------------------------------------------------------------------------------------------
# validation


def validate_dialogue(d: Dialogue, where: str = "dialogue") -> None:
    """DataError unless ``d`` keeps the layout's rules: audio [N, 2] finite float in [-1, 1] at
    24 kHz (``sample_rate``); words of "user"/"agent", no whitespace inside, 0 <= start <= end <= duration, each speaker's
    sorted by start; oracle events at frames in [0, frames), not decreasing, appends with ids
    >= 0 (or text; an empty append is no call) and a tokenizer_sha256 saying whose ids they are;
    hint and prediction on resets only."""
    check_sample_rate(d.sample_rate, where)
    a = d.audio
    if not isinstance(a, np.ndarray) or a.ndim != 2 or a.shape[1] != 2:
        shape = getattr(a, "shape", type(a).__name__)
        hint = " (mono: a dialogue needs both speakers, user left, agent right)" if getattr(a, "ndim", 0) == 1 or (
            getattr(a, "ndim", 0) == 2 and a.shape[1] == 1) else ""
        raise DataError(f"{where}: audio must be stereo samples [N, 2] (user, agent), got {shape}{hint}")
    if a.shape[0] == 0:
        raise DataError(f"{where}: audio holds no samples")
    if not np.issubdtype(a.dtype, np.floating) or not np.isfinite(a).all():
        raise DataError(f"{where}: audio must be finite float samples in [-1, 1], got {a.dtype}"
                        + ("" if np.issubdtype(a.dtype, np.floating) else " (int16? divide by 32768)"))
    peak = float(np.abs(a).max())
    if peak > 1.0:  # a 16-bit wav would clip it: the stored audio would not be this one
        raise DataError(f"{where}: audio peaks at {peak:g}, above 1.0 (full scale): 16-bit audio.wav would clip it; "
                        f"scale it down (e.g. audio * 0.9 / abs(audio).max())")
    duration = d.duration_s
    last: dict[str, float] = {}
    for i, w in enumerate(d.words):
        what = f"{where}: word {i}"
        if not isinstance(w, Word):
            raise DataError(f"{what}: expected a Word, got {type(w).__name__}")
        if w.speaker not in SPEAKERS:
            raise DataError(f"{what} ({w.word!r}): speaker {w.speaker!r} is not one of {', '.join(SPEAKERS)}")
        if not isinstance(w.word, str):
            raise DataError(f"{what}: word must be a string, got {w.word!r}")
        if not w.word or any(c.isspace() for c in w.word):
            raise DataError(f"{what}: {w.word!r} must be one word, non-empty, without whitespace (split it)")
        times = (w.start, w.end)
        if not all(is_finite_number(x) for x in times):
            raise DataError(f"{what} ({w.word!r}): start and end must be finite numbers of seconds, got {times}")
        if not 0 <= w.start <= w.end <= duration + TIME_SLACK:
            raise DataError(f"{what} ({w.word!r}): times {w.start:g}-{w.end:g} s outside the audio [0, "
                            f"{duration:g}] s, or end before start")
        if w.start < last.get(w.speaker, 0.0):
            raise DataError(f"{what} ({w.word!r}): starts at {w.start:g} s, before the {w.speaker}'s previous word "
                            f"({last[w.speaker]:g} s): sort each speaker's words by start")
        last[w.speaker] = w.start
    prev, has_ids = 0, False
    for i, ev in enumerate(d.oracle):
        what = f"{where}: oracle event {i}"
        if not isinstance(ev, OracleEvent):
            raise DataError(f"{what}: expected an OracleEvent, got {type(ev).__name__}")
        if ev.event not in EVENTS:
            raise DataError(f"{what}: event {ev.event!r} is not one of {', '.join(EVENTS)}")
        if not is_int(ev.frame):
            raise DataError(f"{what}: frame must be an int (the index of an 80 ms frame), got {ev.frame!r}")
        if not 0 <= ev.frame < d.frames:
            raise DataError(f"{what}: frame {ev.frame!r} outside the dialogue's frames [0, {d.frames})")
        if ev.frame < prev:
            raise DataError(f"{what}: frame {ev.frame} comes after an event at frame {prev}: give the events in "
                            f"the order the feed got them (frames not decreasing)")
        prev = ev.frame
        if ev.event == "append":
            if not isinstance(ev.ids, (list, tuple)) or not all(is_int(t) and t >= 0 for t in ev.ids):
                raise DataError(f"{what}: ids must be a list of token ids >= 0, got {ev.ids!r}")
            if ev.text is not None and not isinstance(ev.text, str):
                raise DataError(f"{what}: text must be a string, got {ev.text!r}")
            for key in ("prediction", "hint", "use_hint"):
                if getattr(ev, key) is not None:
                    raise DataError(f"{what}: an append with {key}={getattr(ev, key)!r}: hint/prediction/use_hint "
                                    f"belong on the reset that starts the prediction (an append's would be lost on "
                                    f"write)")
            if not ev.ids and ev.text is None:
                raise DataError(f"{what}: an append with neither ids nor text: leave it out (an empty append is no "
                                f"call, as OracleFeed.append)")
            has_ids = has_ids or bool(ev.ids)
        else:
            if ev.ids or ev.text is not None:
                raise DataError(f"{what}: a reset carries no ids or text (they go in the appends after it)")
            for key in ("prediction", "hint"):
                v = getattr(ev, key)
                if v is not None and not (is_int(v) and v >= 0):
                    raise DataError(f"{what}: {key} must be an int >= 0 or null, got {v!r}")
            if ev.use_hint is not None and not isinstance(ev.use_hint, bool):
                raise DataError(f"{what}: use_hint must be true, false or null, got {ev.use_hint!r}")
    sha = d.tokenizer_sha256
    if sha is not None and not (isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)):
        raise DataError(f"{where}: tokenizer_sha256 {sha!r} is not a sha256 (64 lowercase hex digits)")
    if has_ids and sha is None:
        raise DataError(f"{where}: the oracle has token ids but no tokenizer_sha256 says whose ids they are "
                        f"(set it to the sha256 of the tokenizer that made them: tokenizer.sha256)")
    if not isinstance(d.source, dict):
        raise DataError(f"{where}: source must be an object, got {type(d.source).__name__}")
    d._valid = True  # (Dialogue.ensure_valid skips it until a field is set again)


def check_sample_rate(rate, where: str = "dialogue") -> None:
    if rate != SAMPLE_RATE or isinstance(rate, bool):
        fix = (f"resample it (kame.audio.resample(audio, {rate}, {SAMPLE_RATE}))" if is_int(rate) and rate > 0
               else "give the audio's rate in Hz")
        raise DataError(f"{where}: sample_rate {rate!r}, a dialogue's audio is {SAMPLE_RATE} Hz (kame's codecs): {fix}")


def is_int(x) -> bool:
    """An int, numpy's too (ids and frames often come from arrays), but not a bool."""
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


# ---------------------------------------------------------------------------------------------
# writing and reading


def write_dialogue(folder: str | Path, d: Dialogue, *, overwrite: bool = False,
                   sample_rate: int | None = None) -> Path:
    """Write ``d`` as FOLDER/audio.wav + FOLDER/dialogue.json (validated first: nothing is written
    for a bad dialogue; ``sample_rate``, default ``d.sample_rate``, must be 24 kHz). An existing dialogue is replaced only with ``overwrite`` (its codes cache
    is then removed: it was the old audio's). Sets ``d.folder``, and ``d.audio`` to the samples as
    stored (16-bit), so codes made from ``d`` now are those a reader's would be."""
    from ..audio import read_wav, write_wav

    folder = Path(folder)
    if sample_rate is not None:
        check_sample_rate(sample_rate, str(folder))
    validate_dialogue(d, str(folder))
    if (folder / META).exists() and not overwrite:
        raise DataError(f"{folder} already holds a dialogue; pass overwrite=True to replace it")
    folder.mkdir(parents=True, exist_ok=True)
    if (folder / CODES).exists():
        (folder / CODES).unlink()
    write_wav(folder / AUDIO, np.asarray(d.audio, np.float32), SAMPLE_RATE)  # 16-bit PCM
    d.audio = read_wav(folder / AUDIO, None, mono=False)[0]  # what is stored (16-bit), as a reader gets it
    _write_meta(folder, d)
    d.folder = folder
    d._valid = True  # (validated above; the stored samples keep its rules: 16-bit, in [-1, 1], as many)
    return folder


def write_meta(d: Dialogue) -> Path:
    """Rewrite only the dialogue.json of ``d`` (read from its folder: ``read_dialogue``, ``audio=False``
    is enough), validated first: its audio.wav and codes.npz stay as they are (new oracle events or
    words for the same audio; ``kame data oracle``). The samples and frames must be the folder's."""
    if d.folder is None:
        raise DataError("write_meta: the dialogue has no folder (read_dialogue it first)")
    folder = Path(d.folder)
    validate_dialogue(d, str(folder))
    stored = _read_json(folder / META)[0]
    if stored.get("samples") != d.samples:
        raise DataError(f"{folder}: the dialogue has {d.samples} samples, its {AUDIO} {stored.get('samples')}: "
                        f"write_meta keeps the audio, write_dialogue(..., overwrite=True) replaces it")
    _write_meta(folder, d)
    return folder


def _write_meta(folder: Path, d: Dialogue) -> None:
    doc = {"format": FORMAT, "version": VERSION, "sample_rate": SAMPLE_RATE, "samples": d.samples,
           "frames": d.frames, "duration_s": d.duration_s, "tokenizer_sha256": d.tokenizer_sha256,
           "words": [w.to_json() for w in d.words], "oracle": [ev.to_json() for ev in d.oracle],
           "source": d.source}
    _write_text(folder / META, json.dumps(doc, indent=1, default=str))


def read_dialogue(folder: str | Path, *, audio: bool = True) -> Dialogue:
    """Read and validate FOLDER (a DataError naming the file and what is wrong). ``audio=False``
    checks the wav's header only (rate, channels, length) and leaves ``audio`` all zeros: for
    manifests and statistics."""
    return read_dialogue_and_sha256(folder, audio)[0]


def read_dialogue_and_sha256(folder: str | Path, audio: bool) -> tuple[Dialogue, str]:
    """read_dialogue's work, and the sha256 of the dialogue.json bytes it parsed (one read: the
    manifest's hash is of what was read, not of a file that may have changed since)."""
    import hashlib

    import soundfile as sf

    from ..audio import check_wav_length, read_wav
    from ..errors import AudioFormatError

    folder = Path(folder)
    meta_path, wav = folder / META, folder / AUDIO
    if not meta_path.is_file():
        raise DataError(f"{folder}: no {META} (a dialogue folder holds {AUDIO} and {META}; see docs/data.md)")
    doc, raw = _read_json(meta_path)
    check_version(doc, meta_path)
    _check_keys(doc, meta_path)
    if not wav.is_file():  # (was: libsndfile's "System error.")
        raise DataError(f"{folder}: no {AUDIO} (a dialogue folder holds {AUDIO} and {META}; see docs/data.md)")
    try:  # a cut file is said to be cut (else: "N samples, dialogue.json says M" below, or a wrong blame)
        check_wav_length(wav)
    except AudioFormatError as exc:
        raise DataError(str(exc)) from None
    try:
        info = sf.info(str(wav))
    except Exception as exc:  # missing or unreadable (soundfile's own error types)
        raise DataError(f"{wav}: cannot read the dialogue's audio: {exc}") from None
    if info.samplerate != SAMPLE_RATE:
        raise DataError(f"{wav}: {info.samplerate} Hz, a dialogue's audio is {SAMPLE_RATE} Hz (kame's codecs): "
                        f"resample it (kame.audio.resample) and write it again")
    if info.channels != 2:
        raise DataError(f"{wav}: {info.channels} channel(s), a dialogue's audio is stereo: user left, agent right")
    if info.frames == 0:  # (read with audio=False too: validate_dialogue would blame dialogue.json)
        raise DataError(f"{wav}: holds no samples (a dialogue's audio is stereo {SAMPLE_RATE} Hz samples)")
    if info.frames != doc["samples"]:
        raise DataError(f"{wav}: {info.frames} samples, {META} says {doc['samples']}: the files do not belong "
                        f"together (write the dialogue again; if this {AUDIO} is the right one, set samples to its)")
    if audio:
        try:
            pcm, _ = read_wav(wav, None, mono=False)
        except AudioFormatError as exc:
            raise DataError(str(exc)) from None
        # read_wav refused NaN/inf and samples beyond MAX_PEAK: left are a float file's samples over
        # full scale, checked here to name the wav (validate_dialogue's checks name dialogue.json)
        peak = float(np.abs(pcm).max())
        if peak > 1.0:
            raise DataError(f"{wav}: its {info.subtype} samples peak at {peak:g}, above 1.0 (full scale): a "
                            f"dialogue's audio is in [-1, 1]; scale it down (e.g. audio * 0.9 / abs(audio).max()) "
                            f"and write the dialogue again")
    else:
        pcm = np.zeros((info.frames, 2), np.float32)
    words = [Word(*_fields(w, "word", i, WORD_KEYS, meta_path)) for i, w in enumerate(doc["words"])]
    oracle = [OracleEvent(*_fields(e, "oracle event", i, ("frame", "event"), meta_path), _ids(e.get("ids", [])),
                          e.get("text"), e.get("prediction"), e.get("hint"), e.get("use_hint"))
              for i, e in enumerate(doc["oracle"])]
    d = Dialogue(pcm, words, oracle, doc.get("tokenizer_sha256"), doc.get("source") or {}, folder)
    validate_dialogue(d, str(meta_path))
    if doc["frames"] != d.frames:
        raise DataError(f"{meta_path}: frames {doc['frames']!r}, but its {doc['samples']} samples make {d.frames} "
                        f"frames of 80 ms (samples / {FRAME_SIZE}, rounded up): set frames to {d.frames}")
    if doc["sample_rate"] != SAMPLE_RATE:  # (True, False != 24000 too)
        raise DataError(f"{meta_path}: sample_rate {doc['sample_rate']!r}, a dialogue's audio is {SAMPLE_RATE} Hz "
                        f"(as its {AUDIO} is): set sample_rate to {SAMPLE_RATE}")
    dur = doc["duration_s"]
    if not (is_finite_number(dur) and abs(dur - d.duration_s) <= DURATION_SLACK):
        raise DataError(f"{meta_path}: duration_s {dur!r}, but its {doc['samples']} samples last {d.duration_s:.6f} "
                        f"s (duration_s is samples / {SAMPLE_RATE}, to within {DURATION_SLACK:g} s): set duration_s to "
                        f"{d.duration_s!r}")
    return d, hashlib.sha256(raw).hexdigest()


def _check_keys(doc: dict, path: Path) -> None:
    """DataError naming a required key of dialogue.json ``doc`` that is missing (was: blamed on the audio)."""
    for key in META_KEYS:
        if key not in doc:
            raise DataError(f"{path}: required key {key!r} is missing (a {META} has {', '.join(META_KEYS)}, words "
                            f"and oracle; see docs/data.md, Keys)")
    if not is_int(doc["samples"]):
        raise DataError(f"{path}: samples {doc['samples']!r} must be an int: the number of samples of its {AUDIO}")
    for key in ("words", "oracle"):  # (required, [] when none: a missing or renamed list is not "no words")
        if not isinstance(doc.get(key), list):
            got = "missing" if key not in doc else f"a {type(doc[key]).__name__}, not a list"
            raise DataError(f"{path}: {key!r} is {got} (a dialogue.json lists its {key}, [] when it has none; "
                            f"see docs/data.md)")


def _ids(ids):  # (as given when not a list: validate_dialogue says what it is; was: a string split into digits)
    return list(ids) if isinstance(ids, (list, tuple)) else ids


def _fields(item, what: str, i: int, keys: tuple[str, ...], path: Path) -> list:
    """The values of ``keys`` in ``item``, the i-th word or oracle event of ``path`` (else a DataError naming it)."""
    if not isinstance(item, dict):
        raise DataError(f"{path}: {what} {i} is not an object: {item!r} (see docs/data.md)")
    missing = [k for k in keys if k not in item]
    if missing:
        raise DataError(f"{path}: {what} {i} lacks {', '.join(map(repr, missing))} (each {what} has "
                        f"{', '.join(keys)}; see docs/data.md)")
    return [item[k] for k in keys]


def check_version(doc: dict, path: Path) -> None:
    """DataError unless dialogue.json ``doc`` (read from ``path``) is a kame dialogue of the
    version this kame reads, saying which side is newer: a higher version needs a newer kame."""
    fmt, version = doc.get("format"), doc.get("version")
    if fmt != FORMAT:
        raise DataError(f"{path}: format {fmt!r}, not a {FORMAT!r} file: a dialogue folder's {META} is the one "
                        f"kame writes (write_dialogue; see docs/data.md)")
    if version == VERSION and is_int(version):
        return
    if is_int(version) and version > VERSION:
        raise DataError(f"{path}: {FORMAT} version {version}, this kame reads version {VERSION}: it was made by a "
                        f"newer kame; upgrade kame")
    if is_int(version):
        raise DataError(f"{path}: {FORMAT} version {version}, this kame reads version {VERSION}: it was made by an "
                        f"older kame; make the dialogue again (kame data synth, or write_dialogue from what it holds)")
    raise DataError(f"{path}: {FORMAT} version {version!r}, expected the int {VERSION}: write the dialogue again "
                    f"(write_dialogue; see docs/data.md)")


def _read_json(path: Path) -> tuple[dict, bytes]:
    """(the JSON object in ``path``, the file's bytes it was parsed from); a DataError if it is not one."""
    try:
        data = path.read_bytes()
        doc = json.loads(data)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not readable JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise DataError(f"{path}: expected a JSON object, got {type(doc).__name__}")
    return doc, data


def _write_text(path: Path, text: str) -> None:
    """Write through a temporary file renamed into place (write_replacing): a reader never sees
    half a file; one that cannot be written is a DataError naming it."""
    write_replacing(path, lambda tmp: tmp.write_text(text), error=DataError)
