"""The output folders' files of ``kame eval mtbench`` and ``kame eval pairwise``, shared by both:
their settings file (read_settings: eval.json, pairwise.json; kame eval follow's follow.json;
check_not_other: one command's folder given to another refused), their results.jsonl (read_jsonl,
load_done: resume; rated_problem: what is wrong with a line of mtbench's; has_results: anything in
it yet; write_all: rewritten in place, whole or not at all), a question's or pair's failure (failure: reported, MAX_FAILURES in a row stop),
mtbench's saved runs (runs/ID.rec.json: write_records, read_records) and answers stored for other
questions than the question file has now (check_questions; differ: where two texts differ).
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

from ..backend.options import is_finite_number
from ..errors import ConfigError, KameError
from ..paths import text_lines, write_replacing
from .judge import why_failed

PAIRWISE_SETTINGS = "pairwise.json"  # kame eval pairwise's settings, in its OUT_PAIR (mtbench's: eval.json)
FOLLOW_SETTINGS = "follow.json"  # kame eval follow's, in its -o
SETTINGS_FILES = {"kame eval mtbench": "eval.json", "kame eval pairwise": PAIRWISE_SETTINGS,
                  "kame eval follow": FOLLOW_SETTINGS}  # each command's settings file in its output folder
MAX_FAILURES = 5  # questions (pairs) failed in a row (agent or judge): something is down, stop


def has_results(path: Path) -> bool:
    """``path`` (a results.jsonl) exists and holds more than white space."""
    return path.exists() and bool(path.read_bytes().decode("utf-8", "replace").strip())


def read_settings(path: Path, fix: str) -> dict:
    """The object of a settings file (eval.json; kame eval pairwise's pairwise.json); refused when
    it is not one (``fix``: what to do)."""
    with contextlib.suppress(ValueError):
        if isinstance(have := json.loads(path.read_text()), dict):
            return have
    raise ConfigError(f"{path}: not valid settings (a JSON object; a file cut while writing?); {fix}")


def check_not_other(out: Path, command: str, where: str = "", fix: str = "give another -o") -> None:
    """``out`` holding another command's settings file (SETTINGS_FILES) and not ``command``'s own
    is refused as that command's folder (``where``: how the message names it; default "OUT is")."""
    if (out / SETTINGS_FILES[command]).exists():
        return
    for other, name in SETTINGS_FILES.items():
        if other != command and (out / name).exists():
            raise ConfigError(f"{where or f'{out} is'} a {other} folder ({name}), not a {command} one; {fix}")


def write_settings(path: Path, doc: dict) -> None:
    """eval.json written whole or not at all (a cut one would refuse the folder's results:
    kame.paths.write_replacing)."""
    text = json.dumps(doc, indent=1) + "\n"
    write_replacing(path, lambda tmp: tmp.write_text(text), "settings file")


def read_jsonl(path: Path, fix: str, ok=None, needs: str = "", problem=None) -> list[dict]:
    """The records of a results.jsonl (none when it is missing); refused, by file:line, a line that
    is not JSON, not an object or one ``ok(record)`` rejects (``needs``: what one needs), or one in
    which ``problem(record)`` finds a field of the wrong type or value (it says which, else None).
    A line with bytes that are not UTF-8 (a character cut while writing) is not JSON either."""
    done = []
    text = path.read_bytes().decode("utf-8", "surrogateescape") if path.exists() else ""
    for n, line in enumerate(text_lines(text), 1):  # (an editor's line numbers, as the other JSONL readers')
        try:
            line.encode("utf-8")  # (its bytes that are not UTF-8: kept as lone surrogates, which cannot be)
            done += [json.loads(line.strip())] if line.strip() else []  # (stripped: a \x0c or \x1c at its end,
            # which str.splitlines split off, is no "Extra data")
        except (UnicodeEncodeError, json.JSONDecodeError):
            raise ConfigError(f"{path}:{n}: not valid JSON (cut while writing?); delete that line, or {fix}") from None
        if line.strip() and not (isinstance(done[-1], dict) and (ok is None or ok(done[-1]))):
            raise ConfigError(f"{path}:{n}: not a record ({needs or 'a JSON object'}); delete that line, or {fix}")
        why = problem(done[-1]) if line.strip() and problem is not None else None
        if why:
            raise ConfigError(f"{path}:{n}: {why}; fix or delete that line (a rerun runs its question again), or {fix}")
    return done


def _non_negative(v) -> bool:  # (a finite number >= 0, not a bool)
    return is_finite_number(v) and v >= 0


def rated_problem(r: dict) -> str | None:
    """What is wrong with a record of `kame eval mtbench`'s results.jsonl (a rated turn), naming the
    field, or None: what its resume and table read must be of their type (was: "rating": "7" a
    TypeError, "latency_s": "x" a ValueError, "rating": 70 averaged on the 1-10 scale)."""
    for key in ("question_id", "category"):
        if not isinstance(r.get(key), str):
            return f"{key} {r[key]!r} is not a string" if key in r else f"no {key}"
    if type(r.get("turn", 1)) is not int or r.get("turn", 1) < 1:
        return f"turn {r['turn']!r} is not a whole number >= 1"
    if "rating" not in r:
        return "no rating (null when the judge's reply had none)"
    rating = r["rating"]
    if rating is not None and not (_non_negative(rating) and 1 <= rating <= 10):
        return f"rating {rating!r} is not a number from 1 to 10 (or null: unparsed)"
    for key in ("latency_s", "content_latency_s"):
        if r.get(key) is not None and not _non_negative(r[key]):
            return f"{key} {r[key]!r} is not seconds (a number >= 0, or null: no sound)"
    for key in ("question", "answer"):
        if r.get(key) is not None and not isinstance(r[key], str):
            return f"{key} {r[key]!r} is not a string"
    return None


def load_done(path: Path, mode: str, turns: int, fix: str = "give another -o", ok=None, needs: str = "",
              problem=None) -> list[dict]:
    """The records already in results.jsonl (resume; ``ok``, ``needs``, ``problem``: as read_jsonl's);
    refused if they are of another mode/--turns (``fix``: what to do)."""
    done = read_jsonl(path, fix, ok, needs, problem)
    for r in done:
        if r.get("mode") != mode or r.get("turns_asked", 1) != turns:
            raise ConfigError(f"{path} holds results of --mode {r.get('mode')} --turns {r.get('turns_asked', 1)}, "
                              f"not of --mode {mode} --turns {turns}; {fix}")
    return done


def write_all(path: Path, records: list[dict]) -> None:
    """``path`` replaced by ``records``, one JSON line each (records judged again, in place)."""
    write_replacing(path, lambda tmp: tmp.write_text("".join(json.dumps(r) + "\n" for r in records)), "results file")


def failure(failed: list, in_a_row: int, key: str, tag: str, who: str, why: str, results: Path, noun="questions",
            kept: str = "") -> int:
    """Report ``key`` (a question id; ``noun``: what is skipped, e.g. "pairs") skipped, ``who`` having
    failed; the failures in a row so far (MAX_FAILURES: stop, saying what is saved: ``results``
    if it holds any, and ``kept``, e.g. mtbench's runs not rated yet)."""
    failed.append(key)
    in_a_row += 1
    print(f"{tag}: {who} failed ({why}); skipped (a rerun retries it)", file=sys.stderr, flush=True)
    if in_a_row >= MAX_FAILURES:  # (was: "the results so far are in" a results.jsonl never written)
        saved = [f"the results so far are in {results}" if has_results(results) else
                 f"no result is saved in {results} yet"] + [kept] * bool(kept)
        saved = "; ".join(saved)
        raise KameError(f"{in_a_row} {noun} failed in a row (the last: {who} failed: {why}); stopped. "
                        f"{saved[:1].upper()}{saved[1:]}; fix it and rerun to resume") from None
    return in_a_row


def differ(a: str, b: str, width: int = 50) -> tuple[str, str]:
    """The parts of texts ``a`` and ``b`` from a little before where they first differ ("..."
    where cut), so that two long texts that differ at their end do not look the same."""
    i = next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    start = max(0, i - 20)

    def cut(t: str) -> str:
        return ("..." if start else "") + t[start:start + width] + ("..." if len(t) > start + width else "")
    return cut(a), cut(b)


def check_questions(questions: list, stored: dict, qfile, results: Path) -> None:
    """Refuse stored answers (``stored``: question id -> its records, rated or saved runs) to other
    questions than ``questions`` (read from ``qfile``) have now: another category or turn text
    for the same id (an edited question file: the answers are not this question's)."""
    diffs = []
    for q in questions:
        recs = stored.get(q.id) or ()
        cats = {r.get("category") for r in recs} - {q.category}
        if cats:
            diffs.append(f"{q.id} (category {', '.join(map(str, cats))} there, {q.category} now)")
            continue
        for r in recs:
            k, was = r.get("turn", 1) - 1, r.get("question")
            if isinstance(was, str) and 0 <= k < len(q.turns) and was.strip() != q.turns[k].strip():
                there, now = differ(was.strip(), q.turns[k].strip())
                diffs.append(f"{q.id} turn {k + 1} ({there!r} there, {now!r} now)")
    if diffs:  # (was: resumed silently, the old answers and ratings kept under the new text)
        raise ConfigError(f"{results.parent} holds answers to other questions than {qfile} has now, for question_id "
                          f"{'; '.join(diffs)}: the question file was edited; give the one the folder was run with, "
                          f"or another -o")


def write_records(path: Path, recs: list[dict]) -> None:
    """A question's records (runs/ID.rec.json), written whole or not at all (write_replacing: an
    interrupted rewrite leaves the saved run as it was)."""
    write_replacing(path, lambda tmp: tmp.write_text(json.dumps(recs, indent=1)), "saved run")


def read_records(path: Path) -> list[dict]:
    """A question's saved records (write_records); ConfigError naming the file for one that is not."""
    try:
        recs = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a saved run ({why_failed(exc)}); delete it to run the question again") from None
    if not isinstance(recs, list) or not all(isinstance(r, dict) for r in recs):
        raise ConfigError(f"{path}: not a saved run (a JSON list of records); delete it to run the question again")
    return recs
