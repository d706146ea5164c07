"""Spoken MT-Bench: ``kame eval mtbench``.

    kame eval mtbench question.jsonl -o out/mtbench --judge openai:gpt-4.1            # tandem
    kame eval mtbench question.jsonl -o out/mtbench-cascade --judge openai:gpt-4.1 --mode cascade
    kame eval mtbench question.jsonl -o out/q --judge embedded --limit 3 --set backend.llm=openai:gpt-4.1-mini

The questions are MT-Bench's ``question.jsonl`` as FastChat ships it (one JSON object a line:
question_id, category, turns, and reference for some); bring the file, nothing is downloaded.
By default the categories reasoning, stem and humanities (KAME's: the others are unsuited to
speech) and the first turn. Each question is spoken by a TTS (``--voice``, default the bundled
piper voice) into OUT/runs/ID.in.wav, run through the agent exactly as ``kame run`` does
(kame.runtime.filemode.main: OUT/runs/ID.wav, ID.json, ID.log), and what the agent said is graded
1-10 by an LLM judge (kame.eval.judge). ``--turns 2`` speaks the second question ``--gap`` seconds
after the first one's end, in the same conversation, and grades both answers (the second with
the first as context).

Per question and turn, OUT/results.jsonl gets one line: the question, the agent's answer (the
agent's text in the turn's window: the cascade's reply, the tandem front-end's text stream; for a
tandem also the LLM's answer it was fed, ``llm_answer``), the rating (null when the judge's reply
had none: counted as "unparsed"), the judge's reply, the latency (user's end of speech -> first
10 ms of agent audio above runtime.silence_db, as kame.bench.latency measures it; null: no sound
in the window) and the run's files. A rerun into the same folder skips the questions already
there. A table per category (n, mean rating, median latency, unparsed) and overall is printed and
written to OUT/results.md. A judge that fails on a question: reported, the question skipped
(a rerun retries it); five failures in a row stop the evaluation.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..audio import SAMPLE_RATE as SR, read_wav, write_wav
from ..cliargs import at_least
from ..errors import ConfigError, KameError
from ..paths import check_output_folder

DEFAULT_CATEGORIES = ("reasoning", "stem", "humanities")
LEAD_S = 0.5  # silence before the first question
MAX_JUDGE_FAILURES = 5  # in a row: the judge is down, stop


@dataclass
class Question:
    id: str  # question_id as a string (FastChat's are ints)
    category: str
    turns: list[str]
    reference: list[str] | None
    where: str  # file:line, for errors


# ---------------------------------------------------------------------------- questions
def read_questions(path: str | Path, categories=DEFAULT_CATEGORIES, turns: int = 1) -> list[Question]:
    """The questions of ``path`` in ``categories`` (None: all), each with at least ``turns`` turns."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such question file; give MT-Bench's question.jsonl (FastChat's "
                          f"fastchat/llm_judge/data/mt_bench/question.jsonl; kame downloads nothing)")
    out, seen, found = [], {}, set()
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            d = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno}); each line must be "
                              f"one question object") from None
        if not isinstance(d, dict) or "question_id" not in d or not isinstance(d.get("category"), str) \
                or not isinstance(d.get("turns"), list) or not d["turns"] \
                or not all(isinstance(t, str) and t.strip() for t in d["turns"]):
            raise ConfigError(f"{where}: a question needs question_id, category (a string) and turns (a list "
                              f"of non-empty strings), as MT-Bench's question.jsonl has")
        ref = d.get("reference")
        if ref is not None and not (isinstance(ref, list) and all(isinstance(r, str) for r in ref)):
            raise ConfigError(f"{where}: reference must be a list of strings (one per turn)")
        qid = str(d["question_id"])
        if qid in seen:
            raise ConfigError(f"{where}: question_id {qid} again (first at {seen[qid]}); ids must be unique")
        seen[qid] = where
        found.add(d["category"])
        if categories is not None and d["category"] not in categories:
            continue
        if len(d["turns"]) < turns:
            raise ConfigError(f"{where}: question {qid} has {len(d['turns'])} turn(s), --turns {turns} needs {turns}")
        out.append(Question(qid, d["category"], [t.strip() for t in d["turns"][:turns]], ref, where))
    if not out:
        raise ConfigError(f"{path}: no question left in categories {', '.join(categories or ())} (the file has "
                          f"{', '.join(sorted(found)) or 'none'}); see --categories")
    return out


