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
                       + r": not UTF-8 text \(byte 6\); save it as UTF-8 text \(iconv -f ITS-ENCODING -t utf-8, "
                       r".*\), or move it out of the folder"):
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
