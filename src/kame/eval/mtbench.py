"""Spoken MT-Bench: ``kame eval mtbench``.

    kame eval mtbench question.jsonl -o out/mtbench --judge openai:gpt-4.1            # tandem
    kame eval mtbench question.jsonl -o out/mtbench-cascade --judge openai:gpt-4.1 --mode cascade
    kame eval mtbench question.jsonl -o out/q --judge embedded --limit 3 --set backend.llm=openai:gpt-4.1-mini
    kame eval mtbench question.jsonl -o out/mtbench --judge openai:gpt-4.1 --reference reference_answer/gpt-4.jsonl

The questions are MT-Bench's ``question.jsonl`` as FastChat ships it (bring the file); by default
the categories reasoning, stem and humanities (KAME's) and the first turn. Each question is spoken
by a TTS (``--voice``) into OUT/runs/ID.in.wav, played into a new session of the agent (built and
started once: kame.runtime.filerun.FileAgent), written as ``kame run`` writes it (OUT/runs/ID.wav,
ID.json, ID.log), and what the agent said is graded 1-10 by an LLM judge (kame.eval.judge). ``--turns 2`` speaks the second question ``--gap`` seconds
after the first one's end, in the same conversation, and grades both answers (the second with
the first as context). ``--reference FILE``: FastChat's reference answers (kame.eval.reference),
given to the judge for math, reasoning and coding before a question's own "reference".

Per question and turn, OUT/results.jsonl gets one line: the question, what the STT heard of it
(``heard``), the agent's answer (the cascade's: each reply's "agent_turn" text, as heard; the
tandem's: the front-end's text stream in the turn's window, a proxy of what its audio says; for a
tandem also the LLM's answer it was fed, ``llm_answer``), the rating (null when the judge's reply
had none, even after one follow-up asking for the rating alone: counted as "unparsed"; a turn the
agent said nothing in: 1, the judge not asked, "said_nothing"), the
judge's replies, the latency (user's end of speech -> first 10 ms of agent audio above
runtime.silence_db, as kame.bench.latency measures it; null: no sound in the window), the run's
summary flags (reply_cut_off, max_tail_reached, unanswered) and files; ``--asr`` / ``--answer
heard``: what whisper heard of the agent's audio and when (kame.eval.heard). OUT/eval.json records
the mode, --turns, --asr, --answer, judge, agent (kame.eval.mtbench.agent_fingerprint) and
reference file (path, sha256): a rerun with others is refused (another reference file: when it
changes a stored answer's reference); ``--rejudge`` re-rates the stored answers with another judge
or reference (and the unparsed ones) without running the agent. A rerun skips the questions
already rated; one run but not rated (OUT/runs/ID.rec.json) is only rated. Before question 1: one
short judge request (a dead judge stops everything at once) and one untimed warm-up run of the
agent (which loads it); a failure or Ctrl-C before question 1 leaves OUT as it was (a new one
removed: kame.eval.firstwrites), and a second run into an OUT a live run writes to is refused
(OUT/.lock, kame train's: kame.eval.firstwrites.FirstWrites.lock). A question whose agent or
judge fails is reported and skipped (a rerun retries it; an agent left unsound is built again
for the next question); five failures in a row stop the evaluation. Ctrl-C ends it (exit 130), SIGTERM too, wherever it comes (exit 143:
kame.eval.stopping). A table per category (n, mean rating, median latency and content latency:
a turn with no text answer counts as never, kame.eval.summary.latency; unparsed), the mean of the
category means (KAME's avg) and overall is printed and written to OUT/results.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..audio import SAMPLE_RATE as SR, write_wav
from ..cli import say
from ..cliargs import at_least, tail_seconds
from ..errors import ConfigError, KameError
from ..paths import check_output_folder, read_text
from .firstwrites import FirstWrites
from .heard import (ASR, add_asr_arguments, asr_settings, check_asr_options, check_asr_settings, hear_saved, load_asr,
                    read_agent_track)
from .judge import (add_judge_arguments, check_judge_spec, embedded_judge_note, open_judge,
                    why_failed)
from .reference import (NEED_REF_CATS, apply_references, check_references, fastchat_lines, first_changed,
                        read_reference_answers, record_reference, reference_warning, turns_ok)
from .results import (SETTINGS_FILES, check_not_other, write_settings, check_questions, failure, has_results,
                      load_done, rated_problem, read_records, read_settings, write_all, write_records)
from .spoken import speak, warm_up
from . import stopping
from .stopping import Terminated, close_held, held, settle
from .summary import FAST_CASCADE, SAID_NOTHING, judged_silence, no_answer, notes, secs, silence_warning, table
from .voice import make_voice

if TYPE_CHECKING:
    from ..config import KameConfig

DEFAULT_CATEGORIES = ("reasoning", "stem", "humanities")


@dataclass
class Question:
    id: str  # question_id as a string (FastChat's are ints)
    category: str
    turns: list[str]
    reference: list[str | None] | None  # per turn (kame.eval.reference.apply_references)
    where: str  # file:line, for errors

    def ref(self, k: int) -> str | None:
        """The reference answer of turn ``k`` (0-based), if any."""
        return self.reference[k] if self.reference and k < len(self.reference) else None


# ---------------------------------------------------------------------------- questions
def read_questions(path: str | Path, categories=DEFAULT_CATEGORIES, turns: int = 1,
                   strict: bool = False) -> list[Question]:
    """The questions of ``path`` in ``categories`` (None: all), each with at least ``turns`` turns.
    ``strict`` (categories the user named): a category with no question in the file is refused."""
    path = Path(path)
    out, found = [], set()
    _, text = read_text(path, str(path), "give MT-Bench's question.jsonl (FastChat's "
                        "fastchat/llm_judge/data/mt_bench/question.jsonl; kame downloads nothing)")
    for where, d in fastchat_lines(path, text, "question", _question_ok,
                                   "question_id, category (a string) and turns (a list of non-empty strings), "
                                   "as MT-Bench's question.jsonl has"):
        ref, qid = d.get("reference"), str(d["question_id"])
        if ref is not None and not (isinstance(ref, list) and all(isinstance(r, str) for r in ref)):
            raise ConfigError(f"{where}: reference must be a list of strings (one per turn)")
        half = _lone_surrogate([qid, d["category"], *d["turns"], *(ref or [])])
        if half:  # (was: run, then "the agent failed (UnicodeEncodeError ...)" when the TTS could not say it)
            raise ConfigError(f"{where}: a lone surrogate {half} (half of a character's JSON escape): text no "
                              "TTS or judge can take; fix or remove the escape")
        found.add(d["category"])
        if categories is not None and d["category"] not in categories:
            continue
        if len(d["turns"]) < turns:
            raise ConfigError(f"{where}: question {qid} has {len(d['turns'])} turn(s), --turns {turns} needs {turns}")
        out.append(Question(qid, d["category"], [t.strip() for t in d["turns"][:turns]], ref, where))
    missing = [c for c in categories or () if c not in found] if strict else []
    if missing:  # (was: ignored, so stem,maths ran stem alone)
        raise ConfigError(f"--categories: {path} has no question in {', '.join(missing)}; its categories are "
                          f"{', '.join(sorted(found)) or 'none'}")
    if not out:
        raise ConfigError(f"{path}: no question left in categories {', '.join(categories or ())} (the file has "
                          f"{', '.join(sorted(found)) or 'none'}); see --categories")
    return out


def _lone_surrogate(texts: list[str]) -> str | None:
    """The first surrogate in ``texts`` ("\\ud800"), if any: json.loads joins an escaped pair into
    its character, so one left is alone (UTF-8 cannot encode it)."""
    found = next((m for m in map(_SURROGATE.search, texts) if m), None)
    return f"\\u{ord(found.group()):04x}" if found else None


_SURROGATE = re.compile("[\ud800-\udfff]")


def _question_ok(d: dict) -> bool:
    return isinstance(d.get("category"), str) and turns_ok(d.get("turns"))


# ---------------------------------------------------------------------------- one question
def run_question(args, q: Question, tts, runs: Path, thr: float, agent) -> list[dict]:
    """Speak ``q``, play it into a new session of ``agent`` (a kame.runtime.filerun.FileAgent,
    started once for all questions) and write kame run's files of it, one record per turn (not
    heard nor rated yet: main does both). Raises what the agent raises."""
    from ..runtime.filerun import prepare_run, write_run
    from ..runtime.interrupt import TERMINATED_STATUS

    pcm, turns = speak(tts, q.turns, args.gap)
    stem = runs / run_name(q.id)
    wav_in, wav_out, log = stem.with_suffix(".in.wav"), stem.with_suffix(".wav"), stem.with_suffix(".log")
    write_wav(wav_in, pcm, SR)
    wav_out.with_suffix(".json").unlink(missing_ok=True)  # (an earlier attempt's, not to be read as this one's)
    ns = argparse.Namespace(**{**vars(args), "input": str(wav_in), "output": str(wav_out), "no_png": True})
    with open(log, "w") as f, contextlib.redirect_stdout(f):  # (kame run's printout: in ID.log)
        run = prepare_run(ns)  # (it clamps --max-tail to at least --tail itself)
        rec = agent.play(run.user, fast=args.fast, extend_s=run.extend_s)
        try:
            with held():  # (a SIGTERM now: the files written whole, then Terminated)
                rc = write_run(ns, agent.cfg, run, rec)
        except KameError as exc:  # the front-end failed: the files are written, the answer is what it is
            if not wav_out.with_suffix(".json").exists():  # (no run at all)
                raise
            print(f"error     {exc}", file=f)
            rc = 0
    if rc == TERMINATED_STATUS:  # (SIGTERM, which FileAgent takes as Ctrl-C: the run stops here, exit 143)
        raise Terminated
    if rc == 130:  # (Ctrl-C)
        raise KeyboardInterrupt
    doc = json.loads(wav_out.with_suffix(".json").read_text())
    agent = read_agent_track(wav_out)
    turns[-1].window_end = agent.shape[0] / SR
    files = {"input": str(wav_in), "output": str(wav_out), "json": str(wav_out.with_suffix(".json")), "log": str(log)}
    return turn_records(q, doc, turns, agent, thr, args.mode, files)


def turn_records(q: Question, doc: dict, turns: list, agent: np.ndarray, thr: float, mode_asked: str,
                 files: dict) -> list[dict]:
    """One record per user turn of a run's OUT.json ``doc`` (its agent track ``agent``); ``heard``:
    the STT's finals from the turn's start to the next turn's (the last turn's: to any time, as a
    final may come after the file's end)."""
    from ..bench.latency import answer_text, first_voiced, window_text

    mode = doc["components"].get("mode") or mode_asked
    summ = doc.get("summary", {})
    out = []
    for k, ut in enumerate(turns):
        if mode == "cascade":
            answer, source = cascade_answer(doc, ut)
        else:  # the front-end's own text stream: a proxy of what its audio says
            answer, source = window_text(doc, ut), "frontend text stream"
        hit = first_voiced(agent, ut.end, ut.window_end, thr)
        rec = {"question_id": q.id, "category": q.category, "turn": k + 1, "mode": mode, "question": ut.text,
               "answer": answer.replace("\u2581", " ").strip(), "answer_source": source,
               "heard": " ".join(t["text"] for t in doc.get("transcripts", ()) if t["final"] and ut.start <= t["t"]
                                 and (t["t"] < ut.window_end or k + 1 == len(turns))).strip(),
               "latency_s": None if hit is None else round(max(0.0, hit - ut.end), 3),
               "user_start_s": round(ut.start, 3), "user_end_s": round(ut.end, 3), "reference": q.ref(k),
               "frontend_random": doc.get("frontend_random", False), "errors": len(doc.get("errors", ())),
               **{flag: summ.get(flag) for flag in ("reply_cut_off", "max_tail_reached", "unanswered")},
               "files": files}
        if mode == "tandem":  # what the LLM answered (fed to the front-end as its oracle)
            rec["llm_answer"] = answer_text("tandem", doc, ut)
        if k + 1 < len(turns):  # agent still audible just before the next question: cut by it
            rec["cut_by_next_turn"] = first_voiced(agent, max(ut.end, ut.window_end - 0.5), ut.window_end, thr) is not None
        out.append(rec)
    return out


