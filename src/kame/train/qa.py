"""Text QA sets -> question/answer items and their spoken form, for synthetic training dialogues.

KAME trained on spoken dialogues made from MMLU-Pro, GSM8K and HSSBench (docs/data.md,
"Synthetic dialogues from QA sets"; `kame data synth`). This module reads those sets as downloaded from the Hugging Face hub (.jsonl, .json - a
list of records, or JSON lines -, .parquet when pyarrow or pandas is installed) into `QAItem`s, and
renders an item as the two turns of a dialogue, in words a person says and a TTS can read:

    items = read_qa("gsm8k/test.jsonl")             # fmt="auto": told by the first record's keys
    user, agent = spoken_turns(items[0])            # agent: "... So the answer is 18."

Formats (`FORMATS`; "auto" picks the first that fits the first record, then every record must fit it):

    mmlu-pro  question, options (list), answer (letter), [question_id, answer_index, cot_content,
              category, src]                                                 (TIGER-Lab/MMLU-Pro)
    hssbench  question, options ({"A": ...}), correct_answer (letter), [id, pic_path, category,
              type, original_id, is_open]                     (Zhaolu-K/HSSBench data/*.json[l])
    gsm8k     question, answer whose last line is "#### N"                     (openai/gsm8k)
    qa        question, answer (text or number), [id]                 (anything else, as given)

Strict by default, as a training set should be: a file that is not UTF-8 (its first bad byte named;
a BOM is fine), a line that is not JSON, a record of another shape, an empty question or answer, a
correct letter that is not among the options, an id seen twice, or a lone surrogate (half of a
character's JSON escape, "\\ud83d" without its "\\ude00": no TTS can say it) is a `DataError` naming
the file, the line (or record/row) and what to do; nothing is skipped silently.

HSSBench is multimodal: every published item comes with a picture (`pic_path`) that a spoken
dialogue cannot show. `images="skip"` (default) leaves out the items that need it - the record says
so (`image_necessity`), or the question refers to it ("the image", "Refer to Figure 6-4", "the
table below", "the following information", ...) - with a logged warning counting them; `images="keep"`
keeps them all (the picture's path in `source["image"]`).

Items not in `language` (default "en": the voices speak English) are left out too, in every
format, with a logged warning counting them (in `kame data synth`'s terms); `language=None` keeps
all. HSSBench's raw files have the six UN languages, and their `language` field, where there is one,
is sometimes wrong ("en" on Chinese questions), so an item is in a language when its record does
not say another one and its text fits: its letters are (nearly) all of the language's script, and
for the Latin-script languages (en, fr, es) its commonest small words ("the", "of", "el", "les",
...) are not outnumbered by another's - those of French, Spanish, German, Italian, Portuguese,
Dutch, Turkish, Vietnamese or Indonesian (`_SMALL_WORDS`). An item in another Latin-script language
(Polish, Swedish, ...) has none of them, so it counts as English; English naming a foreign title or
phrase stays English.

`spoken_turns` (kame.backend.speech_text.speakable, which the cascade's TTS and the oracle's text use
too) writes no markdown, no LaTeX (\\frac{a}{b} -> "a over b", x^2 -> "x squared"), no URLs or emoji, no
calculator annotations (<<48/2=24>>), no "####", no control characters or terminal escapes, and
says simple symbols: "48 / 2 = 24" -> "48 divided by 2 is 24", "$5" -> "5 dollars", "20%" -> "20
percent". Numbers stay digits (the TTS reads them). Questions are kept whole; the agent's turn is
capped at `max_answer_words` whole sentences.
"""

from __future__ import annotations

import json
import logging
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..backend.speech_text import speakable  # (moved there: kame.train.qa.speakable still names it)
from .data import DataError

FORMATS = ("gsm8k", "mmlu-pro", "hssbench", "qa")
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
log = logging.getLogger(__name__)
_SHAPES = ("gsm8k (question, answer ending '#### N'), mmlu-pro (question, options list, answer letter), "
           "hssbench (question, options, correct_answer), qa (question, answer)")


