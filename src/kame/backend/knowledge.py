"""A tiny knowledge base for the oracle LLM: .txt/.md files, chunked, ranked with BM25 (numpy).

    kb = KnowledgeBase.from_folder("notes/")        # every *.txt / *.md below it (ConfigError if not a
                                                    # folder, or if it holds none)
    for score, chunk in kb.search("when does the museum open", k=3):
        print(chunk.source, chunk.text)

The oracle puts the top chunks for the recent user words into the system prompt per prediction.
Chunks are ~``chunk_words`` words with ``overlap`` words shared between neighbours. Scoring is
Okapi BM25 (k1 = 1.5, b = 0.75) over lower-cased word tokens minus a few stop words.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..paths import NotText, expand_user, file_text

NOTE_SUFFIXES = (".txt", ".md")  # the files a knowledge folder's notes are read from
NAMED = 5  # the bad notes one error names (then: "and N more")
_WORD = re.compile(r"[^\W_]+")  # letters and digits of any script ("café", "東京")
STOP = frozenset(
    "a an and are as at be but by do does for from had has have he her his how i if in is it its "
    "me my not of on or our she so that the their them then there these they this to was we were "
    "what when where which who why will with would you your".split()
)


def terms(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in STOP]


@dataclass(frozen=True)
class Chunk:
    source: str  # file path relative to the folder
    text: str


def not_text(n: int) -> str:
    """What to do with ``n`` notes that are not UTF-8 text or cannot be read at all (was: the
    encoding hint alone, for a note without read permission too)."""
    it, they = ("it", "it is") if n == 1 else ("them", "they are")
    return (f"move {it} out of the folder (every .txt and .md file below it is read as a note), or, if {they} text "
            f"in another encoding, save {it} as UTF-8 (iconv -f ITS-ENCODING -t utf-8, e.g. -f latin1 or -f utf-16)")


def check_knowledge_dir(path: str | Path, name: str = "knowledge_dir") -> Path:
    """The folder of notes ``path`` (``~`` expanded), or a ConfigError naming the setting
    ``name`` ("backend.knowledge_dir: notes/ is not a folder (nothing is there)", or it holds no
    .txt / .md file: other kinds are not read). The one check
    of the folder: KnowledgeBase.from_folder makes it, and the configuration can, before a session."""
    return _note_files(path, name)[0]


def _note_files(path: str | Path, name: str) -> tuple[Path, list[Path]]:
    """(the folder, its note files in name order): check_knowledge_dir's check, walking the folder
    once, so that from_folder reads the files it found (was: a second walk of the whole tree)."""
    root = expand_user(path, name)  # (no home directory to expand ~ to: a ConfigError naming the setting)
    if not root.is_dir():
        why = "it is a file" if root.exists() else "nothing is there"
        raise ConfigError(f"{name}: {path} is not a folder ({why})")
    notes = [p for p in sorted(root.rglob("*")) if p.suffix.lower() in NOTE_SUFFIXES and p.is_file()]
    if not notes:  # (was: 0 notes, silently)
        others = sorted({p.suffix.lower() or p.name for p in root.rglob("*") if p.is_file()})
        found = f"it holds only {', '.join(others[:8])}{' ...' if len(others) > 8 else ''} files" if others \
            else "it is empty"
        raise ConfigError(f"{name}: {path} holds no notes ({found}): the knowledge base reads "
                          f"{' and '.join(NOTE_SUFFIXES)} files (plain text) anywhere below the folder; "
                          + ("convert the notes to text" if others else "add notes") + ", or unset the setting")
    return root, notes


class KnowledgeBase:
    def __init__(self, chunks: list[Chunk], k1: float = 1.5, b: float = 0.75) -> None:
        self.chunks = chunks
        self.k1, self.b = k1, b
        tfs = [Counter(terms(c.text)) for c in chunks]
        self.lengths = np.array([sum(tf.values()) for tf in tfs], dtype=np.float64)  # [n_chunks]
        self.avg_len = max(1.0, float(self.lengths.mean())) if len(chunks) else 1.0  # notes of stop words only: 0
        # inverted index: term -> (chunk ids [m], term counts [m])
        postings: dict[str, tuple[list[int], list[int]]] = {}
        for i, tf in enumerate(tfs):
            for t, n in tf.items():
                ids, cnt = postings.setdefault(t, ([], []))
                ids.append(i)
                cnt.append(n)
        n = len(chunks)
        self.index = {
            t: (np.array(ids), np.array(cnt, dtype=np.float64),
                math.log(1.0 + (n - len(ids) + 0.5) / (len(ids) + 0.5)))
            for t, (ids, cnt) in postings.items()
        }

    @classmethod
    def from_folder(cls, folder: str | Path, chunk_words: int = 80, overlap: int = 20,
                    name: str = "knowledge_dir") -> "KnowledgeBase":
        """The notes below ``folder``: ConfigError naming the setting ``name`` if it is not a folder
        or holds no .txt / .md file (check_knowledge_dir), or naming every note that cannot be read or
        is not UTF-8 text (paths.file_text: a BOM is skipped) in one error (was: the first alone, so a
        folder of N such notes took N failed starts)."""
        root, notes = _note_files(folder, name)
        chunks: list[Chunk] = []
        bad: list[str] = []
        step = max(1, chunk_words - overlap)
        for path in notes:
            # (was: errors="replace": a latin-1 "café" read as "caf\ufffd", a BOM and binary files used as notes)
            try:
                words = file_text(path)[1].split()
            except NotText as exc:
                bad.append(f"{path}: {exc}")
                continue
            for s in range(0, max(1, len(words) - overlap), step):
                piece = words[s : s + chunk_words]
                if piece:
                    chunks.append(Chunk(str(path.relative_to(root)), " ".join(piece)))
        if len(bad) == 1:
            raise ConfigError(f"{name}: note {bad[0]}; {not_text(1)}")
        if bad:
            more = f", and {len(bad) - NAMED} more" if len(bad) > NAMED else ""
            raise ConfigError(f"{name}: {len(bad)} notes are not readable UTF-8 text: {', '.join(bad[:NAMED])}{more}; "
                              f"{not_text(len(bad))}")
        return cls(chunks)

    def search(self, query: str, k: int = 3) -> list[tuple[float, Chunk]]:
        scores = np.zeros(len(self.chunks))  # [n_chunks]
        norm = self.k1 * (1.0 - self.b + self.b * self.lengths / self.avg_len)  # [n_chunks]
        for t in set(terms(query)):
            if t in self.index:
                ids, tf, idf = self.index[t]
                scores[ids] += idf * tf * (self.k1 + 1.0) / (tf + norm[ids])
        top = np.argsort(-scores, kind="stable")[:k]
        return [(float(scores[i]), self.chunks[i]) for i in top if scores[i] > 0]