def cascade_answer(doc: dict, ut) -> tuple[str, str]:
    """(answer, its source): what the cascade said to the user turn ``ut``, as heard: the
    "agent_turn" text of each reply to speech that ended in the turn's window (cut where a
    barge-in or failure cut it). A reply still under way when the file ended has none: then the
    text generated in the window (the record's reply_cut_off / max_tail_reached say so)."""
    from ..bench.latency import window_text

    metas = doc.get("other_meta") or ()
    ends = {m.get("turn"): m.get("t_user_end") for m in metas if m.get("type") == "turn"}
    mine = {tid for tid, t in ends.items() if t is not None and ut.start <= t < ut.window_end}
    said = {m.get("turn"): m.get("text", "") for m in metas if m.get("type") == "agent_turn" and m.get("turn") in mine}
    if mine - set(said):
        return window_text(doc, ut), "generated text (a reply had not ended)"
    return " ".join(said[t].strip() for t in sorted(mine) if said[t].strip()), "agent_turn (as heard)"


def run_name(qid: str) -> str:
    """A file name for question ``qid``: the id itself when it is safe, else the id made safe plus
    a short hash of it (so "1.0" and "1_0" do not share runs/1_0.*)."""
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in qid)
    if safe == qid and safe:
        return safe
    return f"{safe or 'q'}-{hashlib.sha1(qid.encode()).hexdigest()[:8]}"