@dataclass
class QAItem:
    id: str            # stable: dataset name + the item's own id, or the file's stem and record index
    question: str
    answer: str        # the reference answer as the dataset gives it (GSM8K's solution, MMLU-Pro's
                       # cot_content, or the correct letter when that is all there is)
    source: dict       # provenance: {"dataset", "file", "index", "line" or "row", plus the item's ids/category}
    choices: list[str] | None = None   # multiple choice options, in letter order
    correct: str | None = None          # the correct choice's letter, or GSM8K's final answer


# -- reading ------------------------------------------------------------------------------------

def read_qa(path, fmt: str = "auto", *, limit: int | None = None, language: str | None = "en",
            images: str = "skip") -> list[QAItem]:
    """The items of one QA file (module docstring: formats, strictness, HSSBench's pictures,
    languages). `limit`: at most that many items (the file is read no further). `language`: one of
    `LANGUAGES`, or None (or "any") for all. Index = the record's 0-based position in the file."""
    if fmt != "auto" and fmt not in FORMATS:  # a DataError: the CLI passes the user's words through
        raise DataError(f"unknown QA format {fmt!r}; known formats: auto, {', '.join(FORMATS)}")
    lang = _language(language)
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be None or an int >= 0, not {limit!r}")
    if images not in ("skip", "keep"):
        raise ValueError(f"images must be 'skip' or 'keep', not {images!r}")
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no QA file {path}")
    if path.suffix.lower() not in (".jsonl", ".json", ".parquet"):
        raise DataError(f"{path}: cannot read {path.suffix or 'a file without extension'}; QA files are .jsonl, .json "
                        "(a list of records) or .parquet")
    records = _records(path)
    items: list[QAItem] = []
    seen: dict[str, str] = {}
    pictured: list[str] = []   # ids left out as they need their picture
    foreign: list[str] = []    # ... as not in `lang`
    count = 0  # records read: the next one's index
    while limit is None or len(items) < limit:
        rec = next(records, None)
        if rec is None:
            break
        (where, pos, rec), index, count = rec, count, count + 1
        if not isinstance(rec, dict):
            raise DataError(f"{where}: a QA record must be a JSON object, not {type(rec).__name__}")
        own = rec.get("question_id", rec.get("id"))
        where = f"{where} (id {own})" if own is not None and not isinstance(own, (dict, list)) else where
        if fmt == "auto":
            fmt = _detect(rec, where)
        source = {"dataset": fmt, "file": str(path), "index": index, **pos}
        item = _PARSERS[fmt](rec, where, source, path.stem)
        half = _SURROGATE.search("\n".join([item.id, item.question, item.answer, *(item.choices or ())]))
        if half:  # (was: the item failed later, "UnicodeEncodeError: 'utf-8' codec can't encode ..." from the TTS)
            raise DataError(f"{where}: a lone surrogate \\u{ord(half.group()):04x} (half of a character's JSON "
                            "escape): text no TTS can say; fix or remove the escape")
        if lang and not _in_language(rec, item, lang):
            foreign.append(item.id)
            continue
        if fmt == "hssbench" and images == "skip" and _needs_picture(rec, item.question):
            pictured.append(item.id)
            continue
        if item.id in seen:
            raise DataError(f"{where}: id {item.id!r} again (first at {seen[item.id]}): ids must be unique")
        seen[item.id] = where
        items.append(item)
    if not count and limit != 0:
        raise DataError(f"{path} holds no QA records")
    said = []
    if foreign:
        said.append(f"{len(foreign)} item(s) left out as not in {_NAMES[lang]} (e.g. {foreign[0]}); to keep them "
                    "use --language any (read_qa: language=None)")
    if pictured:
        said.append(f"{len(pictured)} HSSBench item(s) left out as their question needs its picture (e.g. "
                    f"{pictured[0]}); to keep them use --images keep (read_qa: images='keep')")
    if said:
        msg = f"{path}: " + "; ".join(said)
        if not items:
            raise DataError(f"{msg}; no item is left")
        log.warning("%s", msg)  # (was: a Python UserWarning, shown with kame's source line)
    return items


