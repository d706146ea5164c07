"""Synthetic spoken dialogues from text QA sets, with a simulated oracle (KAME's training data).

    kame data synth gsm8k_train.jsonl -o data/gsm8k --llm openai:gpt-4.1-nano --limit 200   # CLI (main)
    kame data synth mmlu_pro.jsonl -o data/mmlu --llm openai:gpt-4.1-nano --user-voice espeak:en-us+f2

Each QA item (kame.train.qa: GSM8K, MMLU-Pro, HSSBench or plain question/answer) becomes one
dialogue folder (``--turns N``: N items, one after another, in a folder named after the first
with ``+N-1``) in kame.train.data's layout: the user asks the question (left channel, a voice
drawn per item from ``user_voices``), the agent answers (right channel, one voice for all: the
front-end is trained to speak as one speaker) a short gap after the user's last word; both
speakers' words carry their times from the TTS (``TTS.synth_words``); the oracle events are the
simulated oracle's (kame.train.oracle_sim): a prediction of the agent's reply every 0.5 s of the
user's turn from the words heard so far, with the true reply as a hint whose use grows with the
share of the turn heard, and the true reply itself at the turn's end (``--llm random``: the
predictions before the end are other items' true replies, KAME's randomized guidance; ``--llm
none``: only the true reply at the end). ``--turns N`` makes each dialogue ask the next N items one
after another (each turn's oracle with the turns before as its history). A manifest (``train.jsonl``
in the output folder) lists every dialogue there.

Re-running the same command skips the dialogues already written (``--overwrite`` redoes them), so
a long run that stopped can be resumed, or a set made in slices (``--start``/``--limit``); the
manifest lists every dialogue in the folder. The QA file, the voices and the simulator LLM are
checked before the first item (one word spoken per voice, one short LLM request). An item that
fails then (an LLM error or timeout, a text the TTS cannot say) is reported and skipped, and the
exit code is 1 if any failed; ``MAX_FAILURES_IN_A_ROW`` failures in a row stop the run (a server
gone down fails every item after it).

Repeatability: the same seed gives each item the same voice, lead-in and gap (drawn from the seed
and the item's index in its file, so a slice of the set gets what the whole run gives it).
``synth.json`` in the output folder records the settings; resuming with other settings is
warned about (a set would mix them). The speech is repeatable too: the voices are made with the
seed (``seed=``, for a TTS that takes one; a voice spec's own ``;seed=N`` wins over ``--seed``
for that voice), so espeak-ng and piper draw their noise from it for
each utterance, and espeak-ng starts each one afresh (it carried state from one to the next): an
item's audio and word times are the same in every run and in any slice (kame.backend.tts.espeak,
.piper). An `openai:` LLM gives other predictions on every run; the embedded one samples each
prediction with a seed drawn from --seed and the item's index (datacmd.oracle_rng,
oracle_sim.simulate_oracle), so its predictions are the same in every run too.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..backend.types import SAMPLE_RATE
from ..cliargs import at_least, counted, naming
from ..paths import sweep_temporaries
from .data import DIALOGUE_FILES, META, DataError, Dialogue, Word, write_dialogue
from .datacmd import (MAX_FAILURES_IN_A_ROW, SETTINGS, check_simulator, failures, item_index, levels_table,
                      make_simulator, oracle_config, oracle_rng, past_end_warning, read_record, recorded_tokenizer,
                      record_settings, simulator, tokenizer_of)
from .manifest import write_manifest

log = logging.getLogger(__name__)

DEFAULT_USER_VOICES = ("espeak:en-us", "espeak:en-us+f2", "espeak:en-gb-x-rp", "espeak:en-029",
                       "espeak:en-us+m3", "espeak:en+f4")
MANIFEST = "train.jsonl"


@dataclass
class SynthConfig:
    """How one QA item is laid out as a spoken dialogue (times in seconds)."""

    user_voices: tuple[str, ...] = DEFAULT_USER_VOICES  # TTS specs; one drawn per item
    agent_voice: str = "piper"  # TTS spec of the agent: one voice for every dialogue
    lead_s: tuple[float, float] = (0.3, 1.0)  # silence before the user starts (uniform range)
    gap_s: tuple[float, float] = (0.2, 0.8)  # from the user's last word to the agent's first word
    tail_s: float = 0.5  # silence after the last speaker stops
    turn_gap_s: tuple[float, float] = (0.4, 1.2)  # multi-turn: from the agent's last word to the next question
    max_answer_words: int = 60  # the agent's reply is cut to whole sentences within this
    seed: int = 0


@dataclass
class ItemResult:
    folder: Path
    status: str  # "written" | "skipped" (already there) | "failed"
    error: str = ""
    duration_s: float = 0.0
    hints: list[int] = field(default_factory=list)
    past_end: int = 0  # prediction points a --delay put at or past the dialogue's end (left out)


def folder_name(item_id: str) -> str:
    """A QA item's id as a folder name (only letters, digits, '.', '_' and '-')."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", item_id).strip("._")
    if not name:
        raise DataError(f"QA item id {item_id!r} gives no usable folder name")
    return name