def saved_run(runs: Path, qid: str) -> Path:
    """Where question ``qid``'s records are saved once run (a rerun rates them, the agent not run)."""
    return runs / f"{run_name(qid)}.rec.json"


def grade(judge, runner, recs: list[dict], timeout_s: float, judge_spec: str, which=None, refs=None) -> None:
    """Judge turn answers (in place: rating, judge_reply, judge_followup, judge, reference);
    ``which``: the indices to judge (default all; the earlier turns are context either way);
    ``refs``: the reference answer of each turn now (default: the records' own). A turn the agent
    said nothing in (no answer: e.g. a cascade's STT, LLM and TTS left no time by --fast) is not an
    answer to rate: the judge is not asked, it gets SAID_NOTHING and "said_nothing": true. Raises
    what the judge raises."""
    from .judge import judge_messages, rate

    for k, r in enumerate(recs):
        if which is not None and k not in which:
            continue
        if refs is not None:  # (records run earlier: rated with today's reference answers)
            r["reference"] = refs[k] if k < len(refs) else None
        if no_answer(r):  # (was: sent to the judge, which may rate silence 10)
            r["rating"], r["judge_reply"], r["judge_followup"] = SAID_NOTHING, None, None
            r["said_nothing"] = True
        else:
            msgs = judge_messages(r["question"], r["answer"], reference=r["reference"],
                                  history=[(p["question"], p["answer"], p.get("reference")) for p in recs[:k]])
            r["rating"], r["judge_reply"], r["judge_followup"] = runner.run(rate(judge, msgs, timeout_s=timeout_s))
            r.pop("said_nothing", None)
        r["judge"] = judge_spec