def _records(path: Path) -> Iterator[tuple[str, dict, Any]]:
    """(where, position, record) for each record of the file, lazily for JSON lines."""
    if path.suffix.lower() == ".parquet":
        for i, rec in enumerate(_parquet_rows(path)):
            yield f"{path} row {i}", {"row": i}, rec
        return
    try:
        yield from _text_records(path)
    except UnicodeDecodeError:  # (was: a traceback) said as kame eval mtbench says it, with the file's byte
        _not_text(path)
        raise


def _not_text(path: Path) -> None:
    """The DataError of a file that is not UTF-8 text (paths.read_text's words, naming the byte):
    for a UnicodeDecodeError, or a NUL byte (UTF-16 without a BOM, a binary file: valid UTF-8)."""
    from ..paths import read_text

    read_text(path, str(path), "save it as UTF-8 (iconv -f ITS-ENCODING -t utf-8, e.g. -f latin1 or -f utf-16) "
              "or re-download it", error=DataError)


def _text_records(path: Path) -> Iterator[tuple[str, dict, Any]]:
    with open(path, encoding="utf-8-sig") as f:
        if path.suffix.lower() == ".json":  # a list of records; one of JSON lines (the hub has some) falls through
            try:
                doc = json.load(f)
            except json.JSONDecodeError as e:
                f.seek(0)
                head = f.read(4096)
                if "\0" in head:  # (UTF-16 without a BOM: was "not valid JSON")
                    _not_text(path)
                if head.lstrip().startswith("["):
                    raise DataError(f"{path}:{e.lineno}: not valid JSON ({e.msg}); fix or re-download it") from None
                doc = None
            if doc is not None:  # (one object: one record, or a wrapper its keys show)
                for i, rec in enumerate(doc if isinstance(doc, list) else [doc]):
                    yield f"{path} record {i}", {}, rec
                return
            f.seek(0)
        for n, line in enumerate(f, 1):  # .jsonl, or a .json file of JSON lines
            if "\0" in line:  # (UTF-16 without a BOM, a binary file: valid UTF-8; was "line 1: not a JSON line")
                _not_text(path)
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{n}: not a JSON line ({e.msg} at column {e.colno}); "
                                "each line must hold one JSON record") from None
            yield f"{path}:{n}", {"line": n}, rec


def _parquet_rows(path: Path) -> list[dict]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        pq = None
    if pq is not None:
        return pq.read_table(path).to_pylist()
    try:
        import pandas as pd
    except ImportError:
        raise DataError(f"{path}: reading Parquet needs pyarrow (pip install pyarrow), which is not installed; or "
                        "convert the file to JSONL where it is (pandas.read_parquet(f).to_json(out, orient='records', "
                        "lines=True, force_ascii=False)) and read that") from None
    try:  # via JSON: numpy arrays and scalars in the frame become plain lists and numbers
        return json.loads(pd.read_parquet(path).to_json(orient="records", force_ascii=False))
    except ImportError as e:  # pandas without a parquet engine
        raise DataError(f"{path}: pandas cannot read Parquet here ({e}); install pyarrow or convert to JSONL") from None


def _detect(rec: dict, where: str) -> str:
    keys = set(rec)
    if {"question", "options", "correct_answer"} <= keys:
        return "hssbench"
    if {"question", "options"} <= keys and keys & {"answer", "answer_index"}:
        return "mmlu-pro"
    if {"question", "answer"} <= keys:
        return "gsm8k" if isinstance(rec["answer"], str) and "####" in rec["answer"] else "qa"
    raise DataError(f"{where}: unknown QA record shape, keys {sorted(keys)}; known formats: {_SHAPES}. Rename the "
                    "fields to one of them (or name the format, fmt='qa' or kame data synth --format qa, to be "
                    "told what is missing)")