def _draw(rng: np.random.Generator, span: tuple[float, float]) -> float:
    lo, hi = span
    return float(lo if hi <= lo else rng.uniform(lo, hi))


def _timed(tts, text: str, speaker: str, offset: float) -> tuple[np.ndarray, list[Word]]:
    """``text`` spoken by ``tts`` with its words (times moved by ``offset``); refuses a TTS whose
    audio is not at 24 kHz or that said nothing."""
    pcm, timed = tts.synth_words(text)
    if int(tts.sample_rate) != SAMPLE_RATE:
        raise DataError(f"the {speaker} TTS ({tts.name}) speaks at {tts.sample_rate} Hz; dialogues are "
                        f"{SAMPLE_RATE} Hz (create it with sample_rate={SAMPLE_RATE})")
    if not len(pcm) or not timed:
        raise DataError(f"the {speaker} TTS ({tts.name}) said nothing for {text[:60]!r}")
    words = [Word(speaker, w.word, offset + w.start, offset + w.end) for w in timed]
    return np.asarray(pcm, np.float32), words


async def synth_dialogue(item, *, index: int, user_tts, agent_tts, llm, tokenizer, cfg: SynthConfig,
                         oracle_cfg=None, random_replies=None) -> Dialogue:
    """One QA item, or a list of them as the turns of one conversation -> a Dialogue (not
    written). ``user_tts``/``agent_tts``: TTS objects with ``synth_words``; ``llm``: the simulator
    (None: only the final, level-5 prediction of each turn, the true reply at the end of the
    user's turn); ``random_replies`` (kame.train.oracle_sim.RandomReplies, with llm None):
    randomized guidance, drawn from the seed and ``index``. Each turn's oracle sees the turns
    before it as its history; prediction ids run on over the turns."""
    from .oracle_sim import simulate_dialogue
    from .qa import spoken_turns

    group = list(item) if isinstance(item, (list, tuple)) else [item]
    rng = np.random.default_rng([cfg.seed, index])
    texts = [spoken_turns(it, max_answer_words=cfg.max_answer_words) for it in group]
    # blocking synthesis (espeak holds a process-wide lock; piper runs onnxruntime): off the loop
    loop = asyncio.get_running_loop()
    segments: list[tuple[int, int, np.ndarray]] = []  # (channel, first sample, pcm)
    turns: list[tuple[list[Word], list[Word]]] = []
    start = lead = _draw(rng, cfg.lead_s)
    gaps, pauses = [], [None]
    for k, (user_text, agent_text) in enumerate(texts):
        if k:  # the next question a pause after the agent's last word
            pauses.append(_draw(rng, cfg.turn_gap_s))
            start = turns[-1][1][-1].end + pauses[-1]
        gaps.append(_draw(rng, cfg.gap_s))
        user_pcm, user_words = await loop.run_in_executor(None, _timed, user_tts, user_text, "user", start)
        agent_start = user_words[-1].end + gaps[-1]  # the agent's first word starts `gap` after the user's last
        agent_pcm, agent_words = await loop.run_in_executor(None, _timed, agent_tts, agent_text, "agent", 0.0)
        shift = agent_start - agent_words[0].start  # where the agent's audio starts (its own lead-in before)
        if shift < user_words[-1].end:  # a long lead-in in the agent's audio: never talk over the user
            shift = user_words[-1].end
        agent_words = [Word("agent", w.word, w.start + shift, w.end + shift) for w in agent_words]
        segments += [(0, round(start * SAMPLE_RATE), user_pcm), (1, round(shift * SAMPLE_RATE), agent_pcm)]
        turns.append((user_words, agent_words))
    n = max(s0 + len(pcm) for _, s0, pcm in segments) + round(cfg.tail_s * SAMPLE_RATE)
    audio = np.zeros((n, 2), np.float32)  # [N, 2]: user left, agent right
    for ch, s0, pcm in segments:
        audio[s0:s0 + len(pcm), ch] = pcm
    np.clip(audio, -1.0, 1.0, out=audio)
    d = Dialogue(audio, [w for u, a in turns for w in u + a])
    # (simulate_dialogue's events keep their ``stats``: synth_all reports the points past the end)
    d.oracle = await simulate_dialogue([turn for (u, a), (ut, at) in zip(turns, texts)
                                        for turn in (("user", u, ut), ("agent", a, at))],
                                       llm=llm, tokenizer=tokenizer, cfg=oracle_cfg, frames=d.frames,
                                       random_replies=random_replies, rng=oracle_rng(cfg.seed, index))
    d.tokenizer_sha256 = tokenizer.sha256 if d.oracle else None
    d.source = {"kind": "kame data synth", "qa": dict(group[0].source),
                "user_tts": getattr(user_tts, "spec", user_tts.name), "agent_tts": getattr(agent_tts, "spec", agent_tts.name),
                "llm": getattr(llm, "spec", None) if llm is not None else ("random" if random_replies else None),
                "seed": cfg.seed, "index": index, "lead_s": lead, "gap_s": gaps[0]}
    if len(group) == 1:
        d.source.update(item=group[0].id, user_text=texts[0][0], agent_text=texts[0][1])
    else:
        d.source["turns"] = [{"item": it.id, "user_text": u, "agent_text": a, "gap_s": g, "pause_s": pause}
                             for it, (u, a), g, pause in zip(group, texts, gaps, pauses)]
    return d