# ---------------------------------------------------------------------------- results
SETTINGS = SETTINGS_FILES["kame eval mtbench"]  # eval.json, in OUT: the mode, turns, judge and agent the results are of


def agent_fingerprint(args, cfg) -> dict:
    """What makes the agent's answers what they are (a rerun with others is refused)."""
    return {"backend.llm": cfg.backend.llm, "backend.stt": cfg.backend.stt, "cascade.tts": cfg.cascade.tts,
            "frontend.spec": str(cfg.frontend.spec), "voice": args.voice,
            "set": list(getattr(args, "overrides", None) or [])}


# agent_fingerprint's keys added after the first kame that wrote eval.json, each with the value a folder
# made before (without it) implicitly had: its default then (kame.eval.heard.asr_settings does so for
# --asr, --answer). Such a folder resumes when the value now is that one (else the key is named).
IMPLIED_AGENT: dict[str, object] = {}


def agent_differences(there: dict, now: dict) -> list[str]:
    """What differs between the agent a folder's eval.json records (``there``) and this run's
    (``now``), one entry per key: a value of its own on each side; a key missing there (an older
    kame's folder) unless IMPLIED_AGENT gives it the value it has now; a key this kame does not
    record (a newer kame's folder: its answers may depend on a setting this kame cannot match)
    (was: the whole dicts compared and only the keys of this kame listed, so "another agent ()")."""
    diffs = []
    for k, v in now.items():
        if k not in there and k in IMPLIED_AGENT and IMPLIED_AGENT[k] != v:
            diffs.append(f"{k} not recorded there (a folder of an older kame: {IMPLIED_AGENT[k]!r}), {v!r} now")
        elif k not in there and k not in IMPLIED_AGENT:
            diffs.append(f"{k} not recorded there, {v!r} now")
        elif k in there and there[k] != v:
            diffs.append(f"{k} {there[k]!r} there, {v!r} now")
    diffs += [f"{k} {there[k]!r} there, a setting this kame does not record (a folder of a newer kame: upgrade kame "
              f"to resume it)" for k in there if k not in now]
    return diffs