# ---------------------------------------------------------------------------- speech
def speak(tts, texts: list[str], gap: float) -> tuple[np.ndarray, list]:
    """The user's side: LEAD_S of silence, then each text spoken, ``gap`` seconds between them;
    with a kame.bench.latency.UserTurn per text (start/end of its speech; window_end is the next
    turn's start, or the end of the audio: the caller sets the last one)."""
    from ..bench.latency import UserTurn
    from ..runtime.interrupt import run_to_end

    async def synth(text: str) -> np.ndarray:
        return np.concatenate([c async for c in tts.synthesize(text)] or [np.zeros(0, np.float32)])

    parts, turns, t = [np.zeros(int(LEAD_S * SR), np.float32)], [], LEAD_S
    for i, text in enumerate(texts):
        if i:
            parts.append(np.zeros(int(gap * SR), np.float32))
            t += gap
        pcm = np.asarray(run_to_end(synth(text)), np.float32)
        loud = np.flatnonzero(np.abs(pcm) > 10 ** (-50 / 20))  # (as latency.build_dialogues trims)
        if not loud.size:
            raise KameError(f"the TTS gave no audible speech for {text[:60]!r}")
        pcm = pcm[: loud[-1] + 1]
        turns.append(UserTurn(0, i, text, "", float(t + loud[0] / SR), float(t + pcm.shape[0] / SR), 0.0))
        parts.append(pcm)
        t += pcm.shape[0] / SR
    for a, b in zip(turns, turns[1:]):
        a.window_end = b.start
    return np.concatenate(parts), turns


# ---------------------------------------------------------------------------- one question
def run_question(args, q: Question, tts, runs: Path, thr: float) -> list[dict]:
    """Speak ``q``, run it through the agent as ``kame run`` does, one record per turn (no rating yet)."""
    from ..bench.latency import first_voiced, answer_text
    from ..runtime import filemode

    pcm, turns = speak(tts, q.turns, args.gap)
    stem = runs / _safe(q.id)
    wav_in, wav_out, log = stem.with_suffix(".in.wav"), stem.with_suffix(".wav"), stem.with_suffix(".log")
    write_wav(wav_in, pcm, SR)
    wav_out.with_suffix(".json").unlink(missing_ok=True)  # (an earlier attempt's, not to be read as this one's)
    ns = argparse.Namespace(**{**vars(args), "input": str(wav_in), "output": str(wav_out), "no_png": True})
    with open(log, "w") as f, contextlib.redirect_stdout(f):  # (kame run's printout: in ID.log)
        try:
            rc = filemode.main(ns)
        except KameError as exc:  # the front-end failed: the files are written, the answer is what it is
            if not wav_out.with_suffix(".json").exists():  # (no run at all: e.g. the agent made no audio)
                raise KameError(f"question {q.id}: {exc}") from None
            print(f"error     {exc}", file=f)
            rc = 0
    if rc == 130:
        raise KeyboardInterrupt
    doc = json.loads(wav_out.with_suffix(".json").read_text())
    audio, _ = read_wav(wav_out, None, mono=False)
    agent = audio[:, 1]
    turns[-1].window_end = agent.shape[0] / SR
    mode = doc["components"].get("mode") or args.mode or "tandem"
    out = []
    for k, ut in enumerate(turns):
        answer = "".join(a["text"] for a in doc["agent_text"] if ut.start <= a["t"] < ut.window_end)
        hit = first_voiced(agent, ut.end, ut.window_end, thr)
        rec = {"question_id": q.id, "category": q.category, "turn": k + 1, "mode": mode, "question": ut.text,
               "answer": answer.replace("\u2581", " ").strip(),
               "latency_s": None if hit is None else round(max(0.0, hit - ut.end), 3),
               "user_end_s": round(ut.end, 3), "reference": q.reference[k] if q.reference and k < len(q.reference) else None,
               "frontend_random": doc.get("frontend_random", False), "errors": len(doc.get("errors", ())),
               "files": {"input": str(wav_in), "output": str(wav_out), "json": str(wav_out.with_suffix(".json")),
                         "log": str(log)}}
        if mode == "tandem":  # what the LLM answered (fed to the front-end as its oracle)
            rec["llm_answer"] = answer_text("tandem", doc, ut)
        if k + 1 < len(turns):  # agent still audible just before the next question: cut by it
            rec["cut_by_next_turn"] = first_voiced(agent, max(ut.end, ut.window_end - 0.5), ut.window_end, thr) is not None
        out.append(rec)
    return out


def _safe(qid: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in qid) or "q"