class _Voices:
    """TTS objects made on first use, one per spec (a piper voice takes a second to load), with
    ``seed`` (repeatable speech) if the TTS takes one (an openai voice does not) and its spec sets
    none: a spec's own ``;seed=N`` is the more specific, and wins (registry.create_with_optional)."""

    def __init__(self, seed: int = 0) -> None:
        self._made: dict[str, object] = {}
        self.seed = seed

    def get(self, spec: str):
        if spec not in self._made:
            from .. import registry

            tts = registry.create_with_optional("tts", spec, seed=self.seed)
            tts.spec = spec
            self._made[spec] = tts
        return self._made[spec]


def write_folder_manifest(out: Path) -> int:
    """OUT/train.jsonl listing every dialogue folder in OUT (sorted by name): those of earlier runs
    and slices too. The number of dialogues listed."""
    folders = sorted(p.parent for p in out.glob(f"*/{META}"))
    write_manifest(out / MANIFEST, folders)
    return len(folders)


async def synth_all(items, out: Path, *, llm, tokenizer, cfg: SynthConfig, oracle_cfg=None,
                    overwrite: bool = False, voices: _Voices | None = None, jobs: int = 1,
                    random_replies=None, done: list | None = None) -> list[ItemResult]:
    """Every item into OUT/<item id>/ (resumable: written ones are skipped) and OUT/train.jsonl
    listing every dialogue in OUT (also when interrupted). One item's failure is logged and
    skipped; MAX_FAILURES_IN_A_ROW in a row raise a DataError (the manifest is written first).
    ``done``: a list the results are added to (also when the run stops or is interrupted)."""
    voices = voices or _Voices(cfg.seed)
    out.mkdir(parents=True, exist_ok=True)
    results: list[ItemResult] = done if done is not None else []
    quit_now = False
    try:
        await _synth_items(items, out, results, llm=llm, tokenizer=tokenizer, cfg=cfg, oracle_cfg=oracle_cfg,
                           overwrite=overwrite, voices=voices, jobs=jobs, random_replies=random_replies)
    except KeyboardInterrupt as exc:
        from ..runtime.interrupt import QuitAtOnce

        quit_now = isinstance(exc, QuitAtOnce)  # (a second signal: nothing more written)
        raise
    finally:
        if not quit_now:
            write_folder_manifest(out)
    return results


