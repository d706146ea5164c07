"""The knowledge folder (backend.knowledge_dir) is walked once when it loads (was: twice, once to
check it holds notes and once to read them: on a large tree, twice the disk work)."""

from pathlib import Path

import pytest

from kame.backend.knowledge import KnowledgeBase, check_knowledge_dir
from kame.errors import ConfigError


def test_the_folder_is_walked_once(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.txt").write_text("the museum opens at nine")
    (tmp_path / "sub" / "b.md").write_text("tickets cost five euros")
    (tmp_path / "sub" / "c.bin").write_bytes(b"\0")
    walks = []
    real = Path.rglob

    def rglob(self, pattern, *args, **kwargs):
        walks.append(self)
        return real(self, pattern, *args, **kwargs)

    monkeypatch.setattr(Path, "rglob", rglob)
    kb = KnowledgeBase.from_folder(tmp_path, name="backend.knowledge_dir")
    assert walks == [tmp_path]
    assert sorted(c.source for c in kb.chunks) == ["a.txt", str(Path("sub") / "b.md")]
    assert kb.search("when does the museum open")[0][1].source == "a.txt"


def test_a_folder_without_notes_is_still_refused(tmp_path):
    (tmp_path / "x.pdf").write_bytes(b"%PDF")
    with pytest.raises(ConfigError, match=r"backend.knowledge_dir: .* holds no notes \(it holds only .pdf files\)"):
        KnowledgeBase.from_folder(tmp_path, name="backend.knowledge_dir")
    with pytest.raises(ConfigError, match="not a folder"):
        KnowledgeBase.from_folder(tmp_path / "x.pdf", name="backend.knowledge_dir")


def test_a_tilde_without_a_home_directory_names_the_setting(monkeypatch):
    """HOME unset and a uid without a passwd entry: a ConfigError, not pathlib's RuntimeError."""
    import pwd

    def no_entry(uid):
        raise KeyError(uid)

    monkeypatch.delenv("HOME", raising=False)
    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    with pytest.raises(ConfigError, match=r"^backend.knowledge_dir: cannot expand ~ in ~/kn: no home directory"):
        check_knowledge_dir("~/kn", "backend.knowledge_dir")