def grade(judge, runner, recs: list[dict], timeout_s: float) -> None:
    """Judge each turn's answer (in place: rating, judge_reply); raises what the judge raises."""
    from .judge import ask_judge, judge_messages, parse_rating

    for k, r in enumerate(recs):
        msgs = judge_messages(r["question"], r["answer"], reference=r["reference"],
                              history=[(p["question"], p["answer"]) for p in recs[:k]])
        reply = runner.run(ask_judge(judge, msgs, timeout_s=timeout_s))
        r["judge_reply"], r["rating"] = reply, parse_rating(reply)


# ---------------------------------------------------------------------------- results
def load_done(path: Path, mode: str, turns: int) -> list[dict]:
    """The records already in results.jsonl (resume); refused if they are of another mode/--turns."""
    if not path.exists():
        return []
    done = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            raise ConfigError(f"{path}:{n}: not valid JSON (a run cut while writing?); delete that line to "
                              f"resume, or give another -o") from None
        if r.get("mode") != mode or r.get("turns_asked", 1) != turns:
            raise ConfigError(f"{path} holds results of --mode {r.get('mode')} --turns {r.get('turns_asked', 1)}, "
                              f"not of --mode {mode} --turns {turns}; give another -o")
        done.append(r)
    return done


def _median(xs: list) -> float:
    """Median latency, a turn without sound counting as +inf (kame.bench.latency's way); nan for none."""
    from ..bench.machine import pct

    return pct([math.inf if x is None else x for x in xs], 0.5)


