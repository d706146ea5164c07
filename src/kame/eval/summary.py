"""``kame eval mtbench``'s summary (printed and in OUT/results.md): the table per category
(``table``) and the notes above it (``notes``: what was run and rated, the turns with no answer,
the failures, what a --rejudge left), and the rule for a turn without an answer (SAID_NOTHING,
``judged_silence``: one an older kame sent to the judge)."""

from __future__ import annotations

import math

from .reference import unreferenced

SAID_NOTHING = 1.0  # the rating of a turn the agent said nothing in (MT-Bench's lowest; the judge is not asked)
FAST_CASCADE = ("--fast with --mode cascade: no wall-clock pacing leaves its STT, LLM and TTS no time (virtual time "
                "runs ahead of them), so turns go unanswered (rated 1, the judge not asked) and the latencies mean "
                "nothing; leave --fast out to evaluate a cascade")


def no_answer(r: dict) -> bool:
    """Record ``r`` (a turn's, or a pair's answer) holds no answer: nothing to rate."""
    return not str(r.get("answer") or "").strip()


def judged_silence(r: dict) -> bool:
    """A rated turn with no answer that the judge rated (an older kame sent silence to it, which
    a judge may rate 10), not SAID_NOTHING: --rejudge rates it again, a plain resume warns."""
    return no_answer(r) and not r.get("said_nothing") and "rating" in r


def silence_warning(qids: list[str]) -> str:
    """What a plain resume says of the stored turns ``judged_silence`` finds (by question id)."""
    return (f"warning: {len(qids)} question(s) hold a turn with no answer that the judge rated (an older kame "
            f"sent silence to it; now rated {SAID_NOTHING:g} without asking the judge): {', '.join(qids)}; give "
            f"--rejudge to rate them again")


# ---------------------------------------------------------------------------- the table
def latency(r: dict, key: str) -> float | None:
    """Record ``r``'s ``key`` latency (seconds) as the table and the printout count it: None (never)
    for a turn the agent gave no answer in, whatever sound its record measured (was: a reply begun
    before the question's end and cut off before its first word, still sounding then, gave such a
    turn 0.00 s, which pulled the median latency down). The answer is the text one: under --answer
    heard a turn whisper heard no words in (said_nothing) keeps its latency when the agent had a text
    answer (its sound is what latency measures: kame.eval.heard); an older record of an empty answer,
    without said_nothing, counts as never too (a record with no answer field at all: by said_nothing)."""
    return None if gave_no_answer(r) else r.get(key)


def gave_no_answer(r: dict) -> bool:
    """Record ``r``'s turn had no text answer (``latency``'s never, whatever its latency_s): under
    --answer heard its text_answer, else its answer; one with neither field: by said_nothing."""
    text = r.get("text_answer", r.get("answer"))
    return bool(r.get("said_nothing")) if text is None else no_answer({"answer": text})


def _med(rs: list[dict], key: str) -> str:
    from ..bench.latency_report import pct_never

    med = pct_never([latency(r, key) for r in rs], 0.5)  # (a turn without sound or text answer: +inf, as in kame bench latency)
    return "never" if med == math.inf else ("–" if med != med else f"{med:.2f}")


def secs(recs: list[dict], key: str) -> str:
    """The ``key`` seconds of each record, for the line printed per question."""
    return ", ".join("never" if latency(r, key) is None else f"{r[key]:.2f} s" for r in recs)


def _row(name: str, rs: list[dict], mean: float | None = None, content: bool = False) -> str:
    rated = [r["rating"] for r in rs if r["rating"] is not None]
    if mean is None and rated:
        mean = sum(rated) / len(rated)
    med = _med(rs, "latency_s") + (f" | {_med(rs, 'content_latency_s')}" if content else "")
    return f"| {name} | {len(rs)} | {'–' if mean is None else f'{mean:.2f}'} | {med} | {len(rs) - len(rated)} |"


def table(records: list[dict], categories, by_turn: bool = False, content: bool = False) -> str:
    """Per category (n, mean rating, median latency, ``content``: median content latency, unparsed),
    then "avg of categories" (the mean of the category means: KAME's avg) and "overall" (the mean
    of all ratings); ``by_turn``: the rows of each turn apart, then overall for all turns."""
    cats = [c for c in categories if any(r["category"] == c for r in records)] + \
        sorted({r["category"] for r in records} - set(categories))
    cols = "| median latency (s) " + "| median content latency (s) " * content
    lines = [f"| category | n | mean score (1-10) {cols}| unparsed |", "|---" * (5 + content) + "|"]
    groups = [(f", turn {t}", [r for r in records if r.get("turn", 1) == t])
              for t in sorted({r.get("turn", 1) for r in records})] if by_turn else [("", records)]
    for suffix, recs in groups:
        means = []
        for c in cats:
            rs = [r for r in recs if r["category"] == c]
            if rs:
                lines.append(_row(c + suffix, rs, content=content))
                rated = [r["rating"] for r in rs if r["rating"] is not None]
                if rated:
                    means.append(sum(rated) / len(rated))
        avg = sum(means) / len(means) if means else None
        lines.append(_row(f"*avg of categories{suffix}*", recs, avg, content))
        lines.append(_row(f"**overall{suffix}**", recs, content=content))
    if by_turn:
        lines.append(_row("**overall, all turns**", records, content=content))
    return "\n".join(lines)