async def _synth_items(items, out: Path, results: list[ItemResult], *, llm, tokenizer, cfg, oracle_cfg,
                       overwrite, voices, jobs: int = 1, random_replies=None) -> None:
    """The items, ``jobs`` at a time (their LLM calls overlap; espeak-ng and each piper voice
    speak one text at a time anyway); ``results`` in the items' order."""
    from .oracle_sim import points_past_end

    names: Counter = Counter()
    slots: list[ItemResult | None] = []
    folders: list[Path] = []
    todo = []
    for position, item in enumerate(items):
        first = item[0] if isinstance(item, (list, tuple)) else item  # (a list: the turns of one dialogue)
        name = folder_name(first.id) + (f"+{len(item) - 1}" if first is not item and len(item) > 1 else "")
        names[name] += 1
        if names[name] > 1:  # two records with one id would overwrite each other
            name = f"{name}-{names[name]}"
        folder = out / name
        folders.append(folder)
        skipped = (folder / META).exists() and not overwrite
        slots.append(ItemResult(folder, "skipped") if skipped else None)
        if not skipped:
            todo.append((position, item, item_index(first, position), folder))
    # what a run killed outright left where this one writes (skipped dialogues' folders too: a killed --overwrite)
    sweep_temporaries("kame data synth", [(out, (MANIFEST, SETTINGS)), *((f, DIALOGUE_FILES) for f in folders)])
    gate = asyncio.Semaphore(jobs)
    failed_in_a_row: list[tuple[str, BaseException]] = []  # the latest failures, cleared by a success

    async def one(position, item, index, folder) -> None:
        async with gate:
            if len(failed_in_a_row) >= MAX_FAILURES_IN_A_ROW:
                return  # the run is stopping: start no more
            user_spec = cfg.user_voices[int(np.random.default_rng([cfg.seed, index, 1]).integers(len(cfg.user_voices)))]
            t0 = time.monotonic()
            try:
                d = await synth_dialogue(item, index=index, user_tts=voices.get(user_spec),
                                         agent_tts=voices.get(cfg.agent_voice), llm=llm, tokenizer=tokenizer,
                                         cfg=cfg, oracle_cfg=oracle_cfg, random_replies=random_replies)
                write_dialogue(folder, d, overwrite=overwrite)
            except Exception as exc:  # noqa: BLE001 -- one item's failure must not end a long run
                log.warning("item %s (%s): %s", folder.name, type(exc).__name__, exc)
                slots[position] = ItemResult(folder, "failed", f"{type(exc).__name__}: {exc}")
                failed_in_a_row.append((folder.name, exc))
                return
            failed_in_a_row.clear()
            hints = sorted(ev.hint for ev in d.oracle if ev.event == "reset" and ev.hint is not None)
            slots[position] = ItemResult(folder, "written", duration_s=d.duration_s, hints=hints,
                                         past_end=points_past_end(d.oracle))
            log.info("%s: %.1f s of dialogue, %d predictions, in %.1f s", folder.name, d.duration_s, len(hints),
                     time.monotonic() - t0)

    try:
        async with asyncio.TaskGroup() as group:
            for args in todo:
                group.create_task(one(*args))
    finally:
        results.extend(r for r in slots if r is not None)
    if len(failed_in_a_row) >= MAX_FAILURES_IN_A_ROW:
        item_id, exc = failed_in_a_row[-1]
        raise DataError(f"{len(failed_in_a_row)} items in a row failed, so the run stops (the same cause each time? "
                        f"a server or voice down, a set too small for --llm random); the last one, {item_id}: "
                        f"{type(exc).__name__}: {exc}") from exc


def summary(results: list[ItemResult], wall_s: float | None = None) -> str:
    """The run as a small table: counts, hours of audio, predictions per hint level, failures;
    with ``wall_s`` (the run's time) also how many seconds of dialogue it made per second."""
    by = Counter(r.status for r in results)
    written = [r for r in results if r.status == "written"]
    audio_s = sum(r.duration_s for r in written)
    levels = Counter(h for r in written for h in r.hints)
    speed = f"{audio_s / wall_s:.2f}" if wall_s and written else "-"
    lines = ["| written | skipped (already there) | failed | audio written (h) | predictions | wall (s) | "
             "dialogue s per wall s |",
             "|---|---|---|---|---|---|---|",
             f"| {by['written']} | {by['skipped']} | {by['failed']} | {audio_s / 3600:.3f} | {sum(levels.values())} | "
             f"{wall_s or 0:.0f} | {speed} |"]
    lines += levels_table(levels)
    lines += past_end_warning(sum(r.past_end for r in written), sum(r.past_end > 0 for r in written))
    lines += failures([(r.folder.name, r.error) for r in results if r.status == "failed"])
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# kame data synth