def table(records: list[dict], categories) -> str:
    """Per category (n, mean rating, median latency, unparsed) and overall, as KAME's table."""
    cats = [c for c in categories if any(r["category"] == c for r in records)] + \
        sorted({r["category"] for r in records} - set(categories))
    lines = ["| category | n | mean score (1-10) | median latency (s) | unparsed |", "|---|---|---|---|---|"]
    for name, rs in [(c, [r for r in records if r["category"] == c]) for c in cats] + [("overall", records)]:
        rated = [r["rating"] for r in rs if r["rating"] is not None]
        mean = f"{sum(rated) / len(rated):.2f}" if rated else "–"
        med = _median([r["latency_s"] for r in rs])
        med = "never" if med == math.inf else ("–" if med != med else f"{med:.2f}")
        lines.append(f"| {'**overall**' if name == 'overall' else name} | {len(rs)} | {mean} | {med} | "
                     f"{len(rs) - len(rated)} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- CLI
def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..config import add_config_arguments

    p.add_argument("questions", help="MT-Bench's question.jsonl (FastChat's format; bring it: nothing is downloaded)")
    p.add_argument("-o", "--output", required=True, metavar="OUT/",
                   help="folder for results.jsonl, results.md and runs/ (a rerun resumes)")
    p.add_argument("--judge", required=True, metavar="SPEC",
                   help="the judge LLM, e.g. openai:gpt-4.1 (real scores); embedded runs offline but its "
                        "ratings mean little")
    add_config_arguments(p)
    p.add_argument("--mode", choices=("tandem", "cascade"), default="tandem", help="the agent (default tandem)")
    p.add_argument("--categories", default=",".join(DEFAULT_CATEGORIES),
                   help=f"comma-separated categories, or 'all' (default {','.join(DEFAULT_CATEGORIES)})")
    p.add_argument("--turns", type=int, choices=(1, 2), default=1,
                   help="1: the first question only (default); 2: also the second, in the same conversation")
    p.add_argument("--gap", type=at_least(1.0, float), default=30.0,
                   help="--turns 2: seconds from the first question's end to the second's start (default 30)")
    p.add_argument("--limit", type=at_least(1), default=None, help="only the first N questions (after filtering)")
    p.add_argument("--voice", default="piper", metavar="SPEC",
                   help="TTS speaking the questions (default piper: the bundled voice; espeak:VOICE is faster)")
    p.add_argument("--tail", type=float, default=30.0,
                   help="seconds of silence after the (last) question for the answer (default 30)")
    p.add_argument("--max-tail", type=float, default=90.0,
                   help="a cascade still answering after --tail gets more silence, up to this in all (default 90)")
    p.add_argument("--fast", action="store_true", help="no wall-clock pacing (latencies then mean little)")
    p.add_argument("--judge-timeout", type=at_least(1.0, float), default=180.0,
                   help="seconds for one judge reply (default 180)")


def main(args) -> int:
    from .. import registry
    from ..config import config_from_args
    from ..runtime.filemode import check_tail

    cats = None if args.categories.strip() == "all" else \
        tuple(dict.fromkeys(c.strip() for c in args.categories.split(",") if c.strip()))
    if cats == ():
        raise ConfigError(f"--categories {args.categories!r} names no category; e.g. reasoning,stem,humanities")
    check_tail(args.tail, args.max_tail)
    if args.judge.strip() in ("", "none"):
        raise ConfigError("--judge: give the judge LLM, e.g. openai:gpt-4.1 (or embedded, offline)")
    questions = read_questions(args.questions, cats, args.turns)
    if args.limit:
        questions = questions[: args.limit]
    cfg = config_from_args(args)  # (checked before anything runs)
    thr = 10 ** (cfg.runtime.silence_db / 20)
    out = check_output_folder(args.output, flag="-o")
    runs = out / "runs"
    runs.mkdir(exist_ok=True)
    results = out / "results.jsonl"
    done = load_done(results, args.mode, args.turns)
    have = {r["question_id"] for r in done}
    todo = [q for q in questions if q.id not in have]
    print(f"{len(questions)} question(s) ({', '.join(cats) if cats else 'all categories'}, turn"
          f"{'s 1-2' if args.turns == 2 else ' 1'}), {len(questions) - len(todo)} already in {results}; "
          f"mode {args.mode}, judge {args.judge}", flush=True)
    if args.judge.split(":")[0] in ("embedded", "smollm2"):
        print("note: the embedded judge runs offline but its ratings mean little; use --judge openai:MODEL "
              "for real scores", flush=True)
    if args.max_tail < args.tail:
        args.max_tail = args.tail
    runner = asyncio.Runner()  # the judge's own loop, kept for the whole run (its client lives in it)
    failed, in_a_row, new, judge = [], 0, [], None
    try:
        judge = runner.run(_create(registry, "llm", args.judge)) if todo else None
        tts = registry.create("tts", args.voice) if todo else None
        for i, q in enumerate(todo, 1):
            recs = run_question(args, q, tts, runs, thr)
            try:
                grade(judge, runner, recs, args.judge_timeout)
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # noqa: BLE001 - any judge failure: this question skipped
                why = "timed out" if isinstance(exc, asyncio.TimeoutError) else f"{type(exc).__name__}: {exc}"
                failed.append(q.id)
                in_a_row += 1
                print(f"[{i}/{len(todo)}] {q.id} ({q.category}): the judge failed ({why}); skipped "
                      f"(a rerun retries it)", file=sys.stderr, flush=True)
                if in_a_row >= MAX_JUDGE_FAILURES:
                    raise KameError(f"the judge {args.judge} failed on {in_a_row} questions in a row ({why}); "
                                    f"stopped. The results so far are in {results}; fix the judge and rerun "
                                    f"to resume") from None
                continue
            in_a_row = 0
            with open(results, "a") as f:
                for r in recs:
                    f.write(json.dumps({**r, "turns_asked": args.turns, "judge": args.judge}) + "\n")
            new += recs
            print(f"[{i}/{len(todo)}] {q.id} ({q.category}): rating "
                  + ", ".join("unparsed" if r["rating"] is None else f"{r['rating']:g}" for r in recs)
                  + ", latency " + ", ".join("never" if r["latency_s"] is None else f"{r['latency_s']:.2f} s"
                                             for r in recs), flush=True)
    finally:
        if judge is not None:
            with contextlib.suppress(Exception):
                runner.run(judge.aclose())
        runner.close()
    ids = {q.id for q in questions}
    records = [r for r in done + new if r["question_id"] in ids]
    text = table(records, cats or ())
    random_fe = any(r.get("frontend_random") for r in records)
    notes = [f"kame eval mtbench: {len({r['question_id'] for r in records})}/{len(questions)} question(s) rated, "
             f"mode {args.mode}, judge {args.judge}"]
    if random_fe:
        notes.append("NOTE: the tandem front-end has RANDOM WEIGHTS: its answers are babble and their ratings "
                     "mean nothing until a trained front-end exists (the cascade's are real)")
    if failed:
        notes.append(f"the judge failed on {len(failed)} question(s), not in the table: {', '.join(failed)} "
                     f"(rerun to retry)")
    print("\n" + "\n".join(notes) + "\n\n" + text)
    (out / "results.md").write_text("\n".join(notes) + "\n\n" + text + "\n")
    print(f"\nwrote {results}, {out / 'results.md'}, {runs}/")
    return 1 if failed else 0


async def _create(registry, kind: str, spec: str):
    return registry.create(kind, spec)  # (inside the judge's loop: a client made here belongs to it)
