"""backend.knowledge_dir's notes are read before any model is made, in both agents: a bad note
(not UTF-8 text) refuses the agent with nothing made (was: read last, after the STT, LLM and TTS,
which the failed load left open; a server tried the load again for every client, so each made and
leaked a new set, an embedded LLM's child process too). Fake components count what was made."""

from __future__ import annotations

import asyncio

import pytest

from kame.config import load_config
from kame.errors import ConfigError

from .fakes import CREATED


def bad_notes(tmp_path):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "ok.md").write_text("The museum opens at nine.")
    (notes / "café.txt").write_bytes("Le café ouvre le lundi.".encode("latin-1"))
    return notes


def test_the_cascade_reads_its_notes_before_it_makes_a_model(tmp_path, fake_components):
    from kame.cascade.agent import CascadeAgent

    cfg = load_config(None, ["mode=cascade", "backend.stt=fake", "backend.llm=fake", "cascade.tts=fake",
                             "runtime.vad=energy", f"backend.knowledge_dir={bad_notes(tmp_path)}"])

    async def main():
        agent = CascadeAgent(cfg)
        for _ in range(2):  # (a server: each client's session tries the load again)
            with pytest.raises(ConfigError, match=r"^backend.knowledge_dir.*: note .*café.txt: not UTF-8 text"):
                await agent.open_session()
        await agent.stop()

    asyncio.run(main())
    assert CREATED == []  # (was: 2 STTs and 2 LLMs made, none closed)


def test_the_tandem_back_end_reads_its_notes_before_it_makes_a_model(tmp_path, fake_components):
    from kame.runtime.backend import load_backend

    cfg = load_config(None, ["backend.stt=fake", "backend.llm=fake", f"backend.knowledge_dir={bad_notes(tmp_path)}"])
    with pytest.raises(ConfigError, match=r"^backend.knowledge_dir.*: note .*café.txt: not UTF-8 text"):
        load_backend(cfg, clock=None)
    assert CREATED == []  # (was: the STT and the LLM made, left open)


def test_good_notes_are_read_once_and_the_models_made(tmp_path, fake_components, monkeypatch):
    from kame.backend.knowledge import KnowledgeBase
    from kame.runtime.backend import load_backend

    reads = []
    real = KnowledgeBase.from_folder.__func__
    monkeypatch.setattr(KnowledgeBase, "from_folder",
                        classmethod(lambda cls, *a, **kw: reads.append(a) or real(cls, *a, **kw)))
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.md").write_text("The museum opens at nine.")
    # (hybrid routing: its router's cascade replies were made from the notes read again, a second read)
    cfg = load_config(None, ["backend.stt=fake", "backend.llm=fake", "cascade.tts=fake", "cascade.hybrid_routing=true",
                             f"backend.knowledge_dir={notes}"])
    factory, _ = load_backend(cfg, clock=None)
    assert len(CREATED) == 2 and len(factory.shared) == 3 and len(reads) == 1  # (the TTS too; was: 2 reads)