def add_arguments(p) -> None:
    from ..model.config import MAX_SEED
    from .qa import FORMATS

    p.add_argument("qa", help="the QA set: .jsonl / .json / .parquet (GSM8K, MMLU-Pro, HSSBench or {question, answer} records)")
    p.add_argument("-o", "--out", required=True, help="output folder: one dialogue folder per item + train.jsonl")
    p.add_argument("--llm", required=True, metavar="SPEC",
                   help="the oracle simulator's LLM: a capable one for real data (openai:MODEL, e.g. "
                        "openai:gpt-4.1-nano as KAME used); 'random' (no LLM: KAME's randomized guidance, the "
                        "predictions before the turn's end drawn from the set's other true replies); 'embedded' "
                        "(offline SmolLM2-135M: runs, but its predictions are mostly off-topic); 'none' (no "
                        "simulator: only the true reply at the end of the user's turn)")
    p.add_argument("--format", default="auto", choices=("auto", *FORMATS),
                   help="the QA set's format (default: from its first record)")
    p.add_argument("--start", type=at_least(0), default=0, help="skip the set's first N items")
    p.add_argument("--limit", type=at_least(1), default=None, help="at most N items (after --start)")
    p.add_argument("--language", default="en",
                   help="keep only items in this language (default en: the voices speak English); 'any' keeps all")
    p.add_argument("--images", choices=("skip", "keep"), default="skip",
                   help="HSSBench items whose question needs its picture: skip (default) or keep")
    p.add_argument("--user-voice", action="append", default=None, metavar="SPEC",
                   help=f"a TTS spec for the user, repeatable; one is drawn per item (default: "
                        f"{', '.join(DEFAULT_USER_VOICES)}); a spec's own ';seed=N' seeds that voice's speech in "
                        f"place of --seed")
    p.add_argument("--agent-voice", default=SynthConfig.agent_voice, metavar="SPEC",
                   help="the agent's TTS spec (default: piper, the embedded voice; its own ';seed=N' as --user-voice's)")
    p.add_argument("--tokenizer", default=None, metavar="PATH",
                   help="SentencePiece model of the oracle ids (default: kame's default tokenizer)")
    p.add_argument("--max-answer-words", type=at_least(1), default=SynthConfig.max_answer_words, metavar="N",
                   help=f"the agent's reply is cut to whole sentences within N words (default "
                        f"{SynthConfig.max_answer_words})")
    from .oracle_sim import add_timing_arguments

    add_timing_arguments(p)  # --interval, --delay
    p.add_argument("--jobs", type=at_least(1), default=1,
                   help="dialogues made at once (default 1): their simulator requests overlap, for a hosted LLM "
                        "that serves several at a time (the embedded one answers one at a time)")
    p.add_argument("--turns", type=at_least(1), default=1,
                   help="items per dialogue (default 1): a dialogue asks the next N items of the set one after "
                        "another, each turn's oracle seeing the turns before (--start/--limit count items)")
    p.add_argument("--seed", type=at_least(0, maximum=MAX_SEED), default=0,
                   help="seeds each item's voice, lead-in and gaps, --llm random's predictions and the embedded "
                        "simulator LLM's sampling (numpy's generators; an openai: LLM's predictions are not "
                        "repeatable) and the voices' speech (a TTS that takes a seed: espeak, piper), except a "
                        "voice whose spec sets its own (espeak:en-us;seed=3: that voice speaks with seed 3 "
                        "whatever --seed is): 0 to 2**64 - 1 (default 0)")
    p.add_argument("--overwrite", action="store_true", help="redo dialogues already in the output folder")


