"""Knowledge notes are UTF-8 text (backend.knowledge_dir): a note in another encoding or a binary
file named .txt is refused naming the note and the byte (was: read with errors="replace", so a
latin-1 "café" became "caf\ufffd" and never matched, and a binary file was used as a note, both
silently); a BOM is skipped (was: "\ufeff" kept in the system prompt)."""

from __future__ import annotations

import codecs
import re

import pytest

from kame.backend.knowledge import KnowledgeBase
from kame.errors import ConfigError


def test_a_note_not_in_utf8_is_refused_by_name(tmp_path):
    (tmp_path / "a.md").write_text("The museum opens at nine.")
    (tmp_path / "café.txt").write_bytes("Le café est ouvert le lundi.".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"^backend.knowledge_dir: note " + re.escape(str(tmp_path / "café.txt"))
                       + r": not UTF-8 text \(byte 6\); move it out of the folder \(every .txt and .md file below "
                       r"it is read as a note\), or, if it is text in another encoding, save it as UTF-8 \(iconv -f "
                       r"ITS-ENCODING -t utf-8, e.g. -f latin1 or -f utf-16\)$"):
        KnowledgeBase.from_folder(tmp_path, name="backend.knowledge_dir")


def test_every_bad_note_is_named_in_one_error(tmp_path):
    """(was: the first alone, so a folder of N such notes took N failed starts to find them)"""
    (tmp_path / "ok.md").write_text("The museum opens at nine.")
    for name in ("a.txt", "b.txt"):
        (tmp_path / name).write_bytes("Le thé".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"^backend.knowledge_dir: 2 notes are not readable UTF-8 text: "
                       + re.escape(f"{tmp_path / 'a.txt'}: not UTF-8 text (byte 5), {tmp_path / 'b.txt'}: not "
                                   "UTF-8 text (byte 5); move them out of the folder")
                       + r".*, or, if they are text in another encoding, save them as UTF-8 \(iconv"):
        KnowledgeBase.from_folder(tmp_path, name="backend.knowledge_dir")
    for i in range(7):  # (the first 5 named, then a count)
        (tmp_path / f"c{i}.txt").write_bytes(b"\xff")
    with pytest.raises(ConfigError, match=r"^backend.knowledge_dir: 9 notes .*c2.txt: not UTF-8 text \(byte 0\), "
                                          r"and 4 more; move them"):
        KnowledgeBase.from_folder(tmp_path, name="backend.knowledge_dir")


def test_an_unreadable_note_gets_no_encoding_hint_first(tmp_path, monkeypatch):
    """A note that cannot be read at all is told to move out first (was: "save it as UTF-8 text
    (iconv ...)" first, for a file with no read permission)."""
    from pathlib import Path

    (tmp_path / "a.md").write_text("The museum opens at nine.")
    real = Path.read_bytes

    def denied(self):
        if self.name == "a.md":
            raise PermissionError(13, "Permission denied")
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", denied)
    with pytest.raises(ConfigError, match=r"note .*a.md: cannot read it \(permission denied\); move it out of the "
                                          r"folder \(every .txt and .md"):
        KnowledgeBase.from_folder(tmp_path, name="backend.knowledge_dir")


def test_a_binary_note_is_refused(tmp_path):
    (tmp_path / "dump.txt").write_bytes(b"PK\x03\x04\x00\x00 zip")
    with pytest.raises(ConfigError, match=r"note .*dump.txt: not text \(a NUL byte at byte 4: a binary file"):
        KnowledgeBase.from_folder(tmp_path, name="backend.knowledge_dir")


def test_a_bom_is_skipped(tmp_path):
    (tmp_path / "bom.md").write_bytes(codecs.BOM_UTF8 + "The museum opens at nine. Le café ferme.".encode())
    kb = KnowledgeBase.from_folder(tmp_path)
    assert [c.text for c in kb.chunks] == ["The museum opens at nine. Le café ferme."]
    assert kb.search("museum")[0][1].source == "bom.md" and kb.search("café")