def _need(rec: dict, key: str, where: str, fmt: str) -> Any:
    if key not in rec:
        raise DataError(f"{where}: not a {fmt} record: no {key!r} (keys {sorted(rec)}); known formats: {_SHAPES}")
    return rec[key]


def _text(rec: dict, key: str, where: str, fmt: str, numbers: bool = False) -> str:
    v = _need(rec, key, where, fmt)
    if numbers and isinstance(v, (int, float)) and not isinstance(v, bool):
        v = str(v)
    if not isinstance(v, str) or not v.strip():
        raise DataError(f"{where}: {key!r} is {'empty' if isinstance(v, str) or v is None else type(v).__name__}; "
                        f"a QA item needs a non-empty {key}: fix or remove the record")
    return v.strip()


def _own_id(rec: dict, key: str) -> str | None:
    v = rec.get(key)
    return None if v is None or isinstance(v, bool) or str(v).strip() == "" else str(v).strip()


def _letter(v: Any, n: int, where: str, key: str) -> str:
    if isinstance(v, str) and len(v.strip()) == 1 and v.strip().upper() in LETTERS[:n]:
        return v.strip().upper()
    raise DataError(f"{where}: {key} {v!r} is not one of the {n} options' letters {LETTERS[0]}-{LETTERS[n - 1]}")


def _options(v: Any, where: str) -> list[str]:
    if isinstance(v, dict):  # HSSBench: {"A": ..., "B": ...}
        keys = sorted(v, key=str)
        if [str(k).strip().upper() for k in keys] != list(LETTERS[:len(keys)]):
            raise DataError(f"{where}: options keys {keys} are not the letters A, B, ... in order")
        v = [v[k] for k in keys]
    if not isinstance(v, list) or not 1 <= len(v) <= len(LETTERS):
        raise DataError(f"{where}: options must be a list (or letter dict) of 1 to 26 choices, not {v!r:.80}")
    out = []
    for i, o in enumerate(v):
        if isinstance(o, (int, float)) and not isinstance(o, bool):
            o = str(o)
        if not isinstance(o, str) or not o.strip():
            raise DataError(f"{where}: option {LETTERS[i]} is empty or not text ({o!r:.40})")
        out.append(o.strip())
    return out


def _gsm8k(rec, where, source, stem):
    question, answer = _text(rec, "question", where, "gsm8k"), _text(rec, "answer", where, "gsm8k")
    final = answer.rpartition("####")[2].strip() if "####" in answer else ""
    if not final:
        raise DataError(f"{where}: a GSM8K answer ends with '#### N' (the final answer); this one has "
                        f"{'none' if '####' not in answer else 'nothing after it'}. For other sets pass fmt='qa' "
                        "(kame data synth: --format qa)")
    return QAItem(f"gsm8k/{stem}/{source['index']}", question, answer, source, correct=final)


def _mmlu_pro(rec, where, source, stem):
    question = _text(rec, "question", where, "mmlu-pro")
    choices = _options(_need(rec, "options", where, "mmlu-pro"), where)
    index, letter = rec.get("answer_index"), rec.get("answer")
    if letter is None and isinstance(index, int) and 0 <= index < len(choices):
        letter = LETTERS[index]
    letter = _letter(letter, len(choices), where, "answer")
    if isinstance(index, int) and not isinstance(index, bool) and index != LETTERS.index(letter):
        raise DataError(f"{where}: answer {letter} and answer_index {index} disagree")
    qid = _own_id(rec, "question_id")
    source.update({k: rec[k] for k in ("question_id", "category", "src") if rec.get(k) is not None})
    cot = rec.get("cot_content")
    answer = cot.strip() if isinstance(cot, str) and cot.strip() else letter
    item_id = f"mmlu-pro/{qid}" if qid else f"mmlu-pro/{stem}/{source['index']}"
    return QAItem(item_id, question, answer, source, choices, letter)