def _check_voice(tts, spec: str) -> None:
    """The voice speaks one word with its timing (a wrong voice name fails here, not at every item)."""
    from ..backend.tts.base import TTS, WORD_TIMED_TTS

    if isinstance(tts, TTS) and type(tts).synth_words is TTS.synth_words:
        raise DataError(f"TTS {spec!r} gives no word timings (synth_words), which dialogues need; "
                        f"use one that does: {', '.join(WORD_TIMED_TTS)}")
    try:
        _timed(tts, "Hello.", f"voice {spec}", 0.0)
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 -- any failure of a voice is the user's to see, named
        raise DataError(f"TTS {spec!r} cannot speak: {type(exc).__name__}: {exc}") from exc


def settings_of(args, cfg: SynthConfig, oracle_cfg) -> dict:
    """What makes a set's dialogues alike (synth.json): a resume with others is warned about.
    "cleaning": the version of the oracle text's cleaner (kame train warns of a set of another);
    "tokenizer" resolved (kame train's warning names it in a command run from anywhere)."""
    from ..backend.speech_text import CLEANING_VERSION

    return {"qa": str(Path(args.qa).resolve()), "format": args.format, "language": args.language,
            "images": args.images, "llm": args.llm, "user_voices": list(cfg.user_voices),
            "agent_voice": cfg.agent_voice, "tokenizer": recorded_tokenizer(args.tokenizer),
            "max_answer_words": cfg.max_answer_words,
            "interval_s": oracle_cfg.interval_s, "delay_s": oracle_cfg.delay_s, "seed": cfg.seed,
            "turns": args.turns, "cleaning": CLEANING_VERSION}


def _settings_to_record(out: Path, settings: dict) -> dict:
    """The record to write in OUT's synth.json: ``settings``, with the older cleaning version when
    OUT's records another (its dialogues a resume skips keep their cleaning: kame train warns on;
    was: the new one recorded, and the warning went). Warns (before the run) when OUT's records
    other settings than ``settings`` (a tokenizer recorded as typed, before kame resolved it, is
    compared resolved: was warned as another one); a damaged record is refused (read_record)."""
    old = read_record(out, "then run `kame data synth` again")
    if old is not None:
        recorded = "cleaning" in old
        if old:  # (one written before the cleaner's version was: version 1's)
            old.setdefault("cleaning", 1)
        if isinstance(old.get("tokenizer"), str):
            old["tokenizer"] = recorded_tokenizer(old["tokenizer"])
        changed = sorted(k for k in settings if k in old and old[k] != settings[k])
        if changed:
            log.warning("%s holds dialogues made with other settings (%s: %s); the set will mix them (use another "
                        "-o to keep them apart)", out, ", ".join(changed),
                        "; ".join(f"{k} was {old[k]!r}" for k in changed))
        if "cleaning" in changed:  # (a record without one stays without: "made before kame recorded it")
            kept = {k: v for k, v in settings.items() if k != "cleaning"}
            return {**kept, "cleaning": old["cleaning"]} if recorded else kept
    return settings


def reply_pool(args, cfg: SynthConfig, tokenizer):
    """`--llm random`'s pool: the agent's reply of every item of the QA file (its language and
    image filters, not --start/--limit: a slice draws from what the whole run draws from)."""
    from .oracle_sim import reply_pool
    from .qa import read_qa, spoken_turns

    replies = []
    for item in read_qa(args.qa, args.format, language=None if args.language == "any" else args.language,
                        images=args.images):
        try:
            replies.append(spoken_turns(item, max_answer_words=cfg.max_answer_words)[1])
        except DataError:  # (an item with nothing speakable: it fails on its own turn)
            continue
    return reply_pool(replies, tokenizer, args.qa)