def check_settings(out: Path, args, agent: dict) -> dict:
    """The folder's settings (written when it holds no result yet): a folder of another mode,
    --turns, --asr, --answer or agent is refused (give another -o); another judge too, unless
    --rejudge."""
    path, results = out / SETTINGS, out / "results.jsonl"
    want = {"mode": args.mode, "turns": args.turns, "judge": args.judge, "agent": agent, **asr_settings(args)}
    check_not_other(out, "kame eval mtbench")  # (was: "results without eval.json: an older kame"; a follow folder's
    # eval.json: "holds results of --mode None")
    held = has_results(results) or any((out / "runs").glob("*.rec.json"))
    if not path.exists() or not held:  # (settings of a run that left nothing, e.g. a dead judge: not kept)
        if held:
            raise ConfigError(f"{out} holds results without {SETTINGS} (the settings they were made with: an "
                              f"older kame); give another -o")
        write_settings(path, want)
        return want
    have = read_settings(path, "delete it with results.jsonl and runs/ to start again, or give another -o")
    if (have.get("mode"), have.get("turns")) != (args.mode, args.turns):
        raise ConfigError(f"{out} holds results of --mode {have.get('mode')} --turns {have.get('turns')}, not of "
                          f"--mode {args.mode} --turns {args.turns}; give another -o")
    check_asr_settings(have, args, out)
    diff = agent_differences(have["agent"] if isinstance(have.get("agent"), dict) else {}, agent)
    if not args.rejudge and diff:
        raise ConfigError(f"{out} holds the answers of another agent ({'; '.join(diff)}); give another -o "
                          f"(or the same settings to resume)")
    rated = has_results(results)  # (runs not rated yet: any judge may rate them)
    if not args.rejudge and rated and have.get("judge") != args.judge:
        raise ConfigError(f"{out} was rated by the judge {have.get('judge')}, not {args.judge}; give --rejudge to "
                          f"re-rate its answers with {args.judge} (the agent is not run again), or another -o")
    if have.get("judge") != args.judge:
        write_settings(path, {**have, "judge": args.judge})
    return have


# ---------------------------------------------------------------------------- CLI
def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..config import add_config_arguments

    p.add_argument("questions", help="MT-Bench's question.jsonl (FastChat's format; bring it: nothing is downloaded)")
    p.add_argument("-o", "--output", required=True, metavar="OUT/",
                   help="folder for results.jsonl, results.md and runs/ (a rerun resumes)")
    add_judge_arguments(p, "ratings")
    add_config_arguments(p)
    p.add_argument("--mode", choices=("tandem", "cascade"), default=None,
                   help="the agent: override the config's mode (default: the config's, tandem unless --config or "
                        "--set mode= says cascade)")
    p.add_argument("--categories", default=",".join(DEFAULT_CATEGORIES),
                   help=f"comma-separated categories, or 'all' (default {','.join(DEFAULT_CATEGORIES)})")
    p.add_argument("--turns", type=int, choices=(1, 2), default=1,
                   help="1: the first question only (default); 2: also the second, in the same conversation")
    p.add_argument("--gap", type=at_least(1.0, float), default=30.0,
                   help="--turns 2: seconds from the first question's end to the second's start (default 30)")
    p.add_argument("--limit", type=at_least(1), default=None, help="only the first N questions (after filtering)")
    p.add_argument("--voice", default="piper", metavar="SPEC",
                   help="TTS speaking the questions (default piper: the bundled voice; espeak:VOICE is faster)")
    p.add_argument("--tail", type=tail_seconds, default=30.0,
                   help="seconds of silence after the (last) question for the answer (default 30)")
    p.add_argument("--max-tail", type=tail_seconds, default=90.0,
                   help="a cascade still answering after --tail gets more silence, up to this in all (default 90)")
    p.add_argument("--fast", action="store_true",
                   help="no wall-clock pacing (latencies then mean little; a cascade's STT, LLM and TTS get no time: "
                        "its turns go unanswered, rated 1: leave it out for a cascade)")
    p.add_argument("--rejudge", action="store_true",
                   help="re-rate the answers stored in OUT with --judge (another judge's ratings, those made "
                        "with other reference answers, the unparsed ones, and empty answers an older kame sent to "
                        "the judge); the agent is not run")
    p.add_argument("--reference", metavar="FILE", default=None,
                   help="FastChat's reference answers (data/mt_bench/reference_answer/gpt-4.jsonl), used for "
                        f"{', '.join(NEED_REF_CATS)} before a question's own \"reference\"")
    add_asr_arguments(p)