def _hssbench(rec, where, source, stem):
    question = _text(rec, "question", where, "hssbench")
    choices = _options(_need(rec, "options", where, "hssbench"), where)
    given = _need(rec, "correct_answer", where, "hssbench")
    # a few questions have two right options ("A,D"): kept as "A,D", said "It's A, ... and D, ..."
    parts = given.split(",") if isinstance(given, str) and "," in given else [given]
    letter = ",".join(_letter(x, len(choices), where, "correct_answer") for x in parts)
    source.update({k: rec[k] for k in ("id", "original_id", "category", "type", "is_open") if rec.get(k) is not None})
    if _picture(rec):
        source["image"] = rec.get("pic_path") or rec.get("image_path") or "(embedded)"
    own = _own_id(rec, "id")
    return QAItem(f"hssbench/{own}" if own else f"hssbench/{stem}/{source['index']}", question, letter, source,
                  choices, letter)


def _qa(rec, where, source, stem):
    question, answer = _text(rec, "question", where, "qa"), _text(rec, "answer", where, "qa", numbers=True)
    own = _own_id(rec, "id")
    if own:
        source["id"] = rec["id"]
    return QAItem(f"qa/{stem}/{own if own else source['index']}", question, answer, source)


_SURROGATE = re.compile("[\ud800-\udfff]")
_PARSERS = {"gsm8k": _gsm8k, "mmlu-pro": _mmlu_pro, "hssbench": _hssbench, "qa": _qa}

# what a question needing its picture says (English and a few words of HSSBench's other languages)
_VISUAL = re.compile(
    r"\b(images?|pictures?|photo(graph)?s?|figures?|fig\.|graphs?|charts?|diagrams?|maps?|tables?|illustrat\w*|"
    r"paintings?|cartoons?|posters?|shown (here|above|below)|(depicted|pictured|shown) in|"
    r"the following (information|source|excerpt)|imagen|figura|mapa|tabla|gráfico|carte|tableau|"
    r"graphique|изображ\w*|рисун\w*|карт\w*|таблиц\w*|график\w*)\b|图|表格|الصورة|الشكل|الخريطة|الجدول",
    re.IGNORECASE)


def _picture(rec: dict) -> bool:
    return any(rec.get(k) not in (None, "", [], {}) for k in ("pic_path", "image", "image_path", "images"))


def _needs_picture(rec: dict, question: str) -> bool:
    said = rec.get("image_necessity")
    if isinstance(said, str) and said.strip():  # HSSBench's raw files: "需要" (needed) / "不需要" (not needed)
        return said.strip() in ("需要", "yes", "Yes", "required", "needed")
    return _picture(rec) and bool(_VISUAL.search(question))


# -- languages ----------------------------------------------------------------------------------

LANGUAGES = ("en", "fr", "es", "zh", "ru", "ar")  # HSSBench's six (the UN's)
_NAMES = {"en": "English", "fr": "French", "es": "Spanish", "zh": "Chinese", "ru": "Russian", "ar": "Arabic"}
_SCRIPTS = {"en": "latin", "fr": "latin", "es": "latin", "zh": "han", "ru": "cyrillic", "ar": "arabic"}
_SCRIPT = {"latin": re.compile(r"[A-Za-z\u00C0-\u024F\u1E00-\u1EFF]"),
           "han": re.compile(r"[\u3400-\u4DBF\u4E00-\u9FFF\uF900-\uFAFF]"),
           "cyrillic": re.compile(r"[\u0400-\u052F]"),
           "arabic": re.compile(r"[\u0600-\u06FF\u0750-\u077F\u08A0-\u08FF\uFB50-\uFDFF\uFE70-\uFEFF]")}