def main(args) -> int:
    from .. import registry
    from ..paths import check_output_folder
    from ..cli import say
    from ..runtime.interrupt import (TERMINATED_STATUS, QuitAtOnce, after_stop, exit_status, run_ended_by_sigterm,
                                     sigterm_held, stopped_by)
    from .qa import read_qa

    # (--start, --limit, --jobs, ... were range-checked as parsed: kame.cliargs' types)
    # everything is checked before -o is made (was: a refused voice or tokenizer left an empty folder); a
    # SIGTERM meanwhile is noted, and ends the command before anything is written (was: killed, no exit 143)
    with sigterm_held() as early:
        check_simulator(args.llm)
        cfg = SynthConfig(user_voices=tuple(args.user_voice or DEFAULT_USER_VOICES), agent_voice=args.agent_voice,
                          max_answer_words=args.max_answer_words, seed=args.seed)
        # each voice named by its option (was: "unknown tts spec 'x'"); every form checked before one loads
        flags = {**dict.fromkeys(cfg.user_voices, "--user-voice"), cfg.agent_voice: "--agent-voice",
                 **dict.fromkeys(args.user_voice or (), "--user-voice")}
        for spec, flag in flags.items():
            registry.check_key_spec(flag, "tts", spec)
        oracle_cfg = oracle_config(args)
        language = None if args.language == "any" else args.language
        limit = None if args.limit is None else args.start + args.limit
        items = read_qa(args.qa, args.format, limit=limit, language=language, images=args.images)[args.start:]
        if not items:
            raise DataError(f"{args.qa}: no items to synthesize (after --start {args.start})")
        if args.turns > 1:  # each dialogue: the next --turns items, asked one after another
            items = [items[i:i + args.turns] for i in range(0, len(items), args.turns)]
        tokenizer = tokenizer_of(args.tokenizer)
        voices = _Voices(cfg.seed)
        for spec, flag in flags.items():  # each voice tried once, before the run
            with naming(flag):
                _check_voice(voices.get(spec), spec)
        # --llm random's pool: the whole file's replies (a slice draws what the whole run would)
        random_replies = reply_pool(args, cfg, tokenizer) if args.llm == "random" else None
    if early.signal:
        say(f"{stopped_by(early.signal)}: before the first item; nothing written", sys.stdout)
        return TERMINATED_STATUS
    out = check_output_folder(args.out, flag="-o")
    settings = _settings_to_record(out, settings_of(args, cfg, oracle_cfg))  # (before the LLM loads)
    llm = make_simulator(args.llm)
    what = (counted(len(items), "item") if args.turns == 1 else
            f"{counted(len(items), 'dialogue')} of up to {args.turns} turns ({counted(sum(map(len, items)), 'item')})")
    print(f"{what} -> {out}/ (voices: user {', '.join(cfg.user_voices)}; agent {cfg.agent_voice}; "
          f"oracle: {args.llm})", flush=True)
    results: list[ItemResult] = []

    async def run():
        async with simulator(llm, oracle_cfg):
            await synth_all(items, out, llm=llm, tokenizer=tokenizer, cfg=cfg, oracle_cfg=oracle_cfg,
                            overwrite=args.overwrite, voices=voices, jobs=args.jobs, random_replies=random_replies,
                            done=results)

    t0 = time.monotonic()
    stopped, quit_now = None, False
    try:  # (SIGTERM ends the run as Ctrl-C does: the work cancelled, the manifest written; was: killed
        # at once, neither the manifest nor synth.json written, so a rerun with other settings mixed the set
        # unwarned)
        stopped = run_ended_by_sigterm(run)
    except QuitAtOnce:  # a second signal: nothing more written (kame's main says it; was: swallowed)
        quit_now = True
        raise
    except KeyboardInterrupt:
        stopped = "SIGINT"
    finally:  # (stopped or interrupted too: what was written was made with these settings; a Ctrl-C in
        # these writes after a stop is a second signal: was "kame data synth: interrupted", no manifest)
        if not quit_now:
            with after_stop(bool(stopped)) as held:  # (after a stop, a SIGTERM or Ctrl-C here is the second)
                if results and stopped:  # (again: a second signal may have cut synth_all's; a run that ended
                    write_folder_manifest(out)  # by itself wrote it whole, and this reads the whole set again)
                if any(r.status == "written" for r in results):
                    record_settings(out, settings)
    stopped = stopped or held.signal  # (a SIGTERM during those writes: the run is said stopped, as data oracle's)
    if stopped:
        listed = len(list(out.glob(f"*/{META}")))
        say(f"\n{stopped_by(stopped)}: {counted(listed, 'dialogue')} in {out}/ (listed in {out / MANIFEST}); "
            "run the same command again to go on", sys.stdout)  # (one write: was print's two)
        # (said: was raised again for exit 130, and kame's main said "kame data synth: interrupted" too)
        return exit_status(stopped)
    print(summary(results, time.monotonic() - t0))
    print(f"manifest: {out / MANIFEST} ({counted(len(list(out.glob(f'*/{META}'))), 'dialogue')})")
    return 1 if any(r.status == "failed" for r in results) else 0