def agent_config(args) -> KameConfig:
    """The agent's config (--config, --set, --mode over them), and ``args.mode`` set to its mode:
    the one run, recorded in eval.json and results (was: --mode's default tandem, applied over the
    config, so `--set mode=cascade` or a cascade config ran and recorded the tandem)."""
    from ..config import config_from_args

    cfg = config_from_args(args)
    args.mode = cfg.mode
    return cfg


WORDS = ("evaluation", "the questions rated", "no question was run", "no question was rated yet")  # (sigterm_line's)


def main(args) -> int:
    # before question 1 (a dead judge, an agent that cannot load, Ctrl-C while it loads), OUT is left as it was
    # (was: a fresh OUT left with eval.json and runs/, as if evaluated)
    return stopping.main(args, _main, WORDS, files=[SETTINGS], folders=["runs"])


def sigterm_line(first: FirstWrites, out: Path) -> str:  # (kame.eval.stopping.sigterm_line, in mtbench's words)
    return stopping.sigterm_line(first, out, *WORDS)


def _main(args, first: FirstWrites) -> int:
    from .. import registry
    from ..runtime.filemode import check_tail
    from ..runtime.filerun import FileAgent
    from ..runtime.interrupt import TERMINATED_STATUS

    cats = None if args.categories.strip() == "all" else \
        tuple(dict.fromkeys(c.strip() for c in args.categories.split(",") if c.strip()))
    if cats == ():
        raise ConfigError(f"--categories {args.categories!r} names no category; e.g. reasoning,stem,humanities")
    check_tail(args.tail, args.max_tail)
    check_asr_options(args)  # (a missing whisper: said now, before anything loads)
    check_judge_spec(args.judge)
    registry.check_key_spec("--voice", "tts", args.voice)  # (was: after the judge loaded, naming no option)
    questions = read_questions(args.questions, cats, args.turns, strict=cats not in (None, DEFAULT_CATEGORIES))
    if args.limit:
        questions = questions[: args.limit]
    ref_file = read_reference_answers(args.reference) if args.reference else None
    no_ref = apply_references(questions, ref_file)
    cfg = agent_config(args)  # (checked before anything runs)
    thr = 10 ** (cfg.runtime.silence_db / 20)
    # (the voice before OUT is made and the judge loads; none for a rerun that only rates: the questions not
    # rated yet have their runs saved. A results.jsonl that cannot be read is refused below, after eval.json)
    rated = set()
    with contextlib.suppress(ConfigError, OSError):
        rated = {r["question_id"] for r in load_done(Path(args.output) / "results.jsonl", args.mode, args.turns,
                                                     problem=rated_problem)}
    tts = make_voice(args.voice, [] if args.rejudge else [saved_run(Path(args.output) / "runs", q.id)
                                                          for q in questions if q.id not in rated])
    out = check_output_folder(args.output, flag="-o")
    first.lock("eval mtbench")  # (before anything is written in OUT: a second run into it refused)
    runs = out / "runs"
    runs.mkdir(exist_ok=True)
    results = out / "results.jsonl"
    settings = check_settings(out, args, agent_fingerprint(args, cfg))
    done = load_done(results, args.mode, args.turns, problem=rated_problem)  # (a field of the wrong type: refused)
    by_q: dict[str, list[dict]] = {}
    for r in done:
        by_q.setdefault(r["question_id"], []).append(r)
    ids = {q.id for q in questions}  # (the selected ones: results.jsonl may hold others', e.g. after --categories)
    others = [q.id for q in questions if any(r.get("judge") != args.judge for r in by_q.get(q.id, ()))]
    if others and not args.rejudge:  # (a --rejudge cut short: some answers still have the old judge's rating)
        judges = sorted({str(r.get("judge")) for i in others for r in by_q[i]} - {args.judge})
        raise ConfigError(f"{results} has ratings of the judge {', '.join(judges)} for question_id "
                          f"{', '.join(others)}; give --rejudge to re-rate them with {args.judge}, or another -o")

    def saved(q: Question) -> Path:
        return saved_run(runs, q.id)

    unrated = {q.id: read_records(saved(q)) for q in questions if q.id not in by_q and saved(q).exists()}
    check_questions(questions, {**unrated, **by_q}, args.questions, results)  # (an edited question file)
    if not args.rejudge:  # (as another judge: the old ratings are not those of today's references)
        check_references(questions, by_q, ref_file, settings.get("reference_answers"), results)
    record_reference(out / SETTINGS, ref_file)

    def stale(q: Question) -> set[int]:  # the answers --rejudge rates: another judge's or reference's, unparsed,
        recs, k0 = by_q[q.id], first_changed(by_q[q.id], q.reference)  # or silence an older kame sent to the judge
        return {k for k, r in enumerate(recs) if r.get("judge") != args.judge or r.get("rating") is None
                or (k0 is not None and k >= k0) or judged_silence(r)}

    if args.rejudge:
        todo = [q for q in questions if (q.id in by_q and stale(q)) or (q.id not in by_q and saved(q).exists())]
        not_run = [q.id for q in questions if q.id not in by_q and not saved(q).exists()]
    else:
        todo, not_run = [q for q in questions if q.id not in by_q], []
    print(f"{len(questions)} question(s) ({', '.join(cats) if cats else 'all categories'}, turn"
          f"{'s 1-2' if args.turns == 2 else ' 1'}), {len(questions) - len(todo) - len(not_run)} done in {results}; "
          f"mode {args.mode}, judge {args.judge}" + (f", reference answers {ref_file.path}" if ref_file else "")
          + (f"; --rejudge: {len(todo)} to re-rate" if args.rejudge else ""), flush=True)
    if no_ref:
        print(reference_warning(no_ref, ref_file), file=sys.stderr, flush=True)
    judged = [q.id for q in questions if any(judged_silence(r) for r in by_q.get(q.id, ()))]
    if judged and not args.rejudge:  # (kept as rated: said again above the table)
        print(silence_warning(judged), file=sys.stderr, flush=True)
    embedded_judge_note(args.judge, "ratings")
    if args.mode == "cascade" and args.fast and todo and not args.rejudge:  # (kame run says it in ID.log alone)
        print(f"warning: {FAST_CASCADE}", file=sys.stderr, flush=True)
    # one event loop for the whole run: the judge's client and the agent (started once, a session per question)
    runner = asyncio.Runner()
    failed, in_a_row, new, judge, agent, asr = [], 0, [], None, None, None
    judge_failed = []  # (run, or saved before, but not rated: the judge failed)

    def fail(key: str, tag: str, who: str, exc: Exception) -> int:  # (results.failure, saying what runs/ keeps)
        rated = {r["question_id"] for r in new} | set(by_q)
        waiting = [x.id for x in questions if x.id not in rated and saved(x).exists()]
        kept = f"the answers of {', '.join(waiting)} are saved in {runs}/ (a rerun rates them, the agent not run)"
        return failure(failed, in_a_row, key, tag, who, why_failed(exc), results, kept=kept * bool(waiting))

    wrote = set()  # what this run wrote of results.jsonl and runs/ (the "wrote" line names no older files)
    terminated = False  # (SIGTERM raises Terminated from before OUT is made on: main's stop_on_sigterm)
    try:
        if todo:  # made as the agents make their LLM: at the back-end's CPU priority, in a thread
            judge = open_judge(args.judge, runner, cfg.backend.nice, args.judge_timeout)
        to_run = [] if args.rejudge else [q for q in todo if not saved(q).exists()]  # (tts: made by make_voice)
        asr = load_asr() if to_run and args.asr else None
        if to_run:
            print("warm-up: one untimed run through the agent (loading it: once for all questions)", flush=True)
            agent = FileAgent(cfg, runner)

            def leaving(term: bool) -> None:  # (a model still loads: the process leaves at once, after this)
                first.undo()
                if term:  # (was: only FileAgent's line; as below)
                    say(sigterm_line(first, out))

            warm_up(tts, agent, args.fast, before_exit=leaving)
        first.keep()  # (from here on what this run writes in OUT stays, whatever ends it)
        for i, q in enumerate(todo, 1):
            tag = f"[{i}/{len(todo)}] {q.id} ({q.category})"
            which = None
            if q.id in by_q:  # --rejudge: the stored answers
                recs, which = by_q[q.id], stale(q)
            elif q.id in unrated:  # run before, not rated yet: only rated now
                recs = unrated[q.id]
            else:
                try:
                    wrote.add("runs")  # (kame run's files of it, from its first turn on)
                    recs = run_question(args, q, tts, runs, thr, agent)
                except Exception as exc:  # noqa: BLE001 - the agent failed on this question: skipped
                    in_a_row = fail(q.id, tag, "the agent", exc)
                    continue
                with held():
                    write_records(saved(q), recs)  # (a whisper or judge failure: no rerun of it)
            if args.asr and any("heard_answer" not in r for r in recs):  # (new, or whisper failed on it before)
                try:  # (whisper loaded here if not yet: a --rejudge checks no install, and a missing one skips this)
                    asr = asr or load_asr()
                    wrote.add("runs")  # (its rec.json, heard)
                    hear_saved(recs, thr, asr, args.answer, saved(q))
                except Exception as exc:  # noqa: BLE001 - whisper failed: skipped (a rerun hears the saved run)
                    who = "the saved run" if isinstance(exc, ConfigError) else ASR
                    in_a_row = fail(q.id, tag, who, exc)
                    continue
            try:
                grade(judge, runner, recs, args.judge_timeout, args.judge, which, q.reference)
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # noqa: BLE001 - any judge failure: this question skipped
                judge_failed.append(q.id)
                in_a_row = fail(q.id, f"{tag}: {args.judge}", "the judge", exc)
                continue
            in_a_row = 0
            wrote.add("results")
            with held():  # (a SIGTERM now: the question's lines written whole, then Terminated)
                if q.id in by_q:
                    write_all(results, done)  # (the records rated again, in place)
                else:
                    lines = [{**r, "turns_asked": args.turns} for r in recs]
                    with open(results, "a") as f:  # (one write: was a line each, a SIGTERM between them
                        f.write("".join(json.dumps(r) + "\n" for r in lines))  # left half a question)
                    new += lines
            print(f"{tag}: rating "
                  + ", ".join("unparsed" if r["rating"] is None else f"{r['rating']:g}" for r in recs)
                  + ", latency " + secs(recs, "latency_s")
                  + (", content latency " + secs(recs, "content_latency_s")) * args.asr, flush=True)
    except Terminated:  # (was: killed at once, or exit 130 when FileAgent took it as Ctrl-C)
        terminated = True
        settle(runner)
    finally:  # (a SIGTERM while the agent and the judge close: noted, they close, then it ends the evaluation, 143;
        # was: raised in them, "kame eval mtbench: interrupted", 130. One after a first SIGTERM: quits at once)
        terminated = close_held(runner, judge, terminated, agent)
    if terminated:  # as kame run: 128 + 15 (a script must not take the evaluation cut short for complete)
        first.undo()  # (a SIGTERM before question 1: OUT as it was)
        say(sigterm_line(first, out))
        return TERMINATED_STATUS
    records = [r for r in done + new if r["question_id"] in ids]
    text = table(records, cats or (), by_turn=args.turns == 2, content=args.asr)
    # run: rated, or run and saved but not rated (was: those left out, "0 run" after the judge failed)
    ran = {r["question_id"] for r in records} | {q.id for q in questions if saved(q).exists()}
    lines = notes(args, questions, records, ran, ref_file=ref_file, failed=failed, judge_failed=judge_failed,
                  todo=todo, stored=set(by_q), not_run=not_run, out=out)
    print("\n" + "\n".join(lines) + "\n\n" + text)
    (out / "results.md").write_text("\n".join(lines) + "\n\n" + text + "\n")
    # (only what this run wrote: a --rejudge with nothing to re-rate writes no results.jsonl and runs nothing)
    files = [str(results)] * ("results" in wrote) + [str(out / "results.md")] + [f"{runs}/"] * ("runs" in wrote)
    print(f"\nwrote {', '.join(files)}")
    return 1 if failed else 0