# a Latin-script item is in English unless its small words say another language more often (a word may count
# for several: "la", "en"); German, Italian, Portuguese, Dutch, Turkish, Vietnamese and Indonesian are told
# apart, not chosen (was: an item with no French or Spanish word was English). Words English has too ("do",
# "no", "in", "hat", "come") count for English only, so an English question naming a foreign title stays English.
_SMALL_WORDS = {"en": frozenset("the of and to is are was were what which who how this that with for from by does did "
                                "not can will would there their its it into about you your".split()),
                "fr": frozenset("le la les des du est une et dans sur pour qui quel quelle quels au aux ce cette "
                                "sont en".split()),
                "es": frozenset("el la los las del es una y en por para con qué cuál cuáles son se su al".split()),
                # (detection only)
                "de": frozenset("der die das und ist nicht ein eine einen einem einer den dem des mit von zu auf für "
                                "wie sind im auch sich haben wird welche welcher welches wer warum viele".split()),
                "it": frozenset("il lo gli di della delle dei degli del che è e non un una per con sono ha nel nella "
                                "alla quanti quante quale quali cosa perché anche questo questa".split()),
                "pt": frozenset("o os da dos das em um uma é e não que com são tem ao pelo pela qual quais quantos "
                                "quantas".split()),
                "nl": frozenset("de het een en van dat die op te met voor zijn niet wat hoe wie waar hoeveel heeft "
                                "hebben er ook aan bij naar dit deze worden".split()),
                "tr": frozenset("bir ve bu ne için ile mi mı mu mü kaç nedir hangi hangisi olan çok daha gibi var yok "
                                "değil kadar olarak".split()),
                "vi": frozenset("là của và có không những các một được trong cho với này người gì nào bao "
                                "nhiêu".split()),
                "id": frozenset("yang dan di ini itu dengan untuk dari tidak ada apa berapa adalah akan pada "
                                "juga".split())}
# words of those detection-only lists that short English items have too (units "per", names "Dan", "Ada", "Van",
# "da Vinci", "die" the cube, a variable "e"): counted for none of them, else one such word outweighed an English
# item with no English small word ("Calculate 5 km per hour times 3 hours." was left out)
_ENGLISH_TOO = frozenset("per die van da di dan ada e o um em den dem der im con non ha il lo mi ne bu var er op te aan "
                         "wat dat hoe wie mit von zu auf wer ao com tem que ook bij".split())
_SMALL_WORDS.update({k: v - _ENGLISH_TOO for k, v in _SMALL_WORDS.items() if k in ("de", "it", "pt", "nl", "tr", "vi",
                                                                                   "id")})
_LETTER = re.compile(r"[^\W\d_]")
_WORD = re.compile(r"[^\W\d_]+")


def _language(language) -> str | None:
    if language is None or (isinstance(language, str) and language.strip().lower() == "any"):
        return None
    code = _code(language) if isinstance(language, str) else None
    if code not in _SCRIPTS:  # a DataError: the CLI passes the user's words through
        raise DataError(f"unknown language {language!r}; known: {', '.join(LANGUAGES)}, or None to keep every item "
                        "(kame data synth: --language any)")
    return code


def _code(name: str) -> str:  # "en", "EN", "en-US", "English" -> "en"
    name = re.split(r"[-_\s]", name.strip().lower(), maxsplit=1)[0]
    return next((c for c, n in _NAMES.items() if n.lower() == name), name)


def _in_language(rec: dict, item: QAItem, lang: str) -> bool:
    said = rec.get("language", rec.get("lang"))
    if isinstance(said, str) and said.strip() and _code(said) != lang:
        return False
    # NFKC: circled and subscript numbers (①, P₂) are digits, not letters of another script
    text = unicodedata.normalize("NFKC", " ".join([item.question, item.answer, *(item.choices or ())]))
    letters = "".join(_LETTER.findall(text))
    script = _SCRIPTS[lang]
    # names and terms in Latin letters are common in the other scripts' items ("MBTI", "Kathak")
    if len(_SCRIPT[script].findall(letters)) < (0.9 if script == "latin" else 0.5) * len(letters):
        return False
    if script != "latin":
        return True
    words = _WORD.findall(text.lower())
    count = {k: sum(w in small for w in words) for k, small in _SMALL_WORDS.items()}
    return count[lang] >= max(count.values())


# -- speaking -----------------------------------------------------------------------------------