# ---------------------------------------------------------------------------- the notes
def notes(args, questions: list, records: list[dict], ran: set, *, ref_file, failed: list, judge_failed: list,
          todo: list, stored: set, not_run: list, out) -> list[str]:
    """The lines above the table: ``questions`` (the selected ones), ``records`` (their rated
    turns), ``ran`` (the ids run: rated, or saved and not rated), ``failed`` / ``judge_failed``
    (the ids skipped this run), ``todo`` (what this run had to do), ``stored`` (the ids with
    rated answers before it), ``not_run`` (--rejudge: never run), ``out`` (OUT)."""
    rated = sum(r["rating"] is not None for r in records)
    unjudged = [q.id for q in questions if q.id in ran and not any(r["question_id"] == q.id for r in records)]
    lines = [f"kame eval mtbench: {len(questions)} question(s): {len(ran)} run, "
             f"{rated} rated, {len(records) - rated} unparsed" + (" (answers: 2 turns each)" if args.turns == 2 else "")
             + (f", {len(unjudged)} not rated yet ({', '.join(unjudged)}: a rerun rates them)" if unjudged else "")
             + f"; mode {args.mode}, judge {args.judge}" + (f", reference answers {ref_file.path}" if ref_file else "")
             + (f"; --asr: content latency by whisper tiny.en, the judge rated the {args.answer} answers" if args.asr
                else "")]
    unref = unreferenced((q.id, q.category, [r.get("reference") for r in records if r["question_id"] == q.id])
                         for q in questions)
    if unref:
        lines.append(f"judged without a reference answer (FastChat's MT-Bench has one): {', '.join(unref)}")
    if any(r.get("frontend_random") for r in records):
        lines.append("NOTE: the tandem front-end has RANDOM WEIGHTS: its answers are babble and their ratings "
                     "mean nothing until a trained front-end exists (the cascade's are real)")
    turn = (lambda r: f" turn {r['turn']}") if args.turns == 2 else (lambda r: "")
    silent = [f"{r['question_id']}{turn(r)}" for r in records if r.get("said_nothing")]
    if silent:  # (--answer heard: whisper heard no word, though the agent may have made sound, e.g. babble)
        what = ("whisper heard no words of the agent in (--answer heard)" if args.asr and args.answer == "heard"
                else "the agent said nothing in")
        lines.append(f"{len(silent)} turn(s) {what}, rated {SAID_NOTHING:g} without asking the judge: "
                     f"{', '.join(silent)}")
        # (was: not said, so a rerun of a folder made before this rule changed its medians silently)
        never = sum(gave_no_answer(r) for r in records if r.get("said_nothing"))  # (was: also a text answer made
        # without sound, latency_s None, said to have "no text answer either")
        which = "these turns" if never == len(silent) else f"{never} of them (no text answer either)"
        if never:
            lines.append(f"the latencies of {which} count as never in the table: they gave no answer "
                         f"(results.jsonl's latency_s keeps the sound measured)")
    judged = list(dict.fromkeys(r["question_id"] for r in records if judged_silence(r)))
    if judged:  # (a plain resume of a folder an older kame rated; --rejudge leaves none)
        lines.append(silence_warning(judged))
    if args.mode == "cascade" and args.fast and not args.rejudge:
        lines.append(f"warning: {FAST_CASCADE}")
    if failed and args.rejudge:
        lines.append(f"{len(failed)} question(s) could not be re-rated, kept with their earlier rating: "
                     f"{', '.join(failed)} (rerun with --rejudge to retry)")
    elif failed:
        why = f"; the judge failed on {', '.join(judge_failed)}, run but not rated" if judge_failed else ""
        lines.append(f"{len(failed)} question(s) failed, not in the table: {', '.join(failed)}{why} (rerun to retry)")
    if args.rejudge and not todo:  # (of the selected questions: results.jsonl may hold others')
        why = (f"the selected questions' stored answers all have a rating of {args.judge}"
               if any(q.id in stored for q in questions)
               else f"none of the {len(questions)} selected question(s) has an answer stored in {out}")
        lines.append(f"--rejudge: nothing to re-rate ({why})")
    if not_run:
        lines.append(f"--rejudge: {len(not_run)} question(s) never run, not in the table: {', '.join(not_run)} "
                     f"(rerun without --rejudge to run them)")
    return lines