def spoken_turns(item: QAItem, *, max_answer_words: int = 60) -> tuple[str, str]:
    """(what the user says, what the agent says) for one item, one line each, speakable (module
    docstring). GSM8K: the question; the solution's last sentences that fit, then "So the answer is
    N." (always there, even past the cap). Multiple choice: the question and "Is it A, ...; or D,
    ...?"; "It's C, <option>." and, when it fits, the end of MMLU-Pro's reasoning. Others: the
    question; the answer's first whole sentences that fit (a first sentence longer than the cap is
    cut at it)."""
    if not isinstance(max_answer_words, int) or max_answer_words < 1:
        raise ValueError(f"max_answer_words must be an int >= 1, not {max_answer_words!r}")
    question = speakable(item.question)
    if item.choices:
        user, agent = _multiple_choice(item, question, max_answer_words)
    elif item.source.get("dataset") == "gsm8k" or (item.correct and "####" in item.answer):
        body, _, final = item.answer.rpartition("####")
        close = f"So the answer is {speakable(item.correct or final).rstrip('.')}."
        steps = _fit(_sentences(speakable(body, lines=True)), max_answer_words - _count(close), last=True)
        user, agent = question, " ".join(steps + [close])
    else:
        said = _sentences(speakable(item.answer))
        kept = _fit(said, max_answer_words)  # a first sentence longer than the cap: its first words
        user, agent = question, " ".join(kept) if kept or not said else " ".join(
            said[0].split()[:max_answer_words]).rstrip(",;:") + "."
    if not user or not agent:
        raise DataError(f"QA item {item.id}: nothing speakable left of its {'question' if not user else 'answer'} "
                        "after removing markup; leave the item out")
    return user, agent


def _multiple_choice(item: QAItem, question: str, cap: int) -> tuple[str, str]:
    letters = LETTERS[:len(item.choices)]
    right = (item.correct or "").split(",")  # one letter, or a few ("A,D")
    if not all(r in letters for r in right) or len(set(right)) != len(right):
        raise DataError(f"QA item {item.id}: correct {item.correct!r} is not one of its letters {letters}")
    said = [speakable(c).rstrip(".;, ") for c in item.choices]
    if not all(said):
        raise DataError(f"QA item {item.id}: option {letters[said.index('')]} has nothing speakable; leave it out")
    opts = [f"{x}, {c}" for x, c in zip(letters, said)]
    read = opts[0] if len(opts) == 1 else "; ".join(opts[:-1]) + f"; or {opts[-1]}"
    question = question.rstrip(": ")
    if question and question[-1] not in ".?!":
        question += "?"  # an unfinished question ("The result would be") is asked with a rising tone
    first = "It's " + " and ".join(f"{r}, {said[letters.index(r)]}" for r in right) + "."
    reason = "" if item.answer.strip() == item.correct else _BOILERPLATE.sub(" ", item.answer)
    kept = _fit(_sentences(speakable(reason)), cap - _count(first), last=True) if reason.strip() else []
    return f"{question} Is it {read}?", " ".join([first] + kept)


_BOILERPLATE = re.compile(r"^\s*A:\s*|Let'?s think step by step\.?|We refer to Wikipedia articles on [^.]*? for "
                          r"help\.?|(So )?the answer is \(?[A-Z]\)?\.?\s*$", re.IGNORECASE)


def _count(s: str) -> int:
    return len(s.split())


def _sentences(text: str) -> list[str]:
    # a sentence ends at . ! ? before a space and anything but a lowercase letter ("e.g. the" stays whole)
    return [s for s in re.split(r"(?<=[.!?])\s+(?=[^a-z])", text) if s.strip()]


def _fit(sentences: list[str], budget: int, *, last: bool = False) -> list[str]:
    """The first (or `last`) whole sentences whose words fit `budget`."""
    kept: list[str] = []
    for s in reversed(sentences) if last else sentences:
        if _count(s) > budget:
            break
        kept.append(s)
        budget -= _count(s)
    return kept[::-1] if last else kept
